"""The directory entries a local container's creation adds above the container itself.

`LocalStore` makes a new container's directory (and any missing parents) with
`os.makedirs` when the header is written, and fsyncs the container's own
directory after linking the header into it: the header's name is durable
there. The container directory's *own* entry, in its parent, and the
entries of any parents made with it, are not fsynced by anyone. After a
crash the header could be durable inside a directory whose name was lost.

Which of those directories this creation made cannot be told reliably:
another creation (a thread of this process, or another process) may have
made a shared parent a moment earlier and not synced it yet. So once the
header is written, the control plane fsyncs every directory above the
container on the container's file system, up to that file system's root (a
clean directory's fsync costs tens of microseconds); a batch fsyncs each
such directory once, after all its headers are written and before any
result is returned. S3 locations have no directories.

This module must never report a directory as synced when its fsync failed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from envelope.errors import StorageError
from envelope.storage import LocalStore, Store

__all__ = ["entry_parents", "sync_directories"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def entry_parents(store: Store) -> frozenset[Path]:
    """Every directory above the local container `store`, up to its file system's root.

    Called once the header is written (the container directory exists). A
    directory that cannot be looked at is included: its sync fails and says
    so. Empty for stores that are not local.
    """
    if not isinstance(store, LocalStore):
        return frozenset()
    # The real path: the store writes through any symbolic link in its root, so the directories it
    # made are the target's (a concurrent creation may have reached them by another path).
    path = Path(os.path.realpath(store.path))
    try:
        device: int | None = os.stat(path).st_dev
    except OSError:
        device = None
    parents: set[Path] = set()
    while path.parent != path:
        path = path.parent
        try:
            if device is not None and os.stat(path).st_dev != device:
                break  # a mount point's parent: another file system, not ours to sync
        except OSError:
            pass
        parents.add(path)
    return frozenset(parents)


def sync_directories(directories: Iterable[Path]) -> dict[Path, StorageError]:
    """fsync each directory once; the ones that could not be synced, with why."""
    failed: dict[Path, StorageError] = {}
    for directory in sorted(set(directories), key=lambda p: len(p.parts), reverse=True):
        try:
            fd = os.open(directory, _DIR_FLAGS)
        except PermissionError:
            # Not readable by us (a shared 0711 parent such as /home): not a directory this or any
            # creation of ours made (they are made readable by their creator), so not ours to sync.
            continue
        except OSError as e:
            failed[directory] = _not_durable(directory, e)
            continue
        try:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            failed[directory] = _not_durable(directory, e)
    return failed


def _not_durable(directory: Path, cause: OSError) -> StorageError:
    error = StorageError(f"the container directory's entry in {str(directory)!r} could not be made durable")
    error.__cause__ = cause
    return error
