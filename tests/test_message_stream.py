"""`decrypt_message` on a non-seekable stream: parsed as it arrives, refused early, never spooled.

Streams here are generator-backed objects with `readinto` and no `seek`
that count every byte handed out, so each test can state how much of an
endless or hostile input the reader consumed before it refused.
"""

from __future__ import annotations

import itertools
import os
import struct
import threading
import tracemalloc
from collections.abc import Iterable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.format import MESSAGE_ID_LENGTH, Limits, read_header
from dataplane.hazmat import BufferSource, MessageReader, SequentialMessageReader
from dataplane.message import decrypt_message
from envelope.errors import AuthenticationError, EnvelopeError, FormatError, ValidationError
from tests.test_format import CONTEXT, EDKS, KEY, MESSAGE_ID, ref_message, write_message

F = 64


def plaintext_of(n: int) -> bytes:
    return bytes((i * 7 + 3) % 251 for i in range(n))


class CountingStream:
    """A pipe-like, non-seekable binary stream over an iterable of chunks (possibly endless)."""

    def __init__(self, chunks: Iterable[bytes], *, max_read: int | None = None) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._pending = memoryview(b"")
        self._max_read = max_read
        self.consumed = 0
        self.largest_request = 0
        self.closed = False

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:
        self.largest_request = max(self.largest_request, len(buffer))
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending), self._max_read or len(buffer))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.consumed += n
        return n

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the reader must use readinto (no unbounded read)")

    def close(self) -> None:
        self.closed = True


def endless(pattern: bytes) -> Iterator[bytes]:
    return itertools.repeat(pattern * (4096 // len(pattern) + 1))


def stream_of(message: bytes, *, max_read: int | None = None, then: Iterable[bytes] = ()) -> CountingStream:
    return CountingStream(itertools.chain([message], then), max_read=max_read)


def resolve(_header: object) -> bytes:
    return KEY


# --- refused early, after at most the limits ---------------------------------------------------


def test_an_endless_stream_of_zeros_is_refused_after_two_bytes() -> None:
    stream = CountingStream(endless(b"\x00"))
    with pytest.raises(FormatError, match="unknown version byte 0x00"):
        decrypt_message(stream, resolve)
    assert stream.consumed <= 2


def test_a_base64_stream_still_gets_the_hint() -> None:
    stream = CountingStream(endless(b"AgR4"))
    with pytest.raises(FormatError, match="base64"):
        decrypt_message(stream, resolve)
    assert stream.consumed <= 2


@pytest.mark.parametrize(
    ("junk", "bound"),
    [
        (b"\x00", 4),  # not sequence number 1
        (b"\xa5", 4),
        (struct.pack(">I", 1) + b"\x00" * 60, 4 + 12 + F + 16),  # sequence number 1, then a bad frame
        (struct.pack(">II", 0xFFFFFFFF, 1) + bytes(12) + struct.pack(">I", 0xFFFFFFF0), 24),  # huge final length
        (struct.pack(">II", 0xFFFFFFFF, 1) + bytes(12) + struct.pack(">I", 5), 24 + 5 + 16 + 40),
    ],
)
def test_a_valid_header_then_endless_junk_is_refused_within_one_frame(junk: bytes, bound: int) -> None:
    header = read_header(BufferSource(write_message(b"", F))).to_bytes()
    stream = CountingStream(itertools.chain([header], endless(junk)))
    with pytest.raises(AuthenticationError):
        decrypt_message(stream, resolve).read()
    assert stream.consumed <= len(header) + bound


def test_a_non_framed_header_then_endless_junk_is_refused_within_the_non_framed_limit() -> None:
    message = ref_message(KEY, MESSAGE_ID, {}, EDKS, 0, b"", non_framed=True)
    header = message[: read_header(BufferSource(message)).size]
    limits = Limits(max_non_framed_size=1000)
    too_long = CountingStream(itertools.chain([header, bytes(12), struct.pack(">Q", 1001)], endless(b"\x01")))
    with pytest.raises(FormatError, match="non-framed"):
        decrypt_message(too_long, resolve, limits=limits).read()
    assert too_long.consumed == len(header) + 20
    in_limit = CountingStream(itertools.chain([header, bytes(12), struct.pack(">Q", 1000)], endless(b"\x01")))
    with pytest.raises(AuthenticationError):
        decrypt_message(in_limit, resolve, limits=limits).read()
    assert in_limit.consumed <= len(header) + 20 + 1000 + 16


def test_hostile_header_lengths_are_refused_within_the_header_limit() -> None:
    limits = Limits(max_header_size=4096)
    # version, suite, id, empty context, 64 EDKs whose fields claim 65535 bytes each, then endless junk
    prefix = b"\x02\x04\x78" + bytes(MESSAGE_ID_LENGTH) + b"\x00\x00" + struct.pack(">H", 64)
    stream = CountingStream(itertools.chain([prefix], endless(b"\xff")))
    with pytest.raises(EnvelopeError) as info:
        decrypt_message(stream, resolve, limits=limits)
    assert isinstance(info.value, FormatError | AuthenticationError)
    assert stream.consumed <= limits.max_header_size
    assert stream.largest_request <= limits.max_header_size


def test_a_frame_length_over_the_limit_is_refused_before_any_body_byte() -> None:
    message = write_message(plaintext_of(300), F)
    header_size = read_header(BufferSource(message)).size
    stream = stream_of(message, then=endless(b"\x00"))
    with pytest.raises(FormatError, match="frame length"):
        decrypt_message(stream, resolve, limits=Limits(max_frame_length=F // 2))
    assert stream.consumed <= header_size


def test_a_wrong_key_is_refused_after_the_header() -> None:
    message = write_message(plaintext_of(300), F)
    stream = stream_of(message, then=endless(b"\x00"))
    with pytest.raises(AuthenticationError):
        decrypt_message(stream, lambda _h: bytes(32))
    assert stream.consumed == read_header(BufferSource(message)).size


# --- a valid message streams through --------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, F - 1, F, F + 1, 3 * F, 3 * F + 5])
@pytest.mark.parametrize("max_read", [None, 1, 7])
def test_a_valid_message_decrypts_through_a_pipe_like_stream(size: int, max_read: int | None) -> None:
    pt = plaintext_of(size)
    message = write_message(pt, F)
    stream = stream_of(message, max_read=max_read)
    reader = decrypt_message(stream, resolve)
    assert isinstance(reader, SequentialMessageReader)
    assert not reader.seekable() and reader.readable() and not reader.writable()
    assert dict(reader.header.encryption_context) == CONTEXT
    assert reader.read() == pt
    assert reader.read() == b""
    assert reader.tell() == size
    assert stream.consumed == len(message)
    assert stream.largest_request <= F + 32


@pytest.mark.parametrize("reads", [[1], [5, 100], [F], [F + 1, 3], [2 * F + 7]])
def test_reads_of_any_size_return_the_plaintext_in_order(reads: list[int]) -> None:
    pt = plaintext_of(5 * F + 9)
    reader = decrypt_message(stream_of(write_message(pt, F)), resolve)
    got = bytearray()
    for size in itertools.islice(itertools.cycle(reads), 1000):
        if size % 2:
            chunk = reader.read(size)
        else:
            buf = bytearray(size)
            chunk = bytes(buf[: reader.readinto(buf)])
        if not chunk:
            break
        got += chunk
    assert bytes(got) == pt
    reader2 = decrypt_message(stream_of(write_message(pt, F)), resolve)
    assert reader2.read1() == pt[:F]  # one frame at most
    assert reader2.read1(3) == pt[F : F + 3]
    assert reader2.readinto1(bytearray(1000)) == F - 3


def test_a_huge_read_size_allocates_nothing_ahead() -> None:
    pt = plaintext_of(3 * F + 1)
    reader = decrypt_message(stream_of(write_message(pt, F)), resolve)
    assert reader.read(1 << 60) == pt
    assert reader.read(1 << 60) == b""


def test_other_shapes_the_format_allows_are_read() -> None:
    pt = plaintext_of(3 * F)
    full_final = ref_message(KEY, MESSAGE_ID, CONTEXT, EDKS, F, pt, full_final_frame=True)
    non_framed = ref_message(KEY, MESSAGE_ID, CONTEXT, EDKS, 0, pt, non_framed=True)
    required = ref_message(KEY, MESSAGE_ID, {}, EDKS, F, pt, extra_aad=b"\x00\x01\x00\x01k\x00\x01v")
    assert decrypt_message(stream_of(full_final), resolve).read() == pt
    assert decrypt_message(stream_of(non_framed), resolve).read() == pt
    assert decrypt_message(stream_of(required), resolve, required_encryption_context={"k": "v"}).read() == pt
    with pytest.raises(AuthenticationError):
        decrypt_message(stream_of(required), resolve)


def test_buffering_is_bounded_by_the_frame_not_the_message() -> None:
    frame_length = 4096
    pt = plaintext_of(256 * frame_length + 100)  # 1 MiB
    message = write_message(pt, frame_length)
    out = bytearray(len(pt))
    tracemalloc.start()
    try:
        stream = stream_of(message, max_read=1000)
        reader = decrypt_message(stream, resolve)
        view = memoryview(out)
        done = 0
        for _ in range(10_000):
            n = reader.readinto(view[done : done + 5000])
            if not n:
                break
            done += n
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert bytes(out) == pt
    assert peak < 8 * frame_length, f"peak {peak} bytes for a {len(message)}-byte message"


def test_a_real_pipe_with_a_writer_thread(tmp_path: object) -> None:
    pt = plaintext_of(50 * F + 3)
    message = write_message(pt, F)
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb") as w:
            for i in range(0, len(message), 500):
                w.write(message[i : i + 500])

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        with os.fdopen(read_fd, "rb") as r:
            assert not r.seekable()
            assert decrypt_message(r, resolve).read() == pt
    finally:
        feeder.join(timeout=60)
    assert not feeder.is_alive()


# --- integrity through a stream ------------------------------------------------------------------


def test_every_bit_flip_is_refused_and_nothing_of_the_damaged_frame_or_after_is_released() -> None:
    pt = plaintext_of(3 * 16 + 5)
    message = write_message(pt, 16)
    header_size = read_header(BufferSource(message)).size
    for offset in range(len(message)):
        for bit in (0x01, 0x80):
            damaged = bytearray(message)
            damaged[offset] ^= bit
            released = bytearray()
            with pytest.raises(EnvelopeError) as info:
                reader = decrypt_message(stream_of(bytes(damaged)), resolve)
                for _ in range(100):
                    chunk = reader.read(16)
                    if not chunk:
                        break
                    released += chunk
            if offset >= header_size:
                assert type(info.value) is AuthenticationError
                frame = (offset - header_size) // (16 + 32)
                assert len(released) <= frame * 16, (offset, bit)
            assert bytes(released) == pt[: len(released)]


def test_truncation_anywhere_is_refused() -> None:
    pt = plaintext_of(3 * 16 + 5)
    message = write_message(pt, 16)
    for length in range(len(message)):
        with pytest.raises(EnvelopeError):
            decrypt_message(stream_of(message[:length]), resolve).read()


@pytest.mark.parametrize("trailing", [b"\x00", b"x" * 100])
@pytest.mark.parametrize("size", [0, 5, 16])
def test_a_byte_after_the_final_frame_fails_and_the_final_frame_is_not_released(trailing: bytes, size: int) -> None:
    pt = plaintext_of(size)
    reader = decrypt_message(stream_of(write_message(pt, 16), then=[trailing]), resolve)
    released = bytearray()
    with pytest.raises(AuthenticationError) as info:
        for _ in range(10):
            released += reader.read(16)
    assert bytes(released) == pt[: (size // 16) * 16]  # the regular frames only
    with pytest.raises(AuthenticationError) as again:
        reader.read(1)
    assert again.value is info.value  # sticky


def test_the_stream_belongs_to_the_caller() -> None:
    stream = stream_of(write_message(b"abc", 16))
    reader = decrypt_message(stream, resolve)
    reader.close()
    assert not stream.closed
    with pytest.raises(ValueError, match="closed"):
        reader.read()


def test_a_non_blocking_or_readinto_less_stream_is_refused() -> None:
    class NonBlocking(CountingStream):
        def readinto(self, buffer: memoryview) -> int | None:  # type: ignore[override]
            return None

    class ReadOnly:
        def seekable(self) -> bool:
            return False

        def read(self, size: int = -1) -> bytes:
            return b""

    with pytest.raises(ValidationError, match="blocking"):
        decrypt_message(NonBlocking([]), resolve)
    with pytest.raises(ValidationError, match="readinto"):
        decrypt_message(ReadOnly(), resolve)


def test_seekable_inputs_still_get_the_random_access_reader() -> None:
    import io

    message = write_message(plaintext_of(100), 16)
    for source in (message, io.BytesIO(message)):
        reader = decrypt_message(source, resolve)
        assert isinstance(reader, MessageReader)
        assert reader.seekable()


def _outcome(read: object) -> object:
    try:
        return read()  # type: ignore[operator]
    except EnvelopeError as error:
        return type(error)


@given(
    edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)), max_size=3),
    cut=st.integers(min_value=0, max_value=400),
    extra=st.binary(max_size=3),
    size=st.integers(min_value=0, max_value=70),
    non_framed=st.booleans(),
)
def test_the_stream_reader_agrees_with_the_random_access_reader(
    edits: list[tuple[int, int]], cut: int, extra: bytes, size: int, non_framed: bool
) -> None:
    """On mutated messages: the same plaintext, or the same error type, from both readers.

    One difference is by design: a damaged non-framed length field. The
    random-access reader computes the content length from the object size and
    finds the stored one differs (`AuthenticationError`); a stream has no
    size, so a stored length over `max_non_framed_size` is refused as over
    the limit (`FormatError`) before anything that long is read.
    """
    pt = plaintext_of(size)
    if non_framed:
        message = bytearray(ref_message(KEY, MESSAGE_ID, CONTEXT, EDKS, 0, pt, non_framed=True))
    else:
        message = bytearray(write_message(pt, 16))
    for offset, xor in edits:
        message[offset % len(message)] ^= xor
    data = bytes(message[: max(0, len(message) - cut % 8)]) + extra
    random_access = _outcome(lambda: decrypt_message(data, resolve).read())
    sequential = _outcome(lambda: decrypt_message(stream_of(data, max_read=13), resolve).read())
    if non_framed and (sequential, random_access) == (FormatError, AuthenticationError):
        return
    assert sequential == random_access
