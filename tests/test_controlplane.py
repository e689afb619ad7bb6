"""The control plane: create, describe, list and batch-provision containers on every store and KMS."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import boto3
import pytest

from controlplane import ContainerRequest, ContainerResult, ControlPlane
from envelope import ContainerHeader
from envelope.datakey import GeneratedDataKey
from envelope.errors import (
    ContainerExistsError,
    ContainerNotFoundError,
    DisabledError,
    FormatError,
    InvalidGrantTokenError,
    InvalidKeyUsageError,
    KmsError,
    KMSInvalidStateError,
    NotFoundError,
    ObjectExistsError,
    StorageError,
    UnsupportedFormatError,
    ValidationError,
)
from envelope.header import HEADER_NAME, MAX_HEADER_BYTES, build_encryption_context, check_binding
from envelope.kms import AwsKms, LocalKms, RetryPolicy
from envelope.storage import Store, open_store
from tests.support.faults import HttpRecorder, KmsFaults, kms_error_response, operation_of

GENERATE = "GenerateDataKeyWithoutPlaintext"
NO_SLEEP = RetryPolicy(sleep=lambda _: None)


class CountingKms:
    """A DataKeyGenerator that counts calls, records arguments and can pause before calling through."""

    def __init__(self, inner: Any, before: Callable[[], object] | None = None) -> None:
        self.inner = inner
        self.provider_id = inner.provider_id
        self.before = before
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def generate_data_key_without_plaintext(self, key_id: str, **kwargs: Any) -> GeneratedDataKey:
        with self._lock:
            self.calls.append({"key_id": key_id, **kwargs})
        if self.before is not None:
            self.before()
        result: GeneratedDataKey = self.inner.generate_data_key_without_plaintext(key_id, **kwargs)
        return result


@attrs.define
class Env:
    """One store + one KMS: everything a test needs to provision and inspect containers."""

    kind: str
    kms: CountingKms
    decryptor: Any  # the same KMS, for checking that a stored data key really decrypts
    key_alias: str
    key_arn: str
    root: str
    s3_client: Any

    def plane(self, kms: Any = None, **kwargs: Any) -> ControlPlane:
        return ControlPlane(kms or self.kms, self.s3_client, **kwargs)

    def loc(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def store(self, *parts: str) -> Store:
        return open_store(self.loc(*parts), s3_client=self.s3_client)


ENVS = ["local+LocalKms", "local+AwsKms", "s3+AwsKms", "s3+LocalKms"]


@pytest.fixture(params=ENVS)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Env:
    store_kind, kms_kind = request.param.split("+")
    s3_client = None
    if kms_kind == "AwsKms":
        kms_client = request.getfixturevalue("kms_client")
        arn = request.getfixturevalue("kms_key_arn")  # also creates alias/test
        inner: Any = AwsKms(kms_client, retry=NO_SLEEP)
    else:
        inner = LocalKms(tmp_path / "keystore")
        arn = inner.create_key(alias="alias/test")
    if store_kind == "s3":
        s3_client = request.getfixturevalue("s3_client")
        root = f"s3://{request.getfixturevalue('bucket')}/root"
    else:
        root = str(tmp_path / "root")
    return Env(request.param, CountingKms(inner), inner, "alias/test", arn, root, s3_client)


# --------------------------------------------------------------------------- create / describe


def test_create_writes_a_bound_header_that_describe_returns(env: Env) -> None:
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    cp = env.plane(clock=lambda: when, id_factory=lambda: bytes(range(16)))
    header = cp.create_container(
        env.loc("acme"), key_id=env.key_alias, encryption_context={"tenant": "acme"}, labels={"team": "x"}
    )
    assert header.container_id == bytes(range(16)).hex()
    assert header.created_at == when
    assert dict(header.labels) == {"team": "x"}
    assert header.encryption_context == build_encryption_context({"tenant": "acme"}, header.container_id)
    (edk,) = header.data_keys
    assert edk.key_id == env.key_arn  # the ARN KMS returned, not the alias we asked with
    assert edk.provider == env.kms.provider_id
    check_binding(header)

    assert cp.describe_container(env.loc("acme")) == header
    assert env.store("acme").get_bytes(HEADER_NAME) == header.to_json()
    assert list(env.store("acme").list()) == [HEADER_NAME]  # the header is the only thing written

    (call,) = env.kms.calls
    assert call == {
        "key_id": env.key_alias,
        "encryption_context": dict(header.encryption_context),
        "grant_tokens": None,
        "key_spec": "AES_256",
    }


def test_stored_data_key_decrypts_to_32_bytes_only_under_the_header_context(env: Env) -> None:
    header = env.plane().create_container(env.loc("c"), env.key_arn, encryption_context={"tenant": "acme"})
    (edk,) = header.data_keys
    key = env.decryptor.decrypt(edk.ciphertext, encryption_context=dict(header.encryption_context))
    assert len(key) == 32
    key.wipe()
    forged = {**header.encryption_context, "tenant": "mallory"}
    with pytest.raises(KmsError):
        env.decryptor.decrypt(edk.ciphertext, encryption_context=forged)


def test_number_of_bytes_32_is_sent_instead_of_key_spec(env: Env) -> None:
    env.plane().create_container(env.loc("c"), env.key_alias, number_of_bytes=32, key_spec=None)
    env.plane().create_container(env.loc("d"), env.key_alias, number_of_bytes=32)  # default key_spec is not "both"
    for call in env.kms.calls:
        assert call["number_of_bytes"] == 32
        assert "key_spec" not in call


def test_grant_tokens_are_passed_through(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "ks")
    kms.create_key(alias="alias/k")
    spy = CountingKms(kms)
    ControlPlane(spy).create_container(tmp_path / "c", "alias/k", grant_tokens=["token-1", "token-2"])
    assert spy.calls[0]["grant_tokens"] == ["token-1", "token-2"]


def test_existing_container_is_refused_without_a_kms_call_and_left_intact(env: Env) -> None:
    cp = env.plane()
    cp.create_container(env.loc("c"), env.key_alias)
    before = env.store("c").get_bytes(HEADER_NAME)
    with pytest.raises(ContainerExistsError):
        cp.create_container(env.loc("c"), env.key_alias, encryption_context={"other": "x"})
    assert len(env.kms.calls) == 1
    assert env.store("c").get_bytes(HEADER_NAME) == before


def test_non_empty_location_is_refused_without_a_kms_call(env: Env) -> None:
    env.store("c").put_bytes("objects/report.csv", b"stray")
    with pytest.raises(ObjectExistsError, match="not empty") as info:
        env.plane().create_container(env.loc("c"), env.key_alias)
    assert not isinstance(info.value, ContainerExistsError)
    assert env.kms.calls == []
    assert list(env.store("c").list()) == ["objects/report.csv"]


def test_two_racing_provisioners_exactly_one_wins_and_its_header_stays(env: Env) -> None:
    # Both pass the "is it free?" check and both reach KMS before either writes.
    barrier = threading.Barrier(2, timeout=30)
    cp = env.plane(CountingKms(env.kms.inner, before=barrier.wait))
    outcomes: list[ContainerHeader | Exception] = []
    lock = threading.Lock()

    def provision(tenant: str) -> None:
        try:
            outcome: ContainerHeader | Exception = cp.create_container(
                env.loc("race"), env.key_alias, encryption_context={"tenant": tenant}
            )
        except ContainerExistsError as e:  # anything else is a bug: the thread dies, an outcome is missing
            outcome = e
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=provision, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    winners = [o for o in outcomes if isinstance(o, ContainerHeader)]
    losers = [o for o in outcomes if not isinstance(o, ContainerHeader)]
    assert len(winners) == 1
    assert len(losers) == 1
    assert isinstance(losers[0], ContainerExistsError)
    assert env.store("race").get_bytes(HEADER_NAME) == winners[0].to_json()
    assert cp.describe_container(env.loc("race")) == winners[0]


class FailingWrites:
    """A Store whose writes all fail: what a storage outage after the KMS call looks like."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def url(self) -> str:
        return self._inner.url

    def put_bytes(self, name: str, data: Any, *, overwrite: bool = False) -> None:
        raise StorageError("injected write failure")

    def open_writer(self, name: str, *, overwrite: bool = False) -> Any:
        raise StorageError("injected write failure")


def test_failure_after_the_kms_call_leaves_no_container(env: Env) -> None:
    store = FailingWrites(env.store("c"))
    assert isinstance(store, Store)
    with pytest.raises(StorageError, match="injected"):
        env.plane().create_container(store, env.key_alias)
    assert len(env.kms.calls) == 1
    assert list(env.store("c").list()) == []
    with pytest.raises(ContainerNotFoundError):
        env.plane().describe_container(env.loc("c"))
    env.plane().create_container(env.loc("c"), env.key_alias)  # the location is still free


def test_kms_failure_leaves_no_container(env: Env) -> None:
    with pytest.raises(NotFoundError):
        env.plane().create_container(env.loc("c"), "alias/does-not-exist")
    assert list(env.store("c").list()) == []


class BogusKms:
    provider_id = "aws-kms"

    def __init__(self, result: Any) -> None:
        self.result = result

    def generate_data_key_without_plaintext(self, key_id: str, **_: Any) -> Any:
        return self.result


@pytest.mark.parametrize(
    "result",
    [
        GeneratedDataKey(b"blob", "alias/not-an-arn"),
        GeneratedDataKey(b"", "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
        GeneratedDataKey("text", "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"),  # type: ignore[arg-type]
        None,
    ],
)
def test_unusable_kms_result_is_a_kms_error_and_writes_nothing(tmp_path: Path, result: Any) -> None:
    with pytest.raises(KmsError, match="unusable response"):
        ControlPlane(BogusKms(result)).create_container(tmp_path / "c", "alias/x")
    assert not (tmp_path / "c" / HEADER_NAME).exists()


def test_describe_missing_container(env: Env) -> None:
    with pytest.raises(ContainerNotFoundError, match="no container"):
        env.plane().describe_container(env.loc("nothing-here"))


def test_describe_malformed_header_names_the_location(env: Env) -> None:
    env.store("bad").put_bytes(HEADER_NAME, b'{"format": "envelope.container", "version": 1}')
    with pytest.raises(FormatError, match="missing field") as info:
        env.plane().describe_container(env.loc("bad"))
    assert env.store("bad").url in str(info.value)


def test_describe_unknown_version_is_unsupported(env: Env) -> None:
    env.store("v2").put_bytes(HEADER_NAME, b'{"format": "envelope.container", "version": 2}')
    with pytest.raises(UnsupportedFormatError):
        env.plane().describe_container(env.loc("v2"))


def test_describe_oversize_header_is_a_format_error(env: Env) -> None:
    env.store("big").put_bytes(HEADER_NAME, b" " * (MAX_HEADER_BYTES + 1))
    with pytest.raises(FormatError, match="larger than"):
        env.plane().describe_container(env.loc("big"))


def test_locations_in_every_form(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "ks")
    kms.create_key(alias="alias/k")
    cp = ControlPlane(kms)
    h1 = cp.create_container(tmp_path / "pathlike", "alias/k")
    h2 = cp.create_container((tmp_path / "url").as_uri(), "alias/k")
    store = open_store(tmp_path / "store")
    h3 = cp.create_container(store, "alias/k")
    assert cp.describe_container(str(tmp_path / "pathlike")) == h1
    assert cp.describe_container(tmp_path / "url") == h2
    assert cp.describe_container(store.url) == h3


# --------------------------------------------------------------------------- list


def test_list_finds_every_container_in_order_and_reports_bad_ones(env: Env) -> None:
    cp = env.plane()
    made = {
        name: cp.create_container(env.loc(*name.split("/")), env.key_alias)
        for name in ("a", "deep/er/b", "deep/c", "z")
    }
    # Inside a container anything may sit below objects/, even something named like a header.
    env.store("a").put_bytes("objects/x/container.json", b"not a header")
    env.store("broken").put_bytes(HEADER_NAME, b"{}")
    env.store("plain").put_bytes("some/file", b"no container here")

    results = list(cp.list_containers(env.root))
    base = env.store().url
    assert [r.location for r in results] == [
        f"{base}/a",
        f"{base}/broken",
        f"{base}/deep/c",
        f"{base}/deep/er/b",
        f"{base}/z",
    ]
    by_location = {r.location: r for r in results}
    for name, header in made.items():
        assert by_location[f"{base}/{name}"] == ContainerResult(location=f"{base}/{name}", header=header)
    broken = by_location[f"{base}/broken"]
    assert broken.header is None
    assert isinstance(broken.error, FormatError)
    assert not broken.ok
    with pytest.raises(FormatError):
        broken.unwrap()


def test_list_of_a_container_is_that_container(env: Env) -> None:
    cp = env.plane()
    header = cp.create_container(env.loc("only"), env.key_alias)
    assert [r.unwrap() for r in cp.list_containers(env.loc("only"))] == [header]


def test_list_of_an_empty_or_missing_root_is_empty(env: Env) -> None:
    assert list(env.plane().list_containers(env.loc("nowhere"))) == []


# --------------------------------------------------------------------------- batch


def test_batch_results_come_back_in_request_order_and_nothing_is_lost(env: Env) -> None:
    cp = env.plane()
    cp.create_container(env.loc("taken"), env.key_alias)
    requests = [
        ContainerRequest(location=env.loc(f"t{i}"), key_id=env.key_alias, encryption_context={"tenant": f"t{i}"})
        for i in range(6)
    ]
    requests.insert(2, ContainerRequest(location=env.loc("taken"), key_id=env.key_alias))
    requests.insert(4, ContainerRequest(location=env.loc("bad"), key_id=env.key_alias, labels={"": "x"}))
    requests.append(ContainerRequest(location="ftp://nowhere", key_id=env.key_alias))

    results = cp.create_containers(requests, max_workers=3)

    assert len(results) == len(requests)
    assert isinstance(results[2].error, ContainerExistsError)
    assert isinstance(results[4].error, ValidationError)
    assert isinstance(results[-1].error, ValidationError)
    assert results[-1].location == "ftp://nowhere"
    good = [r for i, r in enumerate(results) if i not in (2, 4, len(results) - 1)]
    for i, result in enumerate(good):
        header = result.unwrap()
        assert header.encryption_context["tenant"] == f"t{i}"
        assert result.location == env.store(f"t{i}").url
        assert cp.describe_container(env.loc(f"t{i}")) == header
    assert not env.store("bad").exists(HEADER_NAME)


def test_batch_with_one_location_twice_provisions_it_once(env: Env) -> None:
    requests = [ContainerRequest(location=env.loc("same"), key_id=env.key_alias) for _ in range(4)]
    results = env.plane().create_containers(requests, max_workers=4)
    winners = [r for r in results if r.ok]
    assert len(winners) == 1
    assert all(isinstance(r.error, ContainerExistsError) for r in results if not r.ok)
    assert env.store("same").get_bytes(HEADER_NAME) == winners[0].unwrap().to_json()


def test_batch_input_is_checked_before_any_work(tmp_path: Path) -> None:
    spy = CountingKms(LocalKms(tmp_path / "ks"))
    cp = ControlPlane(spy)
    good = ContainerRequest(location=str(tmp_path / "c"), key_id="alias/k")
    with pytest.raises(ValidationError, match=r"requests\[1\]"):
        cp.create_containers([good, ("not", "a request")])  # type: ignore[list-item]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValidationError, match="max_workers"):
            cp.create_containers([good], max_workers=bad)  # type: ignore[arg-type]
    assert cp.create_containers([]) == []
    assert spy.calls == []


class PerKeyFaults:
    """GenerateDataKeyWithoutPlaintext answered by script: always `code` for `bad_key` (moto has no
    key states), and KMSInternalException for the first `transient` requests for any other key."""

    def __init__(self, client: Any, bad_key: str, code: str, *, transient: int, status: int) -> None:
        self.bad_key, self.code, self.left, self.status = bad_key, code, transient, status
        self._lock = threading.Lock()
        client.meta.events.register_first("before-send.kms", self._before_send)

    def _before_send(self, request: Any, **_: Any) -> Any:
        if operation_of(request) != GENERATE:
            return None
        if json.loads(request.body)["KeyId"] == self.bad_key:
            return kms_error_response(request, self.code)
        with self._lock:
            if self.left:
                self.left -= 1
                return kms_error_response(request, "KMSInternalException", self.status)
        return None


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("DisabledException", DisabledError),
        ("KMSInvalidStateException", KMSInvalidStateError),
        ("NotFoundException", NotFoundError),
        ("InvalidKeyUsageException", InvalidKeyUsageError),
        ("InvalidGrantTokenException", InvalidGrantTokenError),
    ],
)
@pytest.mark.parametrize("internal_status", [500, 400])
def test_batch_under_kms_faults_retries_what_may_be_retried_and_reports_the_rest(
    kms_client: Any, kms_key_arn: str, s3_client: Any, bucket: str, code: str, error: type, internal_status: int
) -> None:
    bad_key = kms_client.create_key(Description="faulty")["KeyMetadata"]["Arn"]
    # Three transient failures (at the seed's HTTP 400 or real KMS's 500) on the good key, wherever they land.
    PerKeyFaults(kms_client, bad_key, code, transient=3, status=internal_status)
    sent = KmsFaults(kms_client)  # records every HTTP attempt
    cp = ControlPlane(AwsKms(kms_client, retry=NO_SLEEP), s3_client)
    keys = [kms_key_arn, bad_key, kms_key_arn, kms_key_arn, bad_key, "alias/test"]
    requests = [ContainerRequest(location=f"s3://{bucket}/c{i}", key_id=k) for i, k in enumerate(keys)]

    results = cp.create_containers(requests, max_workers=3)

    assert [r.location for r in results] == [f"s3://{bucket}/c{i}" for i in range(len(keys))]
    for result, key in zip(results, keys, strict=True):
        if key == bad_key:
            assert isinstance(result.error, error)
            assert isinstance(result.error, KmsError)
            assert result.error.code == code
            assert not open_store(result.location, s3_client=s3_client).exists(HEADER_NAME)
        else:
            assert cp.describe_container(result.location) == result.unwrap()
            assert result.unwrap().data_keys[0].key_id == kms_key_arn
    # One attempt per request, plus one retry per transient failure; none for the non-retryable ones.
    assert sent.sent == [GENERATE] * (len(keys) + 3)


# --------------------------------------------------------------------------- validation before network


class Offline:
    """A KMS and an S3 client that record every request and never send one: a blocker answers
    each with an error, so a check that let a request through shows up in `requests`."""

    def __init__(self) -> None:
        def client(service: Any) -> Any:
            return boto3.client(service, region_name="us-east-1", endpoint_url="http://127.0.0.1:9")

        self.kms, self.s3 = client("kms"), client("s3")
        self.recorders = (HttpRecorder(self.kms), HttpRecorder(self.s3))
        for c in (self.kms, self.s3):
            c.meta.events.register("before-send", lambda request, **_: kms_error_response(request, "Blocked"))

    def plane(self, **kwargs: Any) -> ControlPlane:
        for r in self.recorders:
            r.requests.clear()
        return ControlPlane(AwsKms(self.kms, retry=RetryPolicy(max_attempts=1)), self.s3, **kwargs)

    @property
    def requests(self) -> list[str]:
        return [request for r in self.recorders for request in r.requests]


@pytest.fixture(scope="module")
def offline() -> Offline:
    return Offline()


def test_offline_clients_do_record_a_valid_call(offline: Offline) -> None:
    with pytest.raises(StorageError):  # the blocker answers the first request, a HEAD of the header
        offline.plane().create_container("s3://bucket/c", "alias/test")
    assert offline.requests


BAD_ARGUMENTS: list[tuple[dict[str, Any], str]] = [
    ({"key_id": ""}, "key_id"),
    ({"key_id": "k" * 2049}, "key_id"),
    ({"key_id": 7}, "key_id"),
    ({"encryption_context": {"envelope:container-id": "x"}}, "reserved"),
    ({"encryption_context": {"aws-crypto-public-key": "x"}}, "reserved"),
    ({"encryption_context": {"k": 1}}, "encryption_context"),
    ({"encryption_context": {"": "v"}}, "encryption_context"),
    ({"encryption_context": {"k": "v" * 70_000}}, "65535"),
    ({"encryption_context": ["k"]}, "mapping"),
    ({"labels": {"k": "v" * 257}}, "labels"),
    ({"labels": {"k": 1}}, "labels"),
    ({"grant_tokens": ["t"] * 11}, "grant_tokens"),
    ({"grant_tokens": [""]}, "grant token"),
    ({"grant_tokens": "token"}, "grant_tokens"),
    ({"key_spec": "AES_128"}, "suite 0x0478 needs a 32-byte data key"),
    ({"key_spec": "RSA_2048"}, "suite 0x0478 needs a 32-byte data key"),
    ({"key_spec": None, "number_of_bytes": 16}, "suite 0x0478 needs a 32-byte data key"),
    ({"key_spec": None, "number_of_bytes": 64}, "suite 0x0478 needs a 32-byte data key"),
    ({"key_spec": None, "number_of_bytes": True}, "suite 0x0478 needs a 32-byte data key"),
    ({"key_spec": "AES_128", "number_of_bytes": 32}, "not both"),
    ({"location": "ftp://bucket/x"}, "scheme"),
    ({"location": "s3://Bad_Bucket/x"}, "bucket"),
    ({"location": ""}, "location"),
]


@pytest.mark.parametrize(("overrides", "fragment"), BAD_ARGUMENTS)
def test_bad_arguments_fail_before_any_request(offline: Offline, overrides: dict[str, Any], fragment: str) -> None:
    cp = offline.plane()
    kwargs: dict[str, Any] = {"location": "s3://bucket/c", "key_id": "alias/test", **overrides}
    with pytest.raises(ValidationError, match=fragment):
        cp.create_container(**kwargs)
    assert offline.requests == []


@pytest.mark.parametrize(
    ("factory", "fragment"),
    [
        ({"clock": lambda: datetime(2025, 1, 1)}, "timezone-aware"),
        ({"clock": lambda: "2025-01-01T00:00:00Z"}, "timezone-aware"),
        ({"id_factory": lambda: b"\x00" * 15}, "16 bytes"),
        ({"id_factory": lambda: "ABCDEF" * 6}, "container_id"),
    ],
)
def test_bad_injected_clock_or_ids_fail_before_any_request(
    offline: Offline, factory: dict[str, Any], fragment: str
) -> None:
    cp = offline.plane(**factory)
    with pytest.raises(ValidationError, match=fragment):
        cp.create_container("s3://bucket/c", "alias/test")
    assert offline.requests == []


def test_clock_in_another_zone_is_recorded_in_utc(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "ks")
    kms.create_key(alias="alias/k")
    when = datetime(2025, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=-7)))
    header = ControlPlane(kms, clock=lambda: when).create_container(tmp_path / "c", "alias/k")
    assert header.created_at == when
    assert header.created_at.tzinfo == UTC


def test_s3_location_without_an_s3_client_is_a_validation_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="s3_client"):
        ControlPlane(LocalKms(tmp_path / "ks")).describe_container("s3://bucket/c")


# --------------------------------------------------------------------------- construction


class NoProvider:
    def generate_data_key_without_plaintext(self, key_id: str, **_: Any) -> GeneratedDataKey:
        return GeneratedDataKey(
            b"\x01" * 64, "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        )


def test_provider_defaults_to_aws_kms(tmp_path: Path) -> None:
    header = ControlPlane(NoProvider()).create_container(tmp_path / "c", "alias/x")
    assert header.data_keys[0].provider == "aws-kms"
    assert repr(ControlPlane(NoProvider())) == "ControlPlane(provider='aws-kms')"


def test_constructor_rejects_what_is_not_a_generator() -> None:
    with pytest.raises(ValidationError, match="generate_data_key_without_plaintext"):
        ControlPlane(object())  # type: ignore[arg-type]
    odd = NoProvider()
    odd.provider_id = "gcp"  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="provider_id"):
        ControlPlane(odd)


def test_result_holds_exactly_one_of_header_and_error() -> None:
    with pytest.raises(AssertionError):
        ContainerResult(location="x")
