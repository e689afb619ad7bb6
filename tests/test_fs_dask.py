"""Dask on a LocalCluster of two worker processes: read_parquet / to_parquet through envelope://, and verify_all.

The filesystem and the `ContainerSpec` travel to the workers pickled
(configuration only); each worker process builds its own plane, so each
makes exactly one KMS Decrypt per container however many tasks it runs.
One cluster serves the module and is closed by it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from dataplane.bulk import ContainerSpec, forget_process_planes, verify_all
from dataplane.fs import EnvelopeFileSystem
from envelope.errors import AuthenticationError
from tests.support.envelope_fs import flip, local_container, read_stored, s3_container

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

FRAME = 4096


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
    )
    try:
        with distributed.Client(cluster) as c:
            yield c
    finally:
        cluster.close()


@pytest.fixture(autouse=True)
def _fresh_planes(client: Any) -> Iterator[None]:
    def reset() -> None:
        EnvelopeFileSystem.clear_instance_cache()
        forget_process_planes()

    reset()
    client.run(reset)
    yield
    reset()
    client.run(reset)


@pytest.fixture(params=["local", "s3"])
def options(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "local":
        opts = local_container(tmp_path)
    else:
        opts = s3_container(request.getfixturevalue("moto_server_url"))
    return {**opts, "frame_length": FRAME}


def _spec(options: dict[str, Any]) -> ContainerSpec:
    rest = {k: v for k, v in options.items() if k not in ("container", "kms")}
    return ContainerSpec(location=options["container"], kms=options["kms"], **rest)


def decrypts_per_worker(client: Any, spec: ContainerSpec) -> list[int]:
    def count() -> int:
        return spec.plane().cache_stats().kms_calls

    return sorted(client.run(count).values())


def frame(n: int = 4000) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": pd.Series(range(n), dtype="int64"),
            "label": [f"row-{i}" for i in range(n)],
            "x": [i / 3 for i in range(n)],
        }
    )


def test_dask_writes_and_reads_parquet_on_worker_processes(client: Any, options: dict[str, Any]) -> None:
    df = frame()
    ddf = dd.from_pandas(df, npartitions=4)
    ddf.to_parquet("envelope://lake/table", storage_options=options, write_index=False)
    back = dd.read_parquet("envelope://lake/table", storage_options=options)
    assert back.npartitions >= 2
    got = back.compute().sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, df, check_dtype=False)
    columns = dd.read_parquet("envelope://lake/table", storage_options=options, columns=["label"]).compute()
    assert sorted(columns["label"]) == sorted(df["label"])
    # Every worker that touched the container decrypted its data key once, whatever the task count.
    assert set(decrypts_per_worker(client, _spec(options))) <= {0, 1}
    assert sum(decrypts_per_worker(client, _spec(options))) >= 1


def test_verify_all_runs_on_the_cluster_one_decrypt_per_worker(client: Any, options: dict[str, Any]) -> None:
    spec = _spec(options)
    container = spec.open()
    for i in range(24):
        container.put(f"v/{i:02d}.bin", bytes([i]) * (FRAME * 2 + i))
    stored = read_stored(options, "v/07.bin")
    flip(options, "v/07.bin", len(stored) - 40)
    report = verify_all(spec, "v/", executor=client.get_executor(), batch_size=4)
    assert len(report.verified) == 23
    assert [(f.name, f.error) for f in report.failed] == [("v/07.bin", AuthenticationError.__name__)]
    assert all(r.size == FRAME * 2 + int(r.name[2:4]) for r in report.verified)
    # Six batches over two worker processes: one Decrypt per worker that ran a batch, never more.
    assert decrypts_per_worker(client, spec) in ([1, 1], [0, 1])


def test_a_tampered_partition_fails_the_dask_computation_with_authentication_error(client: Any, tmp_path: Path) -> None:
    options = {**local_container(tmp_path), "frame_length": FRAME}
    dd.from_pandas(frame(), npartitions=2).to_parquet("envelope://lake/t", storage_options=options, write_index=False)
    victim = sorted(_spec(options).open().list("lake/t/"))[-1]
    flip(options, victim, len(read_stored(options, victim)) // 2)
    with pytest.raises(AuthenticationError):
        dd.read_parquet("envelope://lake/t", storage_options=options).compute()


def test_rekey_all_runs_on_the_cluster_one_decrypt_per_generation_per_worker(
    client: Any, options: dict[str, Any]
) -> None:
    from controlplane import ControlPlane

    spec = _spec(options)
    container = spec.open()
    for i in range(16):
        container.put(f"k/{i:02d}.bin", bytes([i]) * (FRAME + i))
    if options["kms"] == "aws":
        import boto3

        from envelope.kms import AwsKms

        kms_client = boto3.client("kms", region_name=options["region"], endpoint_url=options["endpoint_url"])
        s3_client = boto3.client("s3", region_name=options["region"], endpoint_url=options["endpoint_url"])
        ControlPlane(AwsKms(kms_client), s3_client).rotate_container(options["container"])
    else:
        from envelope.kms import LocalKms

        ControlPlane(LocalKms(options["kms"].removeprefix("local:"))).rotate_container(options["container"])
    report = container.rekey_all("k/", executor=client.get_executor())
    assert report.ok and sorted(report.rekeyed) == [f"k/{i:02d}.bin" for i in range(16)]
    assert container.usage("k/") == {2: 16}
    assert all(container.get(f"k/{i:02d}.bin") == bytes([i]) * (FRAME + i) for i in range(16))
    # Work items carried (spec, names): each worker decrypted generation 1 and 2 once at most.
    assert all(n <= 2 for n in decrypts_per_worker(client, spec))
    assert container.rekey_all("k/", executor=client.get_executor()).rekeyed == ()
