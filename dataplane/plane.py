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
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from dataplane.binding import derive_binding_key, new_message_id, verify_message_id
from dataplane.cache import CacheStats, DataKeyCache
from dataplane.format import DATA_KEY_LENGTH, DEFAULT_FRAME_LENGTH, EncryptedDataKey, Limits, MessageHeader, read_header
from dataplane.stream import MessageReader, MessageWriter, check_frame_length, check_threads
from envelope.containers import read_container_header
from envelope.datakey import DataKey, DataKeyDecryptor
from envelope.errors import AuthenticationError, FormatError, UnsupportedFormatError, ValidationError
from envelope.header import OBJECTS_PREFIX, SUITE_ID, ContainerHeader, check_binding
from envelope.header import EncryptedDataKey as HeaderDataKey
from envelope.kmsparams import validate_grant_tokens
from envelope.storage import ObjectWriter, Store, open_store, validate_name, validate_prefix

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["Container", "DataPlane", "ObjectInfo", "VerifyResult", "message_provider_id"]

LocationLike = Store | str | os.PathLike[str]

# EDK provider ids inside messages. "aws-kms" is what every AWS Encryption SDK
# recognises; local-keystore containers get their own id so no SDK mistakes
# them for KMS keys (the interop promise is for AWS KMS containers).
_MESSAGE_PROVIDER = {"aws-kms": "aws-kms", "local": "envelope-local"}


def message_provider_id(header_provider: str) -> str:
    """The EDK provider id written into messages for a container-header provider."""
    return _MESSAGE_PROVIDER[header_provider]


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
    """The header's context and EDKs are exactly the container's."""


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
    locations. The data-key cache is on the instance and shared by every
    container it opens; pass `cache=` to share one between planes (only
    between planes using the same KMS credentials: a cached key skips KMS's
    authorization check).
    """

    def __init__(
        self,
        kms: DataKeyDecryptor,
        s3_client: S3Client | None = None,
        *,
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
        self.frame_length = check_frame_length(frame_length)
        self.threads = check_threads(threads)
        self.cache = cache if cache is not None else DataKeyCache()
        if not isinstance(self.cache, DataKeyCache):
            raise ValidationError("cache must be a DataKeyCache")
        self.allow_unbound = _check_bool(allow_unbound, "allow_unbound")
        self._grant_tokens = validate_grant_tokens(grant_tokens, parameter="grant_tokens")
        if limits is not None and not isinstance(limits, Limits):
            raise ValidationError("limits must be a dataplane.Limits")
        self.limits = limits or Limits()
        if not callable(random_bytes):
            raise ValidationError("random_bytes must be a callable like os.urandom")
        self._random = random_bytes
        self._provider = getattr(kms, "provider_id", None)

    def __repr__(self) -> str:
        return f"DataPlane(kms={self._kms!r}, frame_length={self.frame_length}, threads={self.threads})"

    def cache_stats(self) -> CacheStats:
        """Counters: KMS Decrypt calls, cache hits and misses, evictions, entries."""
        return self.cache.stats()

    def open(self, location: LocationLike, *, fetch_key: bool = True) -> Container:
        """Open the container at `location` (path, file:// or s3:// URL, or a Store).

        Reads and checks the header, then gets the data key (one KMS Decrypt
        unless cached), so permission and key-state problems surface here:
        ContainerNotFoundError, FormatError, or the KMS error
        (AccessDeniedError, DisabledError, InvalidCiphertextError...).
        With ``fetch_key=False`` the key is fetched on the first operation
        that needs it; listing, deleting and `inspect` never need it.
        """
        _check_bool(fetch_key, "fetch_key")
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
        container = Container(self, store, header)
        if fetch_key:
            container.data_key()
        return container

    # -- used by containers --

    def _cache_key(self, edk: HeaderDataKey, context: Mapping[str, str]) -> Hashable:
        # The KMS object is part of the key: a key cached for one set of credentials is never
        # served to a plane whose KMS would not have authorized it.
        return (self._kms, edk.provider, edk.key_id, edk.ciphertext, tuple(sorted(context.items())))

    def _decrypt_cached(self, edk: HeaderDataKey, context: Mapping[str, str]) -> DataKey:
        def load() -> DataKey:
            key = self._kms.decrypt(
                edk.ciphertext,
                encryption_context=dict(context),
                key_id=edk.key_id,
                grant_tokens=self._grant_tokens or None,
            )
            if key.key_id != edk.key_id or len(key) != DATA_KEY_LENGTH:
                key.wipe()
                raise AuthenticationError
            return key

        return self.cache.get(self._cache_key(edk, context), load)

    def _record(self, edk: HeaderDataKey, context: Mapping[str, str], nbytes: int) -> None:
        self.cache.record_encryption(self._cache_key(edk, context), nbytes)


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
        self._edk = header.data_keys[0]
        self._context = dict(header.encryption_context)
        self._message_edks = tuple(
            EncryptedDataKey(message_provider_id(k.provider), k.key_id.encode("utf-8"), k.ciphertext)
            for k in header.data_keys
        )
        self._closed = False

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
        """The container's data key from the plane's cache (one KMS Decrypt per cache lifetime)."""
        self._check_open()
        return self._plane._decrypt_cached(self._edk, self._context)

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
        key = self.data_key()
        message_id = new_message_id(
            derive_binding_key(key.reveal()),
            self.header.container_id,
            name,
            self._plane._random,
        )
        edk = self._edk
        context = self._context
        writer = self._objects.open_writer(name, overwrite=overwrite)
        sink = _AccountingSink(writer, lambda n: self._plane._record(edk, context, n))
        try:
            return MessageWriter(
                sink,
                data_key=key,
                message_id=message_id,
                encryption_context=context,
                encrypted_data_keys=self._message_edks,
                frame_length=frame_length,
                threads=threads,
            )
        except BaseException:
            writer.abort()
            raise

    def put(self, name: str, data: bytes | bytearray | memoryview, *, overwrite: bool = False) -> None:
        """Encrypt `data` into object `name` (create-only unless overwrite=True)."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValidationError(f"data must be bytes-like, not {type(data).__name__}")
        with self.open_writer(name, overwrite=overwrite) as w:
            w.write(data)

    # -- reading --

    def open_reader(self, name: str, *, allow_unbound: bool | None = None, threads: int | None = None) -> MessageReader:
        """A binary, read-only, seekable file-like object over the plaintext of `name`.

        The header, key commitment and name binding are verified before it
        is returned; each frame is verified before any of its bytes are.
        """
        self._check_open()
        validate_name(name)
        allow = self._plane.allow_unbound if allow_unbound is None else _check_bool(allow_unbound, "allow_unbound")
        threads = self._plane.threads if threads is None else check_threads(threads)
        resolved: dict[str, Any] = {}

        def resolve_key(header: MessageHeader) -> DataKey:
            if self._is_ours(header):
                key = self.data_key()
                resolved["binding_key"] = derive_binding_key(key.reveal())
                return key
            if allow and dict(header.encryption_context) == self._context:
                foreign = self._foreign_key(header)
                if foreign is not None:
                    resolved["unbound"] = True
                    return foreign
            raise AuthenticationError

        def check_message_id(message_id: bytes) -> bool:
            if resolved.get("unbound"):
                return True
            return verify_message_id(resolved["binding_key"], self.header.container_id, name, message_id)

        source = self._objects.open_reader(name)
        return MessageReader(
            source,
            resolve_key=resolve_key,
            check_message_id=check_message_id,
            limits=self._plane.limits,
            threads=threads,
        )

    def _is_ours(self, header: MessageHeader) -> bool:
        return (
            tuple(header.encrypted_data_keys) == self._message_edks and dict(header.encryption_context) == self._context
        )

    def _foreign_key(self, header: MessageHeader) -> DataKey | None:
        """Decrypt an EDK another SDK wrote under the container's KMS key (opt-in only)."""
        wanted_provider = message_provider_id(self._edk.provider)
        for edk in header.encrypted_data_keys:
            if edk.provider_id != wanted_provider or edk.provider_info != self._edk.key_id.encode("utf-8"):
                continue
            foreign = HeaderDataKey(provider=self._edk.provider, key_id=self._edk.key_id, ciphertext=edk.ciphertext)
            return self._plane._decrypt_cached(foreign, self._context)
        return None

    def get(self, name: str) -> bytes:
        """The whole plaintext of `name` (use open_reader for large objects)."""
        with self.open_reader(name) as r:
            return r.read()

    def verify(self, name: str) -> VerifyResult:
        """Authenticate every frame of `name` without keeping any plaintext."""
        with self.open_reader(name) as r:
            scratch = bytearray(min(max(r.header.frame_length, 4096), 4 << 20))
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
                bound=self._is_ours(r.header),
            )

    def inspect(self, name: str) -> ObjectInfo:
        """The message header of `name`, parsed but not authenticated (no KMS call, no key)."""
        self._check_open()
        validate_name(name)
        with self._objects.open_reader(name) as source:
            header = read_header(source, self._plane.limits)
            size = source.size
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
            bound_to_container=self._is_ours(header),
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
