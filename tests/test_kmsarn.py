"""envelope.kmsarn: strict KMS ARN parsing, and the multi-Region key match rule (ESDK
specification aws-kms-mrk-match-for-decrypt), the one place each lives."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from envelope import kmsparams
from envelope.errors import ValidationError
from envelope.kmsarn import KeyArn, is_mrk, mrk_match, parse_key_arn, parse_kms_arn

UUID = "1234abcd-12ab-34cd-56ef-1234567890ab"
MRK = "mrk-" + "0123456789abcdef" * 2
OTHER_MRK = "mrk-" + "fedcba9876543210" * 2


def arn(key: str = MRK, region: str = "us-east-1", account: str = "111122223333", partition: str = "aws") -> str:
    return f"arn:{partition}:kms:{region}:{account}:key/{key}"


VALID_KEY_ARNS = [
    arn(UUID),
    arn(UUID.upper()),
    arn(MRK),
    arn(UUID, partition="aws-cn", region="cn-north-1"),
    arn(UUID, partition="aws-us-gov", region="us-gov-west-1"),
    arn(UUID, region="local", account="000000000000"),
]

INVALID_KEY_ARNS = [
    "",
    UUID,
    MRK,
    "alias/app",
    "arn:aws:kms:us-east-1:111122223333:alias/app",
    arn("not-a-key-id"),
    arn(UUID + "0"),
    arn("mrk-" + "0" * 31),
    arn("mrk-" + "g" * 32),
    arn(UUID, account="11112222333"),
    arn(UUID, account="1111222233334"),
    arn(UUID, region="US-EAST-1"),
    arn(UUID, region=""),
    arn(UUID, partition="gcp"),
    arn(UUID).replace(":kms:", ":s3:"),
    arn(UUID).replace("key/", "key:"),
    arn(UUID) + " ",
    " " + arn(UUID),
    arn(UUID) + "\n",
    arn(UUID) + "/extra",
    "arn:aws:kms:us-east-1:111122223333:key/",
]


@pytest.mark.parametrize("value", VALID_KEY_ARNS)
def test_parse_key_arn_accepts_key_arns_and_round_trips(value: str) -> None:
    parts = parse_key_arn(value)
    assert parts.service == "kms"
    assert parts.resource_type == "key"
    assert str(parts) == value
    assert parse_kms_arn(value) == parts
    assert kmsparams.key_id_form(value) == "key-arn"


@pytest.mark.parametrize("value", INVALID_KEY_ARNS)
def test_parse_key_arn_refuses_everything_else(value: str) -> None:
    with pytest.raises(ValidationError):
        parse_key_arn(value)


@pytest.mark.parametrize("value", [None, 12, b"arn:aws:kms:us-east-1:111122223333:key/" + UUID.encode(), ["x"]])
def test_parse_key_arn_refuses_non_strings_with_a_validation_error(value: object) -> None:
    with pytest.raises(ValidationError):
        parse_key_arn(value)
    with pytest.raises(ValidationError):
        parse_kms_arn(value)
    assert not is_mrk(value)
    assert not mrk_match(value, value)


def test_parse_kms_arn_takes_alias_arns_too() -> None:
    parts = parse_kms_arn("arn:aws:kms:eu-west-1:111122223333:alias/team/app_1")
    assert (parts.partition, parts.region, parts.account) == ("aws", "eu-west-1", "111122223333")
    assert (parts.resource_type, parts.resource_id) == ("alias", "team/app_1")
    assert str(parts) == "arn:aws:kms:eu-west-1:111122223333:alias/team/app_1"
    assert not parts.is_mrk
    with pytest.raises(ValidationError):
        parse_key_arn(str(parts))
    for bad in ("arn:aws:kms:eu-west-1:111122223333:alias/", "arn:aws:kms:eu-west-1:111122223333:alias/a b"):
        with pytest.raises(ValidationError):
            parse_kms_arn(bad)


def test_key_arn_is_frozen_and_rewrites_its_region() -> None:
    parts = parse_key_arn(arn(MRK))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        parts.region = "us-west-2"  # type: ignore[misc]
    assert parts.in_region("us-west-2") == arn(MRK, region="us-west-2")
    assert KeyArn("aws", "kms", "us-east-1", "111122223333", "key", MRK) == parts


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (arn(MRK), True),
        (arn(UUID), False),
        (MRK, True),
        (UUID, False),
        ("mrk-", False),
        ("mrk-notakeyid", False),
        ("alias/mrk-" + "0" * 32, False),
        ("arn:aws:kms:us-east-1:111122223333:alias/mrk-" + "0" * 32, False),
        ("", False),
    ],
)
def test_is_mrk(value: str, expected: bool) -> None:
    assert is_mrk(value) is expected


# (a, b, match?) - the ESDK rule: identical strings match; otherwise both must be MRK key ARNs
# equal in everything but the region.
MATCH_CASES = [
    ("identical-mrk", arn(MRK), arn(MRK), True),
    ("identical-srk", arn(UUID), arn(UUID), True),
    ("identical-alias", "alias/app", "alias/app", True),
    ("mrk-other-region", arn(MRK), arn(MRK, region="eu-west-1"), True),
    ("srk-other-region", arn(UUID), arn(UUID, region="eu-west-1"), False),
    ("mrk-other-account", arn(MRK), arn(MRK, account="444455556666"), False),
    ("mrk-other-partition", arn(MRK), arn(MRK, partition="aws-cn"), False),
    ("mrk-other-id", arn(MRK), arn(OTHER_MRK, region="eu-west-1"), False),
    ("mrk-id-case", arn(MRK), arn(MRK.upper().replace("MRK-", "mrk-"), region="eu-west-1"), False),
    ("bare-mrk-vs-arn", MRK, arn(MRK), False),
    ("bare-mrks", MRK, MRK.upper().replace("MRK-", "mrk-"), False),
    ("mrk-vs-alias-arn", arn(MRK), "arn:aws:kms:us-east-1:111122223333:alias/" + MRK, False),
    ("garbage", "x", "y", False),
]


@pytest.mark.parametrize(("label", "a", "b", "expected"), MATCH_CASES, ids=[c[0] for c in MATCH_CASES])
def test_mrk_match(label: str, a: str, b: str, expected: bool) -> None:
    assert mrk_match(a, b) is expected
    assert mrk_match(b, a) is expected


REGIONS = st.sampled_from(["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2", "local"])
ACCOUNTS = st.sampled_from(["111122223333", "444455556666"])
KEYS = st.sampled_from([UUID, MRK, OTHER_MRK])


@given(KEYS, REGIONS, REGIONS, ACCOUNTS, ACCOUNTS)
def test_mrk_match_ignores_exactly_the_region_of_mrks(key: str, r1: str, r2: str, a1: str, a2: str) -> None:
    expected = a1 == a2 and (r1 == r2 or key.startswith("mrk-"))
    assert mrk_match(arn(key, r1, a1), arn(key, r2, a2)) is expected


KEYISH = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda p, r, a, t, k: f"arn:{p}:kms:{r}:{a}:{t}/{k}",
        st.sampled_from(["aws", "aws-cn", "gcp", ""]),
        st.sampled_from(["us-east-1", "", "US"]),
        st.sampled_from(["111122223333", "1"]),
        st.sampled_from(["key", "alias", "keys"]),
        st.sampled_from([UUID, MRK, "app", "", "a b", UUID + "x"]),
    ),
)


@given(KEYISH)
def test_kmsparams_classifies_through_the_one_parser(value: str) -> None:
    # kmsparams has no ARN pattern of its own: its verdict on every string is kmsarn's.
    try:
        form = kmsparams.key_id_form(value)
    except ValidationError:
        form = None
    try:
        parsed = parse_kms_arn(value)
    except ValidationError:
        parsed = None
    if value.startswith("arn:"):
        assert (form == "key-arn") == (parsed is not None and parsed.resource_type == "key")
        assert (form == "alias-arn") == (parsed is not None and parsed.resource_type == "alias")
    else:
        assert parsed is None
        assert form in (None, "key-id", "alias-name")
