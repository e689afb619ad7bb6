"""`envelope cp`: authenticated, re-encrypting copies that commit only once the source's last frame authenticated.

In-process (`envelope_cli.main.main`) against a local keystore; object files are tampered with on disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.cli_run import Run

OK, USAGE, AUTH, NOT_FOUND, EXISTS = 0, 2, 3, 4, 5
MiB = 1024 * 1024


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    monkeypatch.chdir(tmp_path)
    r = Run(["--kms", f"local:{tmp_path / 'keystore'}"], monkeypatch, capsys)
    r("key", "create", "--alias", "alias/k1")
    r("key", "create", "--alias", "alias/k2")
    r("create", "c1", "--key", "alias/k1", "--context", "tenant=a")
    r("create", "c2", "--key", "alias/k2", "--context", "tenant=b")
    return r


def arn(run: Run, alias: str) -> str:
    return str(json.loads(run("--json", "key", "describe", alias)[0])["arn"])


def stored(tmp_path: Path, container: str, name: str) -> Path:
    return tmp_path / container / "objects" / name


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def put_big(run: Run, tmp_path: Path, name: str) -> bytes:
    data = os.urandom(3 * MiB + MiB // 2)  # three full 1 MiB frames and a final one
    (tmp_path / "big.bin").write_bytes(data)
    run("put", "c1", name, "big.bin")
    return data


def test_cp_re_encrypts_into_another_container_under_another_key(run: Run, tmp_path: Path) -> None:
    data = put_big(run, tmp_path, "a/big")
    out, _ = run("--json", "cp", "c1", "a/big", "c2", "b/copy")
    doc = json.loads(out)
    assert doc["copied"] == [{"name": "a/big", "to": "b/copy", "size": len(data)}] and doc["failed"] == []
    info = json.loads(run("inspect", "c2", "b/copy")[0])
    assert info["bound_to_container"] and info["encryption_context"]["tenant"] == "b"
    assert info["encrypted_data_keys"][0]["provider_info"] == arn(run, "alias/k2")
    run("get", "c2", "b/copy", "-o", "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == data
    # The source is untouched, and a copy without NEW_NAME keeps the name.
    run("cp", "c1", "a/big", "c2")
    run("get", "c2", "a/big", "-o", "back2.bin")
    assert (tmp_path / "back2.bin").read_bytes() == data


def test_a_bit_flipped_mid_source_leaves_nothing_at_the_destination(run: Run, tmp_path: Path) -> None:
    put_big(run, tmp_path, "big")
    src = stored(tmp_path, "c1", "big")
    flip_byte(src, src.stat().st_size - 1800 * 1024)  # inside the second frame: the first was already copied
    _, err = run("cp", "c1", "big", "c2", code=AUTH)
    assert "cp c1:" in err
    assert not stored(tmp_path, "c2", "big").exists()
    assert sorted(p.name for p in (tmp_path / "c2").rglob("*") if p.is_file()) == ["container.json"]
    run("ls", "c2")  # lists nothing
    assert run("ls", "c2")[0] == ""


def test_a_truncated_source_leaves_nothing_at_the_destination(run: Run, tmp_path: Path) -> None:
    put_big(run, tmp_path, "big")
    src = stored(tmp_path, "c1", "big")
    src.write_bytes(src.read_bytes()[: 2 * MiB])  # the final frame is gone
    run("cp", "c1", "big", "c2", "copy", code=AUTH)
    assert run("ls", "c2")[0] == ""


def test_prefix_copy_reports_each_failure_and_exits_by_the_worst(run: Run, tmp_path: Path) -> None:
    put_big(run, tmp_path, "logs/bad")
    (tmp_path / "s.txt").write_bytes(b"small")
    run("put", "c1", "logs/good", "s.txt")
    run("put", "c1", "other", "s.txt")
    src = stored(tmp_path, "c1", "logs/bad")
    flip_byte(src, src.stat().st_size - 1800 * 1024)
    out, _ = run("--json", "cp", "-r", "c1", "logs/", "c2", "copied/", code=AUTH)
    doc = json.loads(out)
    assert doc["copied"] == [{"name": "logs/good", "to": "copied/good", "size": 5}]
    assert [f["name"] for f in doc["failed"]] == ["logs/bad"] and doc["failed"][0]["exit_code"] == AUTH
    assert run("ls", "c2")[0].split() == ["copied/good"]
    # Without NEW_PREFIX the names are kept; into the same container a new prefix is needed.
    run("cp", "-r", "c1", "logs/g", "c2")
    assert run("ls", "c2")[0].split() == ["copied/good", "logs/good"]
    run("cp", "-r", "c1", "logs/", "c1", code=USAGE)
    run("cp", "-r", "c1", "logs/g", "c1", "again/")
    assert "again/ood" in run("ls", "c1")[0].split()


def test_the_destination_is_create_only_unless_overwrite(run: Run, tmp_path: Path) -> None:
    (tmp_path / "one").write_bytes(b"one")
    (tmp_path / "two").write_bytes(b"two")
    run("put", "c1", "x", "one")
    run("put", "c2", "x", "two")
    run("cp", "c1", "x", "c2", code=EXISTS)
    run("get", "c2", "x", "-o", "now")
    assert (tmp_path / "now").read_bytes() == b"two"
    run("cp", "c1", "x", "c2", "--overwrite")
    run("get", "c2", "x", "-o", "after")
    assert (tmp_path / "after").read_bytes() == b"one"


def test_the_trust_options_apply_to_both_containers(run: Run, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"data")
    run("put", "c1", "x", "f")
    k1, k2 = arn(run, "alias/k1"), arn(run, "alias/k2")
    _, err = run("cp", "c1", "x", "c2", "--key", k1, code=AUTH)
    assert "not one of this DataPlane's key_ids" in err
    assert run("ls", "c2")[0] == ""
    run("cp", "c1", "x", "c2", "--key", k1, "--key", k2)
    run("cp", "c1", "x", "c2", "y", "--expect-context", "tenant=a", code=AUTH)  # c2 is tenant=b
    assert run("ls", "c2")[0].split() == ["x"]


def test_bad_operands_are_usage_errors_before_anything_is_opened(run: Run, tmp_path: Path) -> None:
    # "missing" does not exist: exit 2 (not 4) shows nothing was opened.
    run("cp", "missing", "../x", "c2", code=USAGE)
    run("cp", "missing", "x", "c2", ".hidden", code=USAGE)
    run("cp", "-r", "missing", "a//", "c2", code=USAGE)
    run("cp", "missing", "x", code=USAGE)
    run("cp", "missing", "x", "c2", "y", "z", code=USAGE)
    run("cp", "c1", "x", "c1", code=USAGE)  # the same object
    run("cp", "--from-file", "f", "--to-file", "g", "c1", "x", code=USAGE)
    run("cp", "missing", "x", "c2", code=NOT_FOUND)


def test_cp_between_a_local_file_and_a_container(run: Run, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_bytes(b"a,b\n1,2\n")
    run("cp", "--from-file", "in.csv", "c1", "t/in.csv")
    run("cp", "--from-file", "in.csv", "c1", "t/in.csv", code=EXISTS)
    run("cp", "--from-file", "-", "c1", "t/stdin", stdin=b"piped")
    run("cp", "c1", "t/in.csv", "--to-file", "out.csv")
    assert (tmp_path / "out.csv").read_bytes() == b"a,b\n1,2\n"
    run("cp", "c1", "t/in.csv", "--to-file", "out.csv", code=EXISTS)
    run("cp", "c1", "t/stdin", "--to-file", "out.csv", "--overwrite")
    assert (tmp_path / "out.csv").read_bytes() == b"piped"
    run("cp", "c1", "t/in.csv", "--to-file", "-", code=USAGE)


def test_cp_to_a_file_from_a_tampered_object_leaves_no_file(run: Run, tmp_path: Path) -> None:
    put_big(run, tmp_path, "big")
    src = stored(tmp_path, "c1", "big")
    flip_byte(src, src.stat().st_size - 1800 * 1024)
    run("cp", "c1", "big", "--to-file", "out.bin", code=AUTH)
    assert not (tmp_path / "out.bin").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
