"""The AWS Encryption SDK's own decrypt vectors (written by the .NET SDK) through decrypt_message.

Each vector runs as its own test, its id prefixed by the expected outcome:
``decrypts`` (0x0478 positive), ``rejected`` (0x0478 negative: must fail
header authentication), ``unsupported`` (0x0578: refused before any key is
used). `test_vector_counts` prints and checks the totals. Provenance and
selection: tests/vectors/PROVENANCE.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dataplane.format import MessageHeader
from dataplane.message import decrypt_message
from envelope.errors import AuthenticationError, UnsupportedFormatError
from tests.test_format import ref_context

VECTORS = Path(__file__).resolve().parent / "vectors"
NEGATIVE_SETS = {"invalid-Net-4.0.0"}  # see PROVENANCE.md: authenticated two extra header bytes
RAW_PROVIDER_ID = "aws-raw-vectors-persistant"
EXPECTED_COUNTS = {"decrypts": 4, "rejected": 2, "unsupported": 6}


class Vector(NamedTuple):
    folder: str
    name: str
    suite: int
    category: str
    ciphertext: bytes
    plaintext: bytes
    wrapping_key: bytes
    key_name: str
    context: dict[str, str]


def _file(folder: Path, uri: str) -> bytes:
    assert uri.startswith("file://")
    return (folder / uri.removeprefix("file://")).read_bytes()


def load_vectors() -> list[Vector]:
    out = []
    for manifest_path in sorted(VECTORS.glob("*/manifest.json")):
        folder = manifest_path.parent
        manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        assert manifest["manifest"] == {"type": "awses-decrypt", "version": 4}
        keys = json.loads(_file(folder, manifest["keys"]))["keys"]
        for name, test in sorted(manifest["tests"].items()):
            (master_key,) = test["master-keys"]
            assert master_key["type"] == "raw" and master_key["provider-id"] == RAW_PROVIDER_ID
            key = keys[master_key["key"]]
            assert key["type"] == "symmetric" and key["encoding"] == "base64"
            ciphertext = _file(folder, test["ciphertext"])
            suite = struct.unpack(">H", ciphertext[1:3])[0]
            if suite == 0x0578:
                category = "unsupported"
            elif folder.name in NEGATIVE_SETS:
                category = "rejected"
            else:
                category = "decrypts"
            out.append(
                Vector(
                    folder=folder.name,
                    name=name,
                    suite=suite,
                    category=category,
                    ciphertext=ciphertext,
                    plaintext=_file(folder, test["result"]["output"]["plaintext"]),
                    wrapping_key=base64.b64decode(key["material"]),
                    key_name=key["key-id"],
                    context=dict(test["encryption-context"]),
                )
            )
    return out


ALL_VECTORS = load_vectors()


def raw_aes_resolver(vector: Vector, calls: list[MessageHeader]) -> Any:
    """Test-only raw AES keyring: unwrap the data key from the EDK of the vector's wrapping key."""

    def resolve(header: MessageHeader) -> bytes:
        calls.append(header)
        # The unwrap AAD is the full context: the stored one plus the required-only entries.
        context = {**header.encryption_context, **vector.context}
        name = vector.key_name.encode()
        for edk in header.encrypted_data_keys:
            info = edk.provider_info
            if edk.provider_id != RAW_PROVIDER_ID or not info.startswith(name) or len(info) != len(name) + 20:
                continue
            tag_bits, iv_length = struct.unpack(">II", info[len(name) : len(name) + 8])
            if (tag_bits, iv_length) != (128, 12):
                continue
            try:
                return AESGCM(vector.wrapping_key).decrypt(info[-12:], edk.ciphertext, ref_context(context))
            except InvalidTag:
                continue
        raise LookupError("no EDK this keyring can unwrap")

    return resolve


@pytest.mark.parametrize("vector", ALL_VECTORS, ids=lambda v: f"{v.category}:{v.folder}/{v.name}")
def test_vector(vector: Vector) -> None:
    calls: list[MessageHeader] = []
    resolve = raw_aes_resolver(vector, calls)
    if vector.category == "unsupported":
        with pytest.raises(UnsupportedFormatError, match="0x0578"):
            decrypt_message(vector.ciphertext, resolve, required_encryption_context=vector.context)
        assert calls == []  # refused before any key was asked for
    elif vector.category == "rejected":
        with pytest.raises(AuthenticationError):
            decrypt_message(vector.ciphertext, resolve, required_encryption_context=vector.context)
        assert len(calls) == 1  # the key unwrapped; the header tag is what failed
    else:
        reader = decrypt_message(vector.ciphertext, resolve, required_encryption_context=vector.context)
        assert reader.read() == vector.plaintext
        assert reader.header.frame_length == 512
        # Random access into the same message.
        reader.seek(5000)
        assert reader.read(700) == vector.plaintext[5000:5700]


def test_vector_counts() -> None:
    counts = Counter(v.category for v in ALL_VECTORS)
    print(
        "\nESDK vectors: "
        + ", ".join(
            f"{counts[c]} {label}"
            for c, label in [
                ("decrypts", "decrypt to their plaintext"),
                ("rejected", "rejected as expected (AuthenticationError)"),
                ("unsupported", "refused as unsupported (0x0578)"),
            ]
        )
        + f"; {len(ALL_VECTORS)} in total"
    )
    assert dict(counts) == EXPECTED_COUNTS


def test_vectors_are_the_documented_copies() -> None:
    text = (VECTORS / "PROVENANCE.md").read_text()
    listed = {path: digest for digest, path in re.findall(r"^([0-9a-f]{64})  \./(.+)$", text, re.MULTILINE)}
    present = {str(p.relative_to(VECTORS)) for p in VECTORS.rglob("*") if p.is_file() and p.name != "PROVENANCE.md"}
    assert set(listed) == present
    for path, digest in listed.items():
        assert hashlib.sha256((VECTORS / path).read_bytes()).hexdigest() == digest, path


def test_a_vector_through_a_file_object(tmp_path: Path) -> None:
    vector = next(v for v in ALL_VECTORS if v.category == "decrypts")
    path = tmp_path / "message"
    path.write_bytes(vector.ciphertext)
    with path.open("rb") as f:
        reader = decrypt_message(f, raw_aes_resolver(vector, []), required_encryption_context=vector.context)
        assert reader.read() == vector.plaintext
