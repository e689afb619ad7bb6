"""The container header: the one document the control plane writes and the data plane trusts.

A container's header (`container.json`) records the encrypted data key(s),
the full encryption context sent to KMS and the object algorithm suite.
The control plane holds no key, so it cannot MAC this document; instead
every security-relevant field is repeated in reserved encryption-context
entries that KMS authenticates. `check_binding` verifies that the reserved
entries agree with the header fields; the data plane passes the header's
context to Decrypt, so a swapped data key, context or suite fails at KMS.

This module is schema only. It must never call KMS, touch storage, or hold
or derive key material; both planes import it, so it stays free of anything
that could decrypt. Its parser is strict: every deviation from the schema
is a `FormatError` that names the offending field.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypeVar, final

import attrs

from envelope import kmsparams
from envelope.errors import FormatError, UnsupportedFormatError, ValidationError

__all__ = [
    "CONTEXT_CONTAINER_ID",
    "CONTEXT_SCHEMA",
    "CONTEXT_SUITE",
    "ESDK_RESERVED_PREFIX",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HEADER_NAME",
    "MAX_CONTEXT_BYTES",
    "MAX_HEADER_BYTES",
    "MESSAGE_PROVIDER_IDS",
    "OBJECTS_PREFIX",
    "PROVIDERS",
    "RESERVED_PREFIX",
    "SUITE_ID",
    "ContainerHeader",
    "WrappedDataKey",
    "FrozenMap",
    "build_encryption_context",
    "check_binding",
    "serialized_context_size",
    "validate_container_id",
    "validate_labels",
]

FORMAT_NAME: Final = "envelope.container"
FORMAT_VERSION: Final = 1
SUITE_ID: Final = 0x0478
"""AWS Encryption SDK suite: AES-256-GCM, HKDF-SHA512, key commitment, no signature."""

HEADER_NAME: Final = "container.json"
OBJECTS_PREFIX: Final = "objects/"

RESERVED_PREFIX: Final = "envelope:"
CONTEXT_CONTAINER_ID: Final = "envelope:container-id"
CONTEXT_SUITE: Final = "envelope:suite"
CONTEXT_SCHEMA: Final = "envelope:schema"
ESDK_RESERVED_PREFIX: Final = "aws-crypto-"

PROVIDERS: Final = ("aws-kms", "local")
"""Who can decrypt a data key: AWS KMS, or the development keystore (`LocalKms`)."""

MESSAGE_PROVIDER_IDS: Final = {"aws-kms": "aws-kms", "local": "envelope-local"}
"""The EDK provider id objects carry for each provider. "aws-kms" is what every AWS Encryption SDK
recognises; local-keystore containers get their own id so no SDK mistakes them for KMS keys (the
interop promise is for AWS KMS containers)."""

MAX_CONTEXT_BYTES: Final = 65535
"""The AWS Encryption SDK's limit on the serialized encryption context."""

MAX_DATA_KEYS: Final = 8
MAX_KEY_ID_CHARS: Final = 2048
MAX_CIPHERTEXT_BYTES: Final = 6144
MAX_LABELS: Final = 64
MAX_LABEL_KEY_CHARS: Final = 128
MAX_LABEL_VALUE_CHARS: Final = 256

MAX_HEADER_BYTES: Final = 1024 * 1024
"""Parser cap, checked before decoding. Above the largest header the bounds
above allow (about 700 KB with every string escaped), so every header this
module writes is one it can read back."""

_CONTAINER_ID = re.compile(r"[0-9a-f]{32}")
_TIMESTAMP = re.compile(
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})T(?P<h>[0-9]{2}):(?P<mi>[0-9]{2}):(?P<s>[0-9]{2})"
    r"(?:\.(?P<frac>[0-9]{1,6}))?Z"
)
_T = TypeVar("_T")
_FIELDS: Final = frozenset(
    {"format", "version", "container_id", "suite", "data_keys", "encryption_context", "created_at", "labels"}
)
_DATA_KEY_FIELDS: Final = frozenset({"provider", "key_id", "ciphertext"})


def _short(text: str, limit: int = 64) -> str:
    """A string for an error message: repr'd and cut, never the whole input."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


@final
class FrozenMap(Mapping[str, str]):
    """An immutable, hashable str->str mapping, iterated in sorted key order.

    Sorted by code point, which for valid Unicode is also the order of the
    UTF-8 bytes, i.e. the order the AWS Encryption SDK serializes a context in.
    Compares equal to any mapping with the same items (a plain dict too).
    """

    __slots__ = ("_hash", "_items")

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, str] = dict(sorted((items or {}).items()))
        self._hash = hash(tuple(self._items.items()))

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"


def _to_frozen_map(value: object) -> FrozenMap:
    if isinstance(value, FrozenMap):
        return value
    if not isinstance(value, Mapping):
        raise ValidationError(f"expected a mapping of str to str, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):  # before sorting, which would fail on mixed key types
            raise ValidationError(f"mapping keys must be str, got {type(key).__name__}")
    return FrozenMap(value)


def _to_bytes(value: object) -> object:
    # Only bytes-likes are converted; anything else is left for the validator to reject
    # (calling bytes() on an int would silently make zero bytes of that length).
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return value


def _check_text(value: object, what: str, *, min_chars: int = 0, max_chars: int | None = None) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a str, got {type(value).__name__}")
    if len(value) < min_chars:
        raise ValidationError(f"{what} must not be empty" if min_chars == 1 else f"{what} is too short")
    if max_chars is not None and len(value) > max_chars:
        raise ValidationError(f"{what} is longer than {max_chars} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{what} is not valid Unicode (it contains a lone surrogate)") from None
    return value


def validate_container_id(container_id: object) -> str:
    """Return the id if it is 32 lowercase hex characters (16 random bytes), else ValidationError."""
    if not isinstance(container_id, str) or not _CONTAINER_ID.fullmatch(container_id):
        raise ValidationError("container_id must be 32 lowercase hex characters")
    return container_id


# --------------------------------------------------------------------------- encryption context


def serialized_context_size(context: Mapping[str, str]) -> int:
    """Bytes the AWS Encryption SDK needs for this context: u16 count, then per pair
    u16 length + key + u16 length + value (UTF-8)."""
    return 2 + sum(4 + len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in context.items())


def _check_context_entries(context: Mapping[Any, Any], what: str) -> None:
    """Types, encodability and case-collisions of every pair (reserved entries included)."""
    folded: dict[str, str] = {}
    for raw_key, value in context.items():
        key = _check_text(raw_key, f"{what} key", min_chars=1)
        _check_text(value, f"{what} value for key {_short(key)}")
        # IAM condition keys (kms:EncryptionContext:<key>) and grant constraints compare
        # context keys case-insensitively: two keys that differ only by case are ambiguous there.
        other = folded.setdefault(key.casefold(), key)
        if other != key:
            raise ValidationError(f"{what} keys {_short(other)} and {_short(key)} differ only by case")


def _check_context_size(context: Mapping[str, str], what: str) -> None:
    size = serialized_context_size(context)
    if size > MAX_CONTEXT_BYTES:
        raise ValidationError(
            f"{what} serializes to {size} bytes (reserved entries included); the limit is {MAX_CONTEXT_BYTES}"
        )


def _is_reserved(key: str) -> bool:
    folded = key.casefold()
    return folded.startswith(RESERVED_PREFIX) or folded.startswith(ESDK_RESERVED_PREFIX)


def _reserved_entries(container_id: str, suite: int = SUITE_ID, version: int = FORMAT_VERSION) -> dict[str, str]:
    return {
        CONTEXT_CONTAINER_ID: container_id,
        CONTEXT_SCHEMA: str(version),
        CONTEXT_SUITE: f"{suite:04x}",
    }


def build_encryption_context(caller_context: Mapping[str, str] | None, container_id: str) -> dict[str, str]:
    """The full context to send to KMS: the caller's entries plus the reserved ones.

    Raises ValidationError if the caller's context is not str->str, has an
    empty key, a key starting (in any case) with ``envelope:`` or
    ``aws-crypto-``, text that cannot be UTF-8 encoded, two keys that differ
    only by case, or if the full context exceeds the AWS Encryption SDK limit.
    """
    validate_container_id(container_id)
    if caller_context is None:
        caller_context = {}
    if not isinstance(caller_context, Mapping):
        raise ValidationError(
            f"encryption_context must be a mapping of str to str, got {type(caller_context).__name__}"
        )
    _check_context_entries(caller_context, "encryption_context")
    for key in caller_context:
        if _is_reserved(key):
            raise ValidationError(
                f"encryption_context key {_short(key)} uses a reserved prefix "
                f"({RESERVED_PREFIX!r} and {ESDK_RESERVED_PREFIX!r} are reserved)"
            )
    full = {**caller_context, **_reserved_entries(container_id)}
    _check_context_size(full, "encryption_context")
    return dict(sorted(full.items()))


def _binding_problem(container_id: str, suite: int, version: int, context: Mapping[str, str]) -> str | None:
    """What is wrong with the reserved context entries, or None if they bind the header."""
    expected = _reserved_entries(container_id, suite, version)
    for key in context:
        if _is_reserved(key) and key not in expected:
            return f"encryption_context holds an unknown reserved key {_short(key)}"
    for key, value in expected.items():
        if key not in context:
            return f"encryption_context lacks the reserved key {key!r}"
        if context[key] != value:
            return f"encryption_context[{key!r}] is {_short(context[key])}, but the header says {value!r}"
    return None


def check_binding(header: ContainerHeader) -> None:
    """Raise FormatError unless the reserved context entries agree with the header's
    container_id, suite and version (and no other reserved keys are present).

    The data plane calls this before it sends the header's context to KMS:
    KMS then authenticates, through the context, every field checked here.
    """
    problem = _binding_problem(header.container_id, header.suite, header.version, header.encryption_context)
    if problem is not None:
        raise FormatError(f"container header binding: {problem}")


# --------------------------------------------------------------------------- labels


def validate_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """Check caller labels (not security relevant) against their bounds; return a copy.

    At most 64 labels; keys 1..128 characters, values 0..256, valid Unicode.
    """
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise ValidationError(f"labels must be a mapping of str to str, got {type(labels).__name__}")
    if len(labels) > MAX_LABELS:
        raise ValidationError(f"labels has {len(labels)} entries; at most {MAX_LABELS} are allowed")
    for key, value in labels.items():
        _check_text(key, "labels key", min_chars=1, max_chars=MAX_LABEL_KEY_CHARS)
        _check_text(value, f"labels value for key {_short(key)}", max_chars=MAX_LABEL_VALUE_CHARS)
    return dict(labels)


# --------------------------------------------------------------------------- timestamps


def _to_utc(value: object) -> datetime:
    if isinstance(value, str):
        return _parse_timestamp(value)
    if not isinstance(value, datetime):
        raise ValidationError(f"created_at must be a datetime or an RFC 3339 string, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError("created_at must be timezone-aware (UTC)")
    return value.astimezone(UTC)


def _parse_timestamp(text: str) -> datetime:
    m = _TIMESTAMP.fullmatch(text)
    if m is None:
        raise ValidationError(f"created_at {_short(text)} is not an RFC 3339 UTC timestamp (YYYY-MM-DDTHH:MM:SS[.f]Z)")
    frac = m["frac"] or ""
    try:
        return datetime(
            int(m["y"]),
            int(m["mo"]),
            int(m["d"]),
            int(m["h"]),
            int(m["mi"]),
            int(m["s"]),
            int(frac.ljust(6, "0")) if frac else 0,
            tzinfo=UTC,
        )
    except ValueError:
        raise ValidationError(f"created_at {_short(text)} is not a valid date and time") from None


def _format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``; microseconds only when not zero (the canonical form)."""
    v = value.astimezone(UTC)
    text = f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
    if v.microsecond:
        text += f".{v.microsecond:06d}"
    return text + "Z"


# --------------------------------------------------------------------------- schema objects


def _check_provider(_: object, __: attrs.Attribute[str], value: object) -> None:
    if value not in PROVIDERS:
        raise ValidationError(f"data key provider must be one of {', '.join(PROVIDERS)}, got {value!r}")


def _check_key_arn(_: object, __: attrs.Attribute[str], value: object) -> None:
    value = _check_text(value, "data key key_id", min_chars=1, max_chars=MAX_KEY_ID_CHARS)
    # The header stores the key ARN KMS returned, never an alias: re-pointing an alias must
    # not orphan a container, and AWS Encryption SDK readers match provider info by key ARN.
    try:
        form = kmsparams.key_id_form(value)
    except ValidationError:
        form = None
    if form != "key-arn":
        raise ValidationError(f"data key key_id must be a KMS key ARN (arn:...:key/...), got {_short(value)}")


def _check_ciphertext(_: object, __: attrs.Attribute[bytes], value: object) -> None:
    if not isinstance(value, bytes):
        raise ValidationError(f"data key ciphertext must be bytes, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_CIPHERTEXT_BYTES:
        raise ValidationError(f"data key ciphertext must be 1..{MAX_CIPHERTEXT_BYTES} bytes, got {len(value)}")


@final
@attrs.frozen(kw_only=True)
class WrappedDataKey:
    """One copy of a container's data key as the header stores it: wrapped by a KMS key (its
    CiphertextBlob), with who holds that key. Not to be confused with a message's encrypted data
    keys (`dataplane.format.EncryptedDataKey`), the AWS Encryption SDK's wire form of the same key."""

    provider: str = attrs.field(validator=_check_provider)
    key_id: str = attrs.field(validator=_check_key_arn)
    """The ARN of the KMS key that encrypted `ciphertext`, as KMS returned it."""
    ciphertext: bytes = attrs.field(
        converter=_to_bytes, validator=_check_ciphertext, repr=lambda b: f"<{len(b)} bytes>"
    )


def _check_equals(expected: object, what: str) -> Any:
    def check(_: object, __: attrs.Attribute[Any], value: object) -> None:
        if type(value) is not type(expected) or value != expected:
            raise ValidationError(f"{what} must be {expected!r}, got {value!r}")

    return check


def _to_tuple(value: object) -> tuple[Any, ...]:
    if isinstance(value, tuple):
        return value
    if not isinstance(value, list):
        raise ValidationError(f"data_keys must be a tuple or list of WrappedDataKey, got {type(value).__name__}")
    return tuple(value)


def _check_data_keys(_: object, __: attrs.Attribute[Any], value: object) -> None:
    assert isinstance(value, tuple)
    if not 1 <= len(value) <= MAX_DATA_KEYS:
        raise ValidationError(f"data_keys must hold 1..{MAX_DATA_KEYS} entries, got {len(value)}")
    for i, key in enumerate(value):
        if not isinstance(key, WrappedDataKey):
            raise ValidationError(f"data_keys[{i}] must be an WrappedDataKey, got {type(key).__name__}")


def _check_header_context(_: object, __: attrs.Attribute[Any], value: FrozenMap) -> None:
    _check_context_entries(value, "encryption_context")
    _check_context_size(value, "encryption_context")


def _check_labels(_: object, __: attrs.Attribute[Any], value: FrozenMap) -> None:
    validate_labels(value)


@final
@attrs.frozen(kw_only=True)
class ContainerHeader:
    """The schema of `container.json`. Immutable and hashable; validated on construction.

    Construction raises ValidationError for any field outside the schema,
    including reserved context entries that disagree with `container_id`,
    `suite` or `version`. `from_json` raises FormatError instead.
    """

    format: str = attrs.field(default=FORMAT_NAME, validator=_check_equals(FORMAT_NAME, "format"))
    version: int = attrs.field(default=FORMAT_VERSION, validator=_check_equals(FORMAT_VERSION, "version"))
    container_id: str = attrs.field(validator=lambda _, __, v: validate_container_id(v))
    suite: int = attrs.field(default=SUITE_ID, validator=_check_equals(SUITE_ID, "suite"))
    data_keys: tuple[WrappedDataKey, ...] = attrs.field(converter=_to_tuple, validator=_check_data_keys)
    encryption_context: FrozenMap = attrs.field(converter=_to_frozen_map, validator=_check_header_context)
    """The full context sent to KMS, reserved entries included."""
    created_at: datetime = attrs.field(converter=_to_utc)
    labels: FrozenMap = attrs.field(factory=FrozenMap, converter=_to_frozen_map, validator=_check_labels)
    """Caller annotations. Not authenticated by anything: never base a decision on them."""

    def __attrs_post_init__(self) -> None:
        problem = _binding_problem(self.container_id, self.suite, self.version, self.encryption_context)
        if problem is not None:
            raise ValidationError(problem)

    # ----------------------------------------------------------------- JSON codec

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (ciphertexts as standard, padded base64)."""
        return {
            "format": self.format,
            "version": self.version,
            "container_id": self.container_id,
            "suite": self.suite,
            "data_keys": data_keys_to_json(self.data_keys),
            "encryption_context": dict(self.encryption_context),
            "created_at": _format_timestamp(self.created_at),
            "labels": dict(self.labels),
        }

    def to_json(self) -> bytes:
        """The canonical `container.json` bytes: UTF-8, sorted keys, 2-space indent, trailing newline."""
        return dump_document(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | bytearray | memoryview) -> ContainerHeader:
        """Parse and validate `container.json` bytes. Any deviation raises FormatError.

        An unknown version or suite raises UnsupportedFormatError (a FormatError).
        """
        return parse_document(data, "container header", _parse)


# --------------------------------------------------------------------------- strict parser


class _Bad(FormatError):
    """A schema violation found by the shared parsing helpers; each document's parser names itself."""


def _fail(message: str) -> FormatError:
    return _Bad(message)


def parse_document(data: bytes | bytearray | memoryview, document: str, parse: Callable[[Any], _T]) -> _T:
    """Run a strict parser over a JSON document; FormatErrors are prefixed with `document`'s name."""
    try:
        return parse(_load(data))
    except _Bad as e:
        raise FormatError(f"{document}: {e}") from None


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _fail(f"duplicate JSON key {_short(key)}")
        obj[key] = value
    return obj


def _reject_constant(name: str) -> Any:
    raise _fail(f"{name} is not a JSON value")


def _load(data: object) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValidationError(f"container header must be bytes, got {type(data).__name__}")
    if len(data) > MAX_HEADER_BYTES:
        raise _fail(f"document is {len(data)} bytes; the limit is {MAX_HEADER_BYTES}")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise _fail(f"document is not valid UTF-8 (at byte {e.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise _fail(f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except (ValueError, RecursionError) as e:
        raise _fail(f"not valid JSON ({type(e).__name__})") from None


def _typed(value: Any, expected: type, what: str) -> Any:
    # bool is an int subclass, and JSON true must never pass for a number.
    if type(value) is not expected:
        names = {str: "a string", int: "an integer", list: "an array", dict: "an object"}
        raise _fail(f"field {what!r} must be {names.get(expected, expected.__name__)}, got {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array"}.get(
        type(value), "null" if value is None else "an object"
    )


def _check_fields(obj: dict[str, Any], expected: frozenset[str], where: str) -> None:
    missing = sorted(expected - obj.keys())
    if missing:
        raise _fail(f"{where} is missing field(s) {', '.join(map(repr, missing))}")
    extra = sorted(obj.keys() - expected)
    if extra:
        raise _fail(f"{where} has unknown field(s) {', '.join(_short(k, 32) for k in extra)}")


def _string_map(value: Any, what: str) -> dict[str, str]:
    _typed(value, dict, what)
    for key, item in value.items():
        if type(item) is not str:
            raise _fail(f"field {what!r} value for key {_short(key)} must be a string, got {_json_type(item)}")
    return dict(value)


def _decode_ciphertext(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise _fail(f"field {what!r} is not valid base64") from None
    # Standard alphabet with padding and zero trailing bits only: one encoding per value.
    if base64.b64encode(raw).decode("ascii") != text:
        raise _fail(f"field {what!r} is not canonical base64 (standard alphabet, padded)")
    return raw


def identify(doc: Any, format_name: str, version: int, document: str, fields: frozenset[str]) -> None:
    """Check a loaded document's `format` and `version` first (another version may have other
    fields), then its field set exactly."""
    if type(doc) is not dict:
        raise _fail(f"document must be a JSON object, got {_json_type(doc)}")
    if "format" not in doc:
        raise _fail("missing field 'format'")
    if doc["format"] != format_name:
        value = doc["format"]
        shown = _short(value) if isinstance(value, str) else _json_type(value)
        raise _fail(f"field 'format' is {shown}, expected {format_name!r}")
    if "version" not in doc:
        raise _fail("missing field 'version'")
    found = _typed(doc["version"], int, "version")
    if found != version:
        raise UnsupportedFormatError(f"{document}: unsupported version {found} (this library reads version {version})")
    _check_fields(doc, fields, "document")


def parse_data_keys(value: Any) -> tuple[WrappedDataKey, ...]:
    """The `data_keys` array of a header or generation record."""
    raw_keys = _typed(value, list, "data_keys")
    if not raw_keys:
        raise _fail("field 'data_keys' is empty")
    if len(raw_keys) > MAX_DATA_KEYS:
        raise _fail(f"field 'data_keys' has {len(raw_keys)} entries; at most {MAX_DATA_KEYS}")
    data_keys = []
    for i, raw in enumerate(raw_keys):
        where = f"data_keys[{i}]"
        _typed(raw, dict, where)
        _check_fields(raw, _DATA_KEY_FIELDS, where)
        provider = _typed(raw["provider"], str, f"{where}.provider")
        key_id = _typed(raw["key_id"], str, f"{where}.key_id")
        ciphertext = _decode_ciphertext(_typed(raw["ciphertext"], str, f"{where}.ciphertext"), f"{where}.ciphertext")
        try:
            data_keys.append(WrappedDataKey(provider=provider, key_id=key_id, ciphertext=ciphertext))
        except ValidationError as e:
            raise _fail(f"{where}: {e}") from None
    return tuple(data_keys)


def data_keys_to_json(data_keys: tuple[WrappedDataKey, ...]) -> list[dict[str, str]]:
    """The JSON form of `data_keys` (ciphertexts as standard, padded base64)."""
    return [
        {"provider": k.provider, "key_id": k.key_id, "ciphertext": base64.b64encode(k.ciphertext).decode("ascii")}
        for k in data_keys
    ]


def dump_document(document: dict[str, Any]) -> bytes:
    """Canonical JSON bytes: UTF-8, sorted keys, 2-space indent, trailing newline."""
    text = json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    data = (text + "\n").encode("utf-8")
    if len(data) > MAX_HEADER_BYTES:  # the field bounds make this unreachable
        raise AssertionError(f"document serialized to {len(data)} bytes, over {MAX_HEADER_BYTES}")
    return data


def _parse(doc: Any) -> ContainerHeader:
    identify(doc, FORMAT_NAME, FORMAT_VERSION, "container header", _FIELDS)
    container_id = _typed(doc["container_id"], str, "container_id")
    suite = _typed(doc["suite"], int, "suite")
    if suite != SUITE_ID:
        raise UnsupportedFormatError(f"container header: unsupported suite {suite:#06x} (only {SUITE_ID:#06x})")
    data_keys = parse_data_keys(doc["data_keys"])
    context = _string_map(doc["encryption_context"], "encryption_context")
    created_at = _typed(doc["created_at"], str, "created_at")
    labels = _string_map(doc["labels"], "labels")
    try:
        return ContainerHeader(
            container_id=container_id,
            data_keys=tuple(data_keys),
            encryption_context=context,
            created_at=created_at,
            labels=labels,
        )
    except ValidationError as e:
        raise _fail(str(e)) from None
