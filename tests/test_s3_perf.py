"""The S3 writer's per-part work: what each UploadPart carries, computes and holds.

Behaviour only, never timing: each part carries the CRC32 the writer
computed over its buffer (so botocore does not compute one again); no MD5
is computed on the happy path (the lost-response check predicts the
object's ETag from the ETags S3 answered for the parts); uploads in flight
never exceed the client's connection pool; and the bytes a writer holds
stay within (N + 1) part buffers plus a 256 KiB piece of the body per
upload thread. Runs against the shared loopback moto_server.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import tracemalloc
import zlib
from typing import Any

import boto3
import botocore.httpchecksum
import pytest
from botocore.config import Config

import envelope.storage.s3 as s3_module
from envelope.errors import StorageError
from envelope.storage import S3Store
from tests.test_storage_s3_concurrency import UploadPartWatch, payload, write_through_reused_buffer

MiB = 1024 * 1024
PART = 5 * MiB


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode("ascii")


def _text(value: object) -> object:
    return value.decode("ascii") if isinstance(value, bytes) else value


class UploadPartRequests:
    """What each UploadPart request carried, as botocore was about to send it."""

    def __init__(self, client: Any) -> None:
        self.sent: dict[int, dict[str, Any]] = {}
        self.answered: dict[int, str] = {}
        self._lock = threading.Lock()
        client.meta.events.register("before-call.s3.UploadPart", self._before_call)
        client.meta.events.register("before-send.s3.UploadPart", self._before_send)
        client.meta.events.register("after-call.s3.UploadPart", self._after_call)

    def _before_call(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["test_part_number"] = int(params["query_string"]["partNumber"])

    def _before_send(self, request: Any, **_: Any) -> None:
        number = int(request.url.split("partNumber=")[1].split("&")[0])
        with self._lock:
            self.sent[number] = {"crc32": _text(request.headers.get("x-amz-checksum-crc32"))}

    def _after_call(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self.answered[context["test_part_number"]] = parsed["ETag"]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_every_part_carries_the_crc32_of_its_bytes_computed_once(
    server_s3_client: Any, server_bucket: str, concurrency: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    botocore_crc32: list[int] = []
    original = botocore.httpchecksum.Crc32Checksum.update

    def counting_update(self: Any, chunk: bytes) -> None:
        botocore_crc32.append(len(chunk))
        original(self, chunk)

    monkeypatch.setattr(botocore.httpchecksum.Crc32Checksum, "update", counting_update)
    store = S3Store(server_s3_client, server_bucket, "p", part_size=PART, upload_concurrency=concurrency)
    requests = UploadPartRequests(server_s3_client)
    data = payload(3 * PART + 1234, 3)
    with store.open_writer("obj") as writer:
        write_through_reused_buffer(writer, data)
    assert store.get_bytes("obj") == data
    assert sorted(requests.sent) == [1, 2, 3, 4]
    for number, sent in requests.sent.items():
        part = data[(number - 1) * PART : number * PART]
        assert sent["crc32"] == crc32_b64(part), number  # ours, over the bytes of this part
    assert botocore_crc32 == []  # given, so botocore did not read the body to compute it again


def test_no_md5_is_computed_on_the_happy_path(
    server_s3_client: Any, server_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    class CountingHashlib:
        @staticmethod
        def md5(data: Any = b"", **kwargs: Any) -> Any:
            calls.append(memoryview(data).nbytes)
            return hashlib.md5(data, **kwargs)

    monkeypatch.setattr(s3_module, "hashlib", CountingHashlib)
    store = S3Store(server_s3_client, server_bucket, "p", part_size=PART)
    data = payload(2 * PART + 5, 4)
    store.put_bytes("multipart", data)
    store.put_bytes("small", b"small object")
    assert store.get_bytes("multipart") == data
    assert calls == []


def test_the_predicted_multipart_etag_is_the_one_s3_gives_the_object(server_s3_client: Any, server_bucket: str) -> None:
    store = S3Store(server_s3_client, server_bucket, "p", part_size=PART, upload_concurrency=2)
    requests = UploadPartRequests(server_s3_client)
    store.put_bytes("obj", payload(2 * PART + 99, 5))
    parts: list[Any] = [{"PartNumber": n, "ETag": requests.answered[n]} for n in sorted(requests.answered)]
    head = server_s3_client.head_object(Bucket=server_bucket, Key="p/obj")
    assert s3_module._multipart_etag(parts) == head["ETag"].strip('"')
    # An ETag that is not an MD5 (SSE-KMS, some S3-compatible stores) predicts nothing, so matches nothing.
    assert s3_module._multipart_etag([*parts[:1], {"PartNumber": 2, "ETag": '"not-an-md5"'}]) is None


class NoETagS3:
    """Answers UploadPart without an ETag."""

    def __init__(self) -> None:
        self.aborted = 0

    def create_multipart_upload(self, **_: Any) -> dict[str, Any]:
        return {"UploadId": "u"}

    def upload_part(self, **_: Any) -> dict[str, Any]:
        return {}

    def abort_multipart_upload(self, **_: Any) -> dict[str, Any]:
        self.aborted += 1
        return {}


def test_a_part_answered_without_an_etag_is_a_storage_error() -> None:
    client = NoETagS3()
    store = S3Store(client, "bucket", part_size=PART, upload_concurrency=1)  # type: ignore[arg-type]
    writer = store.open_writer("obj")
    with pytest.raises(StorageError, match="without an ETag"):
        writer.write(payload(PART, 6))
    assert client.aborted == 1


def test_uploads_in_flight_never_exceed_the_clients_connection_pool(
    moto_server_url: str, server_bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = boto3.client(
        "s3", region_name="us-east-1", endpoint_url=moto_server_url, config=Config(max_pool_connections=2)
    )
    store = S3Store(client, server_bucket, "p", part_size=PART, upload_concurrency=4)
    watch = UploadPartWatch(client, delay=0.2)  # slow parts, so the pool would fill up
    data = payload(5 * PART + 7, 7)
    with caplog.at_level("WARNING", logger="urllib3.connectionpool"), store.open_writer("obj") as writer:
        write_through_reused_buffer(writer, data)
        assert writer._allocated <= 3  # buffers follow the effective concurrency: 2 + 1
    assert watch.max_in_flight == 2
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
    assert store.get_bytes("obj") == data


def test_a_writer_holds_at_most_n_plus_one_part_buffers(server_s3_client: Any, server_bucket: str) -> None:
    # Measured as bytes allocated by Python while the upload runs (botocore's included), not RSS.
    concurrency = 3
    store = S3Store(server_s3_client, server_bucket, "p", part_size=PART, upload_concurrency=concurrency)
    UploadPartWatch(server_s3_client, delay=0.05)  # parts overlap, so the pool is used to its bound
    chunk = memoryview(bytearray(MiB))
    store.put_bytes("warm-up", payload(PART + 1, 8))  # botocore loads its operation models once, not per writer
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        with store.open_writer("obj") as writer:
            for _ in range(8 * PART // MiB + 1):
                writer.write(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    held = peak - before
    bound = (concurrency + 1) * PART
    # Beyond the buffers: the piece of the body botocore is reading to sign it (payload signing over
    # http), at most 256 KiB per upload thread, and up to 1 MiB of anything else (requests, answers).
    slack = MiB + concurrency * 256 * 1024
    assert held <= bound + slack, f"held {held / MiB:.2f} MiB, bound {bound / MiB:.0f} MiB"
    assert held >= bound - MiB  # every buffer was in use at once: the measure sees them
    assert server_s3_client.head_object(Bucket=server_bucket, Key="p/obj")["ContentLength"] == 8 * PART + MiB
