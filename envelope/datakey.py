"""Data-key results and the two one-method KMS protocols, one per plane.

The control plane is handed a `DataKeyGenerator`; it has no way to ask for a
plaintext key. The data plane is handed a `DataKeyDecryptor`. One adapter
(`AwsKms`, `LocalKms`) may implement both, but each plane's type only admits
the one operation it needs.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, NoReturn, Protocol, runtime_checkable

from envelope.errors import DataKeyWipedError

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

    Sharing and wiping. One `DataKey` is shared by every thread that uses a
    cached key, so wiping must never race a use. Two rules make that hold by
    construction:

    - `reveal()` and `wipe()` take the same lock, and `wipe()` detaches the
      buffer before zeroing it. A reveal therefore returns either the whole
      key or raises `DataKeyWipedError`; it can never copy a half-zeroed
      buffer (zeroing runs in C without the GIL, so without the lock a copy
      could interleave with it).
    - Nobody wipes a key that others may hold. The data-key cache only
      *drops its reference* when it evicts a key; each operation holds its
      own reference for as long as it uses the key, and the key wipes itself
      when the last reference goes (`__del__`, which CPython runs as soon as
      the count reaches zero). An operation that started with a valid key
      finishes with it; one that starts after the eviction fetches the key
      again. `wipe()` stays available to the sole owner of a key (a key that
      failed validation, a caller done with its own key).

    Derived keys (`derived()`) are memoized on the holder, held the same way
    and wiped with it.
    """

    __slots__ = ("__weakref__", "_buf", "_derived", "_lock", "key_id")

    def __init__(self, key: bytes | bytearray, key_id: str) -> None:
        self._buf = bytearray(key)
        self._lock = threading.Lock()
        self._derived: dict[str, DataKey] = {}
        self.key_id = key_id

    def __len__(self) -> int:
        return len(self._buf)

    def reveal(self) -> bytes:
        """The key bytes (a fresh copy). Only cipher code should call this.

        Raises `DataKeyWipedError` once the key has been wiped; never returns
        a partly wiped key.
        """
        with self._lock:
            if not self._buf:
                raise DataKeyWipedError("data key has been wiped")
            return bytes(self._buf)

    def derived(self, label: str, derive: Callable[[bytes], bytes]) -> DataKey:
        """The key `derive(self.reveal())`, computed once per label and wiped with this key."""
        with self._lock:
            if not self._buf:
                raise DataKeyWipedError("data key has been wiped")
            child = self._derived.get(label)
            if child is None:
                child = self._derived[label] = DataKey(derive(bytes(self._buf)), self.key_id)
            return child

    @property
    def wiped(self) -> bool:
        return not self._buf

    def wipe(self) -> None:
        """Overwrite the key bytes (and keys derived from them) in place, best effort, and forget them.

        Only the sole owner of a key may call this: see the class docstring.
        """
        with self._lock:
            buf, self._buf = self._buf, bytearray()
            children = list(self._derived.values())
            self._derived.clear()
            n = len(buf)
            if n:
                address = (ctypes.c_char * n).from_buffer(buf)
                ctypes.memset(address, 0, n)
                del address
        for child in children:
            child.wipe()

    def __del__(self) -> None:
        # The last reference is gone: nobody can be using the key any more.
        with contextlib.suppress(Exception):
            self.wipe()

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
