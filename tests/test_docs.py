"""Every Python example in the documentation runs, and the CLI reference matches the command.

Convention: each fenced block opened with ```python in README.md or docs/*.md
is executed, alone, in a fresh temporary directory (the current directory
while it runs). A block that is only an illustration is opened with
```python no-run instead. AWS calls go to moto, in process, where a bucket
named `bucket` and a KMS key with alias `alias/acme` exist, so examples
written for AWS run unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from envelope_cli.exitcodes import ExitCode
from envelope_cli.main import build_parser

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def python_blocks() -> Iterator[Any]:
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            options = match.group(1).split()
            marks = [pytest.mark.skip(reason="marked no-run")] if "no-run" in options else []
            yield pytest.param(path, line, match.group(2), id=f"{path.relative_to(REPO)}:{line}", marks=marks)


@pytest.mark.parametrize(("path", "line", "code"), list(python_blocks()))
def test_python_example_runs(path: Path, line: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto import mock_aws

    monkeypatch.chdir(tmp_path)
    forget_fsspec_state()
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="bucket")
        kms = boto3.client("kms", region_name="us-east-1")
        kms.create_alias(AliasName="alias/acme", TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"])
        exec(compile(code, f"{path}:{line}", "exec"), {"__name__": "__doc_example__"})


def forget_fsspec_state() -> None:
    """Each block starts with no cached envelope filesystem or per-process plane (moto is reset between blocks)."""
    try:
        from dataplane.bulk import forget_process_planes
        from dataplane.fs import EnvelopeFileSystem
    except ImportError:  # fsspec is an extra
        return
    EnvelopeFileSystem.clear_instance_cache()
    forget_process_planes()


def test_the_ecosystem_guide_has_runnable_recipes() -> None:
    blocks = [p for p in python_blocks() if p.values[0].name == "ecosystem.md" and not p.marks]
    recipes = " ".join(p.values[2] for p in blocks)
    for tool in ("pandas", "pyarrow", "PyFileSystem", "duckdb", "dask", "verify_all", "copy_prefix"):
        assert tool in recipes, tool
    assert len(blocks) >= 8


def test_the_api_guide_has_runnable_examples() -> None:
    blocks = [p for p in python_blocks() if p.values[0].name == "api.md" and not p.marks]
    assert len(blocks) >= 8


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else len(text)]


def test_cli_reference_documents_every_command_and_exit_code() -> None:
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert commands is not None
    for name, sub in commands.items():
        if name == "key":
            actions = next(a for a in sub._actions if a.dest == "key_command").choices
            assert actions is not None
            for action in actions:
                assert f"### `envelope key {action}" in text, action
        else:
            assert f"### `envelope {name}" in text, name
    table = _section(text, "## Exit codes")
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    assert documented == {int(code) for code in ExitCode}


def test_the_interop_guide_has_runnable_esdk_recipes() -> None:
    blocks = [p for p in python_blocks() if p.values[0].name == "interop.md" and not p.marks]
    recipes = " ".join(p.values[2] for p in blocks)
    for needle in ("esdk.decrypt", "esdk.encrypt", "allow_unbound=True", "AES_256_GCM_HKDF_SHA512_COMMIT_KEY"):
        assert needle in recipes, needle
    assert len(blocks) >= 2
