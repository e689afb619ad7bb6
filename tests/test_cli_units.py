"""The command line in-process: the whole exit-code matrix, option parsing, atomic output, no-key commands.

`tests/test_cli.py` runs the real binary for each kind of outcome; this
module calls `envelope_cli.main.main(argv)` directly, so that every case of
the documented exit-code table can be checked without paying for an
interpreter start-up each time.
"""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from pathlib import Path

import pytest
from botocore.exceptions import NoRegionError, ProfileNotFound

from envelope.errors import (
    AuthenticationError,
    ContainerExistsError,
    ContainerNotFoundError,
    DisabledError,
    FormatError,
    KeystoreError,
    ObjectExistsError,
    ObjectNotFoundError,
    StorageError,
    UnsupportedFormatError,
    ValidationError,
)
from envelope_cli.control import parse_pairs
from envelope_cli.exitcodes import CliError, ExitCode, Terminated, exit_code_for, one_line
from envelope_cli.files import prepare_output
from envelope_cli.main import main
from envelope_cli.progress import transfer_progress
from envelope_cli.session import KmsChoice, parse_kms


class Run:
    def __init__(self, capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
        self.capsys = capsysbinary
        self.monkeypatch = monkeypatch

    def __call__(self, *argv: str, stdin: bytes = b"") -> tuple[int, bytes, str]:
        self.monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        try:
            code = main(["--kms", "local:keystore", *argv])
        except SystemExit as e:  # argparse's own usage errors
            code = int(e.code or 0)
        out, err = self.capsys.readouterr()
        return code, out, err.decode()


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]) -> Run:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("ENVELOPE_KEYSTORE", raising=False)
    r = Run(capsysbinary, monkeypatch)
    assert r("key", "create", "--alias", "alias/k")[0] == 0
    assert r("create", "c", "--key", "alias/k", "--context", "tenant=acme")[0] == 0
    assert r("put", "c", "x", "-", stdin=b"payload")[0] == 0
    (tmp_path / "notes.txt").write_bytes(b"notes")
    return r


MATRIX: list[tuple[list[str], ExitCode]] = [
    # usage: argparse, option values, library validation, AWS-only refusals
    (["frobnicate"], ExitCode.USAGE),
    (["create", "d"], ExitCode.USAGE),
    (["create", "d", "--key", "alias/k", "--context", "no-equals"], ExitCode.USAGE),
    (["create", "d", "--key", "alias/k", "--context", "a=1", "--context", "a=2"], ExitCode.USAGE),
    (["create", "d", "--key", "alias/k", "--context", "envelope:suite=0478"], ExitCode.USAGE),
    (["create", "d", "--key", "alias/k", "--context", "aws-crypto-public-key=x"], ExitCode.USAGE),
    (["create", "d", "--key", "alias/k", "--label", "=v"], ExitCode.USAGE),
    (["create", "d", "--key", "not a key id"], ExitCode.USAGE),
    (["key", "create", "--alias", "no-prefix"], ExitCode.USAGE),
    (["--kms", "aws", "key", "list"], ExitCode.USAGE),
    (["--kms", "aws", "key", "disable", "alias/k"], ExitCode.USAGE),
    (["--kms", "local:", "ls", "c"], ExitCode.USAGE),
    (["--kms", "kms", "ls", "c"], ExitCode.USAGE),
    (["put", "c", "../escape", "notes.txt"], ExitCode.USAGE),
    (["put", "c", "/absolute", "notes.txt"], ExitCode.USAGE),
    (["get", "c", "a//b"], ExitCode.USAGE),
    (["ls", "c", "../"], ExitCode.USAGE),
    # not found
    (["get", "c", "missing"], ExitCode.NOT_FOUND),
    (["get", "c", "missing", "-o", "out"], ExitCode.NOT_FOUND),
    (["get", "c", "x", "-o", "no/such/dir/out"], ExitCode.NOT_FOUND),
    (["describe", "nowhere"], ExitCode.NOT_FOUND),
    (["inspect", "nowhere"], ExitCode.NOT_FOUND),
    (["inspect", "c", "missing"], ExitCode.NOT_FOUND),
    (["ls", "nowhere"], ExitCode.NOT_FOUND),
    (["rm", "c", "missing"], ExitCode.NOT_FOUND),
    (["put", "c", "y", "no-such-file"], ExitCode.NOT_FOUND),
    (["verify", "c", "missing"], ExitCode.NOT_FOUND),
    (["verify", "nowhere"], ExitCode.NOT_FOUND),
    # already exists
    (["create", "c", "--key", "alias/k"], ExitCode.EXISTS),
    (["put", "c", "x", "notes.txt"], ExitCode.EXISTS),
    (["key", "create", "--alias", "alias/k"], ExitCode.EXISTS),
    # KMS: unknown keys
    (["create", "d", "--key", "alias/missing"], ExitCode.KMS),
    (["key", "disable", "alias/missing"], ExitCode.KMS),
    (["key", "cancel-deletion", "alias/k"], ExitCode.KMS),  # not pending deletion
    # storage / local I/O
    (["get", "c", "x", "-o", "."], ExitCode.STORAGE),
]


@pytest.mark.parametrize(("argv", "expected"), MATRIX, ids=[" ".join(a) for a, _ in MATRIX])
def test_exit_code_matrix(run: Run, tmp_path: Path, argv: list[str], expected: ExitCode) -> None:
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "keystore" not in p.parts)
    code, _, err = run(*argv)
    assert code == expected, err
    assert err.count("\n") == (err.count("\n") if err.startswith("usage:") else 1), err  # one line
    assert "Traceback" not in err
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "keystore" not in p.parts)
    assert after == before  # a failed command changes nothing


def test_format_errors_exit_8(run: Run, tmp_path: Path) -> None:
    header = tmp_path / "c" / "container.json"
    header.write_text(header.read_text().replace('"version": 1', '"version": 2'))
    assert run("describe", "c")[0] == ExitCode.FORMAT
    assert run("get", "c", "x")[0] == ExitCode.FORMAT
    header.write_text("{not json")
    assert run("ls", "c")[0] == ExitCode.FORMAT


def test_key_state_drives_kms_errors_and_commands_without_a_key_keep_working(run: Run) -> None:
    assert run("key", "disable", "alias/k")[0] == 0
    assert run("get", "c", "x")[0] == ExitCode.KMS
    assert run("put", "c", "y", "notes.txt")[0] == ExitCode.KMS
    assert run("verify", "c")[0] == ExitCode.KMS
    assert run("create", "d", "--key", "alias/k")[0] == ExitCode.KMS
    # ls, inspect, describe and rm need no data key and make no KMS call.
    assert run("--json", "ls", "c")[1] == b'[\n  "x"\n]\n'
    assert json.loads(run("inspect", "c", "x")[1])["name"] == "x"
    assert run("describe", "c")[0] == 0
    assert run("rm", "c", "x")[0] == 0
    assert run("key", "schedule-deletion", "alias/k")[0] == 0
    code, out, _ = run("--json", "key", "list")
    assert code == 0 and json.loads(out)[0]["state"] == "PendingDeletion"


def test_containers_reports_unreadable_ones_and_exits_with_their_code(run: Run, tmp_path: Path) -> None:
    assert run("create", "more/d", "--key", "alias/k")[0] == 0
    (tmp_path / "more" / "d" / "container.json").write_text("{}")
    code, out, err = run("--json", "containers", ".")
    assert code == ExitCode.FORMAT
    listed = json.loads(out)
    assert [("error" in c) for c in listed] == [False, True]
    assert "more/d" in err


def test_exit_code_for_every_error_class() -> None:
    table = {
        AuthenticationError(): ExitCode.AUTHENTICATION,
        ValidationError("x"): ExitCode.USAGE,
        NoRegionError(): ExitCode.USAGE,
        ProfileNotFound(profile="p"): ExitCode.USAGE,
        ContainerNotFoundError("x"): ExitCode.NOT_FOUND,
        ObjectNotFoundError("x"): ExitCode.NOT_FOUND,
        FileNotFoundError(2, "No such file", "f"): ExitCode.NOT_FOUND,
        ContainerExistsError("x"): ExitCode.EXISTS,
        ObjectExistsError("x"): ExitCode.EXISTS,
        DisabledError("x"): ExitCode.KMS,
        KeystoreError("x"): ExitCode.KMS,
        StorageError("x"): ExitCode.STORAGE,
        PermissionError(13, "Permission denied", "f"): ExitCode.STORAGE,
        FormatError("x"): ExitCode.FORMAT,
        UnsupportedFormatError("x"): ExitCode.FORMAT,
        BrokenPipeError(): ExitCode.BROKEN_PIPE,
        KeyboardInterrupt(): ExitCode.INTERRUPTED,
        Terminated(): ExitCode.TERMINATED,
        CliError("x", ExitCode.EXISTS): ExitCode.EXISTS,
        RuntimeError("bug"): ExitCode.ERROR,
    }
    for exc, code in table.items():
        assert exit_code_for(exc) == code, exc


def test_one_line_messages() -> None:
    assert one_line(StorageError("a\n  b")) == "a b"
    assert one_line(FileNotFoundError(2, "No such file or directory", "in.bin")) == "in.bin: No such file or directory"
    assert one_line(RuntimeError("boom")) == "internal error: RuntimeError: boom"
    assert "--region" in one_line(NoRegionError())
    assert one_line(KeyboardInterrupt()) == "interrupted"
    assert one_line(Terminated()) == "terminated"


def test_parse_kms(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("ENVELOPE_KEYSTORE", raising=False)
    assert parse_kms("aws") == KmsChoice("aws")
    assert parse_kms("local") == KmsChoice("local", tmp_path / ".envelope" / "keystore")
    assert parse_kms("local:ks") == KmsChoice("local", Path("ks"))
    assert parse_kms("local:~/ks") == KmsChoice("local", tmp_path / "ks")
    monkeypatch.setenv("ENVELOPE_KEYSTORE", str(tmp_path / "env-ks"))
    assert parse_kms("local") == KmsChoice("local", tmp_path / "env-ks")
    for bad in ("", "local:", "AWS", "vault"):
        with pytest.raises(CliError) as info:
            parse_kms(bad)
        assert info.value.code == ExitCode.USAGE


def test_parse_pairs() -> None:
    assert parse_pairs(["a=1", "b=x=y", "c="], "--context") == {"a": "1", "b": "x=y", "c": ""}
    assert parse_pairs(None, "--label") == {}
    for bad in (["a"], ["=1"], ["a=1", "a=2"]):
        with pytest.raises(CliError):
            parse_pairs(bad, "--context")


def test_output_appears_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with prepare_output(str(target), overwrite=False) as output, output.open() as f:
        f.write(b"first")
        assert not target.exists()
        assert list(tmp_path.iterdir()) == []  # anonymous (O_TMPFILE): no name until it is complete
    assert target.read_bytes() == b"first"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600

    with pytest.raises(AuthenticationError), prepare_output(str(target), overwrite=True) as out, out.open() as f:
        f.write(b"partial plaintext")
        raise AuthenticationError
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]

    # A symlink of ours in an ordinary directory is followed: its target is replaced, the link stays.
    link = tmp_path / "link"
    link.symlink_to(target)
    with prepare_output(str(link), overwrite=True) as output, output.open() as f:
        f.write(b"second")
    assert link.is_symlink() and target.read_bytes() == b"second"

    with pytest.raises(IsADirectoryError):
        prepare_output(str(tmp_path), overwrite=True)


def test_output_writes_straight_to_special_files(tmp_path: Path) -> None:
    before = os.stat(os.devnull)
    with prepare_output(os.devnull, overwrite=False) as output, output.open() as f:
        f.write(b"discarded")
    after = os.stat(os.devnull)
    assert stat.S_ISCHR(after.st_mode) and (before.st_ino, before.st_rdev) == (after.st_ino, after.st_rdev)


def test_no_progress_bar_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    with transfer_progress(1 << 30, description="x", quiet=False) as tick:
        tick(1 << 30)
    with transfer_progress(None, description="x", quiet=False) as tick:
        tick(5)
    assert capsys.readouterr() == ("", "")
