"""Start-up: each command imports what it needs, when it needs it (never how long it takes).

A command on local containers with the local keystore must not load the AWS SDK at all (boto3, botocore,
urllib3, s3transfer), while `from envelope.kms import AwsKms` and `from envelope.storage import S3Store`
keep working (module `__getattr__`). A command builds only its own module's parsers; `--version` reads
the version without importlib.metadata.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import envelope.kms
import envelope.storage
from envelope_cli import main as cli_main
from envelope_cli.main import COMMAND_MODULES, _command_word, _dist_info_version, build_parser
from tests.test_cli_knobs import local_cli

REPO = Path(__file__).resolve().parent.parent
AWS_SDK = ("boto3", "botocore", "urllib3", "s3transfer")


def _modules_after(code: str, *, cwd: Path) -> set[str]:
    """Run `code` in a fresh interpreter; the modules loaded when it ended (the exit status must be 0)."""
    script = f"import sys\n{code}\nsys.stderr.write('\\nMODULES ' + ' '.join(sorted(sys.modules)) + '\\n')\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENVELOPE_", "AWS_"))}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, capture_output=True, env=env, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return set(proc.stderr.decode().rsplit("MODULES ", 1)[1].split())


def _cli_modules(*argv: str, cwd: Path) -> set[str]:
    code = (
        "from envelope_cli.main import main\n"
        "try:\n"
        f"    rc = main({list(argv)!r})\n"
        "except SystemExit as e:\n"
        "    rc = e.code\n"
        "if rc:\n"
        "    sys.exit(f'exit status {rc}')\n"
    )
    return _modules_after(code, cwd=cwd)


def _aws_sdk(loaded: set[str]) -> list[str]:
    return sorted(m for m in loaded if m.split(".")[0] in AWS_SDK)


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """A local keystore with a key, a container `c` holding object `x`, and a 1 KiB file `f`; the
    global options that select them."""
    run = local_cli(tmp_path, monkeypatch, capsys)
    (tmp_path / "f").write_bytes(os.urandom(1024))
    run("put", "c", "x", "f")
    return run.options


LOCAL_COMMANDS = [
    ("put", "c", "y", "f"),
    ("get", "c", "x", "-o", "out"),
    ("ls", "c"),
    ("ls", "-l", "c"),
    ("verify", "c"),
    ("inspect", "c", "x"),
    ("cp", "c", "x", "c", "x2"),
    ("rm", "c", "x"),
    ("key", "list"),
    ("describe", "c"),
    ("create", "c2", "--key", "alias/k"),
    ("generations", "c"),
]


@pytest.mark.parametrize("argv", LOCAL_COMMANDS, ids=[" ".join(a[:2]) for a in LOCAL_COMMANDS])
def test_a_local_command_never_loads_the_aws_sdk(local: list[str], tmp_path: Path, argv: tuple[str, ...]) -> None:
    loaded = _cli_modules(*local, *argv, cwd=tmp_path)
    assert _aws_sdk(loaded) == [], argv
    assert "envelope.kms.aws" not in loaded and "envelope.storage.s3" not in loaded


def test_the_lazy_names_still_import(tmp_path: Path) -> None:
    from envelope.kms import AwsKms
    from envelope.kms.aws import AwsKms as Direct
    from envelope.storage import S3Store, validate_bucket_name
    from envelope.storage.s3 import S3Store as DirectStore

    assert AwsKms is Direct and envelope.kms.AwsKms is Direct
    assert S3Store is DirectStore and callable(validate_bucket_name)
    assert "AwsKms" in envelope.kms.__all__ and "AwsKms" in dir(envelope.kms)
    assert {"S3Store", "validate_bucket_name"} <= set(envelope.storage.__all__) & set(dir(envelope.storage))
    for module in (envelope.kms, envelope.storage):
        for name in module.__all__:
            assert getattr(module, name) is not None, name
        with pytest.raises(AttributeError, match="no attribute 'Nope'"):
            _ = module.Nope  # type: ignore[attr-defined]
    # In a fresh interpreter: the package alone loads no AWS SDK; the lazy name loads it on first use.
    assert (
        _aws_sdk(_modules_after("import envelope.kms, envelope.storage, dataplane, controlplane", cwd=tmp_path)) == []
    )
    loaded = _modules_after("from envelope.kms import AwsKms\nassert AwsKms.__name__ == 'AwsKms'", cwd=tmp_path)
    assert "botocore" in loaded and "envelope.kms.aws" in loaded
    loaded = _modules_after(
        "from envelope.storage import open_store\n"
        "store = open_store('s3://bucket/prefix', s3_client=object())\n"
        "assert type(store).__name__ == 'S3Store'",
        cwd=tmp_path,
    )
    assert "envelope.storage.s3" in loaded


def test_version_loads_neither_importlib_metadata_nor_the_library(tmp_path: Path) -> None:
    code = (
        "import io, contextlib\n"
        "from envelope_cli.main import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    assert main(['--version']) == 0\n"
        "sys.stderr.write('VERSION ' + out.getvalue())\n"
    )
    loaded = _modules_after(code, cwd=tmp_path)
    for heavy in ("importlib.metadata", "typing", "json", "envelope", "dataplane", "attrs", *AWS_SDK):
        assert heavy not in loaded, heavy


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import metadata

    assert cli_main._version() == metadata.version("kms-envelope")
    assert cli_main.main(["--version"]) == 0
    assert capsys.readouterr().out == f"envelope {metadata.version('kms-envelope')}\n"


def test_dist_info_version_reads_the_first_metadata_on_the_path(tmp_path: Path) -> None:
    first, second, empty = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for directory, version in ((first, "1.2.3"), (second, "9.9.9")):
        info = directory / f"kms_envelope-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.4\nName: kms-envelope\nVersion: {version}\n\nVersion: 0\n")
    empty.mkdir()
    (empty / "other_pkg-1.0.dist-info").mkdir()
    assert (
        _dist_info_version("kms-envelope", [str(tmp_path / "missing"), str(empty), str(first), str(second)]) == "1.2.3"
    )
    assert _dist_info_version("kms-envelope", [str(second), str(first)]) == "9.9.9"
    assert _dist_info_version("kms-envelope", [str(empty)]) is None
    # A Version line after the headers (in the description) is not the version.
    body = tmp_path / "d" / "kms_envelope-0.dist-info"
    body.mkdir(parents=True)
    (body / "METADATA").write_text("Name: kms-envelope\n\nVersion: 6.6.6\n")
    assert _dist_info_version("kms-envelope", [str(tmp_path / "d")]) is None


def _choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_the_command_table_matches_the_parser() -> None:
    full = _choices(build_parser())
    assert set(full) == set(COMMAND_MODULES)
    for command, module in COMMAND_MODULES.items():
        partial = _choices(build_parser(command))
        # Exactly the commands of the module that defines this one...
        assert set(partial) == {c for c, m in COMMAND_MODULES.items() if m == module}, command
        # ... and each as the full parser has it.
        assert partial[command].format_help() == full[command].format_help(), command


def test_a_command_loads_only_its_own_modules(local: list[str], tmp_path: Path) -> None:
    loaded = _cli_modules(*local, "put", "c", "z", "f", cwd=tmp_path)
    for other in ("envelope_cli.keys", "envelope_cli.lifecycle", "envelope_cli.maintenance", "controlplane"):
        assert other not in loaded, other
    loaded = _cli_modules(*local, "key", "list", cwd=tmp_path)
    for other in ("envelope_cli.data", "envelope_cli.lifecycle", "dataplane", "controlplane"):
        assert other not in loaded, other


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["put", "c", "x", "f"], "put"),
        (["--kms", "aws", "--region", "eu-west-1", "ls", "c"], "ls"),
        (["--kms=aws", "-q", "--json", "get", "c", "x"], "get"),
        (["--reg", "put", "ls", "c"], "ls"),  # argparse takes --reg for --region, and put as its value
        (["--profile", "key", "put", "c", "x", "f"], "put"),
        (["--grant", "t", "--grant-token", "u", "verify", "c"], "verify"),
        (["-h", "put"], None),
        (["--", "put"], None),
        (["--debug"], None),
        ([], None),
    ],
)
def test_command_word_is_the_one_argparse_takes(argv: list[str], word: str | None) -> None:
    assert _command_word(argv) == word
    if word is not None:
        args, _ = build_parser().parse_known_args(argv)
        assert args.command == word


def test_each_command_module_is_importable_on_its_own() -> None:
    for module in set(COMMAND_MODULES.values()) - {"main"}:
        assert callable(importlib.import_module(f"envelope_cli.{module}").add_parsers)
