"""S3Store against a faulty peer: retried requests, lost responses, a racing part pool.

Faults are injected through botocore's own `before-send` hooks against the
shared loopback moto_server, so botocore's real serialization, checksums and
retry logic run. A hook reads the request body as sending it would, then
answers with a real-shaped error, raises a connection error, or delivers the
request itself and drops the answer. The part-pool race uses a stub client
(no network) so it can run hundreds of writers quickly.
"""

from __future__ import annotations

import concurrent.futures
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ConnectionClosedError
from botocore.httpsession import URLLib3Session

from envelope.errors import ObjectExistsError, StorageError
from envelope.storage import S3Store
from envelope.storage.s3 import S3ObjectWriter

MiB = 1024 * 1024
PART = 5 * MiB
# botocore retries 5xx and connection errors itself; these tests need it to.
RETRIES = Config(retries={"max_attempts": 3, "mode": "standard"})


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterable[bytes]:
        yield self._body

    def read(self, *_: Any, **__: Any) -> bytes:
        body, self._body = self._body, b""
        return body


def s3_error(request: Any, code: str, status: int) -> AWSResponse:
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>injected</Message></Error>"
    return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _Raw(body.encode()))


def read_body(request: Any) -> bytes:
    """Read the request body as sending it does (consuming a stream), and hand the bytes back."""
    body = request.body
    if body is None:
        return b""
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    data = body.read()
    return data.encode() if isinstance(data, str) else bytes(data)


def part_number(request: Any) -> int:
    query = request.url.partition("?")[2]
    for item in query.split("&"):
        key, _, value = item.partition("=")
        if key == "partNumber":
            return int(value)
    return 0


class BodyFaults:
    """On `before-send.s3.<operation>`: records every attempt's body, and faults the first attempts.

    `fault(request, attempt)` is called with the 0-based attempt number of that
    request (per part number for UploadPart) after its body was read; it
    returns a response to answer with, raises, or returns None to let the
    request through (with its body rewound, as botocore would have sent it).
    """

    def __init__(self, client: Any, operation: str, fault: Callable[[Any, int], AWSResponse | None]) -> None:
        self.bodies: dict[int, list[bytes]] = {}  # part number (0 for PutObject) -> each attempt's body
        self._fault = fault
        self._lock = threading.Lock()
        client.meta.events.register_first(f"before-send.s3.{operation}", self._before_send)

    def _before_send(self, request: Any, **_: Any) -> AWSResponse | None:
        start = request.body.tell() if hasattr(request.body, "tell") else 0
        data = read_body(request)
        number = part_number(request)
        with self._lock:
            attempts = self.bodies.setdefault(number, [])
            attempts.append(data)
            attempt = len(attempts) - 1
        answer = self._fault(request, attempt)
        if answer is None and hasattr(request.body, "seek"):
            request.body.seek(start)
        return answer


def first_attempts(n: int, make: Callable[[Any], AWSResponse | None]) -> Callable[[Any, int], AWSResponse | None]:
    def fault(request: Any, attempt: int) -> AWSResponse | None:
        return make(request) if attempt < n else None

    return fault


def conflict(request: Any) -> AWSResponse:
    return s3_error(request, "ConditionalRequestConflict", 409)


def internal_error(request: Any) -> AWSResponse:
    return s3_error(request, "InternalError", 500)


def connection_closed(request: Any) -> AWSResponse:
    raise ConnectionClosedError(endpoint_url=request.url)


@pytest.fixture
def client(moto_server_url: str) -> Any:
    return boto3.client("s3", region_name="us-east-1", endpoint_url=moto_server_url, config=RETRIES)


@pytest.fixture
def bucket(client: Any) -> str:
    name = f"envelope-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


def raw_get(client: Any, bucket: str, key: str) -> bytes:
    data: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


# -- 1. every retry resends the same bytes ----------------------------------------------------------

FAULTS = {"409-conflict": conflict, "500-internal": internal_error, "connection-closed": connection_closed}


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_every_putobject_attempt_sends_the_whole_body(client: Any, bucket: str, kind: str, overwrite: bool) -> None:
    # 409 is retried by the store itself (create-only or not, it is what S3 answers to overlapping
    # conditional writes); 500 and a dropped connection are retried by botocore.
    store = S3Store(client, bucket, "p", part_size=PART)
    data = payload(10_000, 1)
    faults = BodyFaults(client, "PutObject", first_attempts(2, FAULTS[kind]))
    store.put_bytes("obj", data, overwrite=overwrite)
    assert len(faults.bodies[0]) == 3
    assert faults.bodies[0] == [data] * 3  # each attempt, not only the last, carried every byte
    assert raw_get(client, bucket, "p/obj") == data


def test_a_small_streamed_object_retried_on_conflict_keeps_its_bytes(client: Any, bucket: str) -> None:
    # The writer's commit of an object that never filled a part is the same PutObject path.
    store = S3Store(client, bucket, part_size=PART)
    data = payload(4321, 2)
    faults = BodyFaults(client, "PutObject", first_attempts(1, conflict))
    with store.open_writer("streamed") as writer:
        writer.write(data)
    assert faults.bodies[0] == [data, data]
    assert raw_get(client, bucket, "streamed") == data


@pytest.mark.parametrize("concurrency", [1, 3])
@pytest.mark.parametrize("kind", ["500-internal", "connection-closed"])
def test_every_uploadpart_attempt_sends_the_whole_part(client: Any, bucket: str, kind: str, concurrency: int) -> None:
    store = S3Store(client, bucket, part_size=PART, upload_concurrency=concurrency)
    data = payload(3 * PART + 777, 3)
    faults = BodyFaults(client, "UploadPart", first_attempts(1, FAULTS[kind]))
    with store.open_writer("big") as writer:
        for start in range(0, len(data), MiB):
            writer.write(data[start : start + MiB])
    assert sorted(faults.bodies) == [1, 2, 3, 4]
    for number, attempts in faults.bodies.items():
        expected = data[(number - 1) * PART : number * PART]
        assert attempts == [expected, expected], number
    assert raw_get(client, bucket, "big") == data
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_conflict_retried_complete_publishes_every_byte(client: Any, bucket: str) -> None:
    store = S3Store(client, bucket, part_size=PART)
    data = payload(PART + 99, 4)
    faults = BodyFaults(client, "CompleteMultipartUpload", first_attempts(1, conflict))
    store.put_bytes("big", data)
    assert len(faults.bodies[0]) == 2
    assert faults.bodies[0][0] == faults.bodies[0][1] != b""
    assert raw_get(client, bucket, "big") == data


# -- 3. a lost response is not a conflict with oneself ----------------------------------------------


class LoseFirstResponse:
    """Delivers the first attempt of `operation` to the server itself, then drops the answer.

    The request reached the server and took effect; botocore sees a closed
    connection and retries, exactly as after a response lost on the way back.
    `deliver` may replace what is delivered (e.g. another writer's request).
    """

    def __init__(
        self,
        client: Any,
        operation: str,
        deliver: Callable[[Any], None] | None = None,
        retry_answer: Callable[[Any], AWSResponse] | None = None,
    ) -> None:
        self.delivered: list[int] = []
        self._deliver = deliver
        self._retry_answer = retry_answer
        self._session = URLLib3Session()
        client.meta.events.register_first(f"before-send.s3.{operation}", self._before_send)

    def _before_send(self, request: Any, **_: Any) -> AWSResponse | None:
        if self.delivered:
            return self._retry_answer(request) if self._retry_answer else None
        if self._deliver is not None:
            self._deliver(request)
            self.delivered.append(0)
        else:
            response = self._session.send(request)
            response.content  # noqa: B018 - read the answer fully, then drop it
            self.delivered.append(response.status_code)
        raise ConnectionClosedError(endpoint_url=request.url)

    def close(self) -> None:
        self._session.close()


@pytest.mark.parametrize("size", [10, PART + 5, 2 * PART + 1])
def test_a_lost_response_to_our_own_create_is_success(client: Any, bucket: str, size: int) -> None:
    store = S3Store(client, bucket, "p", part_size=PART)
    operation = "PutObject" if size <= PART else "CompleteMultipartUpload"
    data = payload(size, 5)
    lose = LoseFirstResponse(client, operation)
    try:
        store.put_bytes("mine", data)
    finally:
        lose.close()
    assert lose.delivered == [200]  # the first attempt did land
    assert raw_get(client, bucket, "p/mine") == data
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# moto treats a repeated CompleteMultipartUpload of a completed upload as a success; an S3 that
# checks If-None-Match first (412) or has forgotten the upload (404 NoSuchUpload) must work too.
RETRIED_COMPLETE_ANSWERS = {
    "precondition-failed": lambda request: s3_error(request, "PreconditionFailed", 412),
    "no-such-upload": lambda request: s3_error(request, "NoSuchUpload", 404),
}


@pytest.mark.parametrize(
    ("answer", "overwrite"),
    [("precondition-failed", False), ("no-such-upload", False), ("no-such-upload", True)],
)
def test_a_lost_complete_answered_by_a_refusal_is_success(
    client: Any, bucket: str, answer: str, overwrite: bool
) -> None:
    store = S3Store(client, bucket, part_size=PART, upload_concurrency=2)
    data = payload(2 * PART + 17, 13)
    lose = LoseFirstResponse(client, "CompleteMultipartUpload", retry_answer=RETRIED_COMPLETE_ANSWERS[answer])
    try:
        store.put_bytes("mine", data, overwrite=overwrite)
    finally:
        lose.close()
    assert lose.delivered == [200]
    assert raw_get(client, bucket, "mine") == data


def test_a_refused_complete_after_another_writer_won_is_not_success(client: Any, bucket: str) -> None:
    # The retry's refusal is checked against the multipart ETag of *our* parts: another
    # writer's object (here: one whose Complete landed while ours was lost) is a conflict.
    store = S3Store(client, bucket, part_size=PART)
    other = boto3.client("s3", region_name="us-east-1", endpoint_url=client.meta.endpoint_url)
    theirs = payload(PART + 17, 14)
    lose = LoseFirstResponse(
        client,
        "CompleteMultipartUpload",
        deliver=lambda _request: other.put_object(Bucket=bucket, Key="taken", Body=theirs),
        retry_answer=RETRIED_COMPLETE_ANSWERS["no-such-upload"],
    )
    try:
        with pytest.raises(StorageError) as info:
            store.put_bytes("taken", payload(PART + 17, 15))
    finally:
        lose.close()
    assert not isinstance(info.value, ObjectExistsError)  # NoSuchUpload, reported as what it is
    assert raw_get(client, bucket, "taken") == theirs


def test_a_lost_response_to_a_streamed_create_is_success(client: Any, bucket: str) -> None:
    store = S3Store(client, bucket, part_size=PART, upload_concurrency=2)
    data = payload(3 * PART + 1, 6)
    lose = LoseFirstResponse(client, "CompleteMultipartUpload")
    try:
        with store.open_writer("mine") as writer:
            for start in range(0, len(data), MiB):
                writer.write(data[start : start + MiB])
    finally:
        lose.close()
    assert lose.delivered == [200]
    assert raw_get(client, bucket, "mine") == data


def test_a_lost_response_to_an_overwriting_complete_is_success(client: Any, bucket: str) -> None:
    store = S3Store(client, bucket, part_size=PART)
    store.put_bytes("mine", b"old", overwrite=True)
    data = payload(PART + 5, 7)
    lose = LoseFirstResponse(client, "CompleteMultipartUpload")
    try:
        store.put_bytes("mine", data, overwrite=True)
    finally:
        lose.close()
    assert lose.delivered == [200]
    assert raw_get(client, bucket, "mine") == data


@pytest.mark.parametrize("size", [10, PART + 5])
def test_another_writers_object_behind_a_retry_is_still_a_conflict(client: Any, bucket: str, size: int) -> None:
    # The first attempt is lost, and meanwhile someone else created the name: the retry's 412 is real.
    store = S3Store(client, bucket, part_size=PART)
    other = boto3.client("s3", region_name="us-east-1", endpoint_url=client.meta.endpoint_url)
    operation = "PutObject" if size <= PART else "CompleteMultipartUpload"
    theirs = payload(size, 8)
    lose = LoseFirstResponse(
        client, operation, deliver=lambda _request: other.put_object(Bucket=bucket, Key="taken", Body=theirs)
    )
    try:
        with pytest.raises(ObjectExistsError):
            store.put_bytes("taken", payload(size, 9))
    finally:
        lose.close()
    assert raw_get(client, bucket, "taken") == theirs
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_first_attempt_refusal_is_a_conflict_even_with_identical_bytes(client: Any, bucket: str) -> None:
    # Only a retried request can have landed unseen: identical bytes written by someone else
    # before our first attempt are still someone else's object.
    store = S3Store(client, bucket, part_size=PART)
    data = payload(100, 10)
    client.put_object(Bucket=bucket, Key="same", Body=data)
    with pytest.raises(ObjectExistsError):
        store.put_bytes("same", data)


# -- 2. a finished part is never dropped by the concurrent writer -----------------------------------


class StubS3:
    """Just enough of an S3 client for a streaming writer; UploadPart takes 0-3 ms."""

    def __init__(self, seed: int) -> None:
        self.completed: list[list[int]] = []
        self.aborted = 0
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._uploads = 0

    def create_multipart_upload(self, **_: Any) -> dict[str, Any]:
        with self._lock:
            self._uploads += 1
            return {"UploadId": f"upload-{self._uploads}"}

    def upload_part(self, *, PartNumber: int, **_: Any) -> dict[str, Any]:
        with self._lock:
            delay = self._random.uniform(0, 0.003)
        time.sleep(delay)
        return {"ETag": f'"etag-{PartNumber}"'}

    def complete_multipart_upload(self, *, MultipartUpload: dict[str, Any], **_: Any) -> dict[str, Any]:
        with self._lock:
            self.completed.append([part["PartNumber"] for part in MultipartUpload["Parts"]])
        return {}

    def abort_multipart_upload(self, **_: Any) -> dict[str, Any]:
        with self._lock:
            self.aborted += 1
        return {}


OBJECTS = 200
PARTS = 4


class _FinishesRightAfterFirstLook:
    """A part upload's future that completes just after the collector's first look at it."""

    def __init__(self, future: concurrent.futures.Future[Any]) -> None:
        self._future = future
        self._looked = False

    def done(self) -> bool:
        if not self._looked:
            self._looked = True
            concurrent.futures.wait([self._future])  # finishes right after this look...
            return False  # ...which saw it still running
        return self._future.done()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._future, name)


class _OneLateFinish(concurrent.futures.ThreadPoolExecutor):
    def submit(self, *args: Any, **kwargs: Any) -> Any:
        future = super().submit(*args, **kwargs)
        if not getattr(self, "_wrapped", False):
            self._wrapped = True
            return _FinishesRightAfterFirstLook(future)
        return future


def test_a_part_finishing_between_two_looks_is_collected(monkeypatch: pytest.MonkeyPatch) -> None:
    # The deterministic form of the race below: part 1 finishes exactly between the collector
    # looking at it (running) and deciding what is still running.
    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", _OneLateFinish)
    stub = StubS3(seed=10)
    store = S3Store(stub, "bucket", part_size=PART, upload_concurrency=2)  # type: ignore[arg-type]
    with store.open_writer("obj") as writer:
        for _ in range(PARTS):
            writer.write(bytes(PART))
    assert stub.aborted == 0
    assert stub.completed == [list(range(1, PARTS + 1))]


def test_a_part_finishing_during_collection_is_never_dropped() -> None:
    stub = StubS3(seed=11)
    store = S3Store(stub, "bucket", part_size=PART, upload_concurrency=2)  # type: ignore[arg-type]
    chunk = memoryview(bytes(PART))
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, to land a finish between two looks at the pool
    try:
        for i in range(OBJECTS):
            with store.open_writer(f"obj-{i}") as writer:
                for _ in range(PARTS):
                    writer.write(chunk)
    finally:
        sys.setswitchinterval(old)
    assert stub.aborted == 0
    assert stub.completed == [list(range(1, PARTS + 1))] * OBJECTS


def test_complete_refuses_a_missing_part_and_aborts(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever loses a part (here: a collector that forgets the first finished one), the writer
    # checks the part numbers before CompleteMultipartUpload and aborts instead of publishing.
    original = S3ObjectWriter._collect
    forgot: list[int] = []

    def forgetful(self: S3ObjectWriter, wait: str | None) -> None:
        before = len(self._parts)
        original(self, wait)
        if not forgot and len(self._parts) > before:
            forgot.append(self._parts.pop()["PartNumber"])

    monkeypatch.setattr(S3ObjectWriter, "_collect", forgetful)
    stub = StubS3(seed=12)
    store = S3Store(stub, "bucket", part_size=PART, upload_concurrency=2)  # type: ignore[arg-type]
    writer = store.open_writer("obj")
    writer.write(bytes(3 * PART))
    with pytest.raises(StorageError, match="expected 1-3"):
        writer.commit()
    assert len(forgot) == 1
    assert stub.completed == []
    assert stub.aborted == 1
    with pytest.raises(StorageError, match="expected 1-3"):
        writer.commit()  # sticky


# -- the same faults seen through the planes: the container header -----------------------------------


@pytest.fixture
def planes(client: Any, server_kms_client: Any) -> tuple[Any, Any, str]:
    from controlplane import ControlPlane
    from dataplane import DataPlane
    from envelope.kms import AwsKms

    kms = AwsKms(server_kms_client)
    arn: str = server_kms_client.create_key()["KeyMetadata"]["Arn"]
    return ControlPlane(kms, client), DataPlane(kms, client, key_ids=[arn]), arn


def test_create_container_retried_on_conflict_stores_the_whole_header(
    client: Any, bucket: str, planes: tuple[Any, Any, str]
) -> None:
    control, data, arn = planes
    faults = BodyFaults(client, "PutObject", first_attempts(1, conflict))
    control.create_container(f"s3://{bucket}/t", arn)
    first, second = faults.bodies[0]
    assert first == second != b""
    assert raw_get(client, bucket, "t/container.json") == first
    container = data.open(f"s3://{bucket}/t")
    container.put("obj", b"hello")
    assert container.get("obj") == b"hello"


def test_create_container_whose_answer_was_lost_is_created(
    client: Any, bucket: str, planes: tuple[Any, Any, str]
) -> None:
    control, data, arn = planes
    lose = LoseFirstResponse(client, "PutObject")
    try:
        control.create_container(f"s3://{bucket}/t", arn)  # not ContainerExistsError
    finally:
        lose.close()
    assert lose.delivered == [200]
    assert list(data.open(f"s3://{bucket}/t").list()) == []  # a complete, readable header
