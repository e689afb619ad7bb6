"""`SequentialMessageReader`: one message from a non-seekable stream (a pipe, a socket), frame by frame.

The random-access `MessageReader` lays the body out from the object size;
a pipe has no size and cannot seek, so this reader walks the body the way
it was written: the header (parsed from the stream, reading exactly its
bytes), then frames in order until the final frame, then end of stream.
Nothing is spooled. It holds at most one frame of ciphertext and one of
plaintext (the frame length is bounded by `Limits.max_frame_length`), or a
whole non-framed body (bounded by `Limits.max_non_framed_size`); garbage is
refused as soon as a field shows it (an unknown version byte after one or
two bytes read, a wrong sequence number after four bytes of a frame).

What it must never do (the same promises as `MessageReader`):

- release a byte of a frame before that frame's tag verified;
- report end-of-data before the final frame verified *and* the stream
  ended there (a byte after the final frame is an `AuthenticationError`,
  and the final frame's plaintext is released only after that check);
- read, or allocate for, more than the `Limits` allow before refusing;
- keep raw key bytes in its frames (see `dataplane.format`);
- say which integrity check failed. Errors are sticky.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import NoReturn

from envelope.datakey import DataKey
from envelope.errors import AuthenticationError, FormatError

from ._byteio import MessageStream, read_some, writable_byte_view
from ._frames import OpenSlot, wipe
from .format import (
    FINAL_FRAME_MARKER,
    FINAL_FRAME_PREFIX,
    FIRST_SEQUENCE_NUMBER,
    NON_FRAMED_PREFIX,
    REGULAR_FRAME_OVERHEAD,
    SEQUENCE_NUMBER,
    TAG_LENGTH,
    Limits,
    MessageHeader,
    authenticate_header,
    authenticated_only_context,
    read_header_from_stream,
)

__all__ = ["SequentialMessageReader"]


class SequentialMessageReader(io.BufferedIOBase):
    """A read-only, forward-only binary file over one message read from `stream`.

    Construction parses the header from the stream, calls
    ``resolve_key(header)``, and verifies key commitment and the header tag
    (the required-encryption-context rule included), like `MessageReader`.
    Reads then decrypt one frame at a time. The stream is not closed by
    `close()`: it belongs to the caller (as with a seekable file).
    """

    def __init__(
        self,
        stream: MessageStream,
        *,
        resolve_key: Callable[[MessageHeader], bytes | DataKey],
        required_encryption_context: Mapping[str, str] | None = None,
        limits: Limits | None = None,
    ) -> None:
        super().__init__()
        self._stream = stream
        self._error: BaseException | None = None
        self._limits = limits or Limits()
        try:
            header = read_header_from_stream(stream, self._limits)
            extra = authenticated_only_context(header, required_encryption_context)
            key = authenticate_header(header, resolve_key(header), extra_aad=extra)
        except BaseException:
            super().close()
            raise
        self._header = header
        self._framed = header.frame_length > 0
        self._slot = OpenSlot(key, header.message_id, header.frame_length, self._framed)
        self._buffer = memoryview(bytearray(0))  # one frame of ciphertext, grown on demand
        self._plaintext = memoryview(bytearray(0))  # the verified plaintext of the current frame
        self._start = self._end = 0  # what of it is still to be returned
        self._next_sequence = FIRST_SEQUENCE_NUMBER
        self._done = False  # the final frame verified and the stream ended after it
        self._pos = 0

    # -- public surface --

    @property
    def header(self) -> MessageHeader:
        """The authenticated header."""
        return self._header

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        """Plaintext bytes returned so far."""
        self._check()
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        self._check()
        if size is None or size < 0:
            return self.readall()
        chunks = []
        while size > 0 and self._guard(self._fill):  # nothing is allocated ahead for a large `size`
            chunks.append(self._take(min(size, self._end - self._start)))
            size -= len(chunks[-1])
        return b"".join(chunks)

    def readall(self) -> bytes:
        self._check()
        chunks = []
        while self._guard(self._fill):
            chunks.append(self._take(self._end - self._start))
        return b"".join(chunks)

    def read1(self, size: int = -1) -> bytes:
        """At most the rest of the current frame."""
        self._check()
        if not self._guard(self._fill):
            return b""
        available = self._end - self._start
        return self._take(available if size < 0 else min(size, available))

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        self._check()
        with writable_byte_view(buffer) as view:
            done = 0
            while done < len(view) and self._guard(self._fill):
                n = min(len(view) - done, self._end - self._start)
                view[done : done + n] = self._plaintext[self._start : self._start + n]
                self._start += n
                self._pos += n
                done += n
            return done

    def readinto1(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        self._check()
        with writable_byte_view(buffer) as view:
            if not len(view) or not self._guard(self._fill):
                return 0
            n = min(len(view), self._end - self._start)
            view[:n] = self._plaintext[self._start : self._start + n]
            self._start += n
            self._pos += n
            return n

    def close(self) -> None:
        if self.closed:
            return
        wipe(self._plaintext)
        self._start = self._end = 0
        super().close()

    def __reduce__(self) -> NoReturn:
        raise TypeError("SequentialMessageReader cannot be pickled")

    # -- internals --

    def _check(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        if self._error is not None:
            raise self._error

    def _guard(self, step: Callable[[], bool]) -> bool:
        try:
            return step()
        except BaseException as exc:
            self._error = exc
            wipe(self._plaintext)
            self._start = self._end = 0
            raise

    def _take(self, n: int) -> bytes:
        out = bytes(self._plaintext[self._start : self._start + n])
        self._start += n
        self._pos += n
        return out

    def _fill(self) -> bool:
        """Make verified plaintext available; False at the (verified) end of the message."""
        while self._start == self._end:
            if self._done:
                return False
            if self._framed:
                self._next_frame()
            else:
                self._non_framed_body()
        return True

    def _room(self, n: int) -> memoryview:
        """The first `n` bytes of the ciphertext buffer (one frame at most), grown on demand."""
        if len(self._buffer) < n:
            self._buffer = memoryview(bytearray(n))
        return self._buffer[:n]

    def _read_into(self, view: memoryview) -> memoryview:
        """Fill `view` from the stream; the stream ending first is truncation."""
        done = 0
        while done < len(view):
            got = read_some(self._stream, view[done:])
            if got <= 0:
                raise AuthenticationError  # truncated
            done += got
        return view

    def _plaintext_room(self, n: int) -> memoryview:
        if len(self._plaintext) < n:
            wipe(self._plaintext)
            self._plaintext = memoryview(bytearray(n))
        return self._plaintext[:n]

    def _next_frame(self) -> None:
        frame_length, sequence_number = self._header.frame_length, self._next_sequence
        frame = self._room(REGULAR_FRAME_OVERHEAD + frame_length)
        first = SEQUENCE_NUMBER.unpack(self._read_into(frame[: SEQUENCE_NUMBER.size]))[0]
        if first == FINAL_FRAME_MARKER:
            self._final_frame(sequence_number)
            return
        if first != sequence_number:
            raise AuthenticationError  # refused after four bytes, before reading the rest of the frame
        self._read_into(frame[SEQUENCE_NUMBER.size :])
        self._slot.open_regular(sequence_number, 1, frame, self._plaintext_room(frame_length))
        self._next_sequence = sequence_number + 1
        self._start, self._end = 0, frame_length

    def _final_frame(self, sequence_number: int) -> None:
        head = self._room(FINAL_FRAME_PREFIX)
        self._read_into(head[SEQUENCE_NUMBER.size :])  # the marker is in place: the buffer holds a whole regular frame
        length = self._slot.final_length(head, sequence_number)
        if length > self._header.frame_length:
            raise AuthenticationError  # before reading a content length we would not accept
        head = memoryview(bytes(head))  # the buffer is reused for the body
        body = self._read_into(self._room(length + TAG_LENGTH))
        out = self._plaintext_room(length)
        self._slot.open_final(head, body, sequence_number, out)
        self._end_of_message(out)

    def _non_framed_body(self) -> None:
        head = self._read_into(self._room(NON_FRAMED_PREFIX))
        length = self._slot.non_framed_length(head)
        if length > self._limits.max_non_framed_size:
            raise FormatError(
                f"non-framed content of {length} bytes exceeds the limit of {self._limits.max_non_framed_size}"
            )
        head = memoryview(bytes(head))
        body = self._read_into(self._room(length + TAG_LENGTH))
        out = self._plaintext_room(length)
        self._slot.open_non_framed(head, body, out)
        self._end_of_message(out)

    def _end_of_message(self, verified: memoryview) -> None:
        """The stream must end with the last frame: a byte after it fails the message, and wipes `verified`.

        Only then does the last frame's plaintext become readable.
        """
        if read_some(self._stream, self._room(1)) != 0:
            wipe(verified)
            raise AuthenticationError
        self._done = True
        self._start, self._end = 0, len(verified)
