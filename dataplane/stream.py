"""The streaming pair: `MessageWriter` encrypts into a sink, `MessageReader` decrypts from a source.

Both speak the message format of `dataplane.format` (ESDK v2, suite 0x0478,
framed) and mirror each other. Frames move in batches of about
`BATCH_BYTES` (`THREAD_BATCHES` times that with threads), through buffers
that grow to one batch and are then reused (small messages stay small); the
IV comes from the sequence number; the body AAD is a template rewritten in place; AES-GCM
runs in place or straight between the caller's memory and ours
(`encrypt_into` / `decrypt_into`), so a frame costs no allocation. Errors are
sticky: after a failure every later call raises the same error.

What this module must never do:

- release a byte of a frame's plaintext before that frame's tag verified
  (a frame decrypted straight into a caller's `readinto` buffer is wiped if
  its tag fails, and the call raises);
- report end-of-data before the final frame authenticated;
- make a partial message visible: the writer commits its sink only in a
  clean `close()`; an exception, `abort()`, or dropping an unclosed writer
  aborts the sink instead;
- say which integrity check failed (`AuthenticationError` is one message);
- hold raw key bytes in a frame an exception can propagate through. Error
  trackers record every frame's locals, so the writer rebinds a `data_key`
  given as bytes to a `DataKey` holder on its first line, the reader passes
  the resolver's answer straight to `authenticate_header`, and both keep
  only a `MessageKey` and AES-GCM objects (reprs without the key); the raw
  bytes exist only inside `format._commit_and_derive`, which raises nothing.
"""

from __future__ import annotations

import contextlib
import io
import operator
import struct
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NoReturn, Protocol, TypeVar

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from envelope.datakey import DataKey
from envelope.errors import AuthenticationError, ValidationError

from .format import (
    BODY_AAD_COUNTERS,
    DEFAULT_FRAME_LENGTH,
    FINAL_FRAME_AAD_LABEL,
    FINAL_FRAME_MARKER,
    FINAL_FRAME_OVERHEAD,
    FINAL_FRAME_PREFIX,
    FRAME_AAD_LABEL,
    MAX_FRAME_COUNT,
    MAX_FRAME_LENGTH,
    NON_FRAMED_OVERHEAD,
    NON_FRAMED_SEQUENCE_NUMBER,
    REGULAR_FRAME_OVERHEAD,
    REGULAR_FRAME_PREFIX,
    SINGLE_BLOCK_AAD_LABEL,
    TAG_LENGTH,
    BodyAad,
    EncryptedDataKey,
    Limits,
    MessageHeader,
    MessageKey,
    authenticate_header,
    body_layout,
    encode_header,
    key_holder,
    read_header,
    serialize_encryption_context,
)

__all__ = [
    "BATCH_BYTES",
    "THREAD_BATCHES",
    "BufferSource",
    "MessageReader",
    "MessageSink",
    "MessageSource",
    "MessageWriter",
]

WRITER_FRAME_ALIGNMENT = 16  # the SDKs only write frame lengths that are multiples of the AES block
MAX_THREADS = 64
BATCH_BYTES = 1 << 20
"""Frames are sealed, opened, written and fetched in batches of about this many bytes
(at least one frame): per-call overheads (Python, the sink, the source, a hand-off to
a worker thread) then vanish next to AES-GCM, and memory stays flat."""

THREAD_BATCHES = 4
"""With ``threads >= 2`` a batch holds this many times `BATCH_BYTES` of plaintext (4 MiB,
at least one frame), and each task seals or opens a contiguous run of up to one batch:
a hand-off to a worker costs tens of microseconds, so runs must be long to pay off."""

SLOT_MIN_BYTES = 4096

_REGULAR_PREFIX = struct.Struct(">I8xI")  # seq u32, then the IV: 8 zero bytes and seq
_FINAL_PREFIX = struct.Struct(">II8xII")  # marker, seq, IV, content length
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_FINAL_HEAD = struct.Struct(">II")
_T = TypeVar("_T")


class _ReadInto(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class MessageSink(Protocol):
    """Where a writer's bytes go (envelope.storage's ObjectWriter has this shape).

    `write` must consume or copy the bytes before it returns: the writer
    reuses the buffer behind the memoryview.
    """

    def write(self, data: memoryview, /) -> int: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class MessageSource(Protocol):
    """Positional reads from one immutable object of known size (a RandomAccessReader).

    A source may also offer ``view_at(offset, length) -> memoryview``, a
    zero-copy view of its bytes; the reader then decrypts straight from it.
    """

    @property
    def size(self) -> int: ...

    def readinto_at(self, offset: int, buf: memoryview, /) -> int: ...

    def close(self) -> None: ...


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


def check_threads(threads: object) -> int:
    """A writer's or reader's thread count: an int in 1..MAX_THREADS (ValidationError otherwise)."""
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= MAX_THREADS:
        raise ValidationError(f"threads must be an int in 1..{MAX_THREADS}")
    return threads


def check_frame_length(frame_length: object) -> int:
    """A frame length our writer may use: a multiple of 16 in 16..`MAX_FRAME_LENGTH` (ValidationError otherwise).

    The upper bound is the default reader's `Limits.max_frame_length`: what we write, we read.
    """
    if (
        not isinstance(frame_length, int)
        or isinstance(frame_length, bool)
        or frame_length % WRITER_FRAME_ALIGNMENT
        or not WRITER_FRAME_ALIGNMENT <= frame_length <= MAX_FRAME_LENGTH
    ):
        raise ValidationError(
            f"frame_length must be a multiple of {WRITER_FRAME_ALIGNMENT} in "
            f"{WRITER_FRAME_ALIGNMENT}..{MAX_FRAME_LENGTH} (16 MiB, what a default reader accepts)"
        )
    return frame_length


def _frames_per_batch(frame_length: int, threads: int) -> int:
    if threads > 1:
        return max(1, THREAD_BATCHES * BATCH_BYTES // frame_length)
    return max(1, BATCH_BYTES // (frame_length + REGULAR_FRAME_OVERHEAD))


def _split(count: int, parts: int) -> list[tuple[int, int]]:
    """(start, count) of at most `parts` contiguous, nearly equal runs covering `count` items."""
    share = -(-count // parts)
    return [(start, min(share, count - start)) for start in range(0, count, share)]


def _wipe(view: memoryview) -> None:
    if len(view):
        view[:] = bytes(len(view))


# --- Writer ------------------------------------------------------------------


class _SealSlot:
    """A batch buffer of the writer, laid out as consecutive regular frames.

    Each slot has its own cipher and AAD so that slots can seal in parallel.
    """

    __slots__ = ("aad", "aead", "capacity", "final_aad", "frame_length", "future", "view")

    def __init__(self, key: MessageKey, message_id: bytes, frame_length: int, frames: int) -> None:
        self.capacity = frames * (frame_length + REGULAR_FRAME_OVERHEAD)
        self.view = memoryview(bytearray(0))  # grown on demand up to capacity: small messages stay small
        self.aead = key.cipher()
        self.aad = BodyAad(message_id, FRAME_AAD_LABEL)
        self.final_aad = BodyAad(message_id, FINAL_FRAME_AAD_LABEL)
        self.frame_length = frame_length
        self.future: Future[memoryview] | None = None

    def reserve(self, size: int) -> None:
        """Make the buffer at least `size` bytes (within capacity), keeping its contents."""
        have = len(self.view)
        if size > have:
            grown = bytearray(min(max(size, 2 * have, SLOT_MIN_BYTES), self.capacity))
            grown[:have] = self.view
            _wipe(self.view)  # it may hold plaintext waiting to be sealed
            self.view = memoryview(grown)

    def plaintext_offset(self, frame: int) -> int:
        return frame * (self.frame_length + REGULAR_FRAME_OVERHEAD) + REGULAR_FRAME_PREFIX

    def seal(self, first_sequence_number: int, count: int, plaintext: memoryview | None) -> memoryview:
        """Encrypt `count` regular frames -- in place, or from `plaintext` -- and return their bytes."""
        n = self.frame_length
        stride = n + REGULAR_FRAME_OVERHEAD
        self.reserve(count * stride)
        view, aead = self.view, self.aead
        aad, counters = self.aad.buffer, self.aad.counter_offset
        pack_prefix, pack_counters = _REGULAR_PREFIX.pack_into, BODY_AAD_COUNTERS.pack_into
        for j in range(count):
            sequence_number = first_sequence_number + j
            base = j * stride
            start = base + REGULAR_FRAME_PREFIX
            pack_prefix(view, base, sequence_number, sequence_number)
            pack_counters(aad, counters, sequence_number, n)
            source = view[start : start + n] if plaintext is None else plaintext[j * n : (j + 1) * n]
            aead.encrypt_into(view[base + 4 : start], source, aad, view[start : start + n + TAG_LENGTH])
        return view[: count * stride]

    def seal_final(self, frame: int, sequence_number: int, length: int) -> tuple[bytes, memoryview]:
        """Encrypt the `length` bytes at frame position `frame` in place as the final frame.

        Returns the final frame's prefix and its ciphertext || tag.
        """
        prefix = _FINAL_PREFIX.pack(FINAL_FRAME_MARKER, sequence_number, sequence_number, length)
        start = self.plaintext_offset(frame)
        self.reserve(start + length + TAG_LENGTH)
        body = self.view[start : start + length + TAG_LENGTH]
        self.aead.encrypt_into(prefix[8:20], body[:length], self.final_aad.update(sequence_number, length), body)
        return prefix, body


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
    Memory stays at about ``(threads + 1) * max(frame_length, 4 MiB)``.
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
        self._pending: deque[_SealSlot] = deque()
        self._slots: list[_SealSlot] = []
        self._current = 0  # the slot being filled
        self._frames = 0  # full, unsealed frames in the current slot
        self._fill = 0  # plaintext bytes of the partial frame after them
        self._next_sequence = 1
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
            self._batch = _frames_per_batch(frame_length, threads)
            slots = 1 if threads == 1 else threads + 1
            self._slots = [_SealSlot(key, header.message_id, frame_length, self._batch) for _ in range(slots)]
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

    def write_from(self, source: _ReadInto) -> int:
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
        """Write the final frame and commit. After a failure, raises the sticky error."""
        if self.closed:
            return
        if self._error is not None:
            super().close()
            raise self._error
        try:
            slot, frames = self._slots[self._current], self._frames
            if frames:
                self._sink_write_in_order(slot.seal(self._take_sequence_numbers(frames), frames, None))
            self._drain(0)
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
        # io.IOBase would close() -- i.e. commit -- an abandoned writer. Abort it instead.
        with contextlib.suppress(Exception):  # nothing useful can be done in a finalizer
            _release_pool_in_finalizer(self)
            if not self.closed:
                self.abort()

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
        with memoryview(data) as raw, raw.cast("B") as view:
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
            self._sink.write(slot.seal(first, count, plaintext))
            return
        slot.future = self._pool.submit(slot.seal, first, count, plaintext)
        self._pending.append(slot)
        self._current = (self._current + 1) % len(self._slots)
        while self._slots[self._current].future is not None:
            self._drain(len(self._pending) - 1)

    def _seal_direct(self, plaintext: memoryview, count: int) -> None:
        """Seal `count` whole frames straight from the caller's `plaintext` and write them in order.

        Up to `threads` batches at a time, one contiguous run per thread, the
        calling thread sealing the first; every run is written before this
        returns, so nothing references `plaintext` afterwards.
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
                for start, size in _split(n, self._threads)
            ]
            futures: list[Future[memoryview]] = []
            for slot, run in zip(slots[1:], runs[1:], strict=False):
                assert pool is not None, "runs are split only with threads >= 2"
                futures.append(pool.submit(slot.seal, *run))
            self._sink.write(slots[0].seal(*runs[0]))
            for future in futures:
                self._sink.write(future.result())

    def _sink_write_in_order(self, frames: memoryview) -> None:
        self._drain(0)
        self._sink.write(frames)

    def _drain(self, keep: int) -> None:
        """Write out sealed batches, oldest first, until at most `keep` are in flight."""
        while len(self._pending) > keep:
            slot = self._pending[0]
            assert slot.future is not None, "a pending slot always has a future"
            frames = slot.future.result()
            self._pending.popleft()
            slot.future = None
            self._sink.write(frames)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._shutdown()
        _abort_quietly(self._sink)

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending.clear()
        for slot in self._slots:
            slot.future = None
        if self._slots and (self._frames or self._fill):
            # Unsealed plaintext in the current slot is all that is left to wipe.
            slot = self._slots[self._current]
            _wipe(slot.view[: slot.plaintext_offset(self._frames) + self._fill])
            self._frames = self._fill = 0


def _release_pool_in_finalizer(stream: MessageWriter | MessageReader) -> None:
    """Stop a stream's thread pool without waiting for its threads.

    A finalizer can run on any thread -- even inside a new thread's start-up
    while another thread waits for that start -- so joining threads there can
    deadlock. An explicit close() still waits for the pool as usual.
    """
    pool, stream._pool = stream._pool, None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


def _abort_quietly(sink: MessageSink) -> None:
    with contextlib.suppress(Exception):  # the original error is the one to report
        sink.abort()


class _Aborted(ValueError):
    def __init__(self) -> None:
        super().__init__("the writer was aborted")


# --- Reader ------------------------------------------------------------------


class _OpenSlot:
    """What opening a batch of frames needs: a ciphertext buffer, a cipher, the AAD templates."""

    __slots__ = ("aad", "aead", "buffer", "final_aad", "frame_length")

    def __init__(self, key: MessageKey, message_id: bytes, frame_length: int, framed: bool) -> None:
        self.frame_length = frame_length
        self.aead = key.cipher()
        self.aad = BodyAad(message_id, FRAME_AAD_LABEL if framed else SINGLE_BLOCK_AAD_LABEL)
        self.final_aad = BodyAad(message_id, FINAL_FRAME_AAD_LABEL)
        self.buffer = memoryview(bytearray(0))  # grown on demand, up to one batch or the final frame


def _open_into(aead: AESGCM, iv: memoryview, body: memoryview, aad: bytearray, out: memoryview) -> None:
    """Decrypt and verify one frame into `out`; on a bad tag, wipe `out` and raise."""
    try:
        aead.decrypt_into(iv, body, aad, out)
    except InvalidTag:
        _wipe(out)  # decrypt_into has already written unverified plaintext there
        raise AuthenticationError from None


def _open_frames(slot: _OpenSlot, first_sequence_number: int, count: int, data: memoryview, out: memoryview) -> None:
    """Verify and decrypt `count` consecutive regular frames from `data` into `out`.

    The stored sequence number is compared explicitly: the tag covers the
    expected number (through the AAD) but not the stored field.
    """
    aead, aad, counters, frame_length = slot.aead, slot.aad.buffer, slot.aad.counter_offset, slot.frame_length
    stride = frame_length + REGULAR_FRAME_OVERHEAD
    unpack, pack_counters = _U32.unpack_from, BODY_AAD_COUNTERS.pack_into
    for j in range(count):
        sequence_number = first_sequence_number + j
        base = j * stride
        if unpack(data, base)[0] != sequence_number:
            raise AuthenticationError
        pack_counters(aad, counters, sequence_number, frame_length)
        region = out[j * frame_length : (j + 1) * frame_length]
        try:
            aead.decrypt_into(data[base + 4 : base + 16], data[base + 16 : base + stride], aad, region)
        except InvalidTag:
            _wipe(region)
            raise AuthenticationError from None


class MessageReader(io.BufferedIOBase):
    """A read-only, seekable binary file over one message in `source`.

    Construction parses the header, checks the object size against the
    body layout, calls ``resolve_key(header)`` for the data key, verifies key
    commitment and the header tag, then the optional ``check_message_id``
    hook (name binding). Only then can bytes be read. Seeking is arithmetic;
    a read decrypts only the frames it touches, and a frame's plaintext is
    released only after its tag verified. The plaintext size comes from the
    object size and is trusted once the final frame verified, which happens
    lazily: on reaching the end, on ``SEEK_END`` or ``plaintext_size()``.

    ``required_encryption_context`` (the SDKs' required-context rule):
    entries present in the header must match it; entries absent from the
    header are authenticated by appending their serialization to the
    header-authentication AAD.

    `readinto` with a buffer covering whole frames decrypts straight into
    it; `read` decrypts straight into the `bytes` it returns (on CPython).
    The reader owns `source` and closes it on `close()` (or when
    construction fails). It is not safe to share between threads. With
    ``threads >= 2`` batches grow to ``THREAD_BATCHES`` times ``BATCH_BYTES``,
    and a read of whole frames is split into one run per thread, the calling
    thread opening the first; sources without ``view_at`` then cost about
    ``threads * max(frame_length, 4 MiB)`` of ciphertext buffers.
    """

    def __init__(
        self,
        source: MessageSource,
        *,
        resolve_key: Callable[[MessageHeader], bytes | DataKey],
        required_encryption_context: Mapping[str, str] | None = None,
        check_message_id: Callable[[bytes], bool] | None = None,
        limits: Limits | None = None,
        max_frame_length: int | None = None,
        threads: int = 1,
    ) -> None:
        super().__init__()
        self._source = source
        self._error: BaseException | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._plaintext = memoryview(bytearray(0))  # verified plaintext of frame self._cached
        self._cached = -1
        try:
            self._threads = check_threads(threads)
            limits = limits or Limits()
            if max_frame_length is not None:
                limits = attrs.evolve(limits, max_frame_length=max_frame_length)
            header = read_header(source, limits)
            extra = _authenticated_only_context(header, required_encryption_context)
            layout = body_layout(header, source.size, limits)
            key = authenticate_header(header, resolve_key(header), extra_aad=extra)
            if check_message_id is not None and not check_message_id(header.message_id):
                raise AuthenticationError
        except BaseException:
            try:
                source.close()
            finally:
                super().close()
            raise
        self._header = header
        self._layout = layout
        self._key = key
        self._view_at: Callable[[int, int], memoryview] | None = getattr(source, "view_at", None)
        self._batch = _frames_per_batch(layout.frame_length, self._threads)
        self._slot = self._new_slot()
        self._slots: list[_OpenSlot] = []
        self._final_verified = False
        self._pos = 0

    # -- public surface --

    @property
    def header(self) -> MessageHeader:
        """The authenticated header."""
        return self._header

    def plaintext_size(self) -> int:
        """The plaintext length; authenticates the final frame first if it was not yet."""
        self._check()
        self._guard(self._ensure_final)
        return self._layout.plaintext_size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        self._check()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check()
        offset = operator.index(offset)
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._pos + offset
        elif whence == io.SEEK_END:
            self._guard(self._ensure_final)
            position = self._layout.plaintext_size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._pos = position
        return position

    def read(self, size: int | None = -1) -> bytes:
        self._check()
        if size is None or size < 0:
            return self.readall()
        layout = self._layout
        pos = self._pos
        if self._cached >= 0 and pos < layout.plaintext_size:
            index, within = self._locate(pos)
            end = within + size
            if index == self._cached and end <= layout.frame_plaintext_length(index):
                out = bytes(self._plaintext[within:end])  # served from the verified frame cache
                self._pos = pos + size
                if self._pos >= layout.plaintext_size:
                    self._guard(self._ensure_final)
                return out
        return self._read_new(max(0, min(size, layout.plaintext_size - pos)))

    def readall(self) -> bytes:
        self._check()
        return self._read_new(max(0, self._layout.plaintext_size - self._pos))

    def read1(self, size: int = -1) -> bytes:
        """At most the rest of the current frame."""
        self._check()
        return self.read(self._frame_remaining(size))

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        self._check()
        with memoryview(buffer) as raw, raw.cast("B") as view:
            return self._guard(self._readinto, view)

    def readinto1(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        self._check()
        with memoryview(buffer) as raw, raw.cast("B") as view:
            return self._guard(self._readinto, view[: self._frame_remaining(len(view))])

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
            _wipe(self._plaintext)
            self._cached = -1
            self._source.close()
        finally:
            super().close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            _release_pool_in_finalizer(self)
        super().__del__()

    def __reduce__(self) -> NoReturn:
        raise TypeError("MessageReader cannot be pickled")

    # -- internals: state --

    def _check(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        if self._error is not None:
            raise self._error

    def _guard(self, step: Callable[..., _T], *args: memoryview) -> _T:
        """Run a step; any failure becomes the reader's sticky error."""
        try:
            return step(*args)
        except BaseException as exc:
            self._error = exc
            _wipe(self._plaintext)
            self._cached = -1
            raise

    def _read_new(self, n: int) -> bytes:
        # Decrypt straight into the bytes object we return: BytesIO shares a bytes
        # initial value, lends it out writable, and getvalue() hands the same
        # object back (CPython; elsewhere it is one copy, still correct).
        stream = io.BytesIO(bytes(n))
        with stream.getbuffer() as view:
            try:
                got = self._guard(self._readinto, view)
            except BaseException:
                _wipe(view)
                raise
        out = stream.getvalue()
        return out if got == n else out[:got]

    def _new_slot(self) -> _OpenSlot:
        layout = self._layout
        return _OpenSlot(self._key, self._header.message_id, layout.frame_length, layout.framed)

    def _locate(self, pos: int) -> tuple[int, int]:
        """(frame index, offset inside it) of plaintext position `pos` < plaintext size."""
        layout = self._layout
        regular_end = layout.regular_frames * layout.frame_length
        if pos < regular_end:
            return divmod(pos, layout.frame_length)
        return layout.final_index, pos - regular_end

    def _frame_remaining(self, size: int) -> int:
        if self._pos >= self._layout.plaintext_size:
            return 0
        index, within = self._locate(self._pos)
        remaining = self._layout.frame_plaintext_length(index) - within
        return remaining if size < 0 else min(size, remaining)

    # -- internals: frames --

    def _fetch(self, offset: int, length: int, slot: _OpenSlot) -> memoryview:
        """The `length` message bytes at `offset`: a zero-copy view, or read into the slot."""
        if self._view_at is not None:
            view = self._view_at(offset, length)
            if len(view) != length:
                raise AuthenticationError
            return view
        if len(slot.buffer) < length:
            slot.buffer = memoryview(bytearray(length))
        view = slot.buffer[:length]
        done = 0
        while done < length:
            n = self._source.readinto_at(offset + done, view[done:])
            if n <= 0:
                raise AuthenticationError  # the object is shorter than its size said
            done += n
        return view

    def _fetch_regular(self, first: int, count: int, slot: _OpenSlot) -> memoryview:
        """The bytes of regular frames first .. first+count-1 (one batch at most)."""
        layout = self._layout
        return self._fetch(layout.frame_offset(first), count * (layout.frame_length + REGULAR_FRAME_OVERHEAD), slot)

    def _open_final(self, out: memoryview) -> None:
        """Fetch, check and open the final frame (or the non-framed block) into `out`."""
        layout, slot = self._layout, self._slot
        n = layout.final_length
        offset = layout.frame_offset(layout.final_index)
        if layout.framed:
            sequence_number = layout.final_index + 1
            frame = self._fetch(offset, n + FINAL_FRAME_OVERHEAD, slot)
            if _FINAL_HEAD.unpack_from(frame) != (FINAL_FRAME_MARKER, sequence_number):
                raise AuthenticationError
            if _U32.unpack_from(frame, 20)[0] != n:
                raise AuthenticationError
            iv, body, aad = frame[8:20], frame[FINAL_FRAME_PREFIX:], slot.final_aad.update(sequence_number, n)
        else:
            frame = self._fetch(offset, n + NON_FRAMED_OVERHEAD, slot)
            if _U64.unpack_from(frame, 12)[0] != n:
                raise AuthenticationError
            iv, body, aad = frame[:12], frame[20:], slot.aad.update(NON_FRAMED_SEQUENCE_NUMBER, n)
        _open_into(slot.aead, iv, body, aad, out)
        self._final_verified = True

    def _load(self, index: int) -> None:
        """Decrypt frame `index` into the plaintext cache."""
        self._cached = -1
        length = self._layout.frame_plaintext_length(index)
        if len(self._plaintext) < length:
            _wipe(self._plaintext)
            self._plaintext = memoryview(bytearray(max(length, self._layout.frame_length)))
        if index == self._layout.final_index:
            self._open_final(self._plaintext[:length])
        else:
            _open_frames(self._slot, index + 1, 1, self._fetch_regular(index, 1, self._slot), self._plaintext[:length])
        self._cached = index

    def _ensure_final(self) -> None:
        if not self._final_verified:
            self._load(self._layout.final_index)

    def _readinto(self, out: memoryview) -> int:
        layout = self._layout
        size = layout.plaintext_size
        want = len(out)
        done = 0
        while done < want and self._pos < size:
            index, within = self._locate(self._pos)
            length = layout.frame_plaintext_length(index)
            if index == self._cached:
                take = min(length - within, want - done)
                out[done : done + take] = self._plaintext[within : within + take]
            elif within == 0 and want - done >= length:
                take = self._open_run(index, out[done:])
            else:
                self._load(index)
                continue
            done += take
            self._pos += take
        if self._pos >= size:
            self._ensure_final()  # end of data is reported only once it is authenticated
        return done

    def _open_run(self, first: int, out: memoryview) -> int:
        """Decrypt whole frames from `first` straight into `out`; returns bytes produced."""
        layout = self._layout
        if first == layout.final_index:
            self._open_final(out[: layout.final_length])
            return layout.final_length
        frame_length = layout.frame_length
        count = min(len(out) // frame_length, layout.final_index - first)
        step = self._threads * self._batch
        for offset in range(0, count, step):
            n = min(step, count - offset)
            self._open_split(first + offset, n, out[offset * frame_length : (offset + n) * frame_length])
        return count * frame_length

    def _open_split(self, first: int, count: int, out: memoryview) -> None:
        """Open frames first .. first+count-1 into `out`, one contiguous run per thread.

        The calling thread opens the first run. Sources are read from this
        thread only, in order; workers just decrypt. Workers write into the
        caller's buffer, so every one is joined before this returns; on a
        failure everything after the earliest failing run is wiped too (a bad
        frame wipes itself).
        """
        frame_length = self._layout.frame_length
        runs = _split(count, self._threads)
        if len(runs) > 1 and self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads - 1, thread_name_prefix="envelope-open")
            self._slots = [self._new_slot() for _ in range(self._threads - 1)]
        pool, slots = self._pool, [self._slot, *self._slots]
        futures: list[Future[None]] = []
        error: BaseException | None = None
        failed = k = 0
        try:
            data = self._fetch_regular(first, runs[0][1], self._slot)
            for k, (start, size) in enumerate(runs[1:], 1):
                assert pool is not None, "runs are split only with threads >= 2"
                other = self._fetch_regular(first + start, size, slots[k])
                region = out[start * frame_length : (start + size) * frame_length]
                futures.append(pool.submit(_open_frames, slots[k], first + start + 1, size, other, region))
            k = 0
            _open_frames(self._slot, first + 1, runs[0][1], data, out[: runs[0][1] * frame_length])
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after the workers are joined
            error, failed = exc, k
        for k, future in enumerate(futures, 1):
            try:
                future.result()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                if error is None or k < failed:
                    error, failed = exc, k
        if error is not None:
            start, size = runs[failed]
            _wipe(out[(start + size) * frame_length :])
            raise error


def _authenticated_only_context(header: MessageHeader, required: Mapping[str, str] | None) -> bytes:
    """Serialization of the required entries the header does not store (mismatches fail)."""
    if not required:
        return b""
    missing: dict[str, str] = {}
    for key, value in required.items():
        stored = header.encryption_context.get(key)
        if stored is None:
            missing[key] = value
        elif stored != value:
            raise AuthenticationError
    return serialize_encryption_context(missing)
