"""S3 reads: a sequential reader's window grows, so a stream costs few GETs; random reads stay small."""

from __future__ import annotations

import os
from typing import Any

import pytest

from envelope.errors import ValidationError
from envelope.storage import S3Store

MiB = 1 << 20


def _gets(client: Any) -> list[str]:
    ranges: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        ranges.append(params.get("Range", ""))

    client.meta.events.register("provide-client-params.s3.GetObject", record)
    return ranges


def test_a_sequential_read_costs_one_get_per_max_read_ahead(s3_client: Any, bucket: str) -> None:
    store = S3Store(s3_client, bucket, part_size=5 * MiB, read_ahead=MiB, max_read_ahead=4 * MiB)
    data = os.urandom(20 * MiB + 123)
    with store.open_writer("big") as w:
        w.write(data)
    ranges = _gets(s3_client)
    out = bytearray(len(data))
    frame = MiB + 40  # a data-plane frame with its overhead: larger than the first window
    with store.open_reader("big") as r:
        for off in range(0, len(data), frame):
            r.readinto_at(off, memoryview(out)[off : off + frame])
    assert out == data
    # 1 MiB direct, then windows of 2, 4, 4, 4... MiB: far fewer GETs than the 20 frames read
    assert len(ranges) <= 8, ranges


def test_random_reads_do_not_grow_the_window(s3_client: Any, bucket: str) -> None:
    store = S3Store(s3_client, bucket, part_size=5 * MiB, read_ahead=MiB, max_read_ahead=8 * MiB)
    data = os.urandom(12 * MiB)
    store.put_bytes("obj", data)
    ranges = _gets(s3_client)
    buf = bytearray(4096)
    with store.open_reader("obj") as r:
        for off in (11 * MiB, 3 * MiB, 7 * MiB, 1 * MiB):
            r.readinto_at(off, memoryview(buf))
            assert buf == data[off : off + 4096]
    sizes = [int(x.split("-")[1]) - int(x.split("=")[1].split("-")[0]) + 1 for x in ranges]
    assert sizes == [MiB] * 4


def test_max_read_ahead_must_cover_read_ahead(s3_client: Any, bucket: str) -> None:
    with pytest.raises(ValidationError):
        S3Store(s3_client, bucket, read_ahead=4 * MiB, max_read_ahead=MiB)
