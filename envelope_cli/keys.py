"""`envelope key ...`: administration of the local development keystore (`LocalKms`).

With --kms aws these commands refuse with a usage error: AWS KMS keys are
created, disabled and scheduled for deletion in AWS itself. Output is key
metadata only (id, ARN, state, aliases, dates), never key material.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from envelope_cli.exitcodes import CliError, ExitCode
from envelope_cli.output import Output
from envelope_cli.session import KEYSTORE_ENV

if TYPE_CHECKING:
    from envelope.kms import KeyInfo, LocalKms
    from envelope_cli.session import Session

__all__ = ["add_parsers"]


def _as_dict(info: KeyInfo) -> dict[str, Any]:
    return {
        "key_id": info.key_id,
        "arn": info.arn,
        "state": info.state,
        "aliases": list(info.aliases),
        "created_at": info.created_at,
        "deletion_date": info.deletion_date,
    }


def _describe(info: KeyInfo) -> str:
    aliases = " ".join(info.aliases) or "-"
    text = f"{info.arn}  {info.state}  {aliases}"
    if info.deletion_date:
        text += f"  (deletion date {info.deletion_date})"
    return text


def _require_free_alias(kms: LocalKms, alias: str) -> None:
    from envelope.errors import NotFoundError, ValidationError

    try:
        taken = kms.describe_key(alias)
    except (NotFoundError, ValidationError):
        return  # free, or malformed: create_key reports the latter precisely
    raise CliError(f"alias {alias} already exists (it names {taken.arn})", ExitCode.EXISTS)


def create(session: Session, out: Output, args: argparse.Namespace) -> int:
    kms = session.local_kms()
    if args.alias is not None:
        _require_free_alias(kms, args.alias)
    # The keystore's own directories are created 0700 by LocalKms; make sure their parent exists.
    kms.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    arn = kms.create_key(alias=args.alias, description=args.description)
    out.result(_as_dict(kms.describe_key(arn)), arn)
    return ExitCode.OK


def _existing_keystore(session: Session) -> LocalKms:
    """The keystore, which must exist for anything but `key create` (which makes it)."""
    kms = session.local_kms()
    if not kms.path.exists():
        raise CliError(
            f"the local keystore {kms.path} does not exist (`envelope key create` makes it; another one: "
            f"--kms local:PATH or ${KEYSTORE_ENV})",
            ExitCode.KMS,
        )
    return kms


def list_keys(session: Session, out: Output, args: argparse.Namespace) -> int:
    keys = _existing_keystore(session).list_keys()
    out.result([_as_dict(k) for k in keys], "\n".join(_describe(k) for k in keys))
    return ExitCode.OK


def describe(session: Session, out: Output, args: argparse.Namespace) -> int:
    info = _existing_keystore(session).describe_key(args.key)
    out.result(_as_dict(info), _describe(info))
    return ExitCode.OK


def _state_change(method: str) -> Any:
    def run(session: Session, out: Output, args: argparse.Namespace) -> int:
        info: KeyInfo = getattr(_existing_keystore(session), method)(args.key)
        out.status(_as_dict(info), _describe(info))
        return ExitCode.OK

    return run


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    key = commands.add_parser(
        "key",
        parents=[common],
        help="manage keys in the local development keystore",
        description="Manage keys in the local development keystore (--kms local[:PATH]). These commands refuse "
        "--kms aws (exit 2): AWS KMS keys are created, disabled and deleted in AWS itself (console, "
        "`aws kms create-key`, infrastructure as code).",
    )
    sub = key.add_subparsers(dest="key_command", metavar="ACTION", required=True)

    p = sub.add_parser("create", parents=[common], help="create a 256-bit key; prints its ARN")
    p.add_argument("--alias", metavar="alias/NAME", help="also create this alias for the key")
    p.add_argument("--description", default="", help="a free-text description")
    p.set_defaults(run=create)

    p = sub.add_parser("list", parents=[common], help="list keys with their state and aliases")
    p.set_defaults(run=list_keys)

    p = sub.add_parser("describe", parents=[common], help="show one key's metadata")
    p.add_argument("key", metavar="KEY", help="key id, key ARN, alias/NAME or alias ARN")
    p.set_defaults(run=describe)

    for name, method, text in (
        ("disable", "disable_key", "disable a key: containers under it cannot be opened until it is enabled"),
        ("enable", "enable_key", "enable a disabled key"),
        ("schedule-deletion", "schedule_key_deletion", "mark a key pending deletion (unusable; can be cancelled)"),
        ("cancel-deletion", "cancel_key_deletion", "cancel a pending deletion (the key comes back disabled)"),
    ):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("key", metavar="KEY", help="key id, key ARN, alias/NAME or alias ARN")
        p.set_defaults(run=_state_change(method))
