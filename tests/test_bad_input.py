"""Bad input, everywhere: every public parameter and command-line option, refused the same way.

For each invalid value -- wrong types, lengths, ranges, names, locations, frame lengths,
contexts with reserved keys (`envelope:`, `aws-crypto-`, in any case), text that is not valid
Unicode -- the call must raise a typed error (`ValidationError`), make no network call (every
HTTP request of the KMS and S3 clients is recorded; the command line is pointed at a loopback
listener that counts connections), and change nothing stored (the keystore, the local
containers and the bucket are snapshotted before and after).

Each test sweeps one kind of parameter across every API that takes it and reports every case
that misbehaves at once. Known gaps are separate, minimal `xfail(strict=True)` tests.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from controlplane import ControlPlane
from controlplane.plane import ContainerRequest
from dataplane import Container, DataKeyCache, DataPlane, Limits
from envelope.errors import EnvelopeError, ValidationError
from envelope.kms import AwsKms, LocalKms, RetryPolicy
from envelope.storage import LocalStore, S3Store, open_store
from tests.conftest import FAST_RETRIES, REGION
from tests.support.faults import HttpRecorder

KEY_UUID = "1234abcd-12ab-34cd-56ef-1234567890ab"

BAD_LOCATIONS: list[Any] = [
    None,
    123,
    b"/tmp/bytes",
    "",
    "a\x00b",
    "ftp://host/x",
    "http://example.com/x",
    "s3://",
    "s3:///prefix",
    "s3://UPPER/x",
    "s3://ab/x",
    "s3://bucket..name/x",
    "s3://192.168.1.1/x",
    "s3://xn--bucket/x",
    "s3://bucket/../x",
    "s3://bucket/a//b",
    "s3://bucket/.hidden",
    "s3://bucket/x?versionId=1",
    "s3://bucket/x#fragment",
    "s3://user@bucket/x",
    "s3://bucket:9000/x",
    "s3://bucket/\ud800",
    "file://remotehost/x",
    "file:///a%ff",
    "file:///x?query",
    "file://relative",
]
BAD_KEY_IDS: list[Any] = [
    None,
    5,
    b"alias/x",
    "",
    "x" * 2049,
    "not-a-key",
    "alias/",
    "alias/a b",
    "alias/\ud800",
    KEY_UUID[:-1],
    "arn:aws:kms:us-east-1:123456789012:key/",
    f"arn:aws:kms:us-east-1:12345678901:key/{KEY_UUID}",
    f"arn:aws:s3:us-east-1:123456789012:key/{KEY_UUID}",
]
BAD_CONTEXTS: list[Any] = [
    "tenant=acme",
    [("tenant", "acme")],
    {1: "a"},
    {"a": 1},
    {"a": None},
    {"a": b"bytes"},
    {"": "x"},
    {"a": "\ud800"},
    {"\udc80": "x"},
]
RESERVED_CONTEXTS: list[Any] = [
    {"envelope:x": "y"},
    {"envelope:container-id": "0" * 32},
    {"Envelope:Suite": "0478"},
    {"ENVELOPE:schema": "1"},
    {"aws-crypto-public-key": "x"},
    {"AWS-CRYPTO-x": "y"},
    {"A": "1", "a": "2"},
    {"k": "v" * 70_000},
]
BAD_GRANT_TOKENS: list[Any] = ["token", b"token", [1], [""], ["x" * 8193], ["t"] * 11, [None]]
BAD_LABELS: list[Any] = [
    "owner=a",
    {1: "a"},
    {"k": 1},
    {"": "v"},
    {"k" * 129: "v"},
    {"k": "v" * 257},
    {f"k{i}": "v" for i in range(65)},
    {"k": "\ud800"},
]
BAD_KEY_SIZES: list[tuple[Any, Any]] = [
    ("AES_128", None),
    ("AES_512", None),
    ("", None),
    (5, None),
    (None, 16),
    (None, 0),
    (None, 1025),
    (None, True),
    (None, "32"),
    (None, 32.0),
    ("AES_128", 32),
]
BAD_KMS_KEY_SIZES: list[tuple[Any, Any]] = [("AES_512", None), ("AES_256", 32), (None, 0), (None, 1025), (None, True)]
BAD_BLOBS: list[Any] = ["text", b"", bytearray(), b"x" * 6145, None, 5]
BAD_NAMES: list[Any] = [
    "",
    "/abs",
    "a/",
    "a//b",
    ".hidden",
    "a/.b",
    "a/./b",
    "a/../b",
    "..",
    "a\\b",
    "a\x00b",
    "a\x1fb",
    "a\x7fb",
    "a\x85b",
    "\ud800",
    "caf\udce9",
    "x" * 1025,
    "a/" + "s" * 256,
    5,
    b"bytes",
    None,
]
BAD_PREFIXES: list[Any] = [5, "/a", "a//", "..", ".x/", "a\x00", "\ud800", "x" * 1025]
BAD_FRAME_LENGTHS: list[Any] = [0, 15, 17, -16, 2**31, "4096", 4096.0, True, None]
BAD_THREADS: list[Any] = [0, 65, -1, True, "2", 1.5, None]
BAD_FLAGS: list[Any] = [1, "yes", None]


# --- the world: a local and an S3 container, recorded clients, and snapshots ------------------------


class World:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.local_kms = LocalKms(tmp / "keystore")
        self.local_arn = self.local_kms.create_key(alias="alias/bad-input")
        self.local_location = tmp / "container"
        self.control_local = ControlPlane(self.local_kms)
        self.control_local.create_container(self.local_location, self.local_arn, encryption_context={"t": "1"})
        self.local_container = DataPlane(self.local_kms).open(self.local_location)
        self.local_container.put("existing", b"local object")
        self.local_blob = self.local_kms.generate_data_key_without_plaintext(self.local_arn).ciphertext_blob

        self.kms_client = boto3.client("kms", region_name=REGION, config=FAST_RETRIES)
        self.s3_client = boto3.client("s3", region_name=REGION)
        self.bucket = f"bad-input-{uuid.uuid4().hex[:8]}"
        self.s3_client.create_bucket(Bucket=self.bucket)
        self.aws_arn = self.kms_client.create_key()["KeyMetadata"]["Arn"]
        self.aws_kms = AwsKms(self.kms_client)
        self.s3_location = f"s3://{self.bucket}/tenants/acme"
        self.control_s3 = ControlPlane(self.aws_kms, self.s3_client)
        self.control_s3.create_container(self.s3_location, self.aws_arn, encryption_context={"t": "1"})
        self.s3_container = DataPlane(self.aws_kms, self.s3_client, discovery=True).open(self.s3_location)
        self.s3_container.put("existing", b"s3 object")
        self.aws_blob = self.aws_kms.generate_data_key_without_plaintext(self.aws_arn).ciphertext_blob

        # From here on every HTTP request of these two clients is recorded.
        self.kms_requests = HttpRecorder(self.kms_client)
        self.s3_requests = HttpRecorder(self.s3_client)
        self._observer = boto3.client("s3", region_name=REGION)  # snapshots, unrecorded
        self._kms_observer = boto3.client("kms", region_name=REGION)

    def requests(self) -> list[str]:
        return self.kms_requests.requests + self.s3_requests.requests

    def snapshot(self) -> dict[str, bytes]:
        state = {f"file:{p.relative_to(self.tmp)}": p.read_bytes() for p in self.tmp.rglob("*") if p.is_file()}
        state |= {f"dir:{p.relative_to(self.tmp)}": b"" for p in self.tmp.rglob("*") if p.is_dir()}
        listing = self._observer.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        for item in listing:
            body = self._observer.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
            state[f"s3:{item['Key']}"] = body
        state["kms:keys"] = str(len(self._kms_observer.list_keys()["Keys"])).encode()
        return state


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from moto import mock_aws

    with mock_aws():
        yield World(tmp_path_factory.mktemp("bad-input"))


Case = tuple[str, Callable[[], object]]


def refuse_all(world: World, cases: list[Case], expected: type[Exception] = ValidationError) -> None:
    """Each case raises `expected`, sends no request, and the stored state is unchanged."""
    before = world.snapshot()
    problems: list[str] = []
    for label, call in cases:
        sent = len(world.requests())
        try:
            call()
        except expected:
            pass
        except Exception as exc:  # the point: report every mis-typed error at once
            problems.append(f"{label}: {type(exc).__name__}: {exc}")
        else:
            problems.append(f"{label}: accepted")
        if len(world.requests()) != sent:
            problems.append(f"{label}: sent {world.requests()[sent:]}")
    assert problems == [], "\n".join(problems)
    assert world.snapshot() == before
    assert len(cases) > 0


def fresh_s3(world: World) -> str:
    return f"s3://{world.bucket}/new/{uuid.uuid4().hex[:8]}"


# --- locations ----------------------------------------------------------------------------------------


def test_bad_locations_are_refused_by_every_api_that_takes_one(world: World) -> None:
    control, plane = world.control_s3, DataPlane(world.aws_kms, world.s3_client, discovery=True)
    cases: list[Case] = []
    for loc in BAD_LOCATIONS:
        cases += [
            (f"create_container({loc!r})", lambda loc=loc: control.create_container(loc, world.aws_arn)),
            (f"describe_container({loc!r})", lambda loc=loc: control.describe_container(loc)),
            # Refused at the call, before the first item is asked for.
            (f"list_containers({loc!r})", lambda loc=loc: control.list_containers(loc)),
            (f"DataPlane.open({loc!r})", lambda loc=loc: plane.open(loc)),
            (f"open_store({loc!r})", lambda loc=loc: open_store(loc, s3_client=world.s3_client)),
        ]
    cases.append(
        (
            "s3:// without an s3_client",
            lambda: ControlPlane(world.aws_kms).create_container(fresh_s3(world), world.aws_arn),
        )
    )
    cases.append(
        ("s3:// open without an s3_client", lambda: DataPlane(world.aws_kms, discovery=True).open(world.s3_location))
    )
    refuse_all(world, cases)


def test_local_paths_the_filesystem_encoding_cannot_encode_are_refused(world: World) -> None:
    """A lone high surrogate names no file: ValidationError up front, not UnicodeEncodeError later."""
    path = str(world.tmp / "bad\ud800path")
    refuse_all(
        world,
        [
            ("open_store", lambda: repr(open_store(path))),
            ("open_store(file://)", lambda: open_store("file://" + path)),
            ("LocalStore", lambda: LocalStore(path)),
            ("DataPlane.open", lambda: DataPlane(world.local_kms).open(path)),
            ("create_container", lambda: world.control_local.create_container(path, world.local_arn)),
            ("describe_container", lambda: world.control_local.describe_container(path)),
            ("list_containers", lambda: world.control_local.list_containers(path)),
            ("LocalKms", lambda: LocalKms(path).create_key()),
        ],
    )


# --- KMS parameters ------------------------------------------------------------------------------------


def test_bad_key_ids_are_refused_by_both_planes_and_both_kms_adapters(world: World) -> None:
    local, aws = world.local_kms, world.aws_kms
    cases: list[Case] = []
    for key in BAD_KEY_IDS:
        cases += [
            (f"local create({key!r})", lambda key=key: world.control_local.create_container(world.tmp / "new", key)),
            (f"s3 create({key!r})", lambda key=key: world.control_s3.create_container(fresh_s3(world), key)),
            (f"LocalKms.generate({key!r})", lambda key=key: local.generate_data_key_without_plaintext(key)),
            (f"LocalKms.decrypt(key_id={key!r})", lambda key=key: local.decrypt(world.local_blob, key_id=key or "")),
            (f"AwsKms.generate({key!r})", lambda key=key: aws.generate_data_key_without_plaintext(key)),
            (f"AwsKms.decrypt(key_id={key!r})", lambda key=key: aws.decrypt(world.aws_blob, key_id=key or "")),
            (f"LocalKms.describe_key({key!r})", lambda key=key: local.describe_key(key)),
            (f"LocalKms.disable_key({key!r})", lambda key=key: local.disable_key(key)),
            (f"LocalKms.enable_key({key!r})", lambda key=key: local.enable_key(key)),
            (f"LocalKms.schedule_key_deletion({key!r})", lambda key=key: local.schedule_key_deletion(key)),
            (f"LocalKms.cancel_key_deletion({key!r})", lambda key=key: local.cancel_key_deletion(key)),
            (f"LocalKms.create_alias(alias/new, {key!r})", lambda key=key: local.create_alias("alias/new", key)),
        ]
    refuse_all(world, cases)


def test_bad_encryption_contexts_are_refused(world: World) -> None:
    cases: list[Case] = []
    for context in BAD_CONTEXTS + RESERVED_CONTEXTS:
        label = repr(context)[:40]
        cases += [
            (
                f"local create(ctx={label})",
                lambda c=context: world.control_local.create_container(
                    world.tmp / "new", world.local_arn, encryption_context=c
                ),
            ),
            (
                f"s3 create(ctx={label})",
                lambda c=context: world.control_s3.create_container(
                    fresh_s3(world), world.aws_arn, encryption_context=c
                ),
            ),
        ]
    for context in BAD_CONTEXTS:  # the KMS adapters take any string pairs; the reserved prefixes are the planes' rule
        label = repr(context)[:40]
        cases += [
            (
                f"LocalKms.generate(ctx={label})",
                lambda c=context: world.local_kms.generate_data_key_without_plaintext(
                    world.local_arn, encryption_context=c
                ),
            ),
            (
                f"LocalKms.decrypt(ctx={label})",
                lambda c=context: world.local_kms.decrypt(world.local_blob, encryption_context=c),
            ),
            (
                f"AwsKms.generate(ctx={label})",
                lambda c=context: world.aws_kms.generate_data_key_without_plaintext(
                    world.aws_arn, encryption_context=c
                ),
            ),
            (
                f"AwsKms.decrypt(ctx={label})",
                lambda c=context: world.aws_kms.decrypt(world.aws_blob, encryption_context=c),
            ),
        ]
    refuse_all(world, cases)


def test_bad_grant_tokens_are_refused(world: World) -> None:
    cases: list[Case] = []
    for tokens in BAD_GRANT_TOKENS:
        label = repr(tokens)[:30]
        cases += [
            (
                f"local create(tokens={label})",
                lambda t=tokens: world.control_local.create_container(
                    world.tmp / "new", world.local_arn, grant_tokens=t
                ),
            ),
            (
                f"s3 create(tokens={label})",
                lambda t=tokens: world.control_s3.create_container(fresh_s3(world), world.aws_arn, grant_tokens=t),
            ),
            (
                f"DataPlane(tokens={label})",
                lambda t=tokens: DataPlane(world.aws_kms, world.s3_client, discovery=True, grant_tokens=t),
            ),
            (
                f"LocalKms.generate(tokens={label})",
                lambda t=tokens: world.local_kms.generate_data_key_without_plaintext(world.local_arn, grant_tokens=t),
            ),
            (
                f"LocalKms.decrypt(tokens={label})",
                lambda t=tokens: world.local_kms.decrypt(world.local_blob, grant_tokens=t),
            ),
            (
                f"AwsKms.generate(tokens={label})",
                lambda t=tokens: world.aws_kms.generate_data_key_without_plaintext(world.aws_arn, grant_tokens=t),
            ),
            (f"AwsKms.decrypt(tokens={label})", lambda t=tokens: world.aws_kms.decrypt(world.aws_blob, grant_tokens=t)),
        ]
    refuse_all(world, cases)


def test_bad_key_sizes_and_ciphertext_blobs_are_refused(world: World) -> None:
    cases: list[Case] = []
    for spec, nbytes in BAD_KEY_SIZES:
        kw = {"key_spec": spec, "number_of_bytes": nbytes}
        cases += [
            (
                f"local create({kw})",
                lambda kw=kw: world.control_local.create_container(world.tmp / "new", world.local_arn, **kw),
            ),
            (f"s3 create({kw})", lambda kw=kw: world.control_s3.create_container(fresh_s3(world), world.aws_arn, **kw)),
        ]
    for spec, nbytes in BAD_KMS_KEY_SIZES:
        kw = {"key_spec": spec, "number_of_bytes": nbytes}
        cases += [
            (
                f"LocalKms.generate({kw})",
                lambda kw=kw: world.local_kms.generate_data_key_without_plaintext(world.local_arn, **kw),
            ),
            (
                f"AwsKms.generate({kw})",
                lambda kw=kw: world.aws_kms.generate_data_key_without_plaintext(world.aws_arn, **kw),
            ),
        ]
    for blob in BAD_BLOBS:
        label = repr(blob)[:20]
        cases += [
            (f"LocalKms.decrypt({label})", lambda b=blob: world.local_kms.decrypt(b)),
            (f"AwsKms.decrypt({label})", lambda b=blob: world.aws_kms.decrypt(b)),
        ]
    refuse_all(world, cases)


def test_bad_labels_are_refused(world: World) -> None:
    cases: list[Case] = []
    for labels in BAD_LABELS:
        label = repr(labels)[:30]
        cases += [
            (
                f"local create(labels={label})",
                lambda x=labels: world.control_local.create_container(world.tmp / "new", world.local_arn, labels=x),
            ),
            (
                f"s3 create(labels={label})",
                lambda x=labels: world.control_s3.create_container(fresh_s3(world), world.aws_arn, labels=x),
            ),
        ]
    refuse_all(world, cases)


def test_bad_batch_requests_are_refused_and_bad_entries_fail_alone(world: World) -> None:
    control = world.control_s3
    good = ContainerRequest(location=fresh_s3(world), key_id=world.aws_arn)
    refuse_all(
        world,
        [
            ("create_containers([dict])", lambda: control.create_containers([{"location": "x", "key_id": "y"}])),  # type: ignore[list-item]
            ("create_containers('abc')", lambda: control.create_containers("abc")),  # type: ignore[arg-type]
            ("create_containers(5)", lambda: control.create_containers(5)),  # type: ignore[arg-type]
            ("create_containers(None)", lambda: control.create_containers(None)),  # type: ignore[arg-type]
            ("create_containers(request)", lambda: control.create_containers(good)),  # type: ignore[arg-type]
            ("create_containers([good, None])", lambda: control.create_containers([good, None])),  # type: ignore[list-item]
            ("ControlPlane(clock=5)", lambda: ControlPlane(world.aws_kms, clock=5)),  # type: ignore[arg-type]
            ("ControlPlane(id_factory='x')", lambda: ControlPlane(world.aws_kms, id_factory="x")),  # type: ignore[arg-type]
            ("create_containers(max_workers=0)", lambda: control.create_containers([good], max_workers=0)),
            ("create_containers(max_workers=-1)", lambda: control.create_containers([good], max_workers=-1)),
            ("create_containers(max_workers=True)", lambda: control.create_containers([good], max_workers=True)),
            ("create_containers(max_workers='8')", lambda: control.create_containers([good], max_workers="8")),  # type: ignore[arg-type]
        ],
    )
    # Inside a batch, each bad request comes back as its own ValidationError, with no request sent.
    bad = [
        ContainerRequest(location="s3://UPPER/x", key_id=world.aws_arn),
        ContainerRequest(location=fresh_s3(world), key_id="not-a-key"),
        ContainerRequest(location=fresh_s3(world), key_id=world.aws_arn, encryption_context={"envelope:x": "y"}),
        ContainerRequest(location=fresh_s3(world), key_id=world.aws_arn, grant_tokens=[""]),
        ContainerRequest(location=fresh_s3(world), key_id=world.aws_arn, labels={"": "x"}),
    ]
    before, sent = world.snapshot(), len(world.requests())
    results = control.create_containers(bad)
    assert [type(r.error) for r in results] == [ValidationError] * len(bad)
    assert world.requests()[sent:] == []
    assert world.snapshot() == before


# --- data plane ----------------------------------------------------------------------------------------


def test_bad_data_plane_options_are_refused(world: World) -> None:
    kms, s3 = world.aws_kms, world.s3_client
    cases: list[Case] = [
        ("DataPlane(kms=object())", lambda: DataPlane(object())),  # type: ignore[arg-type]
        ("DataPlane(kms=None)", lambda: DataPlane(None)),  # type: ignore[arg-type]
        ("DataPlane(kms='kms')", lambda: DataPlane("kms")),  # type: ignore[arg-type]
        ("DataPlane(cache='cache')", lambda: DataPlane(kms, s3, discovery=True, cache="cache")),  # type: ignore[arg-type]
        ("DataPlane(cache={})", lambda: DataPlane(kms, s3, discovery=True, cache={})),  # type: ignore[arg-type]
        # DESIGN §11: AwsKms needs a trust decision, and key_ids are key ARNs
        ("DataPlane(AwsKms) without key_ids or discovery", lambda: DataPlane(kms, s3)),
        ("DataPlane(key_ids=[alias])", lambda: DataPlane(kms, s3, key_ids=["alias/acme"])),
        (
            "DataPlane(key_ids=[alias ARN])",
            lambda: DataPlane(kms, s3, key_ids=[world.aws_arn.replace(":key/", ":alias/").rsplit("/", 1)[0] + "/acme"]),
        ),
        ("DataPlane(key_ids=[bare id])", lambda: DataPlane(kms, s3, key_ids=[world.aws_arn.split("/")[-1]])),
        ("DataPlane(key_ids=[])", lambda: DataPlane(kms, s3, key_ids=[])),
        ("DataPlane(key_ids='arn')", lambda: DataPlane(kms, s3, key_ids=world.aws_arn)),
        ("DataPlane(key_ids=..., discovery=True)", lambda: DataPlane(kms, s3, key_ids=[world.aws_arn], discovery=True)),
        ("DataPlane(discovery='yes')", lambda: DataPlane(kms, s3, discovery="yes")),  # type: ignore[arg-type]
        ("DataPlane(discovery_accounts=['1'])", lambda: DataPlane(kms, s3, discovery=True, discovery_accounts=["1"])),
        ("DataPlane(discovery_accounts=[])", lambda: DataPlane(kms, s3, discovery=True, discovery_accounts=[])),
        (
            "DataPlane(discovery_partition='x')",
            lambda: DataPlane(kms, s3, discovery=True, discovery_accounts=["123456789012"], discovery_partition="x"),
        ),
        ("DataPlane(discovery_partition only)", lambda: DataPlane(kms, s3, discovery=True, discovery_partition="aws")),
        (
            "DataPlane(key_ids + discovery_accounts)",
            lambda: DataPlane(kms, s3, key_ids=[world.aws_arn], discovery_accounts=["123456789012"]),
        ),
        (
            "open(encryption_context='x')",
            lambda: DataPlane(kms, s3, discovery=True).open(world.s3_location, encryption_context="x"),
        ),  # type: ignore[arg-type]
        (
            "open(encryption_context={1: 'x'})",
            lambda: DataPlane(kms, s3, discovery=True).open(world.s3_location, encryption_context={1: "x"}),
        ),  # type: ignore[dict-item]
        ("open(container_id='')", lambda: DataPlane(kms, s3, discovery=True).open(world.s3_location, container_id="")),
        ("open(container_id=5)", lambda: DataPlane(kms, s3, discovery=True).open(world.s3_location, container_id=5)),  # type: ignore[arg-type]
    ]
    for value in BAD_FRAME_LENGTHS:
        cases.append(
            (f"DataPlane(frame_length={value!r})", lambda v=value: DataPlane(kms, s3, discovery=True, frame_length=v))
        )
    for value in BAD_THREADS:
        cases.append((f"DataPlane(threads={value!r})", lambda v=value: DataPlane(kms, s3, discovery=True, threads=v)))
    for value in BAD_FLAGS:
        cases.append(
            (f"DataPlane(allow_unbound={value!r})", lambda v=value: DataPlane(kms, s3, discovery=True, allow_unbound=v))
        )
        cases.append(
            (
                f"open(fetch_key={value!r})",
                lambda v=value: DataPlane(kms, s3, discovery=True).open(world.s3_location, fetch_key=v),
            )
        )
    for kw in (
        {"max_entries": 0},
        {"max_entries": True},
        {"max_entries": "1"},
        {"max_age": 0},
        {"max_age": -1.0},
        {"max_age": float("nan")},
        {"max_age": "600"},
        {"max_messages": 0},
        {"max_bytes": 0},
        {"max_bytes": 1.5},
    ):
        cases.append((f"DataKeyCache({kw})", lambda kw=kw: DataKeyCache(**kw)))
    refuse_all(world, cases)


@pytest.mark.parametrize("store", ["local", "s3"])
def test_bad_object_names_are_refused_by_every_container_method(world: World, store: str) -> None:
    container: Container = world.local_container if store == "local" else world.s3_container
    methods: dict[str, Callable[[Any], object]] = {
        "put": lambda n: container.put(n, b"data"),
        "get": container.get,
        "open_reader": container.open_reader,
        "open_writer": container.open_writer,
        "verify": container.verify,
        "inspect": container.inspect,
        "exists": container.exists,
        "size": container.size,
        "delete": container.delete,
    }
    cases: list[Case] = [
        (f"{method}({name!r})", lambda call=call, name=name: call(name))
        for method, call in methods.items()
        for name in BAD_NAMES
    ]
    cases += [(f"list({prefix!r})", lambda p=prefix: list(container.list(p))) for prefix in BAD_PREFIXES]
    refuse_all(world, cases)


@pytest.mark.parametrize("store", ["local", "s3"])
def test_bad_container_method_options_are_refused(world: World, store: str) -> None:
    container: Container = world.local_container if store == "local" else world.s3_container
    cases: list[Case] = []
    for data in ("text", 5, None, [1, 2], {"a": 1}):
        cases.append((f"put(data={data!r})", lambda d=data: container.put("new-object", d)))
    for flag in BAD_FLAGS:
        cases += [
            (f"put(overwrite={flag!r})", lambda f=flag: container.put("existing", b"x", overwrite=f)),
            (f"open_writer(overwrite={flag!r})", lambda f=flag: container.open_writer("existing", overwrite=f)),
        ]
        if flag is not None:  # None means "the plane's setting"
            cases.append(
                (
                    f"open_reader(allow_unbound={flag!r})",
                    lambda f=flag: container.open_reader("existing", allow_unbound=f),
                )
            )
    for value in BAD_FRAME_LENGTHS[:-1]:  # None means "the plane's default" here
        cases.append(
            (
                f"open_writer(frame_length={value!r})",
                lambda v=value: container.open_writer("new-object", frame_length=v),
            )
        )
    for value in BAD_THREADS[:-1]:
        cases += [
            (f"open_writer(threads={value!r})", lambda v=value: container.open_writer("new-object", threads=v)),
            (f"open_reader(threads={value!r})", lambda v=value: container.open_reader("existing", threads=v)),
        ]
    refuse_all(world, cases)


# --- stores, keystore administration, retry policy ---------------------------------------------------------


def test_bad_store_and_keystore_parameters_are_refused(world: World) -> None:
    s3 = world.s3_client
    cases: list[Case] = [
        ("LocalStore('')", lambda: LocalStore("")),
        ("LocalStore('a\\x00b')", lambda: LocalStore("a\x00b")),
        ("S3Store(None, bucket)", lambda: S3Store(None, world.bucket)),  # type: ignore[arg-type]
        ("S3Store(bucket='UPPER')", lambda: S3Store(s3, "UPPER")),
        ("S3Store(bucket=5)", lambda: S3Store(s3, 5)),  # type: ignore[arg-type]
        ("S3Store(prefix='/a')", lambda: S3Store(s3, world.bucket, "/a")),
        ("S3Store(prefix='a//b')", lambda: S3Store(s3, world.bucket, "a//b")),
        ("S3Store(prefix=5)", lambda: S3Store(s3, world.bucket, 5)),  # type: ignore[arg-type]
        ("S3Store(part_size=1024)", lambda: S3Store(s3, world.bucket, part_size=1024)),
        ("S3Store(part_size=6 GiB)", lambda: S3Store(s3, world.bucket, part_size=6 << 30)),
        ("S3Store(part_size=True)", lambda: S3Store(s3, world.bucket, part_size=True)),
        ("S3Store(small_object_threshold>part)", lambda: S3Store(s3, world.bucket, small_object_threshold=9 << 20)),
        ("S3Store(read_ahead=-1)", lambda: S3Store(s3, world.bucket, read_ahead=-1)),
        ("S3Store(list_page_size=0)", lambda: S3Store(s3, world.bucket, list_page_size=0)),
        ("S3Store(list_page_size=1001)", lambda: S3Store(s3, world.bucket, list_page_size=1001)),
        ("LocalStore.substore('../x')", lambda: LocalStore(world.tmp / "container").substore("../x")),
        ("LocalStore.cleanup(older_than=-1)", lambda: LocalStore(world.tmp / "container").cleanup_stale_temp_files(-1)),
    ]
    for alias in ("x", "alias/", "alias/aws/x", "alias/" + "a" * 251, "alias/a b", "alias/\u00e9", 5, b"alias/x"):
        cases.append((f"create_key(alias={alias!r})", lambda a=alias: world.local_kms.create_key(alias=a)))  # type: ignore[arg-type]
        cases.append((f"create_alias({alias!r})", lambda a=alias: world.local_kms.create_alias(a, world.local_arn)))  # type: ignore[arg-type]
    cases.append(("create_key(alias taken)", lambda: world.local_kms.create_key(alias="alias/bad-input")))
    for path in (123, None, b"keystore", "", "a\x00b"):
        cases.append((f"LocalKms({path!r})", lambda p=path: LocalKms(p)))  # type: ignore[arg-type]
    cases.append(("create_key(description=5)", lambda: world.local_kms.create_key(description=5)))  # type: ignore[arg-type]
    cases.append(("create_key(description > 8192 chars)", lambda: world.local_kms.create_key(description="d" * 8193)))
    for kw in (
        {"max_attempts": 0},
        {"max_attempts": True},
        {"max_attempts": 1.5},
        {"base_delay": -1.0},
        {"max_delay": -1.0},
        {"deadline": 0.0},
        {"deadline": float("nan")},
    ):
        cases.append((f"RetryPolicy({kw})", lambda kw=kw: RetryPolicy(**kw)))
    refuse_all(world, cases)


# --- configuration objects are checked when built, not when first used --------------------------------------


@pytest.mark.parametrize(
    ("case", "call"),
    [
        pytest.param("Limits(max_header_size=10)", lambda w: Limits(max_header_size=10), id="Limits-range"),
        pytest.param("Limits(max_frame_length='x')", lambda w: Limits(max_frame_length="x"), id="Limits-type"),
        pytest.param(
            "DataPlane(limits='x')", lambda w: DataPlane(w.aws_kms, discovery=True, limits="x"), id="DataPlane-limits"
        ),
        pytest.param(
            "DataPlane(random_bytes=5)",
            lambda w: DataPlane(w.aws_kms, discovery=True, random_bytes=5),
            id="DataPlane-random",
        ),
        pytest.param("AwsKms(client, retry='x')", lambda w: AwsKms(w.kms_client, retry="x"), id="AwsKms-retry"),
        pytest.param("AwsKms('client')", lambda w: AwsKms("client"), id="AwsKms-client-type"),
        pytest.param("RetryPolicy(base_delay='x')", lambda w: RetryPolicy(base_delay="x"), id="RetryPolicy-delay-type"),
        pytest.param("RetryPolicy(clock=5)", lambda w: RetryPolicy(clock=5), id="RetryPolicy-clock"),
    ],
)
def test_configuration_objects_refuse_bad_arguments_when_built(
    world: World, case: str, call: Callable[[World], object]
) -> None:
    with pytest.raises(ValidationError):
        call(world)


# --- the command line --------------------------------------------------------------------------------------


def run_cli(argv: list[str]) -> int:
    from envelope_cli.main import main

    try:
        return main(argv)
    except SystemExit as exit_:  # argparse usage errors
        return int(exit_.code or 0)


@pytest.fixture
def cli_world(tmp_path: Path) -> tuple[list[str], Path, Path]:
    """(global options, a container with object 'existing', an input file)."""
    options = ["--kms", f"local:{tmp_path / 'keystore'}", "-q"]
    assert run_cli([*options, "key", "create", "--alias", "alias/cli"]) == 0
    container = tmp_path / "container"
    assert run_cli([*options, "create", str(container), "--key", "alias/cli"]) == 0
    source = tmp_path / "input.txt"
    source.write_bytes(b"plaintext")
    assert run_cli([*options, "put", str(container), "existing", str(source)]) == 0
    return options, container, source


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"<dir>") for p in root.rglob("*")}


def test_bad_command_line_options_exit_2_and_change_nothing(
    cli_world: tuple[list[str], Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options, container, source = cli_world
    c, f, new = str(container), str(source), str(tmp_path / "new-container")
    argvs = [
        ["--kms", "bogus", "ls", c],
        ["--kms", "local:", "ls", c],
        ["--grant-token", "", "get", c, "existing", "-o", str(tmp_path / "out")],
        ["create", new],
        ["create", new, "--key", ""],
        ["create", new, "--key", "not a key"],
        ["create", new, "--key", "alias/cli", "--context", "novalue"],
        ["create", new, "--key", "alias/cli", "--context", "=v"],
        ["create", new, "--key", "alias/cli", "--context", "envelope:x=y"],
        ["create", new, "--key", "alias/cli", "--context", "Envelope:x=y"],
        ["create", new, "--key", "alias/cli", "--context", "aws-crypto-public-key=y"],
        ["create", new, "--key", "alias/cli", "--context", "k=1", "--context", "k=2"],
        ["create", new, "--key", "alias/cli", "--context", "A=1", "--context", "a=2"],
        ["create", new, "--key", "alias/cli", "--context", "k=\udcff"],
        ["create", new, "--key", "alias/cli", "--label", "nolabel"],
        ["create", new, "--key", "alias/cli", "--label", "k" * 129 + "=v"],
        ["create", "ftp://host/x", "--key", "alias/cli"],
        ["create", "s3://UPPER/x", "--key", "alias/cli"],
        ["describe", "s3://bucket/a//b"],
        ["containers", "file://remote/x"],
        ["put", c, ".hidden", f],
        ["put", c, "a//b", f],
        ["put", c, "/abs", f],
        ["put", c, "a\\b", f],
        ["put", c, "x" * 1025, f],
        ["put", c, "caf\udce9", f],  # what Python makes of non-UTF-8 bytes in argv
        ["put", c, "n", f, "--overwrite=yes"],
        ["put", "ftp://host/x", "n", f],
        ["get", c, ".hidden", "-o", str(tmp_path / "out")],
        ["get", c, "a//b"],
        ["ls", c, "/abs"],
        ["ls", c, "a//"],
        ["rm", c, ".hidden"],
        ["inspect", c, "../x"],
        ["verify", c, "existing", "/bad"],
        ["key", "create", "--alias", "bad"],
        ["key", "create", "--alias", "alias/aws/x"],
        ["key", "create", "--alias", "alias/cli"],
        ["key", "describe", ""],
        ["key", "disable", "not a key"],
        ["key", "enable", "x" * 2049],
        ["frobnicate", c],
    ]
    argvs.append([*(x for i in range(11) for x in ("--grant-token", f"t{i}")), "get", c, "existing"])
    before = _tree(tmp_path)
    problems = []
    for argv in argvs:
        code = run_cli([*options, *argv])
        if code not in (2, 5):  # 5: the alias or container already exists (also refused, also unchanged)
            problems.append(f"{argv}: exit {code}")
    capsys.readouterr()
    assert problems == []
    assert _tree(tmp_path) == before


def test_cli_rm_with_one_bad_name_deletes_nothing(
    cli_world: tuple[list[str], Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    options, container, _ = cli_world
    assert run_cli([*options, "rm", str(container), "existing", "/bad"]) == 2
    assert (container / "objects" / "existing").exists()


def test_non_utf8_names_from_a_real_command_line_are_refused(cli_world: tuple[list[str], Path, Path]) -> None:
    """The console script in its own process, with raw non-UTF-8 bytes in NAME."""
    options, container, source = cli_world
    command = shutil.which("envelope", path=os.path.dirname(sys.executable))
    assert command is not None
    before = _tree(container)
    args = [command.encode(), *(o.encode() for o in options), b"put", bytes(container), b"caf\xe9", bytes(source)]
    result = subprocess.run(args, capture_output=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert b"not valid UTF-8" in result.stderr
    assert _tree(container) == before


class ConnectionCounter:
    """A loopback listener standing in for AWS: any connection to it is a network call."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.close()


@pytest.fixture
def aws_endpoint() -> Iterator[ConnectionCounter]:
    counter = ConnectionCounter()
    yield counter
    counter.stop()


AWS_BAD_ARGVS = [
    ["create", "s3://bucket-x/c", "--key", "not a key"],
    ["create", "s3://bucket-x/c", "--key", "alias/x", "--context", "envelope:x=y"],
    ["create", "s3://bucket-x/c", "--key", "alias/x", "--label", "=v"],
    ["create", "s3://UPPER/c", "--key", "alias/x"],
    ["create", "s3://bucket-x/c", "--key", "alias/x", "--grant-token", ""],
    ["describe", "s3://bucket-x/a//b"],
    ["key", "create"],
]
AWS_BAD_NAME_ARGVS = [
    ["put", "s3://bucket-x/c", ".hidden", "INPUT"],
    ["get", "s3://bucket-x/c", "a//b"],
    ["verify", "s3://bucket-x/c", "/bad"],
    ["inspect", "s3://bucket-x/c", "../x"],
    ["rm", "s3://bucket-x/c", ".x"],
    ["ls", "s3://bucket-x/c", "/abs"],
]


def _aws_options(endpoint: ConnectionCounter) -> list[str]:
    return ["--kms", "aws", "--region", REGION, "--endpoint-url", endpoint.url, "-q"]


def test_bad_aws_command_lines_exit_2_without_a_network_call(
    aws_endpoint: ConnectionCounter, capsys: pytest.CaptureFixture[str]
) -> None:
    problems = [
        f"{argv}: exit {code}" for argv in AWS_BAD_ARGVS if (code := run_cli([*_aws_options(aws_endpoint), *argv])) != 2
    ]
    capsys.readouterr()
    assert problems == []
    assert aws_endpoint.connections == 0


@pytest.mark.parametrize("argv", AWS_BAD_NAME_ARGVS, ids=[a[0] for a in AWS_BAD_NAME_ARGVS])
def test_bad_object_names_on_the_aws_command_line_make_no_network_call(
    aws_endpoint: ConnectionCounter, argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "input"
    source.write_bytes(b"x")
    argv = [str(source) if a == "INPUT" else a for a in argv]
    code = run_cli([*_aws_options(aws_endpoint), *argv])
    capsys.readouterr()
    assert (code, aws_endpoint.connections) == (2, 0)


@pytest.mark.parametrize(
    "option",
    [
        ["--region", "bad region!"],
        ["--region", "us_east_1"],
        ["--endpoint-url", "not a url"],
        ["--endpoint-url", "ftp://127.0.0.1:9"],
        ["--endpoint-url", "http://[::1"],
        ["--endpoint-url", "http://127.0.0.1:99999"],
    ],
    ids=["region", "region-underscore", "endpoint", "endpoint-scheme", "endpoint-ipv6", "endpoint-port"],
)
def test_bad_aws_client_options_are_usage_errors(option: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    base = {"--region": REGION, "--endpoint-url": "http://127.0.0.1:9"}
    base[option[0]] = option[1]
    argv = ["--kms", "aws", "-q", *(x for kv in base.items() for x in kv), "ls", "s3://bucket-x/c"]
    code = run_cli(argv)
    stderr = capsys.readouterr().err
    assert code == 2
    assert len(stderr.splitlines()) == 1 and option[0] in stderr and "internal error" not in stderr


def test_validation_errors_are_typed() -> None:
    """The sweeps above rely on it: ValidationError is an EnvelopeError and a ValueError."""
    assert issubclass(ValidationError, EnvelopeError)
    assert issubclass(ValidationError, ValueError)
