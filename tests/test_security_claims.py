"""Security claims that a mutation audit found untested, each through the public API.

Every test here was checked against the mutation it is named after (see
scripts/mutate): it fails when that line of the library is broken and passes
on the real code. The data-key cache is exercised only through `DataPlane`,
`DataKeyCache` and `Container`, never through private names.
"""

from __future__ import annotations

import ast
import base64
import hmac
import json
import logging
import re
import tomllib
import uuid
from pathlib import Path
from typing import Any

import attrs
import boto3
import pytest
from cryptography.hazmat.primitives import constant_time

import dataplane.binding
import dataplane.format
import dataplane.plane
import dataplane.stream
from controlplane import ControlPlane
from dataplane import DataKeyCache, DataPlane, EncryptedDataKey
from dataplane.binding import BINDING_RANDOM_LENGTH, derive_binding_key, new_message_id
from dataplane.hazmat import MessageWriter
from dataplane.plane import message_provider_id
from envelope.datakey import DataKey
from envelope.errors import AccessDeniedError, AuthenticationError, DisabledError, InvalidCiphertextError
from envelope.header import HEADER_NAME, OBJECTS_PREFIX, ContainerHeader
from envelope.kms import AwsKms, LocalKms
from tests.conftest import FAST_RETRIES, REGION
from tests.support.counting import CountingDecryptor
from tests.support.faults import KmsFaults

CONTEXT = {"tenant": "acme"}


def _local_container(tmp_path: Path, name: str = "c") -> tuple[LocalKms, str]:
    kms = LocalKms(tmp_path / "ks")
    if not kms.list_keys():
        kms.create_key(alias="alias/claims")
    location = str(tmp_path / name)
    ControlPlane(kms).create_container(location, "alias/claims", encryption_context=CONTEXT)
    return kms, location


# --------------------------------------------------------------------------- the cache key


def test_a_cache_shared_by_planes_with_different_kms_objects_asks_each_kms(
    kms_client: Any, kms_key_arn: str, s3_client: Any, bucket: str
) -> None:
    """A key cached for one set of credentials is never served to a plane whose KMS refuses it."""
    location = f"s3://{bucket}/c"
    ControlPlane(AwsKms(kms_client), s3_client).create_container(location, kms_key_arn, encryption_context=CONTEXT)
    allowed = KmsFaults(kms_client)
    other_client = boto3.client("kms", region_name=REGION, config=FAST_RETRIES)
    denied = KmsFaults(other_client, KmsFaults.fail_times("AccessDeniedException", 1_000, op="Decrypt"))

    shared = DataKeyCache()
    first = DataPlane(AwsKms(kms_client), s3_client, cache=shared, discovery=True)
    first.open(location).put("doc", b"for the first plane only")
    assert allowed.count("Decrypt") == 1

    second = DataPlane(AwsKms(other_client), s3_client, cache=shared, discovery=True)
    with pytest.raises(AccessDeniedError):
        second.open(location)
    assert denied.count("Decrypt") == 1, "the second plane's KMS was never asked"
    with pytest.raises(AccessDeniedError):
        second.open(location, fetch_key=False).get("doc")
    assert denied.count("Decrypt") == 2
    # The first plane still has its key: one Decrypt in all on its side.
    assert first.open(location).get("doc") == b"for the first plane only"
    assert allowed.count("Decrypt") == 1


def test_a_warm_plane_does_not_serve_its_cached_key_for_an_edited_context(tmp_path: Path) -> None:
    """Editing the header's context in storage makes the next open go to KMS, which refuses it."""
    kms, location = _local_container(tmp_path)
    counting = CountingDecryptor(kms)
    plane = DataPlane(counting)
    plane.open(location).put("doc", b"secret")
    assert counting.decrypts == 1

    header_path = Path(location) / HEADER_NAME
    doc = json.loads(header_path.read_bytes())
    doc["encryption_context"]["tenant"] = "evil"
    header_path.write_text(json.dumps(doc), encoding="utf-8")

    with pytest.raises(InvalidCiphertextError):
        plane.open(location)
    assert counting.decrypts == 2, "the warm cache answered for a context KMS never authorized"
    # The objects still carry the original context: refused before any KMS call.
    with pytest.raises(AuthenticationError):
        plane.open(location, fetch_key=False).get("doc")
    assert counting.decrypts == 2


def test_max_messages_forces_a_fresh_decrypt_on_the_next_write(tmp_path: Path) -> None:
    kms, location = _local_container(tmp_path)
    counting = CountingDecryptor(kms)
    plane = DataPlane(counting, cache=DataKeyCache(max_messages=1))
    container = plane.open(location)
    assert counting.decrypts == 1
    container.put("one", b"1")
    assert counting.decrypts == 1
    container.put("two", b"2")  # the key has encrypted one message: KMS is asked again
    assert counting.decrypts == 2
    # ...which is when KMS re-checks the key: a disabled key takes effect within the bound.
    kms.disable_key("alias/claims")
    with pytest.raises(DisabledError):
        container.put("three", b"3")
    assert not container.exists("three")


def test_max_bytes_forces_a_fresh_decrypt_once_the_bytes_are_spent(tmp_path: Path) -> None:
    kms, location = _local_container(tmp_path)
    counting = CountingDecryptor(kms)
    plane = DataPlane(counting, cache=DataKeyCache(max_bytes=20_000))
    container = plane.open(location)
    container.put("small-1", bytes(1_000))
    container.put("small-2", bytes(1_000))
    assert counting.decrypts == 1  # well under the byte bound: still cached
    container.put("big", bytes(20_000))  # now over it
    assert counting.decrypts == 1
    container.put("after", bytes(20_000))  # a fresh Decrypt, and over the bound again
    assert counting.decrypts == 2
    kms.disable_key("alias/claims")
    with pytest.raises(DisabledError):
        container.put("refused", b"x")
    assert not container.exists("refused")


def test_usage_is_counted_per_container_not_per_plane(tmp_path: Path) -> None:
    """The usage record lands on the entry the lookup used: another container's writes do not count."""
    kms, first = _local_container(tmp_path, "first")
    _, second = _local_container(tmp_path, "second")
    counting = CountingDecryptor(kms)
    plane = DataPlane(counting, cache=DataKeyCache(max_messages=2))
    a, b = plane.open(first), plane.open(second)
    assert counting.decrypts == 2
    a.put("x", b"1")
    b.put("x", b"1")
    a.put("y", b"2")
    b.put("y", b"2")
    assert counting.decrypts == 2
    a.put("z", b"3")
    b.put("z", b"3")
    assert counting.decrypts == 4


# --------------------------------------------------------------------------- name binding


def test_an_object_from_a_container_sharing_its_data_key_is_rejected(
    kms_client: Any, kms_key_arn: str, s3_client: Any, bucket: str
) -> None:
    """Two containers holding the same data key (crafted with KMS Encrypt): a copied object is refused."""
    kms = AwsKms(kms_client)
    control = ControlPlane(kms, s3_client)
    loc_a, loc_b = f"s3://{bucket}/a", f"s3://{bucket}/b"
    header_a = control.create_container(loc_a, kms_key_arn, encryption_context=CONTEXT)
    header_b = control.create_container(loc_b, kms_key_arn, encryption_context=CONTEXT)

    # One plaintext key, wrapped under each container's own context.
    shared = kms_client.generate_data_key(
        KeyId=kms_key_arn, KeySpec="AES_256", EncryptionContext=dict(header_a.encryption_context)
    )
    for header, location, blob in (
        (header_a, loc_a, shared["CiphertextBlob"]),
        (
            header_b,
            loc_b,
            kms_client.encrypt(
                KeyId=kms_key_arn, Plaintext=shared["Plaintext"], EncryptionContext=dict(header_b.encryption_context)
            )["CiphertextBlob"],
        ),
    ):
        edk = attrs.evolve(header.data_keys[0], ciphertext=blob)
        forged: ContainerHeader = attrs.evolve(header, data_keys=(edk,))
        s3_client.put_object(Bucket=bucket, Key=f"{location.split('/', 3)[3]}/{HEADER_NAME}", Body=forged.to_json())

    plane = DataPlane(kms, s3_client, discovery=True)
    a, b = plane.open(loc_a), plane.open(loc_b)
    assert a.data_key().reveal() == b.data_key().reveal() == shared["Plaintext"]
    a.put("report.csv", b"container a's numbers")
    b.put("report.csv", b"container b's numbers")
    s3_client.copy_object(
        Bucket=bucket, Key="b/objects/report.csv", CopySource={"Bucket": bucket, "Key": "a/objects/report.csv"}
    )
    with pytest.raises(AuthenticationError):
        b.get("report.csv")
    with pytest.raises(AuthenticationError):
        b.verify("report.csv")
    assert a.get("report.csv") == b"container a's numbers"
    # What refused it: the copied message carries container a's context (which names a's id),
    # so b does not even try its key. The container id inside the message id is the second
    # line of defence; the next test isolates it.


class _Sink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.committed = False

    def write(self, data: memoryview, /) -> int:
        self.data += data
        return len(data)

    def commit(self) -> None:
        self.committed = True

    def abort(self) -> None:
        self.data.clear()


def test_a_message_bound_to_another_container_is_rejected_by_the_reader(tmp_path: Path) -> None:
    """The container id in the message id refuses a message bound to (another container, this name).

    Such a message is otherwise perfect for this container (its context, its encrypted data key,
    its key): it can only be written by a holder of the data key, so this is defence in depth
    behind the context check above, exercised through the public reader.
    """
    kms, location = _local_container(tmp_path)
    container = DataPlane(kms).open(location)
    key = container.data_key()
    (edk,) = container.header.data_keys
    message_edk = EncryptedDataKey(message_provider_id(edk.provider), edk.key_id.encode("utf-8"), edk.ciphertext)

    def forge(bound_to: str) -> bytes:
        sink = _Sink()
        with MessageWriter(
            sink,
            data_key=key,
            message_id=new_message_id(derive_binding_key(key.reveal()), bound_to, "doc"),
            encryption_context=dict(container.header.encryption_context),
            encrypted_data_keys=[message_edk],
        ) as writer:
            writer.write(b"bound elsewhere")
        assert sink.committed
        return bytes(sink.data)

    objects = Path(location) / OBJECTS_PREFIX
    objects.mkdir(exist_ok=True)
    (objects / "doc").write_bytes(forge(container.container_id))
    assert container.get("doc") == b"bound elsewhere"  # the forgery tool is right: this one is genuine

    (objects / "doc").write_bytes(forge(str(uuid.uuid4())))
    with pytest.raises(AuthenticationError):
        container.get("doc")
    with pytest.raises(AuthenticationError):
        container.verify("doc")


def test_a_message_under_another_context_is_refused_before_its_key_is_used(tmp_path: Path) -> None:
    """The container's encrypted data key alone does not make a message the container's: its context must match."""
    kms, location = _local_container(tmp_path)
    counting = CountingDecryptor(kms)
    container = DataPlane(counting).open(location)
    key = container.data_key()
    (edk,) = container.header.data_keys
    sink = _Sink()
    context = {**container.header.encryption_context, "tenant": "someone else"}
    with MessageWriter(
        sink,
        data_key=key,
        message_id=new_message_id(derive_binding_key(key.reveal()), container.container_id, "doc"),
        encryption_context=context,
        encrypted_data_keys=[
            EncryptedDataKey(message_provider_id(edk.provider), edk.key_id.encode("utf-8"), edk.ciphertext)
        ],
    ) as writer:
        writer.write(b"claims another tenant")
    objects = Path(location) / OBJECTS_PREFIX
    objects.mkdir(exist_ok=True)
    (objects / "doc").write_bytes(bytes(sink.data))
    for allow_unbound in (False, True):
        with pytest.raises(AuthenticationError):
            container.open_reader("doc", allow_unbound=allow_unbound)
    assert not container.inspect("doc").bound_to_container
    assert counting.decrypts == 1  # the open; nothing for the message


class AnswersForAnotherKey:
    """A decryptor whose answer names another key ARN than the one asked for (a broken or hostile KMS shim)."""

    def __init__(self, inner: LocalKms, other_arn: str) -> None:
        self.inner = inner
        self.provider_id = inner.provider_id
        self.other_arn = other_arn
        self.keys: list[Any] = []

    def decrypt(self, ciphertext_blob: bytes, **kwargs: Any) -> Any:
        real = self.inner.decrypt(ciphertext_blob, **kwargs)
        try:
            answer = DataKey(real.reveal(), self.other_arn)
        finally:
            real.wipe()
        self.keys.append(answer)
        return answer


def test_a_decrypt_answer_for_another_key_is_refused(tmp_path: Path) -> None:
    kms, location = _local_container(tmp_path)
    other_arn = kms.create_key(alias="alias/other")
    shim = AnswersForAnotherKey(kms, other_arn)
    with pytest.raises(AuthenticationError):
        DataPlane(shim).open(location)
    (answer,) = shim.keys
    assert answer.wiped, "the refused key was left in memory"


# --------------------------------------------------------------------------- constant-time comparisons
#
# A timing test would be flaky on a shared machine and could only ever show a leak, never its
# absence. What is checked instead: the secrets that Python code compares (the key commitment
# and the name-binding tag) go through hmac.compare_digest on the real authentication path, and
# no module that authenticates compares a tag, commitment or MAC with == / !=. Header and frame
# tags are verified inside OpenSSL by AES-GCM (InvalidTag), never by Python code.

AUTHENTICATING_MODULES = ("dataplane/format.py", "dataplane/stream.py", "dataplane/binding.py", "dataplane/plane.py")
_SECRET_OPERAND = re.compile(r"tag|commitment|\bmac\b|digest|message_id\[")


class CompareRecorder:
    """Stands in for hmac.compare_digest / bytes_eq: records the operands, answers like the real one."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes]] = []

    def __call__(self, a: Any, b: Any) -> bool:
        self.calls.append((bytes(a), bytes(b)))
        return _REAL_COMPARE_DIGEST(a, b)

    def compared(self, value: bytes) -> bool:
        return any(value in pair for pair in self.calls)


_REAL_COMPARE_DIGEST = hmac.compare_digest


@pytest.fixture
def compare_recorder(monkeypatch: pytest.MonkeyPatch) -> CompareRecorder:
    recorder = CompareRecorder()
    monkeypatch.setattr(hmac, "compare_digest", recorder)
    monkeypatch.setattr(constant_time, "bytes_eq", recorder)
    for module in (dataplane.format, dataplane.stream, dataplane.binding, dataplane.plane):
        for name in ("compare_digest", "bytes_eq"):  # a `from ... import` would bypass the module patch
            if hasattr(module, name):
                monkeypatch.setattr(module, name, recorder)
    return recorder


def test_reading_an_object_compares_commitment_and_binding_in_constant_time(
    tmp_path: Path, compare_recorder: CompareRecorder
) -> None:
    kms, location = _local_container(tmp_path)
    container = DataPlane(kms).open(location)
    container.put("doc", b"compared in constant time")
    with container.open_reader("doc") as reader:
        header = reader.header
        assert reader.read() == b"compared in constant time"
    assert compare_recorder.compared(header.commitment_key), "the key commitment was not compared in constant time"
    binding_tag = header.message_id[BINDING_RANDOM_LENGTH:]
    assert compare_recorder.compared(binding_tag), "the name-binding tag was not compared in constant time"


def test_a_refused_binding_is_refused_by_the_constant_time_comparison(
    tmp_path: Path, compare_recorder: CompareRecorder
) -> None:
    kms, location = _local_container(tmp_path)
    container = DataPlane(kms).open(location)
    container.put("doc", b"x")
    raw = (Path(location) / OBJECTS_PREFIX / "doc").read_bytes()
    (Path(location) / OBJECTS_PREFIX / "moved").write_bytes(raw)
    with pytest.raises(AuthenticationError):
        container.get("moved")
    message_id = container.inspect("moved").message_id
    assert compare_recorder.compared(bytes.fromhex(message_id)[BINDING_RANDOM_LENGTH:])


def _not_a_secret(operand: ast.expr) -> bool:
    """A length, None or a number: comparing with it reveals nothing about a secret's bytes."""
    if isinstance(operand, ast.Call) and ast.unparse(operand.func) == "len":
        return True
    return isinstance(operand, ast.Constant) and (operand.value is None or isinstance(operand.value, int))


def test_no_authenticating_module_compares_a_tag_or_commitment_with_equality() -> None:
    root = Path(__file__).resolve().parent.parent
    found = []
    for rel in AUTHENTICATING_MODULES:
        tree = ast.parse((root / rel).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            if not any(isinstance(op, ast.Eq | ast.NotEq | ast.Is | ast.IsNot) for op in node.ops):
                continue
            operands = [node.left, *node.comparators]
            if any(_SECRET_OPERAND.search(ast.unparse(o)) for o in operands) and not any(
                _not_a_secret(o) for o in operands
            ):
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_the_equality_scan_finds_a_planted_comparison() -> None:
    """The scan above can fail: it flags the comparison the library must not contain."""
    planted = ast.parse("if keys.commitment_key != header.commitment_key:\n    raise AuthenticationError\n")
    (node,) = [n for n in ast.walk(planted) if isinstance(n, ast.Compare)]
    assert _SECRET_OPERAND.search(ast.unparse(node.left))
    assert not any(_not_a_secret(o) for o in (node.left, *node.comparators))
    for harmless in ("len(tag) != 16", "header_tag is None"):
        (node,) = [n for n in ast.walk(ast.parse(harmless)) if isinstance(n, ast.Compare)]
        assert any(_not_a_secret(o) for o in (node.left, *node.comparators)), harmless


# --------------------------------------------------------------------------- log redaction


@pytest.mark.parametrize(
    ("msg", "args"),
    [
        ('Response body:\n{"KeyId": "k", "Plaintext": "%s"}', None),  # the whole body in the message
        ("Response body:\n%r", ('{"KeyId": "k", "Plaintext": "%s"}',)),  # as botocore logs it: an argument
        ("Response body:\n%r", (b'{"KeyId": "k", "Plaintext": "%s"}',)),  # ...as bytes
        (b'{"Plaintext":"%s"}', None),  # bytes as the message, no space after the colon
    ],
    ids=["message", "argument", "bytes-argument", "bytes-message"],
)
def test_a_decrypt_response_logged_by_botocore_shows_no_plaintext(
    msg: str | bytes, args: tuple[str | bytes, ...] | None, caplog: pytest.LogCaptureFixture
) -> None:
    secret = base64.b64encode(bytes(range(32)))

    def with_secret(value: str | bytes) -> str | bytes:
        return value.replace("%s", secret.decode()) if isinstance(value, str) else value.replace(b"%s", secret)

    logger = logging.getLogger("botocore.parsers")
    with caplog.at_level(logging.DEBUG, logger="botocore.parsers"):
        if args is None:
            logger.debug(with_secret(msg))
        else:
            logger.debug(msg, *(with_secret(a) for a in args))
    (record,) = [r for r in caplog.records if r.name == "botocore.parsers"]
    text = record.getMessage()
    assert secret.decode() not in text
    assert "<redacted>" in text


# --------------------------------------------------------------------------- the mutation list stays true

ROOT = Path(__file__).resolve().parent.parent


def _mutations() -> list[dict[str, Any]]:
    with (ROOT / "scripts" / "mutations.toml").open("rb") as f:
        entries: list[dict[str, Any]] = tomllib.load(f)["mutation"]
    return entries


def _test_functions(module: Path) -> set[str]:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_the_mutation_list_names_real_tests_and_the_docs_list_every_mutation() -> None:
    mutations = _mutations()
    assert len(mutations) >= 20
    doc = (ROOT / "docs" / "threat-model.md").read_text(encoding="utf-8")
    section = doc[doc.index("## Mutation testing") :]
    problems = []
    for m in mutations:
        if f"| `{m['name']}` |" not in section:
            problems.append(f"{m['name']}: not in docs/threat-model.md's table")
        for node in m["tests"]:
            module, _, name = node.partition("::")
            path = ROOT / module
            if not path.is_file() or name.split("[")[0] not in _test_functions(path):
                problems.append(f"{m['name']}: no test {node}")
    assert problems == []
    assert len({m["name"] for m in mutations}) == len(mutations)


def test_every_mutation_snippet_is_in_its_file_exactly_once() -> None:
    """A snippet that no longer matches the code makes scripts/mutate report NOT-FOUND: update it with the code."""
    problems = []
    for m in _mutations():
        path = ROOT / m["file"]
        count = path.read_text(encoding="utf-8").count(m["snippet"]) if path.is_file() else 0
        if count != 1:
            problems.append(f"{m['name']}: snippet found {count} times in {m['file']}")
    assert problems == []
