"""`allow_unbound` never strips our own objects of their name binding (attacker review, HIGH).

The attack: after a rotation, replace generation 1's stored EDK in
container.json with junk (unauthenticated, and no longer decrypted at open),
so that our own generation-1 messages no longer match any generation
exactly; then move one object over another. The unbound path used to
decrypt the message's own (genuine) EDK and read it without its binding,
and `rekey_all` then re-bound the moved object to its new name for good.
Now a message under one of our generations' keys keeps its binding whatever
its EDK bytes look like, a tampered stored EDK fails at KMS, and `rekey`
refuses to bind truly unbound messages unless asked.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest

from controlplane import ControlPlane
from dataplane import DataPlane
from dataplane.hazmat import MessageWriter
from dataplane.materials import message_provider_id
from envelope.errors import AuthenticationError, EnvelopeError, UnboundObjectError
from envelope.kms import LocalKms


def _setup(tmp_path: Path) -> tuple[LocalKms, str, Path]:
    kms = LocalKms(tmp_path / "keystore")
    arn = kms.create_key(alias="alias/victim")
    location = tmp_path / "c"
    ControlPlane(kms).create_container(str(location), key_id=arn, encryption_context={"tenant": "acme"})
    with DataPlane(kms, key_ids=[arn]).open(str(location)) as c:
        c.put("payroll/alice", b"alice salary: 100")
        c.put("payroll/mallory", b"mallory salary: 999999")
    ControlPlane(kms).rotate_container(str(location))
    return kms, arn, location


def _junk_generation_one(location: Path) -> bytes:
    original = (location / "container.json").read_bytes()
    doc = json.loads(original)
    doc["data_keys"][0]["ciphertext"] = base64.b64encode(os.urandom(64)).decode()
    (location / "container.json").write_text(json.dumps(doc))
    return original


def test_a_moved_object_never_reads_as_authentic_through_allow_unbound(tmp_path: Path) -> None:
    kms, arn, location = _setup(tmp_path)
    _junk_generation_one(location)
    shutil.copyfile(location / "objects/payroll/mallory", location / "objects/payroll/alice")
    with DataPlane(kms, key_ids=[arn], allow_unbound=True).open(
        str(location), encryption_context={"tenant": "acme"}
    ) as c:
        with pytest.raises(EnvelopeError):  # KMS refuses the tampered stored EDK
            c.get("payroll/alice")
        with pytest.raises(EnvelopeError):
            c.verify("payroll/alice")


def test_rekey_all_cannot_launder_a_moved_object(tmp_path: Path) -> None:
    kms, arn, location = _setup(tmp_path)
    original = _junk_generation_one(location)
    shutil.copyfile(location / "objects/payroll/mallory", location / "objects/payroll/alice")
    with DataPlane(kms, key_ids=[arn], allow_unbound=True).open(str(location)) as c:
        report = c.rekey_all()
        assert "payroll/alice" in report.failed and not report.rekeyed
    (location / "container.json").write_bytes(original)  # the attacker covers their tracks
    with DataPlane(kms, key_ids=[arn]).open(str(location)) as c:
        with pytest.raises(AuthenticationError):
            c.get("payroll/alice")
        assert c.get("payroll/mallory") == b"mallory salary: 999999"


def test_our_own_moved_object_is_refused_even_when_its_edk_looks_foreign(tmp_path: Path) -> None:
    # Without any header edit: our message under another name, read with allow_unbound.
    kms, arn, location = _setup(tmp_path)
    shutil.copyfile(location / "objects/payroll/mallory", location / "objects/payroll/alice")
    with (
        DataPlane(kms, key_ids=[arn], allow_unbound=True).open(str(location)) as c,
        pytest.raises(AuthenticationError),
    ):
        c.get("payroll/alice")


def test_rekey_binds_a_truly_foreign_message_only_when_asked(tmp_path: Path) -> None:
    kms, arn, location = _setup(tmp_path)
    plane = DataPlane(kms, key_ids=[arn], allow_unbound=True)
    container = plane.open(str(location))
    # What another SDK writes: its own fresh data key under the container's KMS key and context.
    header = container.header
    generated = kms.generate_data_key_without_plaintext(arn, encryption_context=dict(header.encryption_context))
    foreign_key = kms.decrypt(generated.ciphertext_blob, encryption_context=dict(header.encryption_context))
    edk = (message_provider_id("local"), arn.encode(), generated.ciphertext_blob)

    class Sink:
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, data: memoryview) -> int:
            self.data += data
            return len(data)

        def commit(self) -> None: ...

        def abort(self) -> None: ...

    sink = Sink()
    with MessageWriter(
        sink,
        data_key=foreign_key,
        message_id=os.urandom(32),
        encryption_context=header.encryption_context,
        encrypted_data_keys=[edk],
        frame_length=4096,
    ) as w:
        w.write(b"written by another SDK")
    (location / "objects" / "foreign").write_bytes(bytes(sink.data))

    assert container.get("foreign") == b"written by another SDK"
    assert container.verify("foreign").bound is False
    with pytest.raises(UnboundObjectError):
        container.rekey("foreign")
    assert "UnboundObjectError" in container.rekey_all().failed["foreign"]
    assert container.rekey("foreign", bind_unbound=True) is True
    assert DataPlane(kms, key_ids=[arn]).open(str(location)).get("foreign") == b"written by another SDK"
