"""Every request bound of the seed, on both sides, is checked before any network call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest

from envelope.datakey import DataKey, GeneratedDataKey
from envelope.errors import AccessDeniedError, InvalidCiphertextError, KmsError, NotFoundError, ValidationError
from envelope.kms import AwsKms, LocalKms
from tests.support.faults import HttpRecorder

ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ALIAS = "alias/ExampleAlias"  # created on the test key

# Outcome of a case: OK (KMS answers), REFUSED (ValidationError, no request sent), or the typed
# error moto's KMS answers a well-formed request with (a key id that names no key, a made-up blob).
OK, REFUSED = "ok", "refused"
Outcome = str | type[KmsError]

# (label, kwargs, outcome) on both sides of every bound. "{key}" / "{uuid}" stand for the test key.
GENERATE_CASES: list[tuple[str, dict[str, Any], Outcome]] = [
    ("key_id empty", {"key_id": ""}, REFUSED),
    ("key_id 2049 chars", {"key_id": "alias/" + "a" * 2043}, REFUSED),
    ("key_id not a string", {"key_id": 12}, REFUSED),
    ("key_id garbage", {"key_id": "not a key"}, REFUSED),
    ("key_id uuid", {"key_id": "{uuid}"}, OK),
    ("key_id unknown uuid", {"key_id": "1234abcd-12ab-34cd-56ef-1234567890ab"}, NotFoundError),
    ("key_id mrk", {"key_id": "mrk-" + "a" * 32}, NotFoundError),
    ("key_id arn", {"key_id": "{key}"}, OK),
    ("key_id unknown arn", {"key_id": ARN}, NotFoundError),
    ("key_id alias", {"key_id": ALIAS}, OK),
    ("key_id alias arn", {"key_id": "arn:aws:kms:us-east-1:{account}:" + ALIAS}, OK),
    ("key_id long alias arn", {"key_id": "arn:aws:kms:us-east-1:111122223333:alias/" + "a" * 250}, NotFoundError),
    ("context not a mapping", {"encryption_context": [("a", "b")]}, REFUSED),
    ("context int value", {"encryption_context": {"a": 1}}, REFUSED),
    ("context bytes key", {"encryption_context": {b"a": "b"}}, REFUSED),
    ("context empty key", {"encryption_context": {"": "b"}}, REFUSED),
    ("context surrogate", {"encryption_context": {"a": "\udc80"}}, REFUSED),
    ("context ok", {"encryption_context": {"a": "b", "é": "ü"}}, OK),
    ("grant tokens 11", {"grant_tokens": ["t"] * 11}, REFUSED),
    ("grant tokens 10", {"grant_tokens": ["t"] * 10}, OK),
    ("grant tokens 0", {"grant_tokens": []}, OK),
    ("grant token empty", {"grant_tokens": [""]}, REFUSED),
    ("grant token 8193", {"grant_tokens": ["t" * 8193]}, REFUSED),
    ("grant token 8192", {"grant_tokens": ["t" * 8192]}, OK),
    ("grant tokens a str", {"grant_tokens": "token"}, REFUSED),
    ("grant tokens non-str", {"grant_tokens": [1]}, REFUSED),
    ("key spec bad", {"key_spec": "AES_512"}, REFUSED),
    ("key spec lower", {"key_spec": "aes_256"}, REFUSED),
    ("key spec 256", {"key_spec": "AES_256"}, OK),
    ("key spec 128", {"key_spec": "AES_128"}, OK),
    ("bytes 0", {"number_of_bytes": 0}, REFUSED),
    ("bytes 1", {"number_of_bytes": 1}, OK),
    ("bytes 1024", {"number_of_bytes": 1024}, OK),
    ("bytes 1025", {"number_of_bytes": 1025}, REFUSED),
    ("bytes bool", {"number_of_bytes": True}, REFUSED),
    ("bytes float", {"number_of_bytes": 32.0}, REFUSED),
    ("both", {"key_spec": "AES_256", "number_of_bytes": 32}, REFUSED),
]

# "{blob}" stands for a real CiphertextBlob of the test key, made under context {"a": "b"}.
DECRYPT_CASES: list[tuple[str, dict[str, Any], Outcome]] = [
    ("blob empty", {"ciphertext_blob": b""}, REFUSED),
    ("blob 6145", {"ciphertext_blob": b"x" * 6145}, REFUSED),
    ("blob str", {"ciphertext_blob": "abc"}, REFUSED),
    ("blob 1", {"ciphertext_blob": b"x"}, InvalidCiphertextError),
    # moto reads a long made-up blob's leading bytes as a key id it may not use
    ("blob 6144", {"ciphertext_blob": b"x" * 6144}, AccessDeniedError),
    ("blob real", {"ciphertext_blob": "{blob}", "encryption_context": {"a": "b"}}, OK),
    ("blob real key_id", {"ciphertext_blob": "{blob}", "encryption_context": {"a": "b"}, "key_id": "{key}"}, OK),
    (
        "blob real grant tokens 10",
        {"ciphertext_blob": "{blob}", "encryption_context": {"a": "b"}, "grant_tokens": ["t"] * 10},
        OK,
    ),
    (
        "blob real wrong context",
        {"ciphertext_blob": "{blob}", "encryption_context": {"a": "c"}},
        InvalidCiphertextError,
    ),
    ("key_id bad", {"ciphertext_blob": b"x", "key_id": "nope nope"}, REFUSED),
    ("context bad", {"ciphertext_blob": b"x", "encryption_context": {"a": None}}, REFUSED),
    ("grant tokens 11", {"ciphertext_blob": b"x", "grant_tokens": ["t"] * 11}, REFUSED),
]


@attrs.frozen
class World:
    kms: AwsKms
    recorder: HttpRecorder
    key: str
    blob: bytes

    def fill(self, value: Any) -> Any:
        if value == "{blob}":
            return self.blob
        if isinstance(value, str):
            account = self.key.split(":")[4]
            return (
                value.replace("{key}", self.key)
                .replace("{uuid}", self.key.rsplit("/", 1)[1])
                .replace("{account}", account)
            )
        return value


@pytest.fixture
def world(kms_client: Any, kms_key_arn: str) -> World:
    kms_client.create_alias(AliasName=ALIAS, TargetKeyId=kms_key_arn)
    blob = kms_client.generate_data_key_without_plaintext(
        KeyId=kms_key_arn, KeySpec="AES_256", EncryptionContext={"a": "b"}
    )
    # The recorder is attached after the setup: it sees only the request under test.
    return World(AwsKms(kms_client), HttpRecorder(kms_client), kms_key_arn, blob["CiphertextBlob"])


def _check(world: World, label: str, outcome: Outcome, call: Callable[[], object]) -> object:
    if outcome == REFUSED:
        with pytest.raises(ValidationError):
            call()
        assert world.recorder.requests == [], f"{label}: validation failed after a network call"
        return None
    if outcome == OK:
        result = call()
    else:
        assert isinstance(outcome, type)
        with pytest.raises(outcome):
            call()
        result = None
    assert len(world.recorder.requests) == 1, f"{label}: a valid request did not reach KMS exactly once"
    return result


@pytest.mark.parametrize(("label", "kwargs", "outcome"), GENERATE_CASES, ids=[c[0] for c in GENERATE_CASES])
def test_generate_bounds(world: World, label: str, kwargs: dict[str, Any], outcome: Outcome) -> None:
    args = {k: world.fill(v) for k, v in {"key_id": "{key}", **kwargs}.items()}
    key_id = args.pop("key_id")
    result = _check(world, label, outcome, lambda: world.kms.generate_data_key_without_plaintext(key_id, **args))
    if outcome == OK:
        assert isinstance(result, GeneratedDataKey)
        assert result.key_id == world.key
        assert result.ciphertext_blob


@pytest.mark.parametrize(("label", "kwargs", "outcome"), DECRYPT_CASES, ids=[c[0] for c in DECRYPT_CASES])
def test_decrypt_bounds(world: World, label: str, kwargs: dict[str, Any], outcome: Outcome) -> None:
    args = {k: world.fill(v) for k, v in kwargs.items()}
    blob = args.pop("ciphertext_blob")
    result = _check(world, label, outcome, lambda: world.kms.decrypt(blob, **args))
    if outcome == OK:
        assert isinstance(result, DataKey)
        assert len(result) == 32
        assert result.key_id == world.key


def test_every_kind_of_outcome_is_exercised() -> None:
    """The tables keep at least one request of each kind: refused, answered, and refused by KMS."""
    for cases in (GENERATE_CASES, DECRYPT_CASES):
        outcomes = [c[2] for c in cases]
        assert OK in outcomes
        assert REFUSED in outcomes
        assert any(isinstance(o, type) for o in outcomes)


@pytest.mark.parametrize(
    ("label", "kwargs", "outcome"),
    [c for c in GENERATE_CASES if c[2] == REFUSED],
    ids=[c[0] for c in GENERATE_CASES if c[2] == REFUSED],
)
def test_local_kms_refuses_the_same_inputs(tmp_path: Any, label: str, kwargs: dict[str, Any], outcome: Outcome) -> None:
    kms = LocalKms(tmp_path / "ks")
    arn = kms.create_key()
    args = {"key_id": arn, **kwargs}
    key_id = args.pop("key_id")
    with pytest.raises(ValidationError):
        kms.generate_data_key_without_plaintext(key_id, **args)


def test_error_names_the_parameter_and_range(world: World) -> None:
    kms = world.kms
    with pytest.raises(ValidationError, match=r"NumberOfBytes must be in 1\.\.1024"):
        kms.generate_data_key_without_plaintext(ARN, number_of_bytes=2000)
    with pytest.raises(ValidationError, match=r"GrantTokens must have 0\.\.10"):
        kms.generate_data_key_without_plaintext(ARN, grant_tokens=["t"] * 11)


def test_aws_kms_wants_a_kms_client() -> None:
    with pytest.raises(ValidationError, match="boto3 KMS client"):
        AwsKms(object())
