"""`AwsKms`: the two KMS operations over a caller's boto3 KMS client.

The caller owns the client (endpoint, region, credentials, botocore retry
config). This adapter validates every request before it is sent, and treats
KMS as a peer that may fail or lie: every answer is validated (shape,
bounds, and that its KeyId is the key asked for), every failure becomes a
typed `KmsError` (HTTP statuses without a KMS code and connection failures
included), and only what may heal is retried (see `_retry`). A multi-Region
key ARN of another region is sent to its replica in the client's region. It
never logs or stores key material; the plaintext from Decrypt goes straight
into a `DataKey` holder.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, SSLError
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from botocore.parsers import ResponseParserError

from envelope import kmsparams as v
from envelope.datakey import DataKey, GeneratedDataKey
from envelope.errors import (
    KeyRegionMismatchError,
    KmsConnectionError,
    KmsError,
    KmsInvalidResponseError,
    ValidationError,
    kms_error_for_code,
)
from envelope.kms._retry import RetryPolicy, call_with_retries
from envelope.kmsarn import parse_key_arn

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

# Failures to reach KMS or to get a whole answer back: worth another attempt. TLS failures
# (botocore's SSLError, a ConnectionError too) are not: a bad certificate does not heal.
_CONNECTION_ERRORS = (BotocoreConnectionError, HTTPClientError)
# What botocore's parser raises on a response body it cannot make sense of (bad base64, a list
# or a number where a blob or an object belongs, undecodable bytes, nesting deep enough to
# exhaust the stack). Only the response can cause these: every request was validated first.
_MALFORMED_RESPONSE_ERRORS = (ResponseParserError, ValueError, TypeError, AttributeError, LookupError, RecursionError)

# HTTP attempts made by the current thread, counted by a handler on each client's
# `request-created` event (emitted once per attempt, botocore's own retries included). botocore
# reports its retries on a ClientError (`RetryAttempts`) but not on an exception such as a
# connection error; this count covers both.
_ATTEMPTS = threading.local()
_MESSAGE_MAX = 512
_COUNTER_ID = "envelope.kms.aws.count-attempts"


def _count_attempt(**_: Any) -> None:
    _ATTEMPTS.count = getattr(_ATTEMPTS, "count", 0) + 1


def _install_attempt_counter(client: Any) -> bool:
    register = getattr(getattr(getattr(client, "meta", None), "events", None), "register", None)
    if not callable(register):
        return False
    register("request-created.kms", _count_attempt, unique_id=_COUNTER_ID)
    return True


def _translate(operation: str, exc: Exception) -> KmsError:
    """The typed error for whatever a client call raised. Keeps no reference to `exc`: its
    traceback holds the parser's frames, and for Decrypt those hold the response body."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        code = str(error.get("Code") or "Unknown")
        # KMS messages name keys and ARNs, never key bytes; keep them for operators (bounded:
        # a misbehaving endpoint may send a page of HTML, or megabytes, as its message).
        message = str(error.get("Message") or "")
        if len(message) > _MESSAGE_MAX:
            message = message[:_MESSAGE_MAX] + "... (truncated)"
        status = meta.get("HTTPStatusCode")
        err = kms_error_for_code(
            code, message, http_status=status if isinstance(status, int) else None, operation=operation
        )
        retries = meta.get("RetryAttempts", 0)
        err.http_attempts = (retries if isinstance(retries, int) and retries >= 0 else 0) + 1
        return err
    if isinstance(exc, _CONNECTION_ERRORS) and not isinstance(exc, SSLError):
        return KmsConnectionError(type(exc).__name__, operation=operation)
    if isinstance(exc, BotoCoreError):
        # Credentials, endpoint resolution, ...: botocore's message says what to fix.
        return KmsError(str(exc), code=type(exc).__name__, http_status=None, operation=operation)
    if isinstance(exc, _MALFORMED_RESPONSE_ERRORS):
        # Only the exception's type: its message may quote the body.
        return KmsInvalidResponseError(f"invalid response: unparseable ({type(exc).__name__})", operation=operation)
    return KmsError(type(exc).__name__, code=type(exc).__name__, http_status=None, operation=operation)


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
        self._counts_attempts = _install_attempt_counter(client)

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
        return f"AwsKms(region={self.region!r})"

    @property
    def region(self) -> str | None:
        """The client's region (None for a client that does not say)."""
        region = getattr(getattr(self._client, "meta", None), "region_name", None)
        return region if isinstance(region, str) and region else None

    @property
    def partition(self) -> str | None:
        """The client's partition ("aws", "aws-cn", "aws-us-gov"...; None when unknown)."""
        partition = getattr(getattr(self._client, "meta", None), "partition", None)
        return partition if isinstance(partition, str) and partition else None

    def _call(self, operation: str, method: str, request: dict[str, Any]) -> Mapping[str, Any]:
        def once() -> Mapping[str, Any]:
            failure: KmsError | None = None
            _ATTEMPTS.count = 0
            try:
                response = getattr(self._client, method)(**request)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a KmsError (see _translate)
                failure = _translate(operation, exc)
                if self._counts_attempts and _ATTEMPTS.count > 0:
                    failure.http_attempts = _ATTEMPTS.count
            if failure is not None:
                # Raised outside the except block: no __context__ keeps botocore's frames alive.
                raise failure
            return v.checked_response(operation, response)

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
        returned = v.checked_response_key_arn(op, response)
        # The MRK rule does not apply here: the control plane stores the ARN KMS returns, so it
        # must be the key asked for, exactly (a key ARN) or in the region and account asked for.
        v.check_response_key(op, request["KeyId"], returned, region=self.region, partition=self.partition)
        blob = v.checked_response_blob(op, response, "CiphertextBlob", v.CIPHERTEXT_BLOB_RANGE)
        return GeneratedDataKey(blob, str(returned))

    def _key_for_region(self, key_id: str) -> str:
        """The KeyId to send to Decrypt for `key_id` (the ARN stored with the data key).

        A multi-Region key ARN of another region becomes its replica's ARN in
        the client's region; a single-Region key ARN of another region cannot
        be used from here at all (KeyRegionMismatchError, before any call).
        """
        region = self.region
        if region is None or v.key_id_form(key_id) != "key-arn":
            return key_id
        arn = parse_key_arn(key_id)
        partition = self.partition
        if arn.region == region and (partition is None or arn.partition == partition):
            return key_id
        if not arn.is_mrk or (partition is not None and arn.partition != partition):
            # No replica can help: a single-Region key lives in one region, and no key crosses partitions.
            raise KeyRegionMismatchError(key_id, arn.region, region)
        return arn.in_region(region)

    def decrypt(
        self,
        ciphertext_blob: bytes,
        *,
        encryption_context: Mapping[str, str] | None = None,
        key_id: str | None = None,
        grant_tokens: Sequence[str] | None = None,
    ) -> DataKey:
        """Decrypt a data key. With `key_id` a key ARN, KMS must answer for exactly that key; a
        multi-Region key ARN of another region is asked of (and answered by) its replica in the
        client's region, and the `DataKey` keeps `key_id` as given (the same MRK)."""
        op = "Decrypt"
        request: dict[str, Any] = {"CiphertextBlob": v.validate_ciphertext_blob(ciphertext_blob)}
        context = v.validate_encryption_context(encryption_context)
        tokens = v.validate_grant_tokens(grant_tokens)
        if key_id is not None:
            request["KeyId"] = self._key_for_region(v.validate_key_id(key_id))
        if context:
            request["EncryptionContext"] = context
        if tokens:
            request["GrantTokens"] = tokens
        response = self._call(op, "decrypt", request)
        plaintext: bytes | None = None
        failure: KmsError | None = None
        try:
            returned = v.checked_response_key_arn(op, response)
            v.check_response_key(op, request.get("KeyId"), returned, region=self.region, partition=self.partition)
            plaintext = v.checked_response_blob(op, response, "Plaintext", v.PLAINTEXT_RANGE)
            return DataKey(plaintext, key_id if key_id is not None and key_id != request["KeyId"] else str(returned))
        except KmsError as err:
            failure = err
        finally:
            del plaintext, response
        # Outside the handler, without the checks' frames (they held the response, Plaintext included).
        raise failure.with_traceback(None)
