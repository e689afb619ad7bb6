"""Fault injection and call recording through botocore's event system.

Moto emulates no key-state or key-usage errors, so tests inject them: a
`before-send` handler returns a real-shaped KMS JSON error response with the
HTTP status KMS uses, and botocore parses it and runs its own retry logic on
it exactly as it would for a real one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

from botocore.awsrequest import AWSResponse

from envelope import errors

# HTTP status per KMS error code: the seed's statuses, with KMSInternalException
# at 500 as real KMS answers (tests also inject the seed's 400).
KMS_HTTP_STATUS = {
    "DependencyTimeoutException": 500,
    "KeyUnavailableException": 500,
    "KMSInternalException": 500,
    "DisabledException": 400,
    "InvalidGrantTokenException": 400,
    "InvalidKeyUsageException": 400,
    "KMSInvalidStateException": 400,
    "NotFoundException": 400,
    "InvalidCiphertextException": 400,
    "IncorrectKeyException": 400,
    "AccessDeniedException": 400,
    "ThrottlingException": 400,
}

# Every KMS error code that must fail at once (exactly one attempt), with its typed exception.
NON_RETRYABLE_KMS_ERRORS: list[tuple[str, type[errors.KmsError]]] = [
    ("DisabledException", errors.DisabledError),
    ("InvalidGrantTokenException", errors.InvalidGrantTokenError),
    ("InvalidKeyUsageException", errors.InvalidKeyUsageError),
    ("KMSInvalidStateException", errors.KMSInvalidStateError),
    ("NotFoundException", errors.NotFoundError),
    ("InvalidCiphertextException", errors.InvalidCiphertextError),
    ("IncorrectKeyException", errors.IncorrectKeyError),
    ("AccessDeniedException", errors.AccessDeniedError),
]


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterable[bytes]:
        yield self._body

    def read(self, *_: Any, **__: Any) -> bytes:
        body, self._body = self._body, b""
        return body


def kms_error_response(request: Any, code: str, status: int | None = None, message: str = "injected") -> AWSResponse:
    body = json.dumps({"__type": code, "message": message}).encode()
    headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": "injected-0000"}
    return AWSResponse(request.url, status or KMS_HTTP_STATUS.get(code, 400), headers, _Raw(body))


def operation_of(request: Any) -> str:
    target = request.headers.get("X-Amz-Target", b"")
    if isinstance(target, bytes):
        target = target.decode()
    return str(target).rsplit(".", 1)[-1]


class KmsFaults:
    """Attach to a boto3 KMS client: records every request and injects scripted errors.

    `script(op)` is consulted before each send of operation `op`; it returns
    None to let the request through, or (code, status) to answer with that error.
    """

    def __init__(self, client: Any, script: Callable[[str], tuple[str, int | None] | None] | None = None) -> None:
        self.script = script
        self.sent: list[str] = []  # every attempt, including botocore's retries
        self._lock = threading.Lock()
        client.meta.events.register_first("before-send.kms", self._before_send)

    def _before_send(self, request: Any, **_: Any) -> AWSResponse | None:
        op = operation_of(request)
        with self._lock:
            self.sent.append(op)
            action = self.script(op) if self.script else None
        if action is None:
            return None
        code, status = action
        return kms_error_response(request, code, status)

    def count(self, op: str | None = None) -> int:
        with self._lock:
            return len(self.sent) if op is None else self.sent.count(op)

    @staticmethod
    def fail_times(
        code: str, times: int, status: int | None = None, op: str | None = None
    ) -> Callable[[str], tuple[str, int | None] | None]:
        left = [times]

        def script(name: str) -> tuple[str, int | None] | None:
            if op is not None and name != op:
                return None
            if left[0] > 0:
                left[0] -= 1
                return (code, status)
            return None

        return script


class HttpRecorder:
    """Records every HTTP request a boto3 client is about to send (any service)."""

    def __init__(self, client: Any) -> None:
        self.requests: list[str] = []
        client.meta.events.register_first("before-send", self._record)

    def _record(self, request: Any, **_: Any) -> None:
        self.requests.append(f"{request.method} {request.url}")
