"""The shared storage seams: one BaseStore, one writer life cycle, a typed "too large", a scheme table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from envelope.errors import ObjectTooLargeError, StorageError, ValidationError
from envelope.storage import LocalStore, S3Store, Store, open_store
from envelope.storage._base import BaseStore, StickyWriterState
from envelope.storage.local import LocalObjectWriter
from envelope.storage.s3 import S3ObjectWriter


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "root")
    client = request.getfixturevalue("s3_client")
    return S3Store(client, request.getfixturevalue("bucket"), "seams")


def test_both_stores_derive_from_one_base(store: Store) -> None:
    assert isinstance(store, BaseStore)
    for derived in ("put_bytes", "get_bytes", "exists", "list", "list_children"):
        assert getattr(type(store), derived) is getattr(BaseStore, derived), derived


def test_writers_share_one_life_cycle() -> None:
    for writer in (LocalObjectWriter, S3ObjectWriter):
        assert writer.__exit__ is StickyWriterState.__exit__
        assert writer.__enter__ is StickyWriterState.__enter__


def test_too_large_is_its_own_storage_error(store: Store) -> None:
    store.put_bytes("blob", b"x" * 100)
    with pytest.raises(ObjectTooLargeError, match="more than max_size=99") as info:
        store.get_bytes("blob", max_size=99)
    assert isinstance(info.value, StorageError)
    assert store.get_bytes("blob", max_size=100) == b"x" * 100


@pytest.mark.parametrize("max_size", [-1, True, 1.5, "10"])
def test_max_size_is_validated_the_same_way(store: Store, max_size: Any) -> None:
    store.put_bytes("blob", b"x")
    with pytest.raises(ValidationError, match="max_size"):
        store.get_bytes("blob", max_size=max_size)


@pytest.mark.parametrize("method", ["put_bytes", "get_bytes", "exists", "list", "list_children"])
def test_derived_operations_validate_before_the_primitives(store: Store, method: str) -> None:
    call = getattr(store, method)
    with pytest.raises(ValidationError):
        call("../x", b"x") if method == "put_bytes" else call("../x")


def test_the_scheme_table(tmp_path: Path, s3_client: Any, bucket: str) -> None:
    assert isinstance(open_store(tmp_path / "a"), LocalStore)
    assert isinstance(open_store(f"file://{tmp_path}/b"), LocalStore)
    opened = open_store(f"s3://{bucket}/p", s3_client=s3_client)
    assert isinstance(opened, S3Store)
    assert opened.url == f"s3://{bucket}/p"
    with pytest.raises(ValidationError, match="s3_client"):
        open_store(f"s3://{bucket}/p")
    with pytest.raises(ValidationError, match="unsupported location scheme 'gs'"):
        open_store("gs://bucket/p")
