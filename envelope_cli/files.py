"""Local files the command reads plaintext from and writes plaintext to.

`prepare_output` is how `get -o PATH` keeps its promises (docs/cli.md,
"Where get -o writes"), judged before anything is decrypted:

- **No redirection by another user.** PATH is resolved one component at a
  time with `O_NOFOLLOW`, never by the kernel or `realpath`; a symbolic link
  is followed only under the kernel's `protected_symlinks` rule: not when it
  sits in a sticky world-writable directory (`/tmp`) unless it is owned by
  us or by that directory's owner. Otherwise the command refuses (EACCES),
  whatever the machine's sysctl says.
- **Nothing left by a crash.** The plaintext goes to an anonymous file
  (`O_TMPFILE`) in the destination's directory, which has no name until it
  is complete, fsynced and authenticated: a SIGKILL leaves nothing. It is
  then linked in create-only (`linkat` through `/proc/self/fd`), or, to
  replace a file with `--overwrite`, linked to a temp name and renamed over
  it. Where `O_TMPFILE` is missing, the named temp file is used from the
  start, locked while it is written, and `envelope gc --temp-files DIR`
  removes one a crash left behind.
- **Create-only by default.** An existing file is replaced only with
  `--overwrite` (exit 5 otherwise); a replaced file of ours keeps its
  permission bits, like `cp`; anything else is created mode 0600.
- **Special files are written, never replaced.** `/dev/stdout` (and
  `/dev/fd/N`, `/proc/self/fd/N`) are the already-open descriptors, so a
  shell's `>> log` keeps appending; a FIFO, a terminal or `/dev/null` is
  opened and written in place.

Temp names are `.<up to 200 bytes of the name>.<16 hex>.tmp`, which stays
under NAME_MAX for any legal file name and is the pattern `gc` looks for.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import stat
import sys
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import BinaryIO, Final, Protocol

from envelope.storage.local import Writeback, stale_temp_files_at

__all__ = [
    "TEMP_NAME",
    "OutputTarget",
    "Sink",
    "open_input",
    "prepare_output",
    "stale_temp_files",
]

_O_TMPFILE: int | None = getattr(os, "O_TMPFILE", None)
_PATH_FLAGS: Final = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_TEMP_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_SYMLINKS: Final = 40  # as the kernel's path walk
_TEMP_HEAD_BYTES: Final = 200
TEMP_NAME: Final = re.compile(r"\A\..*\.[0-9a-f]{16}\.tmp\Z", re.DOTALL)

# Names that denote a descriptor this process already has open: written through that descriptor.
_STANDARD: Final = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}
_FD_PATH: Final = re.compile(r"\A/(?:dev/fd|proc/self/fd|proc/thread-self/fd|proc/(?P<pid>[0-9]+)/fd)/(?P<fd>[0-9]+)\Z")


@contextmanager
def open_input(path: str) -> Iterator[tuple[BinaryIO, int | None]]:
    """The binary input for `put` (`-` is stdin) and its size, when it is a regular file."""
    if path == "-":
        source: BinaryIO = sys.stdin.buffer
        yield source, _regular_size(source)
        return
    number = open_descriptor(path)
    resolved = _resolve(path) if number is None else number
    if isinstance(resolved, int):  # /dev/stdin, /dev/fd/N: the descriptor this process already has
        with os.fdopen(os.dup(resolved), "rb") as source:
            yield source, _regular_size(source)
        return
    dir_fd, leaf, st = resolved
    try:
        if st is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        _check_may_use_special(dir_fd, st, path, "read")
        fd = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "rb") as source:
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


def open_descriptor(path: str) -> int | None:
    """The descriptor number `path` names (/dev/stdout, /dev/fd/N, /proc/self/fd/N), else None."""
    if path in _STANDARD:
        return _STANDARD[path]
    m = _FD_PATH.match(path)
    if m is None or (m.group("pid") is not None and int(m.group("pid")) != os.getpid()):
        return None
    return int(m.group("fd"))


# -- resolving PATH without letting anyone else redirect it -----------------------------------------


def _check_may_follow(dir_fd: int, link: os.stat_result, path: str) -> None:
    """The kernel's protected_symlinks rule, applied whatever the sysctl says."""
    directory = os.fstat(dir_fd)
    sticky_world_writable = directory.st_mode & (stat.S_ISVTX | stat.S_IWOTH) == stat.S_ISVTX | stat.S_IWOTH
    if sticky_world_writable and link.st_uid not in (os.geteuid(), directory.st_uid):
        raise PermissionError(
            errno.EACCES,
            f"refusing to follow a symbolic link owned by another user (uid {link.st_uid}) in a sticky "
            "world-writable directory: it could redirect the plaintext (the kernel's protected_symlinks rule)",
            path,
        )


def _check_may_use_special(dir_fd: int, st: os.stat_result, path: str, what: str) -> None:
    """The kernel's protected_fifos rule (its strictest setting), whatever the sysctl says.

    A FIFO or device in a sticky directory that others can write to, owned by neither us nor the
    directory's owner, is refused: another user could read our plaintext from it (or feed a `put`).
    """
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return
    directory = os.fstat(dir_fd)
    shared = directory.st_mode & stat.S_ISVTX and directory.st_mode & (stat.S_IWOTH | stat.S_IWGRP)
    if shared and st.st_uid not in (os.geteuid(), directory.st_uid):
        raise PermissionError(
            errno.EACCES,
            f"refusing to {what} a FIFO or device owned by another user (uid {st.st_uid}) in a shared sticky "
            "directory: they could read or feed the data (the kernel's protected_fifos rule)",
            path,
        )


def _split(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def _resolve(path: str) -> tuple[int, str, os.stat_result | None] | int:
    """(O_PATH fd of PATH's directory, final name, its lstat or None), or a descriptor number.

    Each component is looked at with lstat and opened O_NOFOLLOW, so the kernel
    never follows a link on our behalf; links are expanded here, by the rule above.
    """
    if not path:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
    if path in (".", "..") or path.endswith(("/", "/.", "/..")):
        raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
    fd = os.open("/" if path.startswith("/") else ".", _PATH_FLAGS)
    parts: deque[str] = deque(_split(path))
    links = 0
    try:
        while True:
            if not parts:  # "/" or "." or "x/..": a directory
                raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
            name = parts.popleft()
            last = not parts
            if name == "..":
                fd = _step(fd, os.open("..", _PATH_FLAGS, dir_fd=fd))
                continue
            try:
                st = os.lstat(name, dir_fd=fd)
            except FileNotFoundError:
                if last:
                    return fd, name, None
                raise FileNotFoundError(errno.ENOENT, "No such directory", path) from None
            if stat.S_ISLNK(st.st_mode):
                _check_may_follow(fd, st, path)
                links += 1
                if links > _MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, "Too many levels of symbolic links", path)
                target = os.readlink(name, dir_fd=fd)
                if not target:  # an empty link target names nothing
                    raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
                if target.startswith("/"):
                    rest = "/" + "/".join([*_split(target), *parts])
                    number = open_descriptor(rest)
                    if number is not None:
                        os.close(fd)
                        return number
                    fd = _step(fd, os.open("/", _PATH_FLAGS))
                parts.extendleft(reversed(_split(target)))
                continue
            if last:
                return fd, name, st
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
            # O_NOFOLLOW|O_DIRECTORY: a link swapped in since the lstat fails instead of being followed.
            fd = _step(fd, os.open(name, _PATH_FLAGS | os.O_NOFOLLOW, dir_fd=fd))
    except BaseException:
        os.close(fd)
        raise


def _step(old: int, new: int) -> int:
    os.close(old)
    return new


# -- the output --------------------------------------------------------------------------------------


def _temp_name(leaf: str) -> str:
    head = os.fsdecode(os.fsencode(leaf)[:_TEMP_HEAD_BYTES])
    return f".{head}.{secrets.token_hex(8)}.tmp"


class OutputTarget:
    """Where `get -o PATH` will write, judged (and PATH's directory held open) before any decryption."""

    def __init__(self, path: str, *, overwrite: bool) -> None:
        self.path = path
        self.overwrite = overwrite
        self.descriptor: int | None = None
        """The already-open descriptor PATH names (/dev/stdout...), written directly."""
        self._dir_fd: int | None = None
        self._leaf = ""
        self._special = False
        self._special_id = (0, 0)
        number = open_descriptor(path)
        resolved = _resolve(path) if number is None else number
        if isinstance(resolved, int):
            os.fstat(resolved)  # EBADF now, not after decrypting
            self.descriptor = resolved
            return
        self._dir_fd, self._leaf, st = resolved
        try:
            if st is not None and stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
            if st is not None and not stat.S_ISREG(st.st_mode):
                _check_may_use_special(self._dir_fd, st, path, "write to")
                self._special = True  # a FIFO, a terminal, /dev/null: written in place, never replaced
                self._special_id = (st.st_dev, st.st_ino)
            elif st is not None and not overwrite:
                raise FileExistsError(errno.EEXIST, "File exists (pass --overwrite to replace it)", path)
        except BaseException:
            self.close()
            raise

    @property
    def is_stdout(self) -> bool:
        return self.descriptor == 1

    def close(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def __enter__(self) -> OutputTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def open(self, size: int | None = None) -> Iterator[Sink]:
        """A binary file that becomes PATH only when the block exits cleanly (or PATH itself, if special).

        `size`, when known (the authenticated plaintext size), is reserved up front in a new file: the
        filesystem allocates its blocks at once instead of during writeback, which makes the final fsync
        cheaper (and a full disk fails before anything is decrypted into it). The file is truncated to
        what was written, so a reservation never shows as trailing zeros. A new file's writeback is
        started as it is written (`_WritebackStarter`), so the final fsync has little left to wait for."""
        if self.descriptor is not None:
            with os.fdopen(os.dup(self.descriptor), "wb") as direct:
                yield direct
            return
        assert self._dir_fd is not None, "the output target is closed"
        if self._special:
            fd = os.open(self._leaf, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._dir_fd)
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != self._special_id:  # swapped since it was judged
                os.close(fd)
                raise PermissionError(errno.EACCES, "the output file changed while it was being opened", self.path)
            with os.fdopen(fd, "wb") as direct:
                yield direct
            return
        anonymous = _open_anonymous(self._dir_fd)
        if anonymous is not None:
            with os.fdopen(anonymous, "wb") as out:
                # Only here: every filesystem with O_TMPFILE (ext4, xfs, btrfs, tmpfs) implements fallocate,
                # so glibc never falls back to writing a byte per block.
                _reserve(out.fileno(), size)
                yield _WritebackStarter(out)
                self._finish(out)
                self._publish_anonymous(out.fileno())
        else:
            with self._named_temp() as (temp, out):
                yield _WritebackStarter(out)
                self._finish(out)
                self._publish_named(temp)
        _fsync_directory(self._dir_fd)

    def _finish(self, out: BinaryIO) -> None:
        out.flush()
        os.ftruncate(out.fileno(), out.tell())  # what was written, whatever `_reserve` set aside
        mode = self._kept_mode()
        if mode is not None:
            os.fchmod(out.fileno(), mode)
        os.fsync(out.fileno())

    def _kept_mode(self) -> int | None:
        """Replacing a file of ours keeps its permission bits (like cp); anyone else's: 0600, never theirs."""
        assert self._dir_fd is not None
        try:
            st = os.lstat(self._leaf, dir_fd=self._dir_fd)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            return None
        return stat.S_IMODE(st.st_mode) & 0o777

    def _publish_anonymous(self, fd: int) -> None:
        assert self._dir_fd is not None
        source = f"/proc/self/fd/{fd}"
        if not self.overwrite:
            # Create-only: fails with EEXIST if the name appeared meanwhile; never replaces anything.
            os.link(source, self._leaf, dst_dir_fd=self._dir_fd, follow_symlinks=True)
            return
        temp = self._link_temp(source)
        self._rename_over(temp)

    def _link_temp(self, source: str) -> str:
        assert self._dir_fd is not None
        for _ in range(8):
            temp = _temp_name(self._leaf)
            try:
                os.link(source, temp, dst_dir_fd=self._dir_fd, follow_symlinks=True)
            except FileExistsError:
                continue
            return temp
        raise FileExistsError(errno.EEXIST, "cannot find a free temp name", self.path)

    def _rename_over(self, temp: str) -> None:
        assert self._dir_fd is not None
        try:
            # rename never follows a link at the destination: a link planted since is replaced, not followed.
            os.rename(temp, self._leaf, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
        except BaseException:
            with suppress(OSError):
                os.unlink(temp, dir_fd=self._dir_fd)
            raise

    @contextmanager
    def _named_temp(self) -> Iterator[tuple[str, BinaryIO]]:
        assert self._dir_fd is not None
        for _ in range(8):
            temp = _temp_name(self._leaf)
            try:
                fd = os.open(temp, _TEMP_FLAGS, 0o600, dir_fd=self._dir_fd)
            except FileExistsError:
                continue
            break
        else:
            raise FileExistsError(errno.EEXIST, "cannot find a free temp name", self.path)
        try:
            # Held until the process ends or the file is published: `gc` never removes a live one.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with os.fdopen(fd, "wb") as out:
                yield temp, out
        except BaseException:
            with suppress(OSError):
                os.unlink(temp, dir_fd=self._dir_fd)
            raise

    def _publish_named(self, temp: str) -> None:
        assert self._dir_fd is not None
        if self.overwrite:
            self._rename_over(temp)
            return
        try:
            os.link(temp, self._leaf, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd, follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            # A filesystem without hard links: check, then rename (the only create-only-ish way left).
            with suppress(FileNotFoundError):
                os.lstat(self._leaf, dir_fd=self._dir_fd)
                raise FileExistsError(errno.EEXIST, "File exists", self.path) from None
            os.rename(temp, self._leaf, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
            return
        os.unlink(temp, dir_fd=self._dir_fd)


def prepare_output(path: str, *, overwrite: bool) -> OutputTarget:
    """Judge `get -o PATH` now, before anything is decrypted (see the module docstring)."""
    return OutputTarget(path, overwrite=overwrite)


def _open_anonymous(dir_fd: int) -> int | None:
    """An unnamed 0600 file in the directory (O_TMPFILE), or None where that or /proc is missing."""
    if _O_TMPFILE is None:
        return None
    try:
        fd = os.open(".", _O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return None  # the filesystem or kernel does not support it
        raise
    if not os.path.exists(f"/proc/self/fd/{fd}"):  # linkat through /proc is how it gets a name
        os.close(fd)
        return None
    return fd


class Sink(Protocol):
    """Where `OutputTarget.open` writes: a binary file, or a new file that starts its own writeback."""

    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...

    def flush(self) -> None: ...


class _WritebackStarter:
    """Writes to a new file and starts its writeback as it goes (`envelope.storage.local.Writeback`)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._writeback = Writeback(out.fileno(), before=out.flush)

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        n = self._out.write(data)
        self._writeback.wrote(n)
        return n

    def flush(self) -> None:
        self._out.flush()


def _reserve(fd: int, size: int | None) -> None:
    """Allocate `size` bytes of a new, empty file; a filesystem that cannot is left to allocate as it writes."""
    if not size:
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise  # it would not fit: fail now, before anything is decrypted into it
        # EOPNOTSUPP, EINVAL...: no reservation, the writes allocate as usual.


def _fsync_directory(path_fd: int) -> None:
    try:
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=path_fd)
    except PermissionError:
        return  # a directory we may write but not read: the entry is there, only not yet durable
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- stale temp files (`envelope gc`) ----------------------------------------------------------------


def stale_temp_files(directory: str, older_than: float, *, remove: bool) -> list[str]:
    """Paths of `get -o`'s stale temp files (TEMP_NAME) directly in `directory`, removed when `remove`.

    The directory is reached by the same rule as `get -o`'s output (no other user's link is
    followed), and scanned and cleaned through its descriptor by the storage layer's scanner:
    nothing is looked up by path after that, so no link swapped in meanwhile is followed.
    """
    resolved = _resolve(directory)
    if isinstance(resolved, int):
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", directory)
    parent_fd, leaf, st = resolved
    try:
        if st is None:
            raise FileNotFoundError(errno.ENOENT, "No such directory", directory)
        dir_fd = os.open(leaf, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    finally:
        os.close(parent_fd)
    try:
        names = stale_temp_files_at(dir_fd, older_than, recursive=False, remove=remove)
    finally:
        os.close(dir_fd)
    return [os.path.join(directory, name) for name in names]
