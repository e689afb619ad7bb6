"""What integrity means for random access, key commitment on its own, and constant-time comparisons.

- A seek lands on a frame and verifies that frame: it does not look at the
  frames it skipped. Sequential reads stop at the first damaged frame;
  `Container.verify` is the whole-object check (docs/threat-model.md).
- Key commitment is checked for itself: a header whose commitment key is
  wrong but whose header tag is valid (forged here: the test holds the data
  key and recomputes the tag) is refused.
- The comparisons of secrets-derived values go through constant-time code:
  `hmac.compare_digest` (commitment key, name binding) and AES-GCM's own tag
  check (header tag, frame tags); no `==` on them anywhere in dataplane.
"""

from __future__ import annotations

import ast
import hmac
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import dataplane.format as format_module
from controlplane import ControlPlane
from dataplane import DataPlane
from dataplane.format import authenticate_header, derive_keys, read_header
from dataplane.hazmat import BufferSource, MessageReader
from envelope.errors import AuthenticationError
from envelope.kms import LocalKms
from tests.test_format import KEY, MESSAGE_ID, write_message

F = 16
FRAMES = 10
PLAINTEXT = bytes((i * 5 + 1) % 251 for i in range(FRAMES * F + 7))
MESSAGE = write_message(PLAINTEXT, F)
HEADER_SIZE = read_header(BufferSource(MESSAGE)).size
STRIDE = F + 32


def frame_offset(index: int) -> int:
    return HEADER_SIZE + index * STRIDE


def open_reader(message: bytes) -> MessageReader:
    return MessageReader(BufferSource(message), resolve_key=lambda _h: KEY)


# --- random access and damage ----------------------------------------------------------------------


def test_a_seek_past_a_damaged_frame_reads_the_later_authentic_frame_and_a_sequential_read_refuses() -> None:
    damaged = bytearray(MESSAGE)
    damaged[frame_offset(3) + 20] ^= 0x01  # a ciphertext byte of frame 3
    damaged = bytes(damaged)

    reader = open_reader(damaged)
    reader.seek(5 * F)
    assert reader.read(F) == PLAINTEXT[5 * F : 6 * F]  # authentic, in its place; frame 3 never looked at
    assert reader.read() == PLAINTEXT[6 * F :]  # through the final frame: end of data reported

    reader = open_reader(damaged)
    released = bytearray()
    with pytest.raises(AuthenticationError):
        for _ in range(FRAMES + 2):
            released += reader.read(F)
    assert bytes(released) == PLAINTEXT[: 3 * F]  # the frames before the damage, nothing of it or after

    reader = open_reader(damaged)
    reader.seek(3 * F + 4)
    with pytest.raises(AuthenticationError):
        reader.read(1)  # a seek *onto* the damaged frame verifies it


def test_a_removed_frame_moves_every_later_frame_out_of_place() -> None:
    removed = MESSAGE[: frame_offset(3)] + MESSAGE[frame_offset(4) :]
    for frame in (3, 5, FRAMES - 2):
        reader = open_reader(removed)
        reader.seek(frame * F)
        with pytest.raises(AuthenticationError):
            reader.read(1)  # frame k+1's stored sequence number sits where frame k belongs
    reader = open_reader(removed)
    assert reader.read(3 * F) == PLAINTEXT[: 3 * F]


def test_verify_is_the_whole_object_check(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "ks")
    kms.create_key(alias="alias/seek")
    ControlPlane(kms).create_container(tmp_path / "c", "alias/seek")
    container = DataPlane(kms, frame_length=F).open(tmp_path / "c")
    container.put("x", PLAINTEXT)
    objects = container._objects
    message = bytearray(objects.get_bytes("x"))
    header_size = read_header(BufferSource(bytes(message))).size
    message[header_size + 3 * STRIDE + 20] ^= 0x01
    objects.put_bytes("x", bytes(message), overwrite=True)
    with container.open_reader("x") as reader:
        reader.seek(5 * F)
        assert reader.read(F) == PLAINTEXT[5 * F : 6 * F]
    with pytest.raises(AuthenticationError):
        container.verify("x")


# --- key commitment ------------------------------------------------------------------------------


def forged_commitment(message: bytes, commitment: bytes) -> bytes:
    """`message` with its commitment key replaced and its header tag recomputed: only commitment can refuse it."""
    header = read_header(BufferSource(message))
    body = header.body[: -len(commitment)] + commitment
    tag = AESGCM(derive_keys(KEY, header.message_id).derived_key).encrypt(bytes(12), b"", body)
    return body + tag + message[header.size :]


@pytest.mark.parametrize(
    "commitment",
    [bytes(32), b"\xff" * 32, derive_keys(bytes(32), MESSAGE_ID).commitment_key],
    ids=["zeros", "ones", "another key's"],
)
def test_a_wrong_commitment_key_under_a_valid_header_tag_is_refused(commitment: bytes) -> None:
    forged = forged_commitment(MESSAGE, commitment)
    header = read_header(BufferSource(forged))
    # The forgery is sound: the header tag verifies under the real derived key.
    AESGCM(derive_keys(KEY, MESSAGE_ID).derived_key).decrypt(bytes(12), header.header_tag, header.body)
    with pytest.raises(AuthenticationError):
        authenticate_header(header, KEY)
    with pytest.raises(AuthenticationError):
        open_reader(forged).read()  # the frames alone would decrypt: they do not cover the header


# --- constant-time comparisons -------------------------------------------------------------------


class Spy:
    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls: list[tuple[bytes, bytes]] = []

    def __call__(self, a: Any, b: Any) -> bool:
        self.calls.append((bytes(a), bytes(b)))
        return bool(self.real(a, b))


def test_the_commitment_key_is_compared_with_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(hmac.compare_digest)
    monkeypatch.setattr(hmac, "compare_digest", spy)
    header = read_header(BufferSource(MESSAGE))
    authenticate_header(header, KEY)
    assert (derive_keys(KEY, MESSAGE_ID).commitment_key, header.commitment_key) in spy.calls
    spy.calls.clear()
    with pytest.raises(AuthenticationError):
        authenticate_header(header, bytes(32))
    assert [b for _, b in spy.calls] == [header.commitment_key]


def test_header_and_frame_tags_are_checked_by_aes_gcm(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []

    class RecordingAESGCM:
        def __init__(self, key: bytes) -> None:
            self._aead = AESGCM(key)

        def decrypt(self, iv: Any, data: Any, aad: Any) -> bytes:
            checked.append("decrypt")
            return self._aead.decrypt(iv, data, aad)

        def decrypt_into(self, iv: Any, data: Any, aad: Any, out: Any) -> int:
            checked.append("decrypt_into")
            return int(self._aead.decrypt_into(iv, data, aad, out))

    monkeypatch.setattr(format_module, "AESGCM", RecordingAESGCM)
    header = read_header(BufferSource(MESSAGE))
    authenticate_header(header, KEY)
    assert checked == ["decrypt"]  # the header tag: an AES-GCM decryption of the empty plaintext
    checked.clear()
    assert open_reader(MESSAGE).read() == PLAINTEXT
    assert checked.count("decrypt") == 1  # the header again
    assert checked.count("decrypt_into") >= 1  # every frame is opened by AES-GCM, tag included


def test_the_name_binding_is_compared_with_compare_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kms = LocalKms(tmp_path / "ks")
    kms.create_key(alias="alias/ct")
    ControlPlane(kms).create_container(tmp_path / "c", "alias/ct")
    container = DataPlane(kms, frame_length=F).open(tmp_path / "c")
    container.put("x", b"bound")
    message_id = read_header(BufferSource(container._objects.get_bytes("x"))).message_id
    spy = Spy(hmac.compare_digest)
    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert container.get("x") == b"bound"
    assert any(b == message_id[16:] and len(a) == 16 for a, b in spy.calls)  # the binding tag


def test_no_equality_operator_touches_a_tag_commitment_or_binding_value() -> None:
    sensitive = ("tag", "commitment", "binding", "digest", "mac")
    offenders = []
    for path in sorted(Path(format_module.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Compare) or not any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                continue
            for operand in (node.left, *node.comparators):
                if isinstance(operand, ast.Call):
                    continue  # len(tag) == 16 and the like compare public lengths
                names = [
                    n.id if isinstance(n, ast.Name) else n.attr
                    for n in ast.walk(operand)
                    if isinstance(n, ast.Name | ast.Attribute)
                ]
                if any(
                    word in name.lower() for name in names if not name.isupper() for word in sensitive
                ):  # constants are public
                    offenders.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []


# --- the stored length is not trusted for allocation -------------------------------------------


@pytest.mark.parametrize("how", ["get", "readall", "read(n)"])
def test_a_file_grown_sparse_fails_before_the_reader_allocates_its_claimed_size(tmp_path: Path, how: str) -> None:
    """The plaintext size comes from the stored length until the final frame opens: an object grown
    (sparse, 64 MiB) by someone with write access to the store must fail with AuthenticationError
    without the reader first allocating a buffer of the size the length claims."""
    import tracemalloc

    from dataplane._reader import UNVERIFIED_ALLOCATION_LIMIT

    kms = LocalKms(tmp_path / "ks")
    kms.create_key(alias="alias/sparse")
    ControlPlane(kms).create_container(tmp_path / "c", "alias/sparse")
    container = DataPlane(kms).open(tmp_path / "c")
    container.put("x", PLAINTEXT)
    stored = tmp_path / "c" / "objects" / "x"
    grown = 64 << 20
    with stored.open("r+b") as f:
        f.truncate(grown)  # sparse: no disk used, the length claims 64 MiB

    tracemalloc.start()
    try:
        with pytest.raises(AuthenticationError):
            if how == "get":
                container.get("x")
            else:
                with container.open_reader("x") as reader:
                    reader.read() if how == "readall" else reader.read(grown)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * UNVERIFIED_ALLOCATION_LIMIT, peak
