"""Reading a container's header from its store: the one place both planes do it.

Storage and schema meet here: fetch `container.json` with a size cap, map
"not there" to `ContainerNotFoundError` and "too big" to `FormatError`, and
parse strictly. Nothing here holds or derives key material.
"""

from __future__ import annotations

from envelope.errors import ContainerNotFoundError, FormatError, ObjectNotFoundError, StorageError
from envelope.header import HEADER_NAME, MAX_HEADER_BYTES, ContainerHeader
from envelope.storage import Store

__all__ = ["read_container_header"]


def _size_or_none(store: Store) -> int | None:
    try:
        return store.size(HEADER_NAME)
    except StorageError:
        return None


def read_container_header(store: Store) -> ContainerHeader:
    """The parsed header of the container rooted at `store`.

    ContainerNotFoundError when there is none; FormatError (or
    UnsupportedFormatError) when it is malformed, oversize or of an unknown
    version; StorageError when the store fails.
    """
    try:
        data = store.get_bytes(HEADER_NAME, max_size=MAX_HEADER_BYTES)
    except ObjectNotFoundError as e:
        raise ContainerNotFoundError(f"no container at {store.url}") from e
    except StorageError as e:
        # get_bytes refuses objects over max_size; tell that case apart only on this error path.
        size = _size_or_none(store)
        if size is not None and size > MAX_HEADER_BYTES:
            raise FormatError(f"{store.url}: container header: document is larger than {MAX_HEADER_BYTES} bytes") from e
        raise
    try:
        return ContainerHeader.from_json(data)
    except FormatError as e:
        raise type(e)(f"{store.url}: {e}") from None
