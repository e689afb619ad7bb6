"""`envelope rotate / generations / rekey / retire`, run as real processes (local keystore)."""

from __future__ import annotations

from pathlib import Path

from tests.test_cli import USAGE, Cli, flip_byte

PARTIAL, IN_USE = 9, 10


def test_the_whole_lifecycle_from_the_command_line(tmp_path: Path) -> None:
    cli = Cli(tmp_path, "--kms", f"local:{tmp_path / 'ks'}")
    first = cli("key", "create", "--alias", "alias/first").stdout.decode().strip()
    second = cli("key", "create", "--alias", "alias/second").stdout.decode().strip()
    c = str(tmp_path / "c")
    cli("create", c, "--key", "alias/first", "--context", "tenant=acme")
    (tmp_path / "f.txt").write_bytes(b"hello generations")
    for name in ("a", "b", "c"):
        cli("put", c, name, str(tmp_path / "f.txt"))

    rotated = cli.json("rotate", c, "--key", "alias/second")
    assert (rotated["generation"], rotated["key_id"]) == (2, second)
    table = cli.json("generations", c)
    assert [(g["generation"], g["key_id"], g["objects"]) for g in table["generations"]] == [
        (1, first, 3),
        (2, second, 0),
    ]
    assert "generation" in cli("generations", c).stdout.decode()

    flip_byte(tmp_path / "c" / "objects" / "b", 200)  # one bad object never stops the sweep
    report = cli.json("rekey", c, code=PARTIAL)
    assert sorted(report["rekeyed"]) == ["a", "c"] and report["generation"] == 2
    assert [f["name"] for f in report["failed"]] == ["b"] and "AuthenticationError" in report["failed"][0]["reason"]
    cli("rm", c, "b")
    again = cli.json("rekey", c, "--workers", "2")
    assert again["rekeyed"] == [] and sorted(again["current"]) == ["a", "c"]
    assert [g["objects"] for g in cli.json("generations", c)["generations"]] == [0, 2]
    assert cli("get", c, "a").stdout == b"hello generations"

    cli("retire", c, "1", code=USAGE)  # the header itself
    cli("retire", c, "2", code=IN_USE)  # the newest
    cli("rotate", c, code=USAGE)  # after a migration a rotation names its key (never taken from a record)
    cli.json("rotate", c, "--key", "alias/second")
    cli("retire", c, "2", code=IN_USE)  # writers may still be on it for max_age
    cli("retire", c, "7", code=USAGE)
    cli("rekey", c, "--workers", "0", code=USAGE)
    cli("rekey", c, "--prefix", "/bad", code=USAGE)


def test_rekey_on_a_dask_cluster_from_the_command_line(tmp_path: Path) -> None:
    import pytest

    distributed = pytest.importorskip("distributed")
    cli = Cli(tmp_path, "--kms", f"local:{tmp_path / 'ks'}")
    cli("key", "create", "--alias", "alias/k")
    c = str(tmp_path / "c")
    cli("create", c, "--key", "alias/k")
    (tmp_path / "f").write_bytes(b"x" * 5000)
    for name in ("a", "b", "c"):
        cli("put", c, name, str(tmp_path / "f"))
    cli("rotate", c)
    cluster = distributed.LocalCluster(
        n_workers=1, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    )
    try:
        report = cli.json("rekey", c, "--dask", cluster.scheduler_address)
    finally:
        cluster.close()
    assert sorted(report["rekeyed"]) == ["a", "b", "c"] and report["generation"] == 2
