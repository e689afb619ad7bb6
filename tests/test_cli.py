"""The `envelope` command, run as a real process: every subcommand, `-` streaming, exit codes, JSON.

Local mode uses a keystore under tmp_path; AWS mode points `--kms aws
--endpoint-url` at the session's moto_server (KMS and S3) with the fake
credentials conftest puts in the environment. Each test batches many
commands, because starting the interpreter is most of a command's cost.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024

# Exit codes, as documented in docs/cli.md.
OK, USAGE, AUTH, NOT_FOUND, EXISTS, KMS = 0, 2, 3, 4, 5, 6


def cli_command() -> list[str]:
    """The installed console script when there is one, else the module (same code either way)."""
    script = Path(sys.executable).with_name("envelope")
    return [str(script)] if script.exists() else [sys.executable, "-m", "envelope_cli"]


class Cli:
    """Runs `envelope` with a fixed set of leading options, recording every output."""

    def __init__(self, cwd: Path, *options: str, env: dict[str, str] | None = None) -> None:
        self.cwd = cwd
        self.options = list(options)
        self.env = {**os.environ, "HOME": str(cwd), "PYTHONPATH": str(REPO), **(env or {})}
        self.env.pop("ENVELOPE_KEYSTORE", None)
        self.outputs: list[bytes] = []

    def __call__(
        self, *args: str, code: int = OK, stdin: bytes | None = None, options: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        argv = cli_command() + (self.options if options else []) + list(args)
        proc = subprocess.run(argv, cwd=self.cwd, env=self.env, input=stdin or b"", capture_output=True, timeout=60)
        self.outputs += [proc.stdout, proc.stderr]
        assert proc.returncode == code, (args, proc.returncode, proc.stderr.decode(errors="replace"))
        if code != OK and "--debug" not in args:
            # One line, prefixed, no traceback.
            err = proc.stderr.decode()
            assert "Traceback" not in err, err
            assert err.startswith(("envelope: error: ", "usage: ")), err
        return proc

    def json(self, *args: str, code: int = OK, stdin: bytes | None = None) -> Any:
        return json.loads(self("--json", *args, code=code, stdin=stdin).stdout)


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------------------------------- local mode


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path, "--kms", f"local:{tmp_path / 'keystore'}")


def test_local_workflow_every_subcommand(cli: Cli, tmp_path: Path) -> None:
    arn = cli("key", "create", "--alias", "alias/acme").stdout.decode().strip()
    assert arn.startswith("arn:aws:kms:local:")
    [key] = cli.json("key", "list")
    assert key["arn"] == arn and key["aliases"] == ["alias/acme"] and key["state"] == "Enabled"
    assert cli.json("key", "describe", "alias/acme")["key_id"] == key["key_id"]

    header = cli.json(
        "create", "c", "--key", "alias/acme", "--context", "tenant=acme", "--context", "env=dev", "--label", "team=x"
    )
    assert header["data_keys"][0]["key_id"] == arn  # the ARN, not the alias
    assert header["encryption_context"]["tenant"] == "acme" and header["labels"] == {"team": "x"}
    assert header["location"] == (tmp_path / "c").as_uri()
    described = cli.json("describe", "c")
    assert described == header
    assert "container id  " + header["container_id"] in cli("describe", "c").stdout.decode()
    assert cli.json("inspect", "c") == header

    report = os.urandom(300_000)
    (tmp_path / "report.bin").write_bytes(report)
    put = cli.json("put", "c", "reports/q3.bin", "report.bin")
    assert put["size"] == len(report) and put["encrypted_size"] > len(report)
    cli("put", "c", "logs/a.txt", "-", stdin=b"streamed through stdin\n")
    # Reading stdin takes an explicit -: a forgotten FILE is a usage error, not a silent read of the terminal.
    assert "FILE" in cli("put", "c", "logs/b.txt", stdin=b"forgotten FILE\n", code=USAGE).stderr.decode()
    cli("put", "c", "logs/b.txt", "-", stdin=b"no FILE means stdin\n")
    cli("--quiet", "put", "c", "empty", "/dev/null")

    assert cli("get", "c", "reports/q3.bin").stdout == report  # stdout by default
    assert cli("get", "c", "logs/a.txt", "-o", "-").stdout == b"streamed through stdin\n"
    got = cli.json("get", "c", "reports/q3.bin", "-o", "q3.out")
    assert got["size"] == len(report)
    assert (tmp_path / "q3.out").read_bytes() == report
    assert (tmp_path / "q3.out").stat().st_mode & 0o077 == 0  # plaintext files are private
    assert cli("get", "c", "empty").stdout == b""

    assert cli("ls", "c").stdout.decode().split() == ["empty", "logs/a.txt", "logs/b.txt", "reports/q3.bin"]
    assert cli.json("ls", "c", "logs/") == ["logs/a.txt", "logs/b.txt"]
    [long] = cli.json("ls", "--long", "c", "reports/")
    assert long == {
        "name": "reports/q3.bin",
        "size": len(report),
        "encrypted_size": put["encrypted_size"],
        "generation": 1,
    }

    info = cli.json("inspect", "c", "reports/q3.bin")
    assert info["suite_id"] == "0x0478" and info["content_type"] == "framed" and info["bound_to_container"]
    assert info["encryption_context"] == header["encryption_context"]
    assert info["encrypted_data_keys"] == [{"provider_id": "envelope-local", "provider_info": arn}]
    assert info["authenticated"] is False  # parsed only: verify authenticates

    verified = cli.json("verify", "c")
    assert verified["ok"] and [o["name"] for o in verified["objects"]] == [
        "empty",
        "logs/a.txt",
        "logs/b.txt",
        "reports/q3.bin",
    ]
    assert cli("verify", "c", "logs/a.txt").stdout.decode().startswith("ok      logs/a.txt")
    assert cli("--quiet", "verify", "c").stdout == b""

    assert cli.json("rm", "c", "logs/a.txt") == {"location": header["location"], "removed": ["logs/a.txt"]}
    cli("rm", "c", "logs/b.txt", "empty")
    assert cli.json("ls", "c") == ["reports/q3.bin"]

    cli("create", "tenants/other", "--key", arn)
    listed = cli.json("containers", ".")
    assert [c["container_id"] for c in listed] == [header["container_id"], listed[1]["container_id"]]
    assert len(cli("containers", ".").stdout.decode().splitlines()) == 2

    # A reader that stops early (`| head`): exit 141 like other tools, and no error message.
    proc = subprocess.Popen(
        [*cli_command(), *cli.options, "get", "c", "reports/q3.bin"],
        cwd=tmp_path,
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10) == report[:10]
    proc.stdout.close()
    assert proc.wait(timeout=60) == 141 and proc.stderr.read() == b""
    proc.stderr.close()

    # Global options go before or after the command; the keystore can come from $ENVELOPE_KEYSTORE.
    assert json.loads(cli("ls", "c", "--json").stdout) == ["reports/q3.bin"]
    env_cli = Cli(tmp_path, env={"ENVELOPE_KEYSTORE": str(tmp_path / "keystore")})
    env_cli.env["ENVELOPE_KEYSTORE"] = str(tmp_path / "keystore")
    assert env_cli("get", "c", "reports/q3.bin").stdout == report

    # Nothing printed, ever, holds key material: neither the keystore's key nor the data key.
    from envelope.kms import LocalKms

    record = json.loads(next((tmp_path / "keystore" / "keys").glob("*.json")).read_text())
    material = base64.b64decode(record["material"])
    data_key = LocalKms(tmp_path / "keystore").decrypt(
        base64.b64decode(header["data_keys"][0]["ciphertext"]), encryption_context=header["encryption_context"]
    )
    secrets = [material, data_key.reveal()]
    for secret in secrets:
        for form in (secret, secret.hex().encode(), base64.b64encode(secret)):
            assert not any(form in out for out in cli.outputs + env_cli.outputs)


def test_exit_codes_one_of_each_kind(cli: Cli, tmp_path: Path) -> None:
    # The full matrix runs in-process (tests/test_cli_units.py); here the real binary shows each kind once.
    cli("key", "create", "--alias", "alias/k")
    cli("create", "c", "--key", "alias/k")
    cli("put", "c", "x", "-", stdin=b"one")

    cli("frobnicate", code=USAGE)
    assert "done in AWS" in cli("--kms", "aws", "key", "create", code=USAGE).stderr.decode()
    cli("get", "c", "missing", "-o", "out", code=NOT_FOUND)
    assert not (tmp_path / "out").exists()
    cli("put", "c", "x", "-", stdin=b"two", code=EXISTS)
    cli("put", "c", "x", "--overwrite", "-", stdin=b"two")

    # KMS errors follow the key's state, which the key commands drive.
    assert cli.json("key", "disable", "alias/k")["state"] == "Disabled"
    assert "DisabledException" in cli("get", "c", "x", code=KMS).stderr.decode()
    assert cli.json("key", "enable", "alias/k")["state"] == "Enabled"
    assert cli.json("key", "schedule-deletion", "alias/k")["deletion_date"]
    assert "KMSInvalidStateException" in cli("verify", "c", code=KMS).stderr.decode()
    assert cli.json("key", "cancel-deletion", "alias/k")["state"] == "Disabled"
    cli("key", "enable", "alias/k")

    # --debug shows the traceback; without it, never (Cli checks every failure for that).
    assert "Traceback" in cli("--debug", "get", "c", "missing", code=NOT_FOUND).stderr.decode()
    assert cli("get", "c", "x").stdout == b"two"


def test_tampered_object_fails_with_3_and_leaves_no_output_file(cli: Cli, tmp_path: Path) -> None:
    cli("key", "create", "--alias", "alias/k")
    header = cli.json("create", "c", "--key", "alias/k")
    data = os.urandom(3 * MiB + MiB // 2)  # three full 1 MiB frames and a final one
    cli("put", "c", "big", "-", stdin=data)
    cli("put", "c", "small", "-", stdin=b"hello")
    stored = tmp_path / "c" / "objects" / "big"
    flip_byte(stored, stored.stat().st_size - 600 * 1024)  # inside the third frame

    # To a file: nothing is left, neither the file nor a temp file.
    err = cli("get", "c", "big", "-o", "big.out", code=AUTH).stderr.decode()
    assert "authentication failed" in err
    assert not (tmp_path / "big.out").exists() and leftovers(tmp_path) == []
    (tmp_path / "big.out").write_bytes(b"previous contents")  # an existing file is left as it was
    cli("get", "c", "big", "-o", "big.out", code=EXISTS)  # create-only, judged before any decryption
    cli("get", "c", "big", "-o", "big.out", "--overwrite", code=AUTH)
    assert (tmp_path / "big.out").read_bytes() == b"previous contents" and leftovers(tmp_path) == []

    # To stdout: the frames before the bad one were released, then exit 3 says the output is incomplete.
    proc = cli("get", "c", "big", code=AUTH)
    assert proc.stdout == data[: 2 * MiB]
    assert "incomplete" in proc.stderr.decode() and str(2 * MiB) in proc.stderr.decode()

    # verify reports each object and exits 3.
    report = cli.json("verify", "c", code=AUTH)
    assert not report["ok"]
    assert [(o["name"], o["ok"]) for o in report["objects"]] == [("big", False), ("small", True)]
    assert "FAILED  big" in cli("verify", "c", code=AUTH).stdout.decode()
    assert cli("--quiet", "verify", "c", code=AUTH).stdout == b""

    # A truncated object fails before any byte reaches stdout.
    shutil.copyfile(tmp_path / "c" / "objects" / "small", tmp_path / "small.msg")
    (tmp_path / "c" / "objects" / "small").write_bytes((tmp_path / "small.msg").read_bytes()[:-1])
    assert cli("get", "c", "small", code=AUTH).stdout == b""

    # An intact object copied to another name is rejected (name binding), as is one from another container.
    cli("create", "c2", "--key", "alias/k")
    cli("put", "c2", "small", "-", stdin=b"other container")
    shutil.copyfile(tmp_path / "c2" / "objects" / "small", tmp_path / "c" / "objects" / "foreign")
    shutil.copyfile(tmp_path / "small.msg", tmp_path / "c" / "objects" / "moved")
    cli("get", "c", "moved", "-o", "moved.out", code=AUTH)
    cli("get", "c", "foreign", "-o", "foreign.out", code=AUTH)
    assert not (tmp_path / "moved.out").exists() and not (tmp_path / "foreign.out").exists()
    assert leftovers(tmp_path) == []
    assert header["container_id"]


def test_progress_bar_only_on_a_terminal(cli: Cli, tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios
    import threading
    import time

    cli("key", "create", "--alias", "alias/k")
    cli("create", "c", "--key", "alias/k")
    data = os.urandom(6 * MiB)
    (tmp_path / "big.bin").write_bytes(data)

    def on_pty(*args: str, feed: list[bytes] | None = None, columns: int = 0) -> tuple[int, bytes, bytes]:
        master, slave = pty.openpty()
        if columns:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        proc = subprocess.Popen(
            [*cli_command(), *cli.options, *args],
            cwd=tmp_path,
            env=cli.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=slave,
        )
        os.close(slave)
        chunks: list[bytes] = []

        def drain() -> None:
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO once the child has closed the terminal
                    return
                if not chunk:
                    return
                chunks.append(chunk)

        reader = threading.Thread(target=drain)
        reader.start()
        assert proc.stdin is not None and proc.stdout is not None
        for i, piece in enumerate(feed or []):
            if i:
                time.sleep(0.8)  # an unknown-size stream shows its bar once it has run a while
            proc.stdin.write(piece)
            proc.stdin.flush()
        proc.stdin.close()
        out = proc.stdout.read()
        proc.wait(timeout=60)
        reader.join(timeout=10)
        os.close(master)
        return proc.returncode, out, b"".join(chunks)

    # Known size: percentage, rate, ETA.
    code, _, bar = on_pty("put", "c", "a", "big.bin", columns=100)
    assert code == OK and b"100%" in bar and b"B/s" in bar, bar
    code, out, bar = on_pty("get", "c", "a")  # a terminal that reports no size still gets a bar
    assert code == OK and out == data and b"100%" in bar, bar
    # Unknown size (a pipe): bytes and rate, no percentage.
    code, _, bar = on_pty("put", "c", "b", "-", feed=[data[: 3 * MiB], data[3 * MiB :]])
    assert code == OK and b"B/s" in bar and b"%" not in bar, bar
    # --quiet: no bar even on a terminal.
    code, _, bar = on_pty("--quiet", "get", "c", "a", "-o", "a.out")
    assert code == OK and bar == b""

    # Piped stderr: no bar, no carriage returns, nothing but the status line on stdout.
    proc = cli("put", "c", "d", "big.bin")
    assert proc.stderr == b"" and proc.stdout.startswith(b"put d: ")
    proc = cli("get", "c", "d", "-o", "d.out")
    assert proc.stderr == b""
    assert (tmp_path / "d.out").read_bytes() == data


def test_sigterm_mid_put_commits_nothing(cli: Cli, tmp_path: Path) -> None:
    import signal

    cli("key", "create", "--alias", "alias/k")
    cli("create", "c", "--key", "alias/k")
    proc = subprocess.Popen(
        [*cli_command(), *cli.options, "put", "c", "partial", "-"],
        cwd=tmp_path,
        env=cli.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    # Far more than a pipe holds: once this write returns, the command is in its copy loop.
    proc.stdin.write(os.urandom(4 * MiB))
    proc.stdin.flush()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.decode() == "envelope: error: terminated\n"
    assert cli.json("ls", "c") == []
    assert leftovers(tmp_path / "c") == [] and not any((tmp_path / "c" / "objects").glob("**/.*"))


def test_module_entry_point_matches_the_console_script(tmp_path: Path) -> None:
    via_module = subprocess.run(
        [sys.executable, "-m", "envelope_cli", "--version"], capture_output=True, check=True, cwd=tmp_path
    )
    via_script = subprocess.run([*cli_command(), "--version"], capture_output=True, check=True, cwd=tmp_path)
    assert via_module.stdout == via_script.stdout
    assert via_module.stdout.startswith(b"envelope ")
