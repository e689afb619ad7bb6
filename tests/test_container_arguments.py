"""Container checks its own arguments before it hands anything to a store (findings of the small-object review).

- A name is validated by `Container` itself on every path, one-shot included: a `BaseStore` subclass
  written by a user need not check names, and must never be handed `../x` by `put` or `get`.
- Data that cannot be viewed as flat bytes without a copy (a strided memoryview) is a `ValidationError`
  on every write path, never a bare `TypeError`; so is a `readinto` target that cannot be filled in
  place (strided or read-only), on both readers.
- A read never allocates the size an unauthenticated stored length claims (tests/test_stream_integrity.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controlplane import ControlPlane
from dataplane import DataPlane
from dataplane._oneshot import ONESHOT_BYTES
from envelope.errors import ValidationError
from envelope.kms import LocalKms
from envelope.storage import LocalStore


class RecordingStore(LocalStore):
    """A LocalStore that records every name handed to its object primitives (as a user's store might
    see them) before its own checks run."""

    seen: list[str]

    def substore(self, prefix: str) -> RecordingStore:
        sub = RecordingStore(str(self.path / prefix))
        sub.seen = self.seen
        return sub

    def open_writer(self, name: str, **kwargs: Any) -> Any:
        self.seen.append(name)
        return super().open_writer(name, **kwargs)

    def open_reader(self, name: str) -> Any:
        self.seen.append(name)
        return super().open_reader(name)

    def read_small(self, name: str, limit: int) -> Any:
        self.seen.append(name)
        return super().read_small(name, limit)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Any, RecordingStore]:
    kms = LocalKms(str(tmp_path / "keystore"))
    arn = kms.create_key()
    root = tmp_path / "c"
    ControlPlane(kms).create_container(str(root), key_id=arn)
    store = RecordingStore(str(root))
    store.seen = []
    container = DataPlane(kms).open(store)
    container.put("fine", b"x")
    store.seen.clear()
    return container, store


BAD_NAMES = ["../escaped", "a/../../b", "/abs", "", "a\x00b"]


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("size", [5, ONESHOT_BYTES + 1])
def test_put_validates_the_name_before_the_store_sees_it(setup: Any, name: str, size: int) -> None:
    container, store = setup
    with pytest.raises(ValidationError):
        container.put(name, bytes(size))
    assert store.seen == []


@pytest.mark.parametrize("name", BAD_NAMES)
def test_get_validates_the_name_before_the_store_sees_it(setup: Any, name: str) -> None:
    container, store = setup
    with pytest.raises(ValidationError):
        container.get(name)
    assert store.seen == []


@pytest.mark.parametrize("size", [8, 3 << 20])
def test_a_strided_buffer_is_a_validation_error_on_put(setup: Any, size: int) -> None:
    container, _ = setup
    strided = memoryview(bytes(size))[::2]
    with pytest.raises(ValidationError):
        container.put("strided", strided)
    assert not container.exists("strided")


def test_a_strided_buffer_is_a_validation_error_on_write(setup: Any) -> None:
    container, _ = setup
    with pytest.raises(ValidationError), container.open_writer("strided") as w:
        w.write(memoryview(bytes(64))[::2])
    assert not container.exists("strided")


def test_multi_dimensional_and_typed_buffers_are_written_as_their_bytes(setup: Any) -> None:
    container, _ = setup
    data = bytes(range(256)) * 4
    container.put("typed", memoryview(data).cast("I"))
    container.put("square", memoryview(data).cast("B", (32, 32)))
    assert container.get("typed") == container.get("square") == data


@pytest.mark.parametrize("kind", ["random access", "sequential"])
@pytest.mark.parametrize(
    "buffer",
    [memoryview(bytearray(64))[::2], bytes(32), memoryview(bytearray(32)).toreadonly()],
    ids=["strided", "bytes", "read-only view"],
)
def test_readinto_an_unusable_buffer_is_a_validation_error(kind: str, buffer: Any) -> None:
    """readinto / readinto1 on either reader: a target it cannot fill in place is a ValidationError,
    and the reader is still usable afterwards (nothing was read)."""
    import io

    from dataplane.hazmat import BufferSource, MessageReader, SequentialMessageReader
    from tests.test_format import KEY, write_message

    plaintext = bytes(range(100))
    message = write_message(plaintext, 16)
    for method in ("readinto", "readinto1"):
        reader = (
            MessageReader(BufferSource(message), resolve_key=lambda _h: KEY)
            if kind == "random access"
            else SequentialMessageReader(io.BytesIO(message), resolve_key=lambda _h: KEY)
        )
        with reader:
            with pytest.raises(ValidationError):
                getattr(reader, method)(buffer)
            out = bytearray(100)
            assert reader.readinto(out) == 100 and bytes(out) == plaintext
