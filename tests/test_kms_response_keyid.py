"""KMS as a hostile peer: a response KeyId that is not the key asked for is refused.

KMS keys are regional, so a KMS called in one region only ever answers with a key of that
region and partition; for a key ARN it answers with exactly that ARN, for an alias ARN with a
key of the alias's account. A lying answer (another account, region, partition or key) raises
`KmsInvalidResponseError` before the control plane stores anything.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from controlplane import ControlPlane
from envelope import errors
from envelope.kms import AwsKms, LocalKms, RetryPolicy
from tests.conftest import REGION
from tests.support.crafted import CraftedKms, always, ok

ACCOUNT = "111122223333"
OTHER_ACCOUNT = "444455556666"
KEY = "1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KEY = "0987dcba-09ab-87cd-65ef-ba0987654321"
MRK = "mrk-" + "0123456789abcdef" * 2


def key_arn(key: str = KEY, *, region: str = REGION, account: str = ACCOUNT, partition: str = "aws") -> str:
    return f"arn:{partition}:kms:{region}:{account}:key/{key}"


def alias_arn(name: str = "app", *, region: str = REGION, account: str = ACCOUNT, partition: str = "aws") -> str:
    return f"arn:{partition}:kms:{region}:{account}:alias/{name}"


# (id, KeyId requested, KeyId answered, accepted?)
GENERATE_CASES = [
    ("arn-same", key_arn(), key_arn(), True),
    ("arn-other-account", key_arn(), key_arn(account=OTHER_ACCOUNT), False),
    ("arn-other-region", key_arn(), key_arn(region="us-west-2"), False),
    ("arn-other-partition", key_arn(), key_arn(partition="aws-cn"), False),
    ("arn-other-key", key_arn(), key_arn(OTHER_KEY), False),
    ("arn-other-spelling", key_arn(), key_arn(KEY.upper()), False),
    ("arn-mrk-replica", key_arn(MRK), key_arn(MRK, region="us-west-2"), False),  # generate is exact
    ("alias-arn-same-account", alias_arn(), key_arn(OTHER_KEY), True),
    ("alias-arn-other-account", alias_arn(), key_arn(account=OTHER_ACCOUNT), False),
    ("alias-arn-other-region", alias_arn(), key_arn(region="us-west-2"), False),
    ("alias-arn-other-partition", alias_arn(), key_arn(partition="aws-us-gov"), False),
    ("alias-name-client-region", "alias/app", key_arn(OTHER_KEY), True),
    ("alias-name-other-region", "alias/app", key_arn(region="eu-west-1"), False),
    ("alias-name-other-partition", "alias/app", key_arn(partition="aws-cn"), False),
    ("key-id-same", KEY, key_arn(), True),
    ("key-id-upper", KEY.upper(), key_arn(), True),
    ("key-id-other-key", KEY, key_arn(OTHER_KEY), False),
    ("key-id-other-region", KEY, key_arn(region="us-west-2"), False),
    ("key-id-other-partition", KEY, key_arn(partition="aws-cn"), False),
    ("mrk-id-same", MRK, key_arn(MRK), True),
    ("mrk-id-replica-elsewhere", MRK, key_arn(MRK, region="us-west-2"), False),
    ("answer-is-alias-arn", "alias/app", alias_arn(), False),
]


def generate_answer(key_id: str) -> tuple[int, bytes]:
    return ok({"KeyId": key_id, "CiphertextBlob": base64.b64encode(b"c" * 64).decode()})


def decrypt_answer(key_id: str) -> tuple[int, bytes]:
    return ok({"KeyId": key_id, "Plaintext": base64.b64encode(b"k" * 32).decode()})


def kms_for(client: Any) -> AwsKms:
    return AwsKms(client, retry=RetryPolicy(max_attempts=3, sleep=lambda _s: None))


@pytest.mark.parametrize(("label", "asked", "answered", "accepted"), GENERATE_CASES, ids=[c[0] for c in GENERATE_CASES])
def test_generate_refuses_an_answer_for_another_key(
    kms_client: Any, label: str, asked: str, answered: str, accepted: bool
) -> None:
    crafted = CraftedKms(kms_client, always(generate_answer(answered)))
    kms = kms_for(kms_client)
    if accepted:
        assert kms.generate_data_key_without_plaintext(asked).key_id == answered
    else:
        with pytest.raises(errors.KmsInvalidResponseError) as info:
            kms.generate_data_key_without_plaintext(asked)
        assert info.value.code == "InvalidResponse"
        assert not info.value.retryable
    assert crafted.count() == 1
    assert crafted.bodies[0]["KeyId"] == asked


DECRYPT_CASES = [
    ("no-key-id-client-region", None, key_arn(), True),
    ("no-key-id-other-region", None, key_arn(region="us-west-2"), False),
    ("no-key-id-other-partition", None, key_arn(partition="aws-cn"), False),
    ("arn-same", key_arn(), key_arn(), True),
    ("arn-other-account", key_arn(), key_arn(account=OTHER_ACCOUNT), False),
    ("arn-other-key", key_arn(), key_arn(OTHER_KEY), False),
    ("alias-arn-other-account", alias_arn(), key_arn(account=OTHER_ACCOUNT), False),
    ("alias-name-other-region", "alias/app", key_arn(region="us-west-2"), False),
    ("key-id-other-key", KEY, key_arn(OTHER_KEY), False),
]


@pytest.mark.parametrize(("label", "asked", "answered", "accepted"), DECRYPT_CASES, ids=[c[0] for c in DECRYPT_CASES])
def test_decrypt_refuses_an_answer_for_another_key(
    kms_client: Any, label: str, asked: str | None, answered: str, accepted: bool
) -> None:
    crafted = CraftedKms(kms_client, always(decrypt_answer(answered)))
    kms = kms_for(kms_client)
    if accepted:
        key = kms.decrypt(b"x" * 40, key_id=asked)
        assert key.key_id == answered
        key.wipe()
    else:
        with pytest.raises(errors.KmsInvalidResponseError):
            kms.decrypt(b"x" * 40, key_id=asked)
    assert crafted.count() == 1


def test_a_lying_generate_stores_nothing(kms_client: Any, tmp_path: Path) -> None:
    location = tmp_path / "container"
    CraftedKms(kms_client, always(generate_answer(key_arn(account=OTHER_ACCOUNT))))
    with pytest.raises(errors.KmsInvalidResponseError):
        ControlPlane(kms_for(kms_client)).create_container(str(location), key_arn())
    assert not (location / "container.json").exists()
    assert not location.exists() or list(location.rglob("*")) == []


def test_an_honest_generate_through_the_same_hook_stores_the_header(kms_client: Any, tmp_path: Path) -> None:
    # The control test: the same path with an answer for the key asked for does store a header.
    location = tmp_path / "container"
    CraftedKms(kms_client, always(generate_answer(key_arn())))
    header = ControlPlane(kms_for(kms_client)).create_container(str(location), key_arn())
    assert header.data_keys[0].key_id == key_arn()
    assert (location / "container.json").exists()


# -- LocalKms holds its keystore records to the same rule ------------------------------------


def _tamper_record(kms: LocalKms, key_uuid: str, **changes: Any) -> None:
    path = kms.path / "keys" / f"{key_uuid}.json"
    record = json.loads(path.read_bytes())
    record.update(changes)
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "wb") as f:
        f.write(json.dumps(record).encode())


@pytest.mark.parametrize(
    "forged_arn",
    [
        pytest.param(f"arn:aws:kms:local:{OTHER_ACCOUNT}:key/{{key}}", id="other-account"),
        pytest.param("arn:aws:kms:us-east-1:000000000000:key/{key}", id="other-region"),
        pytest.param("arn:aws-cn:kms:local:000000000000:key/{key}", id="other-partition"),
        pytest.param("arn:aws:kms:local:000000000000:key/" + OTHER_KEY, id="other-key"),
        pytest.param("not an arn", id="garbage"),
    ],
)
def test_local_kms_refuses_a_record_naming_another_key(local_kms: LocalKms, forged_arn: str) -> None:
    arn = local_kms.create_key(alias="alias/app")
    key_uuid = arn.rsplit("/", 1)[1]
    blob = local_kms.generate_data_key_without_plaintext(key_uuid).ciphertext_blob
    _tamper_record(local_kms, key_uuid, arn=forged_arn.replace("{key}", key_uuid))
    for asked in (key_uuid, "alias/app"):
        with pytest.raises(errors.KmsInvalidResponseError):
            local_kms.generate_data_key_without_plaintext(asked)
    with pytest.raises(errors.KmsInvalidResponseError):
        local_kms.decrypt(blob)


def test_local_kms_untampered_record_is_accepted(local_kms: LocalKms) -> None:
    arn = local_kms.create_key(alias="alias/app")
    generated = local_kms.generate_data_key_without_plaintext("alias/app")
    assert generated.key_id == arn
    key = local_kms.decrypt(generated.ciphertext_blob, key_id=arn)
    assert key.key_id == arn
    key.wipe()
