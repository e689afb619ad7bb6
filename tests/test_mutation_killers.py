"""Claims that curated mutations (scripts/mutate) showed no existing test checks by behaviour.

Each test is named in scripts/mutations.toml for the mutation it kills, and
was seen to fail with that mutation applied and to pass on the real code:

- `generation-trust-unchecked`: a container whose *older* generation is under
  an untrusted KMS key must not open (the key fetch only checks the newest);
- `generation-record-of-another-container`: another container's genuine
  record, planted as the newest generation, must be refused before KMS (KMS
  would happily decrypt it under its own context);
- `s3-put-without-if-match`, `s3-complete-without-if-match`: a conditional
  replace (one PutObject, or a multipart upload) must not overwrite a newer
  version that landed after the whole object was read;
- `reveal-without-lock`: a reveal that has begun finishes before a wipe can
  zero or detach the key (the stress test only catches that by luck);
- `unbound-own-key-not-compared`: our own message whose stored EDK was
  re-encrypted (same data key, other ciphertext: KMS ReEncrypt, no plaintext
  needed) must keep its name binding under `allow_unbound`.
"""

from __future__ import annotations

import base64
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from controlplane import ControlPlane
from dataplane import DataPlane
from envelope.datakey import DataKey
from envelope.errors import AuthenticationError, DataKeyWipedError, FormatError, ObjectChangedError
from envelope.header import HEADER_NAME
from envelope.keygen import generation_record_name
from envelope.kms import AwsKms, LocalKms
from envelope.storage.s3 import S3Store

CONTEXT = {"tenant": "acme"}


class CountingKms:
    """A LocalKms seen through a counter: every Decrypt that reaches the keystore is counted."""

    provider_id = "local"

    def __init__(self, kms: LocalKms) -> None:
        self.kms, self.decrypts = kms, 0

    def decrypt(self, ciphertext_blob: bytes, **kw: Any) -> DataKey:
        self.decrypts += 1
        return self.kms.decrypt(ciphertext_blob, **kw)


# --------------------------------------------------------------------------- the data key's lock


def test_a_reveal_that_has_begun_finishes_before_a_wipe_can_start() -> None:
    whole = b"\x11" * 32
    key = DataKey(whole, "arn:aws:kms:us-east-1:111122223333:key/k")
    inside, proceed = threading.Event(), threading.Event()
    calls = [0]

    class Gate(bytearray):
        """The key's buffer (white box): its first length check -- the reveal's -- waits for `proceed`."""

        def __len__(self) -> int:
            calls[0] += 1
            if calls[0] == 1:
                inside.set()
                proceed.wait(30)
            return super().__len__()

    key._buf = Gate(key._buf)
    outcome: list[object] = []

    def reveal() -> None:
        try:
            outcome.append(key.reveal())
        except DataKeyWipedError:
            outcome.append("wiped")

    revealing = threading.Thread(target=reveal)
    revealing.start()
    assert inside.wait(30), "the reveal never looked at the buffer"
    wiping = threading.Thread(target=key.wipe)
    wiping.start()
    # With the lock, the wipe waits for the reveal and this join runs out; an unlocked reveal would
    # let the wipe zero and detach the buffer now, under the reveal's feet.
    wiping.join(timeout=2)
    proceed.set()
    revealing.join(30)
    wiping.join(30)
    assert not revealing.is_alive() and not wiping.is_alive()
    assert outcome == [whole], "a reveal that had begun returned something other than the whole key"
    assert key.wiped


# --------------------------------------------------------------------------- generations and trust


def test_an_older_generation_under_an_untrusted_key_fails_the_open_before_kms(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "keystore")
    trusted = kms.create_key(alias="alias/trusted")
    other = kms.create_key(alias="alias/other")
    location = str(tmp_path / "c")
    cp = ControlPlane(kms)
    cp.create_container(location, key_id=trusted, encryption_context=CONTEXT)
    cp.rotate_container(location, key_id=other)  # generation 2: under a key the plane does not trust
    cp.rotate_container(location, key_id=trusted)  # generation 3, the newest: trusted again
    counting = CountingKms(kms)
    plane = DataPlane(counting, key_ids=[trusted])
    for fetch_key in (True, False):
        with pytest.raises(AuthenticationError, match="generation 2"):
            plane.open(location, fetch_key=fetch_key)
    assert counting.decrypts == 0
    # Trusting both keys, the same container opens and writes under generation 3.
    with DataPlane(counting, key_ids=[trusted, other]).open(location) as c:
        assert c.generation == 3
    assert counting.decrypts == 1


def test_a_genuine_record_of_another_container_is_refused_before_kms(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "keystore")
    key = kms.create_key(alias="alias/shared")
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    cp = ControlPlane(kms)
    for location in (ours, theirs):
        cp.create_container(str(location), key_id=key, encryption_context=CONTEXT)  # same key, same context
    cp.rotate_container(str(theirs))
    # The storage attacker plants their genuine generation 2 as ours: KMS would decrypt it (its own
    # context is intact), and our writers would then seal under the other container's data key.
    planted = ours / generation_record_name(2)
    planted.parent.mkdir(mode=0o700, exist_ok=True)
    shutil.copyfile(theirs / generation_record_name(2), planted)
    counting = CountingKms(kms)
    with pytest.raises(FormatError, match="generation record"):
        DataPlane(counting).open(str(ours))
    assert counting.decrypts == 0
    planted.unlink()
    with DataPlane(counting).open(str(ours)) as c:
        assert c.generation == 1


# --------------------------------------------------------------------------- conditional replace on S3


@pytest.mark.parametrize("threshold", [None, 1], ids=["PutObject", "multipart"])
def test_a_conditional_replace_on_s3_never_loses_a_concurrent_overwrite(
    s3_client: Any, bucket: str, threshold: int | None
) -> None:
    # The storage half of rekey's guarantee, with the overwrite landing after the whole object was read
    # (the rekey tests overwrite before the reader is done, which the reader's own pinned reads catch).
    # A threshold of 1 byte makes every write a multipart upload.
    store = S3Store(s3_client, bucket, "c", small_object_threshold=threshold)
    store.put_bytes("x", b"version one " * 10, overwrite=False)
    with store.open_reader("x") as reader:
        first = reader.version
    store.put_bytes("x", b"a concurrent overwrite " * 10, overwrite=True)
    writer = store.open_writer("x", if_match=first)
    writer.write(b"the rekeyed object " * 10)
    with pytest.raises(ObjectChangedError):
        writer.commit()
    assert store.get_bytes("x") == b"a concurrent overwrite " * 10
    # Against the version that is there now, the same replace goes through.
    with store.open_reader("x") as reader:
        current = reader.version
    with store.open_writer("x", if_match=current) as writer:
        writer.write(b"the rekeyed object " * 10)
    assert store.get_bytes("x") == b"the rekeyed object " * 10


# --------------------------------------------------------------------------- our messages keep their binding


def test_our_message_under_a_re_encrypted_stored_edk_keeps_its_binding(kms_client: Any, tmp_path: Path) -> None:
    arn = kms_client.create_key(Description="victim")["KeyMetadata"]["Arn"]
    kms = AwsKms(kms_client)
    location = tmp_path / "c"
    header = ControlPlane(kms).create_container(str(location), key_id=arn, encryption_context=CONTEXT)
    with DataPlane(kms, key_ids=[arn]).open(str(location)) as c:
        c.put("payroll/alice", b"alice salary: 100")
        c.put("payroll/mallory", b"mallory salary: 999999")

    # The attacker can write storage and call kms:ReEncrypt: the stored EDK becomes another ciphertext
    # of the same data key, so none of our messages matches the container's EDK byte for byte any more.
    doc = json.loads((location / HEADER_NAME).read_bytes())
    context = dict(header.encryption_context)
    stored = base64.b64decode(doc["data_keys"][0]["ciphertext"])
    again = kms_client.re_encrypt(
        CiphertextBlob=stored,
        SourceEncryptionContext=context,
        DestinationKeyId=arn,
        DestinationEncryptionContext=context,
    )["CiphertextBlob"]
    assert again != stored
    doc["data_keys"][0]["ciphertext"] = base64.b64encode(again).decode()
    (location / HEADER_NAME).write_text(json.dumps(doc), encoding="utf-8")
    shutil.copyfile(location / "objects/payroll/mallory", location / "objects/payroll/alice")

    with DataPlane(kms, key_ids=[arn], allow_unbound=True).open(str(location)) as c:
        assert c.inspect("payroll/mallory").bound_to_container is False  # its EDK looks foreign now
        result = c.verify("payroll/mallory")
        assert result.bound is True and result.generation == 1, "our own message lost its name binding"
        with pytest.raises(AuthenticationError):
            c.get("payroll/alice")  # mallory's object under alice's name
        assert c.get("payroll/mallory") == b"mallory salary: 999999"
