"""Figure 8: S3 streaming put/get through our S3-backed containers against boto3's
plaintext `upload_fileobj` / `download_fileobj`, same moto_server, interleaved.

Both sides read the same generated stream (no big buffer) and drain into a
counting sink. Ours: `open_writer` fed 1 MiB at a time (multipart upload
by our S3 store, its defaults: 8 MiB parts, 4 in flight, at most 5 part
buffers = 40 MiB per writer), `open_reader` read 1 MiB at a time (ranged
GETs, a window growing to 16 MiB). boto3: its default TransferConfig (8 MiB
parts, up to 10 threads, up to 10 parts queued in memory). The issue's goal
is >= 1.0x both ways with our defaults and their memory bound.

Mind the emulator: a ranged GET on moto_server costs time in proportion to
the whole object's size (about 0.6 ms per MiB of object, whatever the
range), so on moto this figure mostly counts GET requests: ours issues one
per read-ahead window (growing from 1 MiB to 16 MiB), boto3 one per 8 MiB
part. A put is mostly CPU on both sides of the loopback (moto's and the
client's: checksums, the request signature, copies), so on a loaded machine
the ratio moves with the share of the two cores each side gets. Real S3 charges a
first-byte latency per request instead; fewer, larger, concurrent requests
win there too.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from bench import ours
from bench.env import REGION
from bench.report import verdict
from bench.stats import interleave, paired_ratios, summarize, throughput
from bench.streams import CountingSink, CountingWriter, MiB, PatternSource

IO_CHUNK = MiB
TARGET = 1.0


def run(cfg: Any, ctx: Any) -> dict[str, Any]:
    import boto3

    if not ours.dataplane_available():
        raise RuntimeError("needs dataplane.DataPlane and controlplane.ControlPlane")
    from controlplane import ControlPlane
    from dataplane import DataPlane
    from envelope.kms import AwsKms
    from envelope.storage.s3 import DEFAULT_MAX_READ_AHEAD, DEFAULT_PART_SIZE, DEFAULT_UPLOAD_CONCURRENCY

    url = ctx.moto_server()
    size = cfg.s3_size
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=url)
    kms_client = boto3.client("kms", region_name=REGION, endpoint_url=url)
    arn = kms_client.create_key(Description="bench s3")["KeyMetadata"]["Arn"]
    kms = AwsKms(kms_client)
    bucket = f"envelope-bench-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    location = f"s3://{bucket}/container"
    ControlPlane(kms, s3_client=s3).create_container(location, key_id=arn, encryption_context={"tenant": "bench"})
    plane = DataPlane(kms, s3_client=s3, discovery=True)
    names = iter(range(1 << 30))
    buf = memoryview(bytearray(IO_CHUNK))

    with plane.open(location) as container:

        def ours_put() -> float:
            name = f"put-{next(names)}"
            source = PatternSource(size)
            start = time.perf_counter()
            with container.open_writer(name) as writer:
                while n := source.readinto(buf):
                    writer.write(buf[:n])
            seconds = time.perf_counter() - start
            s3.delete_object(Bucket=bucket, Key=f"container/objects/{name}")
            return seconds

        def boto3_put() -> float:
            key = f"plain/put-{next(names)}"
            start = time.perf_counter()
            s3.upload_fileobj(PatternSource(size), bucket, key)  # type: ignore[arg-type]
            seconds = time.perf_counter() - start
            s3.delete_object(Bucket=bucket, Key=key)
            return seconds

        with container.open_writer("get-source") as writer:
            source = PatternSource(size)
            while n := source.readinto(buf):
                writer.write(buf[:n])
        s3.upload_fileobj(PatternSource(size), bucket, "plain/get-source")  # type: ignore[arg-type]

        def ours_get() -> float:
            sink = CountingSink()
            start = time.perf_counter()
            with container.open_reader("get-source") as reader:
                while n := reader.readinto(buf):
                    sink.write(buf[:n])
            seconds = time.perf_counter() - start
            if sink.count != size:
                raise RuntimeError("short read")
            return seconds

        def boto3_get() -> float:
            sink = CountingWriter()
            start = time.perf_counter()
            s3.download_fileobj(bucket, "plain/get-source", sink)  # type: ignore[arg-type]
            seconds = time.perf_counter() - start
            if sink.count != size:
                raise RuntimeError("short download")
            return seconds

        times = interleave(
            {"ours_put": ours_put, "boto3_put": boto3_put, "ours_get": ours_get, "boto3_get": boto3_get},
            reps=cfg.s3_reps,
            warmup=cfg.warmup,
        )
    for key in ("container/objects/get-source", "plain/get-source"):
        s3.delete_object(Bucket=bucket, Key=key)
    mbps = {name: throughput(size, t) for name, t in times.items()}
    result: dict[str, Any] = {
        "emulator": "moto_server on 127.0.0.1 (a ranged GET costs in proportion to the object size)",
        "bytes": size,
        "reps": cfg.s3_reps,
        "mb_per_s": {name: summarize(v, digits=1) for name, v in mbps.items()},
        "ratio": {},
        "summary": [],
    }
    bounds = {
        "put": f"ours holds at most {(DEFAULT_UPLOAD_CONCURRENCY + 1) * DEFAULT_PART_SIZE // MiB} MiB of parts "
        f"({DEFAULT_UPLOAD_CONCURRENCY} x {DEFAULT_PART_SIZE // MiB} MiB in flight + 1 filling)",
        "get": f"ours holds at most a {DEFAULT_MAX_READ_AHEAD // MiB} MiB read-ahead window",
    }
    for op in ("put", "get"):
        ratio = summarize(paired_ratios(mbps[f"ours_{op}"], mbps[f"boto3_{op}"]))
        result["ratio"][op] = ratio
        result["summary"].append(
            verdict(
                "8",
                f"S3 {op} ours / boto3 plaintext {(op == 'put' and 'upload') or 'download'}_fileobj",
                ratio,
                target=(">=", TARGET),
                detail=bounds[op],
            )
        )
    return result
