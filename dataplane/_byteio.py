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
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO, Protocol, TypeVar

from envelope.errors import ValidationError
from envelope.storage import RandomAccessReader
from envelope.storage._base import as_byte_view

__all__ = [
    "BufferSource",
    "FileSource",
    "IoThread",
    "MessageSink",
    "MessageSource",
    "MessageStream",
    "read_some",
    "writable_byte_view",
]

MessageSource = RandomAccessReader

_T = TypeVar("_T")


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


def writable_byte_view(buffer: object) -> memoryview:
    """A flat writable unsigned-byte view of a `readinto` target (ValidationError if there is none)."""
    view = as_byte_view(buffer)  # type: ignore[arg-type]  # any object: judged here, typed error
    if view.readonly:
        view.release()
        raise ValidationError("readinto needs a writable buffer")
    return view


class IoThread:
    """One helper thread that runs a stream's I/O calls in the order they were submitted.

    The writer hands it `sink.write` of the batch it just sealed (ciphertext
    only) and seals the next one meanwhile; the reader hands it the fetch
    *and opening* of the next batch into a plaintext buffer of its own, which
    the caller copies out only once the whole batch verified. Reads, writes
    and AES-GCM all release the GIL. The thread starts on the first
    `submit`, so a stream of one batch never starts it.

    Lifetime: `close()` waits for the call in progress and cancels the rest
    (explicit closes, failures); `abandon(last)` is for finalizers, which must
    not join threads: it cancels what has not started and runs `last` (closing
    or aborting the stream's sink or source) once the call in progress
    returns -- on the helper thread, never concurrently with it; at once if
    none is in progress -- and lets the thread exit. Nothing references the stream that owns it, so dropping the stream
    still runs its finalizer.
    """

    __slots__ = ("_futures", "_lock", "_name", "_pool")

    def __init__(self, name: str) -> None:
        self._name = name
        self._pool: ThreadPoolExecutor | None = None
        self._futures: list[Future[Any]] = []  # submitted, not yet known finished
        self._lock = threading.Lock()  # submit/close/abandon may race only with a finalizer

    @property
    def started(self) -> bool:
        return self._pool is not None

    def submit(self, fn: Callable[..., _T], /, *args: Any) -> Future[_T]:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix=self._name)
            future = self._pool.submit(fn, *args)
            self._futures = [f for f in self._futures if not f.done()]
            self._futures.append(future)
            return future

    def close(self) -> None:
        """Cancel calls not yet started, wait for the one in progress, stop the thread. Idempotent."""
        with self._lock:
            pool, self._pool = self._pool, None
            futures, self._futures = self._futures, []
        for future in futures:
            future.cancel()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def abandon(self, last: Callable[[], object]) -> None:
        """From a finalizer: stop without waiting; `last()` runs once no call is in progress.

        `last` is chained to the calls that could not be cancelled (the one in progress), not
        queued on the pool: a stream freed by the cycle collector has had the pool's weak
        reference cleared first, which already queued the worker's stop, so anything queued
        after it would never run.
        """
        with self._lock:
            pool, self._pool = self._pool, None
            futures, self._futures = self._futures, []
        running = [future for future in futures if not future.cancel()]  # in progress, or done
        _after_all(running, last)
        if pool is not None:
            pool.shutdown(wait=False)


def _after_all(futures: list[Future[Any]], last: Callable[[], object]) -> None:
    """Run `last` once, when every one of `futures` is done (at once if they all are)."""
    lock = threading.Lock()
    left = [len(futures)]

    def one_done(_: object) -> None:
        with lock:
            left[0] -= 1
            fire = left[0] == 0
        if fire:
            last()

    if not futures:
        last()
    for future in futures:
        future.add_done_callback(one_done)  # runs in the worker as the call returns, or here if it has
