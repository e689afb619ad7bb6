"""Local files the command reads plaintext from and writes plaintext to.

`atomic_output` is how `get -o FILE` keeps its promise: the plaintext goes
to a dot-prefixed temp file (mode 0600) in the destination's directory,
which is fsynced and renamed over FILE only after every frame has
authenticated. Any failure, or Ctrl-C, removes the temp file, so a failed
authentication leaves neither FILE nor a temp file behind. A destination
that is not a regular file (a FIFO, a terminal, /dev/null) cannot be
replaced by a rename and is written to directly, like standard output.
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_output", "open_input"]


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def open_input(path: str) -> Iterator[tuple[BinaryIO, int | None]]:
    """The binary input for `put` (`-` is stdin) and its size, when it is a regular file."""
    if path == "-":
        source: BinaryIO = sys.stdin.buffer
        yield source, _regular_size(source)
        return
    with open(path, "rb") as source:
        yield source, _regular_size(source)


def _regular_size(source: BinaryIO) -> int | None:
    try:
        st = os.fstat(source.fileno())
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    try:
        return st.st_size - source.tell()
    except OSError:
        return st.st_size


@contextmanager
def atomic_output(path: str) -> Iterator[BinaryIO]:
    """A binary file that becomes `path` only when the block exits cleanly."""
    target = Path(path)
    if target.is_symlink():
        target = Path(os.path.realpath(target))  # replace what the link points to, not the link
    try:
        st = target.stat()
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(21, "Is a directory", str(path))
    if st is not None and not stat.S_ISREG(st.st_mode):
        with open(target, "wb") as direct:  # a FIFO or device: no rename possible
            yield direct
        return
    directory = target.absolute().parent
    if not directory.is_dir():
        raise FileNotFoundError(2, "No such directory", str(directory))
    temp = directory / f".{target.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        with suppress(FileNotFoundError):
            temp.unlink()
        raise
    _fsync_directory(directory)
