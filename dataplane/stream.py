"""Kept for existing imports: the writer and readers now live in `dataplane.hazmat` (see there)."""

from __future__ import annotations

from .hazmat import (
    BufferSource,
    MessageReader,
    MessageSink,
    MessageSource,
    MessageWriter,
    check_frame_length,
    check_threads,
)

__all__ = [
    "BufferSource",
    "MessageReader",
    "MessageSink",
    "MessageSource",
    "MessageWriter",
    "check_frame_length",
    "check_threads",
]
