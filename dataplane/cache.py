"""The data-key cache: one KMS Decrypt per container per cache lifetime.

Shared by every container a `DataPlane` opens (and, optionally, by several
planes). Thread-safe with single flight: under a thundering herd of threads
opening the same container, exactly one Decrypt is in flight; the others wait
for its result (or its error, which is not cached).

Bounded by entries (LRU), age, and use (messages and bytes encrypted under a
cached key). A container's data key never changes, so the use bounds do not
rotate keys; they force a fresh Decrypt, which is when KMS re-checks that the
caller may still use the key (a disabled key or revoked grant takes effect
within the bound). Keys never appear in reprs, logs or exceptions; the
counters are safe to export.

Eviction never wipes. Evicting (age, use, LRU, `invalidate`, `clear`) only
drops the cache's reference to the `DataKey`; operations that already hold
the key finish with it, and the key wipes itself when its last holder lets
go (see `envelope.datakey.DataKey`). A key nobody holds is wiped at once.
This is what keeps a writer from ever sealing under a half-wiped key while
another thread evicts it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

import attrs

from envelope.datakey import DataKey
from envelope.errors import ValidationError

__all__ = ["CacheStats", "DataKeyCache"]


@attrs.frozen
class CacheStats:
    kms_calls: int
    hits: int
    misses: int
    evictions: int
    entries: int


@attrs.define(eq=False, repr=False)
class _Entry:
    key: DataKey
    created: float
    messages: int = 0
    bytes: int = 0


class _Flight:
    """One in-progress Decrypt that other threads may wait on."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.entry: _Entry | None = None
        self.error: BaseException | None = None


class DataKeyCache:
    """LRU of plaintext data keys with age and usage bounds."""

    def __init__(
        self,
        *,
        max_entries: int = 256,
        max_age: float = 600.0,
        max_messages: int = 2**32,
        max_bytes: int = 2**50,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (("max_entries", max_entries), ("max_messages", max_messages), ("max_bytes", max_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(f"{name} must be an integer >= 1")
        if not isinstance(max_age, (int, float)) or isinstance(max_age, bool) or not max_age > 0:
            raise ValidationError("max_age must be a positive number of seconds")
        self.max_entries, self.max_age = max_entries, float(max_age)
        self.max_messages, self.max_bytes = max_messages, max_bytes
        self.clock = clock
        """The cache's clock (monotonic seconds); containers age their view of the generations by it."""
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._flights: dict[Hashable, _Flight] = {}
        self._kms_calls = self._hits = self._misses = self._evictions = 0

    def __repr__(self) -> str:
        s = self.stats()
        return f"<DataKeyCache entries={s.entries} kms_calls={s.kms_calls} hits={s.hits}>"

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._kms_calls, self._hits, self._misses, self._evictions, len(self._entries))

    def _fresh(self, entry: _Entry) -> bool:
        return (
            self.clock() - entry.created < self.max_age
            and entry.messages < self.max_messages
            and entry.bytes < self.max_bytes
            and not entry.key.wiped
        )

    def _evict(self, cache_key: Hashable) -> None:
        # Drop the reference only: a holder may be mid-operation (the key wipes itself after the last one).
        if self._entries.pop(cache_key, None) is not None:
            self._evictions += 1

    def get(self, cache_key: Hashable, load: Callable[[], DataKey]) -> DataKey:
        """The cached key for cache_key, calling `load` (one KMS Decrypt) at most once concurrently."""
        with self._lock:
            entry = self._entries.get(cache_key)
            if entry is not None:
                if self._fresh(entry):
                    self._entries.move_to_end(cache_key)
                    self._hits += 1
                    return entry.key
                self._evict(cache_key)
            flight = self._flights.get(cache_key)
            leader = flight is None
            if flight is None:
                flight = self._flights[cache_key] = _Flight()
                self._misses += 1
                self._kms_calls += 1
            else:
                self._hits += 1
        if leader:
            return self._lead(cache_key, flight, load)
        flight.done.wait()
        if flight.error is not None:
            # Everyone who waited on this Decrypt gets its outcome: no herd of retries
            # behind a failure that AwsKms has already retried with backoff.
            raise flight.error
        assert flight.entry is not None
        return flight.entry.key

    def _lead(self, cache_key: Hashable, flight: _Flight, load: Callable[[], DataKey]) -> DataKey:
        try:
            key = load()
        except BaseException as exc:
            flight.error = exc
            with self._lock:
                del self._flights[cache_key]
            flight.done.set()
            raise
        entry = _Entry(key, self.clock())
        with self._lock:
            del self._flights[cache_key]
            self._entries[cache_key] = entry
            while len(self._entries) > self.max_entries:
                self._evict(next(iter(self._entries)))
        flight.entry = entry
        flight.done.set()
        return key

    def record_encryption(self, cache_key: Hashable, nbytes: int) -> None:
        """Count one message of nbytes encrypted under the cached key (usage bounds)."""
        with self._lock:
            entry = self._entries.get(cache_key)
            if entry is not None:
                entry.messages += 1
                entry.bytes += nbytes

    def invalidate(self, cache_key: Hashable) -> None:
        """Forget one cached key (the next use calls KMS again)."""
        with self._lock:
            self._evict(cache_key)

    def clear(self) -> None:
        """Forget every cached key; each is wiped as soon as no operation holds it (at once if none does)."""
        with self._lock:
            for k in list(self._entries):
                self._evict(k)
