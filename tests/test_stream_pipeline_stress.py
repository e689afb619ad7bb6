"""Every way a pipelined stream can end, many at once: each outcome is checked, no thread is left.

Eight threads each run a seeded sequence of writers and readers that end by
close, abort, an exception in the `with` block, a failing write on the I/O
thread, a failing read-ahead, a close in the middle of reading, or being
dropped unclosed. Only outcomes are asserted (committed bytes decrypt,
aborted sinks are aborted, sources are closed and never read after), never
timings; every join is bounded.
"""

from __future__ import annotations

import gc
import random
import threading

import pytest

import dataplane._frames as frames_module
import dataplane.format as format_module
from dataplane.hazmat import MessageReader
from envelope.errors import StorageError
from tests.test_format import KEY
from tests.test_stream_pipeline import (
    FailingSink,
    RecordingSource,
    ThreadSink,
    join_io_threads,
    new_writer,
    plaintext_of,
    read_all,
    reference,
)

F = 16
WORKERS = 8
STEPS = 12
ENDINGS = ["close", "abort", "raise", "write-fails", "drop", "read", "read-fails", "read-close-mid", "read-drop-mid"]


@pytest.fixture(autouse=True)
def pipelined(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frames_module, "OVERLAP_MIN_SECONDS", 0.0)
    monkeypatch.setattr(frames_module, "OVERLAP_SHARE", 0.0)
    monkeypatch.setattr(frames_module, "OVERLAP_EVIDENCE", 1)
    monkeypatch.setattr(frames_module, "BATCH_BYTES", 3 * F)
    monkeypatch.setattr(format_module, "SMALL_OBJECT_BYTES", 0)


class Run:
    """One worker's streams and what must hold once every thread has stopped."""

    def __init__(self, seed: int, message: bytes, pt: bytes) -> None:
        self.rng = random.Random(seed)
        self.message = message
        self.pt = pt
        self.dropped_sinks: list[ThreadSink] = []
        self.dropped_sources: list[RecordingSource] = []
        self.sources: list[RecordingSource] = []

    def step(self, ending: str) -> None:
        cut = self.rng.randrange(1, len(self.pt))
        if ending.startswith("read"):
            self.read(ending, cut)
        else:
            self.write(ending, cut)

    def write(self, ending: str, cut: int) -> None:
        sink: ThreadSink = FailingSink(self.rng.randrange(2, 8)) if ending == "write-fails" else ThreadSink()
        w = new_writer(sink)
        if ending == "close":
            with w:
                w.write(self.pt[:cut])
                w.write(self.pt[cut:])
            assert sink.state == "committed"
            assert bytes(sink.data) == self.message
        elif ending == "abort":
            w.write(self.pt[:cut])
            w.abort()
            assert sink.state == "aborted"
        elif ending == "raise":
            with pytest.raises(KeyError), w:
                w.write(self.pt[:cut])
                raise KeyError(cut)
            assert sink.state == "aborted"
        elif ending == "write-fails":
            with pytest.raises(OSError, match="disk full"), w:
                for i in range(0, len(self.pt), 7):
                    w.write(self.pt[i : i + 7])
            assert sink.state == "aborted"
        else:
            w.write(self.pt[:cut])
            self.dropped_sinks.append(sink)
            del w
        assert sink.overlaps == 0

    def read(self, ending: str, cut: int) -> None:
        fail_at = self.rng.randrange(4096, len(self.message)) if ending == "read-fails" else None
        source = RecordingSource(self.message, fail_at=fail_at)
        self.sources.append(source)
        r = MessageReader(source, resolve_key=lambda h: KEY)
        if ending == "read":
            with r:
                assert read_all(r, self.rng.choice([F, 3 * F, 10 * F])) == self.pt
        elif ending == "read-fails":
            with r, pytest.raises(StorageError):
                read_all(r, 4 * F)
        elif ending == "read-close-mid":
            assert r.read(cut) == self.pt[:cut]
            r.close()
        else:
            assert r.read(cut) == self.pt[:cut]
            self.dropped_sources.append(source)
            del r

    def check_after_stop(self) -> None:
        assert all(sink.state == "aborted" and sink.overlaps == 0 for sink in self.dropped_sinks)
        assert all(s.closed and s.after_close == 0 and s.overlaps == 0 for s in self.sources)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_ending_under_many_threads(seed: int) -> None:
    pt = plaintext_of(400 * F + 5)
    message = reference(pt)
    runs = [Run(seed * 1000 + k, message, pt) for k in range(WORKERS)]
    failures: list[BaseException] = []

    def work(run: Run) -> None:
        try:
            for _ in range(STEPS):
                run.step(run.rng.choice(ENDINGS))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    workers = [threading.Thread(target=work, args=(run,), name=f"stress-{k}") for k, run in enumerate(runs)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(120)
    assert not [t for t in workers if t.is_alive()], "a worker did not finish"
    assert failures == []
    gc.collect()
    assert join_io_threads() == []
    for run in runs:
        run.check_after_stop()
    assert sum(len(run.dropped_sinks) + len(run.sources) for run in runs) > 0
