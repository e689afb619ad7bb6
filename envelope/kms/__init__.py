"""The KMS layer: `AwsKms` over boto3, `LocalKms` for the no-AWS default, and retry policy.

Both adapters implement both plane protocols (`envelope.datakey`); each
plane's type admits only the one operation it needs.
"""

from envelope.datakey import DataKey, DataKeyDecryptor, DataKeyGenerator, GeneratedDataKey
from envelope.kms._retry import NO_RETRY, RetryPolicy
from envelope.kms.aws import AwsKms
from envelope.kms.local import KeyInfo, LocalKms

__all__ = [
    "NO_RETRY",
    "AwsKms",
    "DataKey",
    "DataKeyDecryptor",
    "DataKeyGenerator",
    "GeneratedDataKey",
    "KeyInfo",
    "LocalKms",
    "RetryPolicy",
]
