"""What a data command trusts (DESIGN §11): `--key`, `--discovery`, `--expect-context`, `--expect-container-id`.

Storage cannot prove which KMS key or context a container should have:
whoever can write `container.json` can swap in any genuine header (another
tenant's, or one under a KMS key they control, which then learns every
object `put` writes). So with `--kms aws` every data command must be told
which keys to trust, like `aws-encryption-cli --wrapping-keys`: `--key ARN`
(repeatable) or `ENVELOPE_KEY_IDS`, or an explicit `--discovery`. With
`--kms local` the default is discovery within the keystore: the keystore is
trusted storage (0700/0600, refused when others may write it) and can only
ever hold keys its owner created.

Everything here is judged from the command line before any I/O; refusals of
a header happen in the data plane, before any KMS call.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

import attrs

from envelope.errors import ValidationError
from envelope_cli.control import parse_pairs
from envelope_cli.exitcodes import CliError, ExitCode

__all__ = ["KEY_IDS_ENV", "TrustOptions", "add_trust_options", "trust_parent"]

KEY_IDS_ENV = "ENVELOPE_KEY_IDS"

_WHY = (
    "whoever can write the container's storage can replace its header with one under a KMS key they "
    "control (or another tenant's), and without a trusted key list this command would use it"
)


@attrs.frozen
class TrustOptions:
    """The data plane's trust settings and the container pins, as the command line gave them."""

    key_ids: tuple[str, ...] | None = None
    discovery: bool = False
    discovery_accounts: tuple[str, ...] | None = None
    discovery_partition: str | None = None
    expect_context: Mapping[str, str] = attrs.field(factory=dict)
    expect_container_id: str | None = None
    source: str = ""
    """Where the key list came from, for messages: --key, $ENVELOPE_KEY_IDS, --discovery, the keystore."""

    def plane_options(self) -> dict[str, Any]:
        """Keyword arguments for DataPlane."""
        return {
            "key_ids": self.key_ids,
            "discovery": self.discovery,
            "discovery_accounts": self.discovery_accounts,
            "discovery_partition": self.discovery_partition,
        }

    def open_options(self) -> dict[str, Any]:
        """Keyword arguments for DataPlane.open."""
        return {"encryption_context": dict(self.expect_context) or None, "container_id": self.expect_container_id}

    def refusal_hint(self) -> str:
        pins = []
        if self.expect_context:
            pins.append("--expect-context")
        if self.expect_container_id is not None:
            pins.append("--expect-container-id")
        pinned = f"; pinned by {' and '.join(pins)}" if pins else ""
        return (
            f"refused before any KMS call (trusting {self.source}{pinned}): whoever can write the storage "
            "can replace a container's header"
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace, kms_kind: str) -> TrustOptions:
        """Judge the trust options (CliError USAGE for a bad combination), before any I/O."""
        keys: list[str] = list(args.trusted_keys or [])
        discovery: bool = args.discovery
        accounts: list[str] | None = args.discovery_account
        partition: str | None = args.discovery_partition
        if keys and discovery:
            raise CliError("pass either --key (trust these KMS keys) or --discovery, not both", ExitCode.USAGE)
        if (accounts or partition) and not discovery:
            raise CliError("--discovery-account and --discovery-partition need --discovery", ExitCode.USAGE)
        if partition and not accounts:
            raise CliError("--discovery-partition needs --discovery-account", ExitCode.USAGE)
        source = "--key" if keys else "--discovery" if discovery else ""
        if not keys and not discovery:
            configured = os.environ.get(KEY_IDS_ENV, "").strip()
            if configured:
                keys = [item.strip() for item in configured.split(",")]
                if not all(keys):
                    raise CliError(f"${KEY_IDS_ENV} must be key ARNs separated by commas", ExitCode.USAGE)
                source = f"${KEY_IDS_ENV}"
        if not keys and not discovery:
            if kms_kind == "aws":
                raise CliError(
                    "with --kms aws, say which KMS keys to trust: --key KEY_ARN (repeatable) or "
                    f"${KEY_IDS_ENV}=ARN[,ARN...]; or --discovery [--discovery-account ID] to use whatever key "
                    f"the container's header names. Why: {_WHY}",
                    ExitCode.USAGE,
                )
            # The local keystore only ever holds its owner's keys: discovery within it is the default.
            discovery, source = True, "discovery within the local keystore"
        for key in keys:
            if not key.startswith("arn:"):
                raise CliError(
                    f"--key takes a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), not {key!r}: a header names "
                    "its key by ARN, so an alias or key id cannot be matched (`envelope key describe` or "
                    "`aws kms describe-key` prints the ARN)",
                    ExitCode.USAGE,
                )
        options = cls(
            key_ids=tuple(keys) or None,
            discovery=discovery,
            discovery_accounts=tuple(accounts) if accounts else None,
            discovery_partition=partition,
            expect_context=parse_pairs(args.expect_context, "--expect-context"),
            expect_container_id=args.expect_container_id,
            source=source,
        )
        if options.expect_container_id is not None and not options.expect_container_id:
            raise CliError("--expect-container-id must not be empty", ExitCode.USAGE)
        from dataplane.trust import KeyTrust  # loaded by the data commands only, when they run

        try:  # the library's own checks (ARN syntax, account ids), now rather than after reading anything
            KeyTrust.from_options(provider=None, **options.plane_options())
        except ValidationError as e:
            raise CliError(str(e), ExitCode.USAGE) from e
        return options


def add_trust_options(parser: argparse.ArgumentParser) -> None:
    """The trust options every data command takes."""
    g = parser.add_argument_group(
        "what to trust (required with --kms aws; see docs/cli.md)",
        "A container's header is only as trustworthy as its storage: say which KMS keys (and which "
        "container) you expect, so a swapped header is refused before any KMS call.",
    )
    g.add_argument(
        "--key",
        dest="trusted_keys",
        action="append",
        metavar="KEY_ARN",
        help=f"trust data keys under this KMS key ARN (repeatable; default ${KEY_IDS_ENV}, comma-separated)",
    )
    g.add_argument(
        "--discovery",
        action="store_true",
        help="trust whatever KMS key the header names (your IAM permissions are then the only limit)",
    )
    g.add_argument(
        "--discovery-account",
        action="append",
        metavar="ACCOUNT_ID",
        help="with --discovery: only keys in this AWS account (repeatable)",
    )
    g.add_argument("--discovery-partition", metavar="PARTITION", help="with --discovery-account: aws, aws-cn...")
    g.add_argument(
        "--expect-context",
        action="append",
        metavar="KEY=VALUE",
        help="the container's encryption context must contain this pair (repeatable)",
    )
    g.add_argument("--expect-container-id", metavar="ID", help="the container's id must be this")


def trust_parent() -> argparse.ArgumentParser:
    """A parent parser holding the trust options, for every command that opens a container's data plane."""
    parent = argparse.ArgumentParser(add_help=False)
    add_trust_options(parent)
    return parent
