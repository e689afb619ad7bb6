"""The container header schema: construction, binding, the canonical JSON form and its strict parser."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from aws_encryption_sdk.internal.formatting.encryption_context import serialize_encryption_context
from hypothesis import assume, given
from hypothesis import strategies as st

from envelope import ContainerHeader, WrappedDataKey
from envelope.errors import FormatError, UnsupportedFormatError, ValidationError
from envelope.header import (
    CONTEXT_CONTAINER_ID,
    CONTEXT_SCHEMA,
    CONTEXT_SUITE,
    HEADER_NAME,
    MAX_CONTEXT_BYTES,
    MAX_HEADER_BYTES,
    OBJECTS_PREFIX,
    RESERVED_PREFIX,
    SUITE_ID,
    FrozenMap,
    build_encryption_context,
    check_binding,
    serialized_context_size,
    validate_labels,
)

CID = "0123456789abcdef0123456789abcdef"
ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
BLOB = bytes(range(256)) * 2
WHEN = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


def make_header(**overrides: Any) -> ContainerHeader:
    fields: dict[str, Any] = {
        "container_id": CID,
        "data_keys": (WrappedDataKey(provider="aws-kms", key_id=ARN, ciphertext=BLOB),),
        "encryption_context": build_encryption_context({"tenant": "acme"}, CID),
        "created_at": WHEN,
        "labels": {"team": "storage"},
    }
    fields.update(overrides)
    return ContainerHeader(**fields)


def valid_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(make_header().to_json())
    return doc


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# --------------------------------------------------------------------------- constants


def test_constants_are_the_decided_ones() -> None:
    assert (RESERVED_PREFIX, CONTEXT_CONTAINER_ID, CONTEXT_SUITE, CONTEXT_SCHEMA) == (
        "envelope:",
        "envelope:container-id",
        "envelope:suite",
        "envelope:schema",
    )
    assert SUITE_ID == 0x0478 == 1144
    assert (HEADER_NAME, OBJECTS_PREFIX) == ("container.json", "objects/")


# --------------------------------------------------------------------------- encryption context


def test_build_encryption_context_adds_the_reserved_entries() -> None:
    ctx = build_encryption_context({"tenant": "acme"}, CID)
    assert ctx == {
        "tenant": "acme",
        "envelope:container-id": CID,
        "envelope:suite": "0478",
        "envelope:schema": "1",
    }
    assert build_encryption_context(None, CID) == build_encryption_context({}, CID)


@pytest.mark.parametrize(
    ("context", "fragment"),
    [
        (["tenant", "acme"], "mapping"),
        ({1: "x"}, "must be a str"),
        ({"k": 1}, "must be a str"),
        ({"k": None}, "must be a str"),
        ({"": "x"}, "must not be empty"),
        ({"envelope:container-id": "x"}, "reserved prefix"),
        ({"envelope:other": "x"}, "reserved prefix"),
        ({"Envelope:Schema": "2"}, "reserved prefix"),
        ({"aws-crypto-public-key": "x"}, "reserved prefix"),
        ({"AWS-CRYPTO-x": "x"}, "reserved prefix"),
        ({"k\ud800": "x"}, "surrogate"),
        ({"k": "\udfff"}, "surrogate"),
        ({"Tenant": "a", "tenant": "b"}, "differ only by case"),
        ({"k": "v" * MAX_CONTEXT_BYTES}, "limit is 65535"),
    ],
)
def test_bad_caller_context_is_rejected(context: Any, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        build_encryption_context(context, CID)


@pytest.mark.parametrize("container_id", ["", CID.upper(), CID[:-1], CID + "0", CID[:-1] + "g", CID + "\n", 7])
def test_bad_container_id_is_rejected(container_id: Any) -> None:
    with pytest.raises(ValidationError, match="container_id"):
        build_encryption_context({}, container_id)


def test_context_size_limit_counts_reserved_entries_and_is_exact() -> None:
    reserved = build_encryption_context({}, CID)
    # One caller pair "k" -> "v"*n adds 4 + 1 + n bytes (and no new count field).
    n = MAX_CONTEXT_BYTES - serialized_context_size(reserved) - 5
    at_limit = build_encryption_context({"k": "v" * n}, CID)
    assert serialized_context_size(at_limit) == MAX_CONTEXT_BYTES
    assert len(serialize_encryption_context(at_limit)) == MAX_CONTEXT_BYTES  # the ESDK agrees
    with pytest.raises(ValidationError, match="reserved entries included"):
        build_encryption_context({"k": "v" * (n + 1)}, CID)


context_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)
caller_contexts = st.dictionaries(
    context_text.filter(lambda k: k != "" and not k.casefold().startswith(("envelope:", "aws-crypto-"))),
    context_text,
    max_size=6,
)


@given(caller_contexts)
def test_serialized_context_size_matches_the_esdk(context: dict[str, str]) -> None:
    assume(len({k.casefold() for k in context}) == len(context))
    full = build_encryption_context(context, CID)
    assert serialized_context_size(full) == len(serialize_encryption_context(full))


# --------------------------------------------------------------------------- construction and binding


def test_header_is_frozen_hashable_and_its_maps_immutable() -> None:
    h = make_header()
    assert hash(h) == hash(make_header())
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        h.container_id = "f" * 32  # type: ignore[misc]
    assert isinstance(h.encryption_context, FrozenMap)
    with pytest.raises(TypeError):
        h.encryption_context["tenant"] = "evil"  # type: ignore[index]
    assert h.encryption_context == build_encryption_context({"tenant": "acme"}, CID)
    assert list(h.encryption_context) == sorted(h.encryption_context)


def test_data_key_repr_shows_only_the_ciphertext_length() -> None:
    edk = WrappedDataKey(provider="local", key_id=ARN, ciphertext=b"\x01secret-ish\x02")
    text = repr(edk)
    assert "<12 bytes>" in text
    assert "secret" not in text
    assert "secret" not in repr(make_header(data_keys=(edk,)))


def test_created_at_is_normalized_to_utc() -> None:
    plus_two = WHEN.astimezone(timezone(timedelta(hours=2)))
    assert make_header(created_at=plus_two).created_at == WHEN
    assert make_header(created_at="2025-03-04T05:06:07.89Z").created_at == WHEN


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"format": "other"}, "format"),
        ({"version": 2}, "version"),
        ({"version": True}, "version"),
        ({"suite": 0x0578}, "suite"),
        ({"container_id": "ABC"}, "container_id"),
        ({"data_keys": ()}, "data_keys"),
        ({"data_keys": "x"}, "data_keys"),
        ({"data_keys": (b"x",)}, "data_keys"),
        ({"created_at": datetime(2025, 1, 1)}, "timezone-aware"),
        ({"created_at": "2025-01-01 00:00:00"}, "RFC 3339"),
        ({"created_at": 0}, "created_at"),
        ({"encryption_context": {"tenant": "acme"}}, "lacks the reserved key"),
        ({"encryption_context": "x"}, "mapping"),
        ({"encryption_context": {1: "x", "a": "b"}}, "keys must be str"),
        ({"labels": {None: "x"}}, "keys must be str"),
        ({"labels": {"k": 1}}, "labels value"),
    ],
)
def test_constructor_rejects_values_outside_the_schema(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        make_header(**overrides)


@pytest.mark.parametrize(
    ("edk", "fragment"),
    [
        ({"provider": "envelope-local"}, "provider"),
        ({"key_id": "alias/acme"}, "key ARN"),
        ({"key_id": "1234abcd-12ab-34cd-56ef-1234567890ab"}, "key ARN"),
        ({"key_id": "arn:aws:kms:us-east-1:123456789012:alias/acme"}, "key ARN"),
        ({"key_id": ""}, "empty"),
        ({"key_id": ARN + "x" * 2048}, "2048"),
        ({"ciphertext": b""}, "1..6144"),
        ({"ciphertext": b"x" * 6145}, "1..6144"),
        ({"ciphertext": "text"}, "bytes"),
        ({"ciphertext": 5}, "bytes"),
    ],
)
def test_encrypted_data_key_rejects_values_outside_the_schema(edk: dict[str, Any], fragment: str) -> None:
    fields: dict[str, Any] = {"provider": "aws-kms", "key_id": ARN, "ciphertext": BLOB, **edk}
    with pytest.raises(ValidationError, match=fragment):
        WrappedDataKey(**fields)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({CONTEXT_CONTAINER_ID: "f" * 32}, "envelope:container-id"),
        ({CONTEXT_SUITE: "0578"}, "envelope:suite"),
        ({CONTEXT_SUITE: "478"}, "envelope:suite"),
        ({CONTEXT_SCHEMA: "2"}, "envelope:schema"),
        ({"envelope:extra": "x"}, "unknown reserved key"),
        ({"aws-crypto-public-key": "x"}, "unknown reserved key"),
    ],
)
def test_reserved_entries_must_agree_with_the_header(change: dict[str, str], fragment: str) -> None:
    ctx = {**build_encryption_context({}, CID), **change}
    with pytest.raises(ValidationError, match=fragment):
        make_header(encryption_context=ctx)


@pytest.mark.parametrize("missing", [CONTEXT_CONTAINER_ID, CONTEXT_SUITE, CONTEXT_SCHEMA])
def test_every_reserved_entry_is_required(missing: str) -> None:
    ctx = build_encryption_context({}, CID)
    del ctx[missing]
    with pytest.raises(ValidationError, match="lacks the reserved key"):
        make_header(encryption_context=ctx)


def test_check_binding_accepts_a_valid_header_and_rejects_a_forged_one() -> None:
    h = make_header()
    check_binding(h)
    # A header cannot be built unbound; forge one the way a bug or an attacker in memory would.
    forged = copy.copy(h)
    object.__setattr__(forged, "container_id", "f" * 32)
    with pytest.raises(FormatError, match="binding"):
        check_binding(forged)


def test_label_bounds() -> None:
    assert validate_labels(None) == {}
    assert validate_labels({"k" * 128: "v" * 256}) == {"k" * 128: "v" * 256}
    for bad in ({"k" * 129: ""}, {"k": "v" * 257}, {"": "v"}, {str(i): "" for i in range(65)}, ["k"]):
        with pytest.raises(ValidationError, match="labels"):
            validate_labels(bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- canonical JSON


def test_to_json_is_canonical() -> None:
    h = make_header(labels={"ü": "ß"}, encryption_context=build_encryption_context({"b": "2", "a": "1"}, CID))
    data = h.to_json()
    assert data.endswith(b"}\n")
    assert not data.endswith(b"\n\n")
    assert "ü".encode() in data  # UTF-8, not \u escapes
    doc = json.loads(data)
    assert list(doc) == sorted(doc)
    assert list(doc["encryption_context"]) == sorted(doc["encryption_context"])
    assert data == (json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
    assert doc["suite"] == 1144
    assert doc["created_at"] == "2025-03-04T05:06:07.890000Z"
    assert doc["data_keys"][0]["ciphertext"].endswith("=")


def test_whole_second_timestamps_have_no_fraction() -> None:
    doc = json.loads(make_header(created_at=WHEN.replace(microsecond=0)).to_json())
    assert doc["created_at"] == "2025-03-04T05:06:07Z"


key_arns = st.builds(
    lambda region, account, key: f"arn:aws:kms:{region}:{account}:key/{key}",
    st.sampled_from(["us-east-1", "eu-west-3", "ap-southeast-2"]),
    st.from_regex(r"[0-9]{12}", fullmatch=True),
    st.uuids().map(str),
)
data_keys = st.builds(
    WrappedDataKey,
    provider=st.sampled_from(["aws-kms", "local"]),
    key_id=key_arns,
    ciphertext=st.binary(min_size=1, max_size=6144),
)
label_maps = st.dictionaries(
    st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=20),
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=40),
    max_size=5,
)


@st.composite
def headers(draw: st.DrawFn) -> ContainerHeader:
    cid = draw(st.binary(min_size=16, max_size=16)).hex()
    context = draw(caller_contexts)
    assume(len({k.casefold() for k in context}) == len(context))
    return ContainerHeader(
        container_id=cid,
        data_keys=tuple(draw(st.lists(data_keys, min_size=1, max_size=3))),
        encryption_context=build_encryption_context(context, cid),
        created_at=draw(st.datetimes(timezones=st.just(UTC))),
        labels=draw(label_maps),
    )


@given(headers())
def test_json_round_trip_is_exact(header: ContainerHeader) -> None:
    data = header.to_json()
    parsed = ContainerHeader.from_json(data)
    assert parsed == header
    assert parsed.to_json() == data
    check_binding(parsed)


# --------------------------------------------------------------------------- strict parser


def _with(path: tuple[Any, ...], value: Any) -> bytes:
    doc = valid_doc()
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return encode(doc)


def _without(*path: Any) -> bytes:
    doc = valid_doc()
    target = doc
    for step in path[:-1]:
        target = target[step]
    del target[path[-1]]
    return encode(doc)


def _context_with(**entries: str) -> bytes:
    ctx = {**valid_doc()["encryption_context"], **entries}
    return _with(("encryption_context",), ctx)


def _raw_replace(old: str, new: str) -> bytes:
    data = make_header().to_json().decode()
    assert old in data
    return data.replace(old, new, 1).encode()


MALFORMED: list[tuple[str, bytes, str]] = [
    ("oversize", b" " * (MAX_HEADER_BYTES + 1), "limit"),
    ("not UTF-8", b'{"format": "\xff"}', "UTF-8"),
    ("UTF-8 BOM", b"\xef\xbb\xbf" + make_header().to_json(), "JSON"),
    ("empty", b"", "JSON"),
    ("not JSON", b"format: envelope.container", "JSON"),
    ("trailing garbage", make_header().to_json() + b"{}", "JSON"),
    ("top-level array", b"[]", "JSON object"),
    ("top-level string", b'"envelope.container"', "JSON object"),
    ("NaN", _raw_replace('"suite": 1144', '"suite": NaN'), "NaN"),
    ("deep nesting", b'{"labels": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "JSON"),
    ("huge integer", _raw_replace('"suite": 1144', '"suite": 1' + "0" * 5000), "JSON"),
    ("duplicate top-level key", _raw_replace('"suite": 1144', '"suite": 1144, "suite": 1144'), "duplicate"),
    ("duplicate context key", _raw_replace('"tenant": "acme"', '"tenant": "acme", "tenant": "evil"'), "duplicate"),
    ("missing format", _without("format"), "'format'"),
    ("wrong format", _with(("format",), "envelope.other"), "'format'"),
    ("format not a string", _with(("format",), 1), "'format'"),
    ("missing version", _without("version"), "'version'"),
    ("version as string", _with(("version",), "1"), "'version'"),
    ("version as boolean", _with(("version",), True), "'version'"),
    ("version as float", _with(("version",), 1.0), "'version'"),
    ("missing container_id", _without("container_id"), "'container_id'"),
    ("missing suite", _without("suite"), "'suite'"),
    ("missing data_keys", _without("data_keys"), "'data_keys'"),
    ("missing encryption_context", _without("encryption_context"), "'encryption_context'"),
    ("missing created_at", _without("created_at"), "'created_at'"),
    ("missing labels", _without("labels"), "'labels'"),
    ("unknown field", _with(("owner",), "mallory"), "'owner'"),
    ("container_id uppercase", _with(("container_id",), CID.upper()), "container_id"),
    ("container_id short", _with(("container_id",), CID[:30]), "container_id"),
    ("container_id number", _with(("container_id",), 5), "'container_id'"),
    ("suite as string", _with(("suite",), "0478"), "'suite'"),
    ("suite as boolean", _with(("suite",), True), "'suite'"),
    ("data_keys empty", _with(("data_keys",), []), "'data_keys' is empty"),
    ("data_keys not a list", _with(("data_keys",), {}), "'data_keys'"),
    ("too many data_keys", _with(("data_keys",), valid_doc()["data_keys"] * 9), "'data_keys'"),
    ("data key not an object", _with(("data_keys", 0), "x"), "'data_keys[0]'"),
    ("data key missing provider", _without("data_keys", 0, "provider"), "'provider'"),
    ("data key missing ciphertext", _without("data_keys", 0, "ciphertext"), "'ciphertext'"),
    ("data key extra field", _with(("data_keys", 0, "plaintext"), "x"), "'plaintext'"),
    ("unknown provider", _with(("data_keys", 0, "provider"), "gcp-kms"), "data_keys[0]: data key provider"),
    ("key_id not an ARN", _with(("data_keys", 0, "key_id"), "alias/acme"), "data_keys[0]: data key key_id"),
    ("key_id not a string", _with(("data_keys", 0, "key_id"), ["x"]), "'data_keys[0].key_id'"),
    ("ciphertext not base64", _with(("data_keys", 0, "ciphertext"), "!!!!"), "not valid base64"),
    ("ciphertext unpadded", _with(("data_keys", 0, "ciphertext"), "QQ"), "not valid base64"),
    ("ciphertext urlsafe", _with(("data_keys", 0, "ciphertext"), "-_-_"), "not valid base64"),
    ("ciphertext whitespace", _with(("data_keys", 0, "ciphertext"), "QUFB\nQUFB"), "not valid base64"),
    ("ciphertext non-ASCII", _with(("data_keys", 0, "ciphertext"), "QUFBé"), "not valid base64"),
    ("ciphertext stray bits", _with(("data_keys", 0, "ciphertext"), "QR=="), "not canonical"),
    ("ciphertext empty", _with(("data_keys", 0, "ciphertext"), ""), "1..6144"),
    ("ciphertext too long", _with(("data_keys", 0, "ciphertext"), "QUFB" * 2049), "1..6144"),
    ("context not an object", _with(("encryption_context",), ["x"]), "'encryption_context'"),
    ("context value not a string", _context_with().replace(b'"acme"', b"7"), "'encryption_context' value"),
    ("context container-id swapped", _context_with(**{CONTEXT_CONTAINER_ID: "f" * 32}), "envelope:container-id"),
    ("context suite disagrees", _context_with(**{CONTEXT_SUITE: "0578"}), "envelope:suite"),
    ("context schema disagrees", _context_with(**{CONTEXT_SCHEMA: "2"}), "envelope:schema"),
    ("context unknown reserved key", _context_with(**{"envelope:x": "1"}), "unknown reserved key"),
    ("context ESDK-reserved key", _context_with(**{"aws-crypto-public-key": "x"}), "unknown reserved key"),
    ("context keys differ by case", _context_with(Tenant="x"), "differ only by case"),
    ("context lone surrogate", _raw_replace('"acme"', '"\\ud800"'), "surrogate"),
    (
        "context missing a reserved key",
        _with(("encryption_context",), {"tenant": "acme", CONTEXT_SUITE: "0478", CONTEXT_SCHEMA: "1"}),
        "lacks the reserved key",
    ),
    ("created_at not a string", _with(("created_at",), 1700000000), "'created_at'"),
    ("created_at with offset", _with(("created_at",), "2025-03-04T05:06:07+01:00"), "created_at"),
    ("created_at impossible date", _with(("created_at",), "2025-02-30T00:00:00Z"), "created_at"),
    ("created_at lowercase", _with(("created_at",), "2025-03-04t05:06:07z"), "created_at"),
    ("created_at non-ASCII digits", _with(("created_at",), "\uff12025-03-04T05:06:07Z"), "created_at"),
    ("labels not an object", _with(("labels",), "x"), "'labels'"),
    ("label value not a string", _with(("labels",), {"k": None}), "'labels' value"),
    ("too many labels", _with(("labels",), {str(i): "" for i in range(65)}), "labels"),
]


@pytest.mark.parametrize(("data", "fragment"), [pytest.param(d, f, id=name) for name, d, f in MALFORMED])
def test_malformed_header_is_a_format_error_naming_the_problem(data: bytes, fragment: str) -> None:
    with pytest.raises(FormatError, match="container header") as info:
        ContainerHeader.from_json(data)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (_with(("version",), 2), "unsupported version 2"),
        (_with(("version",), 0), "unsupported version 0"),
        (_with(("suite",), 0x0578), "unsupported suite 0x0578"),
    ],
)
def test_unknown_version_or_suite_is_unsupported(data: bytes, fragment: str) -> None:
    with pytest.raises(UnsupportedFormatError, match=fragment):
        ContainerHeader.from_json(data)


def test_version_is_judged_before_the_field_set() -> None:
    # A future version may have other fields; saying "unsupported version" is the useful answer.
    doc = valid_doc()
    doc["version"] = 2
    doc["replicas"] = []
    with pytest.raises(UnsupportedFormatError):
        ContainerHeader.from_json(encode(doc))


def test_parser_accepts_non_canonical_but_valid_json() -> None:
    h = make_header()
    compact = json.dumps(json.loads(h.to_json()), separators=(",", ":"), ensure_ascii=True).encode()
    assert ContainerHeader.from_json(compact) == h
    assert ContainerHeader.from_json(bytearray(compact)) == h


def test_parser_refuses_text_input() -> None:
    with pytest.raises(ValidationError, match="bytes"):
        ContainerHeader.from_json(make_header().to_json().decode())  # type: ignore[arg-type]


def test_largest_valid_header_is_within_the_parser_cap() -> None:
    # Worst case for size: control characters (escaped 6x in JSON) everywhere the schema allows them.
    reserved = build_encryption_context({}, CID)
    n = MAX_CONTEXT_BYTES - serialized_context_size(reserved) - 5
    uuid_part = "1234abcd-12ab-34cd-56ef-1234567890ab"
    region = "r" * (2048 - len(f"arn:aws:kms::111122223333:key/{uuid_part}"))  # the longest key ARN KMS allows
    edk = WrappedDataKey(
        provider="aws-kms", key_id=f"arn:aws:kms:{region}:111122223333:key/{uuid_part}", ciphertext=b"x" * 6144
    )
    h = make_header(
        encryption_context=build_encryption_context({"\x01": "\x01" * n}, CID),
        data_keys=(edk,) * 8,
        labels={f"{i:02d}" + "\x01" * 126: "\x01" * 256 for i in range(64)},
    )
    data = h.to_json()
    assert len(data) <= MAX_HEADER_BYTES
    assert ContainerHeader.from_json(data) == h
