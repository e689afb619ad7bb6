"""A decryptor that counts the Decrypt calls reaching its KMS: what the tests mean by "zero KMS calls"."""

from __future__ import annotations

import threading
from typing import Any

from envelope.datakey import DataKey


class CountingDecryptor:
    """Wraps a KMS adapter (LocalKms, AwsKms); the data plane only ever calls `decrypt`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.provider_id = inner.provider_id
        self.decrypts = 0
        self._lock = threading.Lock()

    def decrypt(self, ciphertext_blob: bytes, **kwargs: Any) -> DataKey:
        with self._lock:
            self.decrypts += 1
        key: DataKey = self.inner.decrypt(ciphertext_blob, **kwargs)
        return key
