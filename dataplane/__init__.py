"""dataplane: write data into containers and read it back.

Writers and readers `import dataplane`. It calls KMS `Decrypt` on a
container's encrypted data key (once, then cached) and streams AES-256-GCM
in the AWS Encryption SDK message format (v2, suite 0x0478, framed). All
code that can decrypt lives in this package; the control plane cannot
import it.
"""

from dataplane.cache import CacheStats, DataKeyCache
from dataplane.format import DEFAULT_FRAME_LENGTH, EncryptedDataKey, Limits, MessageHeader
from dataplane.message import decrypt_message
from dataplane.plane import Container, DataPlane, ObjectInfo, RekeyReport, VerifyResult
from dataplane.stream import BufferSource, MessageReader, MessageWriter

__all__ = [
    "DEFAULT_FRAME_LENGTH",
    "BufferSource",
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
    "RekeyReport",
    "VerifyResult",
    "decrypt_message",
]
