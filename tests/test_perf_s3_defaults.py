"""The S3 store's throughput defaults: concurrent part uploads and a 16 MiB read-ahead, both bounded.

Behaviour only (no timing): a store built with no options keeps up to four
UploadPart calls in flight and never more than five part buffers, and a
sequential read of a default store costs one ranged GET per 16 MiB.
"""

from __future__ import annotations

from typing import Any

from envelope.storage import S3Store
from tests.test_storage_s3_concurrency import UploadPartWatch, payload, write_through_reused_buffer

MiB = 1024 * 1024
PART = 8 * MiB  # the default part size


def test_a_default_store_uploads_four_parts_at_once_with_at_most_five_buffers(
    server_s3_client: Any, server_bucket: str
) -> None:
    store = S3Store(server_s3_client, server_bucket, "defaults")
    watch = UploadPartWatch(server_s3_client, delay=0.2)  # slow parts, so the pool fills up
    data = payload(6 * PART + 10)
    writer = store.open_writer("concurrent")
    write_through_reused_buffer(writer, data)
    assert writer._allocated <= 5  # (upload_concurrency + 1) part buffers: the documented bound
    writer.commit()
    assert 2 <= watch.max_in_flight <= 4
    assert watch.in_flight == 0
    assert store.get_bytes("concurrent") == data


def test_a_default_store_streams_a_read_in_16_mib_gets(server_s3_client: Any, server_bucket: str) -> None:
    store = S3Store(server_s3_client, server_bucket, "defaults")
    data = payload(40 * MiB)
    with store.open_writer("big") as w:
        write_through_reused_buffer(w, data)
    gets: list[str] = []
    server_s3_client.meta.events.register(
        "before-call.s3.GetObject", lambda params, **_: gets.append(params["headers"].get("Range", ""))
    )
    out = bytearray()
    buf = memoryview(bytearray(MiB))
    with store.open_reader("big") as r:
        offset = 0
        while offset < len(data):
            n = r.readinto_at(offset, buf)
            out += buf[:n]
            offset += n
    assert bytes(out) == data
    sizes = [int(b) - int(a) + 1 for a, b in (g.removeprefix("bytes=").split("-") for g in gets)]
    assert max(sizes) == 16 * MiB, sizes  # the window grows to the default max_read_ahead, no further
    assert len(gets) <= 5, sizes  # 40 MiB in 1 MiB reads: a handful of GETs, not 40
