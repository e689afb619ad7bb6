"""KMS key ARNs: parsing, and the multi-Region key (MRK) matching rule.

`mrk_match` is the one place the rule lives (AWS Encryption SDK
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

__all__ = ["KeyArn", "is_mrk", "mrk_match", "parse_key_arn"]

_KEY_ARN = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):(?P<service>kms):(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):"
    r"(?P<resource_type>key)/(?P<resource_id>[A-Za-z0-9-]{1,128})"
)
_MRK_PREFIX = "mrk-"


@attrs.frozen
class KeyArn:
    """The parts of a KMS key ARN."""

    partition: str
    service: str
    region: str
    account: str
    resource_type: str
    resource_id: str

    @property
    def is_mrk(self) -> bool:
        return self.resource_id.startswith(_MRK_PREFIX)

    def in_region(self, region: str) -> str:
        """This ARN with its region replaced (a multi-Region key's replica in `region`)."""
        return f"arn:{self.partition}:{self.service}:{region}:{self.account}:{self.resource_type}/{self.resource_id}"

    def __str__(self) -> str:
        return self.in_region(self.region)


def parse_key_arn(arn: object) -> KeyArn:
    """Parse a KMS *key* ARN (not an alias ARN); ValidationError for anything else."""
    if not isinstance(arn, str):
        raise ValidationError(f"a KMS key ARN must be a string, not {type(arn).__name__}")
    m = _KEY_ARN.fullmatch(arn)
    if m is None:
        raise ValidationError("not a KMS key ARN (arn:PARTITION:kms:REGION:ACCOUNT:key/KEY_ID)")
    return KeyArn(**m.groupdict())


def is_mrk(key_id: str) -> bool:
    """Whether `key_id` (a key ARN or a bare key id) names a multi-Region key."""
    m = _KEY_ARN.fullmatch(key_id)
    resource_id = m.group("resource_id") if m else key_id
    return resource_id.startswith(_MRK_PREFIX)


def mrk_match(a: str, b: str) -> bool:
    """Whether two key identifiers name the same key for Decrypt (equal, or replicas of one MRK)."""
    if a == b:
        return True
    ma, mb = _KEY_ARN.fullmatch(a), _KEY_ARN.fullmatch(b)
    if ma is None or mb is None:
        return False
    pa, pb = KeyArn(**ma.groupdict()), KeyArn(**mb.groupdict())
    if not (pa.is_mrk and pb.is_mrk):
        return False
    return (pa.partition, pa.service, pa.account, pa.resource_type, pa.resource_id) == (
        pb.partition,
        pb.service,
        pb.account,
        pb.resource_type,
        pb.resource_id,
    )
