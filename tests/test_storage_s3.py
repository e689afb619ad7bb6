"""S3Store specifics: the requests it sends, bounded memory, failure handling, error mapping.

Runs against the shared loopback moto_server. Requests are observed and
errors injected through botocore's own event hooks, so the real client code
paths (serialization, parsing, retries) all run.
"""

from __future__ import annotations

import socket
import threading
import tracemalloc
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from envelope.errors import ObjectExistsError, ObjectNotFoundError, StorageError, ValidationError
from envelope.storage import S3Store

MiB = 1024 * 1024
PART = 5 * MiB
NO_RETRIES = Config(retries={"max_attempts": 1, "mode": "standard"})


class Recorder:
    """Records (operation, headers) of every call the client makes."""

    def __init__(self, client: Any) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        client.meta.events.register("before-call.s3", self._record)

    def _record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self.calls.append((model.name, {k.lower(): str(v) for k, v in params.get("headers", {}).items()}))

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]

    def clear(self) -> None:
        self.calls.clear()


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterable[bytes]:
        yield self._body

    def read(self, *_: Any, **__: Any) -> bytes:
        body, self._body = self._body, b""
        return body


class Faults:
    """Answers chosen S3 operations with an injected error, `times` times (or forever)."""

    def __init__(self, client: Any) -> None:
        self.plan: dict[str, list[tuple[str, int]]] = {}
        self._client = client

    def fail(self, operation: str, code: str, status: int, times: int = 1_000_000) -> None:
        self.plan[operation] = [(code, status)] * times
        self._client.meta.events.register_first(f"before-send.s3.{operation}", self._answer(operation))

    def _answer(self, operation: str) -> Any:
        def handler(request: Any, **_: Any) -> AWSResponse | None:
            pending = self.plan.get(operation)
            if not pending:
                return None
            code, status = pending.pop()
            body = (
                f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>injected</Message></Error>"
            )
            return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _Raw(body.encode()))

        return handler


@pytest.fixture
def client(moto_server_url: str) -> Any:
    return boto3.client("s3", region_name="us-east-1", endpoint_url=moto_server_url, config=NO_RETRIES)


@pytest.fixture
def bucket(client: Any) -> str:
    name = f"envelope-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def store(client: Any, bucket: str) -> S3Store:
    # The sequential writer (one part at a time), pinned: the default is concurrent since the perf pass.
    return S3Store(client, bucket, "t/acme", part_size=PART, upload_concurrency=1)


def uploads(client: Any, bucket: str) -> list[Any]:
    return list(client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def keys(client: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def chunks(data: bytes, size: int) -> Iterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(data), size):
        yield view[start : start + size]


# -- configuration ----------------------------------------------------------------------------


def test_configuration_is_validated(client: Any, bucket: str) -> None:
    with pytest.raises(ValidationError, match="part_size"):
        S3Store(client, bucket, part_size=5 * MiB - 1)
    with pytest.raises(ValidationError, match="small_object_threshold"):
        S3Store(client, bucket, part_size=PART, small_object_threshold=PART + 1)
    with pytest.raises(ValidationError):
        S3Store(client, bucket, read_ahead=-1)
    with pytest.raises(ValidationError):
        S3Store(client, bucket, list_page_size=1001)
    for bad in ["", "UPPER", "a", "a..b", "-dash", "192.168.1.1", "xn--punycode", "x" * 64, "under_score"]:
        with pytest.raises(ValidationError):
            S3Store(client, bad)
    with pytest.raises(ValidationError):
        S3Store(client, bucket, prefix="../x")
    with pytest.raises(ValidationError):
        S3Store(None, bucket)  # type: ignore[arg-type]


def test_url_prefix_and_substore(client: Any, bucket: str) -> None:
    assert S3Store(client, bucket).url == f"s3://{bucket}"
    store = S3Store(client, bucket, "tenants/acme/")
    assert store.url == f"s3://{bucket}/tenants/acme"
    assert store.prefix == "tenants/acme/"
    assert store.substore("objects").url == f"s3://{bucket}/tenants/acme/objects"
    assert repr(store) == f"S3Store('s3://{bucket}/tenants/acme')"


def test_the_prefix_counts_toward_the_key_limit(client: Any, bucket: str) -> None:
    store = S3Store(client, bucket, "p" * 200)
    recorder = Recorder(client)
    with pytest.raises(ValidationError, match="1024"):
        store.put_bytes("/".join(["n" * 255] * 3) + "/" + "n" * 130, b"")  # 898 + 201 bytes
    assert recorder.calls == []


# -- what goes over the wire ----------------------------------------------------------------


def test_a_small_object_is_one_conditional_put(client: Any, store: S3Store) -> None:
    recorder = Recorder(client)
    store.put_bytes("small", b"x" * 1000)
    with store.open_writer("streamed-small") as w:
        w.write(b"y" * 1000)
    with store.open_writer("empty") as w:
        pass
    assert recorder.ops() == ["PutObject"] * 3
    assert all(headers.get("if-none-match") == "*" for _, headers in recorder.calls)
    assert store.get_bytes("empty") == b""
    recorder.clear()
    store.put_bytes("small", b"z", overwrite=True)
    assert recorder.ops() == ["PutObject"]
    assert "if-none-match" not in recorder.calls[0][1]


def test_a_large_object_streams_as_conditional_multipart_upload(client: Any, bucket: str, store: S3Store) -> None:
    data = bytes(range(256)) * (((2 * PART) + 100) // 256 + 1)
    data = data[: 2 * PART + 100]
    recorder = Recorder(client)
    part_sizes: list[int] = []
    client.meta.events.register(
        "before-send.s3.UploadPart", lambda request, **_: part_sizes.append(int(request.headers["Content-Length"]))
    )
    writer = store.open_writer("big")
    sent = 0
    for piece in chunks(data, MiB):
        writer.write(piece)
        sent += len(piece)
        # Parts leave as soon as they fill: never more than one part is held.
        assert recorder.ops().count("UploadPart") == sent // PART
    assert keys(client, bucket) == []  # invisible before commit
    writer.commit()
    assert [op for op in recorder.ops() if op != "ListObjectsV2"] == [
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPart",
        "UploadPart",
        "CompleteMultipartUpload",
    ]
    assert part_sizes == [PART, PART, 100]
    assert recorder.calls[-1][1].get("if-none-match") == "*"
    assert store.get_bytes("big") == data
    assert uploads(client, bucket) == []


def test_objects_over_the_threshold_use_multipart_even_within_one_part(client: Any, bucket: str) -> None:
    store = S3Store(client, bucket, part_size=PART, small_object_threshold=1000)
    recorder = Recorder(client)
    store.put_bytes("mid", b"m" * 1001)
    assert recorder.ops() == ["CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"]
    assert store.get_bytes("mid") == b"m" * 1001


def test_writer_memory_is_bounded_by_one_part(store: S3Store) -> None:
    piece = memoryview(bytes(MiB))
    tracemalloc.start()
    try:
        with store.open_writer("bounded") as w:
            for _ in range(30):  # 30 MiB through a 5 MiB part buffer
                w.write(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert store.size("bounded") == 30 * MiB
    assert peak < 2 * PART, f"peak {peak / MiB:.1f} MiB for a {PART // MiB} MiB part"


# -- failures leave nothing -------------------------------------------------------------------


def test_abort_of_a_multipart_writer_leaves_no_upload(client: Any, bucket: str, store: S3Store) -> None:
    writer = store.open_writer("aborted")
    writer.write(bytes(PART + 1))
    assert len(uploads(client, bucket)) == 1
    writer.abort()
    assert uploads(client, bucket) == []
    assert keys(client, bucket) == []


def test_a_failed_part_upload_aborts_the_upload_and_is_sticky(client: Any, bucket: str, store: S3Store) -> None:
    writer = store.open_writer("broken")
    writer.write(bytes(PART))  # first part uploaded
    Faults(client).fail("UploadPart", "InternalError", 500)
    with pytest.raises(StorageError) as info:
        writer.write(bytes(PART))
    assert isinstance(info.value.__cause__, ClientError)
    assert not isinstance(info.value, ObjectNotFoundError | ObjectExistsError)
    with pytest.raises(StorageError) as again:
        writer.write(b"more")
    assert again.value is info.value
    with pytest.raises(StorageError):
        writer.commit()
    writer.abort()
    assert uploads(client, bucket) == []
    assert keys(client, bucket) == []


def test_a_failed_complete_aborts_the_upload(client: Any, bucket: str, store: S3Store) -> None:
    Faults(client).fail("CompleteMultipartUpload", "InternalError", 500)
    with pytest.raises(StorageError):
        store.put_bytes("broken", bytes(PART + 1))
    assert uploads(client, bucket) == []
    assert keys(client, bucket) == []


def test_losing_a_create_only_complete_aborts_the_upload(client: Any, bucket: str, store: S3Store) -> None:
    writer = store.open_writer("taken")
    writer.write(bytes(PART + 1))
    store.put_bytes("taken", b"first")
    with pytest.raises(ObjectExistsError) as info:
        writer.commit()
    assert isinstance(info.value.__cause__, ClientError)
    assert store.get_bytes("taken") == b"first"
    assert uploads(client, bucket) == []


@pytest.mark.parametrize(("operation", "size"), [("PutObject", 10), ("CompleteMultipartUpload", PART + 1)])
def test_a_conditional_write_conflict_is_retried(client: Any, store: S3Store, operation: str, size: int) -> None:
    # Real S3 answers 409 ConditionalRequestConflict when conditional writes overlap.
    Faults(client).fail(operation, "ConditionalRequestConflict", 409, times=1)
    store.put_bytes("conflicted", bytes(size))
    assert store.size("conflicted") == size


def test_a_persistent_conflict_is_reported_as_exists(client: Any, bucket: str, store: S3Store) -> None:
    Faults(client).fail("CompleteMultipartUpload", "ConditionalRequestConflict", 409)
    with pytest.raises(ObjectExistsError):
        store.put_bytes("conflicted", bytes(PART + 1))
    assert uploads(client, bucket) == []


# -- reads ------------------------------------------------------------------------------------


def test_reads_are_ranged_gets_into_the_callers_buffer(client: Any, bucket: str) -> None:
    store = S3Store(client, bucket, part_size=PART, read_ahead=MiB)
    data = bytes(i % 251 for i in range(3 * MiB))
    store.put_bytes("ranged", data)
    recorder = Recorder(client)
    with store.open_reader("ranged") as reader:
        assert recorder.ops() == ["HeadObject"]
        big = bytearray(2 * MiB)
        assert reader.readinto_at(100, memoryview(big)) == 2 * MiB
        assert bytes(big) == data[100 : 100 + 2 * MiB]
        small = bytearray(100)
        for offset in range(0, 100 * 100, 100):  # 100 small sequential reads
            reader.readinto_at(offset, memoryview(small))
            assert bytes(small) == data[offset : offset + 100]
        reader.readinto_at(3 * MiB - 50, memoryview(small))  # past the window, clipped at the end
        assert bytes(small[:50]) == data[-50:]
    gets = [h for op, h in recorder.calls if op == "GetObject"]
    assert [h["range"] for h in gets] == [
        f"bytes=100-{100 + 2 * MiB - 1}",  # large read: exactly the range asked, no read-ahead
        f"bytes=0-{MiB - 1}",  # one read-ahead window for all 100 small reads
        f"bytes={3 * MiB - 50}-{3 * MiB - 1}",  # the window never runs past the object
    ]
    assert all(h.get("if-match") for h in gets)  # pinned to the version seen at open


def test_a_reader_refuses_to_mix_two_versions(store: S3Store) -> None:
    store.put_bytes("v", b"a" * 10_000)
    with store.open_reader("v") as reader:
        store.put_bytes("v", b"b" * 10_000, overwrite=True)
        with pytest.raises(StorageError, match="replaced"):
            reader.readinto_at(0, memoryview(bytearray(10)))


def test_get_bytes_max_size_is_checked_before_the_body_is_read(store: S3Store) -> None:
    store.put_bytes("header", b"{}" * 1000)
    with pytest.raises(StorageError, match="max_size"):
        store.get_bytes("header", max_size=10)


# -- listing ----------------------------------------------------------------------------------


def test_listing_follows_continuation_tokens(client: Any, bucket: str) -> None:
    store = S3Store(client, bucket, "p", list_page_size=2)
    names = ["a/1", "a/2", "b", "c/x/y", "d", "e/1", "f"]
    for name in names:
        store.put_bytes(name, b"")
    recorder = Recorder(client)
    assert list(store.list()) == names
    assert recorder.ops() == ["ListObjectsV2"] * 4
    assert list(store.list_children()) == ["a/", "b", "c/", "d", "e/", "f"]
    assert list(store.list_children("c/")) == ["c/x/"]


def test_keys_written_by_other_tools_are_not_listed(client: Any, bucket: str) -> None:
    store = S3Store(client, bucket, "p")
    for key in ["p/ok", "p/a//b", "p/.hidden", "p/x/./y", "p/trailing/", "other/ok"]:
        client.put_object(Bucket=bucket, Key=key, Body=b"")
    assert list(store.list()) == ["ok"]
    assert "ok" in list(store.list_children())
    assert ".hidden" not in list(store.list_children())


# -- error mapping ----------------------------------------------------------------------------


def test_a_missing_bucket_is_a_storage_error_not_a_missing_object(client: Any) -> None:
    store = S3Store(client, "envelope-no-such-bucket")
    with pytest.raises(StorageError) as info:
        store.put_bytes("x", b"x")
    assert type(info.value) is StorageError
    assert isinstance(info.value.__cause__, ClientError)
    with pytest.raises(StorageError) as info:
        store.get_bytes("x")
    assert type(info.value) is StorageError
    with pytest.raises(StorageError):
        list(store.list())


def test_an_unreachable_endpoint_is_a_storage_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        dead = boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=f"http://127.0.0.1:{port}",
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=2),
        )
        store = S3Store(dead, "some-bucket")
        with pytest.raises(StorageError) as info:
            store.put_bytes("x", b"x")
        assert isinstance(info.value.__cause__, BotoCoreError)
        with pytest.raises(StorageError):
            store.exists("x")
