"""Bulk work over a container from any `concurrent.futures.Executor`, and the picklable `ContainerSpec`.

A `ContainerSpec` is the configuration that (re)builds a `DataPlane` and
opens a `Container` in any process: the KMS spelling the command line uses
(``"local:PATH"`` or ``"aws"``), the container location, the trust options of
DESIGN §11, and the S3/KMS endpoint, region and profile. It holds no key,
no credential and no client, so it is safe to pickle and ship to workers
(a process pool, a Dask cluster). Each process builds its own plane from it,
once, on first use (`ContainerSpec.open`), so one KMS Decrypt per container
per process serves every batch that process runs.

`verify_all` and `copy_prefix` list names in the caller, then hand
(spec, names) batches to the executor: threads by default, a
`ProcessPoolExecutor`, or Dask's `Client.get_executor()`. Work items never
carry key bytes. One bad object never stops a sweep: every failure is
reported by name with its error type and message (which never contain key
material).

This module must never put a key, a credential or a live client into
anything it pickles, returns or raises.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs

from dataplane.format import DEFAULT_FRAME_LENGTH
from dataplane.plane import Container, DataPlane, VerifyResult
from dataplane.stream import check_frame_length
from envelope.errors import EnvelopeError, ValidationError
from envelope.header import OBJECTS_PREFIX
from envelope.storage import (
    BytesLike,
    ObjectReader,
    ObjectWriter,
    S3Store,
    Store,
    open_store,
    parse_location,
    validate_name,
    validate_prefix,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from envelope.kms import AwsKms, LocalKms

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "PREFETCH_MAX",
    "BulkFailure",
    "ContainerSpec",
    "CopyReport",
    "ReadPlan",
    "VerifyReport",
    "copy_prefix",
    "forget_process_planes",
    "reads_planned_by",
    "rekey_on",
    "verify_all",
]

DEFAULT_BATCH_SIZE: Final = 32
"""Names per work item: large enough to amortize shipping a task, small enough to spread work."""

KEYSTORE_ENV: Final = "ENVELOPE_KEYSTORE"
MIN_WINDOW: Final = 4 << 10
MAX_WINDOW: Final = 64 << 20

_T = TypeVar("_T")


# --- validation helpers (all raise ValidationError, before any I/O) -----------------------------


def _optional_str(what: str) -> Callable[[object], str | None]:
    def convert(value: object) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value or "\x00" in value:
            raise ValidationError(f"{what} must be a non-empty string")
        return value

    return convert


def _str_tuple(what: str) -> Callable[[object], tuple[str, ...]]:
    def convert(value: object) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise ValidationError(f"{what} must be a list of strings")
        items = tuple(value)
        for item in items:
            if not isinstance(item, str) or not item:
                raise ValidationError(f"{what} must be a list of non-empty strings")
        return items

    return convert


def _context_pairs(value: object) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if isinstance(value, Mapping):
        pairs: Iterable[object] = value.items()
    elif isinstance(value, Iterable) and not isinstance(value, str):
        pairs = value
    else:
        raise ValidationError("expect_context must be a mapping of strings to strings")
    out: dict[str, str] = {}
    for pair in pairs:
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise ValidationError("expect_context must be a mapping of strings to strings")
        k, v = pair
        if not isinstance(k, str) or not isinstance(v, str) or not k:
            raise ValidationError("expect_context must be a mapping of strings to strings")
        out[k] = v
    return tuple(sorted(out.items()))


def _bool(what: str) -> Callable[[object], bool]:
    def convert(value: object) -> bool:
        if not isinstance(value, bool):
            raise ValidationError(f"{what} must be True or False")
        return value

    return convert


def _region(value: object) -> str | None:
    return _optional_str("region")(value)


def _profile(value: object) -> str | None:
    return _optional_str("profile")(value)


def _endpoint_url(value: object) -> str | None:
    return _optional_str("endpoint_url")(value)


def _partition(value: object) -> str | None:
    return _optional_str("discovery_partition")(value)


def _container_id(value: object) -> str | None:
    return _optional_str("container_id")(value)


def _key_ids(value: object) -> tuple[str, ...]:
    return _str_tuple("key_ids")(value)


def _accounts(value: object) -> tuple[str, ...]:
    return _str_tuple("discovery_accounts")(value)


def _grant_tokens(value: object) -> tuple[str, ...]:
    return _str_tuple("grant_tokens")(value)


def _discovery(value: object) -> bool:
    return _bool("discovery")(value)


def _allow_unbound(value: object) -> bool:
    return _bool("allow_unbound")(value)


def _frame_length(value: object) -> int | None:
    return None if value is None else check_frame_length(value)


def _window(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_WINDOW <= value <= MAX_WINDOW:
        raise ValidationError(f"read_ahead and max_read_ahead must be integers from {MIN_WINDOW} to {MAX_WINDOW}")
    return value


def _kms_spelling(value: object) -> str:
    """'aws', 'local' (resolved now) or 'local:PATH' (made absolute now, so every worker sees the same path)."""
    if not isinstance(value, str):
        raise ValidationError("kms must be 'aws', 'local' or 'local:PATH'")
    if value == "aws":
        return value
    if value == "local":
        configured = os.environ.get(KEYSTORE_ENV)
        path = Path(configured).expanduser() if configured else Path.home() / ".envelope" / "keystore"
        return f"local:{path.absolute()}"
    if value.startswith("local:") and len(value) > len("local:") and "\x00" not in value:
        return f"local:{Path(value[len('local:') :]).expanduser().absolute()}"
    raise ValidationError(f"kms must be 'aws', 'local' or 'local:PATH', not {value!r}")


def _location(value: object) -> str:
    """A path, file:// or s3:// URL; local paths are made absolute (workers may run elsewhere)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise ValidationError("container must be a path or an s3:// or file:// URL")
    parsed = parse_location(value)
    if parsed.kind == "file" and "://" not in value:
        return str(Path(parsed.path).absolute())
    return value


# --- the picklable configuration ---------------------------------------------------------------


@attrs.frozen
class ContainerSpec:
    """Everything needed to open one container in any process, and nothing secret.

    ``kms``: ``"aws"`` (AWS KMS through a client built from ``region``,
    ``profile`` and ``endpoint_url``; credentials come from each process's
    own environment, never from here) or ``"local:PATH"`` (a development
    keystore). With ``"aws"`` the data plane must be told whom to trust:
    ``key_ids`` (key ARNs) or ``discovery=True`` (optionally limited by
    ``discovery_accounts`` / ``discovery_partition``); see DESIGN §11.
    ``expect_context`` and ``container_id`` are checked against the
    container header before any KMS call.
    """

    location: str = attrs.field(converter=_location)
    kms: str = attrs.field(converter=_kms_spelling)
    region: str | None = attrs.field(default=None, converter=_region)
    profile: str | None = attrs.field(default=None, converter=_profile)
    endpoint_url: str | None = attrs.field(default=None, converter=_endpoint_url)
    key_ids: tuple[str, ...] = attrs.field(default=(), converter=_key_ids)
    discovery: bool = attrs.field(default=False, converter=_discovery)
    discovery_accounts: tuple[str, ...] = attrs.field(default=(), converter=_accounts)
    discovery_partition: str | None = attrs.field(default=None, converter=_partition)
    expect_context: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_context_pairs)
    container_id: str | None = attrs.field(default=None, converter=_container_id)
    allow_unbound: bool = attrs.field(default=False, converter=_allow_unbound)
    frame_length: int | None = attrs.field(default=None, converter=_frame_length)
    grant_tokens: tuple[str, ...] = attrs.field(default=(), converter=_grant_tokens)
    read_ahead: int | None = attrs.field(default=None, converter=_window)
    """S3 only: bytes fetched for a small read (None: the store's default, 1 MiB)."""
    max_read_ahead: int | None = attrs.field(default=None, converter=_window)
    """S3 only: how far that window may grow while reads stay sequential (None: the store's default, 8 MiB)."""

    def __attrs_post_init__(self) -> None:
        if self.kms == "aws" and not self.key_ids and not self.discovery:
            raise ValidationError(
                "kms='aws' needs key_ids=[key ARNs] (strict) or discovery=True: "
                "the container header alone cannot say which KMS key to trust"
            )
        if self.key_ids and self.discovery:
            raise ValidationError("pass either key_ids or discovery=True, not both")
        if (self.discovery_accounts or self.discovery_partition) and not self.discovery:
            raise ValidationError("discovery_accounts and discovery_partition need discovery=True")
        if self.read_ahead is not None and self.max_read_ahead is not None and self.max_read_ahead < self.read_ahead:
            raise ValidationError("max_read_ahead must be at least read_ahead")

    @property
    def is_s3(self) -> bool:
        return self.location.startswith("s3://")

    def _plane_key(self) -> tuple[Any, ...]:
        return (
            self.kms,
            self.region,
            self.profile,
            self.endpoint_url,
            self.key_ids,
            self.discovery,
            self.discovery_accounts,
            self.discovery_partition,
            self.allow_unbound,
            self.frame_length,
            self.grant_tokens,
        )

    # -- building, once per process --

    def plane(self) -> DataPlane:
        """This process's `DataPlane` for this configuration (built on first use, then reused)."""
        return _PROCESS.plane(self)

    def open(self) -> Container:
        """This process's handle on the container (header read once; data key fetched on first use)."""
        return _PROCESS.opened(self).container

    def objects(self) -> Store:
        """The store holding the container's objects (for listing and header reads; never decrypts)."""
        return _PROCESS.opened(self).objects

    def _build_kms(self) -> AwsKms | LocalKms:
        from envelope.kms import AwsKms, LocalKms

        if self.kms == "aws":
            return AwsKms.from_config(
                region_name=self.region, endpoint_url=self.endpoint_url, profile_name=self.profile
            )
        return LocalKms(self.kms[len("local:") :])

    def _build_s3(self) -> S3Client:
        # The convenience layer for fsspec and bulk workers: like AwsKms.from_config, the one place
        # these modules build a client. Credentials come from the process's environment or profile.
        import boto3
        from botocore.config import Config

        session = boto3.Session(profile_name=self.profile, region_name=self.region)
        return session.client("s3", endpoint_url=self.endpoint_url, config=Config(retries={"mode": "standard"}))

    def _build_plane(self) -> DataPlane:
        return DataPlane(
            self._build_kms(),
            key_ids=list(self.key_ids) or None,
            discovery=self.discovery,
            discovery_accounts=list(self.discovery_accounts) or None,
            discovery_partition=self.discovery_partition,
            allow_unbound=self.allow_unbound,
            grant_tokens=list(self.grant_tokens) or None,
            frame_length=DEFAULT_FRAME_LENGTH if self.frame_length is None else self.frame_length,
        )

    def _open_container(self, plane: DataPlane) -> _Opened:
        s3 = self._build_s3() if self.is_s3 else None
        store = open_store(self.location, s3_client=s3)
        if s3 is not None and isinstance(store, S3Store) and (self.read_ahead or self.max_read_ahead):
            windows = {"read_ahead": self.read_ahead, "max_read_ahead": self.max_read_ahead}
            store = S3Store(s3, store.bucket, store.prefix, **{k: v for k, v in windows.items() if v is not None})
        container = plane.open(
            _PlanningStore(store) if s3 is not None else store,
            encryption_context=dict(self.expect_context) or None,
            container_id=self.container_id,
            fetch_key=False,
        )
        container.spec = self  # so that its bulk operations can run in other processes too
        return _Opened(container, store.substore(OBJECTS_PREFIX.rstrip("/")), s3)

    def s3_client(self) -> S3Client | None:
        """This process's S3 client for an s3:// container (None for a local one)."""
        return _PROCESS.opened(self).s3


# --- planned reads: one ranged GET per planned range, not one per frame -------------------------


PREFETCH_MAX: Final = 8 << 20
"""By default, at most this much of a planned range is fetched (and held) at once per open reader."""


class ReadPlan:
    """The message bytes [start, end) the owner of a reader is about to ask for (mutable, one per reader).

    The reader decrypts frame by frame and asks its source for one frame at
    a time; a plan lets the source fetch the whole planned range with one
    ranged GET per `piece` bytes (default `PREFETCH_MAX`) instead, and never past `end` (a
    growing read-ahead window would fetch past the end of a Parquet column
    chunk). Bytes fetched this way still reach the caller only through the
    reader, after their frame authenticated.
    """

    __slots__ = ("end", "piece", "start")

    def __init__(self, start: int = 0, end: int = 1 << 62, *, piece: int = PREFETCH_MAX) -> None:
        self.start = start
        self.end = end
        self.piece = piece


_handoff = threading.local()


@contextlib.contextmanager
def reads_planned_by(plan: ReadPlan) -> Iterator[None]:
    """Readers opened by this thread inside the block (on S3 containers) follow `plan`."""
    previous = getattr(_handoff, "plan", None)
    _handoff.plan = plan
    try:
        yield
    finally:
        _handoff.plan = previous


class _PlannedReader:
    """A store reader that fetches a planned range ahead, in bounded pieces; otherwise it just delegates."""

    def __init__(self, inner: ObjectReader, plan: ReadPlan) -> None:
        self._inner = inner
        self._plan = plan
        self._buffer = bytearray(0)
        self._start = 0
        self._length = 0

    @property
    def size(self) -> int:
        return self._inner.size

    @property
    def version(self) -> str:
        return self._inner.version

    def readinto_at(self, offset: int, buf: memoryview, /) -> int:
        view = buf if isinstance(buf, memoryview) else memoryview(buf)
        want = max(0, min(len(view), self.size - offset))
        done = 0
        while done < want:
            pos = offset + done
            if self._start <= pos < self._start + self._length:
                n = min(self._start + self._length - pos, want - done)
                view[done : done + n] = memoryview(self._buffer)[pos - self._start : pos - self._start + n]
                done += n
                continue
            planned_end = min(self._plan.end, self.size)
            if self._plan.start <= pos < planned_end and planned_end - pos > want - done:
                length = min(planned_end - pos, self._plan.piece)
                if len(self._buffer) < length:
                    self._buffer = bytearray(length)
                self._length = 0  # invalid until the fetch completed
                got = self._inner.readinto_at(pos, memoryview(self._buffer)[:length])
                self._start, self._length = pos, got
                if got <= 0:
                    return done
                continue
            return done + self._inner.readinto_at(pos, view[done:want])
        return done

    def close(self) -> None:
        self._buffer, self._length = bytearray(0), 0
        self._inner.close()

    def __enter__(self) -> _PlannedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _PlanningStore:
    """Delegates to a store; readers opened under `reads_planned_by` follow their plan."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner

    @property
    def url(self) -> str:
        return self._inner.url

    def __repr__(self) -> str:
        return repr(self._inner)

    def put_bytes(self, name: str, data: BytesLike, *, overwrite: bool = False) -> None:
        self._inner.put_bytes(name, data, overwrite=overwrite)

    def get_bytes(self, name: str, *, max_size: int | None = None) -> bytes:
        return self._inner.get_bytes(name, max_size=max_size)

    def open_writer(self, name: str, *, overwrite: bool = False, if_match: str | None = None) -> ObjectWriter:
        return self._inner.open_writer(name, overwrite=overwrite, if_match=if_match)

    def open_reader(self, name: str) -> ObjectReader:
        reader = self._inner.open_reader(name)
        plan: ReadPlan | None = getattr(_handoff, "plan", None)
        return reader if plan is None else _PlannedReader(reader, plan)

    def exists(self, name: str) -> bool:
        return self._inner.exists(name)

    def size(self, name: str) -> int:
        return self._inner.size(name)

    def delete(self, name: str) -> None:
        self._inner.delete(name)

    def list(self, prefix: str = "") -> Iterator[str]:
        return self._inner.list(prefix)

    def list_children(self, prefix: str = "") -> Iterator[str]:
        return self._inner.list_children(prefix)

    def substore(self, prefix: str) -> Store:
        return _PlanningStore(self._inner.substore(prefix))


@attrs.frozen
class _Opened:
    container: Container
    objects: Store
    s3: S3Client | None


class _ProcessPlanes:
    """Planes and open containers of this process, keyed by configuration; rebuilt after a fork."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._planes: dict[tuple[Any, ...], DataPlane] = {}
        self._opened: dict[ContainerSpec, _Opened] = {}

    def _check_pid(self) -> None:
        # A forked child must not reuse the parent's clients (not fork-safe) nor count on its keys.
        if self._pid != os.getpid():
            self._planes, self._opened, self._pid = {}, {}, os.getpid()

    def plane(self, spec: ContainerSpec) -> DataPlane:
        with self._lock:
            self._check_pid()
            key = spec._plane_key()
            plane = self._planes.get(key)
            if plane is None:
                plane = self._planes[key] = spec._build_plane()
            return plane

    def opened(self, spec: ContainerSpec) -> _Opened:
        with self._lock:
            self._check_pid()
            opened = self._opened.get(spec)
        if opened is not None:
            return opened
        opened = spec._open_container(self.plane(spec))
        with self._lock:
            return self._opened.setdefault(spec, opened)

    def forget(self) -> None:
        with self._lock:
            planes = list(self._planes.values())
            self._planes, self._opened = {}, {}
        for plane in planes:
            plane.cache.clear()


_PROCESS = _ProcessPlanes()


def forget_process_planes() -> None:
    """Drop this process's planes and containers and wipe their cached data keys."""
    _PROCESS.forget()


# --- reports ---------------------------------------------------------------------------------


@attrs.frozen
class BulkFailure:
    """One object that failed: its name and why (error type and message; never key material)."""

    name: str
    error: str
    message: str


@attrs.frozen
class VerifyReport:
    verified: tuple[VerifyResult, ...]
    failed: tuple[BulkFailure, ...]

    @property
    def ok(self) -> bool:
        return not self.failed


@attrs.frozen
class CopyReport:
    copied: tuple[str, ...]
    """Destination names written."""
    failed: tuple[BulkFailure, ...]
    """By source name."""

    @property
    def ok(self) -> bool:
        return not self.failed


def _failure(name: str, exc: BaseException) -> BulkFailure:
    return BulkFailure(name, type(exc).__name__, str(exc))


# --- work items (module-level so any executor can ship them by reference) ---------------------


def _verify_batch(spec: ContainerSpec, names: Sequence[str]) -> list[VerifyResult | BulkFailure]:
    container = spec.open()
    out: list[VerifyResult | BulkFailure] = []
    for name in names:
        try:
            with reads_planned_by(ReadPlan()):  # verification reads every byte: fetch in large pieces
                out.append(container.verify(name))
        except Exception as exc:  # noqa: BLE001 - one bad object is reported, never stops the sweep
            out.append(_failure(name, exc))
    return out


def _copy_batch(
    src: ContainerSpec, dst: ContainerSpec, pairs: Sequence[tuple[str, str]], overwrite: bool
) -> list[str | BulkFailure]:
    source, target = src.open(), dst.open()
    out: list[str | BulkFailure] = []
    for src_name, dst_name in pairs:
        try:
            # Plaintext flows frame by frame from an authenticating reader into an encrypting writer;
            # a failure anywhere (a tampered frame included) aborts the writer, leaving nothing.
            with reads_planned_by(ReadPlan()):
                reader = source.open_reader(src_name)
            with reader, target.open_writer(dst_name, overwrite=overwrite) as writer:
                writer.write_from(reader)
            out.append(dst_name)
        except Exception as exc:  # noqa: BLE001 - one bad object is reported, never stops the sweep
            out.append(_failure(src_name, exc))
    return out


def _rekey_batch(spec: ContainerSpec, names: Sequence[str], newest: int) -> list[tuple[str, str, str]]:
    container = spec.open()
    return [container._rekey_outcome(name, newest) for name in names]


def rekey_on(
    executor: Executor, spec: ContainerSpec, names: Sequence[str], newest: int, batch_size: int = DEFAULT_BATCH_SIZE
) -> Iterator[list[tuple[str, str, str]]]:
    """`Container.rekey_all` on another process's executor: (spec, names) batches, never keys.

    Yields each batch's outcomes as it finishes; a batch that fails as a whole fails each of its names.
    """
    futures = {executor.submit(_rekey_batch, spec, batch, newest): batch for batch in _batches(names, batch_size)}
    for future in as_completed(futures):
        try:
            yield future.result()
        except Exception as exc:  # noqa: BLE001 - e.g. a worker that cannot open the container
            yield [(name, "failed", f"{type(exc).__name__}: {exc}") for name in futures[future]]


def _batches(items: Sequence[_T], size: int) -> Iterator[list[_T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _check_batch_size(batch_size: object) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValidationError("batch_size must be an integer >= 1")
    return batch_size


def _check_spec(spec: object, what: str) -> ContainerSpec:
    if not isinstance(spec, ContainerSpec):
        raise ValidationError(f"{what} must be a dataplane.bulk.ContainerSpec")
    return spec


def _check_executor(executor: object) -> Executor | None:
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise ValidationError("executor must be a concurrent.futures.Executor (or None for threads)")
    return executor  # type: ignore[return-value]


def _run(
    executor: Executor | None,
    batches: list[list[_T]],
    submit: Callable[[Executor, list[_T]], Future[Any]],
    on_batch_error: Callable[[list[_T], BaseException], list[Any]],
) -> list[Any]:
    """Submit every batch, gather results in order; a batch that fails as a whole fails each item."""
    own = executor is None
    pool: Executor = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) if own else executor  # type: ignore[assignment]
    try:
        futures = [(batch, submit(pool, batch)) for batch in batches]
        results: list[Any] = []
        for batch, future in futures:
            try:
                results.extend(future.result())
            except Exception as exc:  # noqa: BLE001 - e.g. a worker that cannot open the container
                results.extend(on_batch_error(batch, exc))
        return results
    finally:
        if own:
            pool.shutdown(wait=True)


def verify_all(
    container_spec: ContainerSpec,
    prefix: str = "",
    *,
    executor: Executor | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> VerifyReport:
    """Authenticate every frame of every object under `prefix`, in batches on `executor`.

    The names are listed here; each batch opens the container in the
    process that runs it (one KMS Decrypt per process). Returns every
    object verified and every failure by name.
    """
    spec = _check_spec(container_spec, "container_spec")
    if prefix:
        validate_prefix(prefix)
    size = _check_batch_size(batch_size)
    pool = _check_executor(executor)
    names = list(spec.open().list(prefix))
    results = _run(
        pool,
        list(_batches(names, size)),
        lambda ex, batch: ex.submit(_verify_batch, spec, batch),
        lambda batch, exc: [_failure(name, exc) for name in batch],
    )
    return VerifyReport(
        verified=tuple(r for r in results if isinstance(r, VerifyResult)),
        failed=tuple(r for r in results if isinstance(r, BulkFailure)),
    )


def copy_prefix(
    src_spec: ContainerSpec,
    dst_spec: ContainerSpec,
    prefix: str,
    *,
    executor: Executor | None = None,
    dst_prefix: str | None = None,
    overwrite: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> CopyReport:
    """Re-encrypt every object under `prefix` of one container into another, in batches on `executor`.

    Each object is decrypted (and authenticated frame by frame) from the
    source and encrypted under the destination's data key and name binding,
    streaming with bounded memory. With `dst_prefix` the `prefix` part of
    each name is replaced by it. Destination writes are create-only unless
    `overwrite=True`; an object that fails leaves nothing at its
    destination and is reported by its source name.
    """
    src = _check_spec(src_spec, "src_spec")
    dst = _check_spec(dst_spec, "dst_spec")
    if not isinstance(prefix, str):
        raise ValidationError("prefix must be a string")
    if prefix:
        validate_prefix(prefix)
    if dst_prefix is not None:
        if not isinstance(dst_prefix, str):
            raise ValidationError("dst_prefix must be a string")
        if dst_prefix:
            validate_prefix(dst_prefix)
    _bool("overwrite")(overwrite)
    size = _check_batch_size(batch_size)
    pool = _check_executor(executor)
    pairs: list[tuple[str, str]] = []
    unmappable: list[BulkFailure] = []
    for name in src.open().list(prefix):
        target = name if dst_prefix is None else dst_prefix + name[len(prefix) :]
        try:
            validate_name(target)
        except EnvelopeError as exc:  # one bad name never stops the sweep: report it, copy the rest
            unmappable.append(_failure(name, ValidationError(f"maps to an invalid destination name: {exc}")))
            continue
        pairs.append((name, target))
    results = _run(
        pool,
        list(_batches(pairs, size)),
        lambda ex, batch: ex.submit(_copy_batch, src, dst, batch, overwrite),
        lambda batch, exc: [_failure(src_name, exc) for src_name, _ in batch],
    )
    return CopyReport(
        copied=tuple(r for r in results if isinstance(r, str)),
        failed=tuple(unmappable) + tuple(r for r in results if isinstance(r, BulkFailure)),
    )
