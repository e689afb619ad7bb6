"""The trust boundary holds over the whole key lifecycle: the control plane's rotations send only
GenerateDataKeyWithoutPlaintext, the data plane's rekey and retire send only Decrypt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from controlplane import ControlPlane
from dataplane import DataPlane
from envelope.kms import AwsKms
from tests.support.faults import KmsFaults


def test_every_kms_request_of_the_lifecycle_is_the_planes_one_operation(
    kms_client: Any, s3_client: Any, bucket: str
) -> None:
    first = kms_client.create_key()["KeyMetadata"]["Arn"]
    second = kms_client.create_key()["KeyMetadata"]["Arn"]
    kms_client.create_alias(AliasName="alias/second", TargetKeyId=second)
    location = f"s3://{bucket}/tenants/acme"
    faults = KmsFaults(kms_client)
    kms = AwsKms(kms_client)
    an_hour_ago = lambda: datetime.now(UTC) - timedelta(hours=1)  # noqa: E731
    control = ControlPlane(kms, s3_client, clock=an_hour_ago)

    control.create_container(location, key_id=first, encryption_context={"tenant": "acme"})
    plane = DataPlane(kms, s3_client, key_ids=[first, second])
    with plane.open(location) as c:
        c.put("x", b"generation one")
    control.rotate_container(location)
    control.rotate_container(location, key_id="alias/second")
    assert [g.generation for g in control.list_generations(location)] == [1, 2, 3]
    control_requests = list(faults.sent)
    assert set(control_requests) <= {"GenerateDataKeyWithoutPlaintext", "Decrypt"}
    assert control_requests.count("GenerateDataKeyWithoutPlaintext") == 3  # create + two rotations

    faults.sent.clear()
    with DataPlane(kms, s3_client, key_ids=[first, second]).open(location) as c:
        assert c.rekey_all().rekeyed == ("x",)
        c.retire_generation(2)
        assert c.get("x") == b"generation one"
    assert set(faults.sent) == {"Decrypt"}


def test_the_control_plane_alone_sends_only_generate(kms_client: Any, s3_client: Any, bucket: str) -> None:
    arn = kms_client.create_key()["KeyMetadata"]["Arn"]
    faults = KmsFaults(kms_client)
    control = ControlPlane(AwsKms(kms_client), s3_client)
    location = f"s3://{bucket}/c"
    control.create_container(location, key_id=arn)
    for _ in range(3):
        control.rotate_container(location)
    control.list_generations(location)
    control.describe_container(location)
    assert faults.sent == ["GenerateDataKeyWithoutPlaintext"] * 4
