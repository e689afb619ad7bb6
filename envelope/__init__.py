"""envelope: the schema both planes share (container header, errors, storage, KMS layer).

This package must never import `controlplane`, `dataplane` or the CLI, and
the modules the control plane imports from it must not be able to decrypt.
"""

from envelope.errors import (
    AuthenticationError,
    EnvelopeError,
    FormatError,
    KmsError,
    StorageError,
    ValidationError,
)
from envelope.header import ContainerHeader, WrappedDataKey

__all__ = [
    "AuthenticationError",
    "ContainerHeader",
    "WrappedDataKey",
    "EnvelopeError",
    "FormatError",
    "KmsError",
    "StorageError",
    "ValidationError",
]
