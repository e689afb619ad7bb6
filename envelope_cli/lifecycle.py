"""Data-key lifecycle commands: `rotate`, `generations`, `rekey`, `retire` (DESIGN §12).

`rotate` is the control plane's (one GenerateDataKeyWithoutPlaintext, never
a plaintext key); `generations` reads headers and records only (no KMS call
for the table; object counts come from message headers); `rekey` and
`retire` are the data plane's. Nothing printed here holds key material.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import Executor
from contextlib import ExitStack
from typing import Any

from envelope.keygen import KeyGeneration
from envelope.storage import validate_prefix
from envelope_cli.exitcodes import CliError, ExitCode
from envelope_cli.knobs import add_knobs
from envelope_cli.output import Output
from envelope_cli.session import Session
from envelope_cli.trust import trust_parent

__all__ = ["add_parsers"]


def _generation_document(g: KeyGeneration, objects: int | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "generation": g.generation,
        "key_id": g.key_id,
        "created_at": g.created_at.isoformat().replace("+00:00", "Z"),
    }
    if objects is not None:
        doc["objects"] = objects
    return doc


def rotate(session: Session, out: Output, args: argparse.Namespace) -> int:
    store = session.store(args.location)
    g = session.control_plane().rotate_container(store, args.key, grant_tokens=list(session.grant_tokens) or None)
    out.status(
        {"location": store.url, **_generation_document(g)},
        f"rotated {store.url}: generation {g.generation}, data key encrypted under {g.key_id}\n"
        "  running writers switch within their cache's max_age; `envelope rekey` re-encrypts older objects",
    )
    return ExitCode.OK


def generations(session: Session, out: Output, args: argparse.Namespace) -> int:
    container = session.browse_container(args.location)
    usage = container.usage()
    rows = [_generation_document(g, usage.get(g.generation, 0)) for g in container.generations()]
    unbound = usage.get(0, 0)
    lines = [f"{'generation':>10}  {'objects':>8}  {'created':<27}  KMS key"]
    lines += [f"{r['generation']:>10}  {r['objects']:>8}  {r['created_at']:<27}  {r['key_id']}" for r in rows]
    if unbound:
        lines.append(f"{'-':>10}  {unbound:>8}  (unbound: written by another SDK)")
    out.result({"location": container.url, "generations": rows, "unbound_objects": unbound}, "\n".join(lines))
    return ExitCode.OK


def _executor(args: argparse.Namespace, stack: ExitStack) -> Executor | None:
    if args.dask is None:
        return None
    try:
        from distributed import Client  # the [dask] extra
    except ImportError:
        raise CliError(
            "--dask needs the distributed package (pip install 'kms-envelope[dask]')", ExitCode.USAGE
        ) from None
    client = stack.enter_context(Client(args.dask))
    executor: Executor = client.get_executor()
    return executor


def rekey(session: Session, out: Output, args: argparse.Namespace) -> int:
    if args.prefix:
        validate_prefix(args.prefix)
    if not 1 <= args.workers <= 64:
        raise CliError("--workers must be 1..64", ExitCode.USAGE)
    if args.dask and (args.threads is not None or args.upload_concurrency is not None):
        # The workers build their own planes and stores from the container's spec, with the defaults.
        raise CliError("--threads and --upload-concurrency do not reach --dask workers", ExitCode.USAGE)
    # On a Dask cluster each worker opens the container from a picklable spec (never a key or a client).
    container = session.container_spec(args.location).open() if args.dask else session.open_container(args.location)
    done = [0]

    def tick(name: str, outcome: str) -> None:
        done[0] += 1
        if not out.quiet and not out.json and sys.stderr.isatty():
            print(f"\rrekey: {done[0]} object(s) done", end="", file=sys.stderr, flush=True)

    with ExitStack() as stack:
        executor = _executor(args, stack)
        report = container.rekey_all(args.prefix or "", executor=executor, workers=args.workers, on_done=tick)
    if not out.quiet and not out.json and sys.stderr.isatty():
        print(file=sys.stderr)
    failed = [{"name": name, "reason": reason} for name, reason in report.failed.items()]
    out.status(
        {
            "location": container.url,
            "generation": container.generation,
            "rekeyed": list(report.rekeyed),
            "current": list(report.current),
            "failed": failed,
        },
        f"rekeyed {len(report.rekeyed)}, already current {len(report.current)}, failed {len(failed)} "
        f"(generation {container.generation}) in {container.url}"
        + "".join(f"\n  FAILED {f['name']}: {f['reason']}" for f in failed),
    )
    if report.ok:
        return ExitCode.OK
    total = len(report.rekeyed) + len(report.current) + len(failed)
    out.error(f"{len(failed)} of {total} object(s) were not rekeyed in {container.url}; run rekey again once fixed")
    return ExitCode.PARTIAL


def retire(session: Session, out: Output, args: argparse.Namespace) -> int:
    container = session.open_container(args.location)
    container.retire_generation(args.generation)
    out.status(
        {"location": container.url, "retired": args.generation},
        f"retired generation {args.generation} of {container.url} (its record is deleted; disable and then "
        "delete its KMS key to shred it, if no other generation or container uses that key)",
    )
    return ExitCode.OK


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    # rotate is the control plane (its --key is the KMS key to generate under); the others open the
    # container's data plane and take the trust options (--key ARN..., --discovery, --expect-...).
    parents = [common, trust_parent()]
    p = commands.add_parser(
        "rotate",
        parents=[common],
        help="add a data-key generation (control plane: GenerateDataKeyWithoutPlaintext only)",
        description="Add the container's next data-key generation. Without --key the newest generation's "
        "KMS key is kept; --key migrates the container to another KMS key.",
    )
    p.add_argument("location", metavar="LOCATION")
    p.add_argument("--key", metavar="KEY", help="key id, key ARN, alias/NAME or alias ARN (default: keep)")
    p.set_defaults(run=rotate)

    p = commands.add_parser(
        "generations", parents=parents, help="list a container's data-key generations and their objects"
    )
    p.add_argument("location", metavar="LOCATION")
    p.set_defaults(run=generations)

    p = commands.add_parser(
        "rekey",
        parents=parents,
        help="re-encrypt objects into the newest generation",
        description="Re-encrypt every object (under PREFIX) into the newest generation, streaming; each "
        "object is replaced only if unchanged since it was read. Resumable: run it again after failures.",
    )
    p.add_argument("location", metavar="LOCATION")
    p.add_argument("--prefix", metavar="P", help="only names starting with P")
    p.add_argument("--workers", type=int, default=4, metavar="N", help="threads (default 4)")
    p.add_argument("--dask", metavar="ADDRESS", help="run on a Dask cluster (scheduler address)")
    add_knobs(p, upload=True)
    p.set_defaults(run=rekey)

    p = commands.add_parser("retire", parents=parents, help="delete a generation's record once no object uses it")
    p.add_argument("location", metavar="LOCATION")
    p.add_argument("generation", metavar="N", type=int)
    p.set_defaults(run=retire)
