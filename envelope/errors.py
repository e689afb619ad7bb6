"""The one error hierarchy of envelope, shared by both planes.

Every exception the library raises on purpose derives from `EnvelopeError`.
Error messages never carry key material, plaintext or ciphertext bytes: they
name the parameter, the operation or the object, and nothing secret.
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "AuthenticationError",
    "ContainerExistsError",
    "ContainerNotFoundError",
    "DataKeyWipedError",
    "DependencyTimeoutError",
    "DisabledError",
    "EnvelopeError",
    "FormatError",
    "GenerationInUseError",
    "IncorrectKeyError",
    "InvalidCiphertextError",
    "InvalidGrantTokenError",
    "InvalidKeyUsageError",
    "KMSInternalError",
    "KMSInvalidStateError",
    "KeyRegionMismatchError",
    "KeyUnavailableError",
    "KeystoreError",
    "KmsConnectionError",
    "KmsError",
    "KmsInvalidResponseError",
    "KmsNotFoundError",
    "KmsTransientError",
    "NotFoundError",
    "ObjectChangedError",
    "ObjectExistsError",
    "ObjectNotFoundError",
    "ObjectTooLargeError",
    "StorageError",
    "ThrottlingError",
    "UnboundObjectError",
    "UnsupportedFormatError",
    "ValidationError",
    "kms_error_for_code",
]


class EnvelopeError(Exception):
    """Root of every error envelope raises on purpose."""


class ValidationError(EnvelopeError, ValueError):
    """A caller passed a bad argument. Raised before any I/O or network call."""


class KeyRegionMismatchError(ValidationError):
    """A key ARN names another region than the KMS client's, and no replica can stand in for it.

    A single-Region key exists in one region only, and no key crosses
    partitions (aws, aws-cn, aws-us-gov...), so no Decrypt in the client's
    region can use it; raised before any network call. Use a client in
    `key_region`, or a multi-Region key (its replica in the client's region
    is used).
    """

    def __init__(self, key_arn: str, key_region: str, client_region: str) -> None:
        self.key_arn = key_arn
        self.key_region = key_region
        self.client_region = client_region
        super().__init__(
            f"key {key_arn} is in region {key_region} but the KMS client is in region {client_region}; "
            f"only a multi-Region key (mrk-...) of the same partition can be used from another region"
        )


class FormatError(EnvelopeError):
    """A stored document (container header, message header) is malformed.

    Raised for structure the reader cannot parse at all: wrong version, bad
    lengths, bad JSON. Integrity failures are `AuthenticationError`.
    """


class UnsupportedFormatError(FormatError):
    """Well-formed input in a format or algorithm suite this library refuses."""


class AuthenticationError(EnvelopeError):
    """An integrity check failed. One type, one message, for every check.

    The message deliberately does not say which check failed (header tag,
    key commitment, frame tag, sequence, truncation, name binding...), so a
    caller probing with forged inputs learns nothing from it.
    """

    MESSAGE = "authentication failed: the data is corrupt, tampered with, or not what was asked for"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.MESSAGE)


class DataKeyWipedError(EnvelopeError):
    """A data key was used after its owner wiped it.

    The library never wipes a key that an operation may still hold (see
    `envelope.datakey.DataKey`), so this reaches callers only when their own
    code wiped a key it had been handed and then used it.
    """


class GenerationInUseError(EnvelopeError):
    """A data-key generation cannot be retired yet: objects or running writers may still use it."""


class UnboundObjectError(EnvelopeError):
    """An operation would bind a message that carries no name binding (another SDK wrote it) to a name."""


class StorageError(EnvelopeError):
    """A storage backend failed; the underlying cause is chained (`__cause__`)."""


class ObjectExistsError(StorageError, FileExistsError):
    """A create-only write found the object already there. Nothing was changed."""


class ObjectChangedError(StorageError):
    """A conditional replace found another version of the object (or none): nothing was written."""


class ObjectNotFoundError(StorageError, FileNotFoundError):
    """The object (or container) does not exist."""


class ObjectTooLargeError(StorageError):
    """An object is larger than the caller's `max_size`; it was not read."""


class ContainerExistsError(ObjectExistsError):
    """A container already exists at that location; it was left untouched."""


class ContainerNotFoundError(ObjectNotFoundError):
    """No container header at that location."""


class KeystoreError(EnvelopeError):
    """The local keystore is unusable (unsafe permissions, corrupt files)."""


class KmsError(EnvelopeError):
    """A KMS operation failed.

    `code` is the KMS error code string (e.g. ``"DisabledException"``),
    `retryable` says whether envelope retries it, `http_status` is the HTTP
    status of the response when there was one.
    """

    code: str = "KMSError"
    retryable: bool = False
    default_http_status: int | None = 400

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        http_status: int | None = None,
        operation: str | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        self.http_status = http_status if http_status is not None else self.default_http_status
        self.operation = operation
        self.http_attempts = 1  # HTTP attempts botocore made inside the failed call
        self.attempts = 1  # total attempts envelope made, retries included
        text = f"{self.code}: {message}" if message else self.code
        if operation:
            text = f"{operation} failed: {text}"
        super().__init__(text)


class DependencyTimeoutError(KmsError):
    code = "DependencyTimeoutException"
    retryable = True
    default_http_status = 500


class DisabledError(KmsError):
    code = "DisabledException"


class InvalidGrantTokenError(KmsError):
    code = "InvalidGrantTokenException"


class InvalidKeyUsageError(KmsError):
    code = "InvalidKeyUsageException"


class KeyUnavailableError(KmsError):
    code = "KeyUnavailableException"
    retryable = True
    default_http_status = 500


class KMSInternalError(KmsError):
    code = "KMSInternalException"
    retryable = True
    default_http_status = 500


class KMSInvalidStateError(KmsError):
    code = "KMSInvalidStateException"


class KmsNotFoundError(KmsError):
    """KMS has no such key or alias (NotFoundException)."""

    code = "NotFoundException"


# The name DESIGN's smoke test (and earlier releases) import; the same class.
NotFoundError = KmsNotFoundError


class InvalidCiphertextError(KmsError):
    code = "InvalidCiphertextException"


class IncorrectKeyError(KmsError):
    code = "IncorrectKeyException"


class AccessDeniedError(KmsError):
    code = "AccessDeniedException"
    default_http_status = 403


class ThrottlingError(KmsError):
    code = "ThrottlingException"
    retryable = True


class KmsConnectionError(KmsError):
    """KMS could not be reached or did not answer in time (no KMS error code)."""

    code = "ConnectionError"
    retryable = True
    default_http_status = None


class KmsTransientError(KmsError):
    """KMS (or a proxy in front of it) answered 500, 502, 503 or 504 without a recognised KMS error code.

    `code` is what botocore made of the response: the unrecognised error code,
    or the HTTP status as a string ("503") when the body named none.
    """

    code = "ServiceUnavailable"
    retryable = True
    default_http_status = 503


class KmsInvalidResponseError(KmsError):
    """KMS answered, but the answer is malformed or not for the key asked for (code ``InvalidResponse``).

    Not retried: a well-behaved KMS never sends one, so a second attempt would
    most likely meet the same broken or hostile endpoint.
    """

    code = "InvalidResponse"
    default_http_status = None


_BY_CODE: dict[str, type[KmsError]] = {
    cls.code: cls
    for cls in (
        DependencyTimeoutError,
        DisabledError,
        InvalidGrantTokenError,
        InvalidKeyUsageError,
        KeyUnavailableError,
        KMSInternalError,
        KMSInvalidStateError,
        KmsNotFoundError,
        InvalidCiphertextError,
        IncorrectKeyError,
        AccessDeniedError,
        ThrottlingError,
    )
}
# Throttling arrives under several codes depending on the service front end.
for _alias in ("Throttling", "ThrottledException", "RequestLimitExceeded", "TooManyRequestsException"):
    _BY_CODE[_alias] = ThrottlingError
# Codes botocore's own retry logic treats as transient: a front end's request timeouts.
for _alias in ("RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"):
    _BY_CODE[_alias] = KmsTransientError
# moto's IAM enforcement reports denial as code "403"; real KMS says AccessDeniedException.
_BY_CODE["403"] = AccessDeniedError
_BY_CODE["AccessDenied"] = AccessDeniedError


# HTTP statuses that say "try again" whatever the body: throttling, and the 5xx a front end or
# proxy answers when KMS is briefly unreachable or overloaded (often with no KMS error body at all).
TRANSIENT_HTTP_STATUSES = frozenset({429, 500, 502, 503, 504})


def kms_error_for_code(
    code: str, message: str = "", *, http_status: int | None = None, operation: str | None = None
) -> KmsError:
    """Build the typed error for a KMS error code.

    A recognised code decides alone (a DisabledException is never retried,
    whatever its status). An unrecognised code (or none: botocore then uses
    the status, "503") is retried when the HTTP status is transient: 429
    gives a `ThrottlingError`, 500/502/503/504 a `KmsTransientError`; any
    other gives a plain, non-retryable `KmsError`.
    """
    cls = _BY_CODE.get(code)
    if cls is None and http_status in TRANSIENT_HTTP_STATUSES:
        cls = ThrottlingError if http_status == 429 else KmsTransientError
    if cls is None:
        return KmsError(message, code=code, http_status=http_status, operation=operation)
    return cls(message, code=code, http_status=http_status, operation=operation)
