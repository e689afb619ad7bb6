"""Where message bytes come from and go to: the source, stream and sink shapes, and two adapters.

- `MessageSource` is envelope.storage's `RandomAccessReader` (one protocol
  for "positional reads from one immutable object of known size", shared
  with the stores; envelope cannot import dataplane, so it lives there). A
  source may also offer ``view_at(offset, length) -> memoryview``, a
  zero-copy view of its bytes; `MessageReader` then decrypts straight from it.
- `MessageStream` is a blocking binary stream read front to back (a pipe,
  a socket file); `SequentialMessageReader` reads messages from one, and
  `MessageWriter.write_from` reads plaintext from one.
- `MessageSink` is where a writer's bytes go (envelope.storage's
  `ObjectWriter` has this shape).

This module does no cryptography and never looks at the bytes it moves.
"""

from __future__ import annotations

import os
from typing import BinaryIO, Protocol

from envelope.errors import ValidationError
from envelope.storage import RandomAccessReader

__all__ = ["BufferSource", "FileSource", "MessageSink", "MessageSource", "MessageStream", "read_some"]

MessageSource = RandomAccessReader


class MessageStream(Protocol):
    """A blocking binary stream: a pipe, a socket file, `sys.stdin.buffer`, an open file."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...


class MessageSink(Protocol):
    """Where a writer's bytes go.

    `write` must consume or copy the bytes before it returns: the writer
    reuses the buffer behind the memoryview.
    """

    def write(self, data: memoryview, /) -> int: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


def read_some(stream: MessageStream, buf: memoryview) -> int:
    """One `readinto` on a blocking binary stream: 0 only at end of stream."""
    n = stream.readinto(buf)
    if n is None:
        raise ValidationError("a message stream must be blocking (readinto returned None)")
    return n


class BufferSource:
    """A `MessageSource` over bytes already in memory, with zero-copy `view_at`."""

    __slots__ = ("_view",)

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data).cast("B").toreadonly()

    @property
    def size(self) -> int:
        return len(self._view)

    def readinto_at(self, offset: int, buf: memoryview, /) -> int:
        n = max(0, min(len(buf), len(self._view) - offset))
        buf[:n] = self._view[offset : offset + n]
        return n

    def view_at(self, offset: int, length: int) -> memoryview:
        return self._view[offset : offset + length]

    def close(self) -> None:
        pass

    def __enter__(self) -> BufferSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FileSource:
    """A `MessageSource` over a seekable binary file, from the position it had when wrapped.

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

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
