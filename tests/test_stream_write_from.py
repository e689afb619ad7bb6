"""MessageWriter.write_from: a zero-extra-copy pump from any readinto source, same bytes as write()."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.hazmat import MessageWriter
from envelope.errors import ValidationError
from tests.test_format import CONTEXT, EDKS, KEY, MESSAGE_ID, MemorySink, ref_message


class ShortReads(io.RawIOBase):
    """A source whose readinto returns at most the next planned number of bytes."""

    def __init__(self, data: bytes, plan: list[int]) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._plan = plan or [len(data) or 1]
        self._i = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        limit = max(1, self._plan[self._i % len(self._plan)])
        self._i += 1
        n = min(len(buffer), limit, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def _writer(sink: MemorySink, frame_length: int, threads: int) -> MessageWriter:
    return MessageWriter(
        sink,
        data_key=KEY,
        message_id=MESSAGE_ID,
        encryption_context=CONTEXT,
        encrypted_data_keys=EDKS,
        frame_length=frame_length,
        threads=threads,
    )


@given(
    pt=st.binary(max_size=700),
    prefix=st.integers(0, 40),
    frame_length=st.sampled_from([16, 32, 64]),
    plan=st.lists(st.integers(1, 100), max_size=6),
    threads=st.sampled_from([1, 2]),
)
def test_write_from_produces_the_reference_message(
    pt: bytes, prefix: int, frame_length: int, plan: list[int], threads: int
) -> None:
    sink = MemorySink()
    w = _writer(sink, frame_length, threads)
    w.write(pt[:prefix])  # mixes with ordinary writes: a partial frame is continued
    assert w.write_from(ShortReads(pt[prefix:], plan)) == len(pt[prefix:])
    assert w.tell() == len(pt)
    w.close()
    assert sink.state == "committed"
    assert bytes(sink.data) == ref_message(KEY, MESSAGE_ID, CONTEXT, EDKS, frame_length, pt)


def test_write_from_refuses_sources_without_readinto_and_non_blocking_ones() -> None:
    sink = MemorySink()
    w = _writer(sink, 16, 1)
    with pytest.raises(ValidationError):
        w.write_from(object())  # type: ignore[arg-type]

    class NonBlocking(io.RawIOBase):
        def readinto(self, buffer: memoryview) -> None:  # type: ignore[override]
            return None

    sink2 = MemorySink()
    w2 = _writer(sink2, 16, 1)
    with pytest.raises(ValidationError):
        w2.write_from(NonBlocking())
    assert sink2.state == "aborted"  # errors are sticky and nothing is committed


def test_a_failing_source_aborts_the_message() -> None:
    class Broken(io.RawIOBase):
        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            raise OSError("disk on fire")

    sink = MemorySink()
    w = _writer(sink, 16, 1)
    with pytest.raises(OSError, match="disk on fire"):
        w.write_from(Broken())
    with pytest.raises(OSError):
        w.write(b"more")
    assert sink.state == "aborted"
