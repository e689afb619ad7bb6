"""Container API rough edges: `Container.stat`, and one type rule for writes (`put` and `open_writer().write`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane import ControlPlane
from dataplane import Container, DataPlane, ObjectStat
from envelope.errors import AuthenticationError, ValidationError
from envelope.kms import LocalKms


@pytest.fixture
def container(tmp_path: Path) -> Container:
    kms = LocalKms(tmp_path / "ks")
    key = kms.create_key(alias="alias/app")
    ControlPlane(kms).create_container(tmp_path / "c", key_id=key, encryption_context={"tenant": "t"})
    return DataPlane(kms, frame_length=4096).open(tmp_path / "c")


def test_stat_gives_plaintext_and_stored_size_and_generation(container: Container, tmp_path: Path) -> None:
    for size in (0, 1, 4095, 4096, 4097, 3 * 4096 + 7):
        name = f"o{size}"
        container.put(name, b"x" * size)
        st = container.stat(name)
        assert st == ObjectStat(
            name=name,
            size=size,
            encrypted_size=(tmp_path / "c" / "objects" / name).stat().st_size,
            generation=1,
            frame_length=4096,
            modified=None,
        )


def test_stat_is_not_authenticated_but_a_reader_refuses_what_it_misreports(
    container: Container, tmp_path: Path
) -> None:
    container.put("x", b"x" * 5000)
    stored = tmp_path / "c" / "objects" / "x"
    data = stored.read_bytes()
    stored.write_bytes(data[:-1])
    assert container.stat("x").size == 4999  # what the layout implies, read without a key
    with pytest.raises(AuthenticationError):
        container.get("x")
    stored.write_bytes(data[: len(data) - 5000 - 100])  # shorter than any message with this header
    with pytest.raises(AuthenticationError):
        container.stat("x")
    with pytest.raises(ValidationError):
        container.stat("../x")


def test_open_writer_write_takes_bytes_like_only_as_put_does(container: Container) -> None:
    with pytest.raises(ValidationError, match="bytes-like, not str"):
        container.put("p", "text")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="bytes-like, not str"), container.open_writer("w") as w:
        w.write("text")  # type: ignore[arg-type]
    assert not container.exists("w")  # the failed writer left nothing
    with container.open_writer("ok") as w:
        w.write(memoryview(b"abc"))
        w.write(bytearray(b"def"))
    assert container.get("ok") == b"abcdef"
