"""`MessageWriter`: a write-only binary file that encrypts into a sink as one framed message.

The mirror of `MessageReader` (dataplane/_reader.py): the header at
construction, then plaintext gathered into frame-shaped batches of
`BATCH_BYTES` (`THREAD_BATCHES` times that with threads) and sealed in
place, or straight from the caller's memory when a write covers whole
frames; `close()` writes the final frame and commits.

`MessageWriter` takes the message id: reusing one with the same data key
repeats every derived key and IV, so it is a building block
(`dataplane.hazmat`); `Container.open_writer` makes a fresh bound id each time.

What this module must never do:

- make a partial message visible: the writer commits its sink only in a
  clean `close()`; an exception, `abort()`, or dropping an unclosed writer
  aborts the sink instead;
- write a frame length its own default reader refuses (`check_frame_length`);
- hold raw key bytes in its frames: a `data_key` given as bytes is rebound
  to a `DataKey` holder on the first line, and only a `MessageKey` and
  AES-GCM objects are kept (see dataplane/format.py).
Errors are sticky: after a failure every later call raises the same error.
"""

from __future__ import annotations

import contextlib
import functools
import io
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NoReturn

from envelope.datakey import DataKey
from envelope.errors import ValidationError
from envelope.storage._base import as_byte_view

from ._byteio import IoThread, MessageSink, MessageStream
from ._frames import OverlapVote, SealSlot, frames_per_batch, release_pool_in_finalizer, split, wipe
from ._params import check_frame_length, check_threads
from .format import (
    DEFAULT_FRAME_LENGTH,
    FIRST_SEQUENCE_NUMBER,
    MAX_FRAME_COUNT,
    TAG_LENGTH,
    EncryptedDataKey,
    MessageHeader,
    encode_header,
    key_holder,
)

__all__ = ["MessageWriter"]


class MessageWriter(io.BufferedIOBase):
    """A write-only binary file that encrypts into `sink` as one framed message.

    The header is written at construction. `write` gathers plaintext into
    frame-shaped buffers and seals them; writes that cover whole frames are
    encrypted straight from the caller's memory. `close()` writes the final
    frame (empty when the plaintext is a multiple of the frame length, as
    the SDKs do) and commits the sink. `abort()`, an exception inside a
    `with` block, any failure, or garbage-collecting an unclosed writer abort
    the sink instead, so nothing partial is ever visible.

    With ``threads >= 2`` batches grow to ``THREAD_BATCHES`` times that. Buffered
    batches are sealed by a thread pool in a ring of ``threads + 1`` buffers
    and written out in order; whole frames in the caller's buffer are split
    into one run per thread, the calling thread sealing the first itself.

    Write-behind: once sink writes prove slow next to sealing
    (`OverlapVote`), sealed batches are written, in order, by one I/O
    thread while the next is sealed; a slot is refilled only after its
    bytes are written, a failed write is raised by the next call, and
    ``close()`` commits only after every write returned. Memory stays at
    about ``max(2, threads + 1) * max(frame_length, batch)`` (1 MiB batches
    with one thread, 2 MiB with more).
    """

    def __init__(
        self,
        sink: MessageSink,
        *,
        data_key: bytes | DataKey,
        message_id: bytes,
        encryption_context: Mapping[str, str],
        encrypted_data_keys: Sequence[EncryptedDataKey | tuple[str, bytes, bytes]],
        frame_length: int = DEFAULT_FRAME_LENGTH,
        threads: int = 1,
    ) -> None:
        super().__init__()
        self._sink = sink
        self._error: BaseException | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._io = IoThread("envelope-write")
        self._behind = False  # sink writes go to the I/O thread (decided by `_emit`)
        self._vote = OverlapVote()
        self._seal_rate = 0.0  # seconds per byte of the last batch this thread sealed
        self._pending: deque[SealSlot] = deque()
        self._slots: list[SealSlot] = []
        self._current = 0  # the slot being filled
        self._frames = 0  # full, unsealed frames in the current slot
        self._fill = 0  # plaintext bytes of the partial frame after them
        self._next_sequence = FIRST_SEQUENCE_NUMBER
        owned_key = not isinstance(data_key, DataKey)
        try:
            data_key = key_holder(data_key)  # this frame never holds raw key bytes (format.py)
            frame_length = check_frame_length(frame_length)
            threads = check_threads(threads)
            header, key = encode_header(
                data_key=data_key,
                message_id=message_id,
                encryption_context=encryption_context,
                encrypted_data_keys=encrypted_data_keys,
                frame_length=frame_length,
            )
            self._header = header
            self._frame_length = frame_length
            self._threads = threads
            self._batch = frames_per_batch(frame_length, threads)
            slots = 2 if threads == 1 else threads + 1  # one being filled or sealed while one is written
            self._slots = [SealSlot(key, header.message_id, frame_length, self._batch) for _ in range(slots)]
            if threads > 1:
                self._pool = ThreadPoolExecutor(threads, thread_name_prefix="envelope-seal")
            self._sink.write(memoryview(header.to_bytes()))
        except BaseException as exc:
            self._error = exc
            self._shutdown()
            _abort_quietly(sink)
            super().close()
            raise
        finally:
            if owned_key and isinstance(data_key, DataKey):
                data_key.wipe()  # our own copy; the message key is all the writer keeps

    # -- public surface --

    @property
    def header(self) -> MessageHeader:
        return self._header

    @property
    def frame_length(self) -> int:
        return self._frame_length

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        """Plaintext bytes accepted so far."""
        return (self._next_sequence - 1 + self._frames) * self._frame_length + self._fill

    def flush(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._check()
        try:
            return self._write(data)
        except BaseException as exc:
            self._fail(exc)
            raise

    def write_from(self, source: MessageStream) -> int:
        """Encrypt everything `source` yields until end of file; returns the bytes taken.

        `source` is any binary file with `readinto` (an open file, a socket
        file, another reader). It reads straight into the frame buffers, so
        the plaintext is copied once (from the source) instead of twice as
        with ``write(source.read(n))`` -- and no buffer is allocated per read.
        """
        self._check()
        readinto = getattr(source, "readinto", None)
        if not callable(readinto):
            raise ValidationError("write_from needs a binary source with readinto()")
        try:
            return self._write_from(readinto)
        except BaseException as exc:
            self._fail(exc)
            raise

    def _write_from(self, readinto: Callable[[memoryview], int | None]) -> int:
        frame_length, batch = self._frame_length, self._batch
        total = 0
        while True:
            slot = self._slots[self._current]
            start = slot.plaintext_offset(self._frames) + self._fill
            want = frame_length - self._fill
            slot.reserve(start + want + TAG_LENGTH)
            n = readinto(slot.view[start : start + want])
            if n is None:
                raise ValidationError("write_from needs a blocking source (readinto returned None)")
            if not n:
                return total
            self._fill += n
            total += n
            if self._fill == frame_length:
                self._fill = 0
                self._frames += 1
                if self._frames == batch:
                    self._submit(None, batch)

    def close(self) -> None:
        """Write the final frame and commit. After a failure, raises the sticky error (every time)."""
        if self.closed:
            if self._error is not None and not isinstance(self._error, _Aborted):
                raise self._error  # a retried close() must not look like a commit
            return
        if self._error is not None:
            super().close()
            raise self._error
        try:
            slot, frames = self._slots[self._current], self._frames
            sealed = slot.seal(self._take_sequence_numbers(frames), frames, None) if frames else None
            self._drain(0)
            for other in self._slots:
                self._settle(other)  # every earlier batch written, in order, before ours
            if sealed is not None:
                self._sink.write(sealed)
            sequence_number = self._take_sequence_numbers(1, final=True)
            prefix, body = slot.seal_final(frames, sequence_number, self._fill)
            self._sink.write(memoryview(prefix))
            self._sink.write(body)
            self._frames = self._fill = 0
            self._sink.commit()
        except BaseException as exc:
            self._fail(exc)
            super().close()
            raise
        self._shutdown()
        super().close()

    def abort(self) -> None:
        """Discard the message: nothing becomes visible. Idempotent."""
        if self.closed:
            return
        if self._error is None:
            self._fail(_Aborted())
        super().close()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:
        # io.IOBase would close() -- i.e. commit -- an abandoned writer. Abort it instead, without
        # joining threads (see release_pool_in_finalizer): the I/O thread aborts the sink itself
        # once the write in progress, if any, returns, so the two never touch the sink at once.
        with contextlib.suppress(Exception):  # nothing useful can be done in a finalizer
            release_pool_in_finalizer(self)
            if not self.closed:
                if self._error is None:
                    self._error = _Aborted()
                self._wipe_slots()
                self._io.abandon(functools.partial(_abort_quietly, self._sink))
                super().close()

    def __reduce__(self) -> NoReturn:
        raise TypeError("MessageWriter cannot be pickled")

    # -- internals --

    def _check(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        if self._error is not None:
            raise self._error

    def _write(self, data: bytes | bytearray | memoryview) -> int:
        frame_length, batch = self._frame_length, self._batch
        with as_byte_view(data) as view:
            n = len(view)
            i = 0
            while i < n:
                if self._fill == 0 and n - i >= frame_length:
                    # Whole frames in the caller's buffer: encrypt from there, no copy.
                    if self._frames:
                        self._submit(None, self._frames)
                    count = (n - i) // frame_length
                    self._seal_direct(view[i : i + count * frame_length], count)
                    i += count * frame_length
                    continue
                slot = self._slots[self._current]
                take = min(frame_length - self._fill, n - i)
                start = slot.plaintext_offset(self._frames) + self._fill
                slot.reserve(start + take + TAG_LENGTH)
                slot.view[start : start + take] = view[i : i + take]
                self._fill += take
                i += take
                if self._fill == frame_length:
                    self._fill = 0
                    self._frames += 1
                    if self._frames == batch:
                        self._submit(None, batch)
        return n

    def _take_sequence_numbers(self, count: int, *, final: bool = False) -> int:
        first = self._next_sequence
        last = first + count - 1
        # Regular frames may not use the last number: the final frame needs one after them.
        if last > MAX_FRAME_COUNT or (not final and last >= MAX_FRAME_COUNT):
            raise ValidationError("message too long for its frame length: at most 2^32-1 frames")
        self._next_sequence = last + 1
        return first

    def _submit(self, plaintext: memoryview | None, count: int) -> None:
        """Seal `count` frames of the current slot (in place, or from `plaintext`) and move on."""
        first = self._take_sequence_numbers(count)
        slot = self._slots[self._current]
        self._frames = 0
        if self._pool is None:
            self._emit(slot, self._seal_here(slot, first, count, plaintext))
        else:
            slot.future = self._pool.submit(slot.seal, first, count, plaintext)
            self._pending.append(slot)
        self._advance(1)

    def _advance(self, steps: int) -> None:
        """Make the slot `steps` after the current one current, once it is free to fill."""
        if self._pool is None and not self._behind:
            return  # every write so far was made here: the same (cache-warm) slot is free again
        self._current = (self._current + steps) % len(self._slots)
        slot = self._slots[self._current]
        while slot.future is not None:
            self._drain(len(self._pending) - 1)
        self._settle(slot)

    def _seal_direct(self, plaintext: memoryview, count: int) -> None:
        """Seal `count` whole frames straight from the caller's `plaintext` and write them in order.

        Up to `threads` batches at a time, one contiguous run per thread, the
        calling thread sealing the first, each into a free slot of the ring;
        every run is sealed before this returns, so nothing references
        `plaintext` afterwards (the I/O thread writes the slots, not it).
        """
        self._drain(0)
        frame_length, pool, slots = self._frame_length, self._pool, self._slots
        step = self._threads * self._batch
        for offset in range(0, count, step):
            n = min(step, count - offset)
            first = self._take_sequence_numbers(n)
            chunk = plaintext[offset * frame_length : (offset + n) * frame_length]
            runs = [
                (first + start, size, chunk[start * frame_length : (start + size) * frame_length])
                for start, size in split(n, self._threads)
            ]
            mine = [slots[(self._current + j) % len(slots)] for j in range(len(runs))]
            for slot in mine[1:]:
                self._settle(slot)  # the current slot is free already
            futures: list[Future[memoryview]] = []
            for slot, run in zip(mine[1:], runs[1:], strict=True):
                assert pool is not None, "runs are split only with threads >= 2"
                futures.append(pool.submit(slot.seal, *run))
            self._emit(mine[0], self._seal_here(mine[0], *runs[0]))
            for slot, future in zip(mine[1:], futures, strict=True):
                self._emit(slot, future.result())
            self._advance(len(runs))

    def _seal_here(self, slot: SealSlot, first: int, count: int, plaintext: memoryview | None) -> memoryview:
        """`slot.seal` on this thread, timed for `_emit`'s decision."""
        start = time.perf_counter()
        frames = slot.seal(first, count, plaintext)
        self._seal_rate = (time.perf_counter() - start) / len(frames)
        return frames

    def _emit(self, slot: SealSlot, frames: memoryview) -> None:
        """Write `slot`'s sealed `frames`, or hand them to the I/O thread (then the slot is busy until `_settle`).

        Writes start on this thread. Once `OVERLAP_EVIDENCE` in a row took
        long enough that sealing the next batch meanwhile pays for a hand-off
        (`worth_overlapping`: a file's write into the page cache does, a
        counting or in-memory sink's does not), every later batch is written
        behind. So a message of a few batches (most objects) never starts the
        thread. If the first batches written behind come no faster than the
        ones before (no idle core), writes come back here for good.
        """
        self._vote.tick(len(frames))
        if self._behind:
            if self._vote.keep():
                slot.written = self._io.submit(self._sink.write, frames)
                return
            self._behind = False
            for other in self._slots:
                self._settle(other)  # every batch handed over is written before this one
            self._sink.write(frames)
            return
        start = time.perf_counter()
        self._sink.write(frames)
        self._behind = self._vote.slow(time.perf_counter() - start, self._seal_rate * len(frames))

    def _settle(self, slot: SealSlot) -> None:
        """Wait until `slot`'s bytes are written; a failed write raises here (then sticky)."""
        written, slot.written = slot.written, None
        if written is not None:
            written.result()

    def _drain(self, keep: int) -> None:
        """Hand sealed batches to the I/O thread, oldest first, until at most `keep` are sealing."""
        while len(self._pending) > keep:
            slot = self._pending[0]
            assert slot.future is not None, "a pending slot always has a future"
            frames = slot.future.result()
            self._pending.popleft()
            slot.future = None
            self._emit(slot, frames)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._shutdown()
        self._wipe_slots()  # batches whose sealing was cancelled still hold the caller's plaintext
        _abort_quietly(self._sink)

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._io.close()  # after this no write is in progress: the sink may be committed or aborted
        self._pending.clear()
        for slot in self._slots:
            slot.future = slot.written = None
        self._wipe_unsealed()

    def _wipe_slots(self) -> None:
        """Wipe every batch buffer: on failure or abort, when no seal may finish (a seal still
        running on an abandoned pool writes ciphertext over the zeros, never plaintext)."""
        for slot in self._slots:
            wipe(slot.view)
        self._frames = self._fill = 0

    def _wipe_unsealed(self) -> None:
        if self._slots and (self._frames or self._fill):
            # Unsealed plaintext in the current slot is all that is left to wipe.
            slot = self._slots[self._current]
            wipe(slot.view[: slot.plaintext_offset(self._frames) + self._fill])
            self._frames = self._fill = 0


def _abort_quietly(sink: MessageSink) -> None:
    with contextlib.suppress(Exception):  # the original error is the one to report
        sink.abort()


class _Aborted(ValueError):
    def __init__(self) -> None:
        super().__init__("the writer was aborted")
