"""Multi-Region keys: AwsKms in region R decrypts under the MRK replica of R (DESIGN §12).

The request/response contract is tested with crafted answers and botocore's Stubber: the KeyId
sent is the stored ARN rewritten to the client's region, the answer must name exactly that ARN,
and a single-Region key of another region fails before any call.

End to end, moto needs help: its multi-Region key ids (`mrk-` + a dashed UUID) are not the form
real KMS uses (`mrk-` + 32 hex digits), which envelope's validation refuses. The `mrk` fixture
renames a moto MRK to the real form inside moto's backend (its ciphertext blob format has room
for exactly 36 characters of key id, which `mrk-` + 32 hex is) and replicates it to a second
region, where moto's replica shares the primary's key material as a real replica does. With it,
a container created in one region is read in another, and the AWS Encryption SDK's MRK-aware
strict provider (the oracle) decrypts an object envelope wrote, through the replica.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import aws_encryption_sdk
import boto3
import botocore.session
import pytest
from aws_encryption_sdk.identifiers import CommitmentPolicy
from aws_encryption_sdk.key_providers.kms import MRKAwareStrictAwsKmsMasterKeyProvider
from botocore.stub import Stubber

from controlplane import ControlPlane
from dataplane import DataPlane
from envelope import errors
from envelope.kms import AwsKms, RetryPolicy
from envelope.kmsarn import mrk_match, parse_key_arn
from tests.support.crafted import CraftedKms, always, ok
from tests.support.faults import HttpRecorder

EAST, WEST = "us-east-1", "us-west-2"
ACCOUNT = "111122223333"
MRK_ID = "mrk-" + "0123456789abcdef" * 2
OTHER_MRK_ID = "mrk-" + "fedcba9876543210" * 2
SRK_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
CONTEXT = {"tenant": "acme"}


def arn(key: str, region: str, account: str = ACCOUNT, partition: str = "aws") -> str:
    return f"arn:{partition}:kms:{region}:{account}:key/{key}"


def no_sleep() -> RetryPolicy:
    return RetryPolicy(max_attempts=2, sleep=lambda _s: None)


def decrypt_answer(key_id: str) -> tuple[int, bytes]:
    return ok({"KeyId": key_id, "Plaintext": base64.b64encode(b"k" * 32).decode()})


@pytest.fixture
def west_client(moto_aws: None) -> Any:
    return boto3.client("kms", region_name=WEST)


# -- the request/response contract ---------------------------------------------------------


def test_mrk_of_another_region_is_asked_of_the_replica_in_the_client_region(west_client: Any) -> None:
    stored, replica = arn(MRK_ID, EAST), arn(MRK_ID, WEST)
    crafted = CraftedKms(west_client, always(decrypt_answer(replica)))
    key = AwsKms(west_client).decrypt(b"x" * 40, key_id=stored, encryption_context=CONTEXT)
    assert crafted.bodies[0]["KeyId"] == replica
    assert crafted.bodies[0]["EncryptionContext"] == CONTEXT
    # The data key is the stored key's (the same MRK): callers comparing it to the header match.
    assert key.key_id == stored
    assert mrk_match(key.key_id, replica)
    key.wipe()


@pytest.mark.parametrize(
    "answered",
    [
        pytest.param(arn(MRK_ID, EAST), id="the-stored-arn-not-the-one-asked"),
        pytest.param(arn(OTHER_MRK_ID, WEST), id="another-mrk"),
        pytest.param(arn(MRK_ID, WEST, account="444455556666"), id="replica-of-another-account"),
        pytest.param(arn(MRK_ID, "eu-west-1"), id="a-third-region"),
        pytest.param(arn(MRK_ID, WEST, partition="aws-cn"), id="another-partition"),
    ],
)
def test_mrk_answer_must_name_exactly_the_replica_asked_for(west_client: Any, answered: str) -> None:
    crafted = CraftedKms(west_client, always(decrypt_answer(answered)))
    with pytest.raises(errors.KmsInvalidResponseError):
        AwsKms(west_client, retry=no_sleep()).decrypt(b"x" * 40, key_id=arn(MRK_ID, EAST))
    assert crafted.count() == 1


def test_single_region_key_of_another_region_fails_before_any_call(west_client: Any) -> None:
    recorder = HttpRecorder(west_client)
    stored = arn(SRK_ID, EAST)
    with pytest.raises(errors.KeyRegionMismatchError) as info:
        AwsKms(west_client).decrypt(b"x" * 40, key_id=stored)
    err = info.value
    assert isinstance(err, errors.ValidationError)
    assert (err.key_region, err.client_region, err.key_arn) == (EAST, WEST, stored)
    assert EAST in str(err) and WEST in str(err)
    assert recorder.requests == []


def test_mrk_of_another_partition_fails_before_any_call(moto_aws: None) -> None:
    client = boto3.client("kms", region_name="cn-north-1")
    assert client.meta.partition == "aws-cn"
    recorder = HttpRecorder(client)
    with pytest.raises(errors.KeyRegionMismatchError):
        AwsKms(client).decrypt(b"x" * 40, key_id=arn(MRK_ID, EAST))
    assert recorder.requests == []


@pytest.mark.parametrize(
    "key_id",
    [
        pytest.param(arn(MRK_ID, WEST), id="mrk-arn-same-region"),
        pytest.param(arn(SRK_ID, WEST), id="srk-arn-same-region"),
        pytest.param(MRK_ID, id="bare-mrk-id"),
        pytest.param("alias/app", id="alias-name"),
    ],
)
def test_key_ids_of_the_client_region_are_sent_unchanged(west_client: Any, key_id: str) -> None:
    answer = key_id if key_id.startswith("arn:") else arn(MRK_ID, WEST)
    crafted = CraftedKms(west_client, always(decrypt_answer(answer)))
    key = AwsKms(west_client).decrypt(b"x" * 40, key_id=key_id)
    assert crafted.bodies[0]["KeyId"] == key_id
    assert key.key_id == answer
    key.wipe()


def test_generate_never_rewrites_an_mrk(west_client: Any) -> None:
    # The control plane stores what KMS returns for the key it named: no replica substitution.
    stored = arn(MRK_ID, EAST)
    blob = base64.b64encode(b"c" * 64).decode()
    crafted = CraftedKms(west_client, always(ok({"KeyId": arn(MRK_ID, WEST), "CiphertextBlob": blob})))
    with pytest.raises(errors.KmsInvalidResponseError):
        AwsKms(west_client, retry=no_sleep()).generate_data_key_without_plaintext(stored)
    assert crafted.bodies[0]["KeyId"] == stored


def test_stubber_contract_for_mrk_decrypt(moto_aws: None) -> None:
    # The same contract through botocore's Stubber: exact request parameters, then the answer.
    client = boto3.client("kms", region_name=WEST)
    stored, replica = arn(MRK_ID, EAST), arn(MRK_ID, WEST)
    blob = b"\x01" * 40
    with Stubber(client) as stub:
        stub.add_response(
            "decrypt",
            {"KeyId": replica, "Plaintext": b"k" * 32},
            expected_params={"CiphertextBlob": blob, "KeyId": replica, "EncryptionContext": CONTEXT},
        )
        stub.add_response("decrypt", {"KeyId": stored, "Plaintext": b"k" * 32})
        kms = AwsKms(client, retry=no_sleep())
        key = kms.decrypt(blob, key_id=stored, encryption_context=CONTEXT)
        assert key.key_id == stored
        key.wipe()
        with pytest.raises(errors.KmsInvalidResponseError):
            kms.decrypt(blob, key_id=stored)
        stub.assert_no_pending_responses()


# -- end to end through moto, with the AWS Encryption SDK as the oracle ----------------------


@pytest.fixture
def mrk(moto_aws: None) -> dict[str, str]:
    """A multi-Region key with a real-form id in us-east-1 and its replica in us-west-2 (moto)."""
    from moto.kms.models import kms_backends

    east = boto3.client("kms", region_name=EAST)
    meta = east.create_key(MultiRegion=True, Description="envelope MRK test")["KeyMetadata"]
    backend = kms_backends[meta["AWSAccountId"]][EAST]
    key = backend.keys.pop(meta["KeyId"])
    key.id = MRK_ID
    key.arn = key.arn.replace(meta["KeyId"], MRK_ID)
    key.multi_region_configuration["PrimaryKey"]["Arn"] = key.arn
    backend.keys[MRK_ID] = key
    replica = backend.replicate_key(MRK_ID, WEST)
    primary = parse_key_arn(key.arn)
    assert replica.arn == primary.in_region(WEST)
    return {"east": key.arn, "west": replica.arn}


def data_plane(kms: AwsKms, key_arn: str) -> DataPlane:
    return DataPlane(kms, key_ids=[key_arn])  # strict (DESIGN §11), matched MRK-aware


@pytest.mark.parametrize("trusted", ["east", "west"], ids=["trusting-the-stored-arn", "trusting-the-replica"])
def test_container_made_in_one_region_is_read_in_another(mrk: dict[str, str], tmp_path: Path, trusted: str) -> None:
    east_client = boto3.client("kms", region_name=EAST)
    west_client = boto3.client("kms", region_name=WEST)
    location = str(tmp_path / "c")
    header = ControlPlane(AwsKms(east_client)).create_container(location, mrk["east"], encryption_context=CONTEXT)
    assert header.data_keys[0].key_id == mrk["east"]
    data = os.urandom(10_000)
    with data_plane(AwsKms(east_client), mrk["east"]).open(location) as c:
        c.put("obj", data)

    east_sent, west_sent = CraftedKms(east_client, always(None)), CraftedKms(west_client, always(None))
    with data_plane(AwsKms(west_client), mrk[trusted]).open(location) as c:
        assert c.get("obj") == data
    assert east_sent.count() == 0
    assert west_sent.sent == ["Decrypt"]
    assert west_sent.bodies[0]["KeyId"] == mrk["west"]


def test_single_region_key_container_is_refused_in_another_region(moto_aws: None, tmp_path: Path) -> None:
    east_client = boto3.client("kms", region_name=EAST)
    west_client = boto3.client("kms", region_name=WEST)
    key_arn = east_client.create_key()["KeyMetadata"]["Arn"]
    location = str(tmp_path / "c")
    ControlPlane(AwsKms(east_client)).create_container(location, key_arn)
    recorder = HttpRecorder(west_client)
    with pytest.raises(errors.KeyRegionMismatchError):
        data_plane(AwsKms(west_client), key_arn).open(location)
    assert recorder.requests == []


def test_esdk_mrk_aware_provider_decrypts_through_the_replica(mrk: dict[str, str], tmp_path: Path) -> None:
    east_client = boto3.client("kms", region_name=EAST)
    location = str(tmp_path / "c")
    ControlPlane(AwsKms(east_client)).create_container(location, mrk["east"], encryption_context=CONTEXT)
    data = os.urandom(5000)
    with data_plane(AwsKms(east_client), mrk["east"]).open(location) as c:
        c.put("obj", data)
        raw = c._objects.get_bytes("obj")

    session = botocore.session.Session()
    sent: list[tuple[str, str]] = []

    def record(request: Any, **_: Any) -> None:
        sent.append((request.url, json.loads(request.body)["KeyId"]))

    session.register("request-created.kms.Decrypt", record)
    provider = MRKAwareStrictAwsKmsMasterKeyProvider(key_ids=[mrk["west"]], botocore_session=session)
    esdk = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    plaintext, header = esdk.decrypt(source=raw, key_provider=provider)
    assert plaintext == data
    assert [edk.key_provider.key_info.decode() for edk in header.encrypted_data_keys] == [mrk["east"]]
    assert sent == [(f"https://kms.{WEST}.amazonaws.com/", mrk["west"])]
