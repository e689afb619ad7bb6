"""dataplane: write data into containers and read it back.

Writers and readers `import dataplane`. It calls KMS `Decrypt` on a
container's encrypted data key (once, then cached) and streams AES-256-GCM
in the AWS Encryption SDK message format (v2, suite 0x0478, framed). All
code that can decrypt lives in this package; the control plane cannot
import it. The building blocks under it -- `MessageWriter`, which takes a
message id from its caller -- are in `dataplane.hazmat`.
"""

from dataplane.cache import CacheStats, DataKeyCache
from dataplane.format import DEFAULT_FRAME_LENGTH, EncryptedDataKey, Limits, MessageHeader
from dataplane.hazmat import MessageReader, SequentialMessageReader
from dataplane.message import decrypt_message
from dataplane.plane import Container, DataPlane, ObjectInfo, ObjectStat, RekeyReport, VerifyResult

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
    "ObjectInfo",
    "ObjectStat",
    "RekeyReport",
    "SequentialMessageReader",
    "VerifyResult",
    "decrypt_message",
]
