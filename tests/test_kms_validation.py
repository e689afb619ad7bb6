"""Every request bound of the seed, on both sides, is checked before any network call."""

from __future__ import annotations

from typing import Any

import pytest

from envelope.errors import ValidationError
from envelope.kms import AwsKms, LocalKms
from tests.support.faults import HttpRecorder

ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

# (kwargs, valid?) pairs on both sides of every bound
GENERATE_CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("key_id empty", {"key_id": ""}, False),
    ("key_id 2049 chars", {"key_id": "alias/" + "a" * 2043}, False),
    ("key_id not a string", {"key_id": 12}, False),
    ("key_id garbage", {"key_id": "not a key"}, False),
    ("key_id uuid", {"key_id": "1234abcd-12ab-34cd-56ef-1234567890ab"}, True),
    ("key_id mrk", {"key_id": "mrk-" + "a" * 32}, True),
    ("key_id arn", {"key_id": ARN}, True),
    ("key_id alias", {"key_id": "alias/ExampleAlias"}, True),
    ("key_id alias arn", {"key_id": "arn:aws:kms:us-east-2:111122223333:alias/ExampleAlias"}, True),
    ("key_id long alias arn", {"key_id": "arn:aws:kms:us-east-2:111122223333:alias/" + "a" * 250}, True),
    ("context not a mapping", {"encryption_context": [("a", "b")]}, False),
    ("context int value", {"encryption_context": {"a": 1}}, False),
    ("context bytes key", {"encryption_context": {b"a": "b"}}, False),
    ("context empty key", {"encryption_context": {"": "b"}}, False),
    ("context surrogate", {"encryption_context": {"a": "\udc80"}}, False),
    ("context ok", {"encryption_context": {"a": "b", "é": "ü"}}, True),
    ("grant tokens 11", {"grant_tokens": ["t"] * 11}, False),
    ("grant tokens 10", {"grant_tokens": ["t"] * 10}, True),
    ("grant tokens 0", {"grant_tokens": []}, True),
    ("grant token empty", {"grant_tokens": [""]}, False),
    ("grant token 8193", {"grant_tokens": ["t" * 8193]}, False),
    ("grant token 8192", {"grant_tokens": ["t" * 8192]}, True),
    ("grant tokens a str", {"grant_tokens": "token"}, False),
    ("grant tokens non-str", {"grant_tokens": [1]}, False),
    ("key spec bad", {"key_spec": "AES_512"}, False),
    ("key spec lower", {"key_spec": "aes_256"}, False),
    ("key spec 256", {"key_spec": "AES_256"}, True),
    ("key spec 128", {"key_spec": "AES_128"}, True),
    ("bytes 0", {"number_of_bytes": 0}, False),
    ("bytes 1", {"number_of_bytes": 1}, True),
    ("bytes 1024", {"number_of_bytes": 1024}, True),
    ("bytes 1025", {"number_of_bytes": 1025}, False),
    ("bytes bool", {"number_of_bytes": True}, False),
    ("bytes float", {"number_of_bytes": 32.0}, False),
    ("both", {"key_spec": "AES_256", "number_of_bytes": 32}, False),
]

DECRYPT_CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("blob empty", {"ciphertext_blob": b""}, False),
    ("blob 6145", {"ciphertext_blob": b"x" * 6145}, False),
    ("blob str", {"ciphertext_blob": "abc"}, False),
    ("blob 1", {"ciphertext_blob": b"x"}, True),
    ("blob 6144", {"ciphertext_blob": b"x" * 6144}, True),
    ("key_id bad", {"ciphertext_blob": b"x", "key_id": "nope nope"}, False),
    ("context bad", {"ciphertext_blob": b"x", "encryption_context": {"a": None}}, False),
    ("grant tokens 11", {"ciphertext_blob": b"x", "grant_tokens": ["t"] * 11}, False),
]


@pytest.fixture
def recorded_aws(kms_client: Any) -> tuple[AwsKms, HttpRecorder]:
    return AwsKms(kms_client), HttpRecorder(kms_client)


@pytest.mark.parametrize(("label", "kwargs", "valid"), GENERATE_CASES, ids=[c[0] for c in GENERATE_CASES])
def test_generate_bounds(
    recorded_aws: tuple[AwsKms, HttpRecorder], label: str, kwargs: dict[str, Any], valid: bool
) -> None:
    kms, recorder = recorded_aws
    args = {"key_id": ARN, **kwargs}
    key_id = args.pop("key_id")
    try:
        kms.generate_data_key_without_plaintext(key_id, **args)
    except ValidationError:
        assert not valid, f"{label}: a valid request was refused"
        assert recorder.requests == [], "validation failed after a network call"
        return
    except Exception:
        # a valid request reached (moto) KMS, which may refuse the made-up key: that is fine here
        pass
    assert valid, f"{label}: an invalid request was not refused"
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(("label", "kwargs", "valid"), DECRYPT_CASES, ids=[c[0] for c in DECRYPT_CASES])
def test_decrypt_bounds(
    recorded_aws: tuple[AwsKms, HttpRecorder], label: str, kwargs: dict[str, Any], valid: bool
) -> None:
    kms, recorder = recorded_aws
    blob = kwargs.pop("ciphertext_blob")
    try:
        kms.decrypt(blob, **kwargs)
    except ValidationError:
        assert not valid, f"{label}: a valid request was refused"
        assert recorder.requests == []
        return
    except Exception:
        pass
    assert valid, f"{label}: an invalid request was not refused"
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(
    ("label", "kwargs", "valid"),
    [c for c in GENERATE_CASES if not c[2]],
    ids=[c[0] for c in GENERATE_CASES if not c[2]],
)
def test_local_kms_refuses_the_same_inputs(tmp_path: Any, label: str, kwargs: dict[str, Any], valid: bool) -> None:
    kms = LocalKms(tmp_path / "ks")
    arn = kms.create_key()
    args = {"key_id": arn, **kwargs}
    key_id = args.pop("key_id")
    with pytest.raises(ValidationError):
        kms.generate_data_key_without_plaintext(key_id, **args)


def test_error_names_the_parameter_and_range(recorded_aws: tuple[AwsKms, HttpRecorder]) -> None:
    kms, _ = recorded_aws
    with pytest.raises(ValidationError, match=r"NumberOfBytes must be in 1\.\.1024"):
        kms.generate_data_key_without_plaintext(ARN, number_of_bytes=2000)
    with pytest.raises(ValidationError, match=r"GrantTokens must have 0\.\.10"):
        kms.generate_data_key_without_plaintext(ARN, grant_tokens=["t"] * 11)


def test_aws_kms_wants_a_kms_client() -> None:
    with pytest.raises(ValidationError, match="boto3 KMS client"):
        AwsKms(object())
