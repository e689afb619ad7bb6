"""The parameter checks the writer, the readers and the plane share (one definition each).

Each returns its argument once it is acceptable and raises `ValidationError`
otherwise, before anything is allocated, written or asked of KMS.
"""

from __future__ import annotations

from envelope.errors import ValidationError

from .format import MAX_FRAME_LENGTH

__all__ = ["MAX_THREADS", "WRITER_FRAME_ALIGNMENT", "check_frame_length", "check_threads"]

WRITER_FRAME_ALIGNMENT = 16  # the SDKs only write frame lengths that are multiples of the AES block
MAX_THREADS = 64


def check_threads(threads: object) -> int:
    """A writer's or reader's thread count: an int in 1..MAX_THREADS (ValidationError otherwise)."""
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= MAX_THREADS:
        raise ValidationError(f"threads must be an int in 1..{MAX_THREADS}")
    return threads


def check_frame_length(frame_length: object) -> int:
    """A frame length our writer may use: a multiple of 16 in 16..`MAX_FRAME_LENGTH` (ValidationError otherwise).

    The upper bound is the default reader's `Limits.max_frame_length`: what we write, we read.
    """
    if (
        not isinstance(frame_length, int)
        or isinstance(frame_length, bool)
        or frame_length % WRITER_FRAME_ALIGNMENT
        or not WRITER_FRAME_ALIGNMENT <= frame_length <= MAX_FRAME_LENGTH
    ):
        raise ValidationError(
            f"frame_length must be a multiple of {WRITER_FRAME_ALIGNMENT} in "
            f"{WRITER_FRAME_ALIGNMENT}..{MAX_FRAME_LENGTH} (16 MiB, what a default reader accepts)"
        )
    return frame_length
