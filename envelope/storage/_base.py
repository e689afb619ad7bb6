"""The storage contract both planes write through.

A `Store` is rooted at one location (a directory, or an S3 bucket + prefix).
Names are relative, `/`-separated, validated by `validate_name` before any
I/O. Guarantees every implementation keeps:

- create-only writes never replace an existing object (`ObjectExistsError`);
- a streamed object becomes visible only when its writer commits; an abort,
  an exception or a crash leaves nothing visible under that name;
- readers are seekable: the size is known and any range can be read.

Errors are typed (envelope.errors): `ValidationError` for bad arguments
(before any I/O), `ObjectExistsError`, `ObjectNotFoundError`,
`ObjectTooLargeError` (more than `max_size`), and `StorageError` for every
other backend failure, with the cause chained.
Stores and readers may be shared between threads; writers may not.

This module defines shapes, the writer life cycle and `BaseStore` (the
operations every store derives from a few primitives); it must never do I/O
itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, Self, runtime_checkable

from envelope.errors import ObjectNotFoundError, ObjectTooLargeError, StorageError, ValidationError
from envelope.storage.names import validate_directory_prefix, validate_name, validate_prefix

BytesLike = bytes | bytearray | memoryview

__all__ = [
    "ABORTED",
    "COMMITTED",
    "BaseStore",
    "FAILED",
    "OPEN",
    "BytesLike",
    "ObjectWriter",
    "ObjectReader",
    "RandomAccessReader",
    "Store",
    "StickyWriterState",
    "as_byte_view",
    "read_prefix",
    "read_small",
]

OPEN, COMMITTED, ABORTED, FAILED = "open", "committed", "aborted", "failed"


class StickyWriterState:
    """The life cycle both stores' writers share: open, then committed, aborted or failed.

    Errors are sticky: once `_record_failure` ran, every later `_check_open`
    raises that same error; any other finished state refuses further use.
    """

    _name: str
    _state: str
    _error: BaseException | None

    def _start(self, name: str) -> None:
        self._name = name
        self._state = OPEN
        self._error = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r}, state={self._state})"

    def _check_open(self) -> None:
        if self._state == FAILED and self._error is not None:
            raise self._error
        if self._state != OPEN:
            raise StorageError(f"writer for {self._name!r} is already {self._state}")

    def _record_failure(self, error: BaseException) -> None:
        self._state = FAILED
        self._error = error

    def commit(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        """commit() on a clean exit, abort() on an exception; nothing if already finished."""
        if self._state != OPEN:
            return
        if exc and exc[0] is not None:
            self.abort()
        else:
            self.commit()


class BaseStore:
    """The `Store` operations that are the same for every store, written once.

    A store implements the primitives (`open_writer`, `open_reader`, `size`,
    `delete`, `substore`, `url`, `_read_all`, `_list`, `_list_children`) and
    may override `_put` (default: one writer). Everything here validates its
    arguments before calling a primitive, and does no I/O of its own. The
    primitives validate the names they are given before any I/O too:
    `Container` relies on that and does not check a name a second time.
    """

    def open_writer(self, name: str, *, overwrite: bool = False) -> ObjectWriter:
        raise NotImplementedError

    def size(self, name: str) -> int:
        raise NotImplementedError

    def open_reader(self, name: str) -> ObjectReader:
        raise NotImplementedError

    def read_small(self, name: str, limit: int) -> bytes | ObjectReader:
        """The whole object if it is at most `limit` bytes, else an open reader over it (the caller closes it).

        One open serves both cases, so a caller that handles small objects
        whole pays nothing extra for a large one. The name is validated here,
        before any I/O. A store may override this to read a small object with
        fewer requests (LocalStore: one open and one read).
        """
        validate_name(name)
        return _read_small_through(self.open_reader(name), limit)

    def put_bytes(self, name: str, data: BytesLike, *, overwrite: bool = False) -> None:
        validate_name(name)
        self._put(name, as_byte_view(data), overwrite=overwrite)

    def _put(self, name: str, view: memoryview, *, overwrite: bool) -> None:
        with self.open_writer(name, overwrite=overwrite) as writer:
            writer.write(view)

    def get_bytes(self, name: str, *, max_size: int | None = None) -> bytes:
        validate_name(name)
        if max_size is not None and (not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 0):
            raise ValidationError("max_size must be a non-negative int or None")
        return self._read_all(name, max_size)

    def _read_all(self, name: str, max_size: int | None) -> bytes:
        """The whole object; `_check_max_size` before reading any of its body."""
        raise NotImplementedError

    @staticmethod
    def _check_max_size(name: str, size: int, max_size: int | None) -> None:
        if max_size is not None and size > max_size:
            raise ObjectTooLargeError(f"{name!r} is {size} bytes, more than max_size={max_size}")

    def exists(self, name: str) -> bool:
        try:
            self.size(name)
        except ObjectNotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[str]:
        raise NotImplementedError

    def list_children(self, prefix: str = "") -> Iterator[str]:
        validate_directory_prefix(prefix)
        return self._list_children(prefix)

    def _list_children(self, prefix: str) -> Iterator[str]:
        raise NotImplementedError


def read_small(store: Store, name: str, limit: int) -> bytes | ObjectReader:
    """`BaseStore.read_small` for any `Store`: a store without the method is read through `open_reader`."""
    if isinstance(store, BaseStore):
        return store.read_small(name, limit)
    validate_name(name)
    return _read_small_through(store.open_reader(name), limit)


def _read_small_through(reader: ObjectReader, limit: int) -> bytes | ObjectReader:
    size = reader.size
    if size > limit:
        return reader
    with reader:
        return read_prefix(reader, size)


def read_prefix(reader: RandomAccessReader, length: int) -> bytes:
    """The first `length` bytes of an object by positional reads; fewer only if it ends sooner."""
    buf = bytearray(length)
    got = 0
    with memoryview(buf) as view:
        while got < length:
            n = reader.readinto_at(got, view[got:])
            if n <= 0:
                break  # shorter than its size said: the caller sees the bytes there are
            got += n
    return bytes(buf) if got == length else bytes(buf[:got])


def as_byte_view(data: BytesLike) -> memoryview:
    """A flat unsigned-byte view of `data` without copying it (ValidationError if that is impossible)."""
    try:
        view = memoryview(data)
    except TypeError:
        raise ValidationError(f"expected a bytes-like object, not {type(data).__name__}") from None
    if view.format == "B" and view.ndim == 1 and view.c_contiguous:
        return view
    try:
        return view.cast("B")
    except TypeError:
        raise ValidationError("data must be a C-contiguous bytes-like object") from None


class ObjectWriter(Protocol):
    """A create-only (or overwriting) streaming write. Invisible until `commit()`."""

    def write(self, data: BytesLike, /) -> int:
        """Append bytes (bytes, bytearray or memoryview); returns the number of bytes.

        The bytes are consumed or copied before this returns, so the caller may reuse its buffer.
        After a failure every later write/commit raises the same error (errors are sticky).
        """
        ...

    def commit(self) -> None:
        """Make the object visible atomically. Raises ObjectExistsError in create-only mode.

        A second commit after a successful one does nothing.
        """
        ...

    def abort(self) -> None:
        """Discard everything written. Idempotent; safe after a failed commit."""
        ...

    def __enter__(self) -> ObjectWriter: ...

    def __exit__(self, *exc: object) -> None:
        """commit() on a clean exit, abort() on an exception."""
        ...


class RandomAccessReader(Protocol):
    """Positional reads from one immutable object of known size."""

    @property
    def size(self) -> int: ...

    def readinto_at(self, offset: int, buf: memoryview, /) -> int:
        """Fill buf from offset; returns bytes read (fewer only at end of object)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> RandomAccessReader: ...

    def __exit__(self, *exc: object) -> None: ...


class ObjectReader(RandomAccessReader, Protocol):
    """A store's reader: positional reads of one stored version of an object."""

    @property
    def version(self) -> str:
        """An opaque token for the version this reader reads (S3: its ETag; locally inode and mtime).

        Pass it as `open_writer(..., if_match=version)` to replace exactly this version.
        """
        ...


@runtime_checkable
class Store(Protocol):
    """A flat namespace of objects under one root."""

    @property
    def url(self) -> str:
        """Where this store lives, as a URL (``file:///...`` or ``s3://bucket/prefix``)."""
        ...

    def put_bytes(self, name: str, data: BytesLike, *, overwrite: bool = False) -> None: ...

    def get_bytes(self, name: str, *, max_size: int | None = None) -> bytes:
        """The whole object; StorageError (without reading it) if it is larger than max_size."""
        ...

    def open_writer(self, name: str, *, overwrite: bool = False, if_match: str | None = None) -> ObjectWriter:
        """A streaming write of `name`, create-only unless `overwrite`.

        With `if_match` (a reader's `version`; implies overwrite) the commit
        replaces the object only if it is still that version, else raises
        `ObjectChangedError` and publishes nothing: a concurrent overwrite or
        delete is never lost.
        """
        ...

    def open_reader(self, name: str) -> ObjectReader: ...

    def exists(self, name: str) -> bool: ...

    def size(self, name: str) -> int: ...

    def delete(self, name: str) -> None:
        """Remove an object; ObjectNotFoundError if it is not there."""
        ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Every object name starting with prefix (recursively), in sorted order."""
        ...

    def list_children(self, prefix: str = "") -> Iterator[str]:
        """Immediate children under a directory-like prefix ('' or ending in '/'):
        object names, and sub-prefixes ending in '/'. Like S3's Delimiter='/'."""
        ...

    def substore(self, prefix: str) -> Store:
        """A store rooted at prefix (a validated name) below this one."""
        ...
