"""KMS ARNs: parsing, and the multi-Region key (MRK) matching rule.

The one parser of KMS identifiers: `kmsparams` (request validation), the KMS
adapters (response checks, MRK rewriting) and the data plane's strict key
list all go through it.

`mrk_match` is the one place the MRK rule lives (AWS Encryption SDK
specification, aws-kms-mrk-match-for-decrypt): two key identifiers match
when they are equal, or when both are multi-Region key ARNs (key id
`mrk-...`) that agree on partition, service, account, resource type and
resource id - the region is ignored, because each Region's replica of an MRK
decrypts what any other replica encrypted. Nothing here calls KMS.
"""

from __future__ import annotations

import re

import attrs

from envelope.errors import ValidationError

__all__ = [
    "ALIAS_NAME",
    "KEY_ID",
    "KeyArn",
    "is_mrk",
    "mrk_match",
    "parse_key_arn",
    "parse_kms_arn",
]

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_MRK_PREFIX = "mrk-"
# A bare key id as KMS makes them: a UUID, or `mrk-` and 32 hex digits for a multi-Region key.
KEY_ID = re.compile(rf"(?:{_UUID}|{_MRK_PREFIX}[0-9a-fA-F]{{32}})")
# An alias name as KMS spells it in requests: alias/NAME.
ALIAS_NAME = re.compile(r"alias/[A-Za-z0-9/_-]{1,250}")
_KMS_ARN = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):(?P<service>kms):(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):"
    r"(?P<resource_type>key|alias)/(?P<resource_id>[^\s]+)"
)


@attrs.frozen
class KeyArn:
    """The parts of a KMS ARN: a key ARN (resource_type "key") or, from `parse_kms_arn`, an alias ARN
    (resource_type "alias", resource_id the alias name without its "alias/" prefix)."""

    partition: str
    service: str
    region: str
    account: str
    resource_type: str
    resource_id: str

    @property
    def is_mrk(self) -> bool:
        return self.resource_type == "key" and self.resource_id.startswith(_MRK_PREFIX)

    def in_region(self, region: str) -> str:
        """This ARN with its region replaced (a multi-Region key's replica in `region`)."""
        return f"arn:{self.partition}:{self.service}:{region}:{self.account}:{self.resource_type}/{self.resource_id}"

    def __str__(self) -> str:
        return self.in_region(self.region)


def _parse(arn: str) -> KeyArn | None:
    m = _KMS_ARN.fullmatch(arn)
    if m is None:
        return None
    parts = KeyArn(**m.groupdict())
    pattern = KEY_ID if parts.resource_type == "key" else ALIAS_NAME
    resource = parts.resource_id if parts.resource_type == "key" else f"alias/{parts.resource_id}"
    return parts if pattern.fullmatch(resource) else None


def parse_kms_arn(arn: object) -> KeyArn:
    """Parse a KMS key ARN or alias ARN (strict); ValidationError for anything else."""
    if not isinstance(arn, str):
        raise ValidationError(f"a KMS ARN must be a string, not {type(arn).__name__}")
    parts = _parse(arn)
    if parts is None:
        raise ValidationError(
            "not a KMS key or alias ARN (arn:PARTITION:kms:REGION:ACCOUNT:key/KEY_ID or ...:alias/NAME)"
        )
    return parts


def parse_key_arn(arn: object) -> KeyArn:
    """Parse a KMS *key* ARN (not an alias ARN); ValidationError for anything else."""
    if not isinstance(arn, str):
        raise ValidationError(f"a KMS key ARN must be a string, not {type(arn).__name__}")
    parts = _parse(arn)
    if parts is None or parts.resource_type != "key":
        raise ValidationError("not a KMS key ARN (arn:PARTITION:kms:REGION:ACCOUNT:key/KEY_ID)")
    return parts


def _key_arn_or_none(value: object) -> KeyArn | None:
    parts = _parse(value) if isinstance(value, str) else None
    return parts if parts is not None and parts.resource_type == "key" else None


def is_mrk(key_id: object) -> bool:
    """Whether `key_id` (a key ARN or a bare key id) names a multi-Region key. Alias names and
    alias ARNs never do: what an alias points to is only known to KMS."""
    if not isinstance(key_id, str):
        return False
    parts = _key_arn_or_none(key_id)
    if parts is not None:
        return parts.is_mrk
    return key_id.startswith(_MRK_PREFIX) and KEY_ID.fullmatch(key_id) is not None


def mrk_match(a: object, b: object) -> bool:
    """Whether two key identifiers name the same key for Decrypt (equal, or replicas of one MRK)."""
    if isinstance(a, str) and a == b:
        return True
    pa, pb = _key_arn_or_none(a), _key_arn_or_none(b)
    if pa is None or pb is None or not (pa.is_mrk and pb.is_mrk):
        return False
    return (pa.partition, pa.service, pa.account, pa.resource_type, pa.resource_id) == (
        pb.partition,
        pb.service,
        pb.account,
        pb.resource_type,
        pb.resource_id,
    )
