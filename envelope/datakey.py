"""Data-key results and the two one-method KMS protocols, one per plane.

The control plane is handed a `DataKeyGenerator`; it has no way to ask for a
plaintext key. The data plane is handed a `DataKeyDecryptor`. One adapter
(`AwsKms`, `LocalKms`) may implement both, but each plane's type only admits
the one operation it needs.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence
from typing import NamedTuple, NoReturn, Protocol, runtime_checkable

__all__ = ["DataKey", "DataKeyDecryptor", "DataKeyGenerator", "GeneratedDataKey"]


class GeneratedDataKey(NamedTuple):
    """Result of GenerateDataKeyWithoutPlaintext: no plaintext anywhere in it."""

    ciphertext_blob: bytes
    key_id: str
    """The ARN of the KMS key that encrypted the data key, as KMS returned it."""


class DataKey:
    """A plaintext data key. Its repr, str and pickling never reveal the bytes.

    The bytes live in a private `bytearray` so that `wipe()` can overwrite
    them (best effort: copies made by the cipher library or by KMS response
    parsing are out of our reach).
    """

    __slots__ = ("__weakref__", "_buf", "key_id")

    def __init__(self, key: bytes | bytearray, key_id: str) -> None:
        self._buf = bytearray(key)
        self.key_id = key_id

    def __len__(self) -> int:
        return len(self._buf)

    def reveal(self) -> bytes:
        """The key bytes. Only cipher code should call this."""
        if not self._buf:
            raise ValueError("data key has been wiped")
        return bytes(self._buf)

    @property
    def wiped(self) -> bool:
        return not self._buf

    def wipe(self) -> None:
        """Overwrite the key bytes in place (best effort) and forget them."""
        n = len(self._buf)
        if n:
            address = (ctypes.c_char * n).from_buffer(self._buf)
            ctypes.memset(address, 0, n)
            del address
            self._buf = bytearray()

    def __repr__(self) -> str:
        state = "wiped" if self.wiped else f"{len(self._buf) * 8}-bit"
        return f"<DataKey {state} key_id={self.key_id!r}>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> NoReturn:
        raise TypeError("DataKey cannot be pickled")

    def __copy__(self) -> NoReturn:
        raise TypeError("DataKey cannot be copied")

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise TypeError("DataKey cannot be copied")


@runtime_checkable
class DataKeyGenerator(Protocol):
    """The only KMS operation the control plane may perform."""

    def generate_data_key_without_plaintext(
        self,
        key_id: str,
        *,
        encryption_context: Mapping[str, str] | None = None,
        key_spec: str | None = None,
        number_of_bytes: int | None = None,
        grant_tokens: Sequence[str] | None = None,
    ) -> GeneratedDataKey: ...


@runtime_checkable
class DataKeyDecryptor(Protocol):
    """The only KMS operation the data plane may perform."""

    def decrypt(
        self,
        ciphertext_blob: bytes,
        *,
        encryption_context: Mapping[str, str] | None = None,
        key_id: str | None = None,
        grant_tokens: Sequence[str] | None = None,
    ) -> DataKey: ...
