"""The fuzz targets and the seed inputs they start from.

A target takes untrusted bytes and returns normally when the library either
accepted them or refused them with the error type its contract names. Any
other exception -- a `struct.error`, an `IndexError`, a `MemoryError`, an
`AssertionError` from a broken invariant below -- escapes, and the fuzzer
reports it as a crash.

- `container_header`: `ContainerHeader.from_json` may only raise
  `FormatError` (its docstring's promise). What it accepts must satisfy the
  reserved-context binding and survive a canonical round trip.
- `message`: `read_header` + `body_layout`, then a `MessageReader` with a
  fixed key, may only raise `FormatError` or `AuthenticationError`. Each
  input is read twice: as given, and "resealed" -- the commitment key and
  header tag recomputed under the fixed key -- so mutated headers (frame
  lengths, contexts, content types) reach the body code instead of all
  stopping at the header tag. A read that succeeds must return exactly
  `plaintext_size()` bytes, and a seek into the middle must read the same
  bytes back. After an `AuthenticationError` the reader must stay failed.

The key is fixed and public: this is a harness, never a place for secrets.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Callable
from datetime import UTC, datetime

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dataplane.format import (
    CONTENT_TYPE_NON_FRAMED,
    HEADER_IV,
    SINGLE_BLOCK_AAD_LABEL,
    Limits,
    MessageHeader,
    body_layout,
    derive_keys,
    encode_header,
    read_header,
)
from dataplane.stream import BufferSource, MessageReader, MessageWriter
from envelope.errors import AuthenticationError, FormatError
from envelope.header import ContainerHeader, WrappedDataKey, build_encryption_context

__all__ = [
    "FUZZ_KEY",
    "FUZZ_LIMITS",
    "TARGETS",
    "MemorySink",
    "container_header",
    "container_header_seeds",
    "encrypt",
    "message",
    "message_seeds",
]

FUZZ_KEY = bytes(range(32))
"""The fixed data key of the message target (public; it protects nothing)."""

FUZZ_LIMITS = Limits(
    max_header_size=1 << 16,
    max_encrypted_data_keys=16,
    max_encryption_context_size=1 << 14,
    max_frame_length=1 << 16,
    max_non_framed_size=1 << 16,
)
"""Small bounds, so a hostile length field is refused cheaply and quickly."""

_READ_STEP_DEFAULT = 4096


# --- container header --------------------------------------------------------------------------


def container_header(data: bytes) -> None:
    """Parse `data` as container.json; only FormatError may escape, and accepted headers are sound."""
    try:
        header = ContainerHeader.from_json(data)
    except FormatError:
        return
    again = ContainerHeader.from_json(header.to_json())
    if again != header or again.to_json() != header.to_json():
        raise AssertionError("an accepted container header does not survive a canonical round trip")
    context = header.encryption_context
    if context.get("envelope:container-id") != header.container_id or context.get("envelope:suite") != "0478":
        raise AssertionError("an accepted container header is not bound by its reserved context entries")


def container_header_seeds() -> list[bytes]:
    """Valid headers of every shape the schema allows, plus a few near misses."""
    when = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    local_arn = "arn:aws:kms:local:000000000000:key/0b7e5f3a-8d5c-4f0e-9d65-2b1c8a7f9e10"
    seeds = []
    shapes: list[tuple[dict[str, str], dict[str, str], int, str]] = [
        ({}, {}, 1, "aws-kms"),
        ({"tenant": "acme"}, {"team": "data"}, 1, "aws-kms"),
        ({"t\u00e9nant": "\u00e0cm\u00e9 \u2603", "purpose": ""}, {}, 2, "local"),
        ({f"k{i}": "v" * i for i in range(8)}, {f"l{i}": "x" for i in range(4)}, 3, "aws-kms"),
    ]
    for n, (context, labels, keys, provider) in enumerate(shapes):
        container_id = hashlib.sha256(bytes([n])).hexdigest()[:32]
        header = ContainerHeader(
            container_id=container_id,
            data_keys=tuple(
                WrappedDataKey(
                    provider=provider,
                    key_id=arn if provider == "aws-kms" else local_arn,
                    ciphertext=hashlib.sha512(bytes([n, i])).digest()[: 40 + 30 * i],
                )
                for i in range(keys)
            ),
            encryption_context=build_encryption_context(context, container_id),
            created_at=when if n % 2 else when.replace(microsecond=0),
            labels=labels,
        )
        seeds.append(header.to_json())
    base = seeds[1].decode()
    seeds.append(base.replace('"version": 1', '"version": 2').encode())
    seeds.append(base.replace('"suite": 1144', '"suite": 1400').encode())
    seeds.append(base.replace("aws-kms", "local").encode())
    seeds.append(base64.b64encode(seeds[0]))
    return seeds


CONTAINER_HEADER_DICTIONARY = [
    '"format"',
    '"envelope.container"',
    '"version"',
    '"container_id"',
    '"suite"',
    "1144",
    '"data_keys"',
    '"provider"',
    '"aws-kms"',
    '"local"',
    '"key_id"',
    '"ciphertext"',
    '"encryption_context"',
    '"envelope:container-id"',
    '"envelope:suite"',
    '"0478"',
    '"envelope:schema"',
    '"aws-crypto-"',
    '"created_at"',
    '"labels"',
    '"arn:aws:kms:us-east-1:111122223333:key/"',
    "\\\\u0000",
    "\\\\ud800",
    "1e400",
    "true",
    "null",
    "[]",
    "{}",
]


# --- message -------------------------------------------------------------------------------------


class MemorySink:
    """A `MessageSink` into memory: the message bytes, and whether the writer committed."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.committed = False
        self.aborted = False

    def write(self, data: memoryview, /) -> int:
        self.data += data
        return len(data)

    def commit(self) -> None:
        self.committed = True

    def abort(self) -> None:
        self.aborted = True


class CopyingSource:
    """A source without `view_at`: the reader must copy each frame into its own buffer."""

    def __init__(self, data: bytes) -> None:
        self._inner = BufferSource(data)

    @property
    def size(self) -> int:
        return self._inner.size

    def readinto_at(self, offset: int, buf: memoryview, /) -> int:
        return self._inner.readinto_at(offset, buf)

    def close(self) -> None:
        self._inner.close()


def encrypt(
    plaintext: bytes,
    *,
    frame_length: int = 32,
    key: bytes = FUZZ_KEY,
    message_id: bytes | None = None,
    encryption_context: dict[str, str] | None = None,
    edks: int = 1,
) -> bytes:
    """One framed message under `key`, written by the real `MessageWriter`."""
    sink = MemorySink()
    with MessageWriter(
        sink,
        data_key=key,
        message_id=message_id if message_id is not None else hashlib.sha256(plaintext).digest(),
        encryption_context=encryption_context if encryption_context is not None else {"purpose": "fuzz"},
        encrypted_data_keys=[
            ("aws-kms", b"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-" + b"%012d" % i, bytes(40))
            for i in range(edks)
        ],
        frame_length=frame_length,
    ) as writer:
        writer.write(plaintext)
    if not sink.committed:
        raise AssertionError("the writer did not commit")
    return bytes(sink.data)


def _non_framed(plaintext: bytes, key: bytes = FUZZ_KEY) -> bytes:
    """A non-framed message (content type 1); our writer never makes these, other SDKs may have."""
    message_id = hashlib.sha256(b"non-framed" + plaintext).digest()
    header, derived = encode_header(
        data_key=key,
        message_id=message_id,
        encryption_context={},
        encrypted_data_keys=[("raw", b"info", b"\x01")],
        frame_length=0,
        content_type=CONTENT_TYPE_NON_FRAMED,
    )
    iv = bytes(range(12))
    aad = message_id + SINGLE_BLOCK_AAD_LABEL + struct.pack(">IQ", 1, len(plaintext))
    sealed = derived.cipher().encrypt(iv, plaintext, aad)
    return header.to_bytes() + iv + struct.pack(">Q", len(plaintext)) + sealed


def message_seeds() -> list[bytes]:
    """Valid messages under FUZZ_KEY: several frame lengths, sizes, contexts and EDK counts."""
    seeds = []
    for frame_length in (16, 32, 64):
        for size in (0, 1, frame_length - 1, frame_length, frame_length + 1, 3 * frame_length, 3 * frame_length + 5):
            seeds.append(encrypt(bytes(i % 251 for i in range(size)), frame_length=frame_length))
    seeds.append(encrypt(b"x" * 40, encryption_context={}, edks=1))
    seeds.append(encrypt(b"y" * 70, encryption_context={"a": "1", "b\u00e9": "\u2603", "c": ""}, edks=3))
    seeds.append(_non_framed(b""))
    seeds.append(_non_framed(b"non-framed content of some length"))
    return seeds


def _resealed(data: bytes, header: MessageHeader) -> bytes:
    """`data` with its commitment key and header tag recomputed under FUZZ_KEY."""
    keys = derive_keys(FUZZ_KEY, header.message_id)
    body = header.body[: -len(keys.commitment_key)] + keys.commitment_key
    tag = AESGCM(keys.derived_key).encrypt(HEADER_IV, b"", body)
    return body + tag + data[header.size :]


def _read_all(data: bytes, *, copying: bool) -> None:
    source = CopyingSource(data) if copying else BufferSource(data)
    try:
        reader = MessageReader(source, resolve_key=lambda _header: FUZZ_KEY, limits=FUZZ_LIMITS)
    except (FormatError, AuthenticationError):
        return
    with reader:
        step = reader.header.frame_length or _READ_STEP_DEFAULT
        out = bytearray()
        try:
            while chunk := reader.read(step):
                out += chunk
        except AuthenticationError:
            try:
                reader.read(1)
            except AuthenticationError:
                return
            raise AssertionError("a reader that failed authentication did not stay failed") from None
        if len(out) != reader.plaintext_size():
            raise AssertionError("a successful read returned a different size than plaintext_size()")
        middle = len(out) // 2
        reader.seek(middle)
        if reader.read() != out[middle:]:
            raise AssertionError("a seek and read disagrees with the sequential read")


def message(data: bytes) -> None:
    """Parse and read `data` as a message; only FormatError / AuthenticationError may escape."""
    header: MessageHeader | None
    try:
        header = read_header(BufferSource(data), FUZZ_LIMITS)
        body_layout(header, len(data), FUZZ_LIMITS)
    except (FormatError, AuthenticationError):
        header = None
    copying = bool(data) and data[-1] & 1 == 1
    _read_all(data, copying=copying)
    if header is not None:
        _read_all(_resealed(data, header), copying=not copying)


MESSAGE_DICTIONARY = [
    "\\x02\\x04\\x78",
    "\\xff\\xff\\xff\\xff",
    "\\x00\\x00\\x00\\x01",
    "\\x00\\x00\\x00\\x02",
    "\\x00\\x00\\x00\\x10",
    "\\x00\\x00\\x00\\x20",
    "\\x7f\\xff\\xff\\xff",
    "\\x00\\x01",
    "\\xff\\xff",
    "aws-kms",
    "aws-crypto-",
    "\\x05\\x78",
]


TARGETS: dict[str, tuple[Callable[[bytes], None], Callable[[], list[bytes]], list[str]]] = {
    "header": (container_header, container_header_seeds, CONTAINER_HEADER_DICTIONARY),
    "message": (message, message_seeds, MESSAGE_DICTIONARY),
}
"""name -> (target, seed factory, libFuzzer dictionary tokens)."""
