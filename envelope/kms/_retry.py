"""Bounded retries for KMS calls: capped exponential backoff with full jitter.

What is retried is decided when the adapter builds the typed error
(`envelope.errors.kms_error_for_code`, `envelope.kms.aws`): a recognised KMS
error code decides alone, whatever the HTTP status (the seed lists
KMSInternalException as 400, real KMS answers 500); an unrecognised code is
retried when the status is 429, 500, 502, 503 or 504; failures to reach KMS
at all are retried; everything else fails at once. This module only honours
`KmsError.retryable`.

Layering with botocore: a user's client may retry on its own. `attempts`
counts every HTTP attempt, botocore's included (`KmsError.http_attempts`,
set by the adapter), so the two layers never multiply: the total stays
within ``max_attempts`` plus at most one botocore burst. The overall
`deadline` bounds the wall time spent across all attempts and sleeps.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import TypeVar

import attrs

from envelope.errors import KmsError, ValidationError

T = TypeVar("T")


@attrs.frozen
class RetryPolicy:
    """How hard to try. Clock, sleep and jitter source are injectable for tests."""

    max_attempts: int = 5
    base_delay: float = 0.05
    max_delay: float = 2.0
    deadline: float = 20.0
    clock: Callable[[], float] = attrs.field(default=time.monotonic, repr=False)
    sleep: Callable[[float], None] = attrs.field(default=time.sleep, repr=False)
    rng: Callable[[], float] = attrs.field(default=random.random, repr=False)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValidationError("max_attempts must be an integer >= 1")
        for name in ("base_delay", "max_delay", "deadline"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValidationError(f"{name} must be a finite number of seconds")
        if not (self.base_delay >= 0 and self.max_delay >= 0 and self.deadline > 0):
            raise ValidationError("retry delays must be >= 0 and the deadline > 0")
        for name in ("clock", "sleep", "rng"):
            if not callable(getattr(self, name)):
                raise ValidationError(f"{name} must be callable")

    def backoff(self, retry_number: int) -> float:
        """Full jitter: uniform in [0, min(max_delay, base * 2**n)]."""
        cap = min(self.max_delay, self.base_delay * (2 ** min(retry_number, 30)))
        return float(cap * self.rng())


NO_RETRY = RetryPolicy(max_attempts=1)


def call_with_retries(policy: RetryPolicy, call: Callable[[], T]) -> T:
    """Run `call` until it succeeds, fails for good, or the budget is spent.

    A KmsError's `http_attempts` (set by the adapter) says how many HTTP
    attempts botocore made inside the failed call; the error finally raised
    carries the total in `attempts`.
    """
    start = policy.clock()
    attempts = 0
    retry_number = 0
    while True:
        try:
            return call()
        except KmsError as err:
            attempts += max(1, err.http_attempts)
            err.attempts = attempts
            if not err.retryable or attempts >= policy.max_attempts:
                raise
            delay = policy.backoff(retry_number)
            retry_number += 1
            if policy.clock() + delay - start > policy.deadline:
                raise
            policy.sleep(delay)
