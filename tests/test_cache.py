"""The data-key cache: single flight, bounds, wiping, counters."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from dataplane.cache import DataKeyCache
from envelope.datakey import DataKey
from envelope.errors import AccessDeniedError, ValidationError


class Loader:
    def __init__(
        self, fail: Exception | None = None, gate: threading.Event | None = None, *, keep: bool = True
    ) -> None:
        self.calls = 0
        self.keep = keep
        self.fail = fail
        self.gate = gate
        self.keys: list[DataKey] = []

    def __call__(self) -> DataKey:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        key = DataKey(b"\x11" * 32, "arn:aws:kms:us-east-1:111122223333:key/k")
        if self.keep:
            self.keys.append(key)
        return key


def test_one_decrypt_under_a_thundering_herd() -> None:
    cache = DataKeyCache()
    gate = threading.Event()
    load = Loader(gate=gate)
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(cache.get, "c1", load) for _ in range(16)]
        time.sleep(0.05)  # let the herd gather behind the first Decrypt (correctness does not depend on it)
        gate.set()
        keys = [f.result(timeout=10) for f in futures]
    assert load.calls == 1
    assert all(k is keys[0] for k in keys)
    stats = cache.stats()
    assert (stats.kms_calls, stats.hits + stats.misses) == (1, 16)


def test_failure_is_shared_by_waiters_and_not_cached() -> None:
    cache = DataKeyCache()
    failing = Loader(fail=AccessDeniedError("no"))
    with pytest.raises(AccessDeniedError):
        cache.get("c", failing)
    ok = Loader()
    assert len(cache.get("c", ok)) == 32
    assert ok.calls == 1 and cache.stats().kms_calls == 2


def test_age_bound_forces_a_fresh_decrypt_and_the_old_key_stays_valid_for_its_holder() -> None:
    now = [0.0]
    cache = DataKeyCache(max_age=10, clock=lambda: now[0])
    load = Loader(keep=False)
    first = cache.get("c", load)
    buffer = first._buf  # white box: the bytes wipe() zeroes in place
    now[0] = 9.9
    assert cache.get("c", load) is first
    now[0] = 10.0
    second = cache.get("c", load)
    assert second is not first and load.calls == 2
    # Evicted while this test (an operation in flight) holds it: still whole, still usable.
    assert not first.wiped and first.reveal() == b"\x11" * 32
    del first  # the last holder lets go: the key wipes itself
    assert buffer == bytearray(32)


def test_usage_bounds() -> None:
    cache = DataKeyCache(max_messages=2, max_bytes=1000)
    load = Loader()
    cache.get("c", load)
    cache.record_encryption("c", 10)
    cache.get("c", load)
    cache.record_encryption("c", 10)
    cache.get("c", load)  # 2 messages: bound reached
    assert load.calls == 2
    cache.record_encryption("c", 1000)
    cache.get("c", load)
    assert load.calls == 3


def test_lru_entry_bound_and_clear_drop_keys_that_wipe_when_unheld() -> None:
    cache = DataKeyCache(max_entries=2)
    load = Loader(keep=False)
    buffers = {}
    a = cache.get("a", load)
    buffers["a"] = a._buf
    buffers["b"] = cache.get("b", load)._buf  # nobody holds b but the cache
    cache.get("a", load)
    buffers["c"] = cache.get("c", load)._buf  # evicts b (least recently used)
    assert buffers["b"] == bytearray(32), "an evicted key nobody holds is wiped at once"
    assert buffers["c"] == bytearray(b"\x11" * 32)
    assert cache.stats().entries == 2 and cache.stats().evictions == 1
    cache.clear()
    assert buffers["c"] == bytearray(32), "clear() wipes keys nobody holds"
    assert not a.wiped and a.reveal() == b"\x11" * 32, "a key still held stays whole after clear()"
    del a
    assert buffers["a"] == bytearray(32)
    assert "\\x11" not in repr(cache) and "11" * 8 not in repr(cache)


@pytest.mark.parametrize("kwargs", [{"max_entries": 0}, {"max_age": 0}, {"max_messages": True}, {"max_bytes": -1}])
def test_bad_bounds_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        DataKeyCache(**kwargs)  # type: ignore[arg-type]
