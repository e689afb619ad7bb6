"""`ControlPlane`: create, describe and list containers.

Provisioning asks KMS for one thing, GenerateDataKeyWithoutPlaintext, and
writes the encrypted data key into the container's header with a
create-only write. That write is the single commit point: nothing else is
ever written, so a failure at any step leaves no trace of a half-made
container, and of two provisioners racing for one location exactly one
wins while the other's header is never written.

This module must never call any other KMS operation, never hold or ask for
a plaintext data key, and never overwrite or delete a header. It is handed
a `DataKeyGenerator` and uses nothing else of it (the optional
`provider_id` attribute aside).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeAlias

import attrs

from controlplane import _params
from controlplane._durability import entry_parents, sync_directories
from envelope.containers import read_container_header, read_generation_records
from envelope.datakey import DataKeyGenerator, GeneratedDataKey
from envelope.errors import (
    ContainerExistsError,
    EnvelopeError,
    KmsError,
    ObjectExistsError,
    ValidationError,
)
from envelope.header import (
    HEADER_NAME,
    PROVIDERS,
    ContainerHeader,
    WrappedDataKey,
    build_encryption_context,
    validate_labels,
)
from envelope.keygen import GenerationRecord, KeyGeneration, generation_context
from envelope.storage import Store, open_store

__all__ = ["ContainerRequest", "ContainerResult", "ControlPlane", "KeyGeneration", "LocationLike"]

LocationLike: TypeAlias = "str | os.PathLike[str] | Store"
"""A local path, a ``file://`` URL, an ``s3://bucket/prefix`` URL, or a `Store`."""

_OPERATION = "GenerateDataKeyWithoutPlaintext"
_ROTATION_RACES = 8


@attrs.frozen(kw_only=True)
class ContainerRequest:
    """One container to provision in a `ControlPlane.create_containers` batch."""

    location: LocationLike
    key_id: str
    encryption_context: Mapping[str, str] | None = None
    grant_tokens: Sequence[str] | None = None
    labels: Mapping[str, str] | None = None


@attrs.frozen(kw_only=True)
class ContainerResult:
    """The outcome for one container: its header, or the exception that stopped it (never both).

    `location` is the container's URL (``file:///...`` or ``s3://...``), or
    the location as given when it could not even be opened.
    """

    location: str
    header: ContainerHeader | None = None
    error: Exception | None = None

    def __attrs_post_init__(self) -> None:
        if (self.header is None) == (self.error is None):
            raise AssertionError("a ContainerResult holds exactly one of header and error")

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> ContainerHeader:
        """The header, or raise the error this container failed with."""
        if self.error is not None:
            raise self.error
        assert self.header is not None
        return self.header


_Provisioned: TypeAlias = "tuple[ContainerResult, frozenset[Path]]"
"""A batch member's result, and the directories whose entries must be synced before it is reported."""


class ControlPlane:
    """Provisions containers. Holds no key and cannot decrypt.

    `kms` is any `DataKeyGenerator` (`AwsKms`, `LocalKms`, ...). Its optional
    `provider_id` attribute ("aws-kms" or "local"; "aws-kms" when absent)
    is recorded in each header so the data plane knows who can decrypt the
    data key. `s3_client` is the caller's boto3 S3 client for ``s3://``
    locations. `clock` (-> timezone-aware datetime) and `id_factory` (-> 16
    bytes or 32 lowercase hex characters) default to the real clock and to
    `secrets`; tests inject them.

    Safe to share between threads: it keeps no per-call state.
    """

    def __init__(
        self,
        kms: DataKeyGenerator,
        s3_client: Any = None,
        *,
        clock: Callable[[], datetime] | None = None,
        id_factory: Callable[[], bytes | str] | None = None,
    ) -> None:
        generate = getattr(kms, "generate_data_key_without_plaintext", None)
        if not callable(generate):
            raise ValidationError("kms must provide generate_data_key_without_plaintext (a DataKeyGenerator)")
        provider = getattr(kms, "provider_id", "aws-kms")
        if provider not in PROVIDERS:
            raise ValidationError(f"kms.provider_id must be one of {', '.join(PROVIDERS)}, got {provider!r}")
        # Keep the one bound operation, not the adapter: nothing here can reach anything else of it.
        self._generate: Callable[..., GeneratedDataKey] = generate
        self._provider: str = provider
        self._s3_client = s3_client
        self._clock = _params.check_optional_callable(clock, "clock")
        self._id_factory = _params.check_optional_callable(id_factory, "id_factory")

    def __repr__(self) -> str:
        return f"ControlPlane(provider={self._provider!r})"

    # ----------------------------------------------------------------- create

    def create_container(
        self,
        location: LocationLike,
        key_id: str,
        *,
        encryption_context: Mapping[str, str] | None = None,
        grant_tokens: Sequence[str] | None = None,
        labels: Mapping[str, str] | None = None,
        key_spec: str | None = "AES_256",
        number_of_bytes: int | None = None,
    ) -> ContainerHeader:
        """Create a container at `location` whose data key is encrypted under `key_id`.

        Every argument is checked before any request (ValidationError). Then:
        ContainerExistsError if a header is already there, ObjectExistsError if
        the location holds anything else (both without calling KMS); then one
        GenerateDataKeyWithoutPlaintext with the full encryption context
        (`encryption_context` plus the reserved ``envelope:`` entries); then
        the header is written create-only. Losing a race to another
        provisioner is ContainerExistsError, and the winner's header is left
        as it was. KMS failures raise the typed `KmsError` subclass. For a
        local container, every directory above it on its file system is
        fsynced before this returns, so the directories created on the way
        to it (by this call or a concurrent one) are durable in their parents
        (StorageError if they cannot be).
        """
        store = self._open(location)
        header = self._prepare(
            store,
            key_id,
            encryption_context=encryption_context,
            grant_tokens=grant_tokens,
            labels=labels,
            key_spec=key_spec,
            number_of_bytes=number_of_bytes,
        )
        self._write(store, header)
        for error in sync_directories(entry_parents(store)).values():
            raise error
        return header

    def _prepare(
        self,
        store: Store,
        key_id: str,
        *,
        encryption_context: Mapping[str, str] | None,
        grant_tokens: Sequence[str] | None,
        labels: Mapping[str, str] | None,
        key_spec: str | None = "AES_256",
        number_of_bytes: int | None = None,
    ) -> ContainerHeader:
        """Check everything, then ask KMS: the header to write."""
        key_size = _params.check_key_size(key_spec, number_of_bytes)
        key_id = _params.check_key_id(key_id)
        tokens = _params.check_grant_tokens(grant_tokens)
        checked_labels = validate_labels(labels)
        container_id = _params.new_container_id(self._id_factory)
        context = build_encryption_context(encryption_context, container_id)
        created_at = _params.now_utc(self._clock)

        self._require_vacant(store)
        generated = self._generate(key_id, encryption_context=context, grant_tokens=tokens, **key_size)
        header = ContainerHeader(
            container_id=container_id,
            data_keys=(self._data_key(generated),),
            encryption_context=context,
            created_at=created_at,
            labels=checked_labels,
        )
        return header

    @staticmethod
    def _write(store: Store, header: ContainerHeader) -> None:
        """The commit point: the header, written create-only and durably."""
        try:
            store.put_bytes(HEADER_NAME, header.to_json(), overwrite=False)
        except ObjectExistsError as e:
            # Another provisioner committed first. Our data key was never stored anywhere and
            # exists only encrypted, so dropping it needs no clean-up.
            raise ContainerExistsError(f"a container already exists at {store.url}") from e

    def _require_vacant(self, store: Store) -> None:
        # Fast failure without a KMS call; the create-only header write is still the arbiter.
        if store.exists(HEADER_NAME):
            raise ContainerExistsError(f"a container already exists at {store.url}")
        # A container is made at an empty location only: otherwise its objects/ could collide with
        # what is there, and a container over other containers would hide them from listings.
        first = next(iter(store.list_children()), None)
        if first == HEADER_NAME:  # a racing provisioner committed between the two looks
            raise ContainerExistsError(f"a container already exists at {store.url}")
        if first is not None:
            raise ObjectExistsError(
                f"{store.url} is not empty (it holds {first!r}); create containers at empty locations"
            )

    def _data_key(self, generated: GeneratedDataKey) -> WrappedDataKey:
        try:
            return WrappedDataKey(
                provider=self._provider, key_id=generated.key_id, ciphertext=generated.ciphertext_blob
            )
        except (ValidationError, AttributeError) as e:
            raise KmsError(f"unusable response: {e}", code="InvalidResponse", operation=_OPERATION) from None

    # ----------------------------------------------------------------- generations

    def rotate_container(
        self, location: LocationLike, key_id: str | None = None, *, grant_tokens: Sequence[str] | None = None
    ) -> KeyGeneration:
        """Add the container's next data-key generation: one GenerateDataKeyWithoutPlaintext call.

        `key_id=None` keeps the container's own KMS key (the header's); any
        key id form migrates the container to that key, and once the newest
        generation is under another key, later rotations must name their key
        (ValidationError otherwise): the control plane cannot authenticate a
        generation record, so it never takes a KMS key from one. The new record is written
        create-only as ``keys/NNNNNNNN.json`` with the container's context
        plus ``envelope:generation``; writers switch to it within their
        cache's `max_age`, and every object of every generation stays
        readable. Losing a race to a concurrent rotation re-reads and takes
        the next number (each call adds exactly one generation).
        """
        checked_key = None if key_id is None else _params.check_key_id(key_id)
        tokens = _params.check_grant_tokens(grant_tokens)
        store = self._open(location)
        header = read_container_header(store)
        if header.data_keys[0].provider != self._provider:
            raise ValidationError(
                f"{store.url}: the container's data key is held by {header.data_keys[0].provider!r}, "
                f"but this ControlPlane's KMS is {self._provider!r}"
            )
        records = read_generation_records(store, header)
        for _ in range(_ROTATION_RACES):
            newest = records[-1] if records else None
            key = checked_key or self._kept_key(store, header, newest)
            generation = (newest.generation if newest else 1) + 1
            context = generation_context(header.encryption_context, generation)
            generated = self._generate(key, encryption_context=context, grant_tokens=tokens, key_spec="AES_256")
            record = GenerationRecord(
                container_id=header.container_id,
                generation=generation,
                data_keys=(self._data_key(generated),),
                encryption_context=context,
                created_at=_params.now_utc(self._clock),
            )
            try:
                store.put_bytes(record.name, record.to_json(), overwrite=False)
            except ObjectExistsError:
                # A concurrent rotation took this number; our data key was never stored anywhere.
                records = read_generation_records(store, header)
                continue
            return KeyGeneration.of_record(record)
        raise ContainerExistsError(f"{store.url}: lost {_ROTATION_RACES} races to concurrent rotations; try again")

    @staticmethod
    def _kept_key(store: Store, header: ContainerHeader, newest: GenerationRecord | None) -> str:
        """The KMS key a rotation without `key_id` keeps: the container's own, never one read from a record.

        A record is storage the control plane cannot authenticate (it holds no key): taking the key
        of the newest record would let whoever can plant one choose the KMS key of every later
        generation. So after a migration (`rotate --key`) later rotations name their key again.
        """
        own = header.data_keys[0].key_id
        if newest is not None and newest.data_keys[0].key_id != own:
            raise ValidationError(
                f"{store.url}: the newest generation ({newest.generation}) is under {newest.data_keys[0].key_id}, "
                f"not the container's own key {own}; name the KMS key to rotate under (key_id=, --key)"
            )
        return own

    def list_generations(self, location: LocationLike) -> list[KeyGeneration]:
        """Every data-key generation of the container, oldest first (generation 1 is the header)."""
        store = self._open(location)
        header = read_container_header(store)
        return [KeyGeneration.of_header(header), *map(KeyGeneration.of_record, read_generation_records(store, header))]

    # ----------------------------------------------------------------- describe

    def describe_container(self, location: LocationLike) -> ContainerHeader:
        """The header of the container at `location`.

        ContainerNotFoundError when there is no header; FormatError (or
        UnsupportedFormatError) when it is malformed or of an unknown version.
        """
        return read_container_header(self._open(location))

    # ----------------------------------------------------------------- list

    def list_containers(self, root: LocationLike) -> Iterator[ContainerResult]:
        """Every container at or below `root`, depth first in the store's (sorted) listing order.

        Walks the store's directory-like prefixes. A prefix holding a header
        is a container: it is reported and not descended into (its objects/
        may hold anything). A container whose header cannot be read or parsed
        is reported with its error instead of a header, and the walk goes on.
        An error listing the store itself is raised, from the iteration; a bad
        `root` is a ValidationError at the call, before anything is iterated.
        """
        return self._walk(self._open(root))

    def _walk(self, store: Store) -> Iterator[ContainerResult]:
        pending = [""]
        while pending:
            prefix = pending.pop()
            children = list(store.list_children(prefix))
            if prefix + HEADER_NAME in children:
                yield self._listed(store.substore(prefix.removesuffix("/")) if prefix else store)
                continue
            # Reversed onto a stack so that the walk comes out in sorted order.
            pending.extend(reversed([child for child in children if child.endswith("/")]))

    def _listed(self, container: Store) -> ContainerResult:
        try:
            return ContainerResult(location=container.url, header=read_container_header(container))
        except EnvelopeError as e:  # malformed, vanished meanwhile, unreadable: report, carry on
            return ContainerResult(location=container.url, error=e)

    # ----------------------------------------------------------------- batch

    def create_containers(self, requests: Iterable[ContainerRequest], *, max_workers: int = 8) -> list[ContainerResult]:
        """Provision many containers, at most `max_workers` KMS calls at a time.

        Returns one result per request, in request order, each holding the
        header or the exception that request failed with. A failure never
        stops, hides or cancels the others: every request runs to its end.

        The KMS calls are the throughput limit, so the header writes (a
        durable create-only write each) run on a second pool of
        `max_workers` threads: a worker hands its header over and takes the
        next request's KMS call instead of waiting for the disk. Every
        directory above a local container created by the batch (on its file
        system) is fsynced once for the whole batch, after every header
        below it is written and before anything is returned; if that fails,
        each container below it is reported with the StorageError, not as
        created.
        """
        if not isinstance(requests, Iterable):
            raise ValidationError(f"requests must be an iterable of ContainerRequest, got {type(requests).__name__}")
        batch = list(requests)
        for i, request in enumerate(batch):
            if not isinstance(request, ContainerRequest):
                raise ValidationError(f"requests[{i}] must be a ContainerRequest, got {type(request).__name__}")
        if type(max_workers) is not int or max_workers < 1:
            raise ValidationError(f"max_workers must be a positive int, got {max_workers!r}")
        if not batch:
            return []
        workers = min(max_workers, len(batch))
        # The calls feed the writes, so the write pool is entered first and shut down last.
        with (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="provision-write") as writes,
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="provision") as calls,
        ):
            staged = [calls.submit(self._provision, request, writes) for request in batch]
            provisioned = [future.result().result() for future in staged]
        failed = sync_directories(parent for _, parents in provisioned for parent in parents)
        return [_durable(result, parents, failed) for result, parents in provisioned]

    def _provision(self, request: ContainerRequest, writes: ThreadPoolExecutor) -> Future[_Provisioned]:
        """The checks and the KMS call, in this thread; the header write, handed to `writes`."""
        location = _display(request.location)
        try:
            store = self._open(request.location)
            location = store.url
            header = self._prepare(
                store,
                request.key_id,
                encryption_context=request.encryption_context,
                grant_tokens=request.grant_tokens,
                labels=request.labels,
            )
        # Anything at all: a lost result would leave the caller unaware of a container that exists.
        except Exception as e:  # noqa: BLE001
            failed: Future[_Provisioned] = Future()
            failed.set_result((ContainerResult(location=location, error=e), frozenset()))
            return failed
        return writes.submit(self._commit, store, header)

    def _commit(self, store: Store, header: ContainerHeader) -> _Provisioned:
        try:
            self._write(store, header)
            parents = entry_parents(store)  # all of them: a shared parent may be another creation's, unsynced
        except Exception as e:  # noqa: BLE001 - as in _provision: every outcome is reported
            return ContainerResult(location=store.url, error=e), frozenset()
        return ContainerResult(location=store.url, header=header), parents

    # ----------------------------------------------------------------- locations

    def _open(self, location: LocationLike) -> Store:
        return open_store(location, s3_client=self._s3_client)


def _durable(result: ContainerResult, parents: frozenset[Path], failed: Mapping[Path, Exception]) -> ContainerResult:
    """`result`, unless a directory above its container could not be synced."""
    for parent in sorted(parents):
        if parent in failed:
            return ContainerResult(location=result.location, error=failed[parent])
    return result


def _display(location: object) -> str:
    return str(os.fspath(location)) if isinstance(location, str | os.PathLike) else repr(location)
