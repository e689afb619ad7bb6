"""The local-filesystem store: one regular file per object under a root directory.

Writes go to a dot-prefixed temp file in the target's directory, are fsynced,
and are then published with `link` (create-only) or `rename` (overwrite),
after which the directory is fsynced. A crash at any point therefore leaves
either nothing or the complete object under the name, plus at most a stray
temp file that listings never show and `cleanup_stale_temp_files` removes.

Every path below the root is walked one component at a time with
directory file descriptors opened `O_NOFOLLOW`, so no object name (already
validated by `names.validate_name`) and no symbolic link planted inside the
root can make this module read, write or delete anything outside the root.
The root path itself is the caller's choice and is trusted as given.

This module must never follow a symlink below the root, never publish a
partly written file under an object name, never list a temp file, and never
remove a temp file that a live writer still holds.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

from envelope.errors import ObjectChangedError, ObjectExistsError, ObjectNotFoundError, StorageError, ValidationError
from envelope.storage import _resolve
from envelope.storage._base import (
    ABORTED,
    COMMITTED,
    OPEN,
    BaseStore,
    BytesLike,
    ObjectReader,
    StickyWriterState,
    as_byte_view,
)
from envelope.storage.names import is_valid_name, validate_name

__all__ = [
    "WRITEBACK_BYTES",
    "LocalObjectWriter",
    "LocalReader",
    "LocalStore",
    "Writeback",
    "check_encodable_path",
    "stale_temp_files_at",
]

_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted under an object name must not hang the caller.
_READ_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TEMP_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_MODE: Final = 0o666  # narrowed by the process umask, like any file the caller creates
_DIR_MODE: Final = 0o777

# '.<up to 200 bytes of the leaf>.<16 hex>.tmp' stays under NAME_MAX (255) for any valid leaf.
_TEMP_LEAF_BYTES: Final = 200
_TEMP_RE: Final = re.compile(r"\A\..*\.[0-9a-f]{16}\.tmp\Z", re.DOTALL)

# A concurrent delete may prune a directory between our mkdir and our use of it.
_CREATE_ATTEMPTS: Final = 8


def check_encodable_path(path: str) -> str:
    """`path`, if the filesystem encoding can encode it; else ValidationError.

    A str path holding a lone surrogate (other than the ones `surrogateescape`
    makes of undecodable bytes) names no file at all, and every OS call on it
    would raise UnicodeEncodeError at some later, arbitrary point.
    """
    try:
        os.fsencode(path)
    except UnicodeEncodeError:
        raise ValidationError(
            f"the local path cannot be encoded with the filesystem encoding ({sys.getfilesystemencoding()})"
        ) from None
    return path


def local_version(st: os.stat_result) -> str:
    """A file's version token: every publish is a new inode, and a reused inode has a new mtime."""
    return f"{st.st_dev:x}:{st.st_ino:x}:{st.st_mtime_ns:x}:{st.st_size:x}"


@contextlib.contextmanager
def _directory_lock(dir_fd: int) -> Iterator[None]:
    """The lock every replace and delete in one directory takes (flock on the directory itself)."""
    fcntl.flock(dir_fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(dir_fd, fcntl.LOCK_UN)


def _temp_name(leaf: str) -> str:
    head = leaf.encode("utf-8")[:_TEMP_LEAF_BYTES].decode("utf-8", errors="ignore")
    return f".{head}.{secrets.token_hex(8)}.tmp"


def _read_whole(fd: int, size: int, name: str) -> bytes:
    """The `size` bytes of an open object (one pread unless the kernel returns less)."""
    chunks: list[bytes] = []
    got = 0
    try:
        while got < size:
            chunk = os.pread(fd, size - got, got)
            if not chunk:
                raise StorageError(f"{name!r} shrank while it was being read")
            chunks.append(chunk)
            got += len(chunk)
    except OSError as e:
        raise StorageError(f"cannot read {name!r}") from e
    return b"".join(chunks) if len(chunks) != 1 else chunks[0]


def _close_all(fds: list[int]) -> None:
    for fd in reversed(fds):
        with contextlib.suppress(OSError):
            os.close(fd)


_FdChain = list[int]  # open directory fds from the root down; the last one is the target directory


class _NotFound(Exception):
    """Internal: a path component is missing or is an object where a directory was expected."""


def _blocking_component(parent_fd: int, segment: str, name: str) -> bool:
    """Explain why `segment` could not be opened as a directory.

    Returns True if it has vanished (a race with a delete), False if it is an
    object (a regular file); raises StorageError for a symlink or anything else.
    """
    try:
        st = os.stat(segment, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return True
    except OSError as e:
        raise StorageError(f"cannot inspect a path component of {name!r}") from e
    if stat.S_ISLNK(st.st_mode):
        raise StorageError(f"refusing to follow a symbolic link in the path of {name!r}")
    if stat.S_ISREG(st.st_mode):
        return False
    raise StorageError(f"a path component of {name!r} is not a directory")


class LocalStore(BaseStore):
    """Objects stored as files under `root` (see the module docstring for the guarantees).

    Safe to share between threads and processes: it keeps no open files.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        path = os.fspath(root)
        if not isinstance(path, str) or not path:
            raise ValidationError("LocalStore root must be a non-empty str path")
        if "\x00" in path:
            raise ValidationError("LocalStore root must not contain NUL")
        check_encodable_path(path)
        self._root = os.path.abspath(path)
        self._base: tuple[str, ...] = ()
        self._fs_base = os.fsencode(self._root)

    # -- identity -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return Path(self._root, *self._base).as_uri()

    @property
    def path(self) -> Path:
        """The directory this store's names are relative to."""
        return Path(self._root, *self._base)

    def __repr__(self) -> str:
        return f"LocalStore({self.url!r})"

    def substore(self, prefix: str) -> LocalStore:
        validate_name(prefix)
        child = LocalStore.__new__(LocalStore)
        # Keep the original root: the substore's segments are walked with O_NOFOLLOW like any name.
        child._root = self._root
        child._base = self._base + tuple(prefix.split("/"))
        child._fs_base = os.fsencode(os.path.join(self._root, *child._base))
        return child

    # -- directory walking ----------------------------------------------------------------

    def _open_root(self, *, create: bool) -> int:
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        try:
            return os.open(self._root, flags)
        except FileNotFoundError:
            if not create:
                raise _NotFound from None
        except OSError as e:
            raise StorageError(f"cannot open the store root {self._root!r}") from e
        try:
            os.makedirs(self._root, mode=_DIR_MODE, exist_ok=True)
            return os.open(self._root, flags)
        except OSError as e:
            raise StorageError(f"cannot create the store root {self._root!r}") from e

    def _open_fast(self, relative: str, flags: int) -> int | None:
        """`relative` (below the base) opened with `flags` in one openat2 that refuses every symlink on the
        whole path, the root's included; None on any failure: the caller walks, which decides the error
        (and accepts symlinks in the root path itself, which is the caller's choice)."""
        path = self._fs_base + b"/" + os.fsencode(relative) if relative else self._fs_base
        return _resolve.open_no_symlinks(path, flags)

    def _walk(self, segments: list[str], *, create: bool, name: str) -> _FdChain:
        """Open root/base/segments one directory at a time; return the chain of fds (caller closes).

        Read mode raises _NotFound for a missing component; create mode makes it.
        """
        chain = [self._open_root(create=create)]
        try:
            for segment in (*self._base, *segments):
                chain.append(self._open_child_dir(chain[-1], segment, create=create, name=name))
        except BaseException:
            _close_all(chain)
            raise
        return chain

    def _open_child_dir(self, parent_fd: int, segment: str, *, create: bool, name: str) -> int:
        for _ in range(_CREATE_ATTEMPTS):
            try:
                return os.open(segment, _DIR_FLAGS, dir_fd=parent_fd)
            except FileNotFoundError:
                if not create:
                    raise _NotFound from None
            except NotADirectoryError:
                vanished = _blocking_component(parent_fd, segment, name)
                if not create:
                    raise _NotFound from None
                if vanished:
                    continue  # removed between open and stat by a concurrent delete: try again
                raise StorageError(f"a path component of {name!r} is an object, not a directory") from None
            except OSError as e:
                raise StorageError(f"cannot open a directory in the path of {name!r}") from e
            try:
                os.mkdir(segment, _DIR_MODE, dir_fd=parent_fd)
                # The new entry must survive a crash before anything inside it is published.
                os.fsync(parent_fd)
            except FileExistsError:
                pass
            except OSError as e:
                raise StorageError(f"cannot create a directory in the path of {name!r}") from e
        raise StorageError(f"the path of {name!r} kept changing while it was being created")

    def _leaf_stat(self, dir_fd: int, leaf: str, name: str) -> os.stat_result | None:
        """The object's stat, None when there is no object by that name; symlinks and specials fail loudly."""
        try:
            st = os.stat(leaf, dir_fd=dir_fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise StorageError(f"cannot stat {name!r}") from e
        if stat.S_ISREG(st.st_mode):
            return st
        if stat.S_ISDIR(st.st_mode):
            return None  # a prefix of other names, not an object
        if stat.S_ISLNK(st.st_mode):
            raise StorageError(f"refusing to follow a symbolic link at {name!r}")
        raise StorageError(f"{name!r} is not a regular file")

    # -- writes ---------------------------------------------------------------------------

    def open_writer(self, name: str, *, overwrite: bool = False, if_match: str | None = None) -> LocalObjectWriter:
        validate_name(name)
        if if_match is not None and not isinstance(if_match, str):
            raise ValidationError("if_match must be a version string from a reader")
        *parents, leaf = name.split("/")
        for _ in range(_CREATE_ATTEMPTS):
            dir_fd = self._open_fast("/".join(parents), _DIR_FLAGS)
            if dir_fd is None:  # missing (to be created), refused, or no openat2: the walk decides
                chain = self._walk(parents, create=True, name=name)
                dir_fd = chain.pop()
                _close_all(chain)
            temp = _temp_name(leaf)
            try:
                fd = os.open(temp, _TEMP_FLAGS, _FILE_MODE, dir_fd=dir_fd)
            except FileNotFoundError:
                os.close(dir_fd)  # the directory was pruned under us: walk again
                continue
            except OSError as e:
                os.close(dir_fd)
                raise StorageError(f"cannot create a temp file for {name!r}") from e
            try:
                # The lock tells cleanup_stale_temp_files this temp file belongs to a live writer.
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                os.close(dir_fd)
                raise StorageError(f"cannot lock the temp file for {name!r}") from e
            return LocalObjectWriter(
                name, dir_fd, fd, temp, leaf, overwrite=overwrite or if_match is not None, if_match=if_match
            )
        raise StorageError(f"the directory of {name!r} kept disappearing while creating a temp file")

    # -- reads ----------------------------------------------------------------------------

    def _open_object(self, name: str) -> tuple[int, int]:
        """Open an object read-only; return (fd, size)."""
        fd, st = self._open_object_stat(name)
        return fd, st.st_size

    def _open_object_stat(self, name: str) -> tuple[int, os.stat_result]:
        """Open an object read-only; return (fd, its fstat): one fstat serves size, type and version."""
        validate_name(name)
        fd = self._open_fast(name, _READ_FLAGS)
        if fd is None:
            fd = self._walk_to_object(name)
        try:
            st = os.fstat(fd)
        except OSError as e:
            os.close(fd)
            raise StorageError(f"cannot stat {name!r}") from e
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            if stat.S_ISDIR(st.st_mode):
                raise ObjectNotFoundError(f"no object named {name!r}")  # a prefix, not an object
            raise StorageError(f"{name!r} is not a regular file")
        return fd, st

    def _walk_to_object(self, name: str) -> int:
        """Open an object read-only by walking its path one directory at a time; the typed errors live here."""
        *parents, leaf = name.split("/")
        try:
            chain = self._walk(parents, create=False, name=name)
        except _NotFound:
            raise ObjectNotFoundError(f"no object named {name!r}") from None
        try:
            return os.open(leaf, _READ_FLAGS, dir_fd=chain[-1])
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(f"no object named {name!r}") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise StorageError(f"refusing to follow a symbolic link at {name!r}") from e
            raise StorageError(f"cannot open {name!r}") from e
        finally:
            _close_all(chain)

    def open_reader(self, name: str) -> LocalReader:
        fd, st = self._open_object_stat(name)
        return LocalReader(name, fd, st.st_size, local_version(st))

    def read_small(self, name: str, limit: int) -> bytes | ObjectReader:
        """One open, one fstat and (for an object of at most `limit` bytes) one read; else a reader."""
        fd, st = self._open_object_stat(name)
        if st.st_size > limit:
            return LocalReader(name, fd, st.st_size, local_version(st))
        try:
            return _read_whole(fd, st.st_size, name)
        finally:
            os.close(fd)

    def _read_all(self, name: str, max_size: int | None) -> bytes:
        fd, size = self._open_object(name)
        try:
            self._check_max_size(name, size, max_size)
            return _read_whole(fd, size, name)
        finally:
            os.close(fd)

    def _stat_object(self, name: str) -> os.stat_result | None:
        validate_name(name)
        *parents, leaf = name.split("/")
        try:
            chain = self._walk(parents, create=False, name=name)
        except _NotFound:
            return None
        try:
            return self._leaf_stat(chain[-1], leaf, name)
        finally:
            _close_all(chain)

    def size(self, name: str) -> int:
        st = self._stat_object(name)
        if st is None:
            raise ObjectNotFoundError(f"no object named {name!r}")
        return st.st_size

    # -- delete ---------------------------------------------------------------------------

    def delete(self, name: str) -> None:
        validate_name(name)
        *parents, leaf = name.split("/")
        try:
            chain = self._walk(parents, create=False, name=name)
        except _NotFound:
            raise ObjectNotFoundError(f"no object named {name!r}") from None
        try:
            if self._leaf_stat(chain[-1], leaf, name) is None:
                raise ObjectNotFoundError(f"no object named {name!r}")
            try:
                # unlink never follows a symlink, so a swap after the stat cannot reach outside.
                # Under the directory's lock: a conditional replace never resurrects a deleted object.
                with _directory_lock(chain[-1]):
                    os.unlink(leaf, dir_fd=chain[-1])
                os.fsync(chain[-1])
            except FileNotFoundError:
                raise ObjectNotFoundError(f"no object named {name!r}") from None
            except OSError as e:
                raise StorageError(f"cannot delete {name!r}") from e
            self._prune(chain, parents)
        finally:
            _close_all(chain)

    def _prune(self, chain: _FdChain, parents: list[str]) -> None:
        # Remove directories the delete left empty, like S3 where a prefix exists only through
        # its objects. Never the root or a substore's base. Writers retry if we race them.
        for depth in range(len(parents), 0, -1):
            parent_fd = chain[len(self._base) + depth - 1]
            try:
                os.rmdir(parents[depth - 1], dir_fd=parent_fd)
            except OSError:
                return

    # -- listing --------------------------------------------------------------------------

    def _list(self, prefix: str) -> Iterator[str]:
        directory, _, leaf_prefix = prefix.rpartition("/")
        chain = self._open_listing_dir(directory)
        if chain is None:
            return
        try:
            yield from self._walk_objects(chain[-1], directory + "/" if directory else "", leaf_prefix)
        finally:
            _close_all(chain)

    def _list_children(self, prefix: str) -> Iterator[str]:
        chain = self._open_listing_dir(prefix.removesuffix("/"))
        if chain is None:
            return
        try:
            for entry, is_dir in _entries(chain[-1]):
                if not is_dir:
                    if is_valid_name(prefix + entry):
                        yield prefix + entry
                elif self._has_object(chain[-1], entry, prefix + entry + "/"):
                    yield prefix + entry + "/"
        finally:
            _close_all(chain)

    def _open_listing_dir(self, directory: str) -> _FdChain | None:
        try:
            return self._walk(directory.split("/") if directory else [], create=False, name=directory)
        except _NotFound:
            return None

    def _walk_objects(self, dir_fd: int, rel: str, leaf_prefix: str) -> Iterator[str]:
        for entry, is_dir in _entries(dir_fd):
            if not entry.startswith(leaf_prefix):
                continue
            if not is_dir:
                if is_valid_name(rel + entry):
                    yield rel + entry
                continue
            sub = _open_listed_dir(dir_fd, entry)
            if sub is None:
                continue
            try:
                yield from self._walk_objects(sub, rel + entry + "/", "")
            finally:
                os.close(sub)

    def _has_object(self, parent_fd: int, entry: str, rel: str) -> bool:
        # A directory holding only temp files or emptied directories is not a prefix of any object.
        return next(iter(self._walk_objects_at(parent_fd, entry, rel)), None) is not None

    def _walk_objects_at(self, parent_fd: int, entry: str, rel: str) -> Iterator[str]:
        sub = _open_listed_dir(parent_fd, entry)
        if sub is None:
            return
        try:
            yield from self._walk_objects(sub, rel, "")
        finally:
            os.close(sub)

    # -- maintenance ----------------------------------------------------------------------

    def cleanup_stale_temp_files(self, older_than: float = 3600.0) -> int:
        """Remove temp files left by crashed writers; return how many were removed.

        Only dot-prefixed `*.<16 hex>.tmp` regular files last modified at least
        `older_than` seconds ago are candidates, and a candidate is removed only
        if no live writer holds its lock (a writer keeps its temp file locked
        until it commits or aborts; the kernel drops the lock when a process dies).
        """
        return len(self.stale_temp_files(older_than, remove=True))

    def stale_temp_files(self, older_than: float = 3600.0, *, remove: bool = False) -> list[str]:
        """The store's stale temp files (paths relative to its root), removed when `remove`."""
        if not isinstance(older_than, int | float) or older_than < 0:
            raise ValidationError("older_than must be a non-negative number of seconds")
        try:
            chain = self._walk([], create=False, name="")
        except _NotFound:
            return []
        try:
            return stale_temp_files_at(chain[-1], older_than, recursive=True, remove=remove)
        finally:
            _close_all(chain)


def stale_temp_files_at(dir_fd: int, older_than: float, *, recursive: bool, remove: bool) -> list[str]:
    """Temp files (dot-prefixed `*.<16 hex>.tmp`) under the directory `dir_fd` that are regular files,
    unmodified for `older_than` seconds and held by no live writer; removed when `remove`.

    Works relative to directory descriptors only: no symbolic link is followed, and a name swapped
    between the check and the unlink is left alone. The one scanner for the stores and the CLI.
    """
    found: list[str] = []
    _scan_stale(dir_fd, "", time.time() - older_than, recursive=recursive, remove=remove, found=found)
    return found


def _scan_stale(dir_fd: int, rel: str, cutoff: float, *, recursive: bool, remove: bool, found: list[str]) -> None:
    try:
        with os.scandir(dir_fd) as it:
            entries = [(e.name, e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False)) for e in it]
    except OSError as e:
        raise StorageError("cannot list a directory") from e
    for entry, is_dir, is_file in sorted(entries):
        if is_dir and recursive and not entry.startswith("."):
            sub = _open_listed_dir(dir_fd, entry)
            if sub is not None:
                try:
                    _scan_stale(sub, f"{rel}{entry}/", cutoff, recursive=True, remove=remove, found=found)
                finally:
                    os.close(sub)
        elif is_file and _TEMP_RE.match(entry) and _stale_at(dir_fd, entry, cutoff, remove=remove):
            found.append(rel + entry)


def _stale_at(dir_fd: int, entry: str, cutoff: float, *, remove: bool) -> bool:
    try:
        fd = os.open(entry, _READ_FLAGS, dir_fd=dir_fd)
    except OSError:
        return False  # gone, or replaced by something we will not touch
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_mtime > cutoff:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a live writer holds it
        if not remove:
            return True
        # Unlink by name only if the name still refers to the inode we locked.
        now = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return False
        os.unlink(entry, dir_fd=dir_fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _entries(dir_fd: int) -> list[tuple[str, bool]]:
    """A directory's candidate entries as (name, is_dir), in the order their full names sort.

    Dot entries (temp files), symlinks, specials and names that are not valid
    segments are skipped. Sorting a directory by `name + "/"` places it exactly
    where its descendants fall among its siblings, so a depth-first walk yields
    full names in the same order as S3 (code-point order equals UTF-8 byte order).
    """
    result: list[tuple[str, str, bool]] = []
    try:
        with os.scandir(dir_fd) as it:
            for e in it:
                entry = e.name
                if entry.startswith("."):
                    continue
                if e.is_dir(follow_symlinks=False):
                    is_dir = True
                elif e.is_file(follow_symlinks=False):
                    is_dir = False
                else:
                    continue
                try:
                    validate_name(entry)
                except ValidationError:
                    continue
                result.append((entry + "/" if is_dir else entry, entry, is_dir))
    except OSError as e:
        raise StorageError("cannot list a store directory") from e
    result.sort()
    return [(entry, is_dir) for _, entry, is_dir in result]


def _open_listed_dir(parent_fd: int, entry: str) -> int | None:
    try:
        return os.open(entry, _DIR_FLAGS, dir_fd=parent_fd)
    except (FileNotFoundError, NotADirectoryError):
        return None  # removed or swapped (e.g. for a symlink) since it was listed: skip it
    except OSError as e:
        raise StorageError("cannot open a store directory") from e


WRITEBACK_BYTES: Final = 8 << 20


class Writeback:
    """Starts the kernel's writeback of a new file's bytes every `WRITEBACK_BYTES` written.

    `posix_fadvise(POSIX_FADV_DONTNEED)` on a range just written starts writing its dirty pages
    without waiting for them (pages still dirty or under writeback stay cached). The disk then works
    while the caller produces the next bytes, instead of all of it in the final fsync. Only a
    hint: durability still comes from that fsync, and a file system that refuses the hint changes
    nothing.
    """

    __slots__ = ("_before", "_fd", "_pending", "_start")

    def __init__(self, fd: int, *, before: Callable[[], object] | None = None) -> None:
        self._fd = fd
        self._before = before  # e.g. a buffered file's flush: the hint is about bytes the file holds
        self._start = 0
        self._pending = 0

    def wrote(self, n: int) -> None:
        """Count `n` more bytes written at the end of the file."""
        self._pending += n
        if self._pending >= WRITEBACK_BYTES:
            if self._before is not None:
                self._before()
            with contextlib.suppress(OSError):
                os.posix_fadvise(self._fd, self._start, self._pending, os.POSIX_FADV_DONTNEED)
            self._start += self._pending
            self._pending = 0


class LocalObjectWriter(StickyWriterState):
    """Streams into a locked temp file; `commit` fsyncs and publishes it under the name.

    Not thread-safe. Errors are sticky: after a failed write or commit every
    later write/commit raises the same error; `abort` is always safe.
    """

    def __init__(
        self, name: str, dir_fd: int, fd: int, temp: str, leaf: str, *, overwrite: bool, if_match: str | None = None
    ) -> None:
        self._start(name)
        self._dir_fd = dir_fd
        self._fd = fd
        self._temp = temp
        self._leaf = leaf
        self._overwrite = overwrite
        self._if_match = if_match
        self._writeback = Writeback(fd)

    def _fail(self, error: BaseException) -> BaseException:
        self._record_failure(error)
        self._discard()
        return error

    def write(self, data: BytesLike, /) -> int:
        self._check_open()
        view = as_byte_view(data)
        total = view.nbytes
        try:
            # One os.write per (possibly partial) write: no buffering, no copies of the caller's bytes.
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as e:
            raise self._fail(StorageError(f"cannot write {self._name!r}")) from e
        except BaseException:
            # Interrupted between two partial writes (KeyboardInterrupt, a signal handler's
            # exception): part of `data` is in the file, so the object must never be committed.
            self._fail(StorageError(f"a write of {self._name!r} was interrupted"))
            raise
        self._writeback.wrote(total)  # the disk works while the next bytes are sealed
        return total

    def commit(self) -> None:
        if self._state == COMMITTED:
            return
        self._check_open()
        try:
            self._publish()
        except StorageError as e:
            if self._state == COMMITTED:
                # Published but not known durable: report it and keep the object (it is complete).
                self._close_fds()
                raise
            self._fail(e)
            raise
        self._close_fds()

    def _publish(self) -> None:
        # StorageError subclasses are also OSError subclasses: translate OSError at each call only.
        try:
            os.fsync(self._fd)  # the bytes must be durable before any name points at them
        except OSError as e:
            raise StorageError(f"cannot flush {self._name!r}") from e
        if self._overwrite:
            # Every replace and delete in a directory takes its lock, so a conditional replace's
            # check and rename are one step as far as any other writer of this store can see.
            with _directory_lock(self._dir_fd):
                self._check_replaceable()
                if self._if_match is not None:
                    self._check_version()
                try:
                    os.rename(self._temp, self._leaf, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
                except OSError as e:
                    raise StorageError(f"cannot publish {self._name!r}") from e
        else:
            try:
                os.link(self._temp, self._leaf, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd, follow_symlinks=False)
            except FileExistsError:
                self._check_replaceable()
                raise ObjectExistsError(f"an object named {self._name!r} already exists") from None
            except OSError as e:
                raise StorageError(f"cannot publish {self._name!r}") from e
        self._state = COMMITTED
        try:
            if not self._overwrite:
                os.unlink(self._temp, dir_fd=self._dir_fd)
            os.fsync(self._dir_fd)  # make the new directory entry itself durable
        except OSError as e:
            raise StorageError(f"{self._name!r} was published but could not be made durable") from e

    def _check_replaceable(self) -> None:
        try:
            st = os.stat(self._leaf, dir_fd=self._dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise StorageError(f"refusing to replace a symbolic link at {self._name!r}")
        if stat.S_ISDIR(st.st_mode):
            raise StorageError(f"{self._name!r} is a prefix of other objects (a directory), not an object")
        if not stat.S_ISREG(st.st_mode):
            raise StorageError(f"{self._name!r} is not a regular file")

    def _check_version(self) -> None:
        try:
            st = os.stat(self._leaf, dir_fd=self._dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise ObjectChangedError(f"{self._name!r} was deleted since it was read; nothing was written") from None
        except OSError as e:
            raise StorageError(f"cannot stat {self._name!r}") from e
        if local_version(st) != self._if_match:
            raise ObjectChangedError(f"{self._name!r} changed since it was read; nothing was written")

    def abort(self) -> None:
        if self._state == OPEN:
            self._state = ABORTED
        self._discard()

    def _discard(self) -> None:
        if self._fd >= 0:
            # If this fails the temp file is already gone or cleanup_stale_temp_files will get it.
            with contextlib.suppress(OSError):
                os.unlink(self._temp, dir_fd=self._dir_fd)
        self._close_fds()

    def _close_fds(self) -> None:
        for attr in ("_fd", "_dir_fd"):
            fd = getattr(self, attr)
            if fd >= 0:
                setattr(self, attr, -1)
                with contextlib.suppress(OSError):
                    os.close(fd)

    def __del__(self) -> None:
        # An abandoned writer must not leave a locked temp file behind for the life of the process.
        if getattr(self, "_fd", -1) >= 0 and getattr(self, "_state", None) != COMMITTED:
            self._discard()


class LocalReader:
    """Positional reads from one open file. Holds its fd until `close`; safe to share between threads."""

    def __init__(self, name: str, fd: int, size: int, version: str) -> None:
        self._name = name
        self._fd = fd
        self._version = version
        # Fixed at open: the fd keeps the same inode even if the name is later overwritten.
        self._size = size

    def __repr__(self) -> str:
        return f"LocalReader({self._name!r}, size={self._size})"

    @property
    def size(self) -> int:
        return self._size

    @property
    def version(self) -> str:
        return self._version

    def readinto_at(self, offset: int, buf: memoryview, /) -> int:
        if self._fd < 0:
            raise ValidationError(f"reader for {self._name!r} is closed")
        if not isinstance(offset, int) or offset < 0:
            raise ValidationError("offset must be a non-negative int")
        view = as_byte_view(buf)
        if view.readonly:
            raise ValidationError("buf must be writable")
        want = max(0, min(view.nbytes, self._size - offset))
        got = 0
        try:
            while got < want:
                n = os.preadv(self._fd, [view[got:want]], offset + got)
                if n == 0:
                    raise StorageError(f"{self._name!r} shrank while it was being read")
                got += n
        except OSError as e:
            raise StorageError(f"cannot read {self._name!r}") from e
        return got

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> LocalReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            self.close()
