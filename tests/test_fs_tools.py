"""pandas, pyarrow and DuckDB read and write containers through envelope:// (local and moto_server S3).

Results equal the plaintext originals; a tampered object reaches each tool
as `AuthenticationError` (pandas and pyarrow pass it through unchanged;
DuckDB wraps every Python filesystem error in `duckdb.Error`, whose message
names it) and never as data.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from dataplane.bulk import forget_process_planes
from dataplane.fs import EnvelopeFileSystem
from envelope.errors import AuthenticationError
from tests.support.envelope_fs import flip, local_container, read_stored, s3_container

FRAME = 4096  # small frames: a Parquet file spans many, so tampering lands inside a column chunk


@pytest.fixture(autouse=True)
def _fresh_instances() -> Iterator[None]:
    EnvelopeFileSystem.clear_instance_cache()
    forget_process_planes()
    yield
    EnvelopeFileSystem.clear_instance_cache()
    forget_process_planes()


@pytest.fixture(params=["local", "s3"])
def options(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "local":
        opts = local_container(tmp_path)
    else:
        opts = s3_container(request.getfixturevalue("moto_server_url"))
    return {**opts, "frame_length": FRAME}


def frame() -> pd.DataFrame:
    n = 3000
    return pd.DataFrame(
        {
            "id": pd.Series(range(n), dtype="int64"),
            "name": [f"name-{i:05d}" for i in range(n)],
            "score": [i * 0.25 for i in range(n)],
            "group": [f"g{i % 7}" for i in range(n)],
        }
    )


def test_pandas_round_trips_parquet_and_csv(options: dict[str, Any]) -> None:
    df = frame()
    df.to_parquet("envelope://tables/scores.parquet", storage_options=options)
    df.to_csv("envelope://tables/scores.csv", storage_options=options, index=False)
    back = pd.read_parquet("envelope://tables/scores.parquet", storage_options=options)
    pd.testing.assert_frame_equal(back, df)
    pd.testing.assert_frame_equal(
        pd.read_parquet("envelope://tables/scores.parquet", storage_options=options, columns=["name"]), df[["name"]]
    )
    pd.testing.assert_frame_equal(pd.read_csv("envelope://tables/scores.csv", storage_options=options), df)
    fs = fsspec.filesystem("envelope", **options)
    assert fs.info("tables/scores.csv")["size"] == len(df.to_csv(index=False).encode())


def test_pyarrow_reads_columns_and_datasets_through_the_filesystem(options: dict[str, Any]) -> None:
    fs = fsspec.filesystem("envelope", **options)
    df = frame()
    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, "ds/part-0.parquet", filesystem=fs, row_group_size=1000)
    pq.write_table(table.slice(0, 10), "ds/part-1.parquet", filesystem=fs)
    got = pq.read_table("envelope://ds/part-0.parquet", filesystem=fs, columns=["id", "group"])
    assert got.equals(table.select(["id", "group"]))
    dataset = pads.dataset("ds", filesystem=fs, format="parquet")
    assert sorted(f.removeprefix("envelope://") for f in dataset.files) == ["ds/part-0.parquet", "ds/part-1.parquet"]
    assert dataset.count_rows() == len(df) + 10
    filtered = dataset.to_table(columns=["id"], filter=pads.field("id") >= 2995).column("id").to_pylist()
    assert sorted(filtered) == [2995, 2996, 2997, 2998, 2999]


def test_duckdb_queries_parquet_through_a_registered_filesystem(options: dict[str, Any]) -> None:
    df = frame()
    df.to_parquet("envelope://db/scores.parquet", storage_options=options)
    con = duckdb.connect()
    try:
        con.register_filesystem(fsspec.filesystem("envelope", **options))
        rows = con.sql(
            "SELECT \"group\", count(*), sum(id) FROM read_parquet('envelope://db/scores.parquet') "
            'GROUP BY "group" ORDER BY "group"'
        ).fetchall()
    finally:
        con.close()
    expected = df.groupby("group").agg(n=("id", "size"), s=("id", "sum")).reset_index()
    assert rows == [(g, int(n), int(s)) for g, n, s in expected.itertuples(index=False)]


def test_a_tampered_object_reaches_every_tool_as_an_authentication_error(options: dict[str, Any]) -> None:
    fs = fsspec.filesystem("envelope", **options)
    frame().to_parquet("envelope://t/scores.parquet", storage_options=options)
    stored = read_stored(options, "t/scores.parquet")
    flip(options, "t/scores.parquet", len(stored) // 2)  # inside a column chunk
    with pytest.raises(AuthenticationError):
        pd.read_parquet("envelope://t/scores.parquet", storage_options=options)
    with pytest.raises(AuthenticationError):
        pq.read_table("t/scores.parquet", filesystem=fs)
    with pytest.raises(AuthenticationError):
        pads.dataset("t", filesystem=fs, format="parquet").to_table()
    con = duckdb.connect()
    try:
        con.register_filesystem(fs)
        with pytest.raises(duckdb.Error, match="AuthenticationError"):
            con.sql("SELECT * FROM read_parquet('envelope://t/scores.parquet')").fetchall()
    finally:
        con.close()
