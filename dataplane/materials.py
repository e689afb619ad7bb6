"""Key materials: which data key to write with, and which one opens a given message.

The one place that answers, for a container, "which data key, which
encrypted data keys and context, which name binding" when writing (the
newest generation) and "which data key opens this message header, and how is
its name checked" when reading (lookup by the header's EDKs and context) -
the role of Tink's PrimitiveSet and the AWS Encryption SDK's materials
managers. The KMS decryptor, the data-key cache, the trust policy and the
memory of refused foreign keys sit behind it; `Container` only streams.

Order of checks, always: public header fields against the trust policy and
the container first (`AuthenticationError`, no KMS call), then the cache,
then KMS. This module must never log, repr or raise with key material: keys
travel as `DataKey` holders, whose reprs are safe, and raw bytes are only
revealed inside the binding helpers.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from types import MappingProxyType

import attrs

from dataplane.binding import derive_binding_key, new_message_id, verify_message_id
from dataplane.cache import DataKeyCache
from dataplane.format import DATA_KEY_LENGTH, EncryptedDataKey, MessageHeader
from dataplane.trust import KeyTrust
from envelope.datakey import DataKey, DataKeyDecryptor
from envelope.errors import AuthenticationError, KmsError
from envelope.header import MESSAGE_PROVIDER_IDS, WrappedDataKey
from envelope.kmsarn import mrk_match

__all__ = [
    "Generation",
    "KeyMaterials",
    "KeyService",
    "ReadMaterials",
    "WriteMaterials",
    "message_provider_id",
]


_BINDING = "name-binding"  # the label under which a data key memoizes its binding key
_FINGERPRINT = "fingerprint"  # a one-way digest of a data key, to compare two keys without their bytes

# KMS answers that mean "this EDK will never decrypt for us" (as opposed to throttling or an outage):
# a foreign EDK that drew one of these is remembered and refused without asking KMS again.
_PERMANENT_REFUSALS = ("InvalidCiphertextException", "IncorrectKeyException", "AccessDeniedException")


def message_provider_id(header_provider: str) -> str:
    """The EDK provider id written into messages for a container-header provider."""
    return MESSAGE_PROVIDER_IDS[header_provider]


def _frozen(context: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(context))


@attrs.frozen
class Generation:
    """One data key of a container: the EDK the control plane stored and the context KMS binds it to."""

    number: int
    data_key: WrappedDataKey
    encryption_context: Mapping[str, str] = attrs.field(converter=_frozen)
    message_edks: tuple[EncryptedDataKey, ...] = attrs.field(init=False, repr=False, eq=False)
    """The EDKs exactly as every message of this generation carries them (computed once)."""

    def __attrs_post_init__(self) -> None:
        k = self.data_key
        edk = EncryptedDataKey(message_provider_id(k.provider), k.key_id.encode("utf-8"), k.ciphertext)
        object.__setattr__(self, "message_edks", (edk,))

    def written_by(self, header: MessageHeader) -> bool:
        """Whether a message header carries exactly this generation's EDKs and context."""
        return header.encrypted_data_keys == self.message_edks and header.encryption_context == self.encryption_context


class _RefusedEdks:
    """Foreign EDKs KMS refused: bounded, and forgotten after `max_age` (the cache lifetime).

    Without it a planted message with a junk EDK would cost one KMS call per
    read, forever.
    """

    def __init__(self, max_entries: int, max_age: float, clock: Callable[[], float]) -> None:
        self._max_entries, self._max_age, self._clock = max_entries, max_age, clock
        self._lock = threading.Lock()
        self._refused: OrderedDict[Hashable, float] = OrderedDict()

    def __contains__(self, cache_key: Hashable) -> bool:
        with self._lock:
            when = self._refused.get(cache_key)
            if when is None:
                return False
            if self._clock() - when >= self._max_age:
                del self._refused[cache_key]
                return False
            return True

    def add(self, cache_key: Hashable) -> None:
        with self._lock:
            self._refused[cache_key] = self._clock()
            self._refused.move_to_end(cache_key)
            while len(self._refused) > self._max_entries:
                self._refused.popitem(last=False)


class KeyService:
    """A plane's road to data keys: trust policy, then cache, then KMS Decrypt. Shared by its containers."""

    def __init__(
        self,
        kms: DataKeyDecryptor,
        cache: DataKeyCache,
        trust: KeyTrust,
        grant_tokens: Sequence[str],
        random_bytes: Callable[[int], bytes],
        *,
        max_refused: int = 1024,
    ) -> None:
        self.kms = kms
        self.cache = cache
        self.trust = trust
        self._grant_tokens = list(grant_tokens) or None
        self.random_bytes = random_bytes
        self._refused = _RefusedEdks(max_refused, cache.max_age, time.monotonic)

    def cache_key(self, edk: WrappedDataKey, context: Mapping[str, str]) -> Hashable:
        # The KMS object is part of the key: a key cached for one set of credentials is never served
        # to a plane whose KMS would not have authorized it. The lookup and the usage record both use
        # this one function, so the usage bounds always count against the entry that was served.
        return (self.kms, edk.provider, edk.key_id, edk.ciphertext, tuple(sorted(context.items())))

    def data_key(
        self, edk: WrappedDataKey, context: Mapping[str, str], where: str, cache_key: Hashable | None = None
    ) -> DataKey:
        """The plaintext data key for `edk` under `context`: trust check first, then cache, then one Decrypt.

        `cache_key` is `self.cache_key(edk, context)` when the caller has it already.
        """
        self.trust.check(edk.key_id, where)

        def load() -> DataKey:
            key = self.kms.decrypt(
                edk.ciphertext,
                encryption_context=dict(context),
                key_id=edk.key_id,
                grant_tokens=self._grant_tokens,
            )
            # The key that answered must be the one asked for (a multi-Region replica of it in the
            # plane's Region counts: AwsKms asks that replica and checks KMS named it).
            if not mrk_match(key.key_id, edk.key_id) or len(key) != DATA_KEY_LENGTH:
                key.wipe()  # ours alone: nobody else has seen it
                raise AuthenticationError
            return key

        return self.cache.get(self.cache_key(edk, context) if cache_key is None else cache_key, load)

    def foreign_data_key(self, edk: WrappedDataKey, context: Mapping[str, str], where: str) -> DataKey:
        """Like `data_key`, for an EDK another SDK wrote; a permanent refusal is remembered, not retried.

        KMS refusing the EDK for good (a ciphertext it cannot open, another key, no permission) means the
        message cannot be authenticated: `AuthenticationError` (the KMS error as its cause), the same
        error the next read of the same EDK gets from the memo without a call. Transient KMS failures
        stay `KmsError` and are not remembered.
        """
        cache_key = self.cache_key(edk, context)
        if cache_key in self._refused:
            raise AuthenticationError
        try:
            return self.data_key(edk, context, where)
        except AuthenticationError:
            self._refused.add(cache_key)
            raise
        except KmsError as e:
            if e.code not in _PERMANENT_REFUSALS:
                raise
            self._refused.add(cache_key)
            raise AuthenticationError from e

    def record(self, edk: WrappedDataKey, context: Mapping[str, str], nbytes: int) -> None:
        self.cache.record_encryption(self.cache_key(edk, context), nbytes)


@attrs.frozen
class WriteMaterials:
    """Everything a new message needs: the key, its EDKs and context, a bound message id, usage accounting."""

    generation: int
    data_key: DataKey = attrs.field(repr=False)
    message_id: bytes = attrs.field(repr=False)
    encryption_context: Mapping[str, str]
    encrypted_data_keys: tuple[EncryptedDataKey, ...] = attrs.field(repr=False)
    record: Callable[[int], None] = attrs.field(repr=False)
    """Call with the plaintext bytes once the message is committed (the cache's usage bounds)."""


@attrs.frozen
class ReadMaterials:
    """The key that opens one message header, and how its message id is checked."""

    generation: int | None
    """None for an allowed unbound message (written by another SDK)."""
    data_key: DataKey = attrs.field(repr=False)
    bound: bool

    def check_message_id(self, container_id: str, name: str, message_id: bytes) -> bool:
        if not self.bound:
            return True
        return verify_message_id(self.data_key.derived(_BINDING, derive_binding_key), container_id, name, message_id)


class KeyMaterials:
    """A container's generations behind one interface: the newest for writing, lookup for reading."""

    def __init__(self, service: KeyService, container_id: str, generations: Sequence[Generation], where: str) -> None:
        if not generations:
            raise ValueError("a container has at least one generation")  # internal invariant
        self._service = service
        self.container_id = container_id
        self._where = where
        self._generations = {g.number: g for g in generations}
        self.primary = self._generations[max(self._generations)]
        # Per generation, computed once: the data-key cache's key for it.
        self._cache_keys = {g.number: service.cache_key(g.data_key, g.encryption_context) for g in generations}
        # The last header `written_under` judged and its answer: a read asks twice about the same header.
        self._last: tuple[MessageHeader | None, Generation | None] = (None, None)

    @property
    def generations(self) -> tuple[Generation, ...]:
        return tuple(self._generations[n] for n in sorted(self._generations))

    def generation(self, number: int) -> Generation | None:
        return self._generations.get(number)

    def data_key(self, generation: Generation | None = None) -> DataKey:
        g = generation or self.primary
        cache_key = self._cache_keys[g.number] if self._generations.get(g.number) is g else None
        return self._service.data_key(g.data_key, g.encryption_context, self._where, cache_key)

    def for_writing(self, name: str) -> WriteMaterials:
        """Materials for a new message named `name` under the newest generation."""
        g = self.primary
        key = self.data_key(g)
        message_id = new_message_id(
            key.derived(_BINDING, derive_binding_key), self.container_id, name, self._service.random_bytes
        )
        service, edk, context = self._service, g.data_key, g.encryption_context
        return WriteMaterials(
            generation=g.number,
            data_key=key,
            message_id=message_id,
            encryption_context=context,
            encrypted_data_keys=g.message_edks,
            record=lambda nbytes: service.record(edk, context, nbytes),
        )

    def written_under(self, header: MessageHeader) -> Generation | None:
        """The generation whose EDKs and context a message header carries exactly (no KMS call)."""
        last_header, found = self._last
        if header is last_header:
            return found  # the same (immutable) header object: the same answer
        found = next((g for g in self._generations.values() if g.written_by(header)), None)
        self._last = (header, found)
        return found

    def for_reading(self, header: MessageHeader, *, allow_unbound: bool) -> ReadMaterials:
        """The key for a message header: one of ours, or (opt-in) a foreign EDK under one of our keys.

        Anything else is `AuthenticationError` before any KMS call.
        """
        g = self.written_under(header)
        if g is not None:
            return ReadMaterials(generation=g.number, data_key=self.data_key(g), bound=True)
        if allow_unbound:
            context = dict(header.encryption_context)
            for g in self._generations.values():
                if context != dict(g.encryption_context):
                    continue
                wanted = g.message_edks[0]
                for edk in header.encrypted_data_keys:
                    if edk.provider_id != wanted.provider_id or edk.provider_info != wanted.provider_info:
                        continue
                    foreign = attrs.evolve(g.data_key, ciphertext=edk.ciphertext)
                    key = self._service.foreign_data_key(foreign, g.encryption_context, self._where)
                    # A message under this generation's own data key was written by us (no other SDK
                    # can produce that key), whatever its EDK bytes say: it keeps its name binding.
                    # Without this, editing the generation's stored EDK would downgrade every one of
                    # our objects to unbound and let them be moved between names. Decrypting the
                    # stored EDK also proves it genuine (KMS refuses a tampered one).
                    own = self.data_key(g)
                    if _same_key(key, own):
                        return ReadMaterials(generation=g.number, data_key=own, bound=True)
                    return ReadMaterials(generation=None, data_key=key, bound=False)
        raise AuthenticationError


def _same_key(a: DataKey, b: DataKey) -> bool:
    """Whether two holders hold the same key, compared in constant time (no raw bytes kept in a local)."""
    return hmac.compare_digest(
        a.derived(_FINGERPRINT, _fingerprint).reveal(), b.derived(_FINGERPRINT, _fingerprint).reveal()
    )


def _fingerprint(key: bytes) -> bytes:
    return hashlib.sha256(b"envelope key fingerprint v1\0" + key).digest()
