"""The AWS Encryption SDK as an oracle, both directions, through KMS (moto).

Objects we write must decrypt byte-identical with the Python ESDK's strict
KMS master key (the container's key ARN, the container's boto3 client); and
0x0478 messages the ESDK writes with the container's context must read back
through our container — only with `allow_unbound=True`.
"""

from __future__ import annotations

import io
import os
from typing import Any

import aws_encryption_sdk
import pytest
from aws_encryption_sdk.identifiers import Algorithm, CommitmentPolicy
from aws_encryption_sdk.key_providers.kms import KMSMasterKey, KMSMasterKeyConfig

from controlplane import ControlPlane
from dataplane import DataPlane
from envelope.errors import AuthenticationError
from envelope.kms import AwsKms
from tests.support.faults import KmsFaults

SUITE = Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY
CONTEXT = {"tenant": "acme", "purpose": "oracle"}


@pytest.fixture
def setup(kms_client: Any, s3_client: Any, bucket: str) -> dict[str, Any]:
    arn = kms_client.create_key()["KeyMetadata"]["Arn"]
    kms = AwsKms(kms_client)
    location = f"s3://{bucket}/tenants/acme"
    header = ControlPlane(kms, s3_client).create_container(location, key_id=arn, encryption_context=CONTEXT)
    esdk = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    master_key = KMSMasterKey(config=KMSMasterKeyConfig(key_id=arn, client=kms_client))
    return {
        "arn": arn,
        "kms": kms,
        "kms_client": kms_client,
        "s3": s3_client,
        "location": location,
        "header": header,
        "esdk": esdk,
        "master_key": master_key,
    }


@pytest.mark.parametrize(
    ("size", "frame_length"),
    [
        (0, 4096),
        (1, 4096),
        (4096, 4096),
        (4097, 4096),
        (100_000, 1024),
        (10_000, 16),
        (3 << 20, 1 << 20),
        (70_000, 65536),
    ],
)
def test_esdk_decrypts_what_we_write(setup: dict[str, Any], size: int, frame_length: int) -> None:
    data = os.urandom(size)
    plane = DataPlane(setup["kms"], setup["s3"], frame_length=frame_length, key_ids=[setup["arn"]])
    with plane.open(setup["location"]) as c:
        c.put("obj", data)
        raw = c._objects.get_bytes("obj")
    plaintext, header = setup["esdk"].decrypt(source=raw, key_provider=setup["master_key"])
    assert plaintext == data
    assert header.algorithm == SUITE
    assert dict(header.encryption_context) == dict(setup["header"].encryption_context)
    assert header.frame_length == frame_length


def test_esdk_streaming_decrypt_of_a_multi_frame_object(setup: dict[str, Any]) -> None:
    data = os.urandom(200_000)
    with DataPlane(setup["kms"], setup["s3"], frame_length=4096, key_ids=[setup["arn"]]).open(setup["location"]) as c:
        with c.open_writer("s") as w:
            for i in range(0, len(data), 9999):
                w.write(data[i : i + 9999])
        raw = c._objects.get_bytes("s")
    out = io.BytesIO()
    with setup["esdk"].stream(mode="d", source=io.BytesIO(raw), key_provider=setup["master_key"]) as dec:
        for chunk in dec:
            out.write(chunk)
    assert out.getvalue() == data


def _esdk_message(setup: dict[str, Any], data: bytes, context: dict[str, str], frame_length: int = 4096) -> bytes:
    ciphertext, _ = setup["esdk"].encrypt(
        source=data,
        key_provider=setup["master_key"],
        encryption_context=context,
        algorithm=SUITE,
        frame_length=frame_length,
    )
    return bytes(ciphertext)


def test_we_read_what_the_esdk_writes_only_when_allowed(setup: dict[str, Any]) -> None:
    data = os.urandom(20_000)
    context = dict(setup["header"].encryption_context)
    message = _esdk_message(setup, data, context)
    faults = KmsFaults(setup["kms_client"])
    strict = DataPlane(setup["kms"], setup["s3"], key_ids=[setup["arn"]])
    with strict.open(setup["location"]) as c:
        c._objects.put_bytes("from-esdk", message)
        decrypts_before = faults.count("Decrypt")
        with pytest.raises(AuthenticationError):
            c.get("from-esdk")
        assert faults.count("Decrypt") == decrypts_before, "an unbound message reached KMS without the opt-in"
        with c.open_reader("from-esdk", allow_unbound=True) as r:
            assert r.read() == data
    with DataPlane(setup["kms"], setup["s3"], allow_unbound=True, key_ids=[setup["arn"]]).open(setup["location"]) as c:
        assert c.get("from-esdk") == data
        assert not c.verify("from-esdk").bound


def test_unbound_message_with_another_context_is_rejected_even_when_allowed(setup: dict[str, Any]) -> None:
    context = dict(setup["header"].encryption_context)
    context["tenant"] = "someone-else"
    message = _esdk_message(setup, b"not yours", context)
    faults = KmsFaults(setup["kms_client"])
    with DataPlane(setup["kms"], setup["s3"], allow_unbound=True, key_ids=[setup["arn"]]).open(setup["location"]) as c:
        c._objects.put_bytes("foreign", message)
        before = faults.count("Decrypt")
        with pytest.raises(AuthenticationError):
            c.get("foreign")
        assert faults.count("Decrypt") == before
