"""Data-plane commands: `put`, `get`, `ls`, `rm`, `inspect`, `verify`.

`put`, `get` and `verify` open the container with its data key (one KMS
Decrypt). `ls`, `rm` and `inspect` need no key and make no KMS call. Every
command judges its NAMEs (or PREFIX) before it touches the location, so a
bad name costs no storage or KMS request and changes nothing.

Plaintext only ever flows between the caller's file or pipe and the data
plane's streams, through one reused buffer that is zeroed afterwards. `get`
to a file is atomic (see `envelope_cli.files`); `get` to standard output
streams, so a frame that fails authentication after earlier frames were
written ends the output early with exit code 3 and a message on stderr:
the reader of the pipe must treat such output as incomplete.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Protocol, cast

from envelope.errors import AuthenticationError, EnvelopeError
from envelope.header import SUITE_ID
from envelope.storage import validate_name, validate_prefix
from envelope_cli import transfer
from envelope_cli.control import header_document
from envelope_cli.exitcodes import CliError, ExitCode, exit_code_for, one_line
from envelope_cli.files import open_input, prepare_output
from envelope_cli.knobs import add_knobs
from envelope_cli.output import Output
from envelope_cli.progress import transfer_progress
from envelope_cli.session import Session
from envelope_cli.trust import trust_parent
from envelope_cli.unbound import explained

if TYPE_CHECKING:
    from dataplane import Container, ObjectInfo, VerifyResult

__all__ = ["COPY_BUFFER", "add_parsers", "copy_out"]

COPY_BUFFER = 1024 * 1024
_CONTENT_TYPES = {1: "non-framed", 2: "framed"}


class _Writable(Protocol):
    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...


class _ReadableInto(Protocol):
    def readinto(self, buffer: memoryview, /) -> int: ...


class _CountedSource:
    """Passes reads through from the input, reporting progress (readinto: no buffer per read)."""

    def __init__(self, source: _ReadableInto, tick: Callable[[int], None]) -> None:
        self._source = source
        self._tick = tick

    def readinto(self, buffer: memoryview) -> int:
        n = self._source.readinto(buffer)
        self._tick(n)
        return n


def put(session: Session, out: Output, args: argparse.Namespace) -> int:
    if args.recursive:
        return transfer.put_tree(session, out, args)
    if args.file is None:
        # No default: reading the terminal because FILE was forgotten (or taken for an option) is never meant.
        args.parser.error("the following arguments are required: FILE")
    validate_name(args.name)
    with open_input(args.file) as (source, size):
        container = session.open_container(args.location)
        source_name = "stdin" if args.file == "-" else args.file
        if args.file == "-" and sys.stdin.isatty():
            out.note(f"reading {args.name} from the terminal; end with Ctrl-D")
        with (
            transfer_progress(size, description=f"put {args.name}", quiet=out.quiet) as tick,
            container.open_writer(args.name, overwrite=args.overwrite) as writer,
        ):
            # The writer reads straight into its frame buffers: one copy of the plaintext, no allocation.
            written = writer.write_from(_CountedSource(cast(_ReadableInto, source), tick))
    encrypted = container.size(args.name)
    out.status(
        {"location": container.url, "name": args.name, "size": written, "encrypted_size": encrypted},
        f"put {args.name}: {written} bytes from {source_name} ({encrypted} bytes encrypted) in {container.url}",
    )
    return ExitCode.OK


def _write_all(sink: _Writable, data: memoryview) -> None:
    # A buffered pipe write can come back short when the reader goes away mid-write (the
    # next write then fails with EPIPE); never let the rest of a frame vanish silently.
    while data:
        data = data[sink.write(data) :]


def copy_out(reader: _ReadableInto, sink: _Writable, tick: Callable[[int], None]) -> int:
    """Copy verified plaintext, one buffer of whole frames at a time, then zero the buffer."""
    buffer = bytearray(COPY_BUFFER)
    view = memoryview(buffer)
    total = 0
    try:
        while n := reader.readinto(view):
            _write_all(sink, view[:n])
            total += n
            tick(n)
    finally:
        view.release()
        buffer[:] = bytes(len(buffer))
    return total


def get(session: Session, out: Output, args: argparse.Namespace) -> int:
    if transfer.wants_many(args):
        return transfer.get_many(session, out, args)
    validate_name(args.name)
    if args.output is None:
        if sys.stdout.isatty():
            # Plaintext on a terminal is seldom meant (and can carry escape sequences): say so, like age.
            raise CliError(
                "refusing to write plaintext to a terminal: pass -o FILE, or -o - to print it anyway",
                ExitCode.USAGE,
            )
        args.output = "-"
    # The output is judged before anything is decrypted: a refused symlink or an existing file costs no KMS call.
    target = None if args.output == "-" else prepare_output(args.output, overwrite=args.overwrite)
    with target or nullcontext():
        container = session.open_container(args.location)
        with explained(container, args.name, allow_unbound=session.allow_unbound):
            reader = container.open_reader(args.name)
        with reader:
            # Authenticates the final frame up front, so a truncated object fails before any output.
            size = reader.plaintext_size()
            with transfer_progress(size, description=f"get {args.name}", quiet=out.quiet) as tick:
                if target is None or target.is_stdout:
                    return _get_to_stdout(reader, tick, args.name)
                with target.open(size) as sink:
                    total = copy_out(reader, sink, tick)
    out.status(
        {"location": container.url, "name": args.name, "size": total, "output": args.output},
        f"get {args.name}: {total} bytes to {args.output}",
    )
    return ExitCode.OK


def _get_to_stdout(reader: _ReadableInto, tick: Callable[[int], None], name: str) -> int:
    stdout = sys.stdout.buffer
    written = 0

    def counting(n: int) -> None:
        nonlocal written
        written += n
        tick(n)

    try:
        copy_out(reader, stdout, counting)
        stdout.flush()
    except AuthenticationError as e:
        stdout.flush()
        if written:
            raise AuthenticationError(
                f"{e} (object {name!r}: {written} bytes were already written to standard output; "
                "they are incomplete: discard them)"
            ) from e
        raise
    return ExitCode.OK


def ls(session: Session, out: Output, args: argparse.Namespace) -> int:
    validate_prefix(args.prefix or "")
    container = session.browse_container(args.location)
    names = list(container.list(args.prefix or ""))
    if args.long:
        return _ls_long(container, out, names)
    else:
        out.result(names, "\n".join(names))
    return ExitCode.OK


def _ls_long(container: Container, out: Output, names: list[str]) -> int:
    """`ls -l`: plaintext size, stored size, generation per object, from its message header (no KMS call).

    The stores expose no modification time yet, so none is shown. An object whose header cannot be read
    is listed with its error and sets the exit code; the listing goes on."""
    rows: list[dict[str, Any]] = []
    lines: list[str] = []
    codes: list[ExitCode] = []
    for name in names:
        try:
            st = container.stat(name)
        except EnvelopeError as e:
            code = exit_code_for(e)
            codes.append(code)
            rows.append({"name": name, "error": one_line(e), "exit_code": int(code)})
            lines.append(f"{'?':>14}  {'?':>14}  {'?':>4}  {name}")
            out.error(f"{name}: {one_line(e)}")
            continue
        generation = "-" if st.generation is None else str(st.generation)
        rows.append({"name": name, "size": st.size, "encrypted_size": st.encrypted_size, "generation": st.generation})
        lines.append(f"{st.size:>14}  {st.encrypted_size:>14}  {generation:>4}  {name}")
    header = f"{'SIZE':>14}  {'STORED':>14}  {'GEN':>4}  NAME"
    out.result(rows, "\n".join([header, *lines]) if lines else "")
    return transfer.worst_code(codes)


def rm(session: Session, out: Output, args: argparse.Namespace) -> int:
    if args.recursive or (not args.literal and any(transfer.is_pattern(n) for n in args.names)):
        return transfer.rm_many(session, out, args)
    # Every name is judged before anything is deleted: one bad name must not leave the others half done.
    for name in args.names:
        validate_name(name)
    container = session.browse_container(args.location)
    removed: list[str] = []
    try:
        for name in args.names:
            container.delete(name)
            removed.append(name)
            if not out.json:
                out.status(None, f"removed {name}")
    finally:
        # One JSON document, even when a later name failed: it says which names are gone.
        if out.json:
            out.document({"location": container.url, "removed": removed})
    return ExitCode.OK


def _object_document(container: Container, info: ObjectInfo) -> dict[str, Any]:
    return {
        "location": container.url,
        "name": info.name,
        "authenticated": False,
        "encrypted_size": info.encrypted_size,
        "message_format": 2,
        "message_id": info.message_id,
        "suite_id": f"{info.suite_id:#06x}",
        "suite": "AES_256_GCM_HKDF_SHA512_COMMIT_KEY" if info.suite_id == SUITE_ID else "unsupported",
        "content_type": _CONTENT_TYPES.get(info.content_type, str(info.content_type)),
        "frame_length": info.frame_length,
        "encryption_context": dict(info.encryption_context),
        "encrypted_data_keys": [{"provider_id": p, "provider_info": i} for p, i in info.encrypted_data_keys],
        "bound_to_container": info.bound_to_container,
    }


def inspect(session: Session, out: Output, args: argparse.Namespace) -> int:
    if args.name is not None:
        validate_name(args.name)
    container = session.browse_container(args.location)
    if args.name is None:
        out.document(header_document(container.url, container.header))
    else:
        out.document(_object_document(container, container.inspect(args.name)))
    return ExitCode.OK


def _verified(result: VerifyResult) -> dict[str, Any]:
    return {
        "name": result.name,
        "ok": True,
        "size": result.size,
        "encrypted_size": result.encrypted_size,
        "frame_length": result.frame_length,
    }


def verify(session: Session, out: Output, args: argparse.Namespace) -> int:
    for name in args.names:
        validate_name(name)
    container = session.open_container(args.location)
    names = args.names or list(container.list())
    results: list[dict[str, Any]] = []
    worst: ExitCode | None = None
    for name in names:
        try:
            with explained(container, name, allow_unbound=session.allow_unbound):
                result = _verified(container.verify(name))
        except EnvelopeError as e:
            code = exit_code_for(e)
            # An authentication failure outranks any other: it is what an operator must see.
            if worst is None or code == ExitCode.AUTHENTICATION:
                worst = code
            result = {"name": name, "ok": False, "error": one_line(e), "exit_code": int(code)}
            if out.quiet and not out.json:
                out.error(f"{name}: {one_line(e)}")
        results.append(result)
        out.progress(
            f"ok      {name}  ({result['size']} bytes)" if result["ok"] else f"FAILED  {name}: {result['error']}"
        )
    failed = sum(1 for r in results if not r["ok"])
    out.status(
        {"location": container.url, "ok": failed == 0, "objects": results},
        f"verified {len(results)} object(s) in {container.url}: {len(results) - failed} ok, {failed} failed",
    )
    if worst is None:
        return ExitCode.OK
    out.error(f"{failed} of {len(results)} object(s) failed verification in {container.url}")
    return worst


PUT_EPILOG = """\
A NAME or FILE that starts with "-" would be taken for an option: put "--" before
the positional arguments, e.g. `envelope put C -- --odd-name f.txt` or
`envelope put C --overwrite -- name -f.txt`."""


def add_allow_unbound(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-unbound",
        action="store_true",
        help="also read messages another AWS Encryption SDK wrote with this container's full context and "
        "KMS key (they carry no name binding: see docs/interop.md)",
    )


GET_EPILOG = """\
Several objects: `get -r LOC logs/ -o DIR` (every name under logs/) or `get LOC 'logs/*.gz' -o DIR`;
each object is written to DIR/ + its name less the part up to the last / before any glob character."""

CP_EPILOG = """\
forms:
  envelope cp SRC_LOC NAME DST_LOC [NEW_NAME]        object to object (also within one container)
  envelope cp -r SRC_LOC PREFIX DST_LOC [NEW_PREFIX]  every object under PREFIX
  envelope cp --from-file FILE DST_LOC NAME           local file (or - for stdin) into a container
  envelope cp SRC_LOC NAME --to-file FILE             object to a local file (atomic)

The destination object is committed only after the source's final frame authenticated:
a tampered or truncated source leaves nothing behind (unlike `get | put`). The trust
options apply to both containers: list both keys (--key A --key B) when they differ."""


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    parents = [common, trust_parent()]

    p = commands.add_parser(
        "cp",
        parents=parents,
        help="copy objects between containers (re-encrypted, committed only once authenticated)",
        description="Copy objects between containers, or between a local file and a container. Each copy is "
        "decrypted, authenticated and re-encrypted under the destination's data key and name.",
        epilog=CP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("operands", metavar="OPERAND", nargs="+", help="locations and names, as in the forms below")
    p.add_argument("-r", "--recursive", action="store_true", help="copy every object under PREFIX")
    p.add_argument("--from-file", metavar="FILE", help="copy a local file (- for stdin) into DST_LOC NAME")
    p.add_argument("--to-file", metavar="FILE", help="copy SRC_LOC NAME to a local file")
    p.add_argument("--overwrite", action="store_true", help="replace existing destinations (default: refuse)")
    add_allow_unbound(p)
    add_knobs(p, frame_length=True, upload=True)
    p.set_defaults(run=transfer.cp)

    p = commands.add_parser(
        "put",
        parents=parents,
        help="encrypt FILE (- for stdin) into object NAME",
        epilog=PUT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("location", metavar="LOCATION")
    p.add_argument("name", metavar="NAME", help="object name (e.g. reports/q3.csv); with -r: the directory DIR")
    p.add_argument(
        "file", metavar="FILE", nargs="?", help="input file, or - to read standard input; with -r: a name PREFIX"
    )
    p.add_argument("--overwrite", action="store_true", help="replace NAME if it exists (default: refuse)")
    p.add_argument(
        "-r",
        "--recursive",
        action="store_true",
        help="put -r LOCATION DIR [PREFIX]: every regular file under DIR, named PREFIX + its path in DIR",
    )
    add_knobs(p, frame_length=True, upload=True)
    p.set_defaults(run=put, parser=p, late=("file",))

    p = commands.add_parser(
        "get",
        parents=parents,
        help="decrypt object NAME to a file or stdout",
        description="Decrypt object NAME (or, with -r or a glob PATTERN, several objects into -o DIR).",
        epilog=GET_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("location", metavar="LOCATION")
    p.add_argument("name", metavar="NAME", help="object name, glob PATTERN (quoted), or with -r a PREFIX")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default=None,
        help="output file, written atomically; DIR/ or an existing directory: written into it; "
        "-: stdout, streamed (absent: stdout unless it is a terminal; see docs/cli.md)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists (default: refuse)")
    p.add_argument("-r", "--recursive", action="store_true", help="every object under the name PREFIX, into -o DIR")
    p.add_argument("--literal", action="store_true", help="NAME is a name even if it holds * ? or [")
    add_allow_unbound(p)
    add_knobs(p)
    p.set_defaults(run=get)

    p = commands.add_parser("ls", parents=parents, help="list object names (no KMS call)")
    p.add_argument("location", metavar="LOCATION")
    p.add_argument("prefix", metavar="PREFIX", nargs="?", help="only names starting with PREFIX")
    p.add_argument(
        "-l",
        "--long",
        action="store_true",
        help="also show plaintext size, stored size and generation (one header read per object)",
    )
    p.set_defaults(run=ls)

    p = commands.add_parser(
        "rm",
        parents=parents,
        help="delete objects (no KMS call)",
        description="Delete objects by NAME, glob PATTERN (quoted) or, with -r, PREFIX. No KMS call.",
    )
    p.add_argument("location", metavar="LOCATION")
    p.add_argument("names", metavar="NAME", nargs="+", help="object name, glob PATTERN, or with -r a PREFIX")
    p.add_argument("-r", "--recursive", action="store_true", help="remove every object under each PREFIX")
    p.add_argument("--literal", action="store_true", help="NAMEs are names even if they hold * ? or [")
    p.add_argument(
        "--yes",
        action="store_true",
        help=f"needed to remove more than {transfer.RM_CONFIRM_ABOVE} objects at once (else: list them, remove none)",
    )
    p.set_defaults(run=rm)

    p = commands.add_parser(
        "inspect",
        parents=parents,
        help="show the container header, or an object's message header, as JSON (no key, no KMS call)",
    )
    p.add_argument("location", metavar="LOCATION")
    p.add_argument("name", metavar="NAME", nargs="?")
    p.set_defaults(run=inspect)

    p = commands.add_parser("verify", parents=parents, help="authenticate objects without writing any plaintext")
    p.add_argument("location", metavar="LOCATION")
    p.add_argument("names", metavar="NAME", nargs="*", help="objects to verify (default: all)")
    add_allow_unbound(p)
    add_knobs(p)
    p.set_defaults(run=verify)
