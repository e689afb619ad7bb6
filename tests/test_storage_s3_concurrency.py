"""S3ObjectWriter with concurrent part uploads (`S3Store(..., upload_concurrency=N)`).

Runs against the shared loopback moto_server. UploadPart calls are observed,
slowed down and failed through botocore's own `before-call`/`after-call`
events, so the real client code paths run in the writer's pool threads.
"""

from __future__ import annotations

import gc
import threading
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from envelope.errors import ObjectExistsError, StorageError, ValidationError
from envelope.storage import S3Store

MiB = 1024 * 1024
PART = 5 * MiB
SIZE = 3 * PART + 123_457  # four parts, the last one short
POOL_THREAD_PREFIX = "envelope-s3-upload"


def payload(size: int = SIZE, seed: int = 1) -> bytes:
    block = bytes((seed * 131 + i * 7) % 251 for i in range(4099))
    return (block * (size // len(block) + 1))[:size]


def uploads(client: Any, bucket: str) -> list[Any]:
    return list(client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def keys(client: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def write_through_reused_buffer(writer: Any, data: bytes, chunk: int = MiB) -> None:
    """Feed `data` through one reused buffer, scribbling over it after every write (as the data plane does)."""
    buf = bytearray(chunk)
    view = memoryview(buf)
    for start in range(0, len(data), chunk):
        piece = data[start : start + chunk]
        view[: len(piece)] = piece
        assert writer.write(view[: len(piece)]) == len(piece)
        view[:] = b"\xee" * chunk


class _ErrorHttp:
    status_code = 500
    headers: dict[str, str] = {}  # noqa: RUF012 - read-only stand-in for an HTTP response
    content = b""


class UploadPartWatch:
    """Counts UploadPart calls in flight (max seen), optionally slows them and fails chosen part numbers."""

    def __init__(self, client: Any, *, delay: float = 0.0, fail_parts: frozenset[int] = frozenset()) -> None:
        self.delay = delay
        self.fail_parts = fail_parts
        self.in_flight = 0
        self.max_in_flight = 0
        self.started: list[int] = []
        self.in_flight_at_abort: list[int] = []
        self._lock = threading.Lock()
        events = client.meta.events
        events.register("before-call.s3.UploadPart", self._before)
        events.register("after-call.s3.UploadPart", self._after)
        events.register("after-call-error.s3.UploadPart", self._after)
        events.register("before-call.s3.AbortMultipartUpload", self._abort)

    def _before(self, params: dict[str, Any], **_: Any) -> Any:
        number = int(params["query_string"]["partNumber"])
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.started.append(number)
        if self.delay:
            time.sleep(self.delay)
        if number in self.fail_parts:
            error = {"Error": {"Code": "InternalError", "Message": "injected"}}
            return _ErrorHttp(), {**error, "ResponseMetadata": {"HTTPStatusCode": 500}}
        return None

    def _after(self, **_: Any) -> None:
        with self._lock:
            self.in_flight -= 1

    def _abort(self, **_: Any) -> None:
        with self._lock:
            self.in_flight_at_abort.append(self.in_flight)


def make_store(client: Any, bucket: str, concurrency: int) -> S3Store:
    return S3Store(client, bucket, "c", part_size=PART, upload_concurrency=concurrency)


# -- configuration ----------------------------------------------------------------------------


def test_upload_concurrency_is_validated(server_s3_client: Any, server_bucket: str) -> None:
    for bad in [0, 17, -1, True, 2.0, "4", None]:
        with pytest.raises(ValidationError, match="upload_concurrency"):
            S3Store(server_s3_client, server_bucket, upload_concurrency=bad)  # type: ignore[arg-type]
    for good in [1, 4, 16]:
        S3Store(server_s3_client, server_bucket, upload_concurrency=good)


def test_substore_keeps_the_concurrency(server_s3_client: Any, server_bucket: str) -> None:
    store = make_store(server_s3_client, server_bucket, 3).substore("sub")
    watch = UploadPartWatch(server_s3_client, delay=0.05)
    with store.open_writer("x") as w:
        write_through_reused_buffer(w, payload())
    assert 2 <= watch.max_in_flight <= 3
    assert store.get_bytes("x") == payload()


# -- round trip -------------------------------------------------------------------------------


def test_concurrency_1_and_4_write_identical_objects(server_s3_client: Any, server_bucket: str) -> None:
    data = payload()
    etags = {}
    for concurrency in (1, 4):
        store = make_store(server_s3_client, server_bucket, concurrency)
        name = f"obj-{concurrency}"
        with store.open_writer(name) as w:
            write_through_reused_buffer(w, data)
        assert store.get_bytes(name) == data
        etags[concurrency] = server_s3_client.head_object(Bucket=server_bucket, Key=f"c/{name}")["ETag"]
    # A multipart ETag is the hash of the parts' hashes plus "-<count>": same parts, same order.
    assert etags[1] == etags[4]
    assert etags[4].endswith('-4"')
    assert uploads(server_s3_client, server_bucket) == []


@pytest.mark.parametrize("size", [PART, 2 * PART, 2 * PART + 1])
def test_part_boundaries_round_trip(server_s3_client: Any, server_bucket: str, size: int) -> None:
    store = make_store(server_s3_client, server_bucket, 4)
    data = payload(size, seed=size % 7)
    with store.open_writer("edge") as w:
        w.write(data)  # one big write spanning several parts
    assert store.get_bytes("edge") == data


def test_small_objects_still_go_in_one_put(server_s3_client: Any, server_bucket: str) -> None:
    store = make_store(server_s3_client, server_bucket, 4)
    ops: list[str] = []
    server_s3_client.meta.events.register("before-call.s3", lambda model, **_: ops.append(model.name))
    with store.open_writer("small") as w:
        w.write(b"a" * 1000)
    store.put_bytes("blob", b"b" * 1000)
    assert ops == ["PutObject", "PutObject"]
    assert store.get_bytes("small") == b"a" * 1000


# -- the bound --------------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 2, 4])
def test_in_flight_part_uploads_never_exceed_the_concurrency(
    server_s3_client: Any, server_bucket: str, concurrency: int
) -> None:
    store = make_store(server_s3_client, server_bucket, concurrency)
    watch = UploadPartWatch(server_s3_client, delay=0.05)  # slow parts, so the pool fills up
    data = payload(4 * PART + 10)
    with store.open_writer("bounded") as w:
        write_through_reused_buffer(w, data)
    assert sorted(watch.started) == [1, 2, 3, 4, 5]
    assert watch.max_in_flight <= concurrency
    if concurrency > 1:
        assert watch.max_in_flight >= 2
    assert watch.in_flight == 0
    assert store.get_bytes("bounded") == data


def test_write_waits_for_a_free_buffer(server_s3_client: Any, server_bucket: str) -> None:
    store = make_store(server_s3_client, server_bucket, 2)
    writer = store.open_writer("waits")
    watch = UploadPartWatch(server_s3_client, delay=0.1)
    writer.write(payload(4 * PART))  # four full parts: two in flight, one filling, so write had to wait
    assert writer._allocated == 3  # upload_concurrency + 1 buffers, never more
    assert watch.max_in_flight <= 2
    writer.commit()
    assert watch.in_flight == 0
    assert store.size("waits") == 4 * PART


# -- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_failed_second_part_aborts_everything(server_s3_client: Any, server_bucket: str, concurrency: int) -> None:
    store = make_store(server_s3_client, server_bucket, concurrency)
    watch = UploadPartWatch(server_s3_client, delay=0.02, fail_parts=frozenset({2}))
    writer = store.open_writer("broken")
    with pytest.raises(StorageError) as info:
        write_through_reused_buffer(writer, payload())
        writer.commit()
    assert isinstance(info.value.__cause__, ClientError)
    assert not isinstance(info.value, ObjectExistsError)
    # Sticky: the same typed error again, from write and commit alike.
    with pytest.raises(StorageError) as again:
        writer.write(b"more")
    assert again.value is info.value
    with pytest.raises(StorageError) as again:
        writer.commit()
    assert again.value is info.value
    writer.abort()  # safe and idempotent after a failure
    # Every running upload had finished before AbortMultipartUpload went out, and nothing is left.
    assert watch.in_flight_at_abort == [0]
    assert watch.in_flight == 0
    assert uploads(server_s3_client, server_bucket) == []
    assert keys(server_s3_client, server_bucket) == []
    assert not store.exists("broken")


def test_a_failed_part_inside_with_aborts(server_s3_client: Any, server_bucket: str) -> None:
    store = make_store(server_s3_client, server_bucket, 4)
    UploadPartWatch(server_s3_client, fail_parts=frozenset({2}))
    with pytest.raises(StorageError), store.open_writer("broken") as w:
        write_through_reused_buffer(w, payload())
    assert uploads(server_s3_client, server_bucket) == []
    assert keys(server_s3_client, server_bucket) == []


def test_abort_with_parts_in_flight_waits_then_aborts(server_s3_client: Any, server_bucket: str) -> None:
    store = make_store(server_s3_client, server_bucket, 4)
    watch = UploadPartWatch(server_s3_client, delay=0.2)
    writer = store.open_writer("aborted")
    writer.write(payload(3 * PART + 1))  # three parts queued or running
    assert len(uploads(server_s3_client, server_bucket)) == 1
    writer.abort()
    assert watch.in_flight_at_abort == [0]
    assert uploads(server_s3_client, server_bucket) == []
    assert keys(server_s3_client, server_bucket) == []
    with pytest.raises(StorageError, match="aborted"):
        writer.write(b"x")


def test_an_exception_inside_with_aborts(server_s3_client: Any, server_bucket: str) -> None:
    store = make_store(server_s3_client, server_bucket, 4)
    with pytest.raises(RuntimeError), store.open_writer("boom") as w:
        write_through_reused_buffer(w, payload())
        raise RuntimeError("caller failed")
    assert uploads(server_s3_client, server_bucket) == []
    assert keys(server_s3_client, server_bucket) == []


# -- create-only ------------------------------------------------------------------------------


def test_create_only_is_intact(server_s3_client: Any, server_bucket: str) -> None:
    store = make_store(server_s3_client, server_bucket, 4)
    store.put_bytes("taken", b"first")
    with pytest.raises(ObjectExistsError), store.open_writer("taken") as w:
        write_through_reused_buffer(w, payload())
    assert store.get_bytes("taken") == b"first"
    assert uploads(server_s3_client, server_bucket) == []
    with store.open_writer("taken", overwrite=True) as w:
        write_through_reused_buffer(w, payload())
    assert store.get_bytes("taken") == payload()


def test_a_create_only_writer_committing_second_loses(server_s3_client: Any, server_bucket: str) -> None:
    # Sequential on purpose (the shared moto_server is threaded and not atomic under a true race);
    # the real race, with concurrent part uploads, is test_storage_race.py's s3-concurrent-parts.
    store = make_store(server_s3_client, server_bucket, 4)
    first, second = store.open_writer("race"), store.open_writer("race")
    write_through_reused_buffer(first, payload(seed=1))
    write_through_reused_buffer(second, payload(seed=2))
    first.commit()
    with pytest.raises(ObjectExistsError):
        second.commit()
    assert store.get_bytes("race") == payload(seed=1)
    assert uploads(server_s3_client, server_bucket) == []


# -- a dropped writer -------------------------------------------------------------------------


def test_a_dropped_writer_publishes_nothing_and_its_threads_exit(server_s3_client: Any, server_bucket: str) -> None:
    store = make_store(server_s3_client, server_bucket, 4)
    before = {t.ident for t in threading.enumerate()}
    writer = store.open_writer(f"dropped-{uuid.uuid4().hex[:6]}")
    writer.write(payload(2 * PART + 1))
    pool = [t for t in threading.enumerate() if t.ident not in before and t.name.startswith(POOL_THREAD_PREFIX)]
    assert pool
    del writer
    gc.collect()
    for thread in pool:
        thread.join(timeout=30)
        assert not thread.is_alive()
    assert keys(server_s3_client, server_bucket) == []
    # As before: the incomplete upload stays (invisible) for the bucket's lifecycle rule to reap.
    for upload in uploads(server_s3_client, server_bucket):
        server_s3_client.abort_multipart_upload(Bucket=server_bucket, Key=upload["Key"], UploadId=upload["UploadId"])
