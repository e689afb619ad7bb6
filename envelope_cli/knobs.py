"""Throughput knobs: `--threads`, `--frame-length`, `--upload-concurrency`, and their ENVELOPE_* variables.

Each is offered only by the commands it changes: `--threads` by those that
decrypt or encrypt a stream (`put`, `get`, `cp`, `verify`, `rekey`),
`--frame-length` by those that write a new message (`put`, `cp`; `rekey`
keeps each object's own), `--upload-concurrency` by those that upload
(`put`, `cp`, `rekey`), and it applies to `s3://` locations only: given on
the command line to a command with no `s3://` location it is a usage error,
while from the environment it is then simply not used (a variable is a
default for every command, local ones included).

Every value is judged before the command touches anything (no storage
request, no KMS call), with the bounds of the library (`DataPlane`,
`S3Store`), and a bad one is a usage error naming the option or variable.
An option on the command line wins over its variable; neither: the
library's default.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from envelope.errors import ValidationError
from envelope_cli.exitcodes import CliError, ExitCode

__all__ = [
    "FRAME_LENGTH_ENV",
    "THREADS_ENV",
    "UPLOAD_CONCURRENCY_ENV",
    "Knobs",
    "add_knobs",
    "parse_size",
]

THREADS_ENV: Final = "ENVELOPE_THREADS"
FRAME_LENGTH_ENV: Final = "ENVELOPE_FRAME_LENGTH"
UPLOAD_CONCURRENCY_ENV: Final = "ENVELOPE_UPLOAD_CONCURRENCY"

_UNITS: Final = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}
_SIZE: Final = re.compile(r"\A([0-9]{1,12})\s?([A-Za-z]*)\Z")


def parse_size(text: str) -> int:
    """`65536`, `64KiB`, `1MiB`, `1 MiB` (binary units, any case) -> bytes; ValidationError otherwise.

    `KB`/`MB` are refused rather than guessed: they mean 1000 to some and 1024 to others."""
    match = _SIZE.match(text.strip())
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValidationError("must be a size in bytes, or with a binary unit: 65536, 64KiB, 1MiB")
    return int(match.group(1)) * _UNITS[unit]


def _count(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,6}", text.strip()):
        raise ValidationError("must be a whole number")
    return int(text)


def add_knobs(
    parser: argparse.ArgumentParser, *, threads: bool = True, frame_length: bool = False, upload: bool = False
) -> None:
    """Add the knobs a command takes to its parser (judged later, by `Knobs.from_args`)."""
    group = parser.add_argument_group("throughput (defaults: the library's; see docs/cli.md)")
    if threads:
        group.add_argument(
            "--threads",
            metavar="N",
            help=f"threads that encrypt or decrypt each stream, 1..64 (default: ${THREADS_ENV}, else 1)",
        )
    if frame_length:
        group.add_argument(
            "--frame-length",
            metavar="SIZE",
            help="frame length of new objects: a multiple of 16 bytes up to 16MiB, e.g. 64KiB, 1MiB "
            f"(default: ${FRAME_LENGTH_ENV}, else 1MiB)",
        )
    if upload:
        group.add_argument(
            "--upload-concurrency",
            metavar="N",
            help="s3:// only: multipart part uploads in flight per object, 1..16 "
            f"(default: ${UPLOAD_CONCURRENCY_ENV}, else 4)",
        )


@dataclass(frozen=True)
class Knobs:
    """The knobs a command was given (None: the library's default)."""

    threads: int | None = None
    frame_length: int | None = None
    upload_concurrency: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Knobs:
        """Judge the knobs of `args` (options, else variables) against the library's bounds; CliError(USAGE)
        naming the option or variable. Only the knobs the command offers are read."""
        from dataplane.hazmat import check_frame_length, check_threads

        threads = _judged(args, "threads", THREADS_ENV, _count, check_threads)
        frame_length = _judged(args, "frame_length", FRAME_LENGTH_ENV, parse_size, check_frame_length)
        concurrency = _judged(args, "upload_concurrency", UPLOAD_CONCURRENCY_ENV, _count, None)
        if concurrency is not None:
            concurrency = _upload_concurrency(args, concurrency)
        return cls(threads=threads, frame_length=frame_length, upload_concurrency=concurrency)

    def plane_options(self) -> dict[str, Any]:
        """Keyword arguments for DataPlane: the knobs that were set (the others keep its defaults)."""
        options = {"threads": self.threads, "frame_length": self.frame_length}
        return {name: value for name, value in options.items() if value is not None}


def _source(args: argparse.Namespace, dest: str, variable: str) -> tuple[str, str] | None:
    """(text, where it came from) for a knob: the option, else its variable; None when neither is set."""
    if not hasattr(args, dest):
        return None  # the command does not offer it
    text = getattr(args, dest)
    if text is not None:
        return str(text), "--" + dest.replace("_", "-")
    text = os.environ.get(variable)
    if text is None or not text.strip():
        return None
    return text, f"${variable}"


def _judged(
    args: argparse.Namespace,
    dest: str,
    variable: str,
    parse: Callable[[str], int],
    check: Callable[[int], object] | None,
) -> int | None:
    """The knob's value, parsed and checked; CliError(USAGE) naming where a bad value came from."""
    found = _source(args, dest, variable)
    if found is None:
        return None
    text, where = found
    try:
        value = parse(text)
        if check is not None:
            check(value)
    except ValidationError as e:
        raise CliError(f"{where} {text!r}: {e}", ExitCode.USAGE) from None
    return value


def _s3_locations(args: argparse.Namespace) -> list[str]:
    words = [getattr(args, "location", None), *(getattr(args, "operands", None) or ())]
    return [w for w in words if isinstance(w, str) and w[:5].lower() == "s3://"]


def _upload_concurrency(args: argparse.Namespace, value: int) -> int | None:
    from_flag = getattr(args, "upload_concurrency", None) is not None
    if not _s3_locations(args):
        if from_flag:
            raise CliError(
                "--upload-concurrency applies to s3:// locations only (S3 multipart uploads); this command "
                "names no s3:// location",
                ExitCode.USAGE,
            )
        return None  # a default from the environment: nothing here uploads
    from envelope.storage.s3 import MAX_UPLOAD_CONCURRENCY  # botocore: loaded for s3:// anyway

    if not 1 <= value <= MAX_UPLOAD_CONCURRENCY:
        where = "--upload-concurrency" if from_flag else f"${UPLOAD_CONCURRENCY_ENV}"
        raise CliError(f"{where} '{value}': must be in 1..{MAX_UPLOAD_CONCURRENCY}", ExitCode.USAGE)
    return value
