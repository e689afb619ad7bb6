"""The per-object fast paths of the codec: one-call header parsing, one read for small objects, HKDF.

Behaviour only (no timing): the fast header parser must accept exactly what
the careful field-by-field parser accepts and return the same header; a small
object is read with one positional read; the shared-extract HKDF gives the
same keys as `cryptography`'s HKDF.
"""

from __future__ import annotations

import io
import os
import random

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dataplane._byteio import BufferSource
from dataplane._reader import MessageReader
from dataplane._writer import MessageWriter
from dataplane.format import (
    CONTENT_TYPE_NON_FRAMED,
    SMALL_OBJECT_BYTES,
    EncryptedDataKey,
    Limits,
    _commit_and_derive,
    _parse_header_fast,
    derive_keys,
    encode_header,
    read_header,
    read_header_from_stream,
)
from envelope.datakey import DataKey
from envelope.errors import EnvelopeError

KEY = bytes(range(32))
EDKS = [EncryptedDataKey("aws-kms", b"arn:aws:kms:us-east-1:111122223333:key/k", b"\x01" * 40)]


def _header(context: dict[str, str], *, edks: int = 1, frame_length: int = 4096, non_framed: bool = False) -> bytes:
    header, _ = encode_header(
        data_key=KEY,
        message_id=os.urandom(32),
        encryption_context=context,
        encrypted_data_keys=EDKS * edks,
        frame_length=0 if non_framed else frame_length,
        **({"content_type": CONTENT_TYPE_NON_FRAMED} if non_framed else {}),
    )
    return header.to_bytes()


def _careful(data: bytes, limits: Limits) -> object:
    """The careful parser alone (the stream path never takes the fast one)."""
    try:
        return read_header_from_stream(io.BytesIO(data), limits).to_bytes()
    except EnvelopeError as e:
        return (type(e), str(e))


def _fast_entry(data: bytes, limits: Limits) -> object:
    try:
        return read_header(BufferSource(data), limits).to_bytes()
    except EnvelopeError as e:
        return (type(e), str(e))


VALID = [
    _header({}),
    _header({"tenant": "a", "purpose": "b\u00e9"}),
    _header({"k": "v" * 300}, edks=3, frame_length=1),
    _header({"a": "1"}, non_framed=True),
]
LIMITS = [
    Limits(),
    Limits(max_header_size=200),
    Limits(max_encrypted_data_keys=2),
    Limits(max_encryption_context_size=10),
    Limits(max_frame_length=2048),
]


@pytest.mark.parametrize("raw", VALID, ids=["no-context", "context", "3-edks", "non-framed"])
def test_the_fast_parser_takes_valid_headers_and_agrees_with_the_careful_one(raw: bytes) -> None:
    fast = _parse_header_fast(raw + b"body", Limits(max_frame_length=1 << 20))
    assert fast is not None, "a valid header that fits must take the fast path"
    careful = read_header_from_stream(io.BytesIO(raw + b"body"), Limits(max_frame_length=1 << 20))
    for field in ("suite_id", "message_id", "content_type", "frame_length", "commitment_key", "header_tag", "body"):
        assert getattr(fast, field) == getattr(careful, field), field
    assert dict(fast.encryption_context) == dict(careful.encryption_context)
    assert fast.encrypted_data_keys == careful.encrypted_data_keys
    assert type(fast.body) is bytes and type(fast.message_id) is bytes


def test_the_fast_parser_accepts_and_refuses_exactly_what_the_careful_one_does() -> None:
    rng = random.Random(20261130)
    cases = 0
    for raw in VALID:
        for limits in LIMITS:
            variants = [raw, raw[: rng.randrange(len(raw))]]
            for _ in range(150):
                data = bytearray(raw)
                for _ in range(rng.randrange(1, 4)):
                    data[rng.randrange(len(data))] = rng.randrange(256)
                variants.append(bytes(data))
            for data in variants:
                assert _fast_entry(data, limits) == _careful(data, limits), data.hex()
                fast = _parse_header_fast(data, limits)
                if fast is not None:
                    assert fast.to_bytes() == _careful(data, limits)
                cases += 1
    assert cases > 3000


class _CountingSource:
    """A source with no `view_at`, counting its positional reads and the bytes they return."""

    def __init__(self, data: bytes) -> None:
        self._inner = BufferSource(data)
        self.reads = 0
        self.bytes_read = 0

    @property
    def size(self) -> int:
        return self._inner.size

    def readinto_at(self, offset: int, buf: memoryview, /) -> int:
        self.reads += 1
        n = self._inner.readinto_at(offset, buf)
        self.bytes_read += n
        return n

    def close(self) -> None:
        self._inner.close()


class _Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: memoryview, /) -> int:
        self.data += data
        return len(data)

    def commit(self) -> None:
        pass

    def abort(self) -> None:
        pass


def _message(plaintext: bytes, frame_length: int) -> bytes:
    sink = _Sink()
    with MessageWriter(
        sink,
        data_key=KEY,
        message_id=os.urandom(32),
        encryption_context={"tenant": "t"},
        encrypted_data_keys=EDKS,
        frame_length=frame_length,
    ) as w:
        w.write(plaintext)
    return bytes(sink.data)


@pytest.mark.parametrize("size", [0, 1024, 60 << 10])
def test_a_small_object_is_read_with_one_positional_read(size: int) -> None:
    plaintext = os.urandom(size)
    message = _message(plaintext, 4096)
    assert len(message) <= SMALL_OBJECT_BYTES
    source = _CountingSource(message)
    with MessageReader(source, resolve_key=lambda _h: KEY) as r:
        assert r.read() == plaintext
    assert source.reads == 1
    assert source.bytes_read == len(message)


def test_a_small_object_with_a_bad_frame_is_still_refused_from_the_prefix() -> None:
    message = bytearray(_message(os.urandom(3000), 1024))
    message[-1] ^= 1
    source = _CountingSource(bytes(message))
    with MessageReader(source, resolve_key=lambda _h: KEY) as r, pytest.raises(EnvelopeError):
        r.read()


def test_a_large_object_reads_only_a_header_chunk_first() -> None:
    message = _message(os.urandom(SMALL_OBJECT_BYTES + 1), 1 << 16)
    source = _CountingSource(message)
    reader = MessageReader(source, resolve_key=lambda _h: KEY)
    try:
        assert source.bytes_read <= 4096
    finally:
        reader.close()


def test_the_whole_object_read_respects_tight_limits() -> None:
    # With a 256-byte frame limit a 10 KiB object cannot be one header and one frame: no whole read.
    message = _message(os.urandom(10 << 10), 256)
    source = _CountingSource(message)
    reader = MessageReader(
        source, resolve_key=lambda _h: KEY, limits=Limits(max_header_size=2048, max_frame_length=256)
    )
    try:
        assert source.bytes_read <= 2048
    finally:
        reader.close()


def test_shared_extract_hkdf_matches_cryptography_hkdf() -> None:
    rng = random.Random(7)
    for _ in range(50):
        data_key = rng.randbytes(32)
        message_id = rng.randbytes(32)
        commitment, message_key = _commit_and_derive(DataKey(data_key, key_id=""), message_id)
        reference = derive_keys(data_key, message_id)
        assert commitment == reference.commitment_key
        nonce = bytes(12)
        assert message_key.cipher().encrypt(nonce, b"probe", None) == AESGCM(reference.derived_key).encrypt(
            nonce, b"probe", None
        )
