"""LocalKms failures carry no master key in their traceback locals (attacker review, MEDIUM).

Error trackers print every frame's locals; a key record held in a frame that
raised (a disabled key, a wrong context, a wrong KeyId) used to show the
base64 master key, which opens every container under that key.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from envelope.errors import EnvelopeError
from envelope.kms import LocalKms


def _forms(secret: bytes) -> list[str]:
    return [
        secret.hex(),
        base64.b64encode(secret).decode(),
        repr(secret)[2:-1],
        base64.urlsafe_b64encode(secret).decode(),
    ]


LIBRARY = str(Path(__file__).resolve().parent.parent / "envelope")


def _every_local(exc: BaseException) -> str:
    """Every local of every library frame the exception (and its chain) carries, as error trackers show them."""
    seen: list[str] = []
    for e in (exc, exc.__cause__, exc.__context__):
        tb = e.__traceback__ if e is not None else None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename.startswith(LIBRARY):  # the test's own frame holds the key
                seen += [f"{k} = {v!r}" for k, v in tb.tb_frame.f_locals.items()]
            tb = tb.tb_next
    assert seen, "no library frame in the traceback"
    return "\n".join(seen)


def test_no_failure_path_of_the_keystore_shows_its_master_key(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "ks")
    arn = kms.create_key(alias="alias/k")
    other = kms.create_key(alias="alias/other")
    record = json.loads(next((tmp_path / "ks" / "keys").glob(f"{arn.rsplit('/', 1)[1]}.json")).read_text())
    master = base64.b64decode(record["material"])
    blob = kms.generate_data_key_without_plaintext(arn, encryption_context={"t": "1"}).ciphertext_blob

    failures: list[Callable[[], object]] = [
        lambda: kms.decrypt(blob, encryption_context={"t": "2"}),  # wrong context
        lambda: kms.decrypt(blob, encryption_context={"t": "1"}, key_id=other),  # wrong KeyId
        lambda: kms.decrypt(blob[:-1] + bytes([blob[-1] ^ 1]), encryption_context={"t": "1"}),  # tampered
    ]
    kms.disable_key(arn)
    failures += [
        lambda: kms.decrypt(blob, encryption_context={"t": "1"}),  # disabled
        lambda: kms.generate_data_key_without_plaintext(arn),  # disabled
    ]
    for fail in failures:
        with pytest.raises(EnvelopeError) as info:
            fail()
        shown = _every_local(info.value)
        assert "material" not in shown or "<key material>" in shown
        for form in _forms(master):
            assert form not in shown, f"master key in the traceback of {info.value!r}"


def test_a_missing_keystore_is_named_as_such(tmp_path: Path) -> None:
    from controlplane import ControlPlane
    from dataplane import DataPlane
    from envelope.errors import KeystoreError

    kms = LocalKms(tmp_path / "ks")
    kms.create_key(alias="alias/k")
    ControlPlane(kms).create_container(str(tmp_path / "c"), key_id="alias/k")
    with pytest.raises(KeystoreError, match="does not exist"):
        DataPlane(LocalKms(tmp_path / "missing")).open(str(tmp_path / "c"))
