"""The I/O pipeline of the streams: write-behind in MessageWriter, read-ahead in MessageReader.

Batches are shrunk (BATCH_BYTES monkeypatched) so that a few hundred bytes
go through many batches, i.e. through many hand-offs to the I/O thread.
Every test stops what it started; `no_io_threads_left` checks that the
streams did too (bounded joins, no sleeps).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator
from concurrent.futures import Future

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dataplane._frames as frames_module
import dataplane.format as format_module
from dataplane.format import FINAL_FRAME_OVERHEAD, REGULAR_FRAME_OVERHEAD, REGULAR_FRAME_PREFIX
from dataplane.hazmat import MessageReader, MessageWriter
from envelope.errors import AuthenticationError, StorageError
from tests.test_format import EDKS, KEY, MESSAGE_ID, MemorySink

F = 16
IO_THREAD_PREFIXES = ("envelope-write", "envelope-read")
SHIPPED_OVERLAP = (frames_module.OVERLAP_MIN_SECONDS, frames_module.OVERLAP_SHARE)


def plaintext_of(n: int) -> bytes:
    return bytes((i * 7 + 3) % 253 for i in range(n))


def io_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(IO_THREAD_PREFIXES)]


def join_io_threads(timeout: float = 30.0) -> list[threading.Thread]:
    """Join every stream I/O thread (bounded); returns those still alive."""
    for t in io_threads():
        t.join(timeout)
    return io_threads()


@pytest.fixture(autouse=True)
def no_io_threads_left() -> Iterator[None]:
    assert join_io_threads() == [], "an earlier test left stream threads behind"
    yield
    gc.collect()
    assert join_io_threads() == [], "a stream left its I/O thread running"


@pytest.fixture(autouse=True)
def always_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hand every I/O call after the first batches to the I/O thread, however fast (timing-free tests)."""
    monkeypatch.setattr(frames_module, "OVERLAP_MIN_SECONDS", 0.0)
    monkeypatch.setattr(frames_module, "OVERLAP_SHARE", 0.0)
    monkeypatch.setattr(frames_module, "OVERLAP_EVIDENCE", 1)
    monkeypatch.setattr(frames_module, "OVERLAP_TRIAL", 1 << 30)  # never judged: no timing in these tests


@pytest.fixture(autouse=True)
def no_whole_object_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Readers fetch frames from their source, as for objects over 64 KiB (small ones are read whole)."""
    monkeypatch.setattr(format_module, "SMALL_OBJECT_BYTES", 0)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 3 frames of 16 bytes."""
    monkeypatch.setattr(frames_module, "BATCH_BYTES", 3 * F)


class ThreadSink(MemorySink):
    """Records which thread each write ran on, and refuses overlapping calls."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []
        self.busy = False
        self.overlaps = 0

    def write(self, data: memoryview) -> int:
        if self.busy:
            self.overlaps += 1
        self.busy = True
        try:
            self.threads.append(threading.current_thread().name)
            self.during_write(len(self.threads) - 1)
            return super().write(data)
        finally:
            self.busy = False

    def during_write(self, index: int) -> None:
        pass

    def commit(self) -> None:
        if self.busy:
            self.overlaps += 1
        super().commit()

    def abort(self) -> None:
        if self.busy:
            self.overlaps += 1
        super().abort()


class RecordingSource:
    """A source without `view_at`, recording the thread of each read and any use after close."""

    def __init__(self, data: bytes, *, fail_at: int | None = None, gate_read_ahead: bool = False) -> None:
        self._data = data
        self.fail_at = fail_at
        self.gate_read_ahead = gate_read_ahead
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.threads: list[str] = []
        self.closed = False
        self.after_close = 0
        self.busy = False
        self.overlaps = 0
        self.lock = threading.Lock()

    @property
    def size(self) -> int:
        return len(self._data)

    def readinto_at(self, offset: int, buf: memoryview) -> int:
        with self.lock:
            if self.busy:
                self.overlaps += 1
            self.busy = True
            if self.closed:
                self.after_close += 1
        try:
            self.threads.append(threading.current_thread().name)
            if self.gate_read_ahead and self.threads[-1].startswith("envelope-read") and not self.entered.is_set():
                self.entered.set()
                self.gate.wait(2.0)
            if self.fail_at is not None and offset <= self.fail_at < offset + len(buf):
                raise StorageError("the disk went away")
            n = max(0, min(len(buf), len(self._data) - offset))
            buf[:n] = self._data[offset : offset + n]
            return n
        finally:
            self.busy = False

    def close(self) -> None:
        with self.lock:
            if self.busy:
                self.overlaps += 1
            self.closed = True


def new_writer(sink: MemorySink, frame_length: int = F, threads: int = 1) -> MessageWriter:
    key = {"data_key": KEY, "message_id": MESSAGE_ID, "encrypted_data_keys": EDKS}
    return MessageWriter(sink, encryption_context={"k": "v"}, frame_length=frame_length, threads=threads, **key)


def reference(pt: bytes, frame_length: int = F) -> bytes:
    """The message written in one piece, with batches large enough that no hand-off happens."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(frames_module, "BATCH_BYTES", 1 << 24)
        sink = MemorySink()
        with new_writer(sink, frame_length) as w:
            w.write(pt)
    return bytes(sink.data)


def write_in_pieces(pt: bytes, sizes: list[int], sink: MemorySink, threads: int = 1) -> None:
    with new_writer(sink, threads=threads) as w:
        pos = 0
        for size in sizes:
            w.write(pt[pos : pos + size])
            pos += size
        w.write(pt[pos:])


# -- write-behind --


def test_batches_are_written_by_the_io_thread_in_order(small_batches: None) -> None:
    pt = plaintext_of(40 * F + 5)
    sink = ThreadSink()
    write_in_pieces(pt, [7, 5 * F, 3, 11 * F], sink)
    assert bytes(sink.data) == reference(pt)
    assert sink.state == "committed"
    assert sink.overlaps == 0
    # The header and the final frame are written by the caller; the sealed batches behind it by the I/O thread.
    assert sum(name.startswith("envelope-write") for name in sink.threads) >= 10


def test_a_stream_of_one_batch_starts_no_thread(small_batches: None) -> None:
    sink = ThreadSink()
    write_in_pieces(plaintext_of(2 * F), [], sink)
    assert not any(name.startswith("envelope-write") for name in sink.threads)


@settings(max_examples=60, deadline=None)
@given(
    pt=st.binary(max_size=1500),
    writes=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
    threads=st.sampled_from([1, 2, 3]),
    batch_bytes=st.sampled_from([16, 48, 144, 400]),
)
def test_write_behind_gives_the_same_message(pt: bytes, writes: list[int], threads: int, batch_bytes: int) -> None:
    expected = reference(pt)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(frames_module, "BATCH_BYTES", batch_bytes)
        sink = ThreadSink()
        write_in_pieces(pt, writes, sink, threads)
    assert bytes(sink.data) == expected
    assert sink.overlaps == 0


class GatedSink(ThreadSink):
    """Its third write blocks until `gate` is set (bounded).

    The caller writes the header and the first batch itself; the second batch
    is the first the I/O thread writes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.commit_while_writing = False

    def during_write(self, index: int) -> None:
        if index == 2:
            self.entered.set()
            self.gate.wait(2.0)

    def commit(self) -> None:
        self.commit_while_writing = self.busy
        super().commit()


def test_close_commits_only_after_every_batch_is_written(small_batches: None) -> None:
    pt = plaintext_of(6 * F + 3)  # batches of 3 frames: the caller writes 0-2, the I/O thread 3-5 (gated)
    sink = GatedSink()
    w = new_writer(sink)
    w.write(pt)
    assert sink.entered.wait(30)
    w.close()  # must wait for the gated write: the object would otherwise miss it or be out of order
    sink.gate.set()
    assert not sink.commit_while_writing
    assert sink.state == "committed"
    assert bytes(sink.data) == reference(pt)


class FailingSink(ThreadSink):
    def __init__(self, fail_on: int) -> None:
        super().__init__()
        self.fail_on = fail_on

    def write(self, data: memoryview) -> int:
        if len(self.threads) + 1 == self.fail_on:
            self.threads.append(threading.current_thread().name)
            raise OSError("disk full")
        return super().write(data)


@pytest.mark.parametrize("fail_on", [2, 3, 6])
@pytest.mark.parametrize("threads", [1, 2])
def test_an_error_in_the_io_thread_is_raised_by_the_next_call_and_aborts(
    fail_on: int, threads: int, small_batches: None
) -> None:
    sink = FailingSink(fail_on)
    w = new_writer(sink, threads=threads)
    pt = plaintext_of(100 * F)
    with pytest.raises(OSError, match="disk full"):
        for i in range(0, len(pt), 5):
            w.write(pt[i : i + 5])
        w.close()
    assert sink.state == "aborted"
    assert sink.overlaps == 0
    if not w.closed:  # it surfaced in a write: sticky until close
        with pytest.raises(OSError, match="disk full"):
            w.write(b"x")
        with pytest.raises(OSError, match="disk full"):
            w.close()
    assert sink.state == "aborted"


def gated_writer() -> tuple[GatedSink, MessageWriter]:
    """A writer whose I/O thread is inside the sink's write of the second batch (gated)."""
    sink = GatedSink()
    w = new_writer(sink)
    w.write(plaintext_of(6 * F + 3))  # the caller wrote batch 1; the I/O thread holds batch 2; this returns
    assert sink.entered.wait(30)
    return sink, w


@pytest.mark.parametrize("how", ["abort", "raise"])
def test_abort_mid_stream_waits_for_the_write_in_progress(how: str, small_batches: None) -> None:
    sink, w = gated_writer()
    opener = threading.Timer(0.2, sink.gate.set)  # lets the gated write finish, if nothing else does first
    opener.start()
    try:
        if how == "abort":
            w.abort()
        else:
            with pytest.raises(LookupError), w:
                raise LookupError
    finally:
        opener.cancel()
        opener.join()
    assert sink.state == "aborted"
    assert sink.overlaps == 0  # abort() ran after the write in progress, not during it


def test_a_dropped_writer_is_aborted_by_its_io_thread(small_batches: None) -> None:
    sink, w = gated_writer()
    del w
    gc.collect()
    # The write in progress was not interrupted: the abort waits behind it, on the I/O thread.
    assert sink.state == "open"
    sink.gate.set()
    assert join_io_threads() == []
    assert sink.state == "aborted"
    assert sink.overlaps == 0


class Holder:
    """An ordinary object graph with a back-reference: what the cycle collector frees."""

    me: object
    stream: object


@pytest.mark.parametrize("cyclic", [False, True], ids=["dropped", "freed by the cycle collector"])
def test_a_writer_dropped_in_a_cycle_is_aborted_too(cyclic: bool, small_batches: None) -> None:
    """Attack finding F4: the collector clears the pool's weak reference (queueing the worker's stop)
    before the finalizer runs; the abort must still run after the write in progress."""
    sink, w = gated_writer()
    if cyclic:
        holder = Holder()
        holder.me, holder.stream = holder, w
        del holder
    del w
    gc.collect()
    assert sink.state == "open"  # behind the write in progress
    sink.gate.set()
    assert join_io_threads() == []
    assert sink.state == "aborted"
    assert sink.overlaps == 0


class NeverSeals:
    """A seal pool whose jobs stay queued until shutdown cancels them (a busy pool, deterministically)."""

    def __init__(self) -> None:
        self.futures: list[Future[object]] = []

    def submit(self, fn: object, /, *args: object) -> Future[object]:
        self.futures.append(Future())
        return self.futures[-1]

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        for future in self.futures:
            future.cancel()


@pytest.mark.parametrize("how", ["abort", "drop"])
def test_a_batch_whose_sealing_was_cancelled_is_wiped(how: str, small_batches: None) -> None:
    """Attack finding F2: with threads >= 2, batches queued for sealing still held the caller's bytes
    after a failure, an abort or a drop (only the batch being filled was wiped)."""
    marker = b"PLAINTEXT-MARKER"  # one frame
    w = new_writer(MemorySink(), threads=2)  # abort and failure share one path (_fail)
    assert w._pool is not None
    w._pool.shutdown()
    w._pool = NeverSeals()  # type: ignore[assignment]
    for _ in range(6):  # one batch of six frames, filled by small writes: sealed in place, queued
        for i in range(0, F, 5):
            w.write(marker[i : i + 5])
    slots = list(w._slots)
    assert any(marker in bytes(slot.view) for slot in slots)  # queued, not sealed: plaintext in the slot
    if how == "abort":
        w.abort()
    else:
        del w
        gc.collect()
    assert not any(marker in bytes(slot.view) for slot in slots)


def test_close_after_a_failed_close_raises_again() -> None:
    """Attack finding F5: a retried close() after a failure must not return as if it had committed."""
    sink = FailingSink(2)  # the header is write 1, at construction
    w = new_writer(sink)
    w.write(plaintext_of(5))  # less than a frame: nothing reaches the sink before close
    with pytest.raises(OSError, match="disk full"):
        w.close()
    for _ in range(2):
        with pytest.raises(OSError, match="disk full"):
            w.close()
    assert sink.state == "aborted"
    aborted = new_writer(MemorySink())
    aborted.abort()
    aborted.close()  # closing an aborted writer is not an error


# -- read-ahead --


def read_all(r: MessageReader, size: int) -> bytes:
    out = bytearray()
    buf = bytearray(size)
    while n := r.readinto(buf):
        out += buf[:n]
    return bytes(out)


def test_sequential_reads_are_fetched_ahead_on_the_io_thread(small_batches: None) -> None:
    pt = plaintext_of(400 * F + 9)
    source = RecordingSource(reference(pt))
    with MessageReader(source, resolve_key=lambda h: KEY) as r:
        assert read_all(r, 2 * F) == pt
    assert source.closed
    assert source.overlaps == 0
    assert source.after_close == 0
    assert sum(name.startswith("envelope-read") for name in source.threads) >= 10


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=12_000),
    batch_bytes=st.sampled_from([16, 48, 144, 400]),
    ops=st.lists(
        st.tuples(st.sampled_from(["readinto", "read", "seek"]), st.integers(min_value=0, max_value=3000)),
        max_size=12,
    ),
)
def test_read_ahead_gives_the_same_plaintext_whatever_the_reads(
    size: int, batch_bytes: int, ops: list[tuple[str, int]]
) -> None:
    pt = plaintext_of(size)
    message = reference(pt)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(frames_module, "BATCH_BYTES", batch_bytes)
        source = RecordingSource(message)
        with MessageReader(source, resolve_key=lambda h: KEY) as r:
            for op, n in ops:
                pos = r.tell()
                if op == "seek":
                    r.seek(n)
                    continue
                if op == "read":
                    got = r.read(n)
                else:
                    buf = bytearray(n)
                    got = bytes(buf[: r.readinto(buf)])
                assert got == pt[pos : pos + n]
            pos = r.tell()
            assert r.read() == pt[pos:]
    assert source.overlaps == 0
    assert source.after_close == 0


def test_a_tampered_frame_fetched_ahead_releases_nothing_of_it(small_batches: None) -> None:
    pt = plaintext_of(400 * F)
    message = bytearray(reference(pt))
    bad = 301  # the middle frame of a batch of three
    stride = F + REGULAR_FRAME_OVERHEAD
    body_start = len(message) - 400 * stride - FINAL_FRAME_OVERHEAD  # regular frames, then an empty final frame
    message[body_start + bad * stride + REGULAR_FRAME_PREFIX + 3] ^= 1
    source = RecordingSource(bytes(message))
    r = MessageReader(source, resolve_key=lambda h: KEY)
    buf = bytearray(4 * F)
    got = bytearray()
    with pytest.raises(AuthenticationError):
        while n := r.readinto(buf):
            got += buf[:n]
    assert bytes(got) == pt[: len(got)]
    assert len(got) <= bad * F
    assert pt[bad * F : bad * F + F] not in bytes(buf)
    with pytest.raises(AuthenticationError):
        r.read(1)  # sticky
    r.close()
    assert source.after_close == 0
    assert not any(bytes(buffer).strip(b"\0") for buffer in r._plain)  # batches opened ahead are wiped


def test_batches_are_opened_ahead_by_the_io_thread_and_copied_out_verified(small_batches: None) -> None:
    pt = plaintext_of(400 * F)
    opened_on: list[str] = []
    original = frames_module.OpenSlot.open_regular

    def recording(slot: frames_module.OpenSlot, *args: object) -> None:
        opened_on.append(threading.current_thread().name)
        original(slot, *args)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(frames_module.OpenSlot, "open_regular", recording)
        with MessageReader(RecordingSource(reference(pt)), resolve_key=lambda h: KEY) as r:
            assert read_all(r, 3 * F) == pt
    assert sum(name.startswith("envelope-read") for name in opened_on) >= 100


def test_a_failed_read_ahead_is_raised_where_its_bytes_are_needed(small_batches: None) -> None:
    pt = plaintext_of(400 * F)
    message = reference(pt)
    source = RecordingSource(message, fail_at=len(message) // 2)
    with MessageReader(source, resolve_key=lambda h: KEY) as r:
        with pytest.raises(StorageError, match="went away"):
            read_all(r, 2 * F)
        with pytest.raises(StorageError):
            r.read(1)
    assert source.overlaps == 0


@pytest.mark.parametrize("how", ["close", "drop"])
def test_a_reader_ended_mid_stream_closes_its_source_after_the_read_in_progress(how: str, small_batches: None) -> None:
    pt = plaintext_of(400 * F)
    source = RecordingSource(reference(pt), gate_read_ahead=True)
    r = MessageReader(source, resolve_key=lambda h: KEY)
    assert r.read(5 * F) == pt[: 5 * F]
    assert source.entered.wait(30)  # the read-ahead thread is inside the source, gated
    opener = threading.Timer(0.2, source.gate.set)
    opener.start()
    try:
        if how == "close":
            r.close()
        else:
            del r
            gc.collect()
    finally:
        opener.cancel()
        opener.join()
    assert join_io_threads() == []
    assert source.closed
    assert source.after_close == 0
    assert source.overlaps == 0  # close() ran after the read in progress, not during it


def test_a_failed_reader_wipes_what_it_opened_ahead_at_once(small_batches: None) -> None:
    """Attack finding F3: after the sticky failure (not only at close) no opened batch stays in memory,
    and no helper thread can open another into a wiped buffer."""
    pt = plaintext_of(400 * F)
    message = bytearray(reference(pt))
    stride = F + REGULAR_FRAME_OVERHEAD
    body_start = len(message) - 400 * stride - FINAL_FRAME_OVERHEAD
    message[body_start + 350 * stride + REGULAR_FRAME_PREFIX] ^= 1
    source = RecordingSource(bytes(message))
    r = MessageReader(source, resolve_key=lambda h: KEY)
    with pytest.raises(AuthenticationError):
        read_all(r, 3 * F)
    assert join_io_threads() == []  # the read-ahead thread stopped with the failure, before close
    assert not any(bytes(buffer).strip(b"\0") for buffer in r._plain)
    assert not bytes(r._plaintext).strip(b"\0")
    r.close()


@pytest.mark.parametrize("fail", [False, True], ids=["mid-stream", "after a failure"])
def test_a_reader_freed_by_the_cycle_collector_closes_its_source(fail: bool, small_batches: None) -> None:
    """Attack finding F4, reader side: a failed reader is always in a cycle (its error's traceback)."""
    pt = plaintext_of(400 * F)
    message = bytearray(reference(pt))
    if fail:
        stride = F + REGULAR_FRAME_OVERHEAD
        message[len(message) - 400 * stride - FINAL_FRAME_OVERHEAD + 200 * stride + REGULAR_FRAME_PREFIX] ^= 1
    source = RecordingSource(bytes(message))
    r = MessageReader(source, resolve_key=lambda h: KEY)
    holder = Holder()
    holder.me, holder.stream = holder, r
    with contextlib.suppress(AuthenticationError):
        r.read(100 * F)
        r.read(100 * F)
    del r, holder
    gc.collect()
    assert join_io_threads() == []
    assert source.closed
    assert source.after_close == 0


# -- when to overlap --


def test_overlap_pays_only_for_io_calls_that_are_long_next_to_the_cipher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frames_module, "OVERLAP_MIN_SECONDS", SHIPPED_OVERLAP[0])
    monkeypatch.setattr(frames_module, "OVERLAP_SHARE", SHIPPED_OVERLAP[1])
    assert not frames_module.worth_overlapping(1e-6, 0.0)  # an in-memory sink: shorter than a hand-off
    assert not frames_module.worth_overlapping(100e-6, 400e-6)  # a small share of the cipher's time
    assert frames_module.worth_overlapping(200e-6, 150e-6)  # a file's page-cache write next to sealing it
    assert frames_module.worth_overlapping(5e-3, 150e-6)  # a network read


def test_one_slow_call_among_fast_ones_starts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frames_module, "OVERLAP_MIN_SECONDS", SHIPPED_OVERLAP[0])
    monkeypatch.setattr(frames_module, "OVERLAP_SHARE", SHIPPED_OVERLAP[1])
    monkeypatch.setattr(frames_module, "OVERLAP_EVIDENCE", 3)
    vote = frames_module.OverlapVote()
    fast, preempted = (1e-6, 150e-6), (5e-3, 150e-6)  # (I/O seconds, cipher seconds)
    assert [vote.slow(*call) for call in (preempted, fast, preempted, preempted, fast, preempted)] == [False] * 6
    assert [vote.slow(*call) for call in (fast, preempted, preempted, preempted)] == [False, False, False, True]


def test_a_thread_that_does_not_make_batches_faster_is_retired(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frames_module, "OVERLAP_TRIAL", 2)
    slow = (5e-3, 150e-6)
    for piped_pace, kept in ((2.0, False), (0.5, True)):
        vote = frames_module.OverlapVote()
        clock = 0.0
        for _ in range(3):  # three batches without the thread, one second each
            clock += 1.0
            vote.tick(1, now=clock)
        assert vote.slow(*slow)
        for _ in range(2):
            clock += piped_pace
            vote.tick(1, now=clock)
        assert vote.keep() is kept
        assert vote.slow(*slow) is kept  # a retired thread is never started again


@pytest.mark.parametrize("threads", [1, 2])
def test_a_writer_whose_trial_fails_writes_in_order_on_its_own_thread_again(
    threads: int, monkeypatch: pytest.MonkeyPatch, small_batches: None
) -> None:
    verdicts = iter([True, True, False])
    monkeypatch.setattr(frames_module.OverlapVote, "keep", lambda vote: next(verdicts, False))
    pt = plaintext_of(40 * F + 5)
    sink = ThreadSink()
    write_in_pieces(pt, [7, 5 * F, 3, 11 * F], sink, threads)
    assert bytes(sink.data) == reference(pt)
    assert sink.overlaps == 0
    behind = [i for i, name in enumerate(sink.threads) if name.startswith("envelope-write")]
    assert len(behind) == 2  # two batches written behind, then back here
    assert sink.threads[behind[-1] + 1 :] == ["MainThread"] * (len(sink.threads) - behind[-1] - 1)


def test_fast_io_never_starts_a_thread(monkeypatch: pytest.MonkeyPatch, small_batches: None) -> None:
    monkeypatch.setattr(frames_module, "OVERLAP_MIN_SECONDS", float("inf"))
    pt = plaintext_of(400 * F)
    sink = ThreadSink()
    write_in_pieces(pt, [5, 100 * F], sink)
    source = RecordingSource(bytes(sink.data))
    with MessageReader(source, resolve_key=lambda h: KEY) as r:
        assert read_all(r, 4 * F) == pt
    assert {*sink.threads, *source.threads} == {"MainThread"}
