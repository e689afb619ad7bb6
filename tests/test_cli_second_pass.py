"""The command line's second pass: no nested containers, one JSON document per command, the subcommand's own
usage on a bad argument, and errors that name the operation, the path the user gave and the reason.

In-process (`envelope_cli.main.main`); the S3 cases use the session's moto_server.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REGION
from tests.support.cli_run import Run

OK, USAGE, NOT_FOUND, KMS, STORAGE = 0, 2, 4, 6, 7


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    monkeypatch.chdir(tmp_path)
    r = Run(["--kms", f"local:{tmp_path / 'keystore'}"], monkeypatch, capsys)
    r("key", "create", "--alias", "alias/k")
    r("create", "c1", "--key", "alias/k")
    return r


def test_a_container_cannot_be_created_inside_another(run: Run, tmp_path: Path) -> None:
    for inside in (
        "c1/objects/x",
        "c1/sub",
        "c1/sub/deeper",
        str(tmp_path / "c1" / "objects"),
        "file://" + str(tmp_path / "c1/x"),
    ):
        _, err = run("create", inside, "--key", "alias/k", code=USAGE)
        assert f"is inside the container {(tmp_path / 'c1').as_uri()}" in err
    assert sorted(p.name for p in (tmp_path / "c1").iterdir()) == ["container.json"]
    run("create", "c2", "--key", "alias/k")  # a sibling is fine
    run("create", "tenants/a", "--key", "alias/k")
    assert len(json.loads(run("--json", "containers", ".")[0])) == 3


@pytest.mark.server
def test_a_container_cannot_be_created_inside_another_on_s3(
    moto_server_url: str,
    server_kms_client: Any,
    server_s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = f"envelope-nest-{uuid.uuid4().hex[:12]}"
    server_s3_client.create_bucket(Bucket=bucket)
    arn = server_kms_client.create_key()["KeyMetadata"]["Arn"]
    run = Run(["--kms", "aws", "--region", REGION, "--endpoint-url", moto_server_url], monkeypatch, capsys)
    run("create", f"s3://{bucket}/t/c1", "--key", arn)
    for inside in (f"s3://{bucket}/t/c1/objects/x", f"s3://{bucket}/t/c1/sub/"):
        _, err = run("create", inside, "--key", arn, code=USAGE)
        assert f"is inside the container s3://{bucket}/t/c1" in err
    run("create", f"s3://{bucket}/t/c2", "--key", arn)
    keys = sorted(o["Key"] for o in server_s3_client.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["t/c1/container.json", "t/c2/container.json"]


def test_rm_prints_one_json_document_even_when_a_name_fails(run: Run, tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        run("put", "c1", name, "-", stdin=b"x")
    out, _ = run("--json", "rm", "c1", "a", "b")
    assert json.loads(out) == {"location": (tmp_path / "c1").as_uri(), "removed": ["a", "b"]}
    out, err = run("--json", "rm", "c1", "c", "missing", "never", code=NOT_FOUND)
    assert json.loads(out) == {"location": (tmp_path / "c1").as_uri(), "removed": ["c"]}  # one document
    assert "missing" in err
    out, _ = run("rm", "c1", "--json", code=USAGE)  # NAME is required


def test_unrecognized_arguments_show_the_subcommands_usage(run: Run) -> None:
    _, err = run("ls", "c1", "extra", "more", code=USAGE)
    assert err.startswith("usage: envelope ls ") and "envelope ls: error: unrecognized arguments: more" in err
    _, err = run("key", "list", "--bogus", code=USAGE)
    assert err.startswith("usage: envelope key list") and "unrecognized arguments: --bogus" in err
    _, err = run("--bogus", code=USAGE)  # no command at all: the top-level usage
    assert err.startswith("usage: envelope ")


def test_errors_name_the_operation_the_path_given_and_the_reason(run: Run, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    _, err = run("ls", "a-file/c", code=STORAGE)
    assert (
        err == "envelope: error: ls a-file/c: cannot open the store root "
        f"{str(tmp_path / 'a-file/c')!r}: Not a directory\n"
    )
    _, err = run("put", "c1", "n", "no-such-input", code=NOT_FOUND)
    assert err == "envelope: error: put c1: no-such-input: No such file or directory\n"
    _, err = run("get", "c1", "n", "-o", "no-dir/out", code=NOT_FOUND)
    assert err.startswith("envelope: error: get c1: no-dir/out: No such directory")
    _, err = run("key", "describe", "alias/nope", code=KMS)
    assert err.startswith("envelope: error: key describe alias/nope: NotFoundException")


def test_a_missing_keystore_or_containers_root_is_an_error_not_an_empty_listing(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = Run(["--kms", f"local:{tmp_path / 'nonexistent'}"], monkeypatch, capsys)
    for command in (["key", "list"], ["key", "describe", "alias/k"], ["key", "disable", "alias/k"]):
        _, err = missing(*command, code=KMS)
        assert f"the local keystore {tmp_path / 'nonexistent'} does not exist" in err
    assert not (tmp_path / "nonexistent").exists()
    _, err = run("containers", "nonexistent", code=NOT_FOUND)
    assert "containers nonexistent: nonexistent: No such directory" in err
    (tmp_path / "empty").mkdir()
    assert run("--json", "containers", "empty")[0] == "[]\n"  # there, but holding none: fine
