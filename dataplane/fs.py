"""`EnvelopeFileSystem`: one container as an fsspec filesystem (protocol ``envelope``).

Data tools that speak fsspec (pandas, pyarrow, DuckDB, Dask) read and write
a container's objects as files: ``envelope://reports/q3.parquet`` with
``storage_options={"container": ..., "kms": ...}``. Paths are object names;
directories are implied by ``/`` in names, as on S3.

- sizes (`info`, `ls`) are plaintext sizes, computed from each message header
  and the stored size without a key; they are not authenticated until the
  object is read (an open file's ``size`` is: it verifies the final frame);
- ``open("rb")`` wraps `Container.open_reader`: seekable, it fetches and
  decrypts only the frames a read touches (ranged GETs on S3), and it has no
  cache of its own beyond the reader's one verified frame, so no tool ever
  receives a byte that did not authenticate (``block_size``, ``cache_type``
  and ``cache_options`` are accepted and ignored);
- ``open("wb")`` wraps `Container.open_writer`: streaming, bounded memory,
  create-only unless the filesystem's ``overwrite`` option is set; the object
  appears only when the file is closed cleanly (see `EnvelopeWriteFile`).

A filesystem pickles as its storage options only (fsspec's own reduce): no
key, credential or client ever travels. Each process opens the container
through `ContainerSpec.open`, once, so one KMS Decrypt per container per
process serves every instance and thread there.

This module must never hand out plaintext that did not authenticate, and
never keep key material in anything it pickles or reprs.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import secrets
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, NoReturn

from botocore.exceptions import BotoCoreError, ClientError
from fsspec.spec import AbstractFileSystem

from dataplane.bulk import PREFETCH_MAX, ContainerSpec, ReadPlan, reads_planned_by
from dataplane.format import FINAL_FRAME_OVERHEAD, REGULAR_FRAME_OVERHEAD, body_layout, read_header
from dataplane.stream import MessageReader, MessageWriter
from envelope.errors import EnvelopeError, ObjectNotFoundError, StorageError, ValidationError
from envelope.storage import LocalStore, S3Store, Store, validate_name

__all__ = ["EnvelopeFileSystem", "EnvelopeReadFile", "EnvelopeWriteFile"]

RANDOM_ACCESS_WINDOW = 64 << 10
"""The S3 read-ahead window of a filesystem (unless read_ahead / max_read_ahead are given): header reads
cost 64 KiB and every frame is fetched by an exact ranged GET."""
MIN_PREFETCH = 64 << 10
MAX_PREFETCH = 256 << 20
_SIZE_THREADS = 8  # concurrent header reads when an S3 listing needs plaintext sizes
_WRITE_MODES = {"wb": True, "xb": False}  # mode -> whether the fs-level overwrite option applies
_SPEC_OPTIONS = frozenset(a.name for a in ContainerSpec.__attrs_attrs__) - {"location", "kms"}


def _not_found(path: str) -> ObjectNotFoundError:
    return ObjectNotFoundError(f"no object or directory {path!r} in this container")


class EnvelopeFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """A container's objects as an fsspec filesystem.

    Storage options (DESIGN §13): ``container`` (a path, ``file://`` or
    ``s3://`` URL), ``kms`` (``"local:PATH"`` or ``"aws"``), ``region``,
    ``profile``, ``endpoint_url``, ``key_ids`` / ``discovery`` /
    ``discovery_accounts`` / ``discovery_partition`` (whom to trust, §11),
    ``expect_context`` / ``container_id`` (what the header must say),
    ``frame_length``, ``allow_unbound``, ``grant_tokens``, ``read_ahead`` /
    ``max_read_ahead`` (the S3 store's window, 64 KiB here by default),
    ``prefetch`` (how much of a large read is fetched per ranged GET, and
    held, per open file; default 8 MiB) and ``overwrite`` (let writes
    replace existing objects). Anything else is a
    `ValidationError`: there is no option for credentials.
    """

    protocol: ClassVar[str] = "envelope"
    root_marker: ClassVar[str] = ""
    cachable: ClassVar[bool] = True

    def __init__(
        self,
        container: str | None = None,
        kms: str | None = None,
        *,
        overwrite: bool = False,
        prefetch: int = PREFETCH_MAX,
        **options: Any,
    ) -> None:
        if container is None or kms is None:
            raise ValidationError("the envelope filesystem needs the container= and kms= storage options")
        unknown = sorted(set(options) - _SPEC_OPTIONS)
        if unknown:
            raise ValidationError(f"unknown envelope storage option(s): {', '.join(unknown)}")
        if not isinstance(overwrite, bool):
            raise ValidationError("overwrite must be True or False")
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or not MIN_PREFETCH <= prefetch <= MAX_PREFETCH:
            raise ValidationError(f"prefetch must be an integer from {MIN_PREFETCH} to {MAX_PREFETCH} bytes")
        self.prefetch = prefetch
        # Tools read Parquet footers and column chunks, not streams: fetch exactly the frames a read
        # needs instead of a read-ahead window that grows past the end of a column chunk.
        if "read_ahead" not in options and "max_read_ahead" not in options:
            options = {**options, "read_ahead": RANDOM_ACCESS_WINDOW, "max_read_ahead": RANDOM_ACCESS_WINDOW}
        self.spec = ContainerSpec(location=container, kms=kms, **options)
        self.overwrite = overwrite
        super().__init__()

    def __repr__(self) -> str:
        return f"<EnvelopeFileSystem {self.spec.location} kms={self.spec.kms.split(':', 1)[0]}>"

    # -- paths --

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path) if not isinstance(path, str) else path
        for marker in ("envelope://", "envelope::"):
            if path.startswith(marker):
                path = path[len(marker) :]
        return path.strip("/")

    @classmethod
    def _parent(cls, path: str) -> str:
        path = cls._strip_protocol(path)
        return path.rsplit("/", 1)[0] if "/" in path else ""

    def unstrip_protocol(self, name: str) -> str:
        return name if name.startswith("envelope://") else f"envelope://{name}"

    # -- metadata --

    def _objects(self) -> Store:
        return self.spec.objects()

    def _file_entry(self, name: str) -> dict[str, Any]:
        """name/size/type of one object; the size is its plaintext size (from the header, no key)."""
        objects = self._objects()
        plane = self.spec.plane()
        with objects.open_reader(name) as source:
            header = read_header(source, plane.limits)
            layout = body_layout(header, source.size, plane.limits)
            encrypted = source.size
        return {
            "name": name,
            "size": layout.plaintext_size,
            "type": "file",
            "encrypted_size": encrypted,
            "frame_length": layout.frame_length,
        }

    def _entries(self, names: Sequence[str], *, sizes: bool) -> list[dict[str, Any]]:
        if not sizes:
            return [{"name": n, "size": None, "type": "file"} for n in names]

        def entry(name: str) -> dict[str, Any]:
            try:
                return self._file_entry(name)
            except ObjectNotFoundError:
                raise
            except EnvelopeError:
                # A header that does not parse: listed, size unknown; reading it will fail authentication.
                return {"name": name, "size": None, "type": "file"}

        if isinstance(self._objects(), S3Store) and len(names) > 1:
            with ThreadPoolExecutor(min(_SIZE_THREADS, len(names)), thread_name_prefix="envelope-fs-size") as pool:
                return list(pool.map(entry, names))
        return [entry(n) for n in names]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        name = self._strip_protocol(path)
        if not name:
            return {"name": "", "size": 0, "type": "directory"}
        validate_name(name)
        try:
            return self._file_entry(name)
        except ObjectNotFoundError:
            pass
        if next(iter(self.spec.open().list(name + "/")), None) is not None:
            return {"name": name, "size": 0, "type": "directory"}
        raise _not_found(name)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        name = self._strip_protocol(path)
        prefix = name + "/" if name else ""
        if name:
            validate_name(name)
        children = list(self._objects().list_children(prefix))
        if not children:
            if name and self._objects().exists(name):
                return [self.info(name)] if detail else [name]
            if name:
                raise _not_found(name)
            return []
        if not detail:
            return [c.removesuffix("/") for c in children]
        files = [c for c in children if not c.endswith("/")]
        by_name = {e["name"]: e for e in self._entries(files, sizes=kwargs.get("_plaintext_sizes", True))}
        out: list[dict[str, Any]] = []
        for child in children:
            if child.endswith("/"):
                out.append({"name": child.removesuffix("/"), "size": 0, "type": "directory"})
            else:
                out.append(by_name[child])
        return out

    def find(
        self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False, **kwargs: Any
    ) -> Any:
        name = self._strip_protocol(path)
        if maxdepth is not None and (isinstance(maxdepth, bool) or not isinstance(maxdepth, int) or maxdepth < 1):
            raise ValidationError("maxdepth must be an integer >= 1")
        if name:
            validate_name(name)
        prefix = name + "/" if name else ""
        files: list[str] = []
        dirs: set[str] = set()
        for obj in self.spec.open().list(prefix):
            parts = obj[len(prefix) :].split("/")
            if maxdepth is not None and len(parts) > maxdepth:
                if withdirs:
                    dirs.update(prefix + "/".join(parts[:i]) for i in range(1, maxdepth + 1))
                continue
            files.append(obj)
            if withdirs:
                dirs.update(prefix + "/".join(parts[:i]) for i in range(1, len(parts)))
        if not files and not dirs and name and self._objects().exists(name):
            files = [name]
        if withdirs and name and (files or dirs) and files != [name]:
            dirs.add(name)
        if not detail:
            return sorted([*files, *dirs])
        entries = {e["name"]: e for e in self._entries(files, sizes=kwargs.get("_plaintext_sizes", True))}
        entries.update({d: {"name": d, "size": 0, "type": "directory"} for d in dirs})
        return {k: entries[k] for k in sorted(entries)}

    def glob(self, path: str, maxdepth: int | None = None, **kwargs: Any) -> Any:
        # Matching needs names and types only: read headers for sizes only when details were asked for.
        if not kwargs.get("detail"):
            kwargs["_plaintext_sizes"] = False
        return super().glob(path, maxdepth=maxdepth, **kwargs)

    def exists(self, path: str, **kwargs: Any) -> bool:
        name = self._strip_protocol(path)
        if not name:
            return True
        try:
            validate_name(name)
        except ValidationError:
            return False
        if self._objects().exists(name):
            return True
        return next(iter(self.spec.open().list(name + "/")), None) is not None

    def isfile(self, path: str) -> bool:
        name = self._strip_protocol(path)
        try:
            return bool(name) and self._objects().exists(validate_name(name))
        except ValidationError:
            return False

    def size(self, path: str) -> int | None:
        size: int | None = self.info(path)["size"]
        return size

    # -- directories are implied by names --

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Nothing to do: a directory exists as soon as an object is written under it."""

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        """Nothing to do: a directory exists as soon as an object is written under it."""

    def rmdir(self, path: str) -> None:
        """Nothing to do: a directory disappears with its last object."""

    # -- deleting --

    def rm_file(self, path: str) -> None:
        self.spec.open().delete(validate_name(self._strip_protocol(path)))

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        paths = path if isinstance(path, list) else [path]
        container = self.spec.open()
        for p in paths:
            name = self._strip_protocol(p)
            if not name:
                if not recursive:
                    raise ValidationError("removing the whole container needs recursive=True")
                targets = list(container.list(""))
            else:
                validate_name(name)
                is_file = self._objects().exists(name)
                below = self.find(name, maxdepth=maxdepth) if recursive else []
                targets = [n for n in below if n != name]
                if is_file:
                    targets.append(name)
                elif not recursive and next(iter(container.list(name + "/")), None) is not None:
                    raise ValidationError(f"{name!r} is a directory: pass recursive=True to remove what is under it")
                elif not targets:
                    raise _not_found(name)
            for target in targets:
                container.delete(target)

    # -- reading and writing --

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        with self.open(path, "rb") as f:
            size = f.size if (start is not None and start < 0) or (end is not None and end < 0) else None
            begin = 0 if start is None else (max(0, size + start) if start < 0 and size is not None else start)
            if end is None:
                f.seek(begin)
                return bytes(f.read())
            stop = size + end if end < 0 and size is not None else end
            if stop <= begin:
                return b""
            f.seek(begin)
            return bytes(f.read(stop - begin))

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        """Write `value` as one object; replaces an existing one only with the fs's ``overwrite`` option."""
        if mode not in ("overwrite", "create"):
            raise ValidationError("pipe_file mode must be 'overwrite' or 'create'")
        with self.open(path, "xb" if mode == "create" else "wb") as f:
            f.write(value)

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        """fsspec's `open`; text modes get a wrapper that, when dropped unclosed, publishes nothing.

        fsspec wraps a text mode's binary file in `io.TextIOWrapper`, whose finalizer closes (and
        so would publish) a file its writer abandoned halfway. Ours aborts it instead, like a
        dropped binary file.
        """
        if "b" in mode or "r" in mode:
            return super().open(path, mode, **kwargs)
        text = {k: kwargs.pop(k) for k in ("encoding", "errors", "newline") if k in kwargs}
        binary = super().open(path, mode.replace("t", "") + "b", **kwargs)
        if not isinstance(binary, EnvelopeWriteFile):  # compressed: the codec's finalizer is fsspec's
            return io.TextIOWrapper(binary, **text)
        return _DiscardingTextWrapper(binary, **text)

    def get_file(self, rpath: str, lpath: Any = None, callback: Any = None, outfile: Any = None, **kwargs: Any) -> None:
        """Copy an object's plaintext to a local file that appears only once every frame authenticated.

        The plaintext goes to a 0600 temp file created (O_EXCL, O_NOFOLLOW) next to `lpath` and is
        renamed over it at the end: a failure leaves no partial plaintext (fsspec's caching layers,
        e.g. ``simplecache::``, take any file present as complete), and the rename replaces a
        symbolic link at `lpath` rather than writing through it.
        """
        if outfile is not None or not isinstance(lpath, str | os.PathLike):
            return super().get_file(rpath, lpath, callback=callback, outfile=outfile, **kwargs)  # type: ignore[no-any-return]
        target = os.fspath(lpath)
        if self.isdir(rpath):
            os.makedirs(target, exist_ok=True)
            return None
        directory = os.path.dirname(os.path.abspath(target)) or "."
        os.makedirs(directory, exist_ok=True)
        temp = os.path.join(directory, f".{os.path.basename(target)[:200]}.{secrets.token_hex(8)}.envelope-tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out, self.open(rpath, "rb", **kwargs) as source:
                if callback is not None:
                    callback.set_size(getattr(source, "size", None))
                while data := source.read(self.blocksize):
                    out.write(data)
                    if callback is not None:
                        callback.relative_update(len(data))
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        return None

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> EnvelopeReadFile | EnvelopeWriteFile:
        name = validate_name(self._strip_protocol(path))
        if not autocommit:
            raise ValidationError("the envelope filesystem has no transactions: each object commits on close")
        container = self.spec.open()
        if mode == "rb":
            plan = ReadPlan(0, 0, piece=self.prefetch)  # nothing planned until the first read says what it needs
            with reads_planned_by(plan):
                reader = container.open_reader(name)
            return EnvelopeReadFile(self, name, reader, plan)
        if mode in _WRITE_MODES:
            overwrite = self.overwrite and _WRITE_MODES[mode]
            return EnvelopeWriteFile(self, name, container.open_writer(name, overwrite=overwrite))
        raise ValidationError(f"mode {mode!r} is not supported: use 'rb', 'wb' or 'xb' (objects are immutable)")

    def modified(self, path: str) -> datetime.datetime:
        """When the stored object was last written (DuckDB keys its caches on it)."""
        name = validate_name(self._strip_protocol(path))
        objects = self._objects()
        if isinstance(objects, S3Store):
            client = self.spec.s3_client()
            assert client is not None, "an S3 container has an S3 client"
            try:
                head = client.head_object(Bucket=objects.bucket, Key=objects.prefix + name)
            except (BotoCoreError, ClientError) as exc:
                if not objects.exists(name):
                    raise _not_found(name) from None
                raise StorageError(f"cannot read the modification time of {name!r}") from exc
            stamp: datetime.datetime = head["LastModified"]
            return stamp
        if isinstance(objects, LocalStore):
            try:
                mtime = (objects.path / name).stat().st_mtime
            except FileNotFoundError:
                raise _not_found(name) from None
            except OSError as exc:
                raise StorageError(f"cannot read the modification time of {name!r}") from exc
            return datetime.datetime.fromtimestamp(mtime, tz=datetime.UTC)
        raise StorageError("this store does not record modification times")

    def ukey(self, path: str) -> str:
        entry = self.info(path)
        return f"{entry['name']}:{entry.get('encrypted_size')}:{entry['size']}"


class EnvelopeReadFile(io.BufferedIOBase):
    """A read-only, seekable file over one object's authenticated plaintext.

    Every byte comes from the `MessageReader`, which releases a frame only
    after its tag verified; this wrapper adds the attributes fsspec tools
    look for (``path``, ``fs``, ``size``, ``mode``) and no cache.
    """

    mode = "rb"

    def __init__(self, fs: EnvelopeFileSystem, path: str, reader: MessageReader, plan: ReadPlan | None = None) -> None:
        super().__init__()
        self.fs = fs
        self.path = path
        self._reader = reader
        self._plan = plan if plan is not None else ReadPlan(0, 0)
        # One position per thread, and each seek or read done whole under the lock: DuckDB reads one
        # file from several threads as seek(offset) then read(n) from each, which a shared position
        # would interleave (a read at another thread's offset). A new thread starts where the file is.
        self._lock = threading.Lock()
        self._positions: dict[int, int] = {}
        self._position = 0

    def _enter(self) -> int:
        """Under the lock: move the reader to this thread's position; return the thread id."""
        thread = threading.get_ident()
        self._reader.seek(self._positions.get(thread, self._position))
        return thread

    def _leave(self, thread: int) -> None:
        try:
            position = self._reader.tell()
        except (EnvelopeError, ValueError):
            return  # a failed or closed reader: the operation raises that error itself
        self._positions[thread] = self._position = position

    def _planning(self, size: int | None) -> None:
        """Tell the source which message bytes this read needs: whole frames, one GET per piece on S3."""
        header = self._reader.header
        frame_length = header.frame_length
        if frame_length <= 0:  # non-framed content is one block
            self._plan.start, self._plan.end = 0, 1 << 62
            return
        pos = self._reader.tell()
        stride = frame_length + REGULAR_FRAME_OVERHEAD
        first = pos // frame_length
        self._plan.start = header.size + first * stride
        if size is None or size < 0:
            self._plan.end = 1 << 62
        else:
            last = (pos + max(size, 1) - 1) // frame_length
            # A final frame is a few bytes longer than a regular one: cover it if the read ends there.
            self._plan.end = header.size + (last + 1) * stride + FINAL_FRAME_OVERHEAD - REGULAR_FRAME_OVERHEAD

    def __repr__(self) -> str:
        return f"<EnvelopeReadFile {self.path!r}>"

    @property
    def size(self) -> int:
        """The plaintext size, authenticated (the final frame is verified first)."""
        with self._lock:
            return self._reader.plaintext_size()

    @property
    def details(self) -> dict[str, Any]:
        return {"name": self.path, "size": self.size, "type": "file"}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        with self._lock:
            self._enter()
            return self._reader.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with self._lock:
            thread = self._enter()
            try:
                return self._reader.seek(offset, whence)
            finally:
                self._leave(thread)

    def read(self, size: int | None = -1) -> bytes:
        with self._lock:
            thread = self._enter()
            try:
                self._planning(size)
                return self._reader.read(size)
            finally:
                self._leave(thread)

    def read1(self, size: int = -1) -> bytes:
        with self._lock:
            thread = self._enter()
            try:
                self._planning(size)
                return self._reader.read1(size)
            finally:
                self._leave(thread)

    def readinto(self, buffer: Any) -> int:
        with self._lock:
            thread = self._enter()
            try:
                self._planning(memoryview(buffer).nbytes)
                return self._reader.readinto(buffer)
            finally:
                self._leave(thread)

    def readinto1(self, buffer: Any) -> int:
        with self._lock:
            thread = self._enter()
            try:
                self._planning(memoryview(buffer).nbytes)
                return self._reader.readinto1(buffer)
            finally:
                self._leave(thread)

    def close(self) -> None:
        if not self.closed:
            try:
                with self._lock:
                    self._reader.close()
            finally:
                super().close()

    def __reduce__(self) -> NoReturn:
        raise TypeError("an open envelope file cannot be pickled (pickle the filesystem instead)")


class _DiscardingTextWrapper(io.TextIOWrapper):
    """A text-mode envelope file: dropped without `close()`, it aborts instead of publishing."""

    def __del__(self) -> None:
        buffer = self.buffer
        if isinstance(buffer, EnvelopeWriteFile) and not buffer.closed:
            buffer.discard()


class EnvelopeWriteFile(io.BufferedIOBase):
    """A write-only file that encrypts into a new object, visible only after a clean close.

    ``with`` blocks commit on a clean exit and abort on an exception. A bare
    `close()` commits unless an exception raised after the file was opened
    is propagating or being handled at that moment: fsspec's ``OpenFile``
    and pandas close files from ``__exit__`` / ``finally`` blocks, and a
    crash in the middle of a write must not publish a truncated object.
    `discard()` aborts explicitly; a file dropped without closing is aborted.
    """

    mode = "wb"

    def __init__(self, fs: EnvelopeFileSystem, path: str, writer: MessageWriter) -> None:
        super().__init__()
        self.fs = fs
        self.path = path
        self._writer = writer
        self._exception_at_open = sys.exc_info()[1]

    def __repr__(self) -> str:
        return f"<EnvelopeWriteFile {self.path!r}>"

    @property
    def name(self) -> str:
        return self.path

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._writer.tell()

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        return self._writer.write(data)

    def flush(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")

    def commit(self) -> None:
        """Finish the message and publish the object (what a clean close does)."""
        if self.closed:
            return
        try:
            self._writer.close()
        finally:
            super().close()

    def discard(self) -> None:
        """Abort: nothing becomes visible. Idempotent."""
        if self.closed:
            return
        try:
            self._writer.abort()
        finally:
            super().close()

    def close(self) -> None:
        current = sys.exc_info()[1]
        if current is not None and current is not self._exception_at_open:
            self.discard()
        else:
            self.commit()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.discard()
        else:
            self.commit()

    def __del__(self) -> None:
        # io.IOBase's finalizer would close() -- i.e. publish -- an abandoned file. Abort instead.
        if not self.closed:
            with contextlib.suppress(Exception):  # nothing useful can be done in a finalizer
                self._writer.abort()
            super().close()

    def __reduce__(self) -> NoReturn:
        raise TypeError("an open envelope file cannot be pickled (pickle the filesystem instead)")
