"""The message codec (dataplane.format) and name binding (dataplane.binding), read like the spec.

A small, independent reference encoder lives here (struct + one-shot
AES-GCM + a local RFC 5869 HKDF); the stream tests reuse it to build
messages our writer never produces (frame length 1, non-framed bodies,
full-length final frames) and to check the writer byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
import tracemalloc
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from dataplane.binding import (
    BINDING_KEY_INFO,
    derive_binding_key,
    new_message_id,
    verify_message_id,
)
from dataplane.format import (
    CONTENT_TYPE_FRAMED,
    CONTENT_TYPE_NON_FRAMED,
    BodyAad,
    EncryptedDataKey,
    Limits,
    MessageHeader,
    authenticate_header,
    body_layout,
    derive_keys,
    encode_header,
    frame_iv,
    parse_encryption_context,
    read_header,
    serialize_encryption_context,
)
from dataplane.hazmat import BufferSource, MessageReader, MessageWriter
from envelope.errors import AuthenticationError, FormatError, UnsupportedFormatError, ValidationError

DOCS = Path(__file__).resolve().parent.parent / "docs" / "format.md"

# --- reference encoder (independent of dataplane.format) ---------------------


def ref_hkdf_sha512(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 with SHA-512, written out."""
    prk = hmac.new(salt or bytes(64), ikm, hashlib.sha512).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha512).digest()
        okm += block
        counter += 1
    return okm[:length]


def ref_context(context: Mapping[str, str]) -> bytes:
    if not context:
        return b""
    items = sorted((k.encode(), v.encode()) for k, v in context.items())
    out = struct.pack(">H", len(items))
    for k, v in items:
        out += struct.pack(">H", len(k)) + k + struct.pack(">H", len(v)) + v
    return out


def ref_header(
    data_key: bytes,
    message_id: bytes,
    context: Mapping[str, str],
    edks: Sequence[tuple[str, bytes, bytes]],
    frame_length: int,
    *,
    content_type: int = 2,
    extra_aad: bytes = b"",
) -> bytes:
    ctx = ref_context(context)
    body = b"\x02\x04\x78" + message_id + struct.pack(">H", len(ctx)) + ctx + struct.pack(">H", len(edks))
    for provider_id, info, ciphertext in edks:
        for field in (provider_id.encode(), info, ciphertext):
            body += struct.pack(">H", len(field)) + field
    commitment = ref_hkdf_sha512(data_key, message_id, b"COMMITKEY")
    body += bytes([content_type]) + struct.pack(">I", frame_length) + commitment
    derived = ref_hkdf_sha512(data_key, message_id, b"\x04\x78DERIVEKEY")
    return body + AESGCM(derived).encrypt(bytes(12), b"", body + extra_aad)


def ref_message(
    data_key: bytes,
    message_id: bytes,
    context: Mapping[str, str],
    edks: Sequence[tuple[str, bytes, bytes]],
    frame_length: int,
    plaintext: bytes,
    *,
    full_final_frame: bool = False,
    non_framed: bool = False,
    extra_aad: bytes = b"",
) -> bytes:
    """A whole message, built field by field from the specification."""
    aead = AESGCM(ref_hkdf_sha512(data_key, message_id, b"\x04\x78DERIVEKEY"))
    if non_framed:
        header = ref_header(data_key, message_id, context, edks, 0, content_type=1, extra_aad=extra_aad)
        iv = bytes(11) + b"\x01"
        aad = message_id + b"AWSKMSEncryptionClient Single Block" + struct.pack(">IQ", 1, len(plaintext))
        return header + iv + struct.pack(">Q", len(plaintext)) + aead.encrypt(iv, plaintext, aad)
    out = ref_header(data_key, message_id, context, edks, frame_length, extra_aad=extra_aad)
    seq, pos = 1, 0
    while True:
        rest = len(plaintext) - pos
        final = rest < frame_length or (full_final_frame and rest == frame_length)
        if final:
            break
        chunk = plaintext[pos : pos + frame_length]
        iv = bytes(8) + struct.pack(">I", seq)
        aad = message_id + b"AWSKMSEncryptionClient Frame" + struct.pack(">IQ", seq, frame_length)
        out += struct.pack(">I", seq) + iv + aead.encrypt(iv, chunk, aad)
        seq, pos = seq + 1, pos + frame_length
    chunk = plaintext[pos:]
    iv = bytes(8) + struct.pack(">I", seq)
    aad = message_id + b"AWSKMSEncryptionClient Final Frame" + struct.pack(">IQ", seq, len(chunk))
    return out + struct.pack(">II", 0xFFFFFFFF, seq) + iv + struct.pack(">I", len(chunk)) + aead.encrypt(iv, chunk, aad)


class MemorySink:
    """An in-memory MessageSink that records how it ended."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.state = "open"

    def write(self, data: memoryview) -> int:
        assert self.state == "open"
        self.data += data
        return len(data)

    def commit(self) -> None:
        self.state = "committed"

    def abort(self) -> None:
        self.state = "aborted"


KEY = bytes(range(32))
MESSAGE_ID = bytes(range(0x40, 0x60))
EDKS = [EncryptedDataKey("envelope-local", b"arn:aws:kms:us-east-1:111122223333:key/test", b"\xc1" * 8)]
CONTEXT = {"tenant": "acme", "envelope:schema": "1"}


def write_message(plaintext: bytes, frame_length: int = 16, **kw: object) -> bytes:
    sink = MemorySink()
    w = MessageWriter(
        sink,
        data_key=kw.pop("data_key", KEY),  # type: ignore[arg-type]
        message_id=kw.pop("message_id", MESSAGE_ID),  # type: ignore[arg-type]
        encryption_context=kw.pop("encryption_context", CONTEXT),  # type: ignore[arg-type]
        encrypted_data_keys=kw.pop("encrypted_data_keys", EDKS),  # type: ignore[arg-type]
        frame_length=frame_length,
        **kw,  # type: ignore[arg-type]
    )
    w.write(plaintext)
    w.close()
    assert sink.state == "committed"
    return bytes(sink.data)


# --- encryption context --------------------------------------------------------


def test_encryption_context_serialization_is_the_sorted_pair_encoding() -> None:
    assert serialize_encryption_context({}) == b""
    assert serialize_encryption_context({"b": "2", "a": "1"}) == bytes.fromhex("0002000161000131000162000132")


def test_encryption_context_sorts_by_utf8_bytes() -> None:
    context = {"é": "1", "z": "2", "\U0001f600": "3", "a": ""}
    data = serialize_encryption_context(context)
    assert data == ref_context(context)
    assert list(parse_encryption_context(data)) == ["a", "z", "é", "\U0001f600"]


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=6))
def test_encryption_context_round_trips(context: dict[str, str]) -> None:
    data = serialize_encryption_context(context)
    assert data == ref_context(context)
    assert parse_encryption_context(data) == context


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ("0000", "a non-empty block with zero entries"),
        ("000200016100000001610000", "a duplicated key"),
        ("000200016200000001610000", "unsorted keys"),
        ("0001000161000000", "trailing bytes"),
        ("0001000561", "a key running past the block"),
        ("00010001ff0000", "a key that is not UTF-8"),
        ("00010001610001c3", "a value that is not UTF-8"),
        ("00", "a truncated count"),
    ],
)
def test_malformed_encryption_context_is_a_format_error(data: str, why: str) -> None:
    with pytest.raises(FormatError):
        parse_encryption_context(bytes.fromhex(data))


def test_unencodable_contexts_are_validation_errors() -> None:
    with pytest.raises(ValidationError):
        serialize_encryption_context({"k": 1})  # type: ignore[dict-item]
    with pytest.raises(ValidationError):
        serialize_encryption_context({"k": "v" * 65536})
    with pytest.raises(ValidationError):
        serialize_encryption_context({f"k{i}": "v" * 600 for i in range(120)})  # over 65535 bytes in total


# --- key derivation --------------------------------------------------------------


def test_key_derivation_matches_rfc5869_written_out() -> None:
    keys = derive_keys(KEY, MESSAGE_ID)
    assert keys.derived_key == ref_hkdf_sha512(KEY, MESSAGE_ID, b"\x04\x78DERIVEKEY")
    assert keys.commitment_key == ref_hkdf_sha512(KEY, MESSAGE_ID, b"COMMITKEY")
    assert "hidden" in repr(keys)
    assert KEY.hex() not in repr(keys)


def test_key_derivation_needs_a_32_byte_key_and_id() -> None:
    with pytest.raises(ValidationError):
        derive_keys(KEY[:16], MESSAGE_ID)
    with pytest.raises(ValidationError):
        derive_keys(KEY, MESSAGE_ID[:16])


def test_frame_iv_and_body_aad_layout() -> None:
    assert frame_iv(1) == bytes(11) + b"\x01"
    assert frame_iv(0x01020304) == bytes(8) + b"\x01\x02\x03\x04"
    aad = BodyAad(MESSAGE_ID, b"AWSKMSEncryptionClient Frame")
    first = aad.update(7, 4096)
    assert bytes(first) == MESSAGE_ID + b"AWSKMSEncryptionClient Frame" + struct.pack(">IQ", 7, 4096)
    assert aad.update(8, 1) is first  # rewritten in place, never reallocated


# --- header ------------------------------------------------------------------------


def test_header_bytes_match_the_hand_built_layout() -> None:
    header, _ = encode_header(
        data_key=KEY, message_id=MESSAGE_ID, encryption_context=CONTEXT, encrypted_data_keys=EDKS, frame_length=4096
    )
    expected = ref_header(KEY, MESSAGE_ID, CONTEXT, EDKS, 4096)
    assert header.to_bytes() == expected
    # Field by field, as the specification lays them out.
    ctx = ref_context(CONTEXT)
    assert expected[:3] == b"\x02\x04\x78"
    assert expected[3:35] == MESSAGE_ID
    assert expected[35:37] == struct.pack(">H", len(ctx))
    assert expected[37 : 37 + len(ctx)] == ctx
    assert expected[-16 - 32 - 4 - 1 : -16 - 32 - 4] == bytes([CONTENT_TYPE_FRAMED])
    assert expected[-16 - 32 - 4 : -16 - 32] == struct.pack(">I", 4096)
    assert expected[-16 - 32 : -16] == ref_hkdf_sha512(KEY, MESSAGE_ID, b"COMMITKEY")
    assert header.size == len(expected)


keys_st = st.binary(min_size=32, max_size=32)
edk_st = st.tuples(st.text(max_size=12), st.binary(max_size=40), st.binary(min_size=1, max_size=40))


@given(
    data_key=keys_st,
    message_id=keys_st,
    context=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=5).filter(
        lambda c: not any(k.startswith("aws-crypto-") for k in c)
    ),
    edks=st.lists(edk_st, min_size=1, max_size=4),
    frame_length=st.integers(min_value=1, max_value=2**31 - 1),
)
def test_header_round_trips(
    data_key: bytes, message_id: bytes, context: dict[str, str], edks: list[tuple[str, bytes, bytes]], frame_length: int
) -> None:
    header, derived = encode_header(
        data_key=data_key,
        message_id=message_id,
        encryption_context=context,
        encrypted_data_keys=edks,
        frame_length=frame_length,
    )
    raw = header.to_bytes()
    assert raw == ref_header(data_key, message_id, context, edks, frame_length)
    parsed = read_header(BufferSource(raw + b"body"), Limits(max_frame_length=2**31 - 1))
    assert parsed == header
    assert parsed.message_id == message_id
    assert dict(parsed.encryption_context) == context
    assert list(parsed.encrypted_data_keys) == [EncryptedDataKey(*e) for e in edks]
    assert parsed.frame_length == frame_length
    assert parsed.content_type == CONTENT_TYPE_FRAMED
    # The returned message key is the reference derived key: it seals exactly what that key seals.
    reference = AESGCM(ref_hkdf_sha512(data_key, message_id, b"\x04\x78DERIVEKEY"))
    for key in (authenticate_header(parsed, data_key), derived):
        assert key.cipher().encrypt(bytes(12), b"", raw) == reference.encrypt(bytes(12), b"", raw)


def test_header_authentication_rejects_a_wrong_key_and_wrong_required_context() -> None:
    raw = ref_header(KEY, MESSAGE_ID, {}, EDKS, 64, extra_aad=ref_context({"k": "v"}))
    header = read_header(BufferSource(raw))
    authenticate_header(header, KEY, extra_aad=ref_context({"k": "v"}))
    for key, extra in [
        (KEY, b""),
        (KEY, ref_context({"k": "w"})),
        (bytes(32), ref_context({"k": "v"})),
        (KEY[:16], b""),
    ]:
        with pytest.raises(AuthenticationError):
            authenticate_header(header, key, extra_aad=extra)


def test_commitment_is_checked_before_the_header_tag() -> None:
    raw = bytearray(ref_header(KEY, MESSAGE_ID, {}, EDKS, 64))
    raw[-17] ^= 1  # last byte of the commitment key
    with pytest.raises(AuthenticationError):
        authenticate_header(read_header(BufferSource(bytes(raw))), KEY)


def test_header_repr_hides_secret_and_bulky_fields() -> None:
    header = read_header(BufferSource(ref_header(KEY, MESSAGE_ID, CONTEXT, EDKS, 64)))
    text = repr(header)
    assert MESSAGE_ID.hex() in text
    assert header.commitment_key.hex() not in text
    assert "c1c1c1" not in text


def _header_with(**fields: object) -> bytes:
    """A header body with chosen raw field values (no valid tag needed for structure tests)."""
    ctx = fields.get("context", b"")
    assert isinstance(ctx, bytes)
    edks = fields.get("edks", b"\x00\x01" + b"\x00\x01p" + b"\x00\x00" + b"\x00\x01c")
    assert isinstance(edks, bytes)
    out = bytes([fields.get("version", 2)])  # type: ignore[list-item]
    out += struct.pack(">H", fields.get("suite", 0x0478))
    out += MESSAGE_ID + struct.pack(">H", fields.get("context_length", len(ctx))) + ctx + edks
    out += bytes([fields.get("content_type", 2)]) + struct.pack(">I", fields.get("frame_length", 64))  # type: ignore[list-item]
    return out + bytes(32) + bytes(16) + bytes(64)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"version": 1}, UnsupportedFormatError),
        ({"version": 3}, FormatError),
        ({"version": 0x80}, FormatError),
        ({"suite": 0x0578}, UnsupportedFormatError),
        ({"suite": 0x0178}, UnsupportedFormatError),
        ({"suite": 0x0014}, UnsupportedFormatError),
        ({"edks": b"\x00\x00"}, FormatError),
        ({"edks": b"\x00\x01" + b"\x00\x01\xff" + b"\x00\x00" + b"\x00\x01c"}, FormatError),
        ({"content_type": 3}, FormatError),
        ({"content_type": 0}, FormatError),
        ({"frame_length": 0}, FormatError),
        ({"frame_length": (16 << 20) + 1}, FormatError),
        ({"content_type": 1, "frame_length": 64}, FormatError),
        ({"context": b"\x00\x00", "context_length": 2}, FormatError),
        ({"context": b"\x00\x01\x00\x01a\x00\x00\x00", "context_length": 8}, FormatError),
    ],
)
def test_malformed_header_tables(fields: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        read_header(BufferSource(_header_with(**fields)))
    assert type(info.value) is error


def test_signed_suite_and_v1_are_refused_with_a_clear_message() -> None:
    with pytest.raises(UnsupportedFormatError, match="0x0578"):
        read_header(BufferSource(_header_with(suite=0x0578)))
    with pytest.raises(UnsupportedFormatError, match="version 1"):
        read_header(BufferSource(b"\x01\x80\x03\x78" + bytes(100)))


def test_base64_input_gets_a_hint() -> None:
    with pytest.raises(FormatError, match="base64"):
        read_header(BufferSource(b"AgR4" + bytes(100)))


def test_limits_are_enforced_as_format_errors() -> None:
    raw = ref_header(KEY, MESSAGE_ID, CONTEXT, EDKS * 3, 4096)
    read_header(BufferSource(raw))
    with pytest.raises(FormatError, match="header exceeds"):
        read_header(BufferSource(raw), Limits(max_header_size=100))
    with pytest.raises(FormatError, match="encrypted data keys"):
        read_header(BufferSource(raw), Limits(max_encrypted_data_keys=2))
    with pytest.raises(FormatError, match="encryption context exceeds"):
        read_header(BufferSource(raw), Limits(max_encryption_context_size=10))
    with pytest.raises(FormatError, match="frame length"):
        read_header(BufferSource(raw), Limits(max_frame_length=4095))


def test_limits_validate_their_own_values() -> None:
    with pytest.raises(ValueError):
        Limits(max_encrypted_data_keys=0)
    with pytest.raises(ValueError):
        Limits(max_frame_length=2**31)


def test_truncation_inside_the_header_is_an_authentication_error() -> None:
    raw = ref_header(KEY, MESSAGE_ID, CONTEXT, EDKS, 4096)
    for cut in range(1, len(raw)):  # cut 0 is the empty object: also truncated
        with pytest.raises(AuthenticationError):
            read_header(BufferSource(raw[:cut]))
    with pytest.raises(AuthenticationError):
        read_header(BufferSource(b""))


class HostileSource:
    """Claims to be enormous; every byte reads as 0xFF (maximal length fields); counts what is read."""

    def __init__(self, prefix: bytes, size: int = 2**40) -> None:
        self.prefix = prefix
        self.size = size
        self.bytes_read = 0

    def readinto_at(self, offset: int, buf: memoryview) -> int:
        n = max(0, min(len(buf), self.size - offset))
        for i in range(n):  # small by construction: the parser never asks for much
            pos = offset + i
            buf[i] = self.prefix[pos] if pos < len(self.prefix) else 0xFF
        self.bytes_read += n
        return n

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "prefix",
    [
        b"\x02\x04\x78" + MESSAGE_ID,  # context length 0xFFFF, then 0xFFFF EDKs of 0xFFFF-byte fields...
        b"\x02\x04\x78" + MESSAGE_ID + b"\x00\x00",  # EDK count 0xFFFF
        b"\x02\x04\x78" + MESSAGE_ID + b"\x00\x00\x00\x01",  # one EDK with 0xFFFF-long fields
    ],
)
def test_hostile_length_fields_allocate_and_read_only_up_to_the_limit(prefix: bytes) -> None:
    source = HostileSource(prefix)
    limits = Limits(max_header_size=64 << 10, max_encrypted_data_keys=65535)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError):
            read_header(source, limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert source.bytes_read <= 64 << 10
    assert peak < 1 << 20


def test_hostile_frame_length_allocates_nothing_before_authentication() -> None:
    # A valid header announcing 16 MiB frames, on an object far too small for one.
    raw = ref_header(KEY, MESSAGE_ID, {}, EDKS, 16 << 20) + bytes(100)
    tracemalloc.start()
    try:
        reader = MessageReader(BufferSource(raw), resolve_key=lambda h: KEY)
        with pytest.raises(AuthenticationError):
            reader.read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


# --- body layout -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plaintext_size", "frame_length", "full_final", "regular", "final"),
    [
        (0, 16, False, 0, 0),
        (15, 16, False, 0, 15),
        (16, 16, False, 1, 0),
        (16, 16, True, 0, 16),
        (17, 16, False, 1, 1),
        (64, 16, True, 3, 16),
        (100, 1, False, 100, 0),
    ],
)
def test_body_layout_from_the_object_size(
    plaintext_size: int, frame_length: int, full_final: bool, regular: int, final: int
) -> None:
    msg = ref_message(KEY, MESSAGE_ID, {}, EDKS, frame_length, bytes(plaintext_size), full_final_frame=full_final)
    header = read_header(BufferSource(msg))
    layout = body_layout(header, len(msg))
    assert (layout.regular_frames, layout.final_length) == (regular, final)
    assert layout.plaintext_size == plaintext_size


def test_object_sizes_no_message_can_have_are_authentication_errors() -> None:
    msg = ref_message(KEY, MESSAGE_ID, {}, EDKS, 64, bytes(100))
    header = read_header(BufferSource(msg))
    body_layout(header, len(msg))
    # 100 bytes in 64-byte frames: one regular frame, a 36-byte final frame.
    for delta in (-1, 1, 8, 28):
        body_layout(header, len(msg) + delta)  # another final-frame length: the frames' tags decide
    for delta in (29, 40, 59, header.size - len(msg), header.size - len(msg) + 39):
        with pytest.raises(AuthenticationError):
            body_layout(header, len(msg) + delta)


def test_non_framed_layout_and_limit() -> None:
    msg = ref_message(KEY, MESSAGE_ID, {}, EDKS, 0, bytes(1000), non_framed=True)
    header = read_header(BufferSource(msg))
    assert header.content_type == CONTENT_TYPE_NON_FRAMED
    assert body_layout(header, len(msg)).plaintext_size == 1000
    with pytest.raises(FormatError, match="non-framed"):
        body_layout(header, len(msg), Limits(max_non_framed_size=999))
    with pytest.raises(AuthenticationError):
        body_layout(header, header.size + 35)


# --- the documented test vector -------------------------------------------------------

VECTOR_CONTEXT = {"tenant": "acme"}
VECTOR_EDKS = [EncryptedDataKey("envelope-local", b"alias/doc", b"\x01\x02\x03\x04")]
VECTOR_PLAINTEXT = b"Hello, envelope!\n!!!"  # 20 bytes: one regular frame and a 4-byte final frame


def _documented_vector() -> bytes:
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(r"<!-- test-vector:begin -->\s*```text\n(.*?)```", text, re.DOTALL)
    assert match, "docs/format.md lost its test vector block"
    lines = (line.split("#", 1)[0] for line in match.group(1).splitlines())
    return bytes.fromhex("".join("".join(lines).split()))


def test_documented_vector_is_what_the_writer_produces_byte_for_byte() -> None:
    written = write_message(VECTOR_PLAINTEXT, 16, encryption_context=VECTOR_CONTEXT, encrypted_data_keys=VECTOR_EDKS)
    assert written == ref_message(KEY, MESSAGE_ID, VECTOR_CONTEXT, VECTOR_EDKS, 16, VECTOR_PLAINTEXT)
    assert written == _documented_vector()


def test_documented_vector_decrypts() -> None:
    r = MessageReader(BufferSource(_documented_vector()), resolve_key=lambda h: KEY)
    assert r.read() == VECTOR_PLAINTEXT
    assert isinstance(r.header, MessageHeader)


# --- name binding --------------------------------------------------------------------------


def _fixed(n: int) -> bytes:
    return bytes(range(0xA0, 0xA0 + n))


def test_message_id_is_random_then_a_tag_over_length_prefixed_fields() -> None:
    binding_key = derive_binding_key(KEY)
    assert binding_key == ref_hkdf_sha512(KEY, b"", BINDING_KEY_INFO)
    mid = new_message_id(binding_key, "c0ffee", "reports/q3.csv", _fixed)
    assert len(mid) == 32
    assert mid[:16] == _fixed(16)
    fields = [b"c0ffee", _fixed(16), b"reports/q3.csv"]
    mac_input = b"".join(struct.pack(">I", len(f)) + f for f in fields)
    assert mid[16:] == hmac.new(binding_key, mac_input, hashlib.sha256).digest()[:16]


def test_binding_key_is_distinct_from_the_format_derivations() -> None:
    keys = derive_keys(KEY, MESSAGE_ID)
    assert derive_binding_key(KEY) not in (keys.derived_key, keys.commitment_key)
    with pytest.raises(ValidationError):
        derive_binding_key(KEY[:31])


def test_message_id_verifies_only_for_its_own_container_and_name() -> None:
    binding_key = derive_binding_key(KEY)
    mid = new_message_id(binding_key, "c1", "a/b")
    assert verify_message_id(binding_key, "c1", "a/b", mid)
    assert not verify_message_id(binding_key, "c1", "a/c", mid)
    assert not verify_message_id(binding_key, "c2", "a/b", mid)
    assert not verify_message_id(derive_binding_key(bytes(32)), "c1", "a/b", mid)
    assert not verify_message_id(binding_key, "c1", "a/b", mid[:31])
    flipped = bytearray(mid)
    flipped[3] ^= 1
    assert not verify_message_id(binding_key, "c1", "a/b", bytes(flipped))
    # Length prefixes keep the fields apart: moving a byte between them changes the tag.
    assert not verify_message_id(binding_key, "c1a", "/b", mid)


def test_message_ids_are_fresh() -> None:
    binding_key = derive_binding_key(KEY)
    assert len({new_message_id(binding_key, "c", "n") for _ in range(50)}) == 50


def test_documented_derived_values() -> None:
    text = DOCS.read_text(encoding="utf-8")
    keys = derive_keys(KEY, MESSAGE_ID)
    for label, value in [
        ("derived key", keys.derived_key),
        ("commitment key", keys.commitment_key),
        ("binding key", derive_binding_key(KEY)),
    ]:
        assert re.search(rf"^{label}\s+{value.hex()}$", text, re.MULTILINE), label
