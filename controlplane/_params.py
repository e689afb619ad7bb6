"""Argument checks for provisioning, run before any storage or KMS request.

The KMS adapters validate their own requests too, but only once they are
called, which is after the control plane has already asked storage whether
the location is free. These checks make a bad argument fail with no request
at all. They only judge shapes and bounds; they never call anything.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from envelope import kmsparams
from envelope.errors import ValidationError
from envelope.header import validate_container_id

__all__ = [
    "check_grant_tokens",
    "check_key_id",
    "check_key_size",
    "check_optional_callable",
    "new_container_id",
    "now_utc",
]

_T = TypeVar("_T")

_NEEDS_32_BYTES = "suite 0x0478 needs a 32-byte data key"


def check_key_id(key_id: object) -> str:
    """A KMS key id in any of its four forms (key id, key ARN, alias name, alias ARN), 1..2048 chars."""
    return kmsparams.validate_key_id(key_id, parameter="key_id")


def check_grant_tokens(grant_tokens: object) -> list[str] | None:
    """0..10 grant tokens of 1..8192 characters each; None when there are none."""
    return kmsparams.validate_grant_tokens(grant_tokens, parameter="grant_tokens") or None


def check_key_size(key_spec: object, number_of_bytes: object) -> dict[str, Any]:
    """The key-size argument to send to KMS: exactly one of KeySpec=AES_256 or NumberOfBytes=32."""
    if number_of_bytes is not None:
        # key_spec defaults to "AES_256", so that value alongside number_of_bytes is not "both".
        if key_spec not in (None, "AES_256"):
            raise ValidationError("pass key_spec or number_of_bytes, not both")
        if type(number_of_bytes) is not int or number_of_bytes != 32:
            raise ValidationError(f"{_NEEDS_32_BYTES}: number_of_bytes must be 32 (got {number_of_bytes!r})")
        return {"number_of_bytes": 32}
    if key_spec is None or key_spec == "AES_256":
        return {"key_spec": "AES_256"}
    raise ValidationError(f"{_NEEDS_32_BYTES}: key_spec must be 'AES_256' (got {key_spec!r})")


def check_optional_callable(value: _T | None, parameter: str) -> _T | None:
    """An injected source (clock, id factory): None for the real one, else something callable."""
    if value is not None and not callable(value):
        raise ValidationError(f"{parameter} must be callable (or None), not {type(value).__name__}")
    return value


def new_container_id(id_factory: Callable[[], object] | None) -> str:
    """A fresh container id: 16 random bytes as 32 lowercase hex characters."""
    if id_factory is None:
        return secrets.token_hex(16)
    raw = id_factory()
    if isinstance(raw, bytes):
        if len(raw) != 16:
            raise ValidationError(f"id_factory must return 16 bytes (got {len(raw)})")
        return raw.hex()
    return validate_container_id(raw)


def now_utc(clock: Callable[[], datetime] | None) -> datetime:
    """The creation time from the injected clock, which must be timezone-aware."""
    when = datetime.now(UTC) if clock is None else clock()
    if not isinstance(when, datetime) or when.utcoffset() is None:
        raise ValidationError("clock must return a timezone-aware datetime")
    return when.astimezone(UTC)
