"""MessageWriter / MessageReader with threads >= 2: the same bytes as one thread, failures contained.

Batches are shrunk (BATCH_BYTES monkeypatched) so that tiny frames exercise
every threaded path quickly: the ring of buffered batches, direct writes and
reads split into one run per thread, and several such splits in one call.
"""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

import dataplane._frames as frames_module
from dataplane.format import read_header
from dataplane.hazmat import BufferSource, MessageReader, MessageWriter
from envelope.errors import AuthenticationError
from tests.test_format import EDKS, KEY, MESSAGE_ID, MemorySink, write_message

F = 16  # frame length of the fixed-size tests


def plaintext_of(n: int) -> bytes:
    return bytes((i * 13 + 5) % 251 for i in range(n))


class CopyingSource:
    """A source without `view_at`: the reader fetches into its own buffers."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    @property
    def size(self) -> int:
        return len(self._data)

    def readinto_at(self, offset: int, buf: memoryview) -> int:
        n = max(0, min(len(buf), len(self._data) - offset))
        buf[:n] = self._data[offset : offset + n]
        return n

    def close(self) -> None:
        pass


def open_reader(data: bytes, kind: str, threads: int) -> MessageReader:
    source = BufferSource(data) if kind == "view" else CopyingSource(data)
    return MessageReader(source, resolve_key=lambda h: KEY, threads=threads)


def encrypt(pt: bytes, frame_length: int, writes: list[int], threads: int, sink: MemorySink | None = None) -> bytes:
    sink = sink or MemorySink()
    with MessageWriter(
        sink,
        data_key=KEY,
        message_id=MESSAGE_ID,
        encryption_context={"k": "v"},
        encrypted_data_keys=EDKS,
        frame_length=frame_length,
        threads=threads,
    ) as w:
        pos = 0
        for size in writes:
            w.write(pt[pos : pos + size])
            pos += size
        w.write(pt[pos:])
    assert sink.state == "committed"
    return bytes(sink.data)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threaded batches of 4 * 40 bytes: 10 frames of 16 bytes, 3 of 48."""
    monkeypatch.setattr(frames_module, "BATCH_BYTES", 40)


@given(
    pt=st.binary(max_size=3000),
    frame_length=st.sampled_from([16, 32, 48]),
    batch_bytes=st.sampled_from([16, 40, 100]),
    writes=st.lists(st.integers(min_value=0, max_value=900), max_size=8),
    reads=st.lists(st.integers(min_value=1, max_value=900), max_size=8),
    threads=st.sampled_from([2, 3]),
    kind=st.sampled_from(["view", "copy"]),
)
def test_threads_give_the_same_bytes_and_plaintext(
    pt: bytes, frame_length: int, batch_bytes: int, writes: list[int], reads: list[int], threads: int, kind: str
) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(frames_module, "BATCH_BYTES", batch_bytes)
        single = encrypt(pt, frame_length, writes, 1)
        assert encrypt(pt, frame_length, writes, threads) == single
        r = open_reader(single, kind, threads)
        got = bytearray()
        for size in reads:
            buf = bytearray(size)
            got += buf[: r.readinto(buf)]
        got += r.read()
        assert bytes(got) == pt
        assert open_reader(single, kind, threads).read() == pt


@pytest.mark.parametrize("frame_length", [16, 48])
@pytest.mark.parametrize("writes", [[], [5], [3 * 16, 7], [16 * 16 + 1, 1]])
@pytest.mark.parametrize("threads", [2, 3, 4])
def test_long_runs_split_across_threads_stay_in_order(
    frame_length: int, writes: list[int], threads: int, small_batches: None
) -> None:
    pt = plaintext_of(60 * frame_length + 7)
    single = encrypt(pt, frame_length, writes, 1)
    assert encrypt(pt, frame_length, writes, threads) == single
    for kind in ("view", "copy"):
        buf = bytearray(len(pt))
        r = open_reader(single, kind, threads)
        assert r.readinto(buf) == len(pt)
        assert bytes(buf) == pt


@pytest.mark.parametrize("fail_on_write", [2, 3, 5, 9])
@pytest.mark.parametrize("threads", [2, 3])
def test_a_sink_failing_inside_a_threaded_write_aborts(fail_on_write: int, threads: int, small_batches: None) -> None:
    class FailingSink(MemorySink):
        writes = 0

        def write(self, data: memoryview) -> int:
            self.writes += 1
            if self.writes == fail_on_write:
                raise OSError("disk full")
            return super().write(data)

    sink = FailingSink()
    pt = bytearray(plaintext_of(100 * F))
    w = MessageWriter(
        sink,
        data_key=KEY,
        message_id=MESSAGE_ID,
        encryption_context={},
        encrypted_data_keys=EDKS,
        frame_length=F,
        threads=threads,
    )
    with pytest.raises(OSError, match="disk full") as info:
        w.write(pt[:5])
        w.write(pt[5:])  # direct runs split across the threads, many sink writes
    assert sink.state == "aborted"
    pt[:] = bytes(len(pt))  # nothing may still be sealing from the caller's buffer
    with pytest.raises(OSError) as again:
        w.write(b"x")
    assert again.value is info.value
    with pytest.raises(OSError):
        w.close()
    assert sink.state == "aborted"


@pytest.mark.parametrize("threads", [2, 3])
def test_a_worker_failing_to_seal_aborts(threads: int, small_batches: None, monkeypatch: pytest.MonkeyPatch) -> None:
    seal = frames_module.SealSlot.seal

    def seal_but_not_in_workers(self: frames_module.SealSlot, *args: object) -> memoryview:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("worker died")
        return seal(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(frames_module.SealSlot, "seal", seal_but_not_in_workers)
    sink = MemorySink()
    w = MessageWriter(
        sink,
        data_key=KEY,
        message_id=MESSAGE_ID,
        encryption_context={},
        encrypted_data_keys=EDKS,
        frame_length=F,
        threads=threads,
    )
    with pytest.raises(RuntimeError, match="worker died"):
        w.write(plaintext_of(40 * F))
    assert sink.state == "aborted"
    with pytest.raises(RuntimeError):
        w.close()
    assert sink.state == "aborted"


FRAMES = 40  # regular frames in the tampered message: several splits of several runs each


@pytest.mark.parametrize("bad", [0, 3, 9, 10, 17, 25, 39])
@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("kind", ["view", "copy"])
def test_a_bad_frame_inside_a_threaded_read_releases_nothing_of_it(
    bad: int, threads: int, kind: str, small_batches: None
) -> None:
    pt = plaintext_of(FRAMES * F + 5)
    msg = bytearray(write_message(pt, F))
    header_size = read_header(BufferSource(bytes(msg))).size
    msg[header_size + bad * (F + 32) + 20] ^= 0x01  # a ciphertext byte of frame `bad`
    tampered = bytes(msg)

    buf = bytearray(b"\xaa" * len(pt))
    r = open_reader(tampered, kind, threads)
    with pytest.raises(AuthenticationError) as info:
        r.readinto(buf)
    assert buf[bad * F : (bad + 1) * F] == bytes(F)
    for i in range(bad, FRAMES):
        assert buf[i * F : (i + 1) * F] != pt[i * F : (i + 1) * F], f"frame {i} released"
    with pytest.raises(AuthenticationError) as again:
        r.read(1)
    assert again.value is info.value

    with pytest.raises(AuthenticationError):
        open_reader(tampered, kind, threads).read()


def test_a_bad_frame_in_a_middle_run_wipes_the_runs_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cross-run wipe: later runs opened fine on other threads, but sit after the failure.

    With BATCH_BYTES = 40, THREAD_BATCHES = 4 and three threads a split covers 30 frames of 16
    bytes in three runs of 10 (frames 0-9 on the calling thread, 10-19 and
    20-29 on workers). Frame 15 is damaged: it wipes itself (the rest of its
    run is never opened), and the third run -- authentic, fully decrypted into the caller's
    buffer by its worker -- must be wiped by the failing split, or the
    caller's buffer would hold plaintext from after the damage.
    """
    monkeypatch.setattr(frames_module, "BATCH_BYTES", 40)
    monkeypatch.setattr(frames_module, "THREAD_BATCHES", 4)
    threads, bad = 3, 15
    assert frames_module.frames_per_batch(F, threads) == 10
    pt = plaintext_of(FRAMES * F + 5)
    msg = bytearray(write_message(pt, F))
    header_size = read_header(BufferSource(bytes(msg))).size
    msg[header_size + bad * (F + 32) + 20] ^= 0x01
    for kind in ("view", "copy"):
        buf = bytearray(b"\xaa" * len(pt))
        with pytest.raises(AuthenticationError):
            open_reader(bytes(msg), kind, threads).readinto(buf)
        assert buf[: 10 * F] == pt[: 10 * F]  # the first run verified before the failure was known
        assert buf[bad * F : (bad + 1) * F] == bytes(F)  # the bad frame wiped itself
        assert buf[(bad + 1) * F : 20 * F] == b"\xaa" * ((19 - bad) * F)  # the failing run stopped there
        assert buf[20 * F : 30 * F] == bytes(10 * F), f"{kind}: the run after the failing one was not wiped"
        assert buf[30 * F :] == b"\xaa" * (len(pt) - 30 * F)  # never reached
