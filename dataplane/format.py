"""The object format: AWS Encryption SDK message format v2, suite 0x0478.

This module is the byte-level codec and nothing else: the header layout and
its strict, bounded parser; the encryption-context serialization; the key
derivations (derived data key, commitment key); header authentication; the
body layout arithmetic, frame IVs and the body AAD. The normative prose is
`docs/format.md`; this file follows it section by section.

It must never release plaintext, never hold a data key longer than a call,
never leave raw key bytes in a frame an exception can propagate through
(see "Key derivation" below: holders in, `MessageKey` out), and never let a length field read from a message allocate or read more than
the configured `Limits` allow. Structural problems raise `FormatError`
(`UnsupportedFormatError` for formats we refuse on purpose); every integrity
failure -- header tag, key commitment, truncation, an object size no valid
message can have -- raises the one `AuthenticationError`.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import NamedTuple, NoReturn

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA512
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from envelope.datakey import DataKey
from envelope.errors import AuthenticationError, FormatError, UnsupportedFormatError, ValidationError
from envelope.header import ESDK_RESERVED_PREFIX, SUITE_ID
from envelope.storage._base import read_prefix

from ._byteio import MessageSource, MessageStream, read_some

__all__ = [
    "CONTENT_TYPE_FRAMED",
    "CONTENT_TYPE_NON_FRAMED",
    "DEFAULT_FRAME_LENGTH",
    "MAX_FRAME_LENGTH",
    "MESSAGE_ID_LENGTH",
    "SUITE_AES256_GCM_HKDF_SHA512_COMMIT_KEY",
    "SUITE_AES256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384",
    "BodyAad",
    "BodyLayout",
    "EncryptedDataKey",
    "Limits",
    "MessageHeader",
    "MessageKey",
    "authenticate_header",
    "authenticated_only_context",
    "body_layout",
    "derive_keys",
    "encode_header",
    "frame_iv",
    "key_holder",
    "parse_encryption_context",
    "parse_header",
    "read_header",
    "read_header_and_prefix",
    "read_header_from_stream",
    "serialize_encryption_context",
]

# --- Constants of the format (ESDK message format v2, suite 0x0478) ---------

MESSAGE_VERSION_1 = 0x01
MESSAGE_VERSION_2 = 0x02
SUITE_AES256_GCM_HKDF_SHA512_COMMIT_KEY = SUITE_ID  # the one definition is the container schema's
SUITE_AES256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384 = 0x0578

MESSAGE_ID_LENGTH = 32
DATA_KEY_LENGTH = 32
DERIVED_KEY_LENGTH = 32
COMMITMENT_KEY_LENGTH = 32  # the suite data of 0x0478
IV_LENGTH = 12
TAG_LENGTH = 16
HEADER_IV = bytes(IV_LENGTH)  # v2 header authentication always uses the all-zero IV

DERIVE_KEY_INFO = SUITE_AES256_GCM_HKDF_SHA512_COMMIT_KEY.to_bytes(2, "big") + b"DERIVEKEY"
COMMIT_KEY_INFO = b"COMMITKEY"

CONTENT_TYPE_NON_FRAMED = 0x01
CONTENT_TYPE_FRAMED = 0x02

FRAME_AAD_LABEL = b"AWSKMSEncryptionClient Frame"
FINAL_FRAME_AAD_LABEL = b"AWSKMSEncryptionClient Final Frame"
SINGLE_BLOCK_AAD_LABEL = b"AWSKMSEncryptionClient Single Block"

FINAL_FRAME_MARKER = 0xFFFFFFFF
FIRST_SEQUENCE_NUMBER = 1
NON_FRAMED_SEQUENCE_NUMBER = 1
MAX_FRAME_COUNT = 2**32 - 1
MAX_FORMAT_FRAME_LENGTH = 2**31 - 1  # what the SDKs accept in the header's u32
MAX_NON_FRAMED_CONTENT_LENGTH = 2**36 - 32  # AES-GCM's limit for one invocation

# --- Frame layout: defined here once, used by the writer and both readers ---
#
#   regular frame   seq u32 | IV | ciphertext (frame length) | tag
#   final frame     0xFFFFFFFF | seq u32 | IV | content length u32 | ciphertext | tag
#   non-framed      IV | content length u64 | ciphertext | tag
#
# The IV of frame `seq` is 8 zero bytes | seq u32: what every SDK writes, and
# unique per frame under a per-message key. Our writer builds it with these
# structs; readers use the stored IV (a wrong one fails the tag).

SEQUENCE_NUMBER = struct.Struct(">I")
"""The first field of every frame: its sequence number, or the final-frame marker."""
FRAME_IV = struct.Struct(">8xI")
"""The IV of a frame from its sequence number: 8 zero bytes, u32 sequence number."""
REGULAR_FRAME_HEAD = struct.Struct(SEQUENCE_NUMBER.format + FRAME_IV.format[1:])
"""seq u32 | IV -- packed with (seq, seq)."""
FINAL_FRAME_HEAD = struct.Struct(">I" + SEQUENCE_NUMBER.format[1:] + FRAME_IV.format[1:] + "I")
"""0xFFFFFFFF | seq u32 | IV | content length u32 -- packed with (marker, seq, seq, length)."""
NON_FRAMED_HEAD = struct.Struct(f">{IV_LENGTH}sQ")
"""IV | content length u64."""
REGULAR_FRAME_IV = slice(4, 4 + IV_LENGTH)
FINAL_FRAME_IV = slice(8, 8 + IV_LENGTH)
NON_FRAMED_IV = slice(0, IV_LENGTH)
REGULAR_FRAME_PREFIX = REGULAR_FRAME_HEAD.size
FINAL_FRAME_PREFIX = FINAL_FRAME_HEAD.size
NON_FRAMED_PREFIX = NON_FRAMED_HEAD.size
REGULAR_FRAME_OVERHEAD = REGULAR_FRAME_PREFIX + TAG_LENGTH
FINAL_FRAME_OVERHEAD = FINAL_FRAME_PREFIX + TAG_LENGTH
NON_FRAMED_OVERHEAD = NON_FRAMED_PREFIX + TAG_LENGTH

DEFAULT_FRAME_LENGTH = 1 << 20  # what our writer uses: near raw AES-GCM speed (docs/format.md)
MAX_FRAME_LENGTH = 16 << 20
"""The largest frame our writer writes, and the default reader's `Limits.max_frame_length`:
a plane never writes what its own default reader refuses (docs/format.md, section 7)."""
U16_MAX = 0xFFFF

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_HEADER_READ_CHUNK = 4096
SMALL_OBJECT_BYTES = 64 << 10
"""Objects up to this size are read whole by the header read (one positional read per object)."""
MAX_FORMAT_HEADER_SIZE = 1 << 30  # the largest Limits.max_header_size


# --- Value objects -----------------------------------------------------------


def _int_in(lo: int, hi: int) -> Callable[[object, attrs.Attribute[int], object], None]:
    def check(_: object, attribute: attrs.Attribute[int], value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValidationError(f"Limits.{attribute.name} must be an integer in {lo}..{hi}, got {value!r}")

    return check


@attrs.frozen
class Limits:
    """Bounds a reader enforces on a message before it trusts anything in it.

    Exceeding one is a `FormatError`: the message may be well formed, but
    this reader refuses to spend that much memory on it.
    """

    max_header_size: int = attrs.field(default=1 << 20, validator=_int_in(64, MAX_FORMAT_HEADER_SIZE))
    max_encrypted_data_keys: int = attrs.field(default=64, validator=_int_in(1, U16_MAX))
    max_encryption_context_size: int = attrs.field(default=U16_MAX, validator=_int_in(0, U16_MAX))
    max_frame_length: int = attrs.field(default=MAX_FRAME_LENGTH, validator=_int_in(1, MAX_FORMAT_FRAME_LENGTH))
    max_non_framed_size: int = attrs.field(default=64 << 20, validator=_int_in(0, MAX_NON_FRAMED_CONTENT_LENGTH))


DEFAULT_LIMITS = Limits()
"""The default `Limits` (frozen, so one shared instance: building one runs five validators)."""


class EncryptedDataKey(NamedTuple):
    """One EDK of the header: who can decrypt it, which key, and the wrapped data key."""

    provider_id: str
    provider_info: bytes
    ciphertext: bytes


def _frozen_context(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


def _edk_tuple(value: Iterable[EncryptedDataKey]) -> tuple[EncryptedDataKey, ...]:
    return tuple(value)


@attrs.frozen(eq=False)
class MessageHeader:
    """A parsed v2 header. Parsing does not authenticate it: see `authenticate_header`."""

    suite_id: int
    message_id: bytes = attrs.field(repr=lambda b: b.hex())
    encryption_context: Mapping[str, str] = attrs.field(converter=_frozen_context)
    encrypted_data_keys: tuple[EncryptedDataKey, ...] = attrs.field(converter=_edk_tuple, repr=False)
    content_type: int
    frame_length: int
    commitment_key: bytes = attrs.field(repr=False)
    header_tag: bytes = attrs.field(repr=False)
    body: bytes = attrs.field(repr=False)
    """Every header byte before the tag: the header-authentication AAD."""

    version: int = MESSAGE_VERSION_2

    @property
    def size(self) -> int:
        """Bytes the header occupies at the start of the message."""
        return len(self.body) + TAG_LENGTH

    def to_bytes(self) -> bytes:
        return self.body + self.header_tag

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MessageHeader):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]


class DerivedKeys(NamedTuple):
    derived_key: bytes
    commitment_key: bytes

    def __repr__(self) -> str:
        return "<DerivedKeys hidden>"


# --- Encryption context ------------------------------------------------------


def serialize_encryption_context(context: Mapping[str, str]) -> bytes:
    """The pair encoding: u16 count, then (u16 len, key, u16 len, value) sorted by key bytes.

    An empty context serializes to zero bytes. Raises `ValidationError` for a
    context that cannot be encoded (non-strings, oversize, over 65535 bytes).
    """
    if not context:
        return b""
    pairs: list[tuple[bytes, bytes]] = []
    for key, value in context.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValidationError("encryption context keys and values must be str")
        pairs.append((key.encode("utf-8"), value.encode("utf-8")))
    if len(pairs) > U16_MAX:
        raise ValidationError("encryption context has more than 65535 entries")
    pairs.sort()
    out = bytearray(_U16.pack(len(pairs)))
    for kb, vb in pairs:
        if len(kb) > U16_MAX or len(vb) > U16_MAX:
            raise ValidationError("an encryption context key or value exceeds 65535 UTF-8 bytes")
        out += _U16.pack(len(kb)) + kb + _U16.pack(len(vb)) + vb
    if len(out) > U16_MAX:
        raise ValidationError("serialized encryption context exceeds 65535 bytes")
    return bytes(out)


def parse_encryption_context(data: bytes | memoryview) -> dict[str, str]:
    """Inverse of `serialize_encryption_context`, strictly: sorted, no duplicates, no slack."""
    data = bytes(data)
    if not data:
        return {}
    end = len(data)
    if end < 2:
        raise FormatError("encryption context: a length runs past the end of the block")
    (count,) = _U16.unpack_from(data, 0)
    if count == 0:
        raise FormatError("encryption context: a non-empty encoding must have at least one entry")
    context: dict[str, str] = {}
    previous: bytes | None = None
    pos = 2
    unpack_u16 = _U16.unpack_from
    for _ in range(count):
        if pos + 2 > end:
            raise FormatError("encryption context: a length runs past the end of the block")
        start = pos + 2
        pos = start + unpack_u16(data, pos)[0]
        if pos + 2 > end:
            raise FormatError("encryption context: a length runs past the end of the block")
        key = data[start:pos]
        start = pos + 2
        pos = start + unpack_u16(data, pos)[0]
        if pos > end:
            raise FormatError("encryption context: a length runs past the end of the block")
        if previous is not None and key <= previous:
            raise FormatError("encryption context: keys are duplicated or not sorted")
        previous = key
        context[_utf8(key, "encryption context key")] = _utf8(data[start:pos], "encryption context value")
    if pos != end:
        raise FormatError("encryption context: trailing bytes after the last entry")
    return context


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{what} is not valid UTF-8") from None


# --- Key derivation and header authentication --------------------------------
#
# Raw key bytes (the data key, and every key derived from it) live in exactly
# two kinds of place: a holder whose repr, str and pickling hide them
# (`envelope.datakey.DataKey` for the data key, `MessageKey` for the derived
# body key), and the frame of `_commit_and_derive`, which reveals the data key,
# raises nothing, and clears its locals before it returns. Every function that
# accepts raw bytes rebinds that parameter to a holder on its first line. So no
# frame an exception can propagate through -- header authentication, writer or
# reader construction, a frame that fails to open -- holds key bytes in its
# locals, and error trackers that capture traceback locals see only holders and
# AES-GCM objects (whose repr shows no key). Integrity failures are raised from
# frames that hold no raw bytes.


class MessageKey:
    """A message's derived (body) key, as a factory of AES-GCM objects; the bytes never leave it."""

    __slots__ = ("__key", "_spare")

    def __init__(self, key: bytes) -> None:
        self.__key = key
        self._spare: list[AESGCM] = []

    def cipher(self) -> AESGCM:
        """An AES-GCM object under this key for one user (one per thread that seals or opens frames).

        The first caller after header authentication gets the object that checked or made the
        header tag (it has no other user left); every other call builds a new one.
        """
        try:
            return self._spare.pop()  # list.pop is atomic: two threads never get the same object
        except IndexError:
            return AESGCM(self.__key)

    def _hand_over(self, aead: AESGCM) -> None:
        """Keep `aead`, whose header work is done, for the next `cipher()` call."""
        self._spare.append(aead)

    def __repr__(self) -> str:
        return "<MessageKey hidden>"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("MessageKey cannot be pickled")


def key_holder(data_key: object) -> DataKey:
    """`data_key` as a `DataKey` holder: a DataKey as is, bytes copied into a new one.

    Callers rebind their parameter to the result so that their frame no longer
    references raw bytes (see the comment above).
    """
    if isinstance(data_key, DataKey):
        return data_key
    if isinstance(data_key, bytes | bytearray | memoryview):
        return DataKey(bytes(data_key), key_id="")
    raise ValidationError("data_key must be bytes or a DataKey")


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=SHA512(), length=32, salt=salt, info=info).derive(ikm)


def _commit_and_derive(data_key: DataKey, message_id: bytes) -> tuple[bytes, MessageKey]:
    """(commitment key, message key) of a 32-byte data key and a 32-byte message id.

    Both are HKDF-SHA512 (RFC 5869) with the message id as salt and 32-byte
    outputs: one extract (the same for both) and one expand block each, i.e.
    three one-shot HMACs instead of two full HKDFs (`derive_keys` computes
    them with `cryptography`'s HKDF; tests check the two agree).
    The one frame that holds the revealed data key and the pseudorandom key:
    its inputs are checked by the callers, so nothing here raises, and the
    bytes are dropped before it returns.
    """
    ikm = data_key.reveal()
    prk = b""
    try:
        prk = hmac.digest(message_id, ikm, "sha512")
        commitment = hmac.digest(prk, _COMMIT_KEY_BLOCK, "sha512")[:COMMITMENT_KEY_LENGTH]
        return commitment, MessageKey(hmac.digest(prk, _DERIVE_KEY_BLOCK, "sha512")[:DERIVED_KEY_LENGTH])
    finally:
        del ikm, prk


_COMMIT_KEY_BLOCK = COMMIT_KEY_INFO + b"\x01"  # HKDF-Expand's first block: T(1) = HMAC(PRK, info | 0x01)
_DERIVE_KEY_BLOCK = DERIVE_KEY_INFO + b"\x01"


def _key_if_committed(data_key: DataKey, header: MessageHeader) -> MessageKey | None:
    """The message key if `data_key` is the key the header commits to, else None (constant-time compare).

    The commitment key computed here belongs to whatever key the caller
    supplied -- for a wrong key, a secret of that other key -- so it is
    compared and dropped in this frame, which raises nothing.
    """
    commitment, key = _commit_and_derive(data_key, header.message_id)
    try:
        return key if hmac.compare_digest(commitment, header.commitment_key) else None
    finally:
        del commitment


def derive_keys(data_key: bytes, message_id: bytes) -> DerivedKeys:
    """The suite's derivations as raw bytes: HKDF-SHA512 with the message id as salt.

    For tests and step-by-step checks of an implementation; the reader and
    writer go through `authenticate_header` / `encode_header`, which never
    hand raw derived bytes to their callers.
    """
    if len(data_key) != DATA_KEY_LENGTH:
        raise ValidationError("suite 0x0478 needs a 32-byte data key")
    if len(message_id) != MESSAGE_ID_LENGTH:
        raise ValidationError("a v2 message id is 32 bytes")
    return DerivedKeys(
        _hkdf(data_key, message_id, DERIVE_KEY_INFO),
        _hkdf(data_key, message_id, COMMIT_KEY_INFO),
    )


def authenticate_header(header: MessageHeader, data_key: bytes | DataKey, *, extra_aad: bytes = b"") -> MessageKey:
    """Check key commitment, then the header tag; return the message (body) key.

    `extra_aad` is the serialized encryption context that is authenticated
    but not stored (the required-context rule). Any failure, including a
    data key of the wrong length, is the one `AuthenticationError`.
    """
    owned = not isinstance(data_key, DataKey)
    data_key = key_holder(data_key)  # from here on this frame holds no raw key bytes
    try:
        key = _key_if_committed(data_key, header) if len(data_key) == DATA_KEY_LENGTH else None
    finally:
        if owned:
            data_key.wipe()
    if key is None:
        raise AuthenticationError
    aead = key.cipher()
    try:
        aead.decrypt(HEADER_IV, header.header_tag, header.body + extra_aad if extra_aad else header.body)
    except InvalidTag:
        raise AuthenticationError from None
    key._hand_over(aead)
    return key


def authenticated_only_context(header: MessageHeader, required: Mapping[str, str] | None) -> bytes:
    """The required-encryption-context rule: the serialization of required entries the header does not store.

    Entries the header stores must equal the required ones (else
    `AuthenticationError`); the rest are authenticated by appending this to
    the header-authentication AAD (`authenticate_header(extra_aad=...)`).
    """
    if not required:
        return b""
    missing: dict[str, str] = {}
    for key, value in required.items():
        stored = header.encryption_context.get(key)
        if stored is None:
            missing[key] = value
        elif stored != value:
            raise AuthenticationError
    return serialize_encryption_context(missing)


def encode_header(
    *,
    data_key: bytes | DataKey,
    message_id: bytes,
    encryption_context: Mapping[str, str],
    encrypted_data_keys: Iterable[EncryptedDataKey | tuple[str, bytes, bytes]],
    frame_length: int,
    content_type: int = CONTENT_TYPE_FRAMED,
) -> tuple[MessageHeader, MessageKey]:
    """Build and authenticate a header; return it with the message (body) key.

    Inputs are the caller's arguments, so problems are `ValidationError`,
    all raised before any key is derived.
    """
    owned = not isinstance(data_key, DataKey)
    data_key = key_holder(data_key)  # from here on this frame holds no raw key bytes
    try:
        return _encode_header(
            data_key,
            message_id,
            encryption_context=encryption_context,
            encrypted_data_keys=encrypted_data_keys,
            frame_length=frame_length,
            content_type=content_type,
        )
    finally:
        if owned:
            data_key.wipe()


def _encode_header(
    data_key: DataKey,
    message_id: bytes,
    *,
    encryption_context: Mapping[str, str],
    encrypted_data_keys: Iterable[EncryptedDataKey | tuple[str, bytes, bytes]],
    frame_length: int,
    content_type: int,
) -> tuple[MessageHeader, MessageKey]:
    if len(data_key) != DATA_KEY_LENGTH:
        raise ValidationError("suite 0x0478 needs a 32-byte data key")
    if not isinstance(message_id, bytes) or len(message_id) != MESSAGE_ID_LENGTH:
        raise ValidationError("a v2 message id is 32 bytes")
    if content_type not in (CONTENT_TYPE_FRAMED, CONTENT_TYPE_NON_FRAMED):
        raise ValidationError("content type must be 0x01 (non-framed) or 0x02 (framed)")
    if content_type == CONTENT_TYPE_FRAMED and not 1 <= frame_length <= MAX_FORMAT_FRAME_LENGTH:
        raise ValidationError("frame length must be 1..2^31-1")
    if content_type == CONTENT_TYPE_NON_FRAMED and frame_length != 0:
        raise ValidationError("non-framed content has frame length 0")
    edks = tuple(EncryptedDataKey(*edk) for edk in encrypted_data_keys)
    middle = _header_middle(encryption_context, edks, frame_length, content_type)
    body = bytearray(_HEADER_START)
    body += message_id
    body += middle
    # Everything is checked: derive last. The commitment key is the right key's, published in the header.
    commitment_key, key = _commit_and_derive(data_key, message_id)
    body += commitment_key
    aead = key.cipher()
    tag = aead.encrypt(HEADER_IV, b"", bytes(body))
    key._hand_over(aead)
    header = MessageHeader(
        suite_id=SUITE_AES256_GCM_HKDF_SHA512_COMMIT_KEY,
        message_id=bytes(message_id),
        encryption_context=dict(encryption_context),
        encrypted_data_keys=edks,
        content_type=content_type,
        frame_length=frame_length,
        commitment_key=commitment_key,
        header_tag=tag,
        body=bytes(body),
    )
    return header, key


_HEADER_START = bytes([MESSAGE_VERSION_2]) + _U16.pack(SUITE_AES256_GCM_HKDF_SHA512_COMMIT_KEY)
_MiddleInputs = tuple[tuple[tuple[str, str], ...], tuple[EncryptedDataKey, ...], int, int]
_last_middle: tuple[_MiddleInputs | None, bytes] = (None, b"")
"""The inputs of the last header middle `_header_middle` encoded, and its bytes: every message of a
container generation has the same one (public fields only; one entry, replaced atomically)."""


def _header_middle(
    encryption_context: Mapping[str, str], edks: tuple[EncryptedDataKey, ...], frame_length: int, content_type: int
) -> bytes:
    """The header between the message id and the commitment key: context, EDKs, content type, frame length.

    Raises `ValidationError` for anything that cannot be encoded. Equal inputs encode to equal bytes,
    so the last encoding is reused for the same inputs (the writer's common case).
    """
    global _last_middle
    inputs = (tuple(encryption_context.items()), edks, frame_length, content_type)
    seen, middle = _last_middle
    if inputs == seen:
        return middle
    if not 1 <= len(edks) <= U16_MAX:
        raise ValidationError("a message needs 1..65535 encrypted data keys")
    for name in encryption_context:
        if isinstance(name, str) and name.startswith(ESDK_RESERVED_PREFIX):
            raise ValidationError(f"encryption context keys starting with {ESDK_RESERVED_PREFIX!r} are reserved")
    context_bytes = serialize_encryption_context(encryption_context)
    out = bytearray()
    out += _U16.pack(len(context_bytes)) + context_bytes
    out += _U16.pack(len(edks))
    for edk in edks:
        provider_id = edk.provider_id.encode("utf-8")
        for field in (provider_id, edk.provider_info, edk.ciphertext):
            if not isinstance(field, bytes | bytearray) or len(field) > U16_MAX:
                raise ValidationError("EDK fields must be bytes of at most 65535 bytes")
            out += _U16.pack(len(field)) + field
    out += bytes([content_type]) + _U32.pack(frame_length)
    middle = bytes(out)
    _last_middle = (inputs, middle)
    return middle


# --- Header parsing ----------------------------------------------------------


class _StreamReads:
    """Positional reads over a stream that only ever ask for the next bytes (the header parser's)."""

    __slots__ = ("_position", "_stream")

    def __init__(self, stream: MessageStream) -> None:
        self._stream = stream
        self._position = 0

    def readinto_at(self, offset: int, buf: memoryview, /) -> int:
        assert offset == self._position, "the header parser reads a stream front to back"
        n = read_some(self._stream, buf)
        self._position += n
        return n


class _HeaderReader:
    """Reads a header front to back from a source, never past `limit` bytes.

    The buffer grows by doubling as fields are consumed, so a hostile length
    field costs at most `limit` bytes of memory and of reading before it is
    refused. Running off the end of the object is truncation (integrity).
    With ``read_ahead=False`` (a stream) it reads exactly the bytes the
    fields need, so the body starts where the header parser stopped.
    """

    __slots__ = ("_buf", "_limit", "_pos", "_read_ahead", "_readinto_at", "_size")

    def __init__(
        self,
        readinto_at: Callable[[int, memoryview], int],
        size: int,
        limit: int,
        *,
        read_ahead: bool = True,
        seed: bytes = b"",
    ) -> None:
        self._readinto_at = readinto_at
        self._size = size
        self._limit = limit
        self._read_ahead = read_ahead
        self._buf = bytearray(seed)  # the object's first bytes, already read
        self._pos = 0

    @property
    def position(self) -> int:
        return self._pos

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if end > self._limit:
            raise FormatError(f"message header exceeds the limit of {self._limit} bytes")
        if end > self._size:
            raise AuthenticationError  # truncated inside the header
        if end > len(self._buf):
            self._fill(end)
        out = bytes(self._buf[self._pos : end])
        self._pos = end
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(_U16.unpack(self.take(2))[0])

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def _fill(self, end: int) -> None:
        have = len(self._buf)
        target = min(max(end, 2 * have, _HEADER_READ_CHUNK), self._limit, self._size) if self._read_ahead else end
        grown = bytearray(target)
        grown[:have] = self._buf
        with memoryview(grown) as view:
            pos = have
            while pos < target:
                n = self._readinto_at(pos, view[pos:target])
                if n <= 0:
                    raise AuthenticationError  # the object is shorter than it claimed
                pos += n
        self._buf = grown

    def body(self) -> bytes:
        return bytes(self._buf[: self._pos])


def _looks_like_base64(first: bytes) -> bool:
    # "AgR4" is the base64 of 02 04 78: someone passed the text encoding of a message.
    return first[:1] == b"A" and first[1:2] in (b"Y", b"g")


def read_header(source: MessageSource, limits: Limits | None = None) -> MessageHeader:
    """Parse the header at the start of `source`; does not authenticate it."""
    return read_header_and_prefix(source, limits)[0]


def read_header_and_prefix(source: MessageSource, limits: Limits | None = None) -> tuple[MessageHeader, bytes]:
    """Parse the header at the start of `source` (not authenticated); also return the bytes read.

    One positional read fetches the first `_HEADER_READ_CHUNK` bytes (at most
    `limits.max_header_size`), or the whole object if it is at most
    `SMALL_OBJECT_BYTES` and no larger than one header and one frame the
    limits allow: a small object then
    costs one read in all (the reader serves its frames from these bytes).
    A header that fits is parsed with a few `unpack_from` calls; anything
    else -- a longer header, or any field the fast parser does not accept --
    goes through the careful field-by-field parser, which raises the precise
    error. Both accept exactly the same headers (tests/test_perf_header.py).
    """
    limits = limits or DEFAULT_LIMITS
    size = source.size
    # Never more than a header and one frame the limits allow: a hostile size costs nothing extra.
    whole = min(SMALL_OBJECT_BYTES, limits.max_header_size + limits.max_frame_length + FINAL_FRAME_OVERHEAD)
    want = size if size <= whole else min(_HEADER_READ_CHUNK, limits.max_header_size, size)
    data = read_prefix(source, want)
    return _parse_prefix(data, size, source.readinto_at, limits), data


def parse_header(message: bytes, limits: Limits | None = None) -> MessageHeader:
    """Parse the header of a whole message held in memory; does not authenticate it.

    The same parsers as `read_header` (the fast one, then the careful one for
    anything it does not accept), so a message gets the same header or the
    same error whether it is read from a store or given as bytes.
    """
    return _parse_prefix(message, len(message), _BytesReads(message).readinto_at, limits or DEFAULT_LIMITS)


def _parse_prefix(
    data: bytes, size: int, readinto_at: Callable[[int, memoryview], int], limits: Limits
) -> MessageHeader:
    """The header of an object of `size` bytes whose first bytes are `data` (`readinto_at` reads the rest)."""
    header = _parse_header_fast(data, limits)
    if header is not None:
        return header
    reader = _HeaderReader(readinto_at, size, limits.max_header_size, seed=data)
    return _parse_header(reader, readinto_at if size >= 2 else None, limits)


class _BytesReads:
    """Positional reads over bytes in memory (a whole message)."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    def readinto_at(self, offset: int, buf: memoryview, /) -> int:
        chunk = self._data[offset : offset + len(buf)]
        buf[: len(chunk)] = chunk
        return len(chunk)


_FIXED_HEAD = struct.Struct(f">BH{MESSAGE_ID_LENGTH}sH")
"""version u8 | suite u16 | message id | context length u16."""
_FIXED_TAIL = struct.Struct(f">BI{COMMITMENT_KEY_LENGTH}s{TAG_LENGTH}s")
"""content type u8 | frame length u32 | commitment key | header tag."""


_ContextAndEdks = tuple[bytes, Mapping[str, str], tuple[EncryptedDataKey, ...]]
_last_sections: _ContextAndEdks = (b"", {}, ())
"""The bytes of the last context-and-EDKs sections the fast parser parsed, and what they parse to.

Every object of a container carries the same ones, and a parse depends on nothing but those bytes,
so equal bytes are not parsed again (all public header fields; one entry, replaced atomically)."""


def _sections_fast(
    data: bytes, end: int, context_length: int, limits: Limits
) -> tuple[Mapping[str, str], tuple[EncryptedDataKey, ...], int] | None:
    """(context, EDKs, position after them) of the sections from the context length field on, or None."""
    global _last_sections
    start = _FIXED_HEAD.size - 2  # the context length field
    seen, context, edks = _last_sections
    if seen and data.startswith(seen, start) and len(edks) <= limits.max_encrypted_data_keys:
        pos = start + len(seen)
        return (context, edks, pos) if pos <= end else None
    pos = _FIXED_HEAD.size + context_length
    if pos + 2 > end:
        return None
    try:
        context = parse_encryption_context(data[_FIXED_HEAD.size : pos])
    except FormatError:
        return None
    u16 = _U16.unpack_from
    (edk_count,) = u16(data, pos)
    pos += 2
    if not 1 <= edk_count <= limits.max_encrypted_data_keys:
        return None
    found = []
    for _ in range(edk_count):
        fields = []
        for _ in range(3):
            if pos + 2 > end:
                return None
            field_start = pos + 2
            pos = field_start + u16(data, pos)[0]
            fields.append(data[field_start:pos])
        if pos > end:
            return None
        try:
            provider_id = fields[0].decode("utf-8")
        except UnicodeDecodeError:
            return None
        found.append(EncryptedDataKey(provider_id, fields[1], fields[2]))
    edks = tuple(found)
    _last_sections = (data[start:pos], context, edks)
    return context, edks, pos


def _parse_header_fast(data: bytes, limits: Limits) -> MessageHeader | None:
    """The header at the start of `data` if it is whole and valid there, else None (never raises).

    The happy path of `_parse_header` in a few C-level calls. Every check of
    the careful parser is here too; on any doubt this returns None and the
    caller runs the careful parser, so errors and their order are its alone.
    """
    end = min(len(data), limits.max_header_size)
    if end < _FIXED_HEAD.size:
        return None
    version, suite_id, message_id, context_length = _FIXED_HEAD.unpack_from(data)
    if (
        version != MESSAGE_VERSION_2
        or suite_id != SUITE_AES256_GCM_HKDF_SHA512_COMMIT_KEY
        or context_length > limits.max_encryption_context_size
    ):
        return None
    sections = _sections_fast(data, end, context_length, limits)
    if sections is None:
        return None
    encryption_context, edks, pos = sections
    if pos + _FIXED_TAIL.size > end:
        return None
    content_type, frame_length, commitment_key, header_tag = _FIXED_TAIL.unpack_from(data, pos)
    if content_type == CONTENT_TYPE_FRAMED:
        if not 1 <= frame_length <= limits.max_frame_length:
            return None
    elif content_type != CONTENT_TYPE_NON_FRAMED or frame_length != 0:
        return None
    return MessageHeader(
        suite_id=suite_id,
        message_id=message_id,
        encryption_context=encryption_context,
        encrypted_data_keys=tuple(edks),
        content_type=content_type,
        frame_length=frame_length,
        commitment_key=commitment_key,
        header_tag=header_tag,
        body=data[: pos + _FIXED_TAIL.size - TAG_LENGTH],
    )


def read_header_from_stream(stream: MessageStream, limits: Limits | None = None) -> MessageHeader:
    """Parse the header at the front of a blocking binary stream; does not authenticate it.

    It reads exactly the header's bytes (the body starts at the stream's
    position afterwards), refuses as soon as a field is wrong -- an unknown
    version after one byte -- and never reads more than `limits.max_header_size`.
    """
    limits = limits or DEFAULT_LIMITS
    reads = _StreamReads(stream)
    reader = _HeaderReader(reads.readinto_at, MAX_FORMAT_HEADER_SIZE, limits.max_header_size, read_ahead=False)
    return _parse_header(reader, reads.readinto_at, limits)


def _parse_header(
    r: _HeaderReader, second_byte: Callable[[int, memoryview], int] | None, limits: Limits
) -> MessageHeader:
    """The fields in order; `second_byte` reads byte 1 for the base64 hint (None: the object has one byte)."""
    version = r.u8()
    if version == MESSAGE_VERSION_1:
        raise UnsupportedFormatError("AWS Encryption SDK message format version 1 (no key commitment) is not supported")
    if version != MESSAGE_VERSION_2:
        first = bytes([version])
        if second_byte is not None:
            buf = bytearray(1)
            second_byte(1, memoryview(buf))
            first += bytes(buf)
        hint = " (it looks base64-encoded; decode it first)" if _looks_like_base64(first) else ""
        raise FormatError(f"not an AWS Encryption SDK message: unknown version byte 0x{version:02x}{hint}")
    suite_id = r.u16()
    if suite_id == SUITE_AES256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384:
        raise UnsupportedFormatError(
            "algorithm suite 0x0578 (ECDSA P-384 signed) is not supported: only 0x0478 "
            "(AES-256-GCM, HKDF-SHA512, key commitment, unsigned) is"
        )
    if suite_id != SUITE_AES256_GCM_HKDF_SHA512_COMMIT_KEY:
        raise UnsupportedFormatError(f"algorithm suite 0x{suite_id:04x} is not supported: only 0x0478 is")
    message_id = r.take(MESSAGE_ID_LENGTH)

    context_length = r.u16()
    if context_length > limits.max_encryption_context_size:
        raise FormatError(f"encryption context exceeds the limit of {limits.max_encryption_context_size} bytes")
    encryption_context = parse_encryption_context(r.take(context_length))

    edk_count = r.u16()
    if edk_count == 0:
        raise FormatError("a message must carry at least one encrypted data key")
    if edk_count > limits.max_encrypted_data_keys:
        raise FormatError(f"message carries more than {limits.max_encrypted_data_keys} encrypted data keys")
    edks = []
    for _ in range(edk_count):
        provider_id = _utf8(r.take(r.u16()), "EDK provider id")
        provider_info = r.take(r.u16())
        ciphertext = r.take(r.u16())
        edks.append(EncryptedDataKey(provider_id, provider_info, ciphertext))

    content_type = r.u8()
    frame_length = r.u32()
    if content_type == CONTENT_TYPE_FRAMED:
        if frame_length == 0:
            raise FormatError("framed content with a frame length of 0")
        if frame_length > limits.max_frame_length:
            raise FormatError(f"frame length {frame_length} exceeds the limit of {limits.max_frame_length}")
    elif content_type == CONTENT_TYPE_NON_FRAMED:
        if frame_length != 0:
            raise FormatError("non-framed content must have a frame length of 0")
    else:
        raise FormatError(f"unknown content type 0x{content_type:02x}")
    commitment_key = r.take(COMMITMENT_KEY_LENGTH)
    body = r.body()
    header_tag = r.take(TAG_LENGTH)
    return MessageHeader(
        suite_id=suite_id,
        message_id=message_id,
        encryption_context=encryption_context,
        encrypted_data_keys=tuple(edks),
        content_type=content_type,
        frame_length=frame_length,
        commitment_key=commitment_key,
        header_tag=header_tag,
        body=body,
    )


# --- Body layout, IVs and AAD ------------------------------------------------


@attrs.frozen
class BodyLayout:
    """Where every frame is, computed from the header and the object size alone.

    Frames 0 .. regular_frames-1 are regular (frame_length plaintext bytes
    each); frame `regular_frames` is the final frame (`final_length` bytes).
    Non-framed content is modelled as a lone final frame. Nothing here is
    authenticated until the frames' tags verify.
    """

    body_offset: int
    frame_length: int
    regular_frames: int
    final_length: int
    framed: bool

    @property
    def final_index(self) -> int:
        return self.regular_frames

    @property
    def plaintext_size(self) -> int:
        return self.regular_frames * self.frame_length + self.final_length

    def frame_offset(self, index: int) -> int:
        """Offset in the object of frame `index` (its first byte)."""
        return self.body_offset + index * (self.frame_length + REGULAR_FRAME_OVERHEAD)

    def frame_plaintext_length(self, index: int) -> int:
        return self.final_length if index == self.regular_frames else self.frame_length

    @property
    def final_frame_size(self) -> int:
        """Bytes the final frame (or the non-framed block) occupies: its head, content and tag."""
        return self.final_length + (FINAL_FRAME_OVERHEAD if self.framed else NON_FRAMED_OVERHEAD)


def body_layout(header: MessageHeader, object_size: int, limits: Limits | None = None) -> BodyLayout:
    """Lay out the body; an object size no valid message can have is an `AuthenticationError`."""
    limits = limits or DEFAULT_LIMITS
    body_size = object_size - header.size
    if header.content_type == CONTENT_TYPE_NON_FRAMED:
        content = body_size - NON_FRAMED_OVERHEAD
        if content < 0 or content > MAX_NON_FRAMED_CONTENT_LENGTH:
            raise AuthenticationError
        if content > limits.max_non_framed_size:
            raise FormatError(
                f"non-framed content of {content} bytes exceeds the limit of {limits.max_non_framed_size}"
            )
        return BodyLayout(header.size, content, 0, content, framed=False)
    frame_length = header.frame_length
    rest = body_size - FINAL_FRAME_OVERHEAD
    if rest < 0:
        raise AuthenticationError
    regular, final_length = divmod(rest, frame_length + REGULAR_FRAME_OVERHEAD)
    if final_length > frame_length or regular + 1 > MAX_FRAME_COUNT:
        raise AuthenticationError
    return BodyLayout(header.size, frame_length, regular, final_length, framed=True)


def frame_iv(sequence_number: int) -> bytes:
    """The IV every SDK writes for a frame: 8 zero bytes then the u32 sequence number."""
    return FRAME_IV.pack(sequence_number)


class BodyAad:
    """A reusable body-AAD buffer: message id | label | u32 sequence | u64 length.

    `update` rewrites the two counters in place and returns the same
    bytearray, so building a frame's AAD allocates nothing.
    """

    __slots__ = ("buffer", "counter_offset")

    def __init__(self, message_id: bytes, label: bytes) -> None:
        self.buffer = bytearray(message_id + label + bytes(BODY_AAD_COUNTERS.size))
        self.counter_offset = len(message_id) + len(label)

    def update(self, sequence_number: int, length: int) -> bytearray:
        BODY_AAD_COUNTERS.pack_into(self.buffer, self.counter_offset, sequence_number, length)
        return self.buffer


BODY_AAD_COUNTERS = struct.Struct(">IQ")
