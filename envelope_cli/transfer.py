"""Copies and many-object transfers: `cp`, `put -r`, `get -r`, `rm -r`, and glob patterns for `get`/`rm`.

`cp` re-encrypts: the source object is decrypted by an authenticating
reader and streamed into an encrypting writer for the destination, and the
destination object is committed only when the writer closes cleanly, which
happens only after the reader has authenticated the source's final frame.
A bit flipped anywhere in the source, or a truncated source, aborts the
writer: nothing appears at the destination. (`get | put` cannot promise
that: `put` sees a clean end of its input when `get` stops early, and
commits the truncated plaintext.)

Every name (each NAME, each name a prefix or pattern maps to, each local
file of `put -r`) is judged before the first KMS call and before anything
is written. Many-object commands go on after a failed object, report each
failure by name, and exit with the worst cause (`worst_code`).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import stat
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, cast

from envelope.errors import EnvelopeError, ValidationError
from envelope.storage import validate_name, validate_prefix
from envelope_cli.exitcodes import CliError, ExitCode, exit_code_for, one_line
from envelope_cli.files import open_input, prepare_output
from envelope_cli.output import Output
from envelope_cli.session import Session
from envelope_cli.unbound import explained

if TYPE_CHECKING:
    from dataplane import Container

__all__ = [
    "GLOB_CHARACTERS",
    "RM_CONFIRM_ABOVE",
    "cp",
    "expand",
    "get_many",
    "is_pattern",
    "local_tree",
    "put_tree",
    "rm_many",
    "worst_code",
]

GLOB_CHARACTERS: Final = frozenset("*?[")
RM_CONFIRM_ABOVE: Final = 10
"""`rm` of more objects than this (through -r or a pattern) needs --yes; without it, it lists them."""


def is_pattern(text: str) -> bool:
    """Whether a NAME is a glob pattern (it holds *, ? or [); --literal turns patterns off."""
    return any(c in GLOB_CHARACTERS for c in text)


def _literal_head(pattern: str) -> str:
    """The longest plain prefix of a pattern, to list as few names as possible."""
    for i, c in enumerate(pattern):
        if c in GLOB_CHARACTERS:
            return pattern[:i]
    return pattern


def _fnmatch_prefix(pattern: str) -> str:
    """The listing prefix for a pattern: its plain head, if that is a valid prefix, else everything."""
    head = _literal_head(pattern)
    try:
        return validate_prefix(head) if head else ""
    except ValidationError:
        return ""


def expand(container: Container, operand: str, *, recursive: bool, literal: bool) -> list[str]:
    """The object names an operand stands for: itself, every name under it (-r), or the names it matches."""
    if recursive:
        if operand:
            validate_prefix(operand)
        return list(container.list(operand))
    if not literal and is_pattern(operand):
        # fnmatchcase: the same pattern matches the same names on every platform; * also matches "/".
        return [n for n in container.list(_fnmatch_prefix(operand)) if fnmatch.fnmatchcase(n, operand)]
    return [operand]


def check_operand(operand: str, *, recursive: bool, literal: bool) -> None:
    """Judge a NAME, PREFIX or pattern from the command line before anything is touched."""
    if recursive:
        if operand:
            validate_prefix(operand)
    elif literal or not is_pattern(operand):
        validate_name(operand)
    elif not operand or "\x00" in operand:
        raise ValidationError("a pattern must be non-empty text")


def worst_code(codes: Sequence[ExitCode]) -> ExitCode:
    """The exit code for several failures: an authentication failure outranks any other (it is what an
    operator must see); otherwise the first failure's code."""
    if not codes:
        return ExitCode.OK
    if ExitCode.AUTHENTICATION in codes:
        return ExitCode.AUTHENTICATION
    return codes[0]


class _Failures:
    """Per-object failures of a many-object command: reported by name, the sweep goes on."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.items: list[dict[str, Any]] = []
        self.codes: list[ExitCode] = []

    def add(self, name: str, exc: BaseException) -> None:
        code = exit_code_for(exc)
        self.items.append({"name": name, "error": one_line(exc), "exit_code": int(code)})
        self.codes.append(code)
        if not self.out.json:
            self.out.error(f"{name}: {one_line(exc)}")

    def finish(self, total: int, what: str) -> int:
        if not self.codes:
            return ExitCode.OK
        self.out.error(f"{len(self.codes)} of {total} object(s) failed to {what}")
        return worst_code(self.codes)


# -- cp ------------------------------------------------------------------------------------------------


def _copy_object(
    source: Container, name: str, target: Container, to_name: str, *, overwrite: bool, allow_unbound: bool
) -> int:
    """Decrypt `name` and re-encrypt it as `to_name`; committed only after the source's last frame authenticated."""
    with explained(source, name, allow_unbound=allow_unbound):
        reader = source.open_reader(name)
    with reader:
        # Authenticates the final frame first: a truncated source fails before the destination is opened.
        reader.plaintext_size()
        with target.open_writer(to_name, overwrite=overwrite) as writer:
            # The writer reads straight from the authenticating reader; an AuthenticationError on any
            # frame propagates out of this block, which aborts the writer: the destination stays empty.
            return writer.write_from(reader)


def _cp_usage(args: argparse.Namespace, message: str) -> CliError:
    return CliError(f"{message} (see `envelope cp --help`)", ExitCode.USAGE)


def cp(session: Session, out: Output, args: argparse.Namespace) -> int:
    operands: list[str] = args.operands
    if args.from_file is not None and args.to_file is not None:
        raise _cp_usage(args, "--from-file and --to-file cannot be combined")
    if args.from_file is not None:
        if len(operands) != 2 or args.recursive:
            raise _cp_usage(args, "with --from-file FILE, give DST_LOCATION NAME (and no -r)")
        return _cp_from_file(session, out, args, operands[0], operands[1])
    if args.to_file is not None:
        if len(operands) != 2 or args.recursive:
            raise _cp_usage(args, "with --to-file FILE, give SRC_LOCATION NAME (and no -r)")
        return _cp_to_file(session, out, args, operands[0], operands[1])
    if len(operands) not in (3, 4):
        raise _cp_usage(args, "give SRC_LOCATION NAME DST_LOCATION [NEW_NAME]")
    src_loc, name, dst_loc = operands[:3]
    if args.recursive:
        to_prefix = operands[3] if len(operands) == 4 else None
        return _cp_prefix(session, out, args, src_loc=src_loc, prefix=name, dst_loc=dst_loc, to_prefix=to_prefix)
    to_name = operands[3] if len(operands) == 4 else name
    validate_name(name)
    validate_name(to_name)
    if src_loc == dst_loc and name == to_name:
        raise CliError("source and destination are the same object", ExitCode.USAGE)
    source = session.open_container(src_loc)
    target = source if dst_loc == src_loc else session.open_container(dst_loc)
    size = _copy_object(source, name, target, to_name, overwrite=args.overwrite, allow_unbound=session.allow_unbound)
    out.status(
        {
            "source": source.url,
            "destination": target.url,
            "copied": [{"name": name, "to": to_name, "size": size}],
            "failed": [],
        },
        f"cp {name} -> {to_name}: {size} bytes from {source.url} to {target.url}",
    )
    return ExitCode.OK


def _map_prefix(name: str, prefix: str, to_prefix: str | None) -> str:
    return name if to_prefix is None else to_prefix + name[len(prefix) :]


def _cp_prefix(
    session: Session,
    out: Output,
    args: argparse.Namespace,
    *,
    src_loc: str,
    prefix: str,
    dst_loc: str,
    to_prefix: str | None,
) -> int:
    if prefix:
        validate_prefix(prefix)
    if to_prefix:
        validate_prefix(to_prefix)
    if src_loc == dst_loc and (to_prefix is None or to_prefix == prefix):
        raise CliError("source and destination are the same objects", ExitCode.USAGE)
    # Names first, without any key: a name that maps to an invalid destination name stops everything.
    names = list(session.browse_container(src_loc).list(prefix))
    pairs = [(n, _map_prefix(n, prefix, to_prefix)) for n in names]
    bad = []
    for n, to in pairs:
        try:
            validate_name(to)
        except ValidationError as e:
            bad.append(f"{n!r} -> {e}")
    if bad:
        raise ValidationError("invalid destination name(s), nothing copied: " + "; ".join(bad))
    source = session.open_container(src_loc)
    target = source if dst_loc == src_loc else session.open_container(dst_loc)
    copied: list[dict[str, Any]] = []
    failures = _Failures(out)
    for n, to in pairs:
        try:
            size = _copy_object(source, n, target, to, overwrite=args.overwrite, allow_unbound=session.allow_unbound)
        except EnvelopeError as e:
            failures.add(n, e)
            continue
        copied.append({"name": n, "to": to, "size": size})
        if not out.json:
            out.status(None, f"cp {n} -> {to}: {size} bytes")
    code = failures.finish(len(pairs), "copy")
    out.status(
        {"source": source.url, "destination": target.url, "copied": copied, "failed": failures.items},
        f"copied {len(copied)} of {len(pairs)} object(s) from {source.url} to {target.url}",
    )
    return code


def _cp_from_file(session: Session, out: Output, args: argparse.Namespace, dst_loc: str, name: str) -> int:
    validate_name(name)
    with open_input(args.from_file) as (source, _size):
        target = session.open_container(dst_loc)
        with target.open_writer(name, overwrite=args.overwrite) as writer:
            size = writer.write_from(cast(Any, source))
    out.status(
        {"source": args.from_file, "destination": target.url, "copied": [{"name": name, "size": size}], "failed": []},
        f"cp {args.from_file} -> {name}: {size} bytes into {target.url}",
    )
    return ExitCode.OK


def _cp_to_file(session: Session, out: Output, args: argparse.Namespace, src_loc: str, name: str) -> int:
    validate_name(name)
    if args.to_file == "-":
        raise CliError("--to-file needs a file; to stream to stdout use `envelope get`", ExitCode.USAGE)
    with prepare_output(args.to_file, overwrite=args.overwrite) as target:
        source = session.open_container(src_loc)
        size = _get_to(source, name, target, allow_unbound=session.allow_unbound)
    out.status(
        {"source": source.url, "destination": args.to_file, "copied": [{"name": name, "size": size}], "failed": []},
        f"cp {name} -> {args.to_file}: {size} bytes from {source.url}",
    )
    return ExitCode.OK


def _get_to(container: Container, name: str, target: Any, *, allow_unbound: bool) -> int:
    """Decrypt `name` into an OutputTarget (which appears only once every frame authenticated)."""
    from envelope_cli.data import copy_out

    with explained(container, name, allow_unbound=allow_unbound):
        reader = container.open_reader(name)
    with reader:
        size = reader.plaintext_size()
        with target.open(size) as sink:
            return copy_out(reader, sink, lambda _n: None)


# -- put -r ----------------------------------------------------------------------------------------------


def local_tree(directory: str, prefix: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(object name, file path) for every regular file under `directory`, sorted, and the paths skipped.

    Symbolic links and special files are skipped (listed, not followed): a link planted in the
    tree must not pull a file from elsewhere into the container."""
    st = os.stat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(20, "Not a directory", directory)
    files: list[tuple[str, str]] = []
    skipped: list[str] = []
    for root, dirs, names in os.walk(directory, followlinks=False):
        dirs.sort()
        for d in list(dirs):
            if os.path.islink(os.path.join(root, d)):
                skipped.append(os.path.join(root, d))
                dirs.remove(d)
        for leaf in sorted(names):
            path = os.path.join(root, leaf)
            if not stat.S_ISREG(os.lstat(path).st_mode):
                skipped.append(path)
                continue
            relative = os.path.relpath(path, directory).replace(os.sep, "/")
            files.append((prefix + relative, path))
    files.sort()
    return files, skipped


def put_tree(session: Session, out: Output, args: argparse.Namespace) -> int:
    directory, prefix = args.name, args.file or ""
    if prefix:
        validate_prefix(prefix)
    files, skipped = local_tree(directory, prefix)
    bad = []
    for name, path in files:
        try:
            validate_name(name)
        except ValidationError as e:
            bad.append(f"{path}: {e}")
    if bad:
        raise ValidationError("file(s) whose names cannot be object names, nothing stored: " + "; ".join(bad))
    for path in skipped:
        out.note(f"skipped {path}: not a regular file (links are not followed)")
    container = session.open_container(args.location)
    stored: list[dict[str, Any]] = []
    failures = _Failures(out)
    for name, path in files:
        try:
            # O_NOFOLLOW: a file swapped for a link since the walk is refused, not followed.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as source, container.open_writer(name, overwrite=args.overwrite) as w:
                size = w.write_from(cast(Any, source))
        except (EnvelopeError, OSError) as e:
            failures.add(name, e)
            continue
        stored.append({"name": name, "file": path, "size": size})
        if not out.json:
            out.status(None, f"put {name}: {size} bytes from {path}")
    code = failures.finish(len(files), "store")
    out.status(
        {"location": container.url, "stored": stored, "failed": failures.items, "skipped": skipped},
        f"stored {len(stored)} of {len(files)} file(s) in {container.url}",
    )
    return code


# -- get -r, get PATTERN, get -o DIR/ -------------------------------------------------------------------------


def local_path(directory: str, name: str, base: str) -> str:
    """Where object `name` goes under `directory`: its name less `base`, one directory per segment."""
    relative = name[len(base) :] if name.startswith(base) else name
    return os.path.join(directory, *relative.split("/"))


def _base_of(operand: str, *, recursive: bool, literal: bool) -> str:
    """The part of each name that `get -o DIR/` drops: everything up to the operand's last / before any
    glob character (`logs/2024/*.gz` -> `logs/2024/`; `-r logs/` -> `logs/`; `a/b.txt` -> `a/`)."""
    head = operand if (recursive or literal) else _literal_head(operand)
    cut = head.rfind("/")
    return head[: cut + 1]


def get_many(session: Session, out: Output, args: argparse.Namespace) -> int:
    """`get -r LOC PREFIX -o DIR`, `get LOC 'PATTERN' -o DIR`, and `get LOC NAME -o DIR/`."""
    directory = args.output
    if directory in ("-", None):
        raise CliError("several objects need -o DIRECTORY", ExitCode.USAGE)
    if not os.path.isdir(directory) and (directory.endswith("/") or args.recursive or is_pattern(args.name)):
        raise FileNotFoundError(2, "No such directory", directory)
    check_operand(args.name, recursive=args.recursive, literal=args.literal)
    browse = session.browse_container(args.location)
    names = expand(browse, args.name, recursive=args.recursive, literal=args.literal)
    for n in names:
        validate_name(n)
    if not names and (args.recursive or (not args.literal and is_pattern(args.name))):
        out.note(f"no object matches {args.name!r}")
    base = _base_of(args.name, recursive=args.recursive, literal=args.literal)
    container = session.open_container(args.location) if names else browse
    written: list[dict[str, Any]] = []
    failures = _Failures(out)
    for n in names:
        path = local_path(directory, n, base)
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with prepare_output(path, overwrite=args.overwrite) as target:
                size = _get_to(container, n, target, allow_unbound=session.allow_unbound)
        except (EnvelopeError, OSError) as e:
            failures.add(n, e)
            continue
        written.append({"name": n, "output": path, "size": size})
        if not out.json:
            out.status(None, f"get {n}: {size} bytes to {path}")
    code = failures.finish(len(names), "decrypt")
    if len(names) != 1 or code or out.json:
        out.status(
            {"location": container.url, "written": written, "failed": failures.items},
            f"wrote {len(written)} of {len(names)} object(s) from {container.url} to {directory}",
        )
    return code


def wants_many(args: argparse.Namespace) -> bool:
    """Whether `get` names several objects (or a directory to write into)."""
    if args.recursive or (not args.literal and is_pattern(args.name)):
        return True
    # Only a trailing / says "into": `-o out` where out is a directory stays an error (exit 7), as it was.
    out = args.output
    return out is not None and out.endswith("/")


# -- rm -r, rm PATTERN -----------------------------------------------------------------------------------


def rm_many(session: Session, out: Output, args: argparse.Namespace) -> int:
    """`rm` of names, patterns (fnmatch) and, with -r, prefixes; more than RM_CONFIRM_ABOVE needs --yes."""
    for operand in args.names:
        check_operand(operand, recursive=args.recursive, literal=args.literal)
    container = session.browse_container(args.location)
    names: list[str] = []
    seen: set[str] = set()
    for operand in args.names:
        for n in expand(container, operand, recursive=args.recursive, literal=args.literal):
            if n not in seen:
                seen.add(n)
                names.append(n)
    if len(names) > RM_CONFIRM_ABOVE and not args.yes:
        out.result(
            {"location": container.url, "would_remove": names, "removed": []},
            "\n".join(f"would remove {n}" for n in names),
        )
        raise CliError(
            f"{len(names)} objects match (more than {RM_CONFIRM_ABOVE}): nothing removed; pass --yes to remove them",
            ExitCode.USAGE,
        )
    removed: list[str] = []
    failures = _Failures(out)
    for n in names:
        try:
            container.delete(n)
        except EnvelopeError as e:
            failures.add(n, e)
            continue
        removed.append(n)
        if not out.json:
            out.status(None, f"removed {n}")
    code = failures.finish(len(names), "remove")
    if out.json:
        out.document({"location": container.url, "removed": removed, "failed": failures.items})
    return code
