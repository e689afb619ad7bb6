"""dataplane: write data into containers and read it back.

Writers and readers `import dataplane`. It calls KMS `Decrypt` on a
container's encrypted data key (once, then cached) and streams AES-256-GCM
in the AWS Encryption SDK message format (v2, suite 0x0478, framed). All
code that can decrypt lives in this package; the control plane cannot
import it.
"""

from dataplane.cache import CacheStats, DataKeyCache
from dataplane.format import DEFAULT_FRAME_LENGTH, EncryptedDataKey, Limits, MessageHeader
from dataplane.plane import Container, DataPlane, ObjectInfo, VerifyResult
from dataplane.stream import MessageReader, MessageWriter

__all__ = [
    "DEFAULT_FRAME_LENGTH",
    "CacheStats",
    "Container",
    "DataKeyCache",
    "DataPlane",
    "EncryptedDataKey",
    "Limits",
    "MessageHeader",
    "MessageReader",
    "MessageWriter",
    "ObjectInfo",
    "VerifyResult",
]

try:  # the low-level expert path (issue #9), when present
    from dataplane.message import decrypt_message

    __all__ += ["decrypt_message"]
except ImportError:  # pragma: no cover
    pass
