"""Sealing and opening frames: the primitives under the writer and the readers, and their batch sizes.

A `SealSlot` seals consecutive frames into one reusable buffer; an
`OpenSlot` opens them from one. They mirror each other: each owns an AES-GCM
object (made by `MessageKey.cipher()`; the slot never sees key bytes) and
body-AAD templates rewritten in place, so a frame costs no allocation; each
slot is used by one thread at a time, so slots run in parallel. The frame
layout (heads, IV, offsets) is `dataplane.format`'s.

What this module must never do: leave unverified plaintext where a caller
can see it (`open_*` wipe the output of a frame whose tag fails before
raising), or tell which check failed (`AuthenticationError` is one error).
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from envelope.errors import AuthenticationError

from .format import (
    BODY_AAD_COUNTERS,
    FINAL_FRAME_AAD_LABEL,
    FINAL_FRAME_HEAD,
    FINAL_FRAME_IV,
    FINAL_FRAME_MARKER,
    FINAL_FRAME_PREFIX,
    FRAME_AAD_LABEL,
    NON_FRAMED_HEAD,
    NON_FRAMED_IV,
    NON_FRAMED_PREFIX,
    NON_FRAMED_SEQUENCE_NUMBER,
    REGULAR_FRAME_HEAD,
    REGULAR_FRAME_IV,
    REGULAR_FRAME_OVERHEAD,
    REGULAR_FRAME_PREFIX,
    SINGLE_BLOCK_AAD_LABEL,
    TAG_LENGTH,
    BodyAad,
    BodyLayout,
    MessageKey,
)

__all__ = [
    "BATCH_BYTES",
    "OVERLAP_EVIDENCE",
    "OVERLAP_MIN_SECONDS",
    "OVERLAP_SHARE",
    "OVERLAP_TRIAL",
    "SLOT_MIN_BYTES",
    "THREAD_BATCHES",
    "OpenSlot",
    "OverlapVote",
    "SealSlot",
    "frames_per_batch",
    "release_pool_in_finalizer",
    "split",
    "wipe",
    "worth_overlapping",
]

BATCH_BYTES = 1 << 20
"""Frames are sealed, opened, written and fetched in batches of about this many bytes
(at least one frame): per-call overheads (Python, the sink, the source, a hand-off to
a worker thread) then vanish next to AES-GCM, and memory stays flat."""

THREAD_BATCHES = 2
"""With ``threads >= 2`` a batch holds this many times `BATCH_BYTES` of plaintext (4 MiB,
at least one frame), and each task seals or opens a contiguous run of up to one batch:
a hand-off to a worker costs tens of microseconds, so runs must be long to pay off."""

OVERLAP_MIN_SECONDS = 50e-6
"""An I/O call (a sink's write, a source's read) shorter than this is not worth handing
to a stream's I/O thread: a hand-off costs tens of microseconds on a busy 2-core machine."""

OVERLAP_SHARE = 0.5
"""Nor is one that takes less than this share of the cipher's time on the same bytes:
the overlap could save at most that time, and the hand-off eats part of it."""

SLOT_MIN_BYTES = 4096
"""A slot's buffer starts at least this large and grows by doubling, so a writer fed many tiny
writes reallocates O(log n) times rather than once per write (and never beyond its capacity)."""

_REGULAR_IV_START, _REGULAR_IV_STOP = REGULAR_FRAME_IV.start, REGULAR_FRAME_IV.stop


def frames_per_batch(frame_length: int, threads: int) -> int:
    """Frames per batch: `BATCH_BYTES` of plaintext (times `THREAD_BATCHES` with threads), at least one.

    Counted in plaintext so that an application's power-of-two writes and
    reads (a 1 MiB copy buffer over 64 or 256 KiB frames) are whole batches,
    not a batch and a one-frame remainder that costs a hand-off of its own.
    """
    plaintext = (THREAD_BATCHES if threads > 1 else 1) * BATCH_BYTES
    return max(1, plaintext // max(1, frame_length))  # frame length 0: a non-framed message, no batches


OVERLAP_EVIDENCE = 3
"""How many I/O calls in a row must be slow (`worth_overlapping`) before a stream starts its I/O
thread: one slow call can be a preemption on a busy machine; a slow sink or source is slow every time."""


def worth_overlapping(io_seconds: float, cipher_seconds: float) -> bool:
    """Whether an I/O call that took `io_seconds` next to `cipher_seconds` of sealing or
    opening the same bytes would have paid for a hand-off to the stream's I/O thread."""
    return io_seconds >= OVERLAP_MIN_SECONDS and io_seconds >= OVERLAP_SHARE * cipher_seconds


OVERLAP_TRIAL = 4
"""Batches a stream runs with its I/O thread before comparing their pace with the batches before."""


class OverlapVote:
    """Whether a stream's I/O thread should run: a vote, then a trial.

    `slow(...)` counts consecutive slow I/O calls and says yes once there
    have been `OVERLAP_EVIDENCE`. `tick(n)`, called at the same point of
    every batch of `n` bytes in both modes, times the batches; after
    `OVERLAP_TRIAL` batches with the thread, `keep()` says no for good
    unless they came faster than the ones before it (a busy machine with no
    idle core: the hand-offs only cost).
    """

    __slots__ = ("_last", "_piped", "_run", "_serial", "on", "retired")

    def __init__(self) -> None:
        self._run = 0
        self._last = 0.0
        self._serial: list[float] = []  # seconds per byte of the last batches without the thread
        self._piped: list[float] = []  # the same with it
        self.on = False
        self.retired = False

    def slow(self, io_seconds: float, cipher_seconds: float) -> bool:
        """Count one I/O call; True once the thread should start (never again after a failed trial)."""
        self._run = self._run + 1 if worth_overlapping(io_seconds, cipher_seconds) else 0
        self.on = not self.retired and self._run >= OVERLAP_EVIDENCE
        return self.on

    def tick(self, size: int, now: float | None = None) -> None:
        """Mark the end of a batch of `size` bytes (at `now`, by default the clock's time)."""
        now = time.perf_counter() if now is None else now
        if self._last and size:
            pace = (now - self._last) / size
            if self.on:
                self._piped.append(pace)
            else:
                self._serial = [*self._serial[-(OVERLAP_TRIAL - 1) :], pace]
        self._last = now

    def keep(self) -> bool:
        """False (and for good) once a trial shows the thread does not make batches faster."""
        if self.on and len(self._piped) >= OVERLAP_TRIAL:
            if self._serial and statistics.median(self._piped) >= statistics.median(self._serial):
                self.on, self.retired = False, True
            self._piped.clear()
            self._serial.clear()  # one trial: a kept thread is not measured again
        return self.on


def split(count: int, parts: int) -> list[tuple[int, int]]:
    """(start, count) of at most `parts` contiguous, nearly equal runs covering `count` items."""
    share = -(-count // parts)
    return [(start, min(share, count - start)) for start in range(0, count, share)]


def wipe(view: memoryview) -> None:
    if len(view):
        view[:] = bytes(len(view))


class SealSlot:
    """A batch buffer of the writer, laid out as consecutive regular frames."""

    __slots__ = ("aad", "aead", "capacity", "final_aad", "frame_length", "future", "view", "written")

    def __init__(self, key: MessageKey, message_id: bytes, frame_length: int, frames: int) -> None:
        self.capacity = frames * (frame_length + REGULAR_FRAME_OVERHEAD)
        self.view = memoryview(bytearray(0))  # grown on demand up to capacity: small messages stay small
        self.aead = key.cipher()
        self.aad = BodyAad(message_id, FRAME_AAD_LABEL)
        self.final_aad = BodyAad(message_id, FINAL_FRAME_AAD_LABEL)
        self.frame_length = frame_length
        self.future: Future[memoryview] | None = None  # sealing on a worker thread
        self.written: Future[object] | None = None  # its bytes being written by the I/O thread

    def reserve(self, size: int) -> None:
        """Make the buffer at least `size` bytes (within capacity), keeping its contents."""
        have = len(self.view)
        if size > have:
            grown = bytearray(min(max(size, 2 * have, SLOT_MIN_BYTES), self.capacity))
            grown[:have] = self.view
            wipe(self.view)  # it may hold plaintext waiting to be sealed
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
        pack_head, pack_counters = REGULAR_FRAME_HEAD.pack_into, BODY_AAD_COUNTERS.pack_into
        for j in range(count):
            sequence_number = first_sequence_number + j
            base = j * stride
            start = base + REGULAR_FRAME_PREFIX
            pack_head(view, base, sequence_number, sequence_number)
            pack_counters(aad, counters, sequence_number, n)
            source = view[start : start + n] if plaintext is None else plaintext[j * n : (j + 1) * n]
            iv = view[base + _REGULAR_IV_START : base + _REGULAR_IV_STOP]
            aead.encrypt_into(iv, source, aad, view[start : start + n + TAG_LENGTH])
        return view[: count * stride]

    def seal_final(self, frame: int, sequence_number: int, length: int) -> tuple[bytes, memoryview]:
        """Encrypt the `length` bytes at frame position `frame` in place as the final frame.

        Returns the final frame's head and its ciphertext || tag.
        """
        head = FINAL_FRAME_HEAD.pack(FINAL_FRAME_MARKER, sequence_number, sequence_number, length)
        start = self.plaintext_offset(frame)
        self.reserve(start + length + TAG_LENGTH)
        body = self.view[start : start + length + TAG_LENGTH]
        aad = self.final_aad.update(sequence_number, length)
        self.aead.encrypt_into(head[FINAL_FRAME_IV], body[:length], aad, body)
        return head, body


class OpenSlot:
    """What opening frames needs: a ciphertext buffer, a cipher, the AAD templates."""

    __slots__ = ("aad", "aead", "buffer", "final_aad", "frame_length")

    def __init__(self, key: MessageKey, message_id: bytes, frame_length: int, framed: bool) -> None:
        self.frame_length = frame_length
        self.aead = key.cipher()
        self.aad = BodyAad(message_id, FRAME_AAD_LABEL if framed else SINGLE_BLOCK_AAD_LABEL)
        self.final_aad = BodyAad(message_id, FINAL_FRAME_AAD_LABEL)
        self.buffer = memoryview(bytearray(0))  # grown on demand, up to one batch or the final frame

    def open_regular(self, first_sequence_number: int, count: int, data: memoryview, out: memoryview) -> None:
        """Verify and decrypt `count` consecutive regular frames from `data` into `out`.

        The stored sequence number is compared explicitly: the tag covers the
        expected number (through the AAD) but not the stored field.
        """
        aead, aad, counters, frame_length = self.aead, self.aad.buffer, self.aad.counter_offset, self.frame_length
        stride = frame_length + REGULAR_FRAME_OVERHEAD
        unpack, pack_counters = REGULAR_FRAME_HEAD.unpack_from, BODY_AAD_COUNTERS.pack_into
        for j in range(count):
            sequence_number = first_sequence_number + j
            base = j * stride
            if unpack(data, base)[0] != sequence_number:
                raise AuthenticationError
            pack_counters(aad, counters, sequence_number, frame_length)
            region = out[j * frame_length : (j + 1) * frame_length]
            iv = data[base + _REGULAR_IV_START : base + _REGULAR_IV_STOP]
            try:
                aead.decrypt_into(iv, data[base + REGULAR_FRAME_PREFIX : base + stride], aad, region)
            except InvalidTag:
                wipe(region)
                raise AuthenticationError from None

    def final_length(self, head: memoryview, sequence_number: int) -> int:
        """The content length a final frame's head declares, once its marker and sequence number check out."""
        marker, stored, _, length = FINAL_FRAME_HEAD.unpack_from(head)
        if marker != FINAL_FRAME_MARKER or stored != sequence_number:
            raise AuthenticationError
        return int(length)

    def open_final(self, head: memoryview, body: memoryview, sequence_number: int, out: memoryview) -> None:
        """Verify and decrypt the final frame (`head` as checked by `final_length`, `body` = ciphertext || tag)."""
        aad = self.final_aad.update(sequence_number, len(out))
        _open_into(self.aead, head[FINAL_FRAME_IV], body, aad, out)

    def open_last(self, layout: BodyLayout, frame: memoryview, out: memoryview) -> None:
        """Check and open the last frame of `layout` -- the final frame, or the non-framed block -- into `out`.

        `frame` is its `layout.final_frame_size` stored bytes; the length it declares must be the one the
        object size implies (`layout.final_length`, the size of `out`): bytes after it are tampering.
        """
        n = layout.final_length
        if layout.framed:
            sequence_number = layout.final_index + 1
            if self.final_length(frame, sequence_number) != n:
                raise AuthenticationError
            self.open_final(frame[:FINAL_FRAME_PREFIX], frame[FINAL_FRAME_PREFIX:], sequence_number, out)
        else:
            if self.non_framed_length(frame) != n:
                raise AuthenticationError
            self.open_non_framed(frame[:NON_FRAMED_PREFIX], frame[NON_FRAMED_PREFIX:], out)

    @staticmethod
    def non_framed_length(head: memoryview) -> int:
        return int(NON_FRAMED_HEAD.unpack_from(head)[1])

    def open_non_framed(self, head: memoryview, body: memoryview, out: memoryview) -> None:
        """Verify and decrypt a non-framed body (`head` = IV || length, `body` = ciphertext || tag)."""
        aad = self.aad.update(NON_FRAMED_SEQUENCE_NUMBER, len(out))
        _open_into(self.aead, head[NON_FRAMED_IV], body, aad, out)


def _open_into(aead: AESGCM, iv: memoryview, body: memoryview, aad: bytearray, out: memoryview) -> None:
    """Decrypt and verify one frame into `out`; on a bad tag, wipe `out` and raise."""
    try:
        aead.decrypt_into(iv, body, aad, out)
    except InvalidTag:
        wipe(out)  # decrypt_into has already written unverified plaintext there
        raise AuthenticationError from None


class _HasPool(Protocol):
    _pool: ThreadPoolExecutor | None


def release_pool_in_finalizer(stream: _HasPool) -> None:
    """Stop a stream's thread pool without waiting for its threads.

    A finalizer can run on any thread -- even inside a new thread's start-up
    while another thread waits for that start -- so joining threads there can
    deadlock. An explicit close() still waits for the pool as usual.
    """
    pool, stream._pool = stream._pool, None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)
