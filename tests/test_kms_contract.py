"""One contract, two KMS adapters: AwsKms on moto and LocalKms behave the same."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import pytest

from envelope.errors import (
    AccessDeniedError,
    DataKeyWipedError,
    IncorrectKeyError,
    InvalidCiphertextError,
    NotFoundError,
    ValidationError,
)
from envelope.kms import AwsKms, DataKey, LocalKms


class Kit:
    def __init__(self, kms: Any, arn: str, alias: str, other_arn: str) -> None:
        self.kms, self.arn, self.alias, self.other_arn = kms, arn, alias, other_arn

    def forms(self) -> dict[str, str]:
        key_uuid = self.arn.rsplit("/", 1)[1]
        alias_arn = self.arn.split(":key/")[0] + ":" + self.alias
        return {"key-id": key_uuid, "key-arn": self.arn, "alias-name": self.alias, "alias-arn": alias_arn}


@pytest.fixture(params=["aws", "local"])
def kit(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Kit]:
    if request.param == "aws":
        client = request.getfixturevalue("kms_client")
        arn = client.create_key()["KeyMetadata"]["Arn"]
        client.create_alias(AliasName="alias/contract", TargetKeyId=arn)
        other = client.create_key()["KeyMetadata"]["Arn"]
        yield Kit(AwsKms(client), arn, "alias/contract", other)
    else:
        kms = LocalKms(tmp_path / "ks")
        arn = kms.create_key(alias="alias/contract")
        yield Kit(kms, arn, "alias/contract", kms.create_key())


CTX = {"tenant": "acme", "purpose": "contract"}


def test_round_trip_generate_then_decrypt(kit: Kit) -> None:
    generated = kit.kms.generate_data_key_without_plaintext(kit.arn, encryption_context=CTX, key_spec="AES_256")
    blob, key_id = generated  # a NamedTuple: it unpacks
    assert key_id == kit.arn
    key = kit.kms.decrypt(blob, encryption_context=CTX, key_id=kit.arn)
    assert isinstance(key, DataKey)
    assert len(key) == 32
    assert key.key_id == kit.arn
    key2 = kit.kms.decrypt(blob, encryption_context=CTX)
    assert key.reveal() == key2.reveal()


@pytest.mark.parametrize("form", ["key-id", "key-arn", "alias-name", "alias-arn"])
def test_every_key_id_form_resolves_and_answers_with_the_key_arn(kit: Kit, form: str) -> None:
    key_id = kit.forms()[form]
    generated = kit.kms.generate_data_key_without_plaintext(key_id, encryption_context=CTX)
    assert generated.key_id == kit.arn
    assert generated.key_id.startswith("arn:")
    assert ":key/" in generated.key_id
    assert len(kit.kms.decrypt(generated.ciphertext_blob, encryption_context=CTX, key_id=key_id)) == 32


@pytest.mark.parametrize(
    "context",
    [
        {},
        {"tenant": "acme"},
        {"tenant": "acme", "purpose": "contract", "extra": "x"},
        {"tenant": "evil", "purpose": "contract"},
    ],
    ids=["missing", "subset", "extra", "wrong-value"],
)
def test_decrypt_with_a_different_context_fails(kit: Kit, context: dict[str, str]) -> None:
    blob = kit.kms.generate_data_key_without_plaintext(kit.arn, encryption_context=CTX).ciphertext_blob
    with pytest.raises(InvalidCiphertextError):
        kit.kms.decrypt(blob, encryption_context=context)


def test_tampered_blob_is_rejected(kit: Kit) -> None:
    blob = bytearray(kit.kms.generate_data_key_without_plaintext(kit.arn, encryption_context=CTX).ciphertext_blob)
    blob[-5] ^= 0x01
    with pytest.raises(InvalidCiphertextError):
        kit.kms.decrypt(bytes(blob), encryption_context=CTX)


def test_decrypt_under_the_wrong_key_id_fails(kit: Kit) -> None:
    blob = kit.kms.generate_data_key_without_plaintext(kit.arn, encryption_context=CTX).ciphertext_blob
    # real KMS says IncorrectKeyException; moto answers AccessDeniedException
    with pytest.raises((IncorrectKeyError, InvalidCiphertextError, AccessDeniedError)):
        kit.kms.decrypt(blob, encryption_context=CTX, key_id=kit.other_arn)


def test_unknown_key_is_not_found(kit: Kit) -> None:
    with pytest.raises(NotFoundError):
        kit.kms.generate_data_key_without_plaintext("alias/does-not-exist")


@pytest.mark.parametrize(
    ("spec", "nbytes", "length"), [("AES_128", None, 16), (None, 64, 64), (None, 1, 1), (None, None, 32)]
)
def test_key_sizes(kit: Kit, spec: str | None, nbytes: int | None, length: int) -> None:
    blob = kit.kms.generate_data_key_without_plaintext(kit.arn, key_spec=spec, number_of_bytes=nbytes).ciphertext_blob
    assert len(kit.kms.decrypt(blob)) == length


def test_data_key_never_shows_its_bytes(kit: Kit) -> None:
    blob = kit.kms.generate_data_key_without_plaintext(kit.arn).ciphertext_blob
    key = kit.kms.decrypt(blob)
    raw = key.reveal()
    for text in (repr(key), str(key), f"{key}", repr([key]), repr(kit.kms)):
        assert raw.hex() not in text.lower()
        assert "\\x" not in text
    with pytest.raises(TypeError):
        pickle.dumps(key)
    key.wipe()
    assert key.wiped
    with pytest.raises(DataKeyWipedError):
        key.reveal()


def test_validation_is_the_same_for_both(kit: Kit) -> None:
    with pytest.raises(ValidationError, match="KeySpec or NumberOfBytes"):
        kit.kms.generate_data_key_without_plaintext(kit.arn, key_spec="AES_256", number_of_bytes=32)
