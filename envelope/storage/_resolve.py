"""`openat2(2)` with `RESOLVE_NO_SYMLINKS`: open a path in one system call, refusing every symbolic link on it.

The local store opens every path below its root one directory at a time with
`O_NOFOLLOW` (four `openat` calls for `objects/dir/name`). The kernel can do
the same refusal in one call: `openat2` with `RESOLVE_NO_SYMLINKS` fails with
`ELOOP` if any component of the path, the last one included, is a symbolic
link (magic links too). Python 3.11 has no `os.openat2`, so this calls the
system call through ctypes (Linux 5.6 and later; number 437 on the
architectures listed below).

`open_no_symlinks` answers only the common case fast: the fd, or None on any
failure at all, and the caller then runs its component-by-component walk,
which raises the precise, typed error (missing, not a directory, a symlink, a
special file) exactly as before. When the call itself is refused -- an old
kernel (`ENOSYS`), a seccomp filter (`EPERM`, or `ENOSYS` in containers), a
kernel that rejects the arguments (`EINVAL`, `E2BIG`) -- it is switched off
for the process and every open takes the walk.

This module must never open a path through a symbolic link, and never raise
for a failed open (the walk is the one place errors are decided).
"""

from __future__ import annotations

import ctypes
import errno
import platform
import sys
from collections.abc import Callable
from typing import Final

__all__ = ["RESOLVE_NO_SYMLINKS", "available", "disable", "open_no_symlinks"]

RESOLVE_NO_SYMLINKS: Final = 0x04  # include/uapi/linux/openat2.h
_AT_FDCWD: Final = -100
_SYS_OPENAT2: Final = 437  # the same number on every architecture below (the unified syscall table)
_ARCHITECTURES: Final = frozenset(
    {"x86_64", "aarch64", "arm64", "armv7l", "armv8l", "i386", "i686", "riscv64", "ppc64le", "s390x"}
)
# The call itself is refused: nothing will change for this process, so stop trying.
_UNSUPPORTED: Final = frozenset({errno.ENOSYS, errno.EPERM, errno.EINVAL, errno.E2BIG})


class _OpenHow(ctypes.Structure):
    """struct open_how: flags, mode, resolve (all u64)."""

    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_HOW_SIZE: Final = ctypes.sizeof(_OpenHow)

Syscall = Callable[[int, int, bytes, int, int], int]


def _load() -> Syscall | None:
    if sys.platform != "linux" or platform.machine() not in _ARCHITECTURES:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syscall = libc.syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
    return syscall


_syscall: Syscall | None = _load()
"""The raw `syscall(2)` entry point, or None: openat2 is not available (tests replace it)."""

# One open_how per flag set, kept alive for the process: the kernel only reads it.
_hows: dict[int, tuple[_OpenHow, int]] = {}


def _how(flags: int) -> int:
    """The address of the open_how for `flags`; the struct lives as long as the process."""
    entry = _hows.get(flags)
    if entry is None:
        how = _OpenHow(flags, 0, RESOLVE_NO_SYMLINKS)
        # setdefault is atomic: racing threads all get (and the dict keeps) the one stored struct,
        # so no caller can hold the address of a struct that was replaced and freed.
        entry = _hows.setdefault(flags, (how, ctypes.addressof(how)))
    return entry[1]


def available() -> bool:
    """Whether opens try openat2 first (False: every open takes the caller's walk)."""
    return _syscall is not None


def disable() -> None:
    """Stop using openat2 in this process."""
    global _syscall
    _syscall = None


def open_no_symlinks(path: bytes, flags: int) -> int | None:
    """A new fd for the absolute `path` opened with `flags`, if no component of it is a symbolic link.

    None on any failure (the caller walks the path to find out why) and
    whenever openat2 is unavailable.
    """
    syscall = _syscall
    if syscall is None:
        return None
    fd = syscall(_SYS_OPENAT2, _AT_FDCWD, path, _how(flags), _HOW_SIZE)
    if fd >= 0:
        return fd
    if ctypes.get_errno() in _UNSUPPORTED:
        disable()
    return None
