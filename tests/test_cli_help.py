"""Help and output contracts: global options shown once, a description for every subcommand, `key --help`
that claims nothing refused, `get` that will not print plaintext on a terminal, `ls -l`, completion scripts,
environment defaults, and start-up imports (which modules a command loads, never how long it takes)."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from envelope_cli.main import GLOBAL_POINTER, build_parser
from tests.support.cli_run import Run

OK, USAGE, KMS = 0, 2, 6
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    monkeypatch.chdir(tmp_path)
    for variable in ("ENVELOPE_KMS", "ENVELOPE_REGION", "ENVELOPE_ENDPOINT_URL", "ENVELOPE_KEY_IDS"):
        monkeypatch.delenv(variable, raising=False)
    r = Run(["--kms", f"local:{tmp_path / 'keystore'}"], monkeypatch, capsys)
    r("key", "create", "--alias", "alias/k")
    r("create", "c", "--key", "alias/k")
    return r


def all_subparsers(parser: argparse.ArgumentParser, path: str = "envelope") -> list[tuple[str, Any]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((f"{path} {name}", sub))
                found.extend(all_subparsers(sub, f"{path} {name}"))
    return found


def test_global_options_are_shown_once_and_accepted_everywhere(run: Run) -> None:
    top = build_parser().format_help()
    for option in ("--kms", "--region", "--endpoint-url", "--grant-token", "--json", "--debug"):
        assert option in top
    subs = all_subparsers(build_parser())
    assert len(subs) > 20
    for name, sub in subs:
        text = sub.format_help()
        assert "--endpoint-url" not in text.split("Global options")[0], name
        assert "--grant-token TOKEN" not in text, name
        assert sub.description, f"{name} has no description"
        if not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
            assert GLOBAL_POINTER in (sub.epilog or ""), name
    # Accepted before or after the command all the same.
    assert json.loads(run("ls", "c", "--json")[0]) == []
    assert json.loads(run("--json", "ls", "c")[0]) == []


def test_key_help_claims_no_aws_key_management(run: Run) -> None:
    parser = build_parser()
    key = dict(all_subparsers(parser))["envelope key"]
    text = " ".join(key.format_help().split())
    assert "manage keys in AWS" not in text
    assert "refuse --kms aws" in text
    run("--kms", "aws", "key", "list", code=USAGE)


def test_get_refuses_a_terminal_unless_dash_o_dash(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "f").write_bytes(b"secret text")
    run("put", "c", "x", "f")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    _, err = run("get", "c", "x", code=USAGE)
    assert "refusing to write plaintext to a terminal" in err and "-o -" in err
    assert terminal.buffer.getvalue() == b""
    run("get", "c", "x", "-o", "-")
    assert terminal.buffer.getvalue() == b"secret text"


class _Terminal(io.TextIOWrapper):
    """A standard output that says it is a terminal."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO())

    def isatty(self) -> bool:
        return True


def test_ls_long_shows_plaintext_size_stored_size_and_generation(run: Run, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 1000)
    run("put", "c", "a", "f")
    [doc] = json.loads(run("--json", "ls", "-l", "c")[0])
    assert doc["size"] == 1000 and doc["encrypted_size"] > 1000 and doc["generation"] == 1
    text = run("ls", "-l", "c")[0].splitlines()
    assert text[0].split() == ["SIZE", "STORED", "GEN", "NAME"]
    assert text[1].split() == ["1000", str(doc["encrypted_size"]), "1", "a"]
    # A broken object is listed with its error; the rest are still shown.
    (tmp_path / "c" / "objects" / "broken").write_bytes(b"not a message")
    out, err = run("ls", "-l", "c", code=8)
    assert "broken" in err and out.splitlines()[1].split()[-1] == "a"


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_are_generated_from_the_parser(run: Run, shell: str) -> None:
    pytest.importorskip("shtab")
    out, _ = run("completion", shell)
    assert "envelope" in out
    for word in ("cp", "verify", "rotate", "--overwrite", "--expect-context"):
        assert word in out, word
    run("completion", "fish", code=USAGE)


def test_environment_defaults(run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    base = Run([], monkeypatch, run.capsys)
    monkeypatch.setenv("ENVELOPE_KMS", "aws")
    _, err = base("ls", "c", code=USAGE)  # --kms aws without --key: refused, so ENVELOPE_KMS was used
    assert "--discovery" in err
    monkeypatch.setenv("ENVELOPE_KMS", f"local:{tmp_path / 'keystore'}")
    base("ls", "c")
    base("--kms", "aws", "ls", "c", code=USAGE)  # the option wins
    monkeypatch.setenv("ENVELOPE_REGION", "not a region")
    _, err = base("ls", "c", code=USAGE)
    assert "is not a region name" in err
    monkeypatch.delenv("ENVELOPE_REGION")
    monkeypatch.setenv("ENVELOPE_ENDPOINT_URL", "ftp://example")
    _, err = base("ls", "c", code=USAGE)
    assert "--endpoint-url 'ftp://example'" in err


def _loaded_modules(*argv: str, cwd: Path) -> set[str]:
    code = (
        "import sys, json\n"
        "from envelope_cli.main import main\n"
        "try:\n"
        f"    rc = main({list(argv)!r})\n"
        "except SystemExit as e:\n"
        "    rc = e.code\n"
        "sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)) + '\\n')\n"
        "sys.exit(rc)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVELOPE_")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    line = proc.stderr.decode().rsplit("MODULES ", 1)[1]
    return set(json.loads(line))


def test_version_imports_neither_aws_sdk_nor_the_library(tmp_path: Path) -> None:
    loaded = _loaded_modules("--version", cwd=tmp_path)
    for heavy in ("botocore", "boto3", "envelope", "dataplane", "controlplane", "cryptography", "attrs"):
        assert heavy not in loaded, heavy


def test_a_local_command_imports_no_aws_client_code(run: Run, tmp_path: Path) -> None:
    keystore = f"local:{tmp_path / 'keystore'}"
    loaded = _loaded_modules("--kms", keystore, "ls", "c", cwd=tmp_path)
    # No AWS SDK at all: the S3 store and the AWS KMS client are imported only for s3:// and --kms aws.
    for heavy in ("boto3", "botocore", "controlplane"):
        assert heavy not in loaded, heavy
    loaded = _loaded_modules("--kms", keystore, "describe", "c", cwd=tmp_path)
    for heavy in (
        "boto3",
        "botocore.session",
        "botocore.client",
        "botocore.utils",
        "botocore.parsers",
        "envelope.kms",
        "dataplane",
    ):
        assert heavy not in loaded, heavy
