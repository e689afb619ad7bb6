"""Retries key on the KMS error code, whatever the HTTP status, and never multiply with botocore's."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config

from envelope import errors
from envelope.kms import AwsKms, RetryPolicy
from tests.conftest import REGION
from tests.support.faults import NON_RETRYABLE_KMS_ERRORS, KmsFaults

RETRYABLE = [
    ("DependencyTimeoutException", 500, errors.DependencyTimeoutError),
    ("KeyUnavailableException", 500, errors.KeyUnavailableError),
    ("KMSInternalException", 500, errors.KMSInternalError),
    ("KMSInternalException", 400, errors.KMSInternalError),  # as the seed lists it
    ("ThrottlingException", 400, errors.ThrottlingError),
]
NON_RETRYABLE = NON_RETRYABLE_KMS_ERRORS


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def policy(clock: FakeClock, attempts: int = 4, deadline: float = 60.0) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=attempts,
        base_delay=0.1,
        max_delay=1.0,
        deadline=deadline,
        clock=clock,
        sleep=clock.sleep,
        rng=lambda: 1.0,
    )


@pytest.fixture
def arn(kms_client: Any) -> str:
    return str(kms_client.create_key()["KeyMetadata"]["Arn"])


def both_ops(kms: AwsKms, arn: str, kms_client: Any) -> list[Any]:
    blob = kms_client.generate_data_key_without_plaintext(KeyId=arn, KeySpec="AES_256")["CiphertextBlob"]
    return [lambda: kms.generate_data_key_without_plaintext(arn), lambda: kms.decrypt(blob)]


@pytest.mark.parametrize(("code", "status", "exc"), RETRYABLE, ids=[f"{c}-{s}" for c, s, _ in RETRYABLE])
@pytest.mark.parametrize("op", ["GenerateDataKeyWithoutPlaintext", "Decrypt"])
def test_retryable_error_is_retried_until_success(
    kms_client: Any, arn: str, code: str, status: int, exc: type, op: str
) -> None:
    clock = FakeClock()
    kms = AwsKms(kms_client, retry=policy(clock, attempts=4))
    calls = both_ops(kms, arn, kms_client)
    faults = KmsFaults(kms_client, KmsFaults.fail_times(code, 3, status, op=op))
    calls[0 if op.startswith("Generate") else 1]()
    assert faults.count(op) == 4
    assert clock.sleeps == [0.1, 0.2, 0.4]  # capped exponential (jitter pinned to its maximum here)


@pytest.mark.parametrize(("code", "status", "exc"), RETRYABLE, ids=[f"{c}-{s}" for c, s, _ in RETRYABLE])
def test_retryable_error_gives_up_after_the_bound(kms_client: Any, arn: str, code: str, status: int, exc: type) -> None:
    clock = FakeClock()
    kms = AwsKms(kms_client, retry=policy(clock, attempts=3))
    faults = KmsFaults(kms_client, lambda _op: (code, status))
    with pytest.raises(exc) as info:
        kms.generate_data_key_without_plaintext(arn)
    assert info.value.retryable
    assert info.value.code == code
    assert info.value.http_status == status
    assert info.value.attempts == 3
    assert faults.count() == 3


@pytest.mark.parametrize(("code", "exc"), NON_RETRYABLE, ids=[c for c, _ in NON_RETRYABLE])
@pytest.mark.parametrize("op", ["GenerateDataKeyWithoutPlaintext", "Decrypt"])
def test_non_retryable_error_fails_after_exactly_one_attempt(
    kms_client: Any, arn: str, code: str, exc: type, op: str
) -> None:
    clock = FakeClock()
    kms = AwsKms(kms_client, retry=policy(clock, attempts=5))
    calls = both_ops(kms, arn, kms_client)
    faults = KmsFaults(kms_client, lambda name: (code, None) if name == op else None)
    with pytest.raises(exc) as info:
        calls[0 if op.startswith("Generate") else 1]()
    assert not info.value.retryable
    assert info.value.code == code
    assert faults.count(op) == 1
    assert clock.sleeps == []
    assert code not in ("",)
    assert op in str(info.value)


def test_deadline_bounds_the_retries(kms_client: Any, arn: str) -> None:
    clock = FakeClock()
    kms = AwsKms(
        kms_client,
        retry=RetryPolicy(
            max_attempts=100,
            base_delay=1.0,
            max_delay=1.0,
            deadline=3.5,
            clock=clock,
            sleep=clock.sleep,
            rng=lambda: 1.0,
        ),
    )
    faults = KmsFaults(kms_client, lambda _op: ("KMSInternalException", 500))
    with pytest.raises(errors.KMSInternalError):
        kms.generate_data_key_without_plaintext(arn)
    assert clock.now <= 3.5
    assert faults.count() == 4  # t=0,1,2,3; a fifth would start past the deadline


def test_jitter_is_full_and_capped() -> None:
    values = iter([0.0, 0.5, 0.99])
    p = RetryPolicy(base_delay=1.0, max_delay=3.0, rng=lambda: next(values))
    assert p.backoff(0) == 0.0
    assert p.backoff(1) == 1.0
    assert p.backoff(5) == pytest.approx(2.97)


@pytest.mark.parametrize(("code", "status"), [("KMSInternalException", 500), ("ThrottlingException", 400)])
def test_botocore_retries_count_towards_the_same_budget(moto_aws: None, code: str, status: int) -> None:
    # botocore's standard mode retries 5xx and throttling itself (3 attempts); envelope counts them.
    client = boto3.client(
        "kms", region_name=REGION, config=Config(retries={"mode": "standard", "total_max_attempts": 3})
    )
    arn = client.create_key()["KeyMetadata"]["Arn"]
    clock = FakeClock()
    kms = AwsKms(client, retry=policy(clock, attempts=6))
    faults = KmsFaults(client, lambda _op: (code, status))
    with pytest.raises(errors.KmsError) as info:
        kms.generate_data_key_without_plaintext(arn)
    assert faults.count() == 6, "attempts multiplied across botocore and envelope"
    assert info.value.attempts == 6
    assert len(clock.sleeps) == 1


def test_botocore_retries_on_kms_internal_400_still_retried_by_envelope(moto_aws: None) -> None:
    # botocore does not retry a 400; envelope does, because the code is retryable.
    client = boto3.client(
        "kms", region_name=REGION, config=Config(retries={"mode": "standard", "total_max_attempts": 3})
    )
    arn = client.create_key()["KeyMetadata"]["Arn"]
    clock = FakeClock()
    faults = KmsFaults(client, KmsFaults.fail_times("KMSInternalException", 2, 400))
    assert AwsKms(client, retry=policy(clock, attempts=3)).generate_data_key_without_plaintext(arn).key_id == arn
    assert faults.count() == 3


def test_unreachable_kms_is_a_retryable_connection_error(moto_aws: None) -> None:
    from tests.support.servers import free_port

    client = boto3.client(
        "kms",
        region_name=REGION,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=1),
    )
    clock = FakeClock()
    with pytest.raises(errors.KmsConnectionError) as info:
        AwsKms(client, retry=policy(clock, attempts=2)).decrypt(b"x" * 10)
    assert info.value.retryable
    assert info.value.attempts == 2
