"""Control-plane commands: `create`, `describe`, `containers`.

They call KMS at most once (`create`: GenerateDataKeyWithoutPlaintext) and
never decrypt anything. What they print is the container header: public by
design (the data key in it is encrypted under KMS).
"""

from __future__ import annotations

import argparse
import errno
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from envelope.header import HEADER_NAME, SUITE_ID, ContainerHeader, build_encryption_context, validate_labels
from envelope.kmsparams import validate_grant_tokens, validate_key_id
from envelope.storage import parse_location
from envelope_cli.exitcodes import CliError, ExitCode, exit_code_for, one_line
from envelope_cli.output import Output
from envelope_cli.session import Session

__all__ = ["add_parsers", "header_document", "parse_pairs"]

SUITE_NAMES = {SUITE_ID: "AES_256_GCM_HKDF_SHA512_COMMIT_KEY (AES-256-GCM, HKDF-SHA512, key commitment, no signature)"}


def parse_pairs(items: Sequence[str] | None, option: str) -> dict[str, str]:
    """`k=v` arguments into a dict; a usage error for a missing `=` or a repeated key."""
    pairs: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"{option} takes KEY=VALUE, got {item!r}", ExitCode.USAGE)
        if key in pairs:
            raise CliError(f"{option} {key!r} given twice", ExitCode.USAGE)
        pairs[key] = value
    return pairs


def header_document(location: str, header: ContainerHeader) -> dict[str, Any]:
    """The header as JSON (exactly container.json's fields) with the container's URL."""
    return {"location": location, **header.to_dict()}


def _header_text(location: str, header: ContainerHeader) -> str:
    key = header.data_keys[0]
    lines = [
        f"location      {location}",
        f"container id  {header.container_id}",
        f"suite         {header.suite:#06x} {SUITE_NAMES.get(header.suite, '')}".rstrip(),
        f"data key      {key.provider} {key.key_id} ({len(key.ciphertext)}-byte encrypted data key)",
        f"created at    {header.to_dict()['created_at']}",
    ]
    context = [f"{k}={v}" for k, v in header.encryption_context.items()]
    labels = [f"{k}={v}" for k, v in header.labels.items()]
    lines.append("context       " + ("\n              ".join(context) or "-"))
    lines.append("labels        " + ("\n              ".join(labels) or "-"))
    return "\n".join(lines)


def _enclosing_container(session: Session, location: str) -> str | None:
    """The URL of a container that LOCATION lies inside (c1/objects/x, c1/sub), if any."""
    parsed = parse_location(location)
    if parsed.kind == "file":
        for parent in Path(os.path.abspath(parsed.path)).parents:
            if os.path.lexists(parent / HEADER_NAME):
                return parent.as_uri()
        return None
    parts = parsed.prefix.strip("/").split("/") if parsed.prefix else []
    for depth in range(len(parts)):  # the bucket root, then each enclosing prefix (one HEAD each)
        url = "/".join([f"s3://{parsed.bucket}", *parts[:depth]])
        if session.store(url).exists(HEADER_NAME):
            return url
    return None


def create(session: Session, out: Output, args: argparse.Namespace) -> int:
    context = parse_pairs(args.context, "--context")
    labels = parse_pairs(args.label, "--label")
    # The control plane checks these again; checking them first keeps the nesting check's requests
    # (S3 HEADs) behind every local judgement: a bad argument costs no network call.
    validate_key_id(args.key)
    validate_grant_tokens(list(session.grant_tokens) or None)
    validate_labels(labels)
    build_encryption_context(context, secrets.token_hex(16))
    enclosing = _enclosing_container(session, args.location)
    if enclosing is not None:
        # Its objects would live in the other container's tree (and `containers` would list both).
        raise CliError(f"{args.location} is inside the container {enclosing}: containers cannot nest", ExitCode.USAGE)
    store = session.store(args.location)
    header = session.control_plane().create_container(
        store,
        args.key,
        encryption_context=context,
        labels=labels,
        grant_tokens=list(session.grant_tokens) or None,
    )
    out.status(
        header_document(store.url, header),
        f"created container {store.url}\n  id {header.container_id}\n  data key encrypted under "
        f"{header.data_keys[0].key_id}",
    )
    return ExitCode.OK


def describe(session: Session, out: Output, args: argparse.Namespace) -> int:
    store = session.store(args.location)
    header = session.browse_control_plane().describe_container(store)
    out.result(header_document(store.url, header), _header_text(store.url, header))
    return ExitCode.OK


def containers(session: Session, out: Output, args: argparse.Namespace) -> int:
    parsed = parse_location(args.root)
    if parsed.kind == "file" and not os.path.isdir(parsed.path):
        # Listing nothing would look like "no containers here"; a ROOT that is not there is an error.
        raise FileNotFoundError(errno.ENOENT, "No such directory", args.root)
    store = session.store(args.root)
    documents: list[dict[str, Any]] = []
    first_failure: BaseException | None = None
    for result in session.browse_control_plane().list_containers(store):
        if result.header is not None:
            header = result.header
            documents.append(header_document(result.location, header))
            if not out.json:
                out.result(None, f"{result.location}  {header.container_id}  {header.data_keys[0].key_id}")
        else:
            assert result.error is not None
            first_failure = first_failure or result.error
            documents.append({"location": result.location, "error": one_line(result.error)})
            out.error(f"{result.location}: {one_line(result.error)}")
    if out.json:
        out.document(documents)
    return ExitCode.OK if first_failure is None else exit_code_for(first_failure)


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "create",
        parents=[common],
        help="create a container (control plane: GenerateDataKeyWithoutPlaintext only)",
        description="Create a container at LOCATION whose data key is encrypted under KEY. "
        "The control plane never sees a plaintext key.",
    )
    p.add_argument("location", metavar="LOCATION", help="a directory, file:// URL or s3://bucket/prefix")
    p.add_argument("--key", required=True, metavar="KEY", help="key id, key ARN, alias/NAME or alias ARN")
    p.add_argument("--context", action="append", metavar="KEY=VALUE", help="encryption-context entry (repeatable)")
    p.add_argument("--label", action="append", metavar="KEY=VALUE", help="a label (not authenticated; repeatable)")
    p.set_defaults(run=create)

    p = commands.add_parser("describe", parents=[common], help="show a container's header (no KMS call)")
    p.add_argument("location", metavar="LOCATION")
    p.set_defaults(run=describe)

    p = commands.add_parser("containers", parents=[common], help="list the containers at or below ROOT")
    p.add_argument("root", metavar="ROOT", help="a directory, file:// URL or s3://bucket[/prefix]")
    p.set_defaults(run=containers)
