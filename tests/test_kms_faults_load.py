"""KMS faults under load, through both planes: transient errors are absorbed, the rest fail at once,
and a KMS that stops answering is bounded by the retry deadline.

Faults are injected by `KmsFaults` (botocore `before-send`, real-shaped KMS error responses with
the HTTP status KMS uses), so botocore parses them as it would real ones. Time is injected:
RetryPolicy sleeps are recorded, never slept, and the deadline runs on a simulated clock.
"""

from __future__ import annotations

import hashlib
import random
import socket
import threading
import time
import uuid
from collections import Counter
from typing import Any

import boto3
import pytest
from botocore.config import Config

from controlplane import ControlPlane
from dataplane import DataKeyCache, DataPlane
from envelope import errors
from envelope.kms import AwsKms, RetryPolicy
from tests.conftest import REGION
from tests.support.faults import NON_RETRYABLE_KMS_ERRORS, KmsFaults
from tests.test_tamper import MemStore

TRANSIENT = [
    ("DependencyTimeoutException", 500),
    ("KeyUnavailableException", 500),
    ("KMSInternalException", 500),
    ("KMSInternalException", 400),  # the status the seed lists; real KMS answers 500
    ("ThrottlingException", 400),
]
PERMANENT = NON_RETRYABLE_KMS_ERRORS
DECRYPT_ONLY = {"InvalidCiphertextException", "IncorrectKeyException"}


class SimulatedTime:
    """A clock that moves only when told to: by RetryPolicy sleeps, and by `advance`."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def retry_policy(clock: SimulatedTime, *, attempts: int = 8, deadline: float = 60.0) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=attempts, base_delay=0.05, max_delay=2.0, deadline=deadline, clock=clock, sleep=clock.sleep
    )


class TransientFaults:
    """A seeded script: each KMS request fails with probability `rate`, cycling through TRANSIENT."""

    def __init__(self, rate: float, seed: int) -> None:
        self.rate = rate
        self._rng = random.Random(seed)
        self.injected: Counter[tuple[str, int]] = Counter()
        self.by_op: Counter[str] = Counter()
        self._next = 0

    def __call__(self, op: str) -> tuple[str, int | None] | None:
        if self._rng.random() >= self.rate:
            return None
        fault = TRANSIENT[self._next % len(TRANSIENT)]
        self._next += 1
        self.injected[fault] += 1
        self.by_op[op] += 1
        return fault


def test_a_thousand_operations_succeed_with_30_percent_transient_kms_failures(kms_client: Any) -> None:
    arn = kms_client.create_key()["KeyMetadata"]["Arn"]
    script = TransientFaults(rate=0.3, seed=8)
    faults = KmsFaults(kms_client, script)
    clock = SimulatedTime()
    kms = AwsKms(kms_client, retry=retry_policy(clock))

    # Provisioning goes through the faults too (GenerateDataKeyWithoutPlaintext). The containers
    # live in memory: storage is not what is under test here, and KMS calls then dominate.
    locations = [MemStore() for _ in range(4)]
    control = ControlPlane(kms)
    for i, location in enumerate(locations):
        control.create_container(location, key_id=arn, encryption_context={"tenant": f"t{i}"})

    # One cached key at a time and containers taken in turn: every operation opens a container
    # whose key was just evicted, so every operation costs a Decrypt.
    plane = DataPlane(kms, frame_length=64, cache=DataKeyCache(max_entries=1), discovery=True)
    objects = {f"obj/{i:04d}": hashlib.sha256(b"%d" % i).digest() * (1 + i % 5) for i in range(500)}
    for i, (name, data) in enumerate(objects.items()):
        with plane.open(locations[i % 4]) as container:
            container.put(name, data)
    for i, (name, data) in enumerate(objects.items()):
        with plane.open(locations[i % 4]) as container:
            assert container.get(name) == data

    stats = plane.cache_stats()
    assert stats.kms_calls >= 1000
    sent = faults.count()
    injected = sum(script.injected.values())
    assert 0.25 < injected / sent < 0.35, (injected, sent)
    assert faults.count("Decrypt") == stats.kms_calls + script.by_op["Decrypt"]  # each failure cost one attempt
    assert faults.count("GenerateDataKeyWithoutPlaintext") == 4 + script.by_op["GenerateDataKeyWithoutPlaintext"]
    for fault in TRANSIENT:
        assert script.injected[fault] > 50, fault
    assert len(clock.sleeps) == injected  # one backoff per retried failure, none slept for real


@pytest.mark.parametrize(("code", "error"), PERMANENT, ids=[c for c, _ in PERMANENT])
def test_a_non_retryable_decrypt_error_fails_after_exactly_one_attempt(
    kms_client: Any, s3_client: Any, bucket: str, code: str, error: type[errors.KmsError]
) -> None:
    arn = kms_client.create_key()["KeyMetadata"]["Arn"]
    clock = SimulatedTime()
    kms = AwsKms(kms_client, retry=retry_policy(clock))
    location = f"s3://{bucket}/c"
    ControlPlane(kms, s3_client).create_container(location, key_id=arn)
    faults = KmsFaults(kms_client, lambda op: (code, None) if op == "Decrypt" else None)
    plane = DataPlane(kms, s3_client, discovery=True)
    with pytest.raises(error) as caught:
        plane.open(location)
    assert type(caught.value) is error
    assert caught.value.attempts == 1
    assert faults.count("Decrypt") == 1
    assert clock.sleeps == []
    # The failure is not cached: the next open asks KMS again, once.
    with pytest.raises(error):
        plane.open(location)
    assert faults.count("Decrypt") == 2


@pytest.mark.parametrize(
    ("code", "error"),
    [p for p in PERMANENT if p[0] not in DECRYPT_ONLY],
    ids=[c for c, _ in PERMANENT if c not in DECRYPT_ONLY],
)
def test_a_non_retryable_provisioning_error_fails_after_exactly_one_attempt(
    kms_client: Any, s3_client: Any, bucket: str, code: str, error: type[errors.KmsError]
) -> None:
    arn = kms_client.create_key()["KeyMetadata"]["Arn"]
    clock = SimulatedTime()
    faults = KmsFaults(kms_client, lambda op: (code, None))
    control = ControlPlane(AwsKms(kms_client, retry=retry_policy(clock)), s3_client)
    with pytest.raises(error) as caught:
        control.create_container(f"s3://{bucket}/c", key_id=arn)
    assert caught.value.attempts == 1
    assert faults.count() == 1
    assert "Contents" not in s3_client.list_objects_v2(Bucket=bucket)  # nothing was written


@pytest.mark.parametrize(("code", "status"), TRANSIENT, ids=[f"{c}-{s}" for c, s in TRANSIENT])
def test_a_transient_error_that_never_clears_stops_at_max_attempts(
    kms_client: Any, s3_client: Any, bucket: str, code: str, status: int
) -> None:
    arn = kms_client.create_key()["KeyMetadata"]["Arn"]
    location = f"s3://{bucket}/c"
    ControlPlane(AwsKms(kms_client), s3_client).create_container(location, key_id=arn)
    clock = SimulatedTime()
    faults = KmsFaults(kms_client, lambda op: (code, status))
    plane = DataPlane(AwsKms(kms_client, retry=retry_policy(clock, attempts=5)), s3_client, discovery=True)
    with pytest.raises(errors.KmsError) as caught:
        plane.open(location)
    assert caught.value.code == code and caught.value.retryable
    assert caught.value.attempts == 5 == faults.count("Decrypt")
    assert len(clock.sleeps) == 4


def test_retries_stop_at_the_deadline_on_the_retry_clock(kms_client: Any, s3_client: Any, bucket: str) -> None:
    arn = kms_client.create_key()["KeyMetadata"]["Arn"]
    location = f"s3://{bucket}/c"
    ControlPlane(AwsKms(kms_client), s3_client).create_container(location, key_id=arn)
    clock = SimulatedTime()
    policy = RetryPolicy(
        max_attempts=100, base_delay=1.0, max_delay=1.0, deadline=3.5, clock=clock, sleep=clock.sleep, rng=lambda: 1.0
    )
    faults = KmsFaults(kms_client, lambda op: ("ThrottlingException", 400))
    with pytest.raises(errors.ThrottlingError) as caught:
        DataPlane(AwsKms(kms_client, retry=policy), s3_client, discovery=True).open(location)
    # Sleeps of 1 s each while the next one still ends within 3.5 s: three sleeps, four attempts.
    assert clock.sleeps == [1.0, 1.0, 1.0]
    assert caught.value.attempts == 4 == faults.count("Decrypt")


# --- a KMS that does not answer in time ------------------------------------------------------------


class SlowProxy:
    """A loopback TCP relay that holds every response back for `delay` seconds.

    Each accepted connection advances the simulated clock by the client's read timeout, as the
    attempt it carries will take that long before the client gives up.
    """

    def __init__(self, upstream: str, delay: float, on_request: Any) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self._upstream = (host, int(port))
        self._delay = delay
        self._on_request = on_request
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        with client, socket.create_connection(self._upstream) as upstream:
            client.settimeout(0.2)
            upstream.settimeout(0.2)
            announced = False
            held_until: float | None = None
            pending = b""
            while not self._stop.is_set():
                try:
                    data = client.recv(65536)
                    if not data:
                        return
                    if not announced:
                        announced = True
                        self._on_request()
                    upstream.sendall(data)
                except TimeoutError:
                    pass
                except OSError:
                    return
                try:
                    pending += upstream.recv(65536)
                    held_until = held_until or time.monotonic() + self._delay
                except TimeoutError:
                    pass
                except OSError:
                    return
                if pending and held_until is not None and time.monotonic() >= held_until:
                    try:
                        client.sendall(pending)
                    except OSError:
                        return
                    pending, held_until = b"", None

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        self._accepting.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.mark.timeout(60)
def test_a_kms_that_does_not_answer_is_bounded_by_the_deadline(
    moto_server_url: str, server_kms_client: Any, server_s3_client: Any, server_bucket: str
) -> None:
    arn = server_kms_client.create_key()["KeyMetadata"]["Arn"]
    location = f"s3://{server_bucket}/slow-{uuid.uuid4().hex[:8]}"
    ControlPlane(AwsKms(server_kms_client), server_s3_client).create_container(location, key_id=arn)

    read_timeout = 1.0
    clock = SimulatedTime()
    proxy = SlowProxy(moto_server_url, delay=30.0, on_request=lambda: clock.advance(read_timeout))
    try:
        slow_client = boto3.client(
            "kms",
            region_name=REGION,
            endpoint_url=proxy.url,
            config=Config(
                retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=1, read_timeout=read_timeout
            ),
        )
        policy = RetryPolicy(
            max_attempts=10,
            base_delay=0.5,
            max_delay=2.0,
            deadline=3.0,
            clock=clock,
            sleep=clock.sleep,
            rng=lambda: 1.0,
        )
        plane = DataPlane(AwsKms(slow_client, retry=policy), server_s3_client, discovery=True)
        started = time.monotonic()
        with pytest.raises(errors.KmsConnectionError) as caught:
            plane.open(location)
        elapsed = time.monotonic() - started
    finally:
        proxy.stop()
    # Simulated: attempt 1 ends at 1.0, sleep 0.5; attempt 2 ends at 2.5; a 1.0 s sleep would end
    # past the 3 s deadline, so the call gives up there: two attempts, one sleep.
    assert caught.value.attempts == 2
    assert proxy.connections == 2
    assert clock.sleeps == [0.5]
    assert clock() <= policy.deadline
    assert elapsed < 30  # a hang guard only
    # The same KMS through the same plane works once it answers: nothing was cached from the failure.
    fast = DataPlane(AwsKms(server_kms_client), server_s3_client, discovery=True)
    fast.open(location).put("after", b"ok")
