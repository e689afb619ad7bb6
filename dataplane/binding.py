"""Name binding: a message id that commits to where the object lives.

The 32-byte message id of an object is 16 random bytes followed by a 16-byte
tag, HMAC-SHA256 under a binding key over the container id, those random
bytes and the object name (each length-prefixed). Our reader recomputes the
tag, so an object copied or moved to another name or container sharing the
data key is rejected; other SDKs see an ordinary random message id.

The binding key is derived from the data key with its own HKDF label,
distinct from the format's DERIVEKEY / COMMITKEY derivations; it is derived
once per data key and memoized on the key's holder (`DataKey.derived`).
Callers pass that holder: its bytes are revealed only inside `_tag`, never
kept in a local of a frame that raises. This module must never log or repr
a key, and never compare tags other than in constant time.
"""

from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Callable

from cryptography.hazmat.primitives.hashes import SHA512
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from envelope.datakey import DataKey
from envelope.errors import ValidationError

from .format import DATA_KEY_LENGTH, MESSAGE_ID_LENGTH

__all__ = [
    "BINDING_KEY_INFO",
    "BINDING_KEY_LENGTH",
    "BINDING_RANDOM_LENGTH",
    "BINDING_TAG_LENGTH",
    "BindingKey",
    "derive_binding_key",
    "new_message_id",
    "verify_message_id",
]

BINDING_KEY_INFO = b"envelope name-binding v1"
BINDING_KEY_SALT = b""  # HKDF's default salt; the info label separates the domains
BINDING_KEY_LENGTH = 32
BINDING_RANDOM_LENGTH = 16
BINDING_TAG_LENGTH = MESSAGE_ID_LENGTH - BINDING_RANDOM_LENGTH
_LEN = struct.Struct(">I")


def derive_binding_key(data_key: bytes) -> bytes:
    """HKDF-SHA512(ikm=data key, salt=empty, info="envelope name-binding v1") -> 32 bytes."""
    if len(data_key) != DATA_KEY_LENGTH:
        raise ValidationError("name binding needs a 32-byte data key")
    hkdf = HKDF(algorithm=SHA512(), length=BINDING_KEY_LENGTH, salt=BINDING_KEY_SALT, info=BINDING_KEY_INFO)
    return hkdf.derive(data_key)


BindingKey = DataKey | bytes
"""A binding key: the holder `DataKey.derived` memoizes (what the library passes), or raw bytes (tests)."""


def _tag(binding_key: BindingKey, container_id: str, name: str, random_part: bytes) -> bytes:
    if len(binding_key) != BINDING_KEY_LENGTH:
        raise ValidationError("a binding key is 32 bytes")
    parts: list[bytes] = []
    for field in (container_id.encode("utf-8"), random_part, name.encode("utf-8")):
        parts += (_LEN.pack(len(field)), field)
    key = binding_key.reveal() if isinstance(binding_key, DataKey) else binding_key
    return hmac.digest(key, b"".join(parts), "sha256")[:BINDING_TAG_LENGTH]  # one-shot HMAC: one C call


def new_message_id(
    binding_key: BindingKey,
    container_id: str,
    name: str,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """A fresh 32-byte message id bound to (container_id, name).

    `random_bytes` is injectable for deterministic tests; it must be a CSPRNG
    in production (the 128 random bits keep message ids unique per data key).
    """
    random_part = random_bytes(BINDING_RANDOM_LENGTH)
    if len(random_part) != BINDING_RANDOM_LENGTH:
        raise ValidationError("random_bytes returned the wrong number of bytes")
    return random_part + _tag(binding_key, container_id, name, random_part)


def verify_message_id(binding_key: BindingKey, container_id: str, name: str, message_id: bytes) -> bool:
    """Whether `message_id` was bound to (container_id, name) under this key. Constant time."""
    if len(message_id) != MESSAGE_ID_LENGTH:
        return False
    random_part = message_id[:BINDING_RANDOM_LENGTH]
    expected = _tag(binding_key, container_id, name, random_part)
    return hmac.compare_digest(expected, message_id[BINDING_RANDOM_LENGTH:])
