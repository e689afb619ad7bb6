"""Sources and sinks that cost (almost) nothing, so the thing measured dominates.

- `CountingSink`: an ObjectWriter-like that only counts what it is given
  (the writer's buffers are reused, so nothing needs copying).
- `PatternSource`: a readable stream of `size` bytes that repeats one small
  block, so a 4 GiB stream needs no 4 GiB buffer.
- `CountingWriter`: a writable file-like for peers that want `write()`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Any

MiB = 1 << 20
KiB = 1 << 10


def pattern(size: int, seed: int = 1) -> bytearray:
    """Incompressible-looking bytes, made quickly (AES output would be overkill)."""
    block = bytearray(os.urandom(min(size, MiB)) if seed else bytes(min(size, MiB)))
    out = bytearray(size)
    view = memoryview(out)
    for offset in range(0, size, len(block)):
        n = min(len(block), size - offset)
        view[offset : offset + n] = block[:n]
    return out


class CountingSink:
    """An ObjectWriter-shaped sink that counts bytes and keeps none."""

    __slots__ = ("aborted", "committed", "count")

    def __init__(self) -> None:
        self.count = 0
        self.committed = False
        self.aborted = False

    def write(self, data: Any, /) -> int:
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        self.count += n
        return n

    def commit(self) -> None:
        self.committed = True

    def abort(self) -> None:
        self.aborted = True

    def __enter__(self) -> CountingSink:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.commit()
        else:
            self.abort()


class BufferSink:
    """An ObjectWriter-shaped sink that appends into one preallocated buffer (to keep a ciphertext)."""

    def __init__(self, capacity: int) -> None:
        self.buffer = bytearray(capacity)
        self._view = memoryview(self.buffer)
        self.count = 0

    def write(self, data: Any, /) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        self._view[self.count : self.count + n] = view
        self.count += n
        return n

    def commit(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def getvalue(self) -> memoryview:
        return self._view[: self.count]


class CountingWriter(io.RawIOBase):
    """A writable binary file that counts bytes (for the ESDK, Tink and boto3)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        self.count += n
        return n


class PatternSource(io.RawIOBase):
    """A readable, non-seekable stream of `size` bytes repeating a small block."""

    def __init__(self, size: int, block: bytes | bytearray | None = None) -> None:
        super().__init__()
        self._block = memoryview(bytes(block) if block is not None else bytes(pattern(64 * KiB)))
        self._remaining = size
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        want = min(len(out), self._remaining)
        done = 0
        block = self._block
        while done < want:
            start = self._offset
            n = min(want - done, len(block) - start)
            out[done : done + n] = block[start : start + n]
            done += n
            self._offset = (start + n) % len(block)
        self._remaining -= done
        return done


def chunks(size: int, chunk: int, block: bytes | None = None) -> Iterator[memoryview]:
    """A generator source: `size` bytes as `chunk`-sized views of one reused block."""
    data = memoryview(block if block is not None else bytes(pattern(chunk)))
    if len(data) < chunk:
        raise ValueError("block shorter than chunk")
    full, rest = divmod(size, chunk)
    piece = data[:chunk]
    for _ in range(full):
        yield piece
    if rest:
        yield data[:rest]
