"""`DataPlane` and its container handles: put data into containers and read it back.

Opening a container reads its header, checks that the reserved encryption-
context entries agree with the header fields, and gets the data key with one
KMS `Decrypt` (header context and key ARN passed to KMS), cached on the plane
and shared by every container it opens. Every object is one AWS Encryption
SDK message (v2, suite 0x0478, framed) whose header carries the container's
encryption context and encrypted data key, and whose message id binds it to
the container id and the object's name.

Reading refuses, with `AuthenticationError` and without any KMS call, a
message whose encrypted data keys or encryption context differ from the
container's — unless the caller opted in with `allow_unbound=True`, and then
only for messages whose context equals the container's and whose data key
is encrypted under the container's KMS key (such messages, written by
another AWS Encryption SDK, carry no name binding).

This module must never log, repr or raise with key material, and never
return a byte that did not authenticate (the stream module guarantees the
latter; this one never bypasses it).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import attrs

from dataplane._oneshot import ONESHOT_BYTES, open_message, seal_message
from dataplane.cache import CacheStats, DataKeyCache
from dataplane.format import DEFAULT_FRAME_LENGTH, Limits, MessageHeader, body_layout, read_header
from dataplane.hazmat import MessageReader, MessageWriter, check_frame_length, check_threads
from dataplane.materials import Generation, KeyMaterials, KeyService, ReadMaterials, message_provider_id
from dataplane.trust import ExpectedContainer, KeyTrust
from envelope.containers import read_container_header, read_generation_records
from envelope.datakey import DataKey, DataKeyDecryptor
from envelope.errors import (
    EnvelopeError,
    FormatError,
    GenerationInUseError,
    ObjectNotFoundError,
    UnboundObjectError,
    UnsupportedFormatError,
    ValidationError,
)
from envelope.header import OBJECTS_PREFIX, SUITE_ID, ContainerHeader, check_binding
from envelope.keygen import CONTEXT_GENERATION, KeyGeneration, generation_record_name
from envelope.kmsparams import validate_grant_tokens
from envelope.storage import (
    ObjectReader,
    ObjectWriter,
    Store,
    open_store,
    read_small,
    validate_name,
    validate_prefix,
)
from envelope.storage._base import as_byte_view

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["Container", "DataPlane", "ObjectInfo", "ObjectStat", "RekeyReport", "VerifyResult", "message_provider_id"]

LocationLike = Store | str | os.PathLike[str]


def _claims_newer_generation(header: MessageHeader, materials: KeyMaterials) -> bool:
    claimed = header.encryption_context.get(CONTEXT_GENERATION, "")
    return claimed.isdecimal() and len(claimed) <= 8 and int(claimed) > materials.primary.number


_VERIFY_MIN_CHUNK = 4096
_VERIFY_MAX_CHUNK = 4 << 20


def _writable_frame_length(frame_length: int) -> bool:
    try:
        check_frame_length(frame_length)
    except ValidationError:
        return False
    return True


def _run_on(
    executor: Executor,
    container: Container,
    names: list[str],
    newest: int,
    on_done: Callable[[str, str], None] | None,
) -> list[tuple[str, str, str]]:
    """Rekey `names` on an executor, each future's failure reported against its name, in name order."""
    futures = {executor.submit(container._rekey_outcome, name, newest): name for name in names}
    outcomes: dict[str, tuple[str, str, str]] = {}
    for future in as_completed(futures):
        name = futures[future]
        try:
            outcomes[name] = future.result()
        except Exception as e:  # noqa: BLE001 (the executor itself failed this item: report it, go on)
            outcomes[name] = (name, "failed", f"{type(e).__name__}: {e}")
        if on_done is not None:
            on_done(name, outcomes[name][1])
    return [outcomes[name] for name in names]


def _check_bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{what} must be True or False")
    return value


@attrs.frozen
class VerifyResult:
    """What `Container.verify` learned, nothing secret: the object authenticated."""

    name: str
    size: int
    """Plaintext bytes."""
    frame_length: int
    encrypted_size: int
    bound: bool
    """True when the object carries our name binding (False only for allowed unbound messages)."""
    generation: int | None = None
    """The data-key generation it is under (None for an allowed unbound message)."""


@attrs.frozen
class ObjectInfo:
    """A message header's public fields, read without any key (nothing here is authenticated yet)."""

    name: str
    encrypted_size: int
    message_id: str
    suite_id: int
    content_type: int
    frame_length: int
    encryption_context: Mapping[str, str]
    encrypted_data_keys: tuple[tuple[str, str], ...]
    """(provider id, provider info) per EDK."""
    bound_to_container: bool
    """The header's context and EDKs are exactly those of one of the container's generations."""
    generation: int | None = None
    """That generation (None when the message is not bound to the container)."""


@attrs.frozen
class ObjectStat:
    """`Container.stat`: an object's sizes and generation from its stored size and message header.

    Read without any key or KMS call, so nothing here is authenticated: `size` is what the header and
    the stored size imply, and a reader checks it (a lie fails authentication)."""

    name: str
    size: int
    """Plaintext bytes, as the message's frame layout implies."""
    encrypted_size: int
    """Bytes in storage."""
    generation: int | None
    """The container's data-key generation the header names (None: not bound to this container)."""
    frame_length: int
    modified: datetime | None = None
    """When the stored object was last written; None: the stores expose no modification time yet."""


class _TypedWriter(MessageWriter):
    """The container's writers take bytes-like data only, as `Container.put` does (one rule)."""

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValidationError(f"data must be bytes-like, not {type(data).__name__}")
        return super().write(data)


@attrs.frozen
class RekeyReport:
    """What `Container.rekey_all` did: names rekeyed, already current, and failed (with reasons)."""

    rekeyed: tuple[str, ...] = ()
    current: tuple[str, ...] = ()
    failed: Mapping[str, str] = attrs.field(factory=dict)
    """Object name -> why it failed (the error type and message; nothing secret)."""

    @classmethod
    def of(cls, outcomes: Iterable[tuple[str, str, str]]) -> RekeyReport:
        rekeyed, current, failed = [], [], {}
        for name, outcome, reason in outcomes:
            if outcome == "rekeyed":
                rekeyed.append(name)
            elif outcome == "current":
                current.append(name)
            else:
                failed[name] = reason
        return cls(tuple(rekeyed), tuple(current), failed)

    @property
    def ok(self) -> bool:
        return not self.failed


class _AccountingSink:
    """Passes frames to the store's writer; counts bytes so the cache can bound key use."""

    __slots__ = ("_on_commit", "_writer", "written")

    def __init__(self, writer: ObjectWriter, on_commit: Callable[[int], None]) -> None:
        self._writer = writer
        self._on_commit = on_commit
        self.written = 0

    def write(self, data: memoryview, /) -> int:
        n = self._writer.write(data)
        self.written += len(data)
        return n

    def commit(self) -> None:
        self._writer.commit()
        self._on_commit(self.written)

    def abort(self) -> None:
        self._writer.abort()


class DataPlane:
    """Opens containers for writing and reading objects.

    `kms` is anything with `decrypt` (`DataKeyDecryptor`): `AwsKms` or
    `LocalKms`. `s3_client` is your boto3 S3 client, used for `s3://`
    locations.

    Which KMS keys to trust (DESIGN §11): `key_ids=[key ARN, ...]` (strict:
    a container, generation or message under any other key is refused with
    `AuthenticationError` before any KMS call; multi-Region replicas of a
    listed key match), or `discovery=True` (any key the header names, which
    lets a storage attacker choose the key; optionally limited by
    `discovery_accounts` and `discovery_partition`). One of the two is
    required with `AwsKms`; `LocalKms` defaults to discovery within its
    keystore, which can only hold keys its owner created.

    The data-key cache is on the instance and shared by every container it
    opens; pass `cache=` to share one between planes (cache keys include the
    KMS object, so a key is only ever served to a plane using the KMS object
    that decrypted it).
    """

    def __init__(
        self,
        kms: DataKeyDecryptor,
        s3_client: S3Client | None = None,
        *,
        key_ids: Sequence[str] | None = None,
        discovery: bool = False,
        discovery_accounts: Sequence[str] | None = None,
        discovery_partition: str | None = None,
        frame_length: int = DEFAULT_FRAME_LENGTH,
        threads: int = 1,
        cache: DataKeyCache | None = None,
        allow_unbound: bool = False,
        grant_tokens: Sequence[str] | None = None,
        limits: Limits | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if not callable(getattr(kms, "decrypt", None)):
            raise ValidationError("kms must provide decrypt() (an AwsKms or LocalKms)")
        self._kms = kms
        self._s3 = s3_client
        self._provider = getattr(kms, "provider_id", None)
        trust = KeyTrust.from_options(
            provider=self._provider,
            key_ids=key_ids,
            discovery=discovery,
            discovery_accounts=discovery_accounts,
            discovery_partition=discovery_partition,
        )
        self.frame_length = check_frame_length(frame_length)
        self.threads = check_threads(threads)
        self.cache = cache if cache is not None else DataKeyCache()
        if not isinstance(self.cache, DataKeyCache):
            raise ValidationError("cache must be a DataKeyCache")
        self.allow_unbound = _check_bool(allow_unbound, "allow_unbound")
        tokens = validate_grant_tokens(grant_tokens, parameter="grant_tokens")
        if limits is not None and not isinstance(limits, Limits):
            raise ValidationError("limits must be a dataplane.Limits")
        self.limits = limits or Limits()
        if not callable(random_bytes):
            raise ValidationError("random_bytes must be a callable like os.urandom")
        self._keys = KeyService(kms, self.cache, trust, tokens or (), random_bytes)

    @property
    def trust(self) -> KeyTrust:
        """The trust policy: strict key ARNs, or discovery with its filters."""
        return self._keys.trust

    def __repr__(self) -> str:
        mode = "discovery" if self.trust.discovery else f"key_ids={list(self.trust.key_ids or ())}"
        return f"DataPlane(kms={self._kms!r}, {mode}, frame_length={self.frame_length}, threads={self.threads})"

    def cache_stats(self) -> CacheStats:
        """Counters: KMS Decrypt calls, cache hits and misses, evictions, entries."""
        return self.cache.stats()

    def open(
        self,
        location: LocationLike,
        *,
        encryption_context: Mapping[str, str] | None = None,
        container_id: str | None = None,
        fetch_key: bool = True,
    ) -> Container:
        """Open the container at `location` (path, file:// or s3:// URL, or a Store).

        Reads and checks the header, then gets the data key (one KMS Decrypt
        unless cached), so permission and key-state problems surface here:
        ContainerNotFoundError, FormatError, or the KMS error
        (AccessDeniedError, DisabledError, InvalidCiphertextError...).

        `encryption_context` pins pairs the header's context must contain and
        `container_id` pins its id: storage alone cannot prove which container
        a location holds, so a caller who knows should say. A mismatch, or a
        header whose data key is under a KMS key this plane does not trust, is
        `AuthenticationError` before any KMS call.

        With ``fetch_key=False`` the key is fetched on the first operation
        that needs it; listing, deleting and `inspect` never need it.
        """
        _check_bool(fetch_key, "fetch_key")
        expected = ExpectedContainer.from_options(encryption_context, container_id)
        store = open_store(location, s3_client=self._s3)
        header = read_container_header(store)
        check_binding(header)
        if header.suite != SUITE_ID:
            raise UnsupportedFormatError(f"{store.url}: container suite {header.suite:#06x} is not supported")
        if len(header.data_keys) != 1:
            # Replicas are reserved in the schema; until they exist, a second key is not ours.
            raise UnsupportedFormatError(f"{store.url}: containers with several data keys are not supported yet")
        provider = header.data_keys[0].provider
        if self._provider is not None and provider != self._provider:
            raise FormatError(
                f"{store.url}: the container's data key is held by {provider!r}, "
                f"but this DataPlane's KMS is {self._provider!r}"
            )
        expected.check(header.container_id, header.encryption_context, store.url)
        self.trust.check(header.data_keys[0].key_id, store.url)
        container = Container(self, store, header)
        if fetch_key:
            container.data_key()
        return container


class Container:
    """An open container: put, get, stream, list, delete and verify objects.

    Safe to share between threads (each call opens its own stream; the key
    cache is thread-safe). A handle holds no open resources of its own;
    `close()` and the context manager exist so code reads naturally and a
    closed handle refuses further use.
    """

    def __init__(self, plane: DataPlane, store: Store, header: ContainerHeader) -> None:
        self._plane = plane
        self._store = store
        self._objects = store.substore(OBJECTS_PREFIX.rstrip("/"))
        self.header = header
        self._clock = plane.cache.clock
        self._refresh_lock = threading.Lock()
        self._materials = self._load_materials()
        self._loaded_at = self._clock()
        self._closed = False
        self.spec: object | None = None
        """The `dataplane.bulk.ContainerSpec` this handle was opened from, if any: what lets its bulk
        operations (`rekey_all`) run on process pools and Dask, which need picklable work items."""

    # -- generations --

    def _load_materials(self) -> KeyMaterials:
        """Read the generation records and check every generation's KMS key against the trust policy."""
        header = self.header
        generations = [Generation(1, header.data_keys[0], header.encryption_context)]
        generations += [
            Generation(r.generation, r.data_keys[0], r.encryption_context)
            for r in read_generation_records(self._store, header)
        ]
        for g in generations:
            self._plane.trust.check(g.data_key.key_id, f"{self._store.url} (generation {g.number})")
        return KeyMaterials(self._plane._keys, header.container_id, generations, self._store.url)

    def _refresh(self, loaded_before: float | None = None) -> KeyMaterials:
        """Re-read the generations (once, however many threads ask at the same moment)."""
        with self._refresh_lock:
            if loaded_before is None or self._loaded_at <= loaded_before:
                self._materials = self._load_materials()
                self._loaded_at = self._clock()
            return self._materials

    def _writing_materials(self) -> KeyMaterials:
        # Writers follow rotations within the cache's max_age: the newest generation they can see.
        loaded_at = self._loaded_at
        if self._clock() - loaded_at >= self._plane.cache.max_age:
            return self._refresh(loaded_at)
        return self._materials

    def _materials_for(self, header: MessageHeader) -> KeyMaterials:
        """The materials to judge a message header by: re-read once if it names a newer generation.

        Only a header whose context claims a generation newer than any this
        handle knows triggers the re-read, so junk or unbound messages cost no
        extra storage requests.
        """
        loaded_at, materials = self._loaded_at, self._materials
        if materials.written_under(header) is None and _claims_newer_generation(header, materials):
            return self._refresh(loaded_at)
        return materials

    def _generation_for(self, header: MessageHeader) -> Generation | None:
        """The generation a message header was written under (None: not one of ours)."""
        return self._materials_for(header).written_under(header)

    @property
    def generation(self) -> int:
        """The generation new writes use (the newest this handle has seen, re-read within max_age)."""
        self._check_open()
        return self._writing_materials().primary.number

    def generations(self) -> list[KeyGeneration]:
        """Every data-key generation, oldest first (re-read from storage; 1 is the header)."""
        self._check_open()
        return [KeyGeneration.of_header(self.header)] + [
            KeyGeneration.of_record(r) for r in read_generation_records(self._store, self.header)
        ]

    def generation_of(self, name: str) -> int | None:
        """The generation object `name` was written under, from its message header (no KMS call).

        None for an unbound message (written by another SDK under the container's key).
        """
        self._check_open()
        validate_name(name)
        g = self._generation_for(self._message_header(name)[0])
        return None if g is None else g.number

    def _message_header(self, name: str) -> tuple[MessageHeader, int]:
        """A stored object's message header, parsed (not authenticated), and its stored size."""
        with self._objects.open_reader(name) as source:
            return read_header(source, self._plane.limits), source.size

    def usage(self, prefix: str = "") -> dict[int, int]:
        """Objects per generation under `prefix`, from message headers (no KMS call, no decryption).

        Objects that belong to no generation of this container (unbound
        messages) are counted under 0.
        """
        self._check_open()
        materials = self._refresh()  # once: every generation that exists now
        counts: dict[int, int] = {}
        for name in self.list(prefix):
            try:
                g = materials.written_under(self._message_header(name)[0])
            except ObjectNotFoundError:
                continue  # deleted meanwhile
            generation = 0 if g is None else g.number
            counts[generation] = counts.get(generation, 0) + 1
        return dict(sorted(counts.items()))

    def rekey(self, name: str, *, bind_unbound: bool = False) -> bool:
        """Re-encrypt object `name` under the newest generation; False if it is already there.

        Streams with bounded memory: every frame is authenticated before it
        is re-encrypted, and a failure anywhere leaves the object as it was.
        The new version replaces the old only if the object is still the
        version that was read (S3: `If-Match` on its ETag; locally the same
        check under the directory's lock), so a concurrent overwrite is never
        lost: this raises `ObjectChangedError` instead and writes nothing.
        Idempotent: a second call returns False. Re-reads the generation
        records first, so it always targets the newest generation there is.

        A message without our name binding (written by another SDK, read
        through `allow_unbound`) is refused with `UnboundObjectError`: re-
        encrypting it would bind it to whatever name it sits under now, so
        only a caller who vouches for that name passes `bind_unbound=True`.
        """
        self._check_open()
        validate_name(name)
        _check_bool(bind_unbound, "bind_unbound")
        return self._rekey(name, self._refresh().primary.number, bind_unbound=bind_unbound)

    def _rekey(self, name: str, newest: int, *, bind_unbound: bool = False) -> bool:
        source = self._objects.open_reader(name)
        try:
            version = source.version
            header = read_header(source, self._plane.limits)
            current = self._generation_for(header)
            if current is not None and current.number >= newest:
                return False
            resolution = _Resolution(self, name, allow_unbound=self._plane.allow_unbound)
            reader = MessageReader(
                source,
                resolve_key=resolution.resolve_key,
                check_message_id=resolution.check_message_id,
                limits=self._plane.limits,
                threads=self._plane.threads,
            )
        except BaseException:
            source.close()
            raise
        if not resolution.bound and not bind_unbound:
            reader.close()
            raise UnboundObjectError(
                f"{name!r} carries no name binding (written by another SDK): rekeying would bind it to this "
                "name; pass bind_unbound=True if you vouch for it"
            )
        frame_length = header.frame_length if _writable_frame_length(header.frame_length) else self._plane.frame_length
        with (
            reader,
            self._open_writer(
                name, overwrite=True, frame_length=frame_length, threads=self._plane.threads, if_match=version
            ) as writer,
        ):
            writer.write_from(reader)
        return True

    def rekey_all(
        self,
        prefix: str = "",
        *,
        executor: Executor | None = None,
        workers: int = 4,
        on_done: Callable[[str, str], None] | None = None,
        batch_size: int = 4,
    ) -> RekeyReport:
        """Rekey every object under `prefix` to the newest generation; one bad object never stops the sweep.

        Runs on `executor` (any `concurrent.futures.Executor`: threads, a
        process pool, Dask's `Client.get_executor()`) or, by default, on
        `workers` threads of this process. Resumable: run it again and what
        is already current is counted, not rewritten. `on_done(name, outcome)`
        is called as each object finishes ("rekeyed", "current" or "failed"),
        for progress reporting. On other processes, names travel in batches of
        `batch_size` (small, so that a few large objects still spread over
        the workers).
        """
        self._check_open()
        if prefix:
            validate_prefix(prefix)
        if executor is not None and not isinstance(executor, Executor):
            raise ValidationError("executor must be a concurrent.futures.Executor")
        if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
            raise ValidationError("workers must be an int in 1..64")
        names = list(self.list(prefix))
        newest = self._refresh().primary.number  # once: the sweep targets the newest generation there is now
        if on_done is not None and not callable(on_done):
            raise ValidationError("on_done must be callable")
        if executor is None:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rekey") as pool:
                return RekeyReport.of(_run_on(pool, self, names, newest, on_done))
        if isinstance(executor, ThreadPoolExecutor):
            return RekeyReport.of(_run_on(executor, self, names, newest, on_done))
        # Another process (a process pool, a Dask cluster): work items are (spec, names), never keys.
        from dataplane.bulk import ContainerSpec, rekey_on

        if not isinstance(self.spec, ContainerSpec):
            raise ValidationError(
                "rekey_all on processes or Dask needs a container opened through dataplane.bulk.ContainerSpec "
                "(a picklable configuration each worker opens it from); this one was opened directly"
            )
        outcomes: list[tuple[str, str, str]] = []
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValidationError("batch_size must be an int >= 1")
        for batch in rekey_on(executor, self.spec, names, newest, batch_size):
            outcomes += batch
            if on_done is not None:
                for name, outcome, _ in batch:
                    on_done(name, outcome)
        order = {name: i for i, name in enumerate(names)}
        return RekeyReport.of(sorted(outcomes, key=lambda o: order[o[0]]))

    def _rekey_outcome(self, name: str, newest: int) -> tuple[str, str, str]:
        try:
            return (name, "rekeyed" if self._rekey(name, newest) else "current", "")
        except ObjectNotFoundError:
            return (name, "current", "")  # deleted meanwhile: nothing left to rekey
        except EnvelopeError as e:
            return (name, "failed", f"{type(e).__name__}: {e}")

    def retire_generation(self, generation: int) -> None:
        """Delete generation `generation`'s record once no object uses it.

        Refused (`GenerationInUseError`) while any object is under it, while
        writers may still be using it (the generation that replaced it is
        younger than the cache's `max_age`), for the newest generation, and for
        generation 1, whose record is the header itself. Deleting a record
        does not shred the key while copies of the record exist: disabling
        and deleting its KMS key does (docs/operations.md).
        """
        self._check_open()
        if isinstance(generation, bool) or not isinstance(generation, int) or generation < 1:
            raise ValidationError("generation must be a positive int")
        if generation == 1:
            raise ValidationError("generation 1 is the container header itself and cannot be retired")
        materials = self._refresh()
        if materials.generation(generation) is None:
            raise ValidationError(f"{self.url} has no generation {generation}")
        if generation == materials.primary.number:
            raise GenerationInUseError(f"generation {generation} is the newest: new writes use it")
        records = {r.generation: r for r in read_generation_records(self._store, self.header)}
        successor = min(n for n in records if n > generation)
        age = (datetime.now(UTC) - records[successor].created_at).total_seconds()
        if age < self._plane.cache.max_age:
            raise GenerationInUseError(
                f"generation {successor} replaced generation {generation} {age:.0f} s ago; running writers may "
                f"use generation {generation} for up to {self._plane.cache.max_age:.0f} s after a rotation"
            )
        in_use = self.usage().get(generation, 0)
        if in_use:
            raise GenerationInUseError(
                f"{in_use} object(s) still use generation {generation}: rekey them first (Container.rekey_all)"
            )
        self._store.delete(generation_record_name(generation))
        self._refresh()

    def __repr__(self) -> str:
        return f"<Container {self._store.url} id={self.header.container_id}>"

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True

    @property
    def url(self) -> str:
        return self._store.url

    @property
    def container_id(self) -> str:
        return self.header.container_id

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on a closed container")

    def data_key(self) -> DataKey:
        """The data key new writes use, from the plane's cache (one KMS Decrypt per cache lifetime)."""
        self._check_open()
        return self._writing_materials().data_key()

    # -- writing --

    def open_writer(
        self, name: str, *, overwrite: bool = False, frame_length: int | None = None, threads: int | None = None
    ) -> MessageWriter:
        """A binary, write-only file-like object; the object appears only on a clean close.

        Create-only unless `overwrite=True`. An exception inside a `with`
        block, or `abort()`, leaves nothing visible.
        """
        self._check_open()
        validate_name(name)
        _check_bool(overwrite, "overwrite")
        frame_length = self._plane.frame_length if frame_length is None else check_frame_length(frame_length)
        threads = self._plane.threads if threads is None else check_threads(threads)
        return self._open_writer(name, overwrite=overwrite, frame_length=frame_length, threads=threads)

    def _open_writer(
        self, name: str, *, overwrite: bool, frame_length: int, threads: int, if_match: str | None = None
    ) -> MessageWriter:
        materials = self._writing_materials().for_writing(name)
        if if_match is None:
            writer = self._objects.open_writer(name, overwrite=overwrite)
        else:
            writer = self._objects.open_writer(name, overwrite=True, if_match=if_match)
        sink = _AccountingSink(writer, materials.record)
        try:
            return _TypedWriter(
                sink,
                data_key=materials.data_key,
                message_id=materials.message_id,
                encryption_context=materials.encryption_context,
                encrypted_data_keys=materials.encrypted_data_keys,
                frame_length=frame_length,
                threads=threads,
            )
        except BaseException:
            writer.abort()
            raise

    def put(self, name: str, data: bytes | bytearray | memoryview, *, overwrite: bool = False) -> None:
        """Encrypt `data` into object `name` (create-only unless overwrite=True).

        Up to `ONESHOT_BYTES` the message is sealed in memory and written with
        one write; larger data streams through `open_writer`. Either way the
        store publishes it only complete (temp file, fsync, link, directory
        fsync on a LocalStore).
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValidationError(f"data must be bytes-like, not {type(data).__name__}")
        with as_byte_view(data) as view:
            if len(view) > ONESHOT_BYTES:
                with self.open_writer(name, overwrite=overwrite) as w:
                    w.write(view)
                return
            self._check_open()
            validate_name(name)  # here too: a Store subclass may not check names before its I/O
            _check_bool(overwrite, "overwrite")
            writer = self._objects.open_writer(name, overwrite=overwrite)  # the name is checked before any I/O
            try:
                materials = self._writing_materials().for_writing(name)
                message = seal_message(
                    view,
                    data_key=materials.data_key,
                    message_id=materials.message_id,
                    encryption_context=materials.encryption_context,
                    encrypted_data_keys=materials.encrypted_data_keys,
                    frame_length=self._plane.frame_length,
                )
                writer.write(message)
                writer.commit()
            except BaseException:
                writer.abort()
                raise
            materials.record(len(message))

    # -- reading --

    def open_reader(self, name: str, *, allow_unbound: bool | None = None, threads: int | None = None) -> MessageReader:
        """A binary, read-only, seekable file-like object over the plaintext of `name`.

        The header, key commitment and name binding are verified before it
        is returned; each frame is verified before any of its bytes are.
        """
        return self._open_reader(name, allow_unbound=allow_unbound, threads=threads)[0]

    def _open_reader(
        self,
        name: str,
        *,
        allow_unbound: bool | None = None,
        threads: int | None = None,
        source: ObjectReader | None = None,
    ) -> tuple[MessageReader, _Resolution]:
        """A reader over `name`; `source`, when given, is the store's reader for it, already open (owned)."""
        try:
            if source is None:
                self._check_open()
                validate_name(name)
            allow = self._plane.allow_unbound if allow_unbound is None else _check_bool(allow_unbound, "allow_unbound")
            threads = self._plane.threads if threads is None else check_threads(threads)
        except BaseException:
            if source is not None:
                source.close()
            raise
        resolution = _Resolution(self, name, allow_unbound=allow)
        if source is None:
            source = self._objects.open_reader(name)
        reader = MessageReader(
            source,
            resolve_key=resolution.resolve_key,
            check_message_id=resolution.check_message_id,
            limits=self._plane.limits,
            threads=threads,
        )
        return reader, resolution

    def get(self, name: str) -> bytes:
        """The whole plaintext of `name` (use open_reader for large objects).

        An object of at most `ONESHOT_BYTES` stored bytes is read with one read
        and opened in one call, every frame authenticated before any byte is
        returned; a larger one streams through `open_reader`. Both run the same
        checks and raise the same errors.
        """
        self._check_open()
        validate_name(name)  # before any I/O, whatever the store does
        found = read_small(self._objects, name, ONESHOT_BYTES)
        if not isinstance(found, bytes):
            with self._open_reader(name, source=found)[0] as r:
                return r.read()
        resolution = _Resolution(self, name, allow_unbound=self._plane.allow_unbound)
        return open_message(
            found,
            resolve_key=resolution.resolve_key,
            check_message_id=resolution.check_message_id,
            limits=self._plane.limits,
        )

    def verify(self, name: str) -> VerifyResult:
        """Authenticate every frame of `name` without keeping any plaintext."""
        r, resolution = self._open_reader(name)
        with r:
            # One frame per readinto when frames are at least a page; capped at 4 MiB so a hostile
            # frame length cannot make verification allocate more than that (the reader splits reads).
            scratch = bytearray(min(max(r.header.frame_length, _VERIFY_MIN_CHUNK), _VERIFY_MAX_CHUNK))
            view = memoryview(scratch)
            total = 0
            while n := r.readinto(view):
                total += n
            view.release()
            scratch[:] = bytes(len(scratch))
            size = self._objects.size(name)
            return VerifyResult(
                name=name,
                size=total,
                frame_length=r.header.frame_length,
                encrypted_size=size,
                bound=resolution.bound,
                generation=resolution.generation,
            )

    def inspect(self, name: str) -> ObjectInfo:
        """The message header of `name`, parsed but not authenticated (no KMS call, no key)."""
        self._check_open()
        validate_name(name)
        header, size = self._message_header(name)
        generation = self._generation_for(header)
        return ObjectInfo(
            name=name,
            encrypted_size=size,
            message_id=header.message_id.hex(),
            suite_id=header.suite_id,
            content_type=header.content_type,
            frame_length=header.frame_length,
            encryption_context=dict(header.encryption_context),
            encrypted_data_keys=tuple(
                (e.provider_id, e.provider_info.decode("utf-8", "replace")) for e in header.encrypted_data_keys
            ),
            bound_to_container=generation is not None,
            generation=None if generation is None else generation.number,
        )

    def stat(self, name: str) -> ObjectStat:
        """Sizes (plaintext and stored) and generation of `name`, without any key or KMS call.

        One header read per object. The plaintext size is derived from the header's frame length and
        the stored size, not authenticated; an object whose size no valid message can have raises
        AuthenticationError, as reading it would."""
        self._check_open()
        validate_name(name)
        header, size = self._message_header(name)
        layout = body_layout(header, size, self._plane.limits)
        generation = self._generation_for(header)
        return ObjectStat(
            name=name,
            size=layout.plaintext_size,
            encrypted_size=size,
            generation=None if generation is None else generation.number,
            frame_length=header.frame_length,
        )

    # -- namespace --

    def list(self, prefix: str = "") -> Iterator[str]:
        """Object names starting with `prefix`, in sorted order."""
        self._check_open()
        if prefix:
            validate_prefix(prefix)
        return self._objects.list(prefix)

    def exists(self, name: str) -> bool:
        self._check_open()
        validate_name(name)
        return self._objects.exists(name)

    def size(self, name: str) -> int:
        """Encrypted size of the stored object in bytes."""
        self._check_open()
        validate_name(name)
        return self._objects.size(name)

    def delete(self, name: str) -> None:
        """Remove object `name` (ObjectNotFoundError if absent)."""
        self._check_open()
        validate_name(name)
        self._objects.delete(name)


class _Resolution:
    """What `open_reader` resolved for one message: its key materials, then its name check."""

    __slots__ = ("_allow_unbound", "_container", "_found", "_name")

    def __init__(self, container: Container, name: str, *, allow_unbound: bool) -> None:
        self._container, self._name, self._allow_unbound = container, name, allow_unbound
        self._found: ReadMaterials | None = None

    def resolve_key(self, header: MessageHeader) -> DataKey:
        materials = self._container._materials_for(header)  # perhaps a generation this handle has not seen
        self._found = materials.for_reading(header, allow_unbound=self._allow_unbound)
        return self._found.data_key

    def check_message_id(self, message_id: bytes) -> bool:
        assert self._found is not None, "the reader resolves the key before it checks the message id"
        return self._found.check_message_id(self._container.container_id, self._name, message_id)

    @property
    def bound(self) -> bool:
        return self._found is not None and self._found.bound

    @property
    def generation(self) -> int | None:
        return None if self._found is None else self._found.generation
