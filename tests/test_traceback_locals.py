"""No raw key bytes in the frames of a traceback: every failure of the reader and the writer, with locals.

Error trackers capture the locals of every frame of a traceback (Sentry and
friends do it by default; `TracebackException(capture_locals=True)` is the
standard library's version). So for each failure path of `MessageReader`
(header, commitment, header tag, frames, truncation, threads, non-framed)
and of `MessageWriter` (bad arguments, sink failures at construction, write,
close and commit, a failing worker), this test formats the exception with
captured locals and also walks every frame's `f_locals` through the whole
`__cause__` / `__context__` chain, and searches for the data key and each
key derived from it -- raw, hex, base64, as a bytes repr. The commitment key
of a *wrong* data key is searched too (the right key's is public: it is in
the header).
"""

from __future__ import annotations

import contextlib
import io
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import dataplane._frames as frames_module
from dataplane.format import Limits, authenticate_header, derive_keys, read_header
from dataplane.hazmat import BufferSource, MessageReader, MessageWriter
from dataplane.message import decrypt_message
from envelope.datakey import DataKey
from envelope.errors import AuthenticationError, EnvelopeError, FormatError, ValidationError
from tests.test_format import EDKS, MESSAGE_ID, MemorySink, ref_context, write_message
from tests.test_message_stream import CountingStream
from tests.test_secrets_hygiene import encodings

DATA_KEY = bytes(range(0xA0, 0xC0))
WRONG_KEY = bytes(range(0x20, 0x40))
F = 16
PLAINTEXT = bytes((i * 11 + 1) % 251 for i in range(40 * F + 5))
MESSAGE = write_message(PLAINTEXT, F, data_key=DATA_KEY)
HEADER_SIZE = read_header(BufferSource(MESSAGE)).size

SECRETS = {
    "data key": DATA_KEY,
    "derived key": derive_keys(DATA_KEY, MESSAGE_ID).derived_key,
    "wrong data key": WRONG_KEY,
    "derived key of the wrong data key": derive_keys(WRONG_KEY, MESSAGE_ID).derived_key,
    "commitment key of the wrong data key": derive_keys(WRONG_KEY, MESSAGE_ID).commitment_key,
}


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack += [e.__cause__, e.__context__]


def _raw(value: object) -> Iterator[bytes]:
    if isinstance(value, str):
        yield value.encode("utf-8", "surrogateescape")
    elif isinstance(value, bytes | bytearray | memoryview):
        with contextlib.suppress(ValueError):  # a released memoryview holds nothing any more
            yield bytes(value)


def _blobs(value: object) -> Iterator[bytes]:
    """The bytes a local holds (raw, and one level into containers), and its repr."""
    yield from _raw(value)
    if isinstance(value, tuple | list | set | frozenset):
        for item in value:
            yield from _raw(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _raw(item)
    yield repr(value).encode("utf-8", "surrogateescape")


def leaks_in(error: BaseException) -> list[str]:
    """Where a key shows up in `error`'s traceback locals, formatted or walked."""
    places: list[tuple[str, bytes]] = [
        (
            "formatted with capture_locals",
            "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format()).encode(
                "utf-8", "surrogateescape"
            ),
        )
    ]
    for e in _chain(error):
        tb = e.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            for name, value in frame.f_locals.items():
                places += [(f"{frame.f_code.co_name}: {name}", blob) for blob in _blobs(value)]
            tb = tb.tb_next
    found = []
    for key_name, key in SECRETS.items():
        needles = encodings(key)
        for where, blob in places:
            found += [f"{key_name} ({enc}) in {where}" for enc, needle in needles.items() if needle in blob]
    return found


def failure_of(call: Callable[[], object]) -> BaseException:
    """Run `call`, which must fail; this frame holds only `call` (a closure over module names)."""
    try:
        call()
    except BaseException as error:
        return error
    raise AssertionError("expected a failure")


def test_the_search_finds_a_key_in_a_local() -> None:
    def holds_the_key(key: bytes) -> None:
        raise AuthenticationError

    error = failure_of(lambda: holds_the_key(DATA_KEY))
    assert any("data key (raw)" in leak for leak in leaks_in(error))
    assert any("formatted with capture_locals" in leak for leak in leaks_in(error))


# --- the reader -------------------------------------------------------------------------------


def _edit(message: bytes, offset: int, xor: int = 0x01) -> bytes:
    damaged = bytearray(message)
    damaged[offset] ^= xor
    return bytes(damaged)


def _forged_commitment() -> bytes:
    """A header with a wrong commitment key and a valid header tag (recomputed: we hold the key)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header = read_header(BufferSource(MESSAGE))
    body = header.body[:-32] + bytes(32)
    tag = AESGCM(derive_keys(DATA_KEY, MESSAGE_ID).derived_key).encrypt(bytes(12), b"", body)
    return body + tag + MESSAGE[header.size :]


class CopyingSource:
    """Without `view_at`: the reader fetches into its own buffers."""

    def __init__(self, data: bytes, claimed: int | None = None) -> None:
        self._data = data
        self._claimed = len(data) if claimed is None else claimed

    @property
    def size(self) -> int:
        return self._claimed

    def readinto_at(self, offset: int, buf: memoryview) -> int:
        n = max(0, min(len(buf), len(self._data) - offset))
        buf[:n] = self._data[offset : offset + n]
        return n

    def close(self) -> None:
        pass


def _bytes_key(_header: object) -> bytes:
    return DATA_KEY


def _holder_key(_header: object) -> DataKey:
    return DataKey(DATA_KEY, "test")


def _wrong_key(_header: object) -> bytes:
    return WRONG_KEY


def _read_all(message: bytes, resolve: Callable[[Any], bytes | DataKey] = _bytes_key, **kw: Any) -> bytes:
    return MessageReader(BufferSource(message), resolve_key=resolve, **kw).read()


def _readinto_threads(message: bytes, threads: int, copying: bool) -> int:
    source = CopyingSource(message) if copying else BufferSource(message)
    reader = MessageReader(source, resolve_key=_bytes_key, threads=threads)  # type: ignore[arg-type]
    return reader.readinto(bytearray(len(PLAINTEXT)))


def _seek_and_read(message: bytes, frame: int) -> bytes:
    reader = MessageReader(BufferSource(message), resolve_key=_bytes_key)
    reader.seek(frame * F)
    return reader.read(3)


def _non_framed(tamper: bool) -> bytes:
    from tests.test_format import ref_message

    message = ref_message(DATA_KEY, MESSAGE_ID, {}, EDKS, 0, PLAINTEXT[:100], non_framed=True)
    return _read_all(_edit(message, len(message) - 1) if tamper else message + b"x")


def _pipe(message: bytes) -> CountingStream:
    return CountingStream([message], max_read=50)


READER_FAILURES: dict[str, tuple[Callable[[], object], type[BaseException]]] = {
    "header tag bit flip (key as bytes)": (lambda: _read_all(_edit(MESSAGE, HEADER_SIZE - 1)), AuthenticationError),
    "header tag bit flip (key as DataKey)": (
        lambda: _read_all(_edit(MESSAGE, HEADER_SIZE - 1), _holder_key),
        AuthenticationError,
    ),
    "header tag, authenticate_header called directly": (
        lambda: authenticate_header(read_header(BufferSource(_edit(MESSAGE, HEADER_SIZE - 1))), DATA_KEY),
        AuthenticationError,
    ),
    "wrong data key (commitment)": (lambda: _read_all(MESSAGE, _wrong_key), AuthenticationError),
    "wrong data key, authenticate_header called directly": (
        lambda: authenticate_header(read_header(BufferSource(MESSAGE)), WRONG_KEY),
        AuthenticationError,
    ),
    "data key of the wrong length": (lambda: _read_all(MESSAGE, lambda _h: DATA_KEY[:16]), AuthenticationError),
    "forged commitment key with a valid header tag": (lambda: _read_all(_forged_commitment()), AuthenticationError),
    "required context mismatch": (
        lambda: _read_all(MESSAGE, required_encryption_context={"tenant": "other"}),
        AuthenticationError,
    ),
    "required context not stored (header tag with extra AAD)": (
        lambda: authenticate_header(read_header(BufferSource(MESSAGE)), DATA_KEY, extra_aad=ref_context({"x": "y"})),
        AuthenticationError,
    ),
    "name binding hook refuses": (
        lambda: _read_all(MESSAGE, check_message_id=lambda _m: False),
        AuthenticationError,
    ),
    "resolver raises": (
        lambda: _read_all(MESSAGE, lambda _h: (_ for _ in ()).throw(PermissionError("no"))),
        PermissionError,
    ),
    "regular frame tag": (lambda: _read_all(_edit(MESSAGE, HEADER_SIZE + 3 * (F + 32) + 20)), AuthenticationError),
    "regular frame sequence number": (lambda: _read_all(_edit(MESSAGE, HEADER_SIZE + 3)), AuthenticationError),
    "final frame tag": (lambda: _read_all(_edit(MESSAGE, len(MESSAGE) - 1)), AuthenticationError),
    "final frame marker": (lambda: _read_all(_edit(MESSAGE, HEADER_SIZE + 40 * (F + 32))), AuthenticationError),
    "seek to a damaged frame": (
        lambda: _seek_and_read(_edit(MESSAGE, HEADER_SIZE + 7 * (F + 32) + 20), 7),
        AuthenticationError,
    ),
    "truncated body": (lambda: _read_all(MESSAGE[:-7]), AuthenticationError),
    "object shorter than its size": (
        lambda: MessageReader(CopyingSource(MESSAGE[:-100], len(MESSAGE)), resolve_key=_bytes_key).read(),  # type: ignore[arg-type]
        AuthenticationError,
    ),
    "trailing bytes": (lambda: _read_all(MESSAGE + b"\x00"), AuthenticationError),
    "threaded read, bad frame in a middle run": (
        lambda: _readinto_threads(_edit(MESSAGE, HEADER_SIZE + 20 * (F + 32) + 20), 3, copying=False),
        AuthenticationError,
    ),
    "threaded read without view_at, bad first frame": (
        lambda: _readinto_threads(_edit(MESSAGE, HEADER_SIZE + 20), 2, copying=True),
        AuthenticationError,
    ),
    "non-framed tag": (lambda: _non_framed(tamper=True), AuthenticationError),
    "non-framed with trailing bytes": (lambda: _non_framed(tamper=False), AuthenticationError),
    "unknown version byte": (lambda: _read_all(b"\x07" + MESSAGE[1:]), FormatError),
    "frame length over the limit": (
        lambda: _read_all(MESSAGE, limits=Limits(max_frame_length=8)),
        FormatError,
    ),
    "decrypt_message, header tag": (
        lambda: decrypt_message(_edit(MESSAGE, HEADER_SIZE - 1), _bytes_key).read(),
        AuthenticationError,
    ),
    "decrypt_message from a file, wrong key": (
        lambda: decrypt_message(io.BytesIO(MESSAGE), _wrong_key).read(),
        AuthenticationError,
    ),
    "decrypt_message from a pipe, header tag": (
        lambda: decrypt_message(_pipe(_edit(MESSAGE, HEADER_SIZE - 1)), _bytes_key).read(),
        AuthenticationError,
    ),
    "decrypt_message from a pipe, wrong key": (
        lambda: decrypt_message(_pipe(MESSAGE), _wrong_key),
        AuthenticationError,
    ),
    "decrypt_message from a pipe, frame tag": (
        lambda: decrypt_message(_pipe(_edit(MESSAGE, HEADER_SIZE + 20)), _bytes_key).read(),
        AuthenticationError,
    ),
    "decrypt_message from a pipe, trailing bytes": (
        lambda: decrypt_message(_pipe(MESSAGE + b"x"), _bytes_key).read(),
        AuthenticationError,
    ),
    "decrypt_message from a file, frame tag": (
        lambda: decrypt_message(io.BytesIO(_edit(MESSAGE, HEADER_SIZE + 20)), _bytes_key).read(),
        AuthenticationError,
    ),
}


@pytest.mark.parametrize("case", list(READER_FAILURES))
def test_reader_failures_hold_no_key_bytes_in_any_frame(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frames_module, "BATCH_BYTES", 100)  # several runs per thread in the threaded cases
    call, expected = READER_FAILURES[case]
    error = failure_of(call)
    assert isinstance(error, expected), repr(error)
    assert leaks_in(error) == []


# --- the writer -------------------------------------------------------------------------------


class FailingSink(MemorySink):
    def __init__(self, fail_on_write: int | None = None, *, fail_commit: bool = False) -> None:
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


KEYS: dict[str, Callable[[], object]] = {
    "bytes": lambda: DATA_KEY,
    "holder": lambda: DataKey(DATA_KEY, "test"),
    "short": lambda: DATA_KEY[:16],
    "str": lambda: "not a key",
}


def _writer(sink: MemorySink, key: str = "bytes", **kw: Any) -> MessageWriter:
    """The key is passed by name so that no frame of the test itself holds it (the caller's frames are not ours)."""
    args: dict[str, Any] = {
        "message_id": MESSAGE_ID,
        "encryption_context": {"tenant": "acme"},
        "encrypted_data_keys": EDKS,
        "frame_length": F,
    }
    args.update(kw)
    return MessageWriter(sink, data_key=KEYS[key](), **args)  # type: ignore[arg-type]


def _write_and_close(sink: MemorySink, pieces: int = 1, **kw: Any) -> None:
    w = _writer(sink, **kw)
    share = len(PLAINTEXT) // pieces + 1
    for i in range(pieces):
        w.write(PLAINTEXT[i * share : (i + 1) * share])
    w.close()


def _failing_workers() -> None:
    seal = frames_module.SealSlot.seal

    def seal_only_in_the_main_thread(self: Any, *args: Any) -> memoryview:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("worker died")
        return seal(self, *args)

    frames_module.SealSlot.seal = seal_only_in_the_main_thread  # type: ignore[method-assign]
    try:
        _write_and_close(MemorySink(), threads=2)
    finally:
        frames_module.SealSlot.seal = seal  # type: ignore[method-assign]


WRITER_FAILURES: dict[str, tuple[Callable[[], object], type[BaseException]]] = {
    "sink fails writing the header (key as bytes)": (lambda: _writer(FailingSink(1)), OSError),
    "sink fails writing the header (key as DataKey)": (
        lambda: _writer(FailingSink(1), "holder"),
        OSError,
    ),
    "bad frame length": (lambda: _writer(MemorySink(), frame_length=17), ValidationError),
    "bad message id": (lambda: _writer(MemorySink(), message_id=b"short"), ValidationError),
    "bad EDKs": (lambda: _writer(MemorySink(), encrypted_data_keys=[("p", "not bytes", b"")]), ValidationError),
    "reserved context key": (lambda: _writer(MemorySink(), encryption_context={"aws-crypto-x": "1"}), ValidationError),
    "data key of the wrong length": (lambda: _writer(MemorySink(), "short"), ValidationError),
    "data key of the wrong type": (lambda: _writer(MemorySink(), "str"), ValidationError),
    "sink fails during write": (lambda: _write_and_close(FailingSink(3), pieces=5), OSError),
    "sink fails during a threaded write": (lambda: _write_and_close(FailingSink(4), pieces=3, threads=3), OSError),
    "sink fails writing the final frame": (
        lambda: _write_and_close(FailingSink(2), pieces=1, frame_length=4096),
        OSError,
    ),
    "commit fails": (lambda: _write_and_close(FailingSink(fail_commit=True)), OSError),
    "a worker fails to seal": (_failing_workers, RuntimeError),
}


@pytest.mark.parametrize("case", list(WRITER_FAILURES))
def test_writer_failures_hold_no_key_bytes_in_any_frame(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frames_module, "BATCH_BYTES", 100)
    call, expected = WRITER_FAILURES[case]
    error = failure_of(call)
    assert isinstance(error, expected), repr(error)
    assert isinstance(error, EnvelopeError) or expected in (OSError, RuntimeError)
    assert leaks_in(error) == []
