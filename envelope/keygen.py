"""Key generations: the records rotation adds next to a container's header (DESIGN §12).

A container keeps generation 1 in `container.json`. Rotation adds
generation n >= 2 as a create-only record `keys/NNNNNNNN.json` (8 decimal
digits) holding a new encrypted data key. Like the header, a record has no
MAC (the control plane has no key): its security fields are bound through
the encryption context KMS authenticates, which is the container's context
plus the reserved `envelope:generation` = n. A record moved to another
container, renumbered, or with its context edited therefore fails at KMS
Decrypt, and `check_generation` refuses most such edits before any KMS call.

Schema only: this module never calls KMS, touches storage, or holds keys.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final, final

import attrs

from envelope.errors import FormatError, ValidationError
from envelope.header import (
    FORMAT_VERSION,
    SUITE_ID,
    ContainerHeader,
    FrozenMap,
    WrappedDataKey,
    _binding_problem,
    _check_data_keys,
    _check_equals,
    _check_header_context,
    _fail,
    _format_timestamp,
    _string_map,
    _to_frozen_map,
    _to_tuple,
    _to_utc,
    _typed,
    data_keys_to_json,
    dump_document,
    identify,
    parse_data_keys,
    parse_document,
    validate_container_id,
)

__all__ = [
    "CONTEXT_GENERATION",
    "GENERATION_FORMAT_NAME",
    "KEYS_PREFIX",
    "MAX_GENERATION",
    "GenerationRecord",
    "KeyGeneration",
    "check_generation",
    "generation_context",
    "generation_from_record_name",
    "generation_record_name",
]

GENERATION_FORMAT_NAME: Final = "envelope.keygen"
GENERATION_FORMAT_VERSION: Final = 1
KEYS_PREFIX: Final = "keys/"
CONTEXT_GENERATION: Final = "envelope:generation"
MAX_GENERATION: Final = 99_999_999
_RECORD_NAME = re.compile(r"keys/(?P<n>[0-9]{8})\.json")
_FIELDS: Final = frozenset(
    {"format", "version", "container_id", "generation", "suite", "data_keys", "encryption_context", "created_at"}
)


def generation_record_name(generation: int) -> str:
    """`keys/NNNNNNNN.json`: the record of `generation` (2..99,999,999) under the container."""
    if isinstance(generation, bool) or not isinstance(generation, int) or not 2 <= generation <= MAX_GENERATION:
        raise ValidationError(f"a generation record is for generation 2..{MAX_GENERATION}, got {generation!r}")
    return f"{KEYS_PREFIX}{generation:08d}.json"


def generation_from_record_name(name: str) -> int | None:
    """The generation a `keys/` entry's name claims, or None if it is not a record name."""
    m = _RECORD_NAME.fullmatch(name)
    if m is None:
        return None
    n = int(m.group("n"))
    return n if n >= 2 else None


def generation_context(container_context: Any, generation: int) -> dict[str, str]:
    """The context a generation's data key is bound to: the container's plus `envelope:generation`."""
    return dict(sorted({**dict(container_context), CONTEXT_GENERATION: str(generation)}.items()))


@attrs.frozen
class KeyGeneration:
    """One data-key generation of a container, as both planes list it (nothing secret)."""

    generation: int
    key_id: str
    """The ARN of the KMS key that encrypted this generation's data key, as KMS returned it."""
    created_at: datetime

    @classmethod
    def of_header(cls, header: ContainerHeader) -> KeyGeneration:
        return cls(1, header.data_keys[0].key_id, header.created_at)

    @classmethod
    def of_record(cls, record: GenerationRecord) -> KeyGeneration:
        return cls(record.generation, record.data_keys[0].key_id, record.created_at)


def _check_generation_number(_: object, __: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= MAX_GENERATION:
        raise ValidationError(f"generation must be an integer in 2..{MAX_GENERATION}, got {value!r}")


@final
@attrs.frozen(kw_only=True)
class GenerationRecord:
    """The schema of `keys/NNNNNNNN.json`. Immutable; validated on construction."""

    format: str = attrs.field(default=GENERATION_FORMAT_NAME, validator=_check_equals(GENERATION_FORMAT_NAME, "format"))
    version: int = attrs.field(
        default=GENERATION_FORMAT_VERSION, validator=_check_equals(GENERATION_FORMAT_VERSION, "version")
    )
    container_id: str = attrs.field(validator=lambda _, __, v: validate_container_id(v))
    generation: int = attrs.field(validator=_check_generation_number)
    suite: int = attrs.field(default=SUITE_ID, validator=_check_equals(SUITE_ID, "suite"))
    data_keys: tuple[WrappedDataKey, ...] = attrs.field(converter=_to_tuple, validator=_check_data_keys)
    encryption_context: FrozenMap = attrs.field(converter=_to_frozen_map, validator=_check_header_context)
    """The full context sent to KMS: the container's plus `envelope:generation`."""
    created_at: datetime = attrs.field(converter=_to_utc)

    def __attrs_post_init__(self) -> None:
        context = dict(self.encryption_context)
        if context.get(CONTEXT_GENERATION) != str(self.generation):
            raise ValidationError(
                f"encryption_context[{CONTEXT_GENERATION!r}] must be {str(self.generation)!r} in generation "
                f"{self.generation}'s record"
            )
        del context[CONTEXT_GENERATION]
        problem = _binding_problem(self.container_id, self.suite, FORMAT_VERSION, context)
        if problem is not None:
            raise ValidationError(problem)

    @property
    def name(self) -> str:
        return generation_record_name(self.generation)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "version": self.version,
            "container_id": self.container_id,
            "generation": self.generation,
            "suite": self.suite,
            "data_keys": data_keys_to_json(self.data_keys),
            "encryption_context": dict(self.encryption_context),
            "created_at": _format_timestamp(self.created_at),
        }

    def to_json(self) -> bytes:
        return dump_document(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | bytearray | memoryview) -> GenerationRecord:
        """Parse and validate a record. Any deviation raises FormatError (UnsupportedFormatError for
        another version or suite)."""
        return parse_document(data, "generation record", _parse)


def _parse(doc: Any) -> GenerationRecord:
    identify(doc, GENERATION_FORMAT_NAME, GENERATION_FORMAT_VERSION, "generation record", _FIELDS)
    container_id = _typed(doc["container_id"], str, "container_id")
    generation = _typed(doc["generation"], int, "generation")
    suite = _typed(doc["suite"], int, "suite")
    if suite != SUITE_ID:
        raise _fail(f"unsupported suite {suite:#06x} (only {SUITE_ID:#06x})")
    data_keys = parse_data_keys(doc["data_keys"])
    context = _string_map(doc["encryption_context"], "encryption_context")
    created_at = _typed(doc["created_at"], str, "created_at")
    try:
        return GenerationRecord(
            container_id=container_id,
            generation=generation,
            data_keys=data_keys,
            encryption_context=context,
            created_at=created_at,
        )
    except ValidationError as e:
        raise _fail(str(e)) from None


def check_generation(record: GenerationRecord, header: ContainerHeader, name: str) -> None:
    """FormatError unless `record`, stored at `name`, belongs to the container `header` describes.

    Its file name, container id, suite and data-key provider must agree, and
    its context must be exactly the container's plus its generation: KMS
    then authenticates all of it at Decrypt (the context carries every
    field).
    """
    problem = None
    if generation_from_record_name(name) != record.generation:
        problem = f"it is stored as {name!r} but says generation {record.generation}"
    elif record.container_id != header.container_id:
        problem = "it belongs to another container"
    elif dict(record.encryption_context) != generation_context(header.encryption_context, record.generation):
        problem = "its encryption context is not the container's plus its generation"
    elif len(record.data_keys) != 1:
        problem = "it holds several data keys (not supported yet)"
    elif record.data_keys[0].provider != header.data_keys[0].provider:
        problem = "its data key is held by another provider than the container's"
    if problem is not None:
        raise FormatError(f"generation record {name}: {problem}")
