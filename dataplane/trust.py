"""Which KMS keys and containers a data plane trusts (DESIGN §11).

Storage cannot prove which KMS key or encryption context a container
*should* have: anyone who can write `container.json` can replace it with any
genuine header, another tenant's or one whose data key sits under a KMS key
they control. So the plane is told what to trust, the way the AWS Encryption
SDK's v2 made strict key lists the default:

- strict (`key_ids=[ARN, ...]`): only data keys wrapped under one of these
  KMS keys are ever sent to KMS (multi-Region replicas of a listed key
  match, `envelope.kmsarn.mrk_match`);
- discovery (`discovery=True`): any KMS key the caller's credentials may use,
  optionally limited to accounts and a partition.

Every check here runs on public header fields before any KMS call and
raises `AuthenticationError` naming what did not match (the fields are
public, so the message is no oracle). This module never sees a key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import attrs

from envelope.errors import AuthenticationError, ValidationError
from envelope.kmsarn import mrk_match, parse_key_arn

__all__ = ["ExpectedContainer", "KeyTrust"]

_ACCOUNT = re.compile(r"[0-9]{12}")
_PARTITION = re.compile(r"aws[a-z-]*")
_LOCAL_PROVIDER = "local"


def _strings(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValidationError(f"{what} must be a list of strings")
    items = tuple(value)
    if not all(isinstance(item, str) for item in items):
        raise ValidationError(f"{what} must be a list of strings")
    return items


@attrs.frozen
class KeyTrust:
    """The KMS keys whose data keys a plane may send to KMS: a strict list, or discovery with filters."""

    key_ids: tuple[str, ...] | None
    """Strict mode: the trusted key ARNs (None in discovery mode)."""
    discovery_accounts: tuple[str, ...] | None = None
    discovery_partition: str | None = None

    @property
    def discovery(self) -> bool:
        return self.key_ids is None

    @classmethod
    def from_options(
        cls,
        *,
        provider: str | None,
        key_ids: object,
        discovery: object,
        discovery_accounts: object,
        discovery_partition: object,
    ) -> KeyTrust:
        """Validate the DataPlane trust options (ValidationError, before any I/O)."""
        if not isinstance(discovery, bool):
            raise ValidationError("discovery must be True or False")
        if key_ids is not None and discovery:
            raise ValidationError("pass either key_ids (strict) or discovery=True, not both")
        if key_ids is not None:
            if discovery_accounts is not None or discovery_partition is not None:
                raise ValidationError("discovery_accounts and discovery_partition apply only with discovery=True")
            arns = _strings(key_ids, "key_ids")
            if not arns:
                raise ValidationError("key_ids must name at least one KMS key ARN")
            for arn in arns:
                if not isinstance(arn, str) or not arn.startswith("arn:"):
                    raise ValidationError(
                        "key_ids must be key ARNs (arn:aws:kms:REGION:ACCOUNT:key/ID): an alias or bare key id "
                        "cannot be matched against the ARN stored in a container header"
                    )
                parse_key_arn(arn)  # ValidationError for anything but a key ARN
            return cls(key_ids=arns)
        # LocalKms can only ever decrypt under the keys of its own keystore, which is trusted storage
        # (0700/0600, refused when others can read it): discovery within it is the natural default.
        if not discovery and provider != _LOCAL_PROVIDER:
            raise ValidationError(
                "DataPlane needs to know which KMS keys to trust: pass key_ids=[key ARN, ...] (strict), "
                "or discovery=True to use whatever key a container header names (a storage attacker "
                "can then point writers at a key they control; see docs/threat-model.md)"
            )
        accounts = None
        if discovery_accounts is not None:
            accounts = _strings(discovery_accounts, "discovery_accounts")
            if not accounts or not all(_ACCOUNT.fullmatch(a) for a in accounts):
                raise ValidationError("discovery_accounts must be a non-empty list of 12-digit AWS account ids")
        partition = None
        if discovery_partition is not None:
            if not isinstance(discovery_partition, str) or not _PARTITION.fullmatch(discovery_partition):
                raise ValidationError("discovery_partition must be an AWS partition such as 'aws' or 'aws-cn'")
            partition = discovery_partition
        if partition is not None and accounts is None:
            raise ValidationError("discovery_partition needs discovery_accounts (the ESDK's discovery filter)")
        return cls(key_ids=None, discovery_accounts=accounts, discovery_partition=partition)

    def check(self, key_arn: str, where: str) -> None:
        """AuthenticationError unless a data key wrapped under `key_arn` may be sent to KMS."""
        if self.key_ids is not None:
            if not any(mrk_match(trusted, key_arn) for trusted in self.key_ids):
                raise AuthenticationError(f"{where}: KMS key {key_arn} is not one of this DataPlane's key_ids")
            return
        if self.discovery_accounts is None:
            return
        arn = parse_key_arn(key_arn)  # the header parser admits only key ARNs
        if arn.account not in self.discovery_accounts or (
            self.discovery_partition is not None and arn.partition != self.discovery_partition
        ):
            raise AuthenticationError(f"{where}: KMS key {key_arn} is outside this DataPlane's discovery filter")


@attrs.frozen
class ExpectedContainer:
    """What the caller pinned when opening a container: context pairs that must be present, and its id."""

    encryption_context: Mapping[str, str] = attrs.field(factory=dict)
    container_id: str | None = None

    @classmethod
    def from_options(cls, encryption_context: object, container_id: object) -> ExpectedContainer:
        context: dict[str, str] = {}
        if encryption_context is not None:
            if not isinstance(encryption_context, Mapping):
                raise ValidationError("encryption_context must be a mapping of str to str")
            for key, value in encryption_context.items():
                if not isinstance(key, str) or not isinstance(value, str):
                    raise ValidationError("encryption_context must be a mapping of str to str")
                context[key] = value
        if container_id is not None and (not isinstance(container_id, str) or not container_id):
            raise ValidationError("container_id must be a non-empty string")
        return cls(encryption_context=context, container_id=container_id)

    def check(self, container_id: str, encryption_context: Mapping[str, str], where: str) -> None:
        """AuthenticationError unless the header has the pinned id and every pinned context pair."""
        if self.container_id is not None and container_id != self.container_id:
            raise AuthenticationError(f"{where}: container id is not the expected one")
        for key, value in self.encryption_context.items():
            if encryption_context.get(key) != value:
                raise AuthenticationError(f"{where}: encryption context does not match the expected {key!r}")
