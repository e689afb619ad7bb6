"""Crafted KMS answers: a `before-send` hook that answers each attempt with any HTTP status and body
(or raises an HTTP-layer exception), so botocore's real parser and retry logic run on it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

from botocore.awsrequest import AWSResponse

JSON_HEADERS = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": "crafted-0000"}


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterable[bytes]:
        yield self._body

    def read(self, *_: Any, **__: Any) -> bytes:
        body, self._body = self._body, b""
        return body


# What the hook does for one attempt: None lets it through (to moto), a (status, body) pair is
# answered as that HTTP response, an exception is raised as if the HTTP layer had raised it.
Action = tuple[int, bytes] | Exception | None


class CraftedKms:
    """Answers each attempt of a boto3 KMS client per `script(op, n)` (n: 0-based per operation)."""

    def __init__(self, client: Any, script: Callable[[str, int], Action]) -> None:
        self.script = script
        self.sent: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        client.meta.events.register_first("before-send.kms", self._before_send)

    def _before_send(self, request: Any, **_: Any) -> AWSResponse | None:
        target = request.headers.get("X-Amz-Target", b"")
        op = (target.decode() if isinstance(target, bytes) else str(target)).rsplit(".", 1)[-1]
        with self._lock:
            n = self.sent.count(op)
            self.sent.append(op)
            self.bodies.append(json.loads(request.body or b"{}"))
            action = self.script(op, n)
        if action is None:
            return None
        if isinstance(action, Exception):
            raise action
        status, body = action
        return AWSResponse(request.url, status, JSON_HEADERS, _Body(body))

    def count(self, op: str | None = None) -> int:
        with self._lock:
            return len(self.sent) if op is None else self.sent.count(op)


def first(n: int, action: Action, op: str | None = None) -> Callable[[str, int], Action]:
    """The first `n` attempts of `op` (any operation when None) get `action`; the rest go through."""
    return lambda name, i: action if (op is None or name == op) and i < n else None


def always(action: Action) -> Callable[[str, int], Action]:
    return lambda _name, _i: action


def ok(doc: dict[str, Any]) -> tuple[int, bytes]:
    """A 200 answer with this JSON document (blob fields base64 already)."""
    return (200, json.dumps(doc).encode())
