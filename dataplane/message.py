"""`decrypt_message`: the expert path -- decrypt one message when the caller owns the key.

For a message that did not come through a container (written by another
AWS Encryption SDK, a test vector, an export), the caller parses nothing
and trusts nothing: this module hands the parsed, not yet authenticated
header to the caller's resolver, takes back a data key, and returns a
reader that has already verified key commitment and the header tag: a
seekable `MessageReader` for bytes, seekable files and random-access
sources, a forward-only `SequentialMessageReader` for a non-seekable stream
(a pipe, a socket), which is decrypted frame by frame as it arrives and
never copied aside: refused garbage costs at most the `Limits` in bytes read.
Deciding whether the header's encrypted data keys and encryption context
are acceptable is the resolver's job; this module never calls KMS, never
caches keys, and never returns a byte that did not authenticate.

Refused with `UnsupportedFormatError`, before any key is asked for: message
format version 1, the signed suite 0x0578 and every suite but 0x0478.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import BinaryIO

from envelope.datakey import DataKey
from envelope.errors import ValidationError

from ._byteio import BufferSource, FileSource, MessageSource, MessageStream
from ._params import check_threads
from ._reader import MessageReader
from ._sequential import SequentialMessageReader
from .format import Limits, MessageHeader

__all__ = ["decrypt_message"]


def decrypt_message(
    source: bytes | bytearray | memoryview | BinaryIO | MessageSource,
    resolve_data_key: Callable[[MessageHeader], bytes | DataKey],
    *,
    required_encryption_context: Mapping[str, str] | None = None,
    limits: Limits | None = None,
    threads: int = 1,
) -> MessageReader | SequentialMessageReader:
    """Open one AWS Encryption SDK message (v2, suite 0x0478) for reading.

    `source` is the whole message: bytes, a binary file object (seekable or
    not; the message starts at its current position) or a random-access
    reader with ``size`` and ``readinto_at``. A file object is never closed
    by the reader. ``resolve_data_key(header)``
    receives the parsed header (message id, suite id, encryption context,
    EDKs as (provider_id, provider_info, ciphertext), content type, frame
    length) and returns the 32-byte data key, or raises to refuse.

    ``limits`` bounds what the reader will spend on the message (header size,
    EDK count, frame length...: `Limits`), the one way to pass them.

    ``required_encryption_context``: entries the header stores must equal
    it; entries it does not store are authenticated through the header tag
    (the SDKs' required-encryption-context rule).

    Returns a binary file: a seekable `MessageReader`, or for a file object
    that cannot seek, a forward-only `SequentialMessageReader` that reads the
    stream frame by frame (``threads`` then does not apply: frames are
    opened on the calling thread as they arrive). Integrity failures
    anywhere raise the one `AuthenticationError`, malformed input
    `FormatError`, refused formats `UnsupportedFormatError`. Framed and
    non-framed bodies are read; a non-framed body is decrypted whole (up to
    ``limits.max_non_framed_size``) before its first byte is released.
    """
    if not callable(resolve_data_key):
        raise ValidationError("resolve_data_key must be callable")
    check_threads(threads)
    if limits is not None and not isinstance(limits, Limits):
        raise ValidationError("limits must be a dataplane.Limits")
    stream = _non_seekable_stream(source)
    if stream is not None:
        return SequentialMessageReader(
            stream,
            resolve_key=resolve_data_key,
            required_encryption_context=required_encryption_context,
            limits=limits,
        )
    return MessageReader(
        _as_source(source),
        resolve_key=resolve_data_key,
        required_encryption_context=required_encryption_context,
        limits=limits,
        threads=threads,
    )


def _is_file(source: object) -> bool:
    return not hasattr(source, "readinto_at") and (isinstance(source, io.IOBase) or hasattr(source, "read"))


def _non_seekable_stream(source: object) -> MessageStream | None:
    """`source` if it is a binary file that cannot seek (read it as a stream), else None."""
    if isinstance(source, bytes | bytearray | memoryview) or not _is_file(source):
        return None
    file: BinaryIO = source  # type: ignore[assignment]
    if _seekable(file):
        return None
    if not callable(getattr(file, "readinto", None)):
        raise ValidationError("a non-seekable source must be a binary file with readinto()")
    return file  # type: ignore[return-value]


def _as_source(source: object) -> MessageSource:
    if isinstance(source, bytes | bytearray | memoryview):
        return BufferSource(source)
    if hasattr(source, "readinto_at") and hasattr(source, "size"):
        return source  # type: ignore[return-value]
    if _is_file(source):
        return FileSource(source, owned=False)  # type: ignore[arg-type]
    raise ValidationError(f"source must be bytes, a binary file or a random-access reader, not {type(source).__name__}")


def _seekable(file: BinaryIO) -> bool:
    try:
        return bool(file.seekable())
    except (AttributeError, OSError, ValueError):
        return False
