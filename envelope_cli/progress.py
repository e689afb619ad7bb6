"""Progress bars for long transfers: on stderr, only when stderr is a terminal.

A bar appears for a transfer of known size from `MIN_BYTES` up (percentage,
rate, ETA), and for a stream of unknown size once it has run for
`UNKNOWN_SIZE_DELAY` seconds (bytes and rate). Nothing is drawn when stderr
is piped or redirected, with --quiet, or when tqdm (the [cli] extra) is not
installed: the bar is a convenience, never a dependency of the transfer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

__all__ = ["MIN_BYTES", "UNKNOWN_SIZE_DELAY", "transfer_progress"]

MIN_BYTES = 4 * 1024 * 1024
UNKNOWN_SIZE_DELAY = 0.5


def _noop(_: int) -> None:
    return None


def _is_terminal(stream: IO[Any]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _width(stream: IO[Any]) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 0


@contextmanager
def transfer_progress(total: int | None, *, description: str, quiet: bool) -> Iterator[Callable[[int], None]]:
    """Yield a callback taking the number of bytes just transferred."""
    stderr = sys.stderr
    if quiet or not _is_terminal(stderr) or (total is not None and total < MIN_BYTES):
        yield _noop
        return
    try:
        from tqdm import tqdm
    except ImportError:  # the [cli] extra is not installed: transfer without a bar
        yield _noop
        return
    # A terminal that reports no size (fresh ptys do) would get no bar at all: assume 80x24.
    width = _width(stderr)
    bar = tqdm(
        total=total,
        desc=description,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=stderr,
        delay=0 if total is not None else UNKNOWN_SIZE_DELAY,
        dynamic_ncols=width > 0,
        ncols=None if width > 0 else 80,
        nrows=None if width > 0 else 24,
        mininterval=0.2,
        leave=True,
    )

    def advance(n: int) -> None:
        bar.update(n)

    try:
        yield advance
    finally:
        bar.close()
