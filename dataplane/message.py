"""`decrypt_message`: the expert path -- decrypt one message when the caller owns the key.

For a message that did not come through a container (written by another
AWS Encryption SDK, a test vector, an export), the caller parses nothing
and trusts nothing: this module hands the parsed, not yet authenticated
header to the caller's resolver, takes back a data key, and returns a
`MessageReader` that has already verified key commitment and the header tag.
Deciding whether the header's encrypted data keys and encryption context
are acceptable is the resolver's job; this module never calls KMS, never
caches keys, and never returns a byte that did not authenticate.

Refused with `UnsupportedFormatError`, before any key is asked for: message
format version 1, the signed suite 0x0578 and every suite but 0x0478.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import BinaryIO

from envelope.datakey import DataKey
from envelope.errors import ValidationError

from .format import Limits, MessageHeader
from .stream import BufferSource, MessageReader, MessageSource

__all__ = ["SPOOL_MEMORY_BYTES", "decrypt_message"]

SPOOL_MEMORY_BYTES = 8 << 20
"""A non-seekable input is spooled; up to this many bytes stay in memory, the rest on disk."""


def decrypt_message(
    source: bytes | bytearray | memoryview | BinaryIO | MessageSource,
    resolve_data_key: Callable[[MessageHeader], bytes | DataKey],
    *,
    required_encryption_context: Mapping[str, str] | None = None,
    max_frame_length: int | None = None,
    limits: Limits | None = None,
    threads: int = 1,
) -> MessageReader:
    """Open one AWS Encryption SDK message (v2, suite 0x0478) for reading.

    `source` is the whole message: bytes, a binary file object (seekable or
    not; the message starts at its current position) or a random-access
    reader with ``size`` and ``readinto_at``. ``resolve_data_key(header)``
    receives the parsed header (message id, suite id, encryption context,
    EDKs as (provider_id, provider_info, ciphertext), content type, frame
    length) and returns the 32-byte data key, or raises to refuse.

    ``required_encryption_context``: entries the header stores must equal
    it; entries it does not store are authenticated through the header tag
    (the SDKs' required-encryption-context rule).

    Returns a seekable binary file; integrity failures anywhere raise the
    one `AuthenticationError`, malformed input `FormatError`, refused
    formats `UnsupportedFormatError`. Framed and non-framed bodies are read;
    a non-framed body is decrypted whole (up to ``limits.max_non_framed_size``)
    before its first byte is released.
    """
    if not callable(resolve_data_key):
        raise ValidationError("resolve_data_key must be callable")
    return MessageReader(
        _as_source(source),
        resolve_key=resolve_data_key,
        required_encryption_context=required_encryption_context,
        limits=limits,
        max_frame_length=max_frame_length,
        threads=threads,
    )


def _as_source(source: object) -> MessageSource:
    if isinstance(source, bytes | bytearray | memoryview):
        return BufferSource(source)
    if hasattr(source, "readinto_at") and hasattr(source, "size"):
        return source  # type: ignore[return-value]
    if isinstance(source, io.IOBase) or hasattr(source, "read"):
        file: BinaryIO = source  # type: ignore[assignment]
        if _seekable(file):
            return _FileSource(file, owned=False)
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115 - owned by the source
        try:
            shutil.copyfileobj(file, spool)
            spool.seek(0)
        except BaseException:
            spool.close()
            raise
        return _FileSource(spool, owned=True)  # type: ignore[arg-type]
    raise ValidationError(f"source must be bytes, a binary file or a random-access reader, not {type(source).__name__}")


def _seekable(file: BinaryIO) -> bool:
    try:
        return bool(file.seekable())
    except (AttributeError, OSError, ValueError):
        return False


class _FileSource:
    """Positional reads over a seekable binary file, from the position it had when wrapped.

    It moves the file's position; it closes the file only if it owns it.
    """

    __slots__ = ("_base", "_file", "_owned", "_size")

    def __init__(self, file: BinaryIO, *, owned: bool) -> None:
        self._file = file
        self._owned = owned
        self._base = file.tell()
        self._size = max(0, file.seek(0, os.SEEK_END) - self._base)

    @property
    def size(self) -> int:
        return self._size

    def readinto_at(self, offset: int, buf: memoryview, /) -> int:
        want = max(0, min(len(buf), self._size - offset))
        self._file.seek(self._base + offset)
        done = 0
        while done < want:
            chunk = self._file.readinto(buf[done:want])  # type: ignore[attr-defined]
            if not chunk:
                break
            done += chunk
        return done

    def close(self) -> None:
        if self._owned:
            self._file.close()
