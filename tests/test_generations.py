"""Key generations (DESIGN §12): rotate, read every generation, writers follow, records are bound.

The control plane adds a generation with one GenerateDataKeyWithoutPlaintext
call; the data plane writes under the newest one it can see and reads every
one. A tampered record is refused before KMS where the record alone proves
it, and by KMS (the context carries the generation) otherwise.
"""

from __future__ import annotations

import json
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controlplane import ControlPlane
from dataplane import DataKeyCache, DataPlane
from envelope.errors import (
    AuthenticationError,
    FormatError,
    GenerationInUseError,
    KmsError,
    ValidationError,
)
from envelope.keygen import generation_record_name
from envelope.kms import LocalKms
from tests.support.counting import CountingDecryptor


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    kms = LocalKms(tmp_path / "keystore")
    first = kms.create_key(alias="alias/first")
    second = kms.create_key(alias="alias/second")
    location = tmp_path / "acme"
    header = ControlPlane(kms).create_container(str(location), key_id=first, encryption_context={"tenant": "acme"})
    return {"kms": kms, "first": first, "second": second, "location": location, "header": header, "tmp": tmp_path}


def test_rotation_adds_one_generation_and_every_generation_stays_readable(world: dict[str, Any]) -> None:
    kms, location = world["kms"], str(world["location"])
    cp = ControlPlane(kms)
    plane = DataPlane(kms, key_ids=[world["first"], world["second"]])
    with plane.open(location) as c:
        assert c.generation == 1
        c.put("one", b"generation one")
    g2 = cp.rotate_container(location)
    assert (g2.generation, g2.key_id) == (2, world["first"])
    g3 = cp.rotate_container(location, key_id="alias/second")  # migrate to another KMS key
    assert (g3.generation, g3.key_id) == (3, world["second"])
    assert [g.generation for g in cp.list_generations(location)] == [1, 2, 3]
    assert (world["location"] / generation_record_name(3)).is_file()

    with plane.open(location) as c:
        assert c.generation == 3
        c.put("three", b"generation three")
        assert c.get("one") == b"generation one"
        assert c.get("three") == b"generation three"
        assert (c.generation_of("one"), c.generation_of("three")) == (1, 3)
        assert c.usage() == {1: 1, 3: 1}
        assert c.inspect("three").generation == 3 and c.verify("one").generation == 1
        assert [g.generation for g in c.generations()] == [1, 2, 3]


def test_a_running_writer_switches_within_max_age_and_an_old_handle_reads_new_generations(
    world: dict[str, Any],
) -> None:
    kms, location = world["kms"], str(world["location"])
    clock = Clock()
    plane = DataPlane(kms, cache=DataKeyCache(max_age=60, clock=clock))
    writer = plane.open(location)
    reader = DataPlane(kms).open(location)
    errors: list[BaseException] = []
    names: list[str] = []
    lock = threading.Lock()
    rotated = threading.Event()

    def write(t: int) -> None:
        try:
            for j in range(30):
                name = f"t{t}/{j}"
                writer.put(name, name.encode())
                with lock:
                    names.append(name)
                if t == 0 and j == 10:
                    ControlPlane(kms).rotate_container(location)
                    rotated.set()
        except BaseException as e:  # noqa: BLE001 - a worker thread's every outcome is asserted below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and rotated.is_set()
    assert writer.generation == 1, "within max_age the writer keeps the generation it saw"
    clock.now = 60.0
    assert writer.generation == 2, "after max_age it re-reads the records and follows the rotation"
    writer.put("after", b"after")
    assert reader.generation_of("after") == 2  # the old handle re-reads on a miss
    assert reader.get("after") == b"after"
    for name in names:
        assert reader.get(name) == name.encode()


def test_tampered_generation_records_are_refused(world: dict[str, Any], tmp_path: Path) -> None:
    kms, location = world["kms"], world["location"]
    cp = ControlPlane(kms)
    cp.rotate_container(str(location))
    cp.rotate_container(str(location))
    record2 = location / generation_record_name(2)
    record3 = location / generation_record_name(3)
    original2, original3 = record2.read_bytes(), record3.read_bytes()
    counting = CountingDecryptor(kms)

    def refused(expected: type[Exception]) -> None:
        before = counting.decrypts
        with pytest.raises(expected):
            DataPlane(counting).open(str(location))
        if expected is FormatError:
            assert counting.decrypts == before, "refused from the record alone: no KMS call"
        record2.write_bytes(original2)
        record3.write_bytes(original3)

    # renumbered: generation 2's record stored as generation 3
    record3.write_bytes(original2)
    refused(FormatError)
    # renumbered inside: the number and its context entry edited consistently -> KMS refuses the context
    doc = json.loads(original2)
    doc["generation"] = 3
    doc["encryption_context"]["envelope:generation"] = "3"
    record3.write_bytes(json.dumps(doc).encode())
    refused(KmsError)
    # context edited
    doc = json.loads(original2)
    doc["encryption_context"]["tenant"] = "globex"
    record2.write_bytes(json.dumps(doc).encode())
    refused(FormatError)
    # key swapped: generation 2's ciphertext in generation 3's record (the one opening decrypts)
    doc2, doc3 = json.loads(original2), json.loads(original3)
    doc3["data_keys"] = doc2["data_keys"]
    record3.write_bytes(json.dumps(doc3).encode())
    refused(KmsError)
    # moved from another container
    other = tmp_path / "other"
    cp.create_container(str(other), key_id=world["first"], encryption_context={"tenant": "acme"})
    cp.rotate_container(str(other))
    record2.write_bytes((other / generation_record_name(2)).read_bytes())
    refused(FormatError)
    # after all that, the genuine records open
    assert DataPlane(kms).open(str(location)).generation == 3


def test_a_generation_under_an_untrusted_key_is_refused_before_kms(world: dict[str, Any]) -> None:
    kms, location = world["kms"], str(world["location"])
    ControlPlane(kms).rotate_container(location, key_id=world["second"])
    counting = CountingDecryptor(kms)
    with pytest.raises(AuthenticationError, match="generation 2"):
        DataPlane(counting, key_ids=[world["first"]]).open(location)
    assert counting.decrypts == 0


def test_hiding_the_newest_record_makes_writers_use_an_older_generation_which_still_reads(
    world: dict[str, Any], tmp_path: Path
) -> None:
    # What a storage attacker gains by hiding records (docs/threat-model.md): writers fall back to an
    # older genuine generation of the same container; nothing becomes readable to anyone new.
    kms, location = world["kms"], world["location"]
    ControlPlane(kms).rotate_container(str(location))
    hidden = tmp_path / "hidden.json"
    shutil.move(location / generation_record_name(2), hidden)
    with DataPlane(kms).open(str(location)) as c:
        assert c.generation == 1
        c.put("x", b"x")
    shutil.move(hidden, location / generation_record_name(2))
    with DataPlane(kms).open(str(location)) as c:
        assert c.get("x") == b"x" and c.generation_of("x") == 1 and c.generation == 2


def _an_hour_ago() -> datetime:
    return datetime.now(UTC) - timedelta(hours=1)


def test_retiring_a_generation(world: dict[str, Any]) -> None:
    kms, location = world["kms"], str(world["location"])
    cp = ControlPlane(kms, clock=_an_hour_ago)  # rotations long past: no writer can still be on them
    plane = DataPlane(kms)
    with plane.open(location) as c:
        c.put("old", b"old")
    cp.rotate_container(location)
    cp.rotate_container(location)
    with plane.open(location) as c:
        with pytest.raises(ValidationError, match="header"):
            c.retire_generation(1)
        with pytest.raises(GenerationInUseError, match="newest"):
            c.retire_generation(3)
        with pytest.raises(ValidationError, match="no generation"):
            c.retire_generation(7)
        c.retire_generation(2)  # unused
        assert [g.generation for g in c.generations()] == [1, 3]
        assert c.get("old") == b"old"


def test_retiring_waits_while_writers_may_still_use_the_generation(world: dict[str, Any]) -> None:
    kms, location = world["kms"], str(world["location"])
    ControlPlane(kms).rotate_container(location)
    ControlPlane(kms).rotate_container(location)
    with DataPlane(kms).open(location) as c, pytest.raises(GenerationInUseError, match="running writers"):
        c.retire_generation(2)  # generation 3 is seconds old; the default max_age is 600 s


def test_a_generation_in_use_cannot_be_retired(world: dict[str, Any]) -> None:
    kms, location = world["kms"], str(world["location"])
    cp = ControlPlane(kms, clock=_an_hour_ago)
    cp.rotate_container(location)
    with DataPlane(kms).open(location) as c:
        c.put("two", b"two")
    cp.rotate_container(location)
    plane = DataPlane(kms)
    with plane.open(location) as c, pytest.raises(GenerationInUseError, match="1 object"):
        c.retire_generation(2)


def test_the_aws_encryption_sdk_decrypts_objects_of_every_generation(
    kms_client: Any, s3_client: Any, bucket: str
) -> None:
    import aws_encryption_sdk
    from aws_encryption_sdk.identifiers import CommitmentPolicy
    from aws_encryption_sdk.key_providers.kms import KMSMasterKey, KMSMasterKeyConfig

    from envelope.kms import AwsKms

    first = kms_client.create_key()["KeyMetadata"]["Arn"]
    second = kms_client.create_key()["KeyMetadata"]["Arn"]
    kms = AwsKms(kms_client)
    location = f"s3://{bucket}/tenants/acme"
    cp = ControlPlane(kms, s3_client)
    cp.create_container(location, key_id=first, encryption_context={"tenant": "acme"})
    clock = Clock()
    plane = DataPlane(kms, s3_client, key_ids=[first, second], cache=DataKeyCache(clock=clock))
    container = plane.open(location)
    container.put("g1", b"one")
    cp.rotate_container(location)
    clock.now += 600
    container.put("g2", b"two")
    cp.rotate_container(location, key_id=second)
    clock.now += 600
    container.put("g3", b"three")
    assert container.usage() == {1: 1, 2: 1, 3: 1}

    esdk = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    keys = {g.generation: g.key_id for g in container.generations()}
    assert keys == {1: first, 2: first, 3: second}
    for name, expected, generation in (("g1", b"one", 1), ("g2", b"two", 2), ("g3", b"three", 3)):
        raw = s3_client.get_object(Bucket=bucket, Key=f"tenants/acme/objects/{name}")["Body"].read()
        # the SDK's strict KMS master key for that generation's KMS key, on the same (moto) client
        master_key = KMSMasterKey(config=KMSMasterKeyConfig(key_id=keys[generation], client=kms_client))
        plaintext, header = esdk.decrypt(source=raw, key_provider=master_key)
        assert plaintext == expected
        assert header.encryption_context.get("envelope:generation", "1") == str(generation)


def test_rotation_never_takes_its_kms_key_from_a_record(world: dict[str, Any]) -> None:
    # Attacker review (LOW): a forged record under another key used to become the key of the next
    # routine rotation, generated by the control plane itself.
    kms, location = world["kms"], world["location"]
    cp = ControlPlane(kms)
    cp.rotate_container(str(location))
    doc = json.loads((location / generation_record_name(2)).read_text())
    doc["data_keys"][0]["key_id"] = world["second"]  # the attacker's key (a junk ciphertext would do)
    (location / generation_record_name(2)).write_text(json.dumps(doc))
    with pytest.raises(ValidationError, match="name the KMS key"):
        cp.rotate_container(str(location))
    assert not (location / generation_record_name(3)).exists()
    # an explicit key is the operator's decision, and after a migration rotations keep naming it
    assert cp.rotate_container(str(location), key_id=world["first"]).key_id == world["first"]


def test_only_a_message_claiming_a_newer_generation_makes_a_reader_re_read_the_records(
    world: dict[str, Any], tmp_path: Path
) -> None:
    kms, location = world["kms"], world["location"]
    reader = DataPlane(kms).open(str(location))
    listings: list[str] = []
    real_list = reader._store.list

    def counting_list(prefix: str = "") -> Any:
        listings.append(prefix)
        return real_list(prefix)

    reader._store.list = counting_list  # type: ignore[method-assign]
    other = tmp_path / "other"
    ControlPlane(kms).create_container(str(other), key_id=world["first"])
    with DataPlane(kms).open(str(other)) as c:
        c.put("junk", b"from another container")
    (location / "objects").mkdir(exist_ok=True)
    shutil.copyfile(other / "objects" / "junk", location / "objects" / "junk")
    for _ in range(3):
        with pytest.raises(AuthenticationError):
            reader.get("junk")
    assert listings == [], "a foreign message must not cost a re-read of the generation records"
    ControlPlane(kms).rotate_container(str(location))
    with DataPlane(kms).open(str(location)) as writer:
        writer.put("new", b"generation two")
    assert reader.get("new") == b"generation two"  # claims generation 2: one re-read
    assert listings == ["keys/"]
