"""The directory entries a local container's creation adds above the container itself.

`LocalStore` makes a new container's directory (and any missing parents) with
`os.makedirs` when the header is written, and fsyncs the container's own
directory after linking the header into it: the header's name is durable
there. The container directory's *own* entry, in its parent, and the
entries of any parents made with it, are not fsynced by anyone. After a
crash the header could be durable inside a directory whose name was lost.

So the control plane notes, before anything is created, which directories
on the way to a local container do not exist yet, and after the header is
written fsyncs the parent of each of them (the directory that gained an
entry). A batch fsyncs each such parent once, after all its headers are
written and before any result is returned. Directories that already
existed are not ours to make durable. S3 locations have no directories.

This module must never report a parent as synced when its fsync failed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from envelope.errors import StorageError
from envelope.storage import LocalStore, Store

__all__ = ["new_entry_parents", "sync_directories"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def new_entry_parents(store: Store) -> frozenset[Path]:
    """The directories that will gain an entry when `store` (a container) is first written.

    For each directory from the container's own up to the first one that
    exists, its parent. Empty for a container directory that already exists
    and for stores that are not local.
    """
    if not isinstance(store, LocalStore):
        return frozenset()
    parents: set[Path] = set()
    path = store.path
    while not path.exists() and path.parent != path:
        parents.add(path.parent)
        path = path.parent
    return frozenset(parents)


def sync_directories(directories: Iterable[Path]) -> dict[Path, StorageError]:
    """fsync each directory once; the ones that could not be synced, with why."""
    failed: dict[Path, StorageError] = {}
    for directory in sorted(set(directories), key=lambda p: len(p.parts), reverse=True):
        try:
            fd = os.open(directory, _DIR_FLAGS)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            error = StorageError(f"the container directory's entry in {str(directory)!r} could not be made durable")
            error.__cause__ = e
            failed[directory] = error
    return failed
