"""Peak RSS of streaming writes (and reads) through S3Store: bounded by the part size, not the object size.

Starts a moto_server on 127.0.0.1 (a free port; stopped at the end), then for
each (object size, part size) runs one child process that imports what an
application would, makes a boto3 client, and streams the object through
`S3Store.open_writer` in 1 MiB memoryview chunks from one reused buffer. The
child reports its own peak RSS (`resource.getrusage(RUSAGE_SELF).ru_maxrss`).
A second kind of child reads the object back with `readinto_at` into one
reused buffer (32 MiB by default: moto answers every ranged GET by copying
the whole object internally, so small ranges over 1 GiB are slow on moto,
not on S3). An "idle" child with the same imports and a client that has
made one request gives the baseline. moto_server keeps objects in its own
memory; its RSS is not ours and is not measured.

    .venv/bin/python bench/bench_s3_rss.py [--sizes 64M,1G] [--part-sizes 8M,32M] [--upload-concurrency 4]

The writer uses the store's defaults (`upload_concurrency=4`, so up to five
part buffers) unless `--upload-concurrency` says otherwise; the table says
which.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
CHUNK = MiB


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": MiB, "G": 1024 * MiB}
    text = text.strip().upper()
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MiB


# -- child side -----------------------------------------------------------------------------


def child(
    mode: str, url: str, bucket: str, key: str, size: int, part_size: int, read_buffer: int, concurrency: int
) -> dict[str, float]:
    import boto3

    from envelope.storage import S3Store

    client = boto3.client("s3", region_name="us-east-1", endpoint_url=url)
    client.head_bucket(Bucket=bucket)  # the client has loaded its models and opened a connection
    options = {"upload_concurrency": concurrency} if concurrency else {}
    store = S3Store(client, bucket, part_size=part_size, **options)
    result = {"rss_before_mib": current_rss_mib()}
    if mode == "idle":
        result["peak_rss_mib"] = peak_rss_mib()
        return result
    buf = bytearray(os.urandom(CHUNK))
    view = memoryview(buf)
    start = time.perf_counter()
    if mode == "write":
        with store.open_writer(key) as writer:
            for _ in range(size // CHUNK):
                writer.write(view)
            writer.write(view[: size % CHUNK])
    else:
        target = memoryview(bytearray(read_buffer))
        with store.open_reader(key) as reader:
            offset = 0
            while offset < reader.size:
                offset += reader.readinto_at(offset, target)
    elapsed = time.perf_counter() - start
    result["peak_rss_mib"] = peak_rss_mib()
    result["mb_per_s"] = size / elapsed / 1e6
    return result


# -- parent side ----------------------------------------------------------------------------


def run_child(
    mode: str, url: str, bucket: str, key: str, size: int, part_size: int, read_buffer: int = MiB, concurrency: int = 0
) -> dict[str, float]:
    args = [mode, url, bucket, key, str(size), str(part_size), str(read_buffer), str(concurrency)]
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64M,1G")
    parser.add_argument("--part-sizes", default="8M,32M")
    parser.add_argument("--read-buffer", default="32M", help="the reader's buffer (one readinto_at per fill)")
    parser.add_argument(
        "--upload-concurrency", type=int, default=0, help="the writer's upload_concurrency (default: the store's)"
    )
    parser.add_argument("--child", nargs=8, metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, url, bucket, key, size, part, read_buffer, concurrency = args.child
        print(json.dumps(child(mode, url, bucket, key, int(size), int(part), int(read_buffer), int(concurrency))))
        return

    sys.path.insert(0, str(REPO))
    import boto3

    from tests.support.servers import moto_server

    for name, value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}.items():
        os.environ.setdefault(name, value)
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull

    sizes = [parse_size(s) for s in args.sizes.split(",")]
    parts = [parse_size(s) for s in args.part_sizes.split(",")]
    with moto_server() as url:
        admin = boto3.client("s3", region_name="us-east-1", endpoint_url=url)
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        admin.create_bucket(Bucket=bucket)
        idle = run_child("idle", url, bucket, "-", 0, parts[0])
        print(f"idle interpreter (same imports, client used once): peak RSS {idle['peak_rss_mib']:.1f} MiB")
        print(f"reads fill one reused {args.read_buffer} buffer, which the read figures include")
        print(f"writes: upload_concurrency={args.upload_concurrency or 'default (4)'}")
        print()
        print(
            "| object | part size | write peak RSS | over idle | write MB/s | read peak RSS | over idle | read MB/s |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for part in parts:
            for size in sizes:
                key = f"obj-{uuid.uuid4().hex}"
                w = run_child("write", url, bucket, key, size, part, concurrency=args.upload_concurrency)
                assert admin.head_object(Bucket=bucket, Key=key)["ContentLength"] == size
                r = run_child("read", url, bucket, key, size, part, parse_size(args.read_buffer))
                admin.delete_object(Bucket=bucket, Key=key)  # moto holds objects in its memory
                print(
                    f"| {size // MiB} MiB | {part // MiB} MiB "
                    f"| {w['peak_rss_mib']:.1f} MiB | +{w['peak_rss_mib'] - idle['peak_rss_mib']:.1f} MiB "
                    f"| {w['mb_per_s']:.0f} "
                    f"| {r['peak_rss_mib']:.1f} MiB | +{r['peak_rss_mib'] - idle['peak_rss_mib']:.1f} MiB "
                    f"| {r['mb_per_s']:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
