"""LocalKms names a key by its ARN exactly as it returned it, as KMS does.

A key ARN with another account, region, partition or spelling of the key id
is another key: it does not exist here (NotFoundError), so a container
header whose key ARN was changed cannot reach its data key.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from envelope.errors import NotFoundError
from envelope.kms import LocalKms


def _variants(arn: str) -> dict[str, str]:
    prefix, key_uuid = arn.rsplit("/", 1)
    return {
        "other account": arn.replace(":000000000000:", ":999999999999:"),
        "other region": arn.replace(":local:", ":us-east-1:"),
        "other partition": arn.replace("arn:aws:", "arn:aws-cn:"),
        "key id in upper case": f"{prefix}/{key_uuid.upper()}",
    }


@pytest.fixture
def kms(tmp_path: Path) -> LocalKms:
    return LocalKms(tmp_path / "ks")


@pytest.mark.parametrize("variant", list(_variants("arn:aws:kms:local:000000000000:key/x")))
def test_a_key_arn_other_than_the_stored_one_is_not_found(kms: LocalKms, variant: str) -> None:
    arn = kms.create_key()
    changed = _variants(arn)[variant]
    blob = kms.generate_data_key_without_plaintext(arn).ciphertext_blob
    with pytest.raises(NotFoundError):
        kms.generate_data_key_without_plaintext(changed)
    with pytest.raises(NotFoundError):
        kms.decrypt(blob, key_id=changed)
    with pytest.raises(NotFoundError):
        kms.describe_key(changed)


@pytest.mark.parametrize(
    "alias_arn",
    ["arn:aws:kms:local:999999999999:alias/app", "arn:aws:kms:us-east-1:000000000000:alias/app"],
)
def test_an_alias_arn_other_than_the_keystores_is_not_found(kms: LocalKms, alias_arn: str) -> None:
    kms.create_key(alias="alias/app")
    with pytest.raises(NotFoundError):
        kms.generate_data_key_without_plaintext(alias_arn)


def test_the_exact_arns_resolve(kms: LocalKms) -> None:
    arn = kms.create_key(alias="alias/app")
    blob = kms.generate_data_key_without_plaintext("arn:aws:kms:local:000000000000:alias/app").ciphertext_blob
    assert kms.decrypt(blob, key_id=arn).key_id == arn
    assert kms.decrypt(blob, key_id="arn:aws:kms:local:000000000000:alias/app").key_id == arn
