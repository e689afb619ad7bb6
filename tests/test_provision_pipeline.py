"""Batch provisioning: KMS calls never wait for header writes, and nothing is reported created that a crash could lose.

Behaviour only (no timing): header writes are held back until every KMS call
of the batch has finished, which only a batch that hands its writes to
another pool can get through; every directory above the containers of a
batch (on their file system) is fsynced once, before the results come back,
whoever made it; a failed sync (a fault
injected between the header writes and the report) turns each container
below that directory into an error, never a success. Local stores and
LocalKms; every wait is bounded.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

import controlplane._durability as durability
from controlplane import ContainerRequest, ControlPlane
from envelope.datakey import GeneratedDataKey
from envelope.errors import StorageError
from envelope.header import HEADER_NAME
from envelope.kms import LocalKms
from envelope.storage import LocalStore

WAIT = 30.0  # seconds: a bound for waits that succeed at once unless the code under test is wrong
HOLD = 10.0  # seconds a held header write waits at most (LocalKms calls take milliseconds)


@pytest.fixture
def kms(tmp_path: Path) -> LocalKms:
    return LocalKms(tmp_path / "keystore")


@pytest.fixture
def key(kms: LocalKms) -> str:
    return kms.create_key()


class CountingKms:
    """Counts finished GenerateDataKeyWithoutPlaintext calls and the most ever in flight."""

    def __init__(self, inner: LocalKms) -> None:
        self.inner = inner
        self.provider_id = inner.provider_id
        self.finished = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.all_finished = threading.Event()
        self.expected = 0
        self._lock = threading.Lock()

    def generate_data_key_without_plaintext(self, key_id: str, **kwargs: Any) -> GeneratedDataKey:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            result: GeneratedDataKey = self.inner.generate_data_key_without_plaintext(key_id, **kwargs)
        finally:
            with self._lock:
                self.in_flight -= 1
                self.finished += 1
                if self.finished == self.expected:
                    self.all_finished.set()
        return result


class HeldStore(LocalStore):
    """A LocalStore whose writes wait (bounded) until the test lets them through."""

    def __init__(self, root: Path, release: threading.Event, held: list[bool]) -> None:
        super().__init__(root)
        self._release = release
        self._held = held

    def put_bytes(self, name: str, data: Any, *, overwrite: bool = False) -> None:
        self._held.append(self._release.wait(HOLD))
        super().put_bytes(name, data, overwrite=overwrite)


def test_kms_calls_go_on_while_header_writes_wait(tmp_path: Path, kms: LocalKms, key: str) -> None:
    counting = CountingKms(kms)
    counting.expected = 6
    release = threading.Event()
    held: list[bool] = []
    requests = [
        ContainerRequest(location=HeldStore(tmp_path / "c" / f"c{i}", release, held), key_id=key) for i in range(6)
    ]

    def let_writes_through_once_every_call_is_done() -> None:
        counting.all_finished.wait(WAIT)
        release.set()

    opener = threading.Thread(target=let_writes_through_once_every_call_is_done)
    opener.start()
    try:
        results = ControlPlane(counting).create_containers(requests, max_workers=2)
    finally:
        release.set()
        opener.join(WAIT)
    assert not opener.is_alive()
    # Six calls on two workers finished while no header could be written: the writes did not hold the workers.
    assert all(held), "a header write had to wait out the bound: the KMS calls waited for the disk"
    assert counting.max_in_flight <= 2  # still at most max_workers KMS calls at a time
    assert all(result.ok for result in results)
    assert all((tmp_path / "c" / f"c{i}" / HEADER_NAME).is_file() for i in range(6))


class RecordingOs:
    """`os` for the durability module, recording which directories are fsynced; can fail chosen ones."""

    def __init__(self, fail: set[Path] | None = None, unreadable: set[Path] | None = None) -> None:
        self.synced: list[Path] = []
        self.fail = fail or set()
        self.unreadable = unreadable or set()

    def open(self, path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(path) in self.unreadable:  # as a 0711 directory is to a non-root caller
            raise PermissionError(13, "Permission denied", str(path))
        return os.open(path, flags, *args, **kwargs)

    def fsync(self, fd: int) -> None:
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if path in self.fail:
            raise OSError(5, "injected EIO")
        self.synced.append(path)
        os.fsync(fd)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def requests_in(parent: Path, key: str, count: int) -> list[ContainerRequest]:
    return [ContainerRequest(location=str(parent / f"c{i}"), key_id=key) for i in range(count)]


def above(path: Path) -> set[Path]:
    """Every directory above `path` on its file system (what a creation there must sync)."""
    device = path.stat().st_dev
    found: set[Path] = set()
    while path.parent != path and path.parent.stat().st_dev == device:
        path = path.parent
        found.add(path)
    return found


def test_a_batch_syncs_each_directory_above_its_containers_once(
    tmp_path: Path, kms: LocalKms, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recording = RecordingOs()
    monkeypatch.setattr(durability, "os", recording)
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "made-before").mkdir()  # an existing (empty) container directory
    requests = requests_in(tmp_path / "new" / "deeper", key, 5) + requests_in(tmp_path / "existing", key, 3)
    requests.append(ContainerRequest(location=str(tmp_path / "existing" / "made-before"), key_id=key))

    results = ControlPlane(kms).create_containers(requests, max_workers=4)

    assert all(result.ok for result in results)
    # Each directory once, whoever made it: new/deeper, new, existing, tmp_path and all above it.
    expected = above(tmp_path / "new" / "deeper" / "c0") | above(tmp_path / "existing" / "c0")
    assert sorted(recording.synced) == sorted(expected)


def test_a_shared_parent_is_synced_even_when_the_request_that_made_it_failed(
    tmp_path: Path, kms: LocalKms, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack finding: the request that created a shared new directory fails its header write (disk
    full); the directory that gained that new directory's entry must still be synced before the others
    below it are reported created."""
    from envelope.storage import local

    recording = RecordingOs()
    monkeypatch.setattr(durability, "os", recording)
    real_commit = local.LocalObjectWriter.commit

    def commit(self: Any) -> None:
        if os.readlink(f"/proc/self/fd/{self._dir_fd}").endswith("/c0"):
            raise self._fail(StorageError("injected: no space left on device"))
        real_commit(self)

    monkeypatch.setattr(local.LocalObjectWriter, "commit", commit)
    results = ControlPlane(kms).create_containers(requests_in(tmp_path / "shared", key, 4), max_workers=1)

    assert isinstance(results[0].error, StorageError)
    assert all(result.ok for result in results[1:])
    assert tmp_path in recording.synced  # it holds the entry of the new directory "shared"
    assert tmp_path / "shared" in recording.synced


def test_a_create_under_a_parent_another_create_made_syncs_that_parents_entry_too(
    tmp_path: Path, kms: LocalKms, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack finding: A made root/new and has not synced root yet; B, created under root/new, must not
    be reported created unless root (which holds the entry "new") is durable -- here it cannot be."""
    root = tmp_path / "root"
    (root / "new").mkdir(parents=True)  # as A's makedirs left it: made, its entry in root not yet synced
    monkeypatch.setattr(durability, "os", RecordingOs(fail={root}))
    with pytest.raises(StorageError, match="could not be made durable"):
        ControlPlane(kms).create_container(str(root / "new" / "b"), key)


def test_a_failed_sync_reports_the_containers_below_it_as_errors(
    tmp_path: Path, kms: LocalKms, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fault sits between the header writes and the report: what a crash there could lose.
    monkeypatch.setattr(durability, "os", RecordingOs(fail={tmp_path / "lost"}))
    (tmp_path / "kept").mkdir()
    requests = requests_in(tmp_path / "lost", key, 3) + requests_in(tmp_path / "kept", key, 2)

    results = ControlPlane(kms).create_containers(requests, max_workers=3)

    for result in results[:3]:
        assert isinstance(result.error, StorageError)
        assert "could not be made durable" in str(result.error)
        assert isinstance(result.error.__cause__, OSError)
    assert all(result.ok for result in results[3:])


def test_a_single_create_syncs_every_directory_above_it_and_fails_if_it_cannot(
    tmp_path: Path, kms: LocalKms, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recording = RecordingOs()
    monkeypatch.setattr(durability, "os", recording)
    ControlPlane(kms).create_container(str(tmp_path / "a" / "c"), key)
    assert sorted(recording.synced) == sorted(above(tmp_path / "a" / "c"))

    monkeypatch.setattr(durability, "os", RecordingOs(fail={tmp_path / "b"}))
    with pytest.raises(StorageError, match="could not be made durable"):
        ControlPlane(kms).create_container(str(tmp_path / "b" / "c"), key)


def test_a_container_under_a_symlinked_directory_syncs_the_real_parents(
    tmp_path: Path, kms: LocalKms, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack finding: reached through a symbolic link, the directories above the link's *target* are
    the ones a creation (this one, or a concurrent one by the real path) made; they must be synced."""
    real = tmp_path / "y" / "deep" / "real"
    real.mkdir(parents=True)  # as a concurrent creation by the real path left them: made, not synced
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "link").symlink_to(real)
    recording = RecordingOs()
    monkeypatch.setattr(durability, "os", recording)
    ControlPlane(kms).create_container(str(tmp_path / "x" / "link" / "b"), key)
    assert above(real.resolve() / "b") <= set(recording.synced)
    assert tmp_path.resolve() / "y" / "deep" in recording.synced


def test_an_ancestor_the_caller_cannot_read_is_not_ours_to_sync(
    tmp_path: Path, kms: LocalKms, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack finding: a shared 0711 parent (such as /home) cannot be opened to fsync it; no creation of
    ours made it, so a container below it is created, not reported as failed with its header written."""
    shared = tmp_path / "shared"
    shared.mkdir()
    recording = RecordingOs(unreadable={shared})
    monkeypatch.setattr(durability, "os", recording)
    ControlPlane(kms).create_container(str(shared / "alice" / "new" / "c"), key)
    assert shared / "alice" in recording.synced and shared / "alice" / "new" in recording.synced
    assert shared not in recording.synced
