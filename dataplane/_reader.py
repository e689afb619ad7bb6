"""`MessageReader`: a seekable binary file over one message in a random-access source.

The mirror of `MessageWriter` (dataplane/_writer.py): construction reads and
authenticates the header, then reads decrypt only the frames they touch, in
batches of `BATCH_BYTES` (`THREAD_BATCHES` times that with threads), through
one reused buffer per thread; the body layout is arithmetic on the object
size (`dataplane.format.body_layout`), so a seek costs nothing.

What this module must never do:

- release a byte of a frame's plaintext before that frame's tag verified
  (a frame decrypted straight into a caller's `readinto` buffer is wiped if
  its tag fails, and so is every later run other threads opened; the call raises);
- report end-of-data before the final frame authenticated;
- hold raw key bytes in its frames (the resolver's answer goes straight to
  `authenticate_header`; the reader keeps a `MessageKey`);
- say which integrity check failed (`AuthenticationError` is one message).
Errors are sticky: after a failure every later call raises the same error.
"""

from __future__ import annotations

import contextlib
import functools
import io
import operator
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Final, NoReturn, TypeVar

import attrs

from envelope.datakey import DataKey
from envelope.errors import AuthenticationError

from ._byteio import IoThread, MessageSource, writable_byte_view
from ._frames import OpenSlot, OverlapVote, frames_per_batch, release_pool_in_finalizer, split, wipe
from ._params import check_threads
from .format import (
    DEFAULT_LIMITS,
    REGULAR_FRAME_OVERHEAD,
    Limits,
    MessageHeader,
    authenticate_header,
    authenticated_only_context,
    body_layout,
    read_header_and_prefix,
)

__all__ = ["MessageReader"]

_T = TypeVar("_T")

UNVERIFIED_ALLOCATION_LIMIT: Final = 4 << 20
"""A read to the end (`read()`, `readall()`, or a `read(n)` with `n` past the end) that would allocate
more than this many bytes authenticates the final frame first (one more small read of the source,
once per reader), so only a sealed plaintext size can make the reader allocate that much. A `read(n)`
that ends before the end allocates what its caller asked for."""


class _PrefixView:
    """Zero-copy views into the bytes of a small object the header read fetched whole."""

    __slots__ = ("_view",)

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)

    def view_at(self, offset: int, length: int) -> memoryview:
        return self._view[offset : offset + length]


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
    ``threads * max(frame_length, 2 MiB)`` of ciphertext buffers.

    Read-ahead (one thread, sources without ``view_at``): whole-frame reads
    that go on where the last one stopped are served a batch at a time, and
    once the timings show it pays (`OverlapVote`) the I/O thread fetches and
    opens the next batch while the caller works on this one; a batch is
    copied out only after every frame in it verified. Memory: two batches of
    ciphertext and two of plaintext (about 4 MiB, the plaintext wiped on
    close) on top of the above.
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
        self._io = IoThread("envelope-read")
        self._source_closer_queued = False
        self._plaintext = memoryview(bytearray(0))  # verified plaintext of frame self._cached
        self._cached = -1
        try:
            self._threads = check_threads(threads)
            limits = limits or DEFAULT_LIMITS
            if max_frame_length is not None:
                limits = attrs.evolve(limits, max_frame_length=max_frame_length)
            header, prefix = read_header_and_prefix(source, limits)
            extra = authenticated_only_context(header, required_encryption_context)
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
        if self._view_at is None and len(prefix) == source.size:
            self._view_at = _PrefixView(prefix).view_at  # a small object, read whole with its header
        self._batch = frames_per_batch(layout.frame_length, self._threads)
        self._slot = self._new_slot()
        self._slots: list[OpenSlot] = []
        # Sequential read-ahead (threads == 1, sources without view_at): ciphertext only.
        self._buffers = [memoryview(bytearray(0)), memoryview(bytearray(0))]
        # frames [lo, hi) fetched into _buffers[i] (and, when opened, verified plaintext in _plain[i])
        self._window: tuple[int, int, int, bool] | None = None
        self._ahead: tuple[int, int, int, Future[None]] | None = None  # the same, being read and opened
        self._next_frame = 0  # where a sequential run of whole-frame reads goes on
        self._read_ahead = False  # decided by `_open_ahead` from the first batches' timings
        self._vote = OverlapVote()
        self._plain = [memoryview(bytearray(0)), memoryview(bytearray(0))]  # verified plaintext of an ahead batch
        self._helper_slot: OpenSlot | None = None
        self._left_at = 0.0  # when the last read returned to the caller
        self._outside = 0.0  # how long the caller then spent before reading on
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
        remaining = layout.plaintext_size - pos
        return self._read_new(max(0, min(size, remaining)), claimed=size >= remaining)

    def readall(self) -> bytes:
        self._check()
        return self._read_new(max(0, self._layout.plaintext_size - self._pos), claimed=True)

    def read1(self, size: int = -1) -> bytes:
        """At most the rest of the current frame."""
        self._check()
        return self.read(self._frame_remaining(size))

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        self._check()
        with writable_byte_view(buffer) as view:
            return self._guard(self._readinto, view)

    def readinto1(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        self._check()
        with writable_byte_view(buffer) as view:
            return self._guard(self._readinto, view[: self._frame_remaining(len(view))])

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._stop_and_wipe()
            if not self._source_closer_queued:
                self._source.close()
        finally:
            super().close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            release_pool_in_finalizer(self)
            if not self.closed and self._io.started:
                # No joining in a finalizer: the read-ahead thread closes the source itself once
                # its read in progress returns, so the two never touch the source at once.
                self._source_closer_queued = True
                self._io.abandon(functools.partial(_release, self._source, list(self._plain)))
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
            self._stop_and_wipe()
            raise

    def _stop_and_wipe(self) -> None:
        """On close or failure: stop the helper threads, then wipe every plaintext buffer."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._io.close()  # no read in progress after this: the source may close, the wipes hold
        self._ahead = self._window = None
        for plain in self._plain:
            wipe(plain)
        wipe(self._plaintext)
        self._cached = -1

    def _read_new(self, n: int, *, claimed: bool) -> bytes:
        """Read `n` bytes into a new bytes object; `claimed`: `n` comes from the stored length
        (a read to the end), not from the size the caller asked for."""
        if claimed and n > UNVERIFIED_ALLOCATION_LIMIT and self._layout.framed:
            # The stored length is not authenticated yet: a file grown sparse would have us
            # allocate gigabytes to then fail on its first changed frame. The final frame sits
            # where that length says; once it opens, the length is the sealed one.
            self._guard(self._ensure_final)
        # Decrypt straight into the bytes object we return: BytesIO shares a bytes
        # initial value, lends it out writable, and getvalue() hands the same
        # object back (CPython; elsewhere it is one copy, still correct).
        stream = io.BytesIO(bytes(n))
        with stream.getbuffer() as view:
            try:
                got = self._guard(self._readinto, view)
            except BaseException:
                wipe(view)
                raise
        out = stream.getvalue()
        return out if got == n else out[:got]

    def _new_slot(self) -> OpenSlot:
        layout = self._layout
        return OpenSlot(self._key, self._header.message_id, layout.frame_length, layout.framed)

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

    def _fetch(self, offset: int, length: int, slot: OpenSlot) -> memoryview:
        """The `length` message bytes at `offset`: a zero-copy view, or read into the slot."""
        if self._view_at is not None:
            view = self._view_at(offset, length)
            if len(view) != length:
                raise AuthenticationError
            return view
        self._settle_ahead()  # one source call at a time
        if len(slot.buffer) < length:
            slot.buffer = memoryview(bytearray(length))
        return _read_fully(self._source, offset, slot.buffer[:length])

    def _open_ahead(self, first: int, count: int, out: memoryview) -> None:
        """Open regular frames first .. first+count-1, all in one aligned batch, into `out` (threads == 1).

        Whole-frame reads that go on where the previous one stopped are served
        a batch at a time. Once the reader's timings show it pays
        (`OverlapVote`: the source's reads plus what the caller does between
        two reads -- writing the plaintext out, say -- take a good share of the
        time opening takes), the I/O thread fetches *and opens* the next batch
        into a buffer of its own while the caller works, and the caller's
        next read only copies that batch out. A batch handed over that way was
        wholly verified first (`_fetch_and_open` raises otherwise, and the
        buffer is wiped); nothing of it is released before. Any other read is
        fetched and opened on its own, in this thread.
        """
        layout = self._layout
        stride, frame_length = layout.frame_length + REGULAR_FRAME_OVERHEAD, layout.frame_length
        final, batch = layout.final_index, self._batch
        if first != self._next_frame:
            self._next_frame = first + count
            self._window = None
            self._slot.open_regular(first + 1, count, self._fetch_regular(first, count, self._slot), out)
            return
        self._next_frame = first + count
        waited = 0.0
        window = self._window
        if window is None or not window[0] <= first < first + count <= window[1]:
            ahead = self._ahead
            if ahead is not None and ahead[0] <= first < first + count <= ahead[1]:
                self._ahead = None
                try:
                    ahead[3].result()  # a failed read or a bad frame raises here, in the caller's thread
                except BaseException:
                    wipe(self._plain[ahead[2]])
                    raise
                window = (*ahead[:3], True)
            else:
                self._settle_ahead()
                hi = min((first // batch + 1) * batch, final)
                started = time.perf_counter()
                _read_fully(self._source, layout.frame_offset(first), self._buffer(0, (hi - first) * stride))
                waited = time.perf_counter() - started
                window = (first, hi, 0, False)  # buffer 0: nothing is in flight, the old window is done with
            self._window = window
            self._vote.tick((window[1] - window[0]) * stride)
            if self._read_ahead and not self._vote.keep():
                self._read_ahead = False  # the batches opened ahead came no faster: no idle core
        lo, hi, index, opened = window
        if self._read_ahead and self._ahead is None and hi < final:
            end, other = min(hi + batch, final), 1 - index
            ciphertext = self._buffer(other, (end - hi) * stride)
            plaintext = self._plain_buffer(other, (end - hi) * frame_length)
            if self._helper_slot is None:
                self._helper_slot = self._new_slot()  # the I/O thread's own cipher object
            job = functools.partial(_fetch_and_open, offset=layout.frame_offset(hi), first=hi + 1)
            self._ahead = (hi, end, other, self._io.submit(job, self._source, self._helper_slot, ciphertext, plaintext))
        at = first - lo
        if opened:
            out[:] = self._plain[index][at * frame_length : (at + count) * frame_length]
            return
        started = time.perf_counter()
        self._slot.open_regular(first + 1, count, self._buffers[index][at * stride : (at + count) * stride], out)
        opening = time.perf_counter() - started
        outside, self._outside = self._outside, 0.0
        if not self._read_ahead:
            self._read_ahead = self._vote.slow(waited + outside, opening)

    def _buffer(self, index: int, length: int) -> memoryview:
        if len(self._buffers[index]) < length:
            self._buffers[index] = memoryview(bytearray(length))
        return self._buffers[index][:length]

    def _plain_buffer(self, index: int, length: int) -> memoryview:
        if len(self._plain[index]) < length:
            wipe(self._plain[index])
            self._plain[index] = memoryview(bytearray(length))
        return self._plain[index][:length]

    def _settle_ahead(self) -> None:
        """Wait for a read-ahead in progress and drop it (its error too: the read is retried if needed)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            wait([ahead[3]])

    def _fetch_regular(self, first: int, count: int, slot: OpenSlot) -> memoryview:
        """The bytes of regular frames first .. first+count-1 (one batch at most)."""
        layout = self._layout
        return self._fetch(layout.frame_offset(first), count * (layout.frame_length + REGULAR_FRAME_OVERHEAD), slot)

    def _open_final(self, out: memoryview) -> None:
        """Fetch, check and open the final frame (or the non-framed block) into `out`."""
        layout, slot = self._layout, self._slot
        frame = self._fetch(layout.frame_offset(layout.final_index), layout.final_frame_size, slot)
        slot.open_last(layout, frame, out)
        self._final_verified = True

    def _load(self, index: int) -> None:
        """Decrypt frame `index` into the plaintext cache."""
        self._cached = -1
        length = self._layout.frame_plaintext_length(index)
        if len(self._plaintext) < length:
            wipe(self._plaintext)
            self._plaintext = memoryview(bytearray(max(length, self._layout.frame_length)))
        if index == self._layout.final_index:
            self._open_final(self._plaintext[:length])
        else:
            self._slot.open_regular(index + 1, 1, self._fetch_regular(index, 1, self._slot), self._plaintext[:length])
        self._cached = index

    def _ensure_final(self) -> None:
        if not self._final_verified:
            self._load(self._layout.final_index)

    def _readinto(self, out: memoryview) -> int:
        entered = time.perf_counter()
        if self._left_at:
            self._outside = entered - self._left_at
        try:
            return self._readinto_timed(out)
        finally:
            self._left_at = time.perf_counter()

    def _readinto_timed(self, out: memoryview) -> int:
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
        if self._threads == 1 and self._view_at is None:
            batch, index = self._batch, first
            while index < first + count:
                n = min(first + count, (index // batch + 1) * batch) - index
                region = out[(index - first) * frame_length : (index - first + n) * frame_length]
                self._open_ahead(index, n, region)
                index += n
            return count * frame_length
        step = self._threads * self._batch
        for offset in range(0, count, step):
            n = min(step, count - offset)
            self._opensplit(first + offset, n, out[offset * frame_length : (offset + n) * frame_length])
        return count * frame_length

    def _opensplit(self, first: int, count: int, out: memoryview) -> None:
        """Open frames first .. first+count-1 into `out`, one contiguous run per thread.

        The calling thread opens the first run. Sources are read from this
        thread only, in order; workers just decrypt. Workers write into the
        caller's buffer, so every one is joined before this returns; on a
        failure everything after the earliest failing run is wiped too (a bad
        frame wipes itself).
        """
        frame_length = self._layout.frame_length
        runs = split(count, self._threads)
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
                futures.append(pool.submit(slots[k].open_regular, first + start + 1, size, other, region))
            k = 0
            self._slot.open_regular(first + 1, runs[0][1], data, out[: runs[0][1] * frame_length])
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
            wipe(out[(start + size) * frame_length :])
            raise error


def _read_fully(source: MessageSource, offset: int, view: memoryview) -> memoryview:
    """Fill `view` with the source's bytes at `offset` (on the caller's or the read-ahead thread)."""
    done, length = 0, len(view)
    while done < length:
        n = source.readinto_at(offset + done, view[done:])
        if n <= 0:
            raise AuthenticationError  # the object is shorter than its size said
        done += n
    return view


def _fetch_and_open(
    source: MessageSource, slot: OpenSlot, ciphertext: memoryview, plaintext: memoryview, *, offset: int, first: int
) -> None:
    """On the I/O thread: read a batch of regular frames and verify and open all of them into `plaintext`."""
    _read_fully(source, offset, ciphertext)
    slot.open_regular(first, len(plaintext) // slot.frame_length, ciphertext, plaintext)


def _release(source: MessageSource, plaintexts: list[memoryview]) -> None:
    """A dropped reader's last step, on its I/O thread: wipe the batches opened ahead, close the source."""
    for plaintext in plaintexts:
        wipe(plaintext)
    source.close()
