"""MessageWriter / MessageReader: round trips, random access, tampering, lifecycle.

In-memory sinks and sources only; the reference encoder of test_format is
the independent oracle for the bytes the writer produces.
"""

from __future__ import annotations

import array
import gc
import io
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

import dataplane._frames as frames_module
import dataplane._writer as writer_module
from dataplane.format import EncryptedDataKey, MessageHeader, read_header
from dataplane.hazmat import BufferSource, MessageReader, MessageWriter
from envelope.datakey import DataKey
from envelope.errors import AuthenticationError, FormatError, ValidationError
from tests.test_format import CONTEXT, EDKS, KEY, MESSAGE_ID, MemorySink, ref_context, ref_message, write_message

FRAME_LENGTHS = [16, 32, 64]


class CopyingSource:
    """A source without `view_at` (the reader copies into its own buffer), with short reads."""

    def __init__(self, data: bytes, *, max_read: int | None = None) -> None:
        self._data = data
        self._max_read = max_read
        self.closed = False

    @property
    def size(self) -> int:
        return len(self._data)

    def readinto_at(self, offset: int, buf: memoryview) -> int:
        n = max(0, min(len(buf), len(self._data) - offset, self._max_read or len(buf)))
        buf[:n] = self._data[offset : offset + n]
        return n

    def close(self) -> None:
        self.closed = True


class ShrunkSource(CopyingSource):
    """Claims `size` bytes but the object ends earlier (it changed under the reader)."""

    def __init__(self, data: bytes, claimed: int) -> None:
        super().__init__(data)
        self._claimed = claimed

    @property
    def size(self) -> int:
        return self._claimed


def make_source(data: bytes, kind: str) -> BufferSource | CopyingSource:
    return BufferSource(data) if kind == "view" else CopyingSource(data, max_read=7 if kind == "short" else None)


def open_reader(data: bytes, kind: str = "view", threads: int = 1, **kw: object) -> MessageReader:
    return MessageReader(make_source(data, kind), resolve_key=lambda h: KEY, threads=threads, **kw)  # type: ignore[arg-type]


def plaintext_of(n: int) -> bytes:
    return bytes((i * 7 + 3) % 251 for i in range(n))


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of two or three small frames, so tests exercise many slots and the thread ring."""
    monkeypatch.setattr(frames_module, "BATCH_BYTES", 100)


# --- round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("frame_length", FRAME_LENGTHS)
@pytest.mark.parametrize("size_kind", ["0", "1", "F-1", "F", "F+1", "3F", "3F+5"])
@pytest.mark.parametrize("threads", [1, 2])
def test_round_trip_at_the_edges(frame_length: int, size_kind: str, threads: int, small_batches: None) -> None:
    f = frame_length
    n = {"0": 0, "1": 1, "F-1": f - 1, "F": f, "F+1": f + 1, "3F": 3 * f, "3F+5": 3 * f + 5}[size_kind]
    pt = plaintext_of(n)
    msg = write_message(pt, frame_length, threads=threads)
    assert msg == ref_message(KEY, MESSAGE_ID, CONTEXT, EDKS, frame_length, pt)
    for kind in ("view", "copy", "short"):
        assert open_reader(msg, kind, threads).read() == pt
        buf = bytearray(n + 3)
        r = open_reader(msg, kind, threads)
        assert r.readinto(buf) == n
        assert buf[:n] == pt
        assert r.read() == b""
        assert r.seek(0, io.SEEK_END) == n


@pytest.mark.parametrize("chunk", [1, 5, 16, 17, 40])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batches", ["default", "small"])
@pytest.mark.parametrize("n", [0, 15, 16, 100, 160])
def test_small_writes_gather_into_frames(
    chunk: int, threads: int, batches: str, n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if batches == "small":
        monkeypatch.setattr(frames_module, "BATCH_BYTES", 100)
    pt = plaintext_of(n)
    sink = MemorySink()
    with _writer(sink, threads=threads) as w:
        for i in range(0, n, chunk):
            w.write(pt[i : i + chunk])
        if n > 40:
            w.write(pt[:0])
    assert bytes(sink.data) == ref_message(KEY, MESSAGE_ID, {}, EDKS, 16, pt)


def test_multiple_of_the_frame_length_ends_with_an_empty_final_frame() -> None:
    msg = write_message(plaintext_of(32), 16)
    header = read_header(BufferSource(msg))
    body = msg[header.size :]
    assert len(body) == 2 * (16 + 32) + 40
    assert body[-40:-36] == b"\xff\xff\xff\xff"
    assert body[-36:-32] == (3).to_bytes(4, "big")
    assert body[-20:-16] == bytes(4)  # content length 0


write_plan = st.lists(st.integers(min_value=0, max_value=100), max_size=12)
read_plan = st.lists(st.tuples(st.sampled_from(["read", "read1", "readinto", "readinto1"]), st.integers(-1, 100)))


@given(
    pt=st.binary(max_size=400),
    frame_length=st.sampled_from([16, 32, 48, 128]),
    writes=write_plan,
    reads=read_plan,
    threads=st.sampled_from([1, 2, 3]),
    kind=st.sampled_from(["view", "copy", "short"]),
)
def test_round_trip_with_any_write_and_read_chunking(
    pt: bytes, frame_length: int, writes: list[int], reads: list[tuple[str, int]], threads: int, kind: str
) -> None:
    sink = MemorySink()
    w = MessageWriter(
        sink,
        data_key=KEY,
        message_id=MESSAGE_ID,
        encryption_context=CONTEXT,
        encrypted_data_keys=EDKS,
        frame_length=frame_length,
        threads=threads,
    )
    pos = 0
    for size in writes:
        chunk = bytearray(pt[pos : pos + size])
        assert w.write(chunk) == len(chunk)
        chunk[:] = bytes(len(chunk))  # the writer must not hold on to the caller's buffer
        pos += size
    w.write(memoryview(pt)[pos:])
    assert w.tell() == len(pt)
    w.close()
    assert sink.state == "committed"
    assert bytes(sink.data) == ref_message(KEY, MESSAGE_ID, CONTEXT, EDKS, frame_length, pt)

    r = open_reader(bytes(sink.data), kind, threads)
    got = bytearray()
    for op, size in reads:
        if op in ("read", "read1"):
            got += getattr(r, op)(size)
        else:
            buf = bytearray(max(size, 0))
            n = getattr(r, op)(buf)
            got += buf[:n]
    got += r.read()
    assert bytes(got) == pt


@pytest.mark.usefixtures("small_batches")
@given(
    pt=st.binary(max_size=600),
    frame_length=st.sampled_from([16, 32]),
    writes=write_plan,
)
def test_threads_write_exactly_the_same_bytes(pt: bytes, frame_length: int, writes: list[int]) -> None:
    outputs = []
    for threads in (1, 2, 4):
        sink = MemorySink()
        with MessageWriter(
            sink,
            data_key=KEY,
            message_id=MESSAGE_ID,
            encryption_context={},
            encrypted_data_keys=EDKS,
            frame_length=frame_length,
            threads=threads,
        ) as w:
            pos = 0
            for size in writes:
                w.write(pt[pos : pos + size])
                pos += size
            w.write(pt[pos:])
        outputs.append(bytes(sink.data))
    assert outputs[0] == outputs[1] == outputs[2]


seek_ops = st.lists(
    st.one_of(
        st.tuples(st.just("seek"), st.integers(0, 500), st.just(io.SEEK_SET)),
        st.tuples(st.just("seek"), st.integers(-200, 200), st.just(io.SEEK_CUR)),
        st.tuples(st.just("seek"), st.integers(-300, 50), st.just(io.SEEK_END)),
        st.tuples(st.sampled_from(["read", "read1", "readinto", "tell"]), st.integers(-1, 150), st.just(0)),
    ),
    max_size=15,
)


@pytest.mark.usefixtures("small_batches")
@given(
    n=st.integers(0, 400),
    frame_length=st.sampled_from([16, 32, 64]),
    ops=seek_ops,
    threads=st.sampled_from([1, 2]),
    kind=st.sampled_from(["view", "copy"]),
)
def test_seeks_and_reads_behave_like_bytesio(
    n: int, frame_length: int, ops: list[tuple[str, int, int]], threads: int, kind: str
) -> None:
    pt = plaintext_of(n)
    model = io.BytesIO(pt)
    r = open_reader(write_message(pt, frame_length), kind, threads)
    for op, arg, whence in ops:
        if op == "seek":
            target = {io.SEEK_SET: arg, io.SEEK_CUR: model.tell() + arg, io.SEEK_END: n + arg}[whence]
            if target < 0:
                with pytest.raises(ValueError):
                    r.seek(arg, whence)
                continue
            assert r.seek(arg, whence) == model.seek(arg, whence)
        elif op == "tell":
            assert r.tell() == model.tell()
        elif op == "readinto":
            a, b = bytearray(max(arg, 0)), bytearray(max(arg, 0))
            assert r.readinto(a) == model.readinto(b)
            assert a == b
        elif op == "read1":
            # read1 may return less than BytesIO (it stops at a frame boundary) but never other bytes.
            start = model.tell()
            chunk = r.read1(arg)
            assert chunk == pt[start : start + len(chunk)]
            assert chunk or start >= n or arg == 0
            model.seek(start + len(chunk))
        else:
            assert r.read(arg) == model.read(arg)
    assert r.read() == model.read()


def test_readinto_accepts_any_contiguous_buffer() -> None:
    pt = plaintext_of(100)
    r = open_reader(write_message(pt, 16))
    target = array.array("I", bytes(40))
    assert r.readinto(target) == 40
    assert target.tobytes() == pt[:40]
    assert r.readinto1(memoryview(bytearray(50))) == 8  # stops at the end of frame 3


def test_data_key_holders_are_accepted() -> None:
    pt = plaintext_of(50)
    sink = MemorySink()
    with MessageWriter(
        sink,
        data_key=DataKey(KEY, "arn:test"),
        message_id=MESSAGE_ID,
        encryption_context={},
        encrypted_data_keys=EDKS,
        frame_length=16,
    ) as w:
        w.write(pt)
    r = MessageReader(BufferSource(bytes(sink.data)), resolve_key=lambda h: DataKey(KEY, "arn:test"))
    assert r.read() == pt


# --- messages our writer never produces ----------------------------------------------------


@pytest.mark.parametrize("frame_length", [1, 7, 100])
def test_any_frame_length_is_read(frame_length: int) -> None:
    pt = plaintext_of(250)
    msg = ref_message(KEY, MESSAGE_ID, {}, EDKS, frame_length, pt)
    assert open_reader(msg).read() == pt
    r = open_reader(msg, "copy")
    r.seek(123)
    assert r.read(10) == pt[123:133]


@pytest.mark.parametrize("n", [16, 48])
def test_full_length_final_frame_is_accepted(n: int) -> None:
    pt = plaintext_of(n)
    msg = ref_message(KEY, MESSAGE_ID, {}, EDKS, 16, pt, full_final_frame=True)
    assert msg != ref_message(KEY, MESSAGE_ID, {}, EDKS, 16, pt)
    for kind in ("view", "copy"):
        r = open_reader(msg, kind)
        assert r.plaintext_size() == n
        assert r.read() == pt


@pytest.mark.parametrize("n", [0, 1, 1000])
@pytest.mark.parametrize("kind", ["view", "copy"])
def test_non_framed_messages_are_read(n: int, kind: str) -> None:
    pt = plaintext_of(n)
    msg = ref_message(KEY, MESSAGE_ID, CONTEXT, EDKS, 0, pt, non_framed=True)
    r = open_reader(msg, kind)
    assert r.header.content_type == 1
    assert r.read(10) == pt[:10]
    r.seek(n // 2)
    assert r.read() == pt[n // 2 :]
    assert r.seek(0, io.SEEK_END) == n


def test_non_framed_stored_length_must_match_the_object() -> None:
    msg = bytearray(ref_message(KEY, MESSAGE_ID, {}, EDKS, 0, plaintext_of(100), non_framed=True))
    header_size = read_header(BufferSource(bytes(msg))).size
    msg[header_size + 12 + 7] ^= 1  # low byte of the u64 content length
    with pytest.raises(AuthenticationError):
        open_reader(bytes(msg)).read()


def test_non_framed_releases_nothing_before_its_single_tag_verifies() -> None:
    pt = plaintext_of(1000)
    msg = bytearray(ref_message(KEY, MESSAGE_ID, {}, EDKS, 0, pt, non_framed=True))
    msg[-1] ^= 1  # the one tag, at the very end
    r = open_reader(bytes(msg))
    with pytest.raises(AuthenticationError):
        r.read(1)
    buf = bytearray(b"\xaa" * 1000)
    with pytest.raises(AuthenticationError):
        open_reader(bytes(msg)).readinto(buf)
    assert buf == bytes(1000)  # wiped, not the unverified plaintext


# --- tampering ----------------------------------------------------------------------------


def _read_all(msg: bytes, kind: str = "view", threads: int = 1) -> bytes:
    return open_reader(msg, kind, threads).read()


def _small_message() -> tuple[bytes, bytes, int]:
    pt = plaintext_of(40)
    msg = write_message(pt, 16)
    return pt, msg, read_header(BufferSource(msg)).size


def test_any_bit_flip_anywhere_is_rejected() -> None:
    _, msg, header_size = _small_message()
    for i in range(len(msg)):
        tampered = bytearray(msg)
        tampered[i] ^= 1 << (i % 8)
        expected = AuthenticationError if i >= header_size else (AuthenticationError, FormatError)
        with pytest.raises(expected):
            _read_all(bytes(tampered))


def _field_offsets(msg: bytes) -> dict[str, int]:
    header = read_header(BufferSource(msg))
    ctx = ref_context(CONTEXT)
    edk_start = 3 + 32 + 2 + len(ctx) + 2
    provider = len(EDKS[0].provider_id)
    info = len(EDKS[0].provider_info)
    return {
        "message id": 10,
        "context value": 3 + 32 + 2 + len(ctx) - 1,
        "provider id": edk_start + 2,
        "provider info": edk_start + 2 + provider + 2 + 5,
        "EDK ciphertext": edk_start + 2 + provider + 2 + info + 2 + 1,
        "frame length": header.size - 16 - 32 - 1,
        "commitment key": header.size - 20,
        "header tag": header.size - 1,
        "first frame sequence number": header.size + 3,
        "first frame IV": header.size + 6,
        "first frame ciphertext": header.size + 20,
        "first frame tag": header.size + 16 + 16 + 3,
        "final frame marker": len(msg) - (40 + 8),
        "final frame content length": len(msg) - (40 + 8) + 22,
        "final frame tag": len(msg) - 1,
    }


@pytest.mark.parametrize("field", list(_field_offsets(_small_message()[1])))
def test_bit_flips_in_each_field_are_authentication_errors(field: str) -> None:
    _, msg, _ = _small_message()
    tampered = bytearray(msg)
    tampered[_field_offsets(msg)[field]] ^= 0x01
    for kind in ("view", "copy"):
        with pytest.raises(AuthenticationError) as info:
            _read_all(bytes(tampered), kind)
        assert str(info.value) == AuthenticationError.MESSAGE


def test_truncation_at_any_byte_is_rejected() -> None:
    _, msg, _ = _small_message()
    for cut in range(len(msg)):
        with pytest.raises(AuthenticationError):
            _read_all(msg[:cut])


@pytest.mark.parametrize("extra", [1, 8, 16, 40, 48, 100])
def test_trailing_bytes_are_rejected(extra: int) -> None:
    _, msg, _ = _small_message()
    with pytest.raises(AuthenticationError):
        _read_all(msg + bytes(extra))
    with pytest.raises(AuthenticationError):
        _read_all(msg + msg[-extra:])


def _frames(msg: bytes, frame_length: int) -> tuple[bytes, list[bytes], bytes]:
    size = read_header(BufferSource(msg)).size
    body = msg[size:]
    stride = frame_length + 32
    count = (len(body) - 40 - (len(body) - 40) % stride) // stride
    return msg[:size], [body[i * stride : (i + 1) * stride] for i in range(count)], body[count * stride :]


@pytest.mark.parametrize(
    "edit",
    ["swap", "duplicate", "drop", "drop final", "foreign frame", "final from elsewhere", "regular as final"],
)
def test_reordered_duplicated_dropped_or_foreign_frames_are_rejected(edit: str) -> None:
    pt = plaintext_of(5 * 16 + 4)
    msg = write_message(pt, 16)
    header, frames, final = _frames(msg, 16)
    other = write_message(pt, 16, message_id=bytes(32))
    _, other_frames, other_final = _frames(other, 16)
    if edit == "swap":
        frames[1], frames[2] = frames[2], frames[1]
    elif edit == "duplicate":
        frames.insert(2, frames[1])
    elif edit == "drop":
        del frames[2]
    elif edit == "drop final":
        final = b""
    elif edit == "foreign frame":
        frames[2] = other_frames[2]
    elif edit == "final from elsewhere":
        final = other_final
    else:
        final = frames.pop()
    tampered = header + b"".join(frames) + final
    for kind in ("view", "copy"):
        with pytest.raises(AuthenticationError):
            _read_all(tampered, kind)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", ["view", "copy"])
def test_frames_before_a_bad_frame_come_out_and_nothing_of_it_does(
    threads: int, kind: str, small_batches: None
) -> None:
    f, bad = 16, 5
    pt = plaintext_of(10 * f + 3)
    msg = bytearray(write_message(pt, f))
    header_size = read_header(BufferSource(bytes(msg))).size
    msg[header_size + bad * (f + 32) + 20] ^= 0x80  # a ciphertext byte of frame `bad`
    msg_bytes = bytes(msg)

    # Sequential reads: every frame before the bad one is released, then the error, sticky.
    r = open_reader(msg_bytes, kind, threads)
    for i in range(bad):
        assert r.read(f) == pt[i * f : (i + 1) * f]
    with pytest.raises(AuthenticationError) as info:
        r.read(1)
    for call in (lambda: r.read(1), lambda: r.seek(0), r.tell, r.plaintext_size, lambda: r.readinto(bytearray(3))):
        with pytest.raises(AuthenticationError) as again:
            call()
        assert again.value is info.value

    # One large readinto straight into the caller's buffer: the bad frame's region is wiped and
    # no later frame's plaintext is left behind.
    buf = bytearray(b"\xaa" * len(pt))
    with pytest.raises(AuthenticationError):
        open_reader(msg_bytes, kind, threads).readinto(buf)
    assert buf[bad * f : (bad + 1) * f] == bytes(f)
    for i in range(bad + 1, len(pt) // f):
        assert buf[i * f : (i + 1) * f] != pt[i * f : (i + 1) * f]
    if threads == 1:
        assert buf[: bad * f] == pt[: bad * f]

    # read() of everything returns nothing at all.
    with pytest.raises(AuthenticationError):
        open_reader(msg_bytes, kind, threads).read()


@pytest.mark.parametrize("n", [3 * 16, 3 * 16 + 5])
def test_end_of_data_is_reported_only_after_the_final_frame_verifies(n: int) -> None:
    pt = plaintext_of(n)
    msg = bytearray(write_message(pt, 16))
    msg[-1] ^= 1  # the final frame's tag
    tampered = bytes(msg)
    with pytest.raises(AuthenticationError):
        open_reader(tampered).seek(0, io.SEEK_END)
    with pytest.raises(AuthenticationError):
        open_reader(tampered).plaintext_size()
    r = open_reader(tampered)
    assert r.read(3 * 16 - 1) == pt[: 3 * 16 - 1]  # regular frames are fine
    with pytest.raises(AuthenticationError):
        r.read(n - (3 * 16 - 1))  # reaching the end needs the final frame
    r = open_reader(tampered)
    r.seek(n + 10)
    with pytest.raises(AuthenticationError):
        r.read(1)  # even a read past the end


class ShrunkBufferSource(BufferSource):
    """A zero-copy source whose views stop short of its claimed size."""

    def __init__(self, data: bytes, claimed: int) -> None:
        super().__init__(data)
        self._claimed = claimed

    @property
    def size(self) -> int:
        return self._claimed


@pytest.mark.parametrize("cut", [100, 5000, 20000])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("source", [ShrunkSource, ShrunkBufferSource])
def test_an_object_shorter_than_its_size_is_an_authentication_error(
    cut: int, threads: int, source: type, small_batches: None
) -> None:
    msg = write_message(plaintext_of(10000), 16)
    with pytest.raises(AuthenticationError):
        MessageReader(source(msg[:cut], len(msg)), resolve_key=lambda h: KEY, threads=threads).read()


# --- reader setup: keys, context, binding, ownership ----------------------------------------


def test_wrong_key_fails_before_any_byte_and_closes_the_source() -> None:
    msg = write_message(plaintext_of(10))
    source = CopyingSource(msg)
    with pytest.raises(AuthenticationError):
        MessageReader(source, resolve_key=lambda h: bytes(32))
    assert source.closed


def test_resolver_sees_the_parsed_header_and_its_errors_propagate() -> None:
    msg = write_message(plaintext_of(10))
    seen: list[MessageHeader] = []

    def resolve(header: MessageHeader) -> bytes:
        seen.append(header)
        return KEY

    r = MessageReader(BufferSource(msg), resolve_key=resolve)
    assert seen[0].message_id == MESSAGE_ID
    assert dict(seen[0].encryption_context) == CONTEXT
    assert seen[0].encrypted_data_keys == tuple(EDKS)
    assert r.header is seen[0]

    class Refused(Exception):
        pass

    def refuse(header: MessageHeader) -> bytes:
        raise Refused

    with pytest.raises(Refused):
        MessageReader(BufferSource(msg), resolve_key=refuse)


def test_required_encryption_context() -> None:
    pt = plaintext_of(30)
    stored = {"tenant": "acme"}
    required_only = {"purpose": "test"}
    msg = ref_message(KEY, MESSAGE_ID, stored, EDKS, 16, pt, extra_aad=ref_context(required_only))
    ok = open_reader(msg, required_encryption_context={**stored, **required_only})
    assert ok.read() == pt
    assert open_reader(msg, required_encryption_context=required_only).read() == pt
    for required in ({}, {"purpose": "other"}, {"tenant": "other", **required_only}, {**required_only, "x": "y"}):
        with pytest.raises(AuthenticationError):
            open_reader(msg, required_encryption_context=required)


def test_name_binding_hook() -> None:
    msg = write_message(plaintext_of(30))
    seen: list[bytes] = []
    r = open_reader(msg, check_message_id=lambda mid: seen.append(mid) or True)
    assert seen == [MESSAGE_ID]
    assert r.read() == plaintext_of(30)
    with pytest.raises(AuthenticationError):
        open_reader(msg, check_message_id=lambda mid: False)


def test_reader_close_closes_the_source_and_later_calls_fail() -> None:
    source = CopyingSource(write_message(plaintext_of(30)))
    with MessageReader(source, resolve_key=lambda h: KEY) as r:
        assert r.read(5) == plaintext_of(5)
    assert source.closed
    with pytest.raises(ValueError):
        r.read()


def test_frame_length_over_the_readers_limit_is_refused() -> None:
    msg = write_message(plaintext_of(30), 64)
    with pytest.raises(FormatError):
        open_reader(msg, max_frame_length=32)


def test_streams_cannot_be_pickled() -> None:
    r = open_reader(write_message(b"x"))
    with pytest.raises(TypeError):
        pickle.dumps(r)
    w = MessageWriter(
        MemorySink(), data_key=KEY, message_id=MESSAGE_ID, encryption_context={}, encrypted_data_keys=EDKS
    )
    with pytest.raises(TypeError):
        pickle.dumps(w)
    w.abort()


# --- writer lifecycle -----------------------------------------------------------------------


def _writer(sink: object, **kw: object) -> MessageWriter:
    args: dict[str, object] = {
        "data_key": KEY,
        "message_id": MESSAGE_ID,
        "encryption_context": {},
        "encrypted_data_keys": EDKS,
        "frame_length": 16,
    }
    args.update(kw)
    return MessageWriter(sink, **args)  # type: ignore[arg-type]


def test_exception_inside_with_aborts_and_commits_nothing() -> None:
    sink = MemorySink()
    with pytest.raises(RuntimeError), _writer(sink) as w:
        w.write(b"partial data")
        raise RuntimeError("boom")
    assert sink.state == "aborted"


def test_an_abandoned_writer_is_aborted_not_committed() -> None:
    sink = MemorySink()
    w = _writer(sink)
    w.write(b"partial data")
    del w
    gc.collect()
    assert sink.state == "aborted"


def test_abort_is_idempotent_and_final() -> None:
    sink = MemorySink()
    w = _writer(sink)
    w.write(b"abc")
    w.abort()
    w.abort()
    w.close()
    assert sink.state == "aborted"
    with pytest.raises(ValueError):
        w.write(b"more")


def test_write_after_close_is_a_value_error() -> None:
    w = _writer(MemorySink())
    w.close()
    w.close()
    with pytest.raises(ValueError):
        w.write(b"x")


class FailingSink(MemorySink):
    def __init__(self, fail_on_write: int | None = None, fail_commit: bool = False) -> None:
        super().__init__()
        self.writes = 0
        self.fail_on_write = fail_on_write
        self.fail_commit = fail_commit

    def write(self, data: memoryview) -> int:
        self.writes += 1
        if self.writes == self.fail_on_write:
            raise OSError("disk full")
        return super().write(data)

    def commit(self) -> None:
        if self.fail_commit:
            raise OSError("commit failed")
        super().commit()


@pytest.mark.parametrize("threads", [1, 3])
def test_sink_failures_are_sticky_and_abort(threads: int, small_batches: None) -> None:
    sink = FailingSink(fail_on_write=3)
    w = _writer(sink, threads=threads)
    with pytest.raises(OSError, match="disk full") as info:
        for _ in range(50):
            w.write(plaintext_of(40))
    assert sink.state == "aborted"
    with pytest.raises(OSError) as again:
        w.write(b"x")
    assert again.value is info.value
    with pytest.raises(OSError):
        w.close()
    assert sink.state == "aborted"


def test_commit_failure_aborts() -> None:
    sink = FailingSink(fail_commit=True)
    w = _writer(sink)
    w.write(b"data")
    with pytest.raises(OSError, match="commit failed"):
        w.close()
    assert sink.state == "aborted"


def test_header_write_failure_aborts_the_sink() -> None:
    sink = FailingSink(fail_on_write=1)
    with pytest.raises(OSError):
        _writer(sink)
    assert sink.state == "aborted"


@pytest.mark.parametrize(
    "kw",
    [
        {"frame_length": 0},
        {"frame_length": 8},
        {"frame_length": 17},
        {"frame_length": 2**31},
        {"threads": 0},
        {"data_key": KEY[:16]},
        {"data_key": "not bytes"},
        {"message_id": bytes(16)},
        {"encrypted_data_keys": []},
        {"encryption_context": {"aws-crypto-public-key": "x"}},
        {"encryption_context": {"k": 1}},
    ],
)
def test_bad_writer_arguments_are_validation_errors_and_abort_the_sink(kw: dict[str, object]) -> None:
    sink = MemorySink()
    with pytest.raises(ValidationError):
        _writer(sink, **kw)
    assert sink.state == "aborted"


def test_tell_counts_plaintext() -> None:
    w = _writer(MemorySink())
    for n in (0, 5, 16, 40):
        w.write(bytes(n))
    assert w.tell() == 61
    w.close()


def test_writer_exposes_its_header() -> None:
    sink = MemorySink()
    w = _writer(sink, encryption_context=CONTEXT)
    assert w.header.message_id == MESSAGE_ID
    assert bytes(sink.data) == w.header.to_bytes()
    assert w.frame_length == 16
    assert w.writable() and not w.readable() and not w.seekable()
    w.close()
    assert EncryptedDataKey(*EDKS[0]) in w.header.encrypted_data_keys


def test_frame_count_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module, "MAX_FRAME_COUNT", 4)
    ok = _writer(MemorySink())
    ok.write(bytes(3 * 16 + 15))  # three regular frames and the final frame: 4 frames
    ok.close()
    for size in (4 * 16, 3 * 16):
        sink = MemorySink()
        w = _writer(sink)
        with pytest.raises(ValidationError, match="frames"):
            w.write(bytes(size))
            w.write(bytes(16))
        assert sink.state == "aborted"


def test_reader_file_protocol_details() -> None:
    pt = plaintext_of(100)
    r = open_reader(write_message(pt, 16))
    assert r.readable() and r.seekable() and not r.writable()
    with pytest.raises(ValueError):
        r.seek(0, 7)
    with pytest.raises(ValueError):
        r.seek(-1)
    assert r.seek(10) == 10
    assert r.seek(5, io.SEEK_CUR) == 15
    assert r.read1() == pt[15:16]  # the rest of frame 0
    assert r.read1(100) == pt[16:32]
    assert r.read(0) == b""
    assert r.tell() == 32
    r.seek(200)
    assert r.read1() == b""
    assert r.readinto1(bytearray(5)) == 0
    r.seek(0)
    assert b"".join(r) == pt  # iteration: readline over read
    r.close()
    r.close()
    with pytest.raises(ValueError):
        r.tell()


def test_writer_flush_and_closed_state() -> None:
    w = _writer(MemorySink())
    w.flush()
    w.close()
    with pytest.raises(ValueError):
        w.flush()
