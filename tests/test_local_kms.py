"""LocalKms: KMS key-state semantics, private files, and safe sharing across threads and processes."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from envelope.errors import DisabledError, InvalidCiphertextError, KeystoreError, KMSInvalidStateError, ValidationError
from envelope.kms import LocalKms


def test_key_states_follow_kms(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "ks")
    arn = kms.create_key(alias="alias/app")
    blob = kms.generate_data_key_without_plaintext("alias/app").ciphertext_blob
    assert kms.disable_key("alias/app").state == "Disabled"
    with pytest.raises(DisabledError):
        kms.generate_data_key_without_plaintext(arn)
    with pytest.raises(DisabledError):
        kms.decrypt(blob)
    kms.enable_key(arn)
    assert len(kms.decrypt(blob)) == 32
    info = kms.schedule_key_deletion(arn)
    assert info.state == "PendingDeletion"
    assert info.deletion_date
    with pytest.raises(KMSInvalidStateError):
        kms.decrypt(blob)
    with pytest.raises(KMSInvalidStateError):
        kms.generate_data_key_without_plaintext(arn)
    with pytest.raises(KMSInvalidStateError):
        kms.enable_key(arn)
    kms.cancel_key_deletion(arn)
    kms.enable_key(arn)
    assert len(kms.decrypt(blob)) == 32


def test_aliases_are_spelled_the_kms_way(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "ks")
    for bad in ("app", "alias/", "alias/aws/reserved", "alias/bad name"):
        with pytest.raises(ValidationError):
            kms.create_key(alias=bad)
    kms.create_key(alias="alias/app")
    with pytest.raises(ValidationError, match="already exists"):
        kms.create_key(alias="alias/app")
    assert [k.aliases for k in kms.list_keys()] == [("alias/app",)]


def test_files_are_private_and_loose_permissions_are_refused(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "ks")
    arn = kms.create_key()
    key_file = next((tmp_path / "ks" / "keys").glob("*.json"))
    assert stat.S_IMODE(os.stat(tmp_path / "ks").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    os.chmod(key_file, 0o644)
    with pytest.raises(KeystoreError, match="chmod 600"):
        kms.generate_data_key_without_plaintext(arn)
    os.chmod(key_file, 0o600)
    os.chmod(tmp_path / "ks", 0o755)
    with pytest.raises(KeystoreError, match="chmod 700"):
        LocalKms(tmp_path / "ks")


def _spellings(material: bytes) -> list[str]:
    """The master key as it could appear in text: hex, base64 (standard, url-safe), base32, a bytes repr."""
    return [
        material.hex(),
        material.hex().upper(),
        base64.b64encode(material).decode().rstrip("="),
        base64.urlsafe_b64encode(material).decode().rstrip("="),
        base64.b32encode(material).decode().rstrip("="),
        repr(material)[2:-1],
    ]


def _master_key(tmp_path: Path) -> bytes:
    (key_file,) = (tmp_path / "ks" / "keys").glob("*.json")
    return base64.b64decode(json.loads(key_file.read_text(encoding="utf-8"))["material"])


def _leaks(text: str, material: bytes) -> list[str]:
    return [s for s in _spellings(material) if s in text]


def test_key_material_is_never_in_reprs_or_errors(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "ks")
    arn = kms.create_key(alias="alias/app")
    material = _master_key(tmp_path)
    assert len(material) == 32
    blob = kms.generate_data_key_without_plaintext("alias/app").ciphertext_blob
    texts = [
        repr(kms),
        str(kms),
        repr(kms.list_keys()),
        repr(kms.describe_key(arn)),
        repr(kms.generate_data_key_without_plaintext(arn)),
        repr(kms.decrypt(blob)),
    ]
    assert repr(kms) == f"LocalKms({str(tmp_path / 'ks')!r})"
    kms.disable_key(arn)
    for call in (lambda: kms.decrypt(blob), lambda: kms.generate_data_key_without_plaintext(arn)):
        with pytest.raises(DisabledError) as info:
            call()
        texts += [str(info.value), repr(info.value), "".join(traceback.format_exception(info.value))]
    kms.enable_key(arn)
    with pytest.raises(InvalidCiphertextError) as bad:
        kms.decrypt(blob[:-1] + bytes([blob[-1] ^ 1]))
    texts += [str(bad.value), "".join(traceback.format_exception(bad.value))]
    assert [leak for text in texts for leak in _leaks(text, material)] == []


def test_the_material_search_finds_a_planted_key(tmp_path: Path) -> None:
    LocalKms(tmp_path / "ks").create_key()
    material = _master_key(tmp_path)
    for spelling in _spellings(material):
        assert _leaks(f"KeyInfo(x={spelling!s})", material), spelling


def test_blob_from_another_keystore_is_invalid_ciphertext(tmp_path: Path) -> None:
    a, b = LocalKms(tmp_path / "a"), LocalKms(tmp_path / "b")
    a.create_key(alias="alias/k")
    b.create_key(alias="alias/k")
    blob = a.generate_data_key_without_plaintext("alias/k").ciphertext_blob
    with pytest.raises(InvalidCiphertextError):
        b.decrypt(blob)
    with pytest.raises(InvalidCiphertextError):
        a.decrypt(b"not a blob at all, just bytes")


def test_threads_share_one_keystore(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "ks")

    def work(i: int) -> str:
        arn = kms.create_key(alias=f"alias/t{i}")
        blob = kms.generate_data_key_without_plaintext(f"alias/t{i}", encryption_context={"i": str(i)}).ciphertext_blob
        assert len(kms.decrypt(blob, encryption_context={"i": str(i)})) == 32
        return arn

    with ThreadPoolExecutor(8) as pool:
        arns = list(pool.map(work, range(32)))
    keys = kms.list_keys()
    assert len(keys) == 32
    assert {k.arn for k in keys} == set(arns)
    assert sorted(a for k in keys for a in k.aliases) == sorted(f"alias/t{i}" for i in range(32))


def test_processes_share_one_keystore(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from envelope.kms import LocalKms\n"
        "kms = LocalKms(sys.argv[1])\n"
        "for i in range(10):\n"
        "    kms.create_key(alias=f'alias/p{sys.argv[2]}-{i}')\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "ks"), str(n)]) for n in range(4)]
    try:
        assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    keys = LocalKms(tmp_path / "ks").list_keys()
    assert len(keys) == 40
    assert len({a for k in keys for a in k.aliases}) == 40, "an alias update was lost"
