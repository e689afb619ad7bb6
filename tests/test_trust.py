"""What a data plane trusts (DESIGN §11): strict key lists, discovery filters, pinned containers.

Every refusal here is an AuthenticationError raised before any KMS call; the
tests count the Decrypt requests that reached KMS to prove it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from controlplane import ControlPlane
from dataplane import DataPlane
from dataplane.trust import KeyTrust
from envelope.errors import AuthenticationError, KmsError, ValidationError
from envelope.kms import AwsKms, LocalKms
from tests.support.counting import CountingDecryptor
from tests.support.faults import KmsFaults


@pytest.fixture
def tenants(tmp_path: Path) -> tuple[CountingDecryptor, str, Path, Path]:
    kms = LocalKms(tmp_path / "keystore")
    arn = kms.create_key(alias="alias/shared")
    acme, globex = tmp_path / "acme", tmp_path / "globex"
    for location, tenant in ((acme, "acme"), (globex, "globex")):
        ControlPlane(kms).create_container(str(location), key_id=arn, encryption_context={"tenant": tenant})
    return CountingDecryptor(kms), arn, acme, globex


def test_another_tenants_header_is_refused_when_the_context_is_pinned(tenants: Any) -> None:
    kms, arn, acme, globex = tenants
    shutil.copyfile(acme / "container.json", globex / "container.json")  # the storage-only attack
    plane = DataPlane(kms, key_ids=[arn])
    with pytest.raises(AuthenticationError, match="encryption context"):
        plane.open(str(globex), encryption_context={"tenant": "globex"})
    assert kms.decrypts == 0
    # the genuine container still opens with the same pin
    assert plane.open(str(acme), encryption_context={"tenant": "acme"}).header.encryption_context["tenant"] == "acme"
    assert kms.decrypts == 1


def test_a_pinned_container_id_must_match(tenants: Any) -> None:
    kms, arn, acme, globex = tenants
    acme_id = DataPlane(kms, key_ids=[arn]).open(str(acme), fetch_key=False).container_id
    plane = DataPlane(kms, key_ids=[arn])
    globex_id = plane.open(str(globex), fetch_key=False).container_id
    shutil.copyfile(acme / "container.json", globex / "container.json")
    with pytest.raises(AuthenticationError, match="container id"):
        plane.open(str(globex), container_id=globex_id)
    assert kms.decrypts == 0
    assert plane.open(str(acme), container_id=acme_id).container_id == acme_id


def test_a_header_under_an_untrusted_local_key_is_refused_without_a_decrypt(tenants: Any, tmp_path: Path) -> None:
    kms, arn, acme, _ = tenants
    other = kms.inner.create_key(alias="alias/attacker")
    ControlPlane(kms.inner).create_container(
        str(tmp_path / "evil"), key_id=other, encryption_context={"tenant": "acme"}
    )
    shutil.copyfile(tmp_path / "evil" / "container.json", acme / "container.json")
    with pytest.raises(AuthenticationError, match="not one of this DataPlane's key_ids"):
        DataPlane(kms, key_ids=[arn]).open(str(acme))
    assert kms.decrypts == 0
    # LocalKms's default is discovery within the keystore: it opens (documented)
    DataPlane(kms).open(str(acme))
    assert kms.decrypts == 1


# --- AWS KMS on moto: a header re-pointed to another KMS key --------------------------------------------


@pytest.fixture
def aws(kms_client: Any, s3_client: Any, bucket: str) -> dict[str, Any]:
    victim = kms_client.create_key(Description="victim")["KeyMetadata"]["Arn"]
    attacker = kms_client.create_key(Description="attacker")["KeyMetadata"]["Arn"]
    kms = AwsKms(kms_client)
    location = f"s3://{bucket}/tenants/acme"
    ControlPlane(kms, s3_client).create_container(location, key_id=victim, encryption_context={"tenant": "acme"})
    evil = f"s3://{bucket}/evil/acme"
    ControlPlane(kms, s3_client).create_container(evil, key_id=attacker, encryption_context={"tenant": "acme"})
    return {
        "client": kms_client,
        "s3": s3_client,
        "bucket": bucket,
        "kms": kms,
        "victim": victim,
        "attacker": attacker,
        "location": location,
        "faults": KmsFaults(kms_client),
    }


def _repoint(aws: dict[str, Any]) -> None:
    """The attack: copy the attacker's genuine header (same context) over the victim's."""
    s3, bucket = aws["s3"], aws["bucket"]
    body = s3.get_object(Bucket=bucket, Key="evil/acme/container.json")["Body"].read()
    s3.put_object(Bucket=bucket, Key="tenants/acme/container.json", Body=body)


def test_aws_kms_needs_a_trust_decision() -> None:
    with pytest.raises(ValidationError, match="key_ids"):
        DataPlane(AwsKms.__new__(AwsKms))


def test_a_header_repointed_to_another_kms_key_is_refused_in_strict_mode(aws: dict[str, Any]) -> None:
    _repoint(aws)
    plane = DataPlane(aws["kms"], aws["s3"], key_ids=[aws["victim"]])
    with pytest.raises(AuthenticationError, match="not one of this DataPlane's key_ids"):
        plane.open(aws["location"])
    with pytest.raises(AuthenticationError):
        plane.open(aws["location"], fetch_key=False)  # refused even before any key is needed
    assert aws["faults"].count("Decrypt") == 0


def test_discovery_mode_follows_the_header_which_is_what_the_threat_model_warns_about(aws: dict[str, Any]) -> None:
    _repoint(aws)
    # With discovery the plane decrypts under whatever key the header names: here the attacker's.
    container = DataPlane(aws["kms"], aws["s3"], discovery=True).open(aws["location"])
    assert container.header.data_keys[0].key_id == aws["attacker"]
    assert aws["faults"].count("Decrypt") == 1


def test_the_discovery_account_filter_refuses_other_accounts_before_kms(aws: dict[str, Any]) -> None:
    account = aws["victim"].split(":")[4]
    other_account = "210987654321" if account != "210987654321" else "123456789012"
    plane = DataPlane(aws["kms"], aws["s3"], discovery=True, discovery_accounts=[other_account])
    with pytest.raises(AuthenticationError, match="discovery filter"):
        plane.open(aws["location"])
    plane = DataPlane(aws["kms"], aws["s3"], discovery=True, discovery_accounts=[account], discovery_partition="aws-cn")
    with pytest.raises(AuthenticationError, match="discovery filter"):
        plane.open(aws["location"])
    assert aws["faults"].count("Decrypt") == 0
    DataPlane(aws["kms"], aws["s3"], discovery=True, discovery_accounts=[account], discovery_partition="aws").open(
        aws["location"]
    )
    assert aws["faults"].count("Decrypt") == 1


def test_strict_mode_reads_and_writes_normally(aws: dict[str, Any]) -> None:
    with DataPlane(aws["kms"], aws["s3"], key_ids=[aws["victim"]]).open(
        aws["location"], encryption_context={"tenant": "acme"}
    ) as c:
        c.put("x", b"strict")
        assert c.get("x") == b"strict"
    assert aws["faults"].count("Decrypt") == 1


# --- the strict list is multi-Region aware -------------------------------------------------------------

MRK_EAST = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
MRK_WEST = "arn:aws:kms:us-west-2:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
KEY_EAST = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
KEY_WEST = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _strict(*arns: str) -> KeyTrust:
    return KeyTrust.from_options(
        provider="aws-kms", key_ids=list(arns), discovery=False, discovery_accounts=None, discovery_partition=None
    )


def test_a_replica_of_a_trusted_multi_region_key_is_trusted() -> None:
    _strict(MRK_EAST).check(MRK_WEST, "c")
    _strict(MRK_WEST).check(MRK_EAST, "c")


def test_a_single_region_key_of_another_region_is_not() -> None:
    with pytest.raises(AuthenticationError):
        _strict(KEY_EAST).check(KEY_WEST, "c")
    with pytest.raises(AuthenticationError):
        _strict(MRK_EAST).check(MRK_EAST.replace("111122223333", "444455556666"), "c")


# --- allow_unbound: a refused foreign EDK costs one KMS call, not one per read ---------------------------


def test_a_junk_foreign_edk_costs_at_most_one_kms_call(aws: dict[str, Any]) -> None:
    plane = DataPlane(aws["kms"], aws["s3"], key_ids=[aws["victim"]], allow_unbound=True)
    container = plane.open(aws["location"])
    container.put("genuine", b"data")
    assert aws["faults"].count("Decrypt") == 1
    # A planted message: the container's context and key ARN, but an EDK KMS will not decrypt
    # (a genuine object whose encrypted data key bytes were replaced).
    s3, bucket = aws["s3"], aws["bucket"]
    stored = s3.get_object(Bucket=bucket, Key="tenants/acme/objects/genuine")["Body"].read()
    blob = container.header.data_keys[0].ciphertext
    assert stored.count(blob) == 1
    planted = stored.replace(blob, bytes(b ^ 0x5A for b in blob))
    s3.put_object(Bucket=bucket, Key="tenants/acme/objects/planted", Body=planted)
    # One error type every time (threat model: an edited EDK is an AuthenticationError), with what KMS
    # said as its cause the first time.
    with pytest.raises(AuthenticationError) as first:
        container.get("planted")
    assert isinstance(first.value.__cause__, KmsError)
    calls = aws["faults"].count("Decrypt")
    assert calls == 2
    for _ in range(5):
        with pytest.raises(AuthenticationError):
            container.get("planted")
    assert aws["faults"].count("Decrypt") == calls, "a refused foreign EDK is remembered"
    assert container.get("genuine") == b"data"
