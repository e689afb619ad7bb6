"""Many-object transfers: `put -r`, `get -r`, `get -o DIR/`, glob patterns for `get`/`rm`, `rm -r` and its --yes rule.

In-process (`envelope_cli.main.main`) against a local keystore.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.cli_run import Run

OK, USAGE, AUTH, NOT_FOUND, EXISTS = 0, 2, 3, 4, 5


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    monkeypatch.chdir(tmp_path)
    r = Run(["--kms", f"local:{tmp_path / 'keystore'}"], monkeypatch, capsys)
    r("key", "create", "--alias", "alias/k")
    r("create", "c", "--key", "alias/k")
    return r


def tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def names(run: Run, prefix: str = "") -> list[str]:
    return run("ls", "c", *([prefix] if prefix else []))[0].split()


def test_put_r_stores_every_regular_file_and_skips_links(run: Run, tmp_path: Path) -> None:
    tree(tmp_path / "d", {"a.txt": b"a", "sub/b.txt": b"b", "sub/deep/c.txt": b"c"})
    (tmp_path / "secret").write_bytes(b"not in the tree")
    os.symlink(tmp_path / "secret", tmp_path / "d" / "link")
    os.symlink(tmp_path, tmp_path / "d" / "dirlink")
    out, _ = run("--json", "put", "-r", "c", "d", "in/")
    doc = json.loads(out)
    assert [s["name"] for s in doc["stored"]] == ["in/a.txt", "in/sub/b.txt", "in/sub/deep/c.txt"]
    assert sorted(Path(p).name for p in doc["skipped"]) == ["dirlink", "link"]
    assert names(run) == ["in/a.txt", "in/sub/b.txt", "in/sub/deep/c.txt"]
    run("put", "-r", "c", "d", "in/", code=EXISTS)  # create-only, per object
    run("put", "-r", "c", "d", "in/", "--overwrite")
    run("put", "-r", "c", "d")  # no PREFIX: the paths themselves
    assert "sub/deep/c.txt" in names(run)


def test_put_r_judges_every_name_before_storing_anything(run: Run, tmp_path: Path) -> None:
    tree(tmp_path / "d", {"a.txt": b"a", "z/.hidden": b"h"})
    _, err = run("put", "-r", "c", "d", code=USAGE)
    assert ".hidden" in err
    assert names(run) == []
    run("put", "-r", "c", "d", "bad//", code=USAGE)
    run("put", "-r", "c", "nowhere", code=NOT_FOUND)
    (tmp_path / "f").write_bytes(b"x")
    run("put", "-r", "c", "f", code=7)  # not a directory
    assert names(run) == []


def test_get_r_writes_a_tree_and_reports_each_failure(run: Run, tmp_path: Path) -> None:
    tree(tmp_path / "d", {"a.txt": b"a", "sub/b.txt": b"b", "zz.txt": b"z"})
    run("put", "-r", "c", "d", "logs/")
    (tmp_path / "out").mkdir()
    run("get", "-r", "c", "logs/", "-o", "out")
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"a"
    assert (tmp_path / "out" / "sub" / "b.txt").read_bytes() == b"b"
    # Existing files are refused one by one (exit 5); the others are written.
    (tmp_path / "out" / "sub" / "b.txt").unlink()
    out, _ = run("--json", "get", "-r", "c", "logs/", "-o", "out", code=EXISTS)
    doc = json.loads(out)
    assert [w["name"] for w in doc["written"]] == ["logs/sub/b.txt"]
    assert sorted(f["name"] for f in doc["failed"]) == ["logs/a.txt", "logs/zz.txt"]
    # A tampered object is not written; the others are; exit 3 outranks the rest.
    stored = tmp_path / "c" / "objects" / "logs" / "a.txt"
    data = bytearray(stored.read_bytes())
    data[-40] ^= 1
    stored.write_bytes(bytes(data))
    (tmp_path / "out2").mkdir()
    run("get", "-r", "c", "logs/", "-o", "out2", code=AUTH)
    assert not (tmp_path / "out2" / "a.txt").exists()
    assert (tmp_path / "out2" / "zz.txt").read_bytes() == b"z"
    run("get", "-r", "c", "logs/", "-o", "missing-dir", code=NOT_FOUND)
    run("get", "-r", "c", "logs/", code=USAGE)  # several objects need -o DIR


def test_glob_patterns_for_get_and_rm(run: Run, tmp_path: Path) -> None:
    tree(tmp_path / "d", {"2024/a.gz": b"1", "2024/b.txt": b"2", "2025/c.gz": b"3"})
    run("put", "-r", "c", "d", "logs/")
    (tmp_path / "o").mkdir()
    run("get", "c", "logs/2024/*.gz", "-o", "o")
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.gz"]
    run("get", "c", "logs/*/*.gz", "-o", "o2/", code=NOT_FOUND)  # the directory must exist
    (tmp_path / "o2").mkdir()
    run("get", "c", "logs/*/*.gz", "-o", "o2/")
    assert sorted(str(p.relative_to(tmp_path / "o2")) for p in (tmp_path / "o2").rglob("*.gz")) == [
        "2024/a.gz",
        "2025/c.gz",
    ]
    run("rm", "c", "logs/*.gz")  # * also matches /
    assert names(run) == ["logs/2024/b.txt"]
    run("rm", "c", "nothing-*")  # a pattern that matches nothing removes nothing
    assert names(run) == ["logs/2024/b.txt"]


def test_a_literal_name_with_glob_characters(run: Run, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"star")
    run("put", "c", "a*b", "f")
    run("put", "c", "axb", "f")
    run("rm", "c", "--literal", "a*b")
    assert names(run) == ["axb"]


def test_get_o_dir_writes_into_the_directory(run: Run, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"report")
    run("put", "c", "reports/q3.csv", "f")
    (tmp_path / "out").mkdir()
    run("get", "c", "reports/q3.csv", "-o", "out/")
    assert (tmp_path / "out" / "q3.csv").read_bytes() == b"report"
    run("get", "c", "reports/q3.csv", "-o", "out/", code=EXISTS)  # create-only inside it too
    run("get", "c", "reports/q3.csv", "-o", "out", code=7)  # without the /: a directory is not a file
    run("get", "c", "reports/q3.csv", "-o", "nowhere/", code=NOT_FOUND)


def test_rm_r_needs_yes_above_ten_objects_and_lists_them(run: Run, tmp_path: Path) -> None:
    tree(tmp_path / "d", {f"f{i:02}": b"x" for i in range(11)})
    run("put", "-r", "c", "d", "many/")
    run("put", "c", "keep", str(tmp_path / "d" / "f00"))
    out, err = run("rm", "-r", "c", "many/", code=USAGE)
    assert out.splitlines()[0] == "would remove many/f00" and len(out.splitlines()) == 11
    assert "--yes" in err
    assert len(names(run)) == 12
    out, _ = run("--json", "rm", "-r", "c", "many/", code=USAGE)
    assert len(json.loads(out)["would_remove"]) == 11
    run("rm", "-r", "c", "many/f0")  # ten: no --yes needed
    assert names(run) == ["keep", "many/f10"]
    run("rm", "-r", "c", "many/", "--yes")
    assert names(run) == ["keep"]
    run("rm", "-r", "c", "bad//", code=USAGE)


def test_put_r_never_follows_a_link_swapped_in_after_the_walk(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from envelope_cli import transfer

    tree(tmp_path / "d", {"a.txt": b"a"})
    (tmp_path / "secret").write_bytes(b"outside the tree")
    walk = transfer.local_tree

    def walk_then_swap(directory: str, prefix: str) -> tuple[list[tuple[str, str]], list[str]]:
        found = walk(directory, prefix)
        (tmp_path / "d" / "a.txt").unlink()
        os.symlink(tmp_path / "secret", tmp_path / "d" / "a.txt")
        return found

    monkeypatch.setattr(transfer, "local_tree", walk_then_swap)
    run("put", "-r", "c", "d", code=7)  # ELOOP: refused
    assert names(run) == []
