"""Figure 9 (opt-in: `python -m bench --only fsspec`): Parquet through envelope:// with pyarrow.

One Parquet file of ten equal, incompressible float64 columns (64 MiB in
full and quick runs, one row group, no compression) is written into an S3
container on moto_server and into a local container through the fsspec
filesystem, and as plaintext next to them (a plain S3 object on the same
moto_server, a plain local file).

Measured, all in the same run and interleaved:

- bytes fetched from S3 (the Range of every GetObject our filesystem's S3
  client sends) to read 1 of the 10 columns, against that column's chunk
  plus the footer (from the file's own metadata): goal <= 1.5x;
- time to read 1 column / time to read the whole table, through envelope://;
- whole-table read time, plaintext baseline / envelope:// (a throughput
  ratio: goal >= 0.8x), on S3 (with the default 8 MiB `prefetch` and with
  32 MiB) and on local disk. The S3 baseline is s3fs
  when it is installed, else pyarrow's own S3 filesystem (s3fs pins an
  older botocore than this project's, so it is not in the bench extra);
  the JSON records which.

Mind the emulator (see figure 8): a ranged GET on moto_server costs time in
proportion to the whole object's size, so on moto the S3 timings mostly
count GET requests.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from typing import Any

from bench.env import REGION
from bench.report import verdict
from bench.stats import interleave, paired_ratios, summarize
from bench.streams import MiB

COLUMNS = 10
BYTES_TARGET = 1.5
READ_TARGET = 0.8


def _sizes(cfg: Any) -> tuple[int, int]:
    """(file bytes, reps): at least 64 MiB except for the harness check."""
    if cfg.mode == "tiny":
        return 4 * MiB, 1
    return 64 * MiB, min(cfg.reps, 5)


def _table(nbytes: int) -> Any:
    import numpy as np
    import pyarrow as pa

    rows = nbytes // (COLUMNS * 8)
    rng = np.random.default_rng(9)
    return pa.table({f"c{i}": rng.random(rows) for i in range(COLUMNS)})


def _plain_s3_filesystem(url: str) -> tuple[str, Any]:
    try:
        import s3fs

        return "s3fs", s3fs.S3FileSystem(client_kwargs={"endpoint_url": url, "region_name": REGION})
    except ImportError:
        from pyarrow.fs import S3FileSystem

        return "pyarrow.fs.S3FileSystem", S3FileSystem(
            endpoint_override=url, region=REGION, scheme="http", access_key="testing", secret_key="testing"
        )


def run(cfg: Any, ctx: Any) -> dict[str, Any]:
    import boto3
    import fsspec
    import pyarrow.parquet as pq

    from controlplane import ControlPlane
    from dataplane.bulk import forget_process_planes
    from envelope.kms import AwsKms, LocalKms

    size, reps = _sizes(cfg)
    workdir = ctx.tempdir("fsspec")
    plain_path = os.path.join(workdir, "plain.parquet")
    table = _table(size)
    pq.write_table(table, plain_path, compression="none", row_group_size=table.num_rows)
    meta = pq.ParquetFile(plain_path).metadata
    file_bytes = os.path.getsize(plain_path)
    footer = meta.serialized_size + 8
    column = 3
    chunk = sum(meta.row_group(g).column(column).total_compressed_size for g in range(meta.num_row_groups))
    del table

    # S3: a container and a plain object on the same moto_server.
    url = ctx.moto_server()
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=url)
    kms_client = boto3.client("kms", region_name=REGION, endpoint_url=url)
    arn = kms_client.create_key(Description="bench fsspec")["KeyMetadata"]["Arn"]
    bucket = f"envelope-bench-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    location = f"s3://{bucket}/container"
    ControlPlane(AwsKms(kms_client), s3_client=s3).create_container(location, key_id=arn)
    s3.upload_file(plain_path, bucket, "plain/table.parquet")
    s3_options = {"container": location, "kms": "aws", "key_ids": [arn], "endpoint_url": url, "region": REGION}
    s3_fs = fsspec.filesystem("envelope", **s3_options)
    s3_fs_32 = fsspec.filesystem("envelope", **s3_options, prefetch=32 * MiB)  # larger GETs, more memory

    # Local: a container next to the plain file.
    keystore = os.path.join(workdir, "keystore")
    local_kms = LocalKms(keystore)
    local_kms.create_key(alias="alias/bench")
    ControlPlane(local_kms).create_container(os.path.join(workdir, "container"), key_id="alias/bench")
    local_fs = fsspec.filesystem("envelope", container=os.path.join(workdir, "container"), kms=f"local:{keystore}")

    for fs in (s3_fs, local_fs):
        with open(plain_path, "rb") as src, fs.open("table.parquet", "wb") as dst:
            shutil.copyfileobj(src, dst, 8 * MiB)

    fetched: list[int] = []

    def count_range(params: dict[str, Any], **_: Any) -> None:
        start, end = params.get("Range", "bytes=0-0").removeprefix("bytes=").split("-")
        fetched.append(int(end) - int(start) + 1)

    client = s3_fs.spec.s3_client()
    client.meta.events.register("before-parameter-build.s3.GetObject", count_range)
    fetched.clear()
    one = pq.read_table("table.parquet", filesystem=s3_fs, columns=[f"c{column}"])
    one_column_fetched, one_column_gets = sum(fetched), len(fetched)
    if one.num_rows != meta.num_rows:
        raise RuntimeError("short column read")
    fetched.clear()
    pq.read_table("table.parquet", filesystem=s3_fs)
    whole_fetched = sum(fetched)
    client.meta.events.unregister("before-parameter-build.s3.GetObject", count_range)

    baseline_name, plain_s3 = _plain_s3_filesystem(url)
    plain_key = f"{bucket}/plain/table.parquet"

    def timed(read: Any) -> Any:
        def go() -> float:
            start = time.perf_counter()
            result = read()
            seconds = time.perf_counter() - start
            if result.num_rows != meta.num_rows:
                raise RuntimeError("short read")
            return seconds

        return go

    times = interleave(
        {
            "s3_envelope_one_column": timed(lambda: pq.read_table("table.parquet", filesystem=s3_fs, columns=["c3"])),
            "s3_envelope_table": timed(lambda: pq.read_table("table.parquet", filesystem=s3_fs)),
            "s3_envelope_table_prefetch32": timed(lambda: pq.read_table("table.parquet", filesystem=s3_fs_32)),
            "s3_plain_table": timed(lambda: pq.read_table(plain_key, filesystem=plain_s3)),
            "local_envelope_one_column": timed(
                lambda: pq.read_table("table.parquet", filesystem=local_fs, columns=["c3"])
            ),
            "local_envelope_table": timed(lambda: pq.read_table("table.parquet", filesystem=local_fs)),
            "local_plain_table": timed(lambda: pq.read_table(plain_path)),
        },
        reps=reps,
        warmup=1 if reps > 1 else 0,
    )
    for fs in (s3_fs, local_fs):
        fs.rm_file("table.parquet")
    s3.delete_object(Bucket=bucket, Key="plain/table.parquet")
    forget_process_planes()

    wanted = chunk + footer
    bytes_ratio = round(one_column_fetched / wanted, 3)
    result: dict[str, Any] = {
        "emulator": "moto_server on 127.0.0.1 (a ranged GET costs in proportion to the object size)",
        "file_bytes": file_bytes,
        "columns": COLUMNS,
        "column_chunk_bytes": chunk,
        "footer_bytes": footer,
        "s3_one_column": {
            "fetched_bytes": one_column_fetched,
            "get_requests": one_column_gets,
            "over_wanted": bytes_ratio,
        },
        "s3_whole_table_fetched_bytes": whole_fetched,
        "s3_baseline": baseline_name,
        "reps": reps,
        "read_seconds": {name: summarize(v, digits=4) for name, v in times.items()},
        "summary": [],
    }
    summary = result["summary"]
    summary.append(
        verdict(
            "9",
            "S3 bytes fetched for 1 of 10 columns / (column chunk + footer)",
            bytes_ratio,
            target=("<=", BYTES_TARGET),
            detail=f"{one_column_fetched:,} of {file_bytes:,} bytes in {one_column_gets} GETs",
        )
    )
    for where in ("s3", "local"):
        one_over_all = summarize(paired_ratios(times[f"{where}_envelope_one_column"], times[f"{where}_envelope_table"]))
        summary.append(
            verdict("9", f"{where}: time for 1 column / whole table, envelope://", one_over_all, target=None)
        )
        speed = summarize(paired_ratios(times[f"{where}_plain_table"], times[f"{where}_envelope_table"]))
        baseline = baseline_name if where == "s3" else "plain local file"
        summary.append(
            verdict(
                "9",
                f"{where}: whole-table read, envelope:// speed / {baseline}",
                speed,
                target=(">=", READ_TARGET),
            )
        )
    speed32 = summarize(paired_ratios(times["s3_plain_table"], times["s3_envelope_table_prefetch32"]))
    summary.append(
        verdict(
            "9",
            f"s3: whole-table read, envelope:// with prefetch=32 MiB speed / {baseline_name}",
            speed32,
            target=(">=", READ_TARGET),
        )
    )
    return result
