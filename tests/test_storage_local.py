"""LocalStore specifics: crash safety under SIGKILL, temp files, durability steps, layout."""

from __future__ import annotations

import gc
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from envelope.errors import StorageError, ValidationError
from envelope.storage import LocalStore

REPO = Path(__file__).resolve().parents[1]

# Writes NAME in CHUNKS chunks of 256 KiB, reporting each one, slowly enough to be killed mid-write.
SLOW_WRITER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from envelope.storage import LocalStore
store, name, chunks = LocalStore(sys.argv[2]), sys.argv[3], int(sys.argv[4])
chunk = bytes(range(256)) * 1024
writer = store.open_writer(name)
print("open", flush=True)
for i in range(chunks):
    writer.write(memoryview(chunk))
    print(i, flush=True)
    time.sleep(0.002)
writer.commit()
print("committed", flush=True)
"""

CHUNK = bytes(range(256)) * 1024


def start_writer(root: Path, name: str, chunks: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(REPO), str(root), name, str(chunks)],
        stdout=subprocess.PIPE,
        text=True,
    )


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if p.is_file()]


def test_sigkill_mid_write_leaves_nothing_visible_and_disturbs_nothing(tmp_path: Path) -> None:
    rng = random.Random(1234)
    root = tmp_path / "store"
    store = LocalStore(root)
    earlier = {f"earlier/{i}": os.urandom(1000 + i) for i in range(5)}
    for name, data in earlier.items():
        store.put_bytes(name, data)
    name, chunks = "deep/dir/victim.bin", 40
    kills = 20
    for _ in range(kills):
        proc = start_writer(root, name, chunks)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "open"
        stop_after = rng.randrange(chunks - 1)  # never lets it reach commit
        for _ in range(stop_after + 1):
            proc.stdout.readline()
        time.sleep(rng.random() * 0.002)  # somewhere inside the next os.write or sleep
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        proc.stdout.close()

        assert not store.exists(name)
        assert name not in list(store.list())
        assert list(store.list_children("deep/dir/")) == []
        for earlier_name, data in earlier.items():
            assert store.get_bytes(earlier_name) == data
        assert list(store.list()) == sorted(earlier)

    # Each killed writer left exactly one (unlisted) temp file; their locks died with them.
    assert len(temp_files(root)) == kills
    assert store.cleanup_stale_temp_files(older_than=0) == kills
    assert temp_files(root) == []
    # And the name is free for a normal create-only write.
    store.put_bytes(name, b"finally")
    assert store.get_bytes(name) == b"finally"


def test_sigkill_at_any_moment_is_all_or_nothing(tmp_path: Path) -> None:
    rng = random.Random(99)
    root = tmp_path / "store"
    store = LocalStore(root)
    chunks = 4
    for attempt in range(10):
        name = f"maybe/{attempt}"
        proc = start_writer(root, name, chunks)
        assert proc.stdout is not None
        proc.stdout.readline()  # opened
        time.sleep(rng.random() * 0.02)  # anywhere from the first write to after the commit
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if store.exists(name):
            assert store.get_bytes(name) == CHUNK * chunks
        else:
            assert name not in list(store.list())


def test_cleanup_never_removes_a_live_writers_temp_file(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = LocalStore(root)
    writer = store.open_writer("a/b")
    writer.write(b"in progress")
    (temp,) = temp_files(root)
    old = time.time() - 10 * 86_400
    os.utime(temp, (old, old))  # looks abandoned by age alone
    assert store.cleanup_stale_temp_files(older_than=60) == 0
    assert temp.exists()
    writer.commit()
    assert store.get_bytes("a/b") == b"in progress"
    assert temp_files(root) == []


def test_cleanup_removes_only_old_unlocked_temp_files(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = LocalStore(root)
    store.put_bytes("d/obj", b"x")
    stale = root / "d" / ".obj.0123456789abcdef.tmp"
    fresh = root / "d" / ".obj.fedcba9876543210.tmp"
    foreign = root / "d" / ".keep"  # dot file that is not ours
    other_shape = root / "d" / ".obj.tmp"
    for path in (stale, fresh, foreign, other_shape):
        path.write_bytes(b"junk")
    old = time.time() - 7200
    for path in (stale, foreign, other_shape):
        os.utime(path, (old, old))
    assert store.cleanup_stale_temp_files(older_than=3600) == 1
    assert not stale.exists()
    assert fresh.exists() and foreign.exists() and other_shape.exists()
    assert list(store.list()) == ["d/obj"]
    with pytest.raises(ValidationError):
        store.cleanup_stale_temp_files(older_than=-1)


def test_temp_file_lives_next_to_the_target_and_is_never_listed(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = LocalStore(root)
    writer = store.open_writer("x/y/z.bin")
    (temp,) = temp_files(root)
    assert temp.parent == root / "x" / "y"
    assert temp.name.startswith(".z.bin.") and temp.name.endswith(".tmp")
    assert list(store.list()) == []
    assert list(store.list_children()) == []  # a directory with only a temp file is no prefix
    writer.abort()
    assert temp_files(root) == []


def test_long_names_still_get_a_valid_temp_name(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    name = "é" * 127 + "x"  # a 255-byte segment: the longest allowed
    store.put_bytes(name, b"ok")
    assert store.get_bytes(name) == b"ok"


def test_an_abandoned_writer_removes_its_temp_file(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = LocalStore(root)
    writer = store.open_writer("gone")
    writer.write(b"x")
    del writer
    gc.collect()
    assert temp_files(root) == []
    assert not store.exists("gone")


def test_commit_fsyncs_the_file_before_publishing_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "store")
    events: list[str] = []
    real_fsync, real_link, real_unlink = os.fsync, os.link, os.unlink

    def fsync(fd: int) -> None:
        events.append("fsync dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync file")
        real_fsync(fd)

    def link(*args: object, **kwargs: object) -> None:
        events.append("link")
        real_link(*args, **kwargs)  # type: ignore[arg-type]

    def unlink(*args: object, **kwargs: object) -> None:
        events.append("unlink")
        real_unlink(*args, **kwargs)  # type: ignore[arg-type]

    writer = store.open_writer("f")
    writer.write(b"data")
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "unlink", unlink)
    writer.commit()
    assert events == ["fsync file", "link", "unlink", "fsync dir"]


def test_a_writer_starts_writeback_every_8_mib_and_a_refused_hint_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store writer hands each 8 MiB it has written to the kernel's writeback as it goes (the
    disk works while the next bytes are sealed); the hint never replaces the fsync at commit, and
    a file system that refuses it is written exactly the same."""
    from envelope.storage.local import WRITEBACK_BYTES
    from tests.support.fadvise import record_fadvise, refuse_fadvise

    assert WRITEBACK_BYTES == 8 << 20  # the expected calls below are worked out for it
    store = LocalStore(tmp_path / "store")
    data = os.urandom(20 << 20 | 4321)  # 3 MiB writes: the 8 MiB step is crossed at 9 and 18 MiB
    calls = record_fadvise(monkeypatch)
    writer = store.open_writer("f")
    for start in range(0, len(data), 3 << 20):  # writes that do not line up with the 8 MiB steps
        writer.write(data[start : start + (3 << 20)])
    writer.commit()
    dontneed = os.POSIX_FADV_DONTNEED
    assert calls == [(0, 9 << 20, dontneed), (9 << 20, 9 << 20, dontneed)]
    assert store.get_bytes("f") == data

    refuse_fadvise(monkeypatch)
    with store.open_writer("g") as writer:
        writer.write(data)
    assert store.get_bytes("g") == data


def test_a_write_interrupted_between_partial_writes_is_never_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack finding: os.write wrote half, then a KeyboardInterrupt arrived before the rest; a caller
    that catches it and commits must get an error, and nothing may be published."""
    store = LocalStore(tmp_path / "store")
    writer = store.open_writer("f")
    real_write = os.write
    calls = []

    def half_then_interrupt(fd: int, data: Any) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "write", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        writer.write(b"x" * 1000)
    monkeypatch.setattr(os, "write", real_write)
    with pytest.raises(StorageError, match="interrupted"):
        writer.commit()
    with pytest.raises(StorageError):
        writer.write(b"more")
    assert not store.exists("f")
    assert not [p for p in (tmp_path / "store").iterdir() if p.name.endswith(".tmp")]


def test_a_failed_write_is_sticky_and_publishes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "store"
    store = LocalStore(root)
    writer = store.open_writer("full-disk")
    writer.write(b"first part")

    def enospc(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", enospc)
    with pytest.raises(StorageError) as first:
        writer.write(b"second part")
    assert isinstance(first.value.__cause__, OSError)
    monkeypatch.undo()
    with pytest.raises(StorageError) as again:
        writer.write(b"more")
    assert again.value is first.value
    with pytest.raises(StorageError):
        writer.commit()
    assert not store.exists("full-disk")
    assert temp_files(root) == []


def test_an_object_where_a_directory_is_needed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_bytes("a", b"object")
    with pytest.raises(StorageError, match="not a directory"):
        store.put_bytes("a/b", b"x")
    store.put_bytes("c/d", b"x")
    with pytest.raises(StorageError):
        store.put_bytes("c", b"x", overwrite=True)  # 'c' is a prefix of other objects
    assert store.get_bytes("a") == b"object"


def test_url_and_bad_roots(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "with space")
    assert store.url == (tmp_path / "with space").as_uri()
    assert "%20" in store.url
    with pytest.raises(ValidationError):
        LocalStore("")
    with pytest.raises(ValidationError):
        LocalStore("a\x00b")


def test_nothing_is_created_by_reads_or_listing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "absent")
    assert not store.exists("a/b")
    assert list(store.list()) == []
    assert list(store.list_children()) == []
    assert store.cleanup_stale_temp_files() == 0
    assert not (tmp_path / "absent").exists()
