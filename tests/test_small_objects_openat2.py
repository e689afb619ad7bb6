"""LocalStore opens a path with one openat2(RESOLVE_NO_SYMLINKS), or walks it: the same refusals either way.

Every case runs in four modes: the real openat2 (skipped where the kernel has
none), no openat2 at all (the walk only), and openat2 refused by the system
as an old kernel (`ENOSYS`) or a seccomp filter (`EPERM`) refuse it, which
must switch it off and fall back to the walk. The refusal semantics are the
walk's: every symbolic link below the root refused with `StorageError`,
missing objects `ObjectNotFoundError`, a FIFO never opened for long.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from envelope.errors import ObjectNotFoundError, StorageError
from envelope.storage import LocalStore, _resolve, read_small
from tests.test_storage_names import outside_unchanged

MODES = ["openat2", "walk", "enosys", "eperm"]


class Refusing:
    """A syscall entry point that refuses every call with `code`, as a kernel or seccomp filter would."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.calls = 0

    def __call__(self, *args: Any) -> int:
        self.calls += 1
        ctypes.set_errno(self.code)
        return -1


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "openat2":
        if not _resolve.available():
            pytest.skip("openat2 is not available here")
    elif request.param == "walk":
        monkeypatch.setattr(_resolve, "_syscall", None)
    else:
        monkeypatch.setattr(_resolve, "_syscall", Refusing(errno.ENOSYS if request.param == "enosys" else errno.EPERM))
    return str(request.param)


@pytest.fixture
def planted(tmp_path: Path, mode: str) -> tuple[LocalStore, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"do not touch")
    root = tmp_path / "root"
    store = LocalStore(root)
    store.put_bytes("ok/obj", b"fine")
    (root / "evil").symlink_to(outside)  # a directory symlink out of the root
    (root / "ok" / "link").symlink_to(outside / "secret")  # a file symlink out of the root
    (root / "ok" / "inside").symlink_to(root / "ok" / "obj")  # even one that stays inside
    return store, outside


OPERATIONS: list[tuple[str, Callable[[LocalStore], Any]]] = [
    ("read_small-through-dir", lambda s: s.read_small("evil/secret", 1 << 20)),
    ("read_small-of-large-through-dir", lambda s: s.read_small("evil/secret", 0)),
    ("read_small-leaf", lambda s: s.read_small("ok/link", 1 << 20)),
    ("read_small-leaf-inside", lambda s: s.read_small("ok/inside", 1 << 20)),
    ("get_bytes-through-dir", lambda s: s.get_bytes("evil/secret")),
    ("get_bytes-leaf", lambda s: s.get_bytes("ok/link")),
    ("open_reader-through-dir", lambda s: s.open_reader("evil/secret")),
    ("open_reader-leaf", lambda s: s.open_reader("ok/link")),
    ("put-through-dir", lambda s: s.put_bytes("evil/new", b"x")),
    ("put-deeper-through-dir", lambda s: s.open_writer("evil/deeper/new")),
    ("overwrite-through-dir", lambda s: s.put_bytes("evil/secret", b"x", overwrite=True)),
    ("put-over-leaf", lambda s: s.put_bytes("ok/link", b"x")),
    ("overwrite-leaf", lambda s: s.put_bytes("ok/link", b"x", overwrite=True)),
    ("put-under-a-leaf-link", lambda s: s.put_bytes("ok/link/x", b"x")),
]


@pytest.mark.parametrize("operation", [op for _, op in OPERATIONS], ids=[name for name, _ in OPERATIONS])
def test_every_symlink_below_the_root_is_refused_in_every_mode(
    planted: tuple[LocalStore, Path], operation: Callable[[LocalStore], Any]
) -> None:
    store, outside = planted
    with pytest.raises(StorageError, match="symbolic link"):
        operation(store)
    outside_unchanged(outside)
    assert store.read_small("ok/obj", 1 << 20) == b"fine"


def test_missing_objects_directories_and_specials_fail_alike_in_every_mode(tmp_path: Path, mode: str) -> None:
    store = LocalStore(tmp_path / "root")
    store.put_bytes("dir/obj", b"x")
    os.mkfifo(tmp_path / "root" / "dir" / "fifo")
    for name in ("dir/missing", "missing/obj", "dir", "dir/obj/below"):
        with pytest.raises(ObjectNotFoundError):
            store.read_small(name, 1 << 20)
        with pytest.raises(ObjectNotFoundError):
            store.open_reader(name)
    with pytest.raises(StorageError, match="not a regular file"):
        store.read_small("dir/fifo", 1 << 20)  # O_NONBLOCK: never hangs
    with pytest.raises(StorageError, match="is an object, not a directory"):
        store.put_bytes("dir/obj/below", b"x")
    assert store.read_small("dir/obj", 1 << 20) == b"x"


def test_the_root_itself_may_be_a_symlink_in_every_mode(tmp_path: Path, mode: str) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    store = LocalStore(tmp_path / "alias")
    store.put_bytes("a/b", b"x")  # the caller chose this path; only what is below it is guarded
    store.substore("a").put_bytes("c", b"y")
    assert (real / "a" / "b").read_bytes() == b"x"
    assert store.read_small("a/b", 10) == b"x"
    assert store.substore("a").read_small("c", 10) == b"y"


def test_read_small_reads_small_objects_whole_and_hands_a_reader_for_larger_ones(tmp_path: Path, mode: str) -> None:
    store = LocalStore(tmp_path / "root")
    store.put_bytes("a/small", b"12345")
    store.put_bytes("a/empty", b"")
    assert store.read_small("a/small", 5) == b"12345"
    assert store.read_small("a/empty", 0) == b""
    reader = store.read_small("a/small", 4)
    assert not isinstance(reader, bytes)
    with reader:
        assert reader.size == 5
        buf = bytearray(5)
        assert reader.readinto_at(0, memoryview(buf)) == 5
        assert bytes(buf) == b"12345"
    assert read_small(store.substore("a"), "small", 5) == b"12345"


def test_the_fast_path_opens_without_walking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not _resolve.available():
        pytest.skip("openat2 is not available here")
    store = LocalStore(tmp_path / "root")
    store.put_bytes("a/b/c", b"x")
    objects = store.substore("a")

    def no_walk(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the directory walk ran")

    monkeypatch.setattr(LocalStore, "_walk", no_walk)
    assert objects.read_small("b/c", 10) == b"x"
    with objects.open_reader("b/c") as reader:
        assert reader.size == 1
    objects.put_bytes("b/d", b"y")  # the directory exists: opened in one call as well
    assert objects.read_small("b/d", 10) == b"y"


def test_a_refused_openat2_is_switched_off_after_one_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refusing = Refusing(errno.ENOSYS)
    monkeypatch.setattr(_resolve, "_syscall", refusing)
    store = LocalStore(tmp_path / "root")
    store.put_bytes("a/b", b"x")
    for _ in range(3):
        assert store.read_small("a/b", 10) == b"x"
    assert refusing.calls == 1
    assert not _resolve.available()


def test_an_ordinary_failure_does_not_switch_openat2_off(tmp_path: Path) -> None:
    if not _resolve.available():
        pytest.skip("openat2 is not available here")
    store = LocalStore(tmp_path / "root")
    store.put_bytes("a/b", b"x")
    (tmp_path / "root" / "a" / "link").symlink_to(tmp_path / "root" / "a" / "b")
    with pytest.raises(StorageError, match="symbolic link"):
        store.read_small("a/link", 10)  # ELOOP
    with pytest.raises(ObjectNotFoundError):
        store.read_small("a/missing", 10)  # ENOENT
    assert _resolve.available()


class _ColdTwice(dict[int, Any]):
    """The `_hows` table as two racing threads see it on a cold start: both find no entry."""

    def __init__(self) -> None:
        super().__init__()
        self.misses = 2

    def get(self, key: int, default: Any = None) -> Any:  # type: ignore[override]
        if self.misses:
            self.misses -= 1
            return default
        return super().get(key, default)


def test_racing_first_opens_are_all_handed_the_one_struct_the_table_keeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two threads that both miss the table on a cold start build a struct each; both must be handed the
    address of the one the table keeps alive (handing out the other would give the kernel freed memory:
    flags and resolve bits it never meant, RESOLVE_NO_SYMLINKS possibly among the lost)."""
    table = _ColdTwice()
    monkeypatch.setattr(_resolve, "_hows", table)
    flags = os.O_RDONLY | os.O_CLOEXEC
    first, second = _resolve._how(flags), _resolve._how(flags)
    kept, kept_address = table[flags]
    assert first == second == kept_address == ctypes.addressof(kept)
    assert (kept.flags, kept.mode, kept.resolve) == (flags, 0, _resolve.RESOLVE_NO_SYMLINKS)
    assert _resolve._how(flags) == kept_address  # warm: the same struct, never replaced
