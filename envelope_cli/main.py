"""The `envelope` command: argument parsing, dispatch, and turning failures into exit codes.

Global options may be given before or after the subcommand. Each command
runs against one plane (or the local keystore); every failure ends as one
line on stderr and an exit code from `envelope_cli.exitcodes` (--debug adds
the traceback). Nothing here prints key material.
"""

from __future__ import annotations

import argparse
import os
import sys

# Start-up time: `envelope --version` must cost little more than the interpreter itself, so this module
# imports only what parsing needs; everything else (typing included, 2 ms) is imported where it is used.
TYPE_CHECKING = False  # mypy and ruff treat this name as typing.TYPE_CHECKING
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from envelope_cli.output import Output

KEYSTORE_ENV = "ENVELOPE_KEYSTORE"

__all__ = ["build_parser", "main"]

# Global options default to SUPPRESS in the parsers, so that an option given after the
# subcommand is not overwritten by the top-level parser's default; these are applied after.
GLOBAL_DEFAULTS: dict[str, object] = {
    "kms": "local",
    "region": None,
    "profile": None,
    "endpoint_url": None,
    "grant_token": None,
    "json": False,
    "quiet": False,
    "debug": False,
}

# Environment defaults for global options: an option on the command line wins over its variable.
ENVIRONMENT: dict[str, str] = {
    "kms": "ENVELOPE_KMS",
    "region": "ENVELOPE_REGION",
    "endpoint_url": "ENVELOPE_ENDPOINT_URL",
}

GLOBAL_POINTER = (
    "Global options (--kms, --region, --profile, --endpoint-url, --grant-token, --json, -q, --debug) "
    "are accepted before or after the command: see `envelope --help`."
)

EPILOG = f"""\
exit codes:
  0 success            1 other error         2 usage error          3 authentication failure
  4 not found          5 already exists      6 KMS error            7 storage or I/O error
  8 format error     130 interrupted       141 stdout closed early    143 terminated (SIGTERM)

The local keystore defaults to ${KEYSTORE_ENV}, else ~/.envelope/keystore.
See docs/cli.md for every command, and for how `get` to stdout streams."""


DISTRIBUTION = "kms-envelope"


def _version() -> str:
    """The installed version, from the distribution's METADATA; importlib.metadata (~20 ms to import) only
    when there is no `.dist-info` directory on sys.path to read it from."""
    version = _dist_info_version(DISTRIBUTION, sys.path)
    if version is not None:
        return version
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _dist_info_version(distribution: str, path: Sequence[str]) -> str | None:
    """`Version:` of the first `<name>-<version>.dist-info/METADATA` on `path` (the one importlib.metadata
    would find first), or None."""
    stem = distribution.replace("-", "_").lower() + "-"
    for entry in path:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:  # not a directory (a zip file), or gone
            continue
        for name in names:
            if not (name.lower().startswith(stem) and name.endswith(".dist-info")):
                continue
            try:
                with open(os.path.join(entry or ".", name, "METADATA"), encoding="utf-8") as f:
                    for line in f:
                        if line.startswith("Version:"):
                            return line[len("Version:") :].strip() or None
                        if not line.strip():  # the end of the headers
                            break
            except OSError:
                continue
    return None


def _global_options(*, shown: bool = True) -> argparse.ArgumentParser:
    """The global options; `shown=False`: the same options, accepted but left out of a subcommand's help."""
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    group = common.add_argument_group("global options (before or after the command)")

    def add(*names: str, **kwargs: Any) -> None:
        if not shown:
            kwargs["help"] = argparse.SUPPRESS
        group.add_argument(*names, **kwargs)

    g = argparse.Namespace(add_argument=add)
    g.add_argument(
        "--kms",
        metavar="local[:PATH]|aws",
        help="local: the development keystore (default; PATH defaults to $ENVELOPE_KEYSTORE or "
        "~/.envelope/keystore); aws: AWS KMS (default: $ENVELOPE_KMS, else local)",
    )
    g.add_argument("--region", help="AWS region for KMS and S3 (default: $ENVELOPE_REGION, else AWS's own)")
    g.add_argument("--profile", help="AWS profile for KMS and S3")
    g.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="endpoint for KMS and S3: emulators, VPC endpoints (default: $ENVELOPE_ENDPOINT_URL, else "
        "AWS's own: $AWS_ENDPOINT_URL...)",
    )
    g.add_argument(
        "--grant-token",
        metavar="TOKEN",
        action="append",
        help="KMS grant token for create and data-key Decrypt (repeatable)",
    )
    g.add_argument("--json", action="store_true", help="print results as one JSON document")
    g.add_argument("-q", "--quiet", action="store_true", help="no status lines, no progress bar")
    g.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return common


# Which module defines each command, so that a command builds (and imports) only its own module's parsers;
# tests/test_cli_startup.py checks this table against the full parser.
COMMAND_MODULES: dict[str, str] = {
    "key": "keys",
    "create": "control",
    "describe": "control",
    "containers": "control",
    "cp": "data",
    "put": "data",
    "get": "data",
    "ls": "data",
    "rm": "data",
    "inspect": "data",
    "verify": "data",
    "rotate": "lifecycle",
    "generations": "lifecycle",
    "rekey": "lifecycle",
    "retire": "lifecycle",
    "gc": "maintenance",
    "completion": "main",
}
_MODULE_ORDER = ("keys", "control", "data", "lifecycle", "maintenance", "main")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `command` (a word of COMMAND_MODULES), only the parsers of the module that
    defines it (the other commands' modules, and the library they import, are then never loaded)."""
    import importlib

    wanted = _MODULE_ORDER if command not in COMMAND_MODULES else (COMMAND_MODULES[command],)
    parser = argparse.ArgumentParser(
        prog="envelope",
        parents=[_global_options()],
        description="Envelope encryption with AWS KMS: a control plane that provisions containers\n"
        "without ever seeing a key, and a data plane that streams objects in and out of them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Subcommands accept every global option but list them once, in `envelope --help`.
    common = _global_options(shown=False)
    for name in wanted:
        if name == "main":
            add_completion_parser(commands, common)
        else:
            # The command modules (and through them the library) are loaded here, not at import.
            importlib.import_module(f"envelope_cli.{name}").add_parsers(commands, common)
    _describe_subcommands(parser)
    return parser


class _VersionAction(argparse.Action):
    """--version, with the version looked up only when asked for (importlib.metadata is slow to import)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(f"envelope {_version()}")
        parser.exit()


def _describe_subcommands(parser: argparse.ArgumentParser) -> None:
    """Every subcommand gets a description (its one-line help when it has none) and the global-options pointer."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help for a in action._choices_actions}
        for name, sub in action.choices.items():
            if not sub.description and helps.get(name):
                text = str(helps[name])
                sub.description = text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")
            if not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                sub.epilog = f"{sub.epilog}\n\n{GLOBAL_POINTER}" if sub.epilog else GLOBAL_POINTER
            _describe_subcommands(sub)


def add_completion_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "completion",
        parents=[common],
        help="print a shell completion script (bash or zsh), generated from this parser",
        description="Print a completion script for SHELL, generated from the command's own parser by shtab "
        '(the [cli] extra). Load it with `eval "$(envelope completion bash)"` in ~/.bashrc, or save the zsh '
        "one as _envelope in a directory on $fpath.",
    )
    p.add_argument("shell", metavar="SHELL", choices=("bash", "zsh"), help="bash or zsh")
    p.set_defaults(run=_completion)


def _completion(session: object, out: Output, args: argparse.Namespace) -> int:
    try:
        import shtab
    except ImportError:
        from envelope_cli.exitcodes import CliError, ExitCode

        raise CliError(
            "shell completion needs the shtab package: pip install 'kms-envelope[cli]'", ExitCode.ERROR
        ) from None
    script: str = shtab.complete(build_parser(), shell=args.shell)
    sys.stdout.write(script if script.endswith("\n") else script + "\n")
    return 0


def _run(args: argparse.Namespace, out: Output) -> int:
    from envelope_cli.session import Session, parse_kms
    from envelope_cli.trust import TrustOptions

    choice = parse_kms(args.kms)
    session = Session(
        choice,
        region=args.region,
        profile=args.profile,
        endpoint_url=args.endpoint_url,
        grant_tokens=args.grant_token or (),
    )
    # Only the data commands have trust options; they are judged before anything is touched.
    if hasattr(args, "trusted_keys"):
        session.trust = TrustOptions.from_args(args, choice.kind)
    session.allow_unbound = bool(getattr(args, "allow_unbound", False))
    # The throughput knobs too: a bad --threads or $ENVELOPE_FRAME_LENGTH costs no request.
    if hasattr(args, "threads"):
        from envelope_cli.knobs import Knobs

        session.knobs = Knobs.from_args(args)
    code: int = args.run(session, out, args)
    return code


# Global options that take a value, for `_asks_version` and `_command_word`.
_VALUED = frozenset({"--kms", "--region", "--profile", "--endpoint-url", "--grant-token"})


def _command_word(argv: Sequence[str]) -> str | None:
    """The command argparse will take from argv: the first word that is neither a global option nor its
    value (an abbreviated `--reg us-east-1` included, as argparse accepts it). None when there is none,
    or a help option or `--` comes first: the full parser then handles (and explains) it."""
    words = iter(argv)
    for word in words:
        if word in ("--", "-h", "--help"):
            return None
        if not word.startswith("-"):
            return word
        if "=" not in word and any(option.startswith(word) for option in _VALUED if word.startswith("--")):
            next(words, None)
    return None


def _asks_version(argv: Sequence[str]) -> bool:
    """`envelope [global options] --version`: answered without building the parser (start-up time).

    True only when --version comes before any command word, help option or `--`, as argparse would
    act on it there; anything else goes through the full parser."""
    words = iter(argv)
    for word in words:
        if word == "--version":
            return True
        if word in _VALUED:
            next(words, None)
        elif not word.startswith("-") or word in ("--", "-h", "--help") or word.startswith("--version="):
            return False
    return False


def main(argv: Sequence[str] | None = None) -> int:
    if _asks_version(sys.argv[1:] if argv is None else argv):
        print(f"envelope {_version()}")
        return 0
    from envelope_cli.exitcodes import exit_code_for, one_line
    from envelope_cli.output import Output

    parser = build_parser(_command_word(sys.argv[1:] if argv is None else argv))
    args, extras = parser.parse_known_args(argv)
    extras = _fill_late_positionals(args, extras)
    if extras:
        # The subcommand's own usage, not the top-level one, says what `envelope put` takes.
        _innermost_parser(parser, args).error(f"unrecognized arguments: {' '.join(extras)}")
    for name, default in GLOBAL_DEFAULTS.items():
        if not hasattr(args, name):
            variable = ENVIRONMENT.get(name)
            setattr(args, name, os.environ.get(variable) or default if variable else default)
    out = Output(json_output=args.json, quiet=args.quiet)
    previous = _on_sigterm_raise()
    try:
        return _run(args, out)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every failure becomes an exit code
        code = exit_code_for(e)
        if isinstance(e, BrokenPipeError):
            _silence_stdout()
            return code
        if args.debug:
            import traceback

            traceback.print_exc()
        message = one_line(e)
        if not isinstance(e, KeyboardInterrupt):
            message = f"{_operation(args)}: {message}"
        out.error(message)
        return code
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


def _fill_late_positionals(args: argparse.Namespace, extras: list[str]) -> list[str]:
    """An optional positional (put's FILE) given after an option (`put C x --overwrite -`): argparse has
    already matched it as absent and left the word over; a command lists such positionals in `late`."""
    for dest in getattr(args, "late", ()):
        if extras and getattr(args, dest, None) is None and (extras[0] == "-" or not extras[0].startswith("-")):
            setattr(args, dest, extras[0])
            extras = extras[1:]
    return extras


def _operation(args: argparse.Namespace) -> str:
    """The command as the user gave it, for error messages: `get s3://b/c`, `key describe alias/x`."""
    words = [args.command]
    if getattr(args, "key_command", None):
        words.append(args.key_command)
        operand = getattr(args, "key", None)
    else:
        operands = getattr(args, "operands", None) or [None]
        operand = getattr(args, "location", None) or getattr(args, "root", None) or operands[0]
    if operand is not None:
        words.append(operand)
    return " ".join(words)


def _innermost_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser of the command that was given: `envelope key create ...` -> key create's."""
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        chosen = getattr(args, sub.dest, None) if sub is not None else None
        if sub is None or chosen is None or chosen not in sub.choices:
            return parser
        parser = sub.choices[chosen]


def _raise_terminated(signum: int, frame: object) -> None:
    from envelope_cli.exitcodes import Terminated

    raise Terminated


def _on_sigterm_raise() -> Any:
    """Make SIGTERM unwind like Ctrl-C, so a killed `get -o` removes its temp file and a
    killed `put` aborts its upload. Returns the previous handler (None off the main thread)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
