"""The KMS layer: `AwsKms` over boto3, `LocalKms` for the no-AWS default, and retry policy.

Both adapters implement both plane protocols (`envelope.datakey`); each
plane's type admits only the one operation it needs.

`AwsKms` is loaded on first use (`from envelope.kms import AwsKms` works as
usual): importing it loads botocore, which a program using only `LocalKms`
(the command line with the local keystore) should not pay for.
"""

from typing import TYPE_CHECKING

from envelope.datakey import DataKey, DataKeyDecryptor, DataKeyGenerator, GeneratedDataKey
from envelope.kms._retry import NO_RETRY, RetryPolicy
from envelope.kms.local import KeyInfo, LocalKms

if TYPE_CHECKING:
    # mypy sees an ordinary import (so a misspelt name is still an error); at run time, `__getattr__`.
    from envelope.kms.aws import AwsKms

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

if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        """`AwsKms` on first access (PEP 562); it then lives in this module like any other name."""
        if name == "AwsKms":
            from envelope.kms.aws import AwsKms

            globals()["AwsKms"] = AwsKms
            return AwsKms
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))
