"""`AwsKms`: the two KMS operations over a caller's boto3 KMS client.

The caller owns the client (endpoint, region, credentials, botocore retry
config). This adapter validates every request before it is sent, validates
every response, maps every KMS error code to its typed exception, and retries
only what the KMS API says may be retried (see `_retry`). It never logs or
stores key material; the plaintext from Decrypt goes straight into a
`DataKey` holder.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from envelope import kmsparams as v
from envelope.datakey import DataKey, GeneratedDataKey
from envelope.errors import KmsConnectionError, KmsError, ValidationError, kms_error_for_code
from envelope.kms._retry import RetryPolicy, call_with_retries

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

__all__ = ["AwsKms"]

PROVIDER_ID = "aws-kms"

# botocore logs every response body at DEBUG (logger "botocore.parsers"), and a Decrypt
# response carries the plaintext data key in its "Plaintext" field. Redact that field from
# those records, so turning on DEBUG logging never writes a data key to a log.
_PLAINTEXT_FIELD = re.compile(r'("Plaintext"\s*:\s*")[^"]*(")')
_PLAINTEXT_FIELD_BYTES = re.compile(rb'("Plaintext"\s*:\s*")[^"]*(")')


def _redact(value: object) -> object:
    if isinstance(value, bytes | bytearray) and b"Plaintext" in value:
        return _PLAINTEXT_FIELD_BYTES.sub(rb"\1<redacted>\2", bytes(value))
    if isinstance(value, str) and "Plaintext" in value:
        return _PLAINTEXT_FIELD.sub(r"\1<redacted>\2", value)
    return value


class _RedactPlaintext(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(a) for a in record.args)
        return True


def _install_log_redaction() -> None:
    logger = logging.getLogger("botocore.parsers")
    if not any(isinstance(f, _RedactPlaintext) for f in logger.filters):
        logger.addFilter(_RedactPlaintext())


_install_log_redaction()
_CONNECTION_ERRORS = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)


def _translate(operation: str, exc: Exception) -> KmsError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        code = str(error.get("Code") or "Unknown")
        # KMS messages name keys and ARNs, never key bytes; keep them for operators.
        message = str(error.get("Message") or "")
        err = kms_error_for_code(code, message, http_status=meta.get("HTTPStatusCode"), operation=operation)
        err.http_attempts = int(meta.get("RetryAttempts", 0)) + 1
        return err
    if isinstance(exc, _CONNECTION_ERRORS):
        return KmsConnectionError(type(exc).__name__, operation=operation)
    return KmsError(str(exc), code=type(exc).__name__, http_status=None, operation=operation)


class AwsKms:
    """Both KMS operations over a boto3 KMS client; implements both plane protocols.

    Hand it to `ControlPlane` (which only ever calls
    `generate_data_key_without_plaintext`) and/or `DataPlane` (which only ever
    calls `decrypt`).
    """

    provider_id = PROVIDER_ID

    def __init__(self, client: KMSClient | Any, *, retry: RetryPolicy | None = None) -> None:
        if not callable(getattr(client, "generate_data_key_without_plaintext", None)) or not callable(
            getattr(client, "decrypt", None)
        ):
            raise ValidationError("AwsKms needs a boto3 KMS client: boto3.client('kms', ...)")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ValidationError("retry must be an envelope.kms.RetryPolicy")
        self._client = client
        self.retry = retry or RetryPolicy()

    @classmethod
    def from_config(
        cls,
        *,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        profile_name: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        retry: RetryPolicy | None = None,
    ) -> AwsKms:
        """Convenience constructor: builds a client whose own retries are off (envelope retries).

        This is the only place the library builds a client; pass your own to
        `AwsKms(client)` for anything else.
        """
        import boto3
        from botocore.config import Config

        session = boto3.Session(profile_name=profile_name, region_name=region_name)
        config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        return cls(session.client("kms", endpoint_url=endpoint_url, config=config), retry=retry)

    def __repr__(self) -> str:
        region = getattr(getattr(self._client, "meta", None), "region_name", None)
        return f"AwsKms(region={region!r})"

    def _call(self, operation: str, method: str, request: dict[str, Any]) -> dict[str, Any]:
        def once() -> dict[str, Any]:
            try:
                response: dict[str, Any] = getattr(self._client, method)(**request)
            except (ClientError, BotoCoreError) as exc:
                raise _translate(operation, exc) from None
            return response

        return call_with_retries(self.retry, once)

    def generate_data_key_without_plaintext(
        self,
        key_id: str,
        *,
        encryption_context: Mapping[str, str] | None = None,
        key_spec: str | None = None,
        number_of_bytes: int | None = None,
        grant_tokens: Sequence[str] | None = None,
    ) -> GeneratedDataKey:
        op = "GenerateDataKeyWithoutPlaintext"
        request: dict[str, Any] = {"KeyId": v.validate_key_id(key_id)}
        context = v.validate_encryption_context(encryption_context)
        tokens = v.validate_grant_tokens(grant_tokens)
        spec, nbytes = v.validate_key_size(key_spec, number_of_bytes)
        if context:
            request["EncryptionContext"] = context
        if tokens:
            request["GrantTokens"] = tokens
        if nbytes is not None:
            request["NumberOfBytes"] = nbytes
        else:
            request["KeySpec"] = spec or "AES_256"
        response = self._call(op, "generate_data_key_without_plaintext", request)
        blob = v.checked_response_blob(op, response, "CiphertextBlob", v.CIPHERTEXT_BLOB_RANGE)
        return GeneratedDataKey(blob, v.checked_response_key_id(op, response))

    def decrypt(
        self,
        ciphertext_blob: bytes,
        *,
        encryption_context: Mapping[str, str] | None = None,
        key_id: str | None = None,
        grant_tokens: Sequence[str] | None = None,
    ) -> DataKey:
        op = "Decrypt"
        request: dict[str, Any] = {"CiphertextBlob": v.validate_ciphertext_blob(ciphertext_blob)}
        context = v.validate_encryption_context(encryption_context)
        tokens = v.validate_grant_tokens(grant_tokens)
        if key_id is not None:
            request["KeyId"] = v.validate_key_id(key_id)
        if context:
            request["EncryptionContext"] = context
        if tokens:
            request["GrantTokens"] = tokens
        response = self._call(op, "decrypt", request)
        returned_key_id = v.checked_response_key_id(op, response)
        if key_id is not None and v.key_id_form(key_id) == "key-arn" and returned_key_id != key_id:
            raise KmsError("Decrypt answered for a different key than asked", code="InvalidResponse", operation=op)
        plaintext = v.checked_response_blob(op, response, "Plaintext", v.PLAINTEXT_RANGE)
        try:
            return DataKey(plaintext, returned_key_id)
        finally:
            del plaintext, response
