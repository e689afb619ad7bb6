"""KMS request and response bounds (the seed page and Decrypt), checked before any network call.

Both KMS adapters (`AwsKms`, `LocalKms`) run every request through here, so
a bad argument fails the same way, with `ValidationError`, whichever KMS is
behind them — and never costs a round trip. The planes use the same checks
for their own arguments before they touch storage. Pure functions: this
module never calls anything and holds no key material, so the control plane
may import it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from envelope.errors import KmsInvalidResponseError, ValidationError
from envelope.kmsarn import ALIAS_NAME, KEY_ID, KeyArn, parse_kms_arn

KEY_ID_MAX = 2048
GRANT_TOKENS_MAX = 10
GRANT_TOKEN_MAX_LEN = 8192
KEY_SPECS = ("AES_256", "AES_128")
NUMBER_OF_BYTES_RANGE = (1, 1024)
CIPHERTEXT_BLOB_RANGE = (1, 6144)
PLAINTEXT_RANGE = (1, 4096)


def key_id_form(key_id: str) -> str:
    """Which of the four KeyId forms this is: 'key-id', 'key-arn', 'alias-name' or 'alias-arn'."""
    if KEY_ID.fullmatch(key_id):
        return "key-id"
    if ALIAS_NAME.fullmatch(key_id):
        return "alias-name"
    try:
        arn = parse_kms_arn(key_id)
    except ValidationError:
        raise ValidationError(
            "KeyId must be a key ID (1234abcd-12ab-34cd-56ef-1234567890ab), a key ARN, an alias name "
            "(alias/NAME) or an alias ARN"
        ) from None
    return "key-arn" if arn.resource_type == "key" else "alias-arn"


def validate_key_id(key_id: object, *, parameter: str = "KeyId") -> str:
    if not isinstance(key_id, str):
        raise ValidationError(f"{parameter} must be a string, not {type(key_id).__name__}")
    if not 1 <= len(key_id) <= KEY_ID_MAX:
        raise ValidationError(f"{parameter} must be 1..{KEY_ID_MAX} characters long (got {len(key_id)})")
    key_id_form(key_id)
    return key_id


def _utf8(value: str, what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{what} is not valid Unicode text (lone surrogate)") from None


def validate_encryption_context(context: object) -> dict[str, str]:
    """A str->str mapping; returns a plain dict copy (the caller's object is never kept)."""
    if context is None:
        return {}
    if not isinstance(context, Mapping):
        raise ValidationError(f"EncryptionContext must be a mapping of str to str, not {type(context).__name__}")
    out: dict[str, str] = {}
    for k, v in context.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValidationError("EncryptionContext keys and values must all be str")
        if not k:
            raise ValidationError("EncryptionContext keys must not be empty")
        _utf8(k, "an EncryptionContext key")
        _utf8(v, f"EncryptionContext value for {k!r}")
        out[k] = v
    return out


def validate_grant_tokens(tokens: object, *, parameter: str = "GrantTokens") -> list[str]:
    if tokens is None:
        return []
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
        raise ValidationError(f"{parameter} must be a list of strings")
    if len(tokens) > GRANT_TOKENS_MAX:
        raise ValidationError(f"{parameter} must have 0..{GRANT_TOKENS_MAX} items (got {len(tokens)})")
    out: list[str] = []
    for t in tokens:
        if not isinstance(t, str):
            raise ValidationError(f"{parameter} must be a list of strings")
        if not 1 <= len(t) <= GRANT_TOKEN_MAX_LEN:
            raise ValidationError(f"each grant token must be 1..{GRANT_TOKEN_MAX_LEN} characters long (got {len(t)})")
        out.append(t)
    return out


def validate_key_size(key_spec: object, number_of_bytes: object) -> tuple[str | None, int | None]:
    if key_spec is not None and number_of_bytes is not None:
        raise ValidationError("specify either KeySpec or NumberOfBytes, not both")
    if key_spec is not None and key_spec not in KEY_SPECS:
        raise ValidationError(f"KeySpec must be one of {', '.join(KEY_SPECS)} (got {key_spec!r})")
    if number_of_bytes is not None:
        lo, hi = NUMBER_OF_BYTES_RANGE
        if isinstance(number_of_bytes, bool) or not isinstance(number_of_bytes, int):
            raise ValidationError(f"NumberOfBytes must be an integer in {lo}..{hi}")
        if not lo <= number_of_bytes <= hi:
            raise ValidationError(f"NumberOfBytes must be in {lo}..{hi} (got {number_of_bytes})")
    return (key_spec if isinstance(key_spec, str) else None), number_of_bytes


def key_length(key_spec: str | None, number_of_bytes: int | None) -> int:
    """Bytes of key the request asks for. KMS rejects a request with neither field, so the
    adapters fill in AES_256 when the caller gave neither."""
    if number_of_bytes is not None:
        return number_of_bytes
    return 16 if key_spec == "AES_128" else 32


def validate_ciphertext_blob(blob: object, *, parameter: str = "CiphertextBlob") -> bytes:
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise ValidationError(f"{parameter} must be bytes, not {type(blob).__name__}")
    data = bytes(blob)
    lo, hi = CIPHERTEXT_BLOB_RANGE
    if not lo <= len(data) <= hi:
        raise ValidationError(f"{parameter} must be {lo}..{hi} bytes long (got {len(data)})")
    return data


def _bad_response(operation: str, why: str) -> KmsInvalidResponseError:
    return KmsInvalidResponseError(f"invalid response: {why}", operation=operation)


def checked_response(operation: str, response: object) -> Mapping[str, Any]:
    """The parsed response, if it is a mapping at all (a stub or a broken client may hand back anything)."""
    if not isinstance(response, Mapping):
        raise _bad_response(operation, f"expected a mapping, got {type(response).__name__}")
    return response


def checked_response_blob(operation: str, response: Mapping[str, Any], field: str, bounds: tuple[int, int]) -> bytes:
    value = response.get(field)
    if not isinstance(value, (bytes, bytearray)):
        raise _bad_response(operation, f"{field} missing or not bytes")
    lo, hi = bounds
    if not lo <= len(value) <= hi:
        raise _bad_response(operation, f"{field} must be {lo}..{hi} bytes (got {len(value)})")
    return bytes(value)


def checked_response_key_arn(operation: str, response: Mapping[str, Any]) -> KeyArn:
    """The response's KeyId, which must be a key ARN, parsed."""
    value = response.get("KeyId")
    if not isinstance(value, str) or not 1 <= len(value) <= KEY_ID_MAX:
        raise _bad_response(operation, "KeyId missing or out of bounds")
    try:
        arn = parse_kms_arn(value)
    except ValidationError:
        arn = None
    if arn is None or arn.resource_type != "key":
        raise _bad_response(operation, "KeyId is not a key ARN")
    return arn


def checked_response_key_id(operation: str, response: Mapping[str, Any]) -> str:
    return str(checked_response_key_arn(operation, response))


def check_response_key(
    operation: str, requested: str | None, returned: KeyArn, *, region: str | None, partition: str | None
) -> None:
    """The response names the key the request asked for, else KmsInvalidResponseError.

    `requested` is the KeyId as sent (None: Decrypt without KeyId); `region`
    and `partition` are the client's (None when unknown). KMS keys are
    regional, so KMS only ever answers with a key of the region (and
    partition) it was called in:

    - a key ARN: the response names exactly that ARN;
    - an alias ARN: the response's partition, region and account are the alias ARN's;
    - a key id, an alias name, or no KeyId: partition and region are the client's, and for
      a key id the response's key id is that key id.
    """
    form = key_id_form(requested) if requested is not None else None
    if form == "key-arn":
        if str(returned) != requested:
            raise _bad_response(operation, "KeyId is not the key asked for")
        return
    if form == "alias-arn":
        alias = parse_kms_arn(requested)
        if (returned.partition, returned.region, returned.account) != (alias.partition, alias.region, alias.account):
            raise _bad_response(operation, "KeyId is not in the partition, region and account of the alias asked for")
        return
    if partition is not None and returned.partition != partition:
        raise _bad_response(operation, "KeyId is in another partition than the client's")
    if region is not None and returned.region != region:
        raise _bad_response(operation, "KeyId is in another region than the client's")
    if form == "key-id" and returned.resource_id.lower() != str(requested).lower():
        raise _bad_response(operation, "KeyId is not the key asked for")
