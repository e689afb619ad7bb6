"""Reading a container's header from its store: the one place both planes do it.

Storage and schema meet here: fetch `container.json` with a size cap, map
"not there" to `ContainerNotFoundError` and "too big" to `FormatError`, and
parse strictly. Nothing here holds or derives key material.
"""

from __future__ import annotations

from envelope.errors import ContainerNotFoundError, FormatError, ObjectNotFoundError, StorageError
from envelope.header import HEADER_NAME, MAX_HEADER_BYTES, ContainerHeader
from envelope.keygen import KEYS_PREFIX, GenerationRecord, check_generation, generation_from_record_name
from envelope.storage import Store

__all__ = ["read_container_header", "read_generation_records"]


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


def read_generation_records(store: Store, header: ContainerHeader) -> list[GenerationRecord]:
    """The generation records (2, 3, ...) of the container whose header is `header`, oldest first.

    Each record is parsed strictly and checked against the header
    (`check_generation`): a malformed or foreign record is a FormatError, not
    skipped, so a tampered record stops writers instead of being silently
    ignored. Names under ``keys/`` that are not record names are ignored. A
    record deleted between listing and reading is skipped (retired).
    """
    records = []
    for name in store.list(KEYS_PREFIX):
        if generation_from_record_name(name) is None:
            continue
        try:
            data = store.get_bytes(name, max_size=MAX_HEADER_BYTES)
        except ObjectNotFoundError:
            continue
        try:
            record = GenerationRecord.from_json(data)
        except FormatError as e:
            raise type(e)(f"{store.url}/{name}: {e}") from None
        check_generation(record, header, name)
        records.append(record)
    return sorted(records, key=lambda r: r.generation)
