"""`get -o` reserves the authenticated plaintext size in its anonymous output file (posix_fallocate) and
starts the file's writeback as it writes (posix_fadvise); neither changes what is published: the file is
exactly what was written."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from envelope.storage.local import WRITEBACK_BYTES
from envelope_cli import files
from envelope_cli.files import prepare_output
from tests.support.cli_run import Run
from tests.support.fadvise import record_fadvise, refuse_fadvise
from tests.test_cli_knobs import local_cli

STORAGE = 7


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    return local_cli(tmp_path, monkeypatch, capsys)


@pytest.fixture
def anonymous_files(tmp_path: Path) -> None:
    dir_fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        fd = files._open_anonymous(dir_fd)
    finally:
        os.close(dir_fd)
    if fd is None:
        pytest.skip("no O_TMPFILE here: get -o uses a named temp file, which is not reserved")
    os.close(fd)


def _recording(monkeypatch: pytest.MonkeyPatch, fail: int | None = None) -> list[tuple[int, int]]:
    calls: list[tuple[int, int]] = []
    real = os.posix_fallocate

    def fallocate(fd: int, offset: int, length: int) -> None:
        calls.append((offset, length))
        if fail is not None:
            raise OSError(fail, os.strerror(fail))
        real(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", fallocate)
    return calls


def test_get_o_reserves_the_plaintext_size(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anonymous_files: None
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "f").write_bytes(data)
    run("put", "c", "x", "f")
    calls = _recording(monkeypatch)
    run("get", "c", "x", "-o", "out")
    assert calls == [(0, len(data))]
    assert (tmp_path / "out").read_bytes() == data
    # cp --to-file and get -o DIR/ go through the same path.
    calls.clear()
    run("cp", "c", "x", "--to-file", "out2")
    (tmp_path / "dir").mkdir()
    run("get", "c", "x", "-o", "dir/")
    assert calls == [(0, len(data))] * 2
    assert (tmp_path / "out2").read_bytes() == data == (tmp_path / "dir" / "x").read_bytes()
    # An empty object reserves nothing.
    run("put", "c", "empty", "-", stdin=b"")
    calls.clear()
    run("get", "c", "empty", "-o", "e")
    assert calls == [] and (tmp_path / "e").read_bytes() == b""


def test_a_filesystem_without_fallocate_still_gets_its_file(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anonymous_files: None
) -> None:
    (tmp_path / "f").write_bytes(b"some plaintext")
    run("put", "c", "x", "f")
    calls = _recording(monkeypatch, fail=errno.EOPNOTSUPP)
    run("get", "c", "x", "-o", "out")
    assert calls and (tmp_path / "out").read_bytes() == b"some plaintext"


def test_a_full_disk_fails_before_anything_is_published(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anonymous_files: None
) -> None:
    (tmp_path / "f").write_bytes(b"some plaintext")
    run("put", "c", "x", "f")
    _recording(monkeypatch, fail=errno.ENOSPC)
    _, err = run("get", "c", "x", "-o", "out", code=STORAGE)
    assert "No space left on device" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "f", "keystore"]


def test_a_reservation_larger_than_what_was_written_is_cut_back(tmp_path: Path, anonymous_files: None) -> None:
    with prepare_output(str(tmp_path / "out"), overwrite=False) as target, target.open(1 << 20) as sink:
        sink.write(b"ten bytes!")
    assert (tmp_path / "out").read_bytes() == b"ten bytes!"
    with prepare_output(str(tmp_path / "out"), overwrite=True) as target, target.open(5) as sink:
        sink.write(b"longer than reserved")
    assert (tmp_path / "out").read_bytes() == b"longer than reserved"


def test_get_o_starts_writeback_as_it_writes(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anonymous_files: None
) -> None:
    data = os.urandom(2 * WRITEBACK_BYTES + 12345)
    (tmp_path / "f").write_bytes(data)
    run("put", "c", "x", "f")
    calls = record_fadvise(monkeypatch)
    run("get", "c", "x", "-o", "out")
    chunk, dontneed = WRITEBACK_BYTES, os.POSIX_FADV_DONTNEED
    assert calls == [(0, chunk, dontneed), (chunk, chunk, dontneed)]
    assert (tmp_path / "out").read_bytes() == data

    refuse_fadvise(monkeypatch)  # only a hint: a file system that refuses it changes nothing
    run("get", "c", "x", "-o", "out2")
    assert (tmp_path / "out2").read_bytes() == data
