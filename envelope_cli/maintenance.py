"""`envelope gc`: find, and with --yes remove, temp files that crashed writers left behind.

Two kinds, both named `.<name>.<16 hex>.tmp`, both locked by a live writer
(so a file being written is never touched), both only removed once older
than `--older-than` (default 1h):

- a local container's (`put` killed mid-object): removed by the storage
  layer's own `cleanup_stale_temp_files`;
- `get -o`'s, in one output directory (`--temp-files DIR`), which only exist
  where the filesystem lacks O_TMPFILE (docs/cli.md).

S3 containers have no temp files; an interrupted multipart upload is
invisible and is ended by the bucket's `AbortIncompleteMultipartUpload`
lifecycle rule, which this command does not replace. Dry run by default:
nothing is removed without --yes. Nothing here reads or decrypts an object.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from envelope.containers import read_container_header
from envelope.storage import LocalStore
from envelope_cli.exitcodes import CliError, ExitCode
from envelope_cli.files import stale_temp_files
from envelope_cli.output import Output
from envelope_cli.session import Session

__all__ = ["add_parsers", "parse_duration"]

_DURATION = re.compile(r"\A([0-9]{1,9})([smhd]?)\Z")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """`90`, `90s`, `30m`, `2h`, `7d` into seconds; a usage error otherwise."""
    m = _DURATION.match(text)
    if m is None:
        raise CliError(f"--older-than takes a duration such as 90s, 30m, 2h or 7d, not {text!r}", ExitCode.USAGE)
    return int(m.group(1)) * _SECONDS[m.group(2)]


def gc(session: Session, out: Output, args: argparse.Namespace) -> int:
    older_than = parse_duration(args.older_than)
    if (args.location is None) == (args.temp_files is None):
        raise CliError("give either a container LOCATION or --temp-files DIR", ExitCode.USAGE)
    if args.temp_files is not None:
        directory = args.temp_files
        stale = stale_temp_files(directory, older_than, remove=args.yes)
        where: dict[str, Any] = {"directory": directory}
        removed = len(stale) if args.yes else 0
    else:
        if args.location.startswith("s3://"):
            raise CliError(
                "gc cleans local containers only: an S3 container has no temp files, and an interrupted "
                "upload is ended by the bucket's AbortIncompleteMultipartUpload lifecycle rule "
                "(docs/operations.md)",
                ExitCode.USAGE,
            )
        store = session.store(args.location)
        assert isinstance(store, LocalStore)
        read_container_header(store)  # only ever a container's directory: ContainerNotFoundError otherwise
        stale = [str(store.path / name) for name in store.stale_temp_files(older_than, remove=args.yes)]
        where = {"location": store.url}
        removed = len(stale) if args.yes else 0
    place = where.get("location", where.get("directory"))
    if args.yes:
        text = f"removed {removed} stale temp file(s) in {place}"
    else:
        text = "\n".join([*stale, f"{len(stale)} stale temp file(s) in {place}; pass --yes to remove them"])
    out.status({**where, "stale": stale, "removed": removed}, text)
    return ExitCode.OK


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "gc",
        parents=[common],
        help="list (or with --yes remove) temp files crashed writers left behind",
        description="Temp files of crashed `put`s in a local container, or of crashed `get -o`s in DIR "
        "(--temp-files; only where the filesystem lacks O_TMPFILE). Dry run unless --yes; files a live "
        "writer holds, or newer than --older-than, are never removed.",
    )
    p.add_argument("location", metavar="LOCATION", nargs="?", help="a local container")
    p.add_argument("--temp-files", metavar="DIR", help="instead: get -o's temp files in DIR (not recursive)")
    p.add_argument("--older-than", metavar="DURATION", default="1h", help="e.g. 90s, 30m, 2h, 7d (default 1h)")
    p.add_argument("--yes", action="store_true", help="remove them (default: only list)")
    p.set_defaults(run=gc)
