"""fsspec paths that leave the library's own reader (attacker review): text-mode writes, `get`, caches.

- A text-mode file dropped without `close()` (or abandoned after an error the caller handled) must
  publish nothing, like a binary one: fsspec's TextIOWrapper used to close -- and so publish -- it.
- `fs.get` / `get_file` and fsspec's ``simplecache::`` used to leave the partial plaintext of a
  tampered object on disk (the cache then served it as the whole file, silently truncated), at the
  umask's mode, through a symbolic link planted at the destination.
"""

from __future__ import annotations

import gc
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from dataplane.bulk import forget_process_planes
from dataplane.fs import EnvelopeFileSystem
from envelope.errors import AuthenticationError
from tests.support.envelope_fs import flip, local_container, read_stored

FRAME = 4096
DATA = b"ledger row, amount=100\n" * 4000  # ~92 KB: many frames


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    EnvelopeFileSystem.clear_instance_cache()
    forget_process_planes()
    yield
    EnvelopeFileSystem.clear_instance_cache()
    forget_process_planes()


@pytest.fixture
def options(tmp_path: Path) -> dict[str, Any]:
    return {**local_container(tmp_path), "frame_length": FRAME}


def test_a_dropped_or_abandoned_text_mode_file_publishes_nothing(options: dict[str, Any]) -> None:
    fs = EnvelopeFileSystem(**options)
    f = fs.open("dropped.csv", "w")
    f.write("partial row 1\n")
    del f
    gc.collect()
    assert not fs.exists("dropped.csv")

    def producer() -> None:
        f = fs.open("abandoned.csv", "w")
        f.write("header\n")
        raise RuntimeError("the producer failed halfway")

    with pytest.raises(RuntimeError):
        producer()
    gc.collect()
    assert not fs.exists("abandoned.csv")
    with fs.open("complete.csv", "w") as f:
        f.write("a,b\n")
    assert fs.cat_file("complete.csv") == b"a,b\n"


def test_get_leaves_no_partial_plaintext_and_does_not_follow_a_link(options: dict[str, Any], tmp_path: Path) -> None:
    fs = EnvelopeFileSystem(**options)
    fs.pipe_file("ledger.csv", DATA)
    fs.pipe_file("ok.csv", b"fine\n")
    flip(options, "ledger.csv", len(read_stored(options, "ledger.csv")) * 9 // 10)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(AuthenticationError):
        fs.get("ledger.csv", str(out / "ledger.csv"))
    assert sorted(os.listdir(out)) == [], "no partial plaintext and no temp file are left behind"

    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"not yours")
    (out / "ok.csv").symlink_to(victim)
    fs.get("ok.csv", str(out / "ok.csv"))
    assert victim.read_bytes() == b"not yours", "the link was replaced, not written through"
    assert (out / "ok.csv").read_bytes() == b"fine\n" and not (out / "ok.csv").is_symlink()
    assert stat.S_IMODE((out / "ok.csv").stat().st_mode) == 0o600


def test_simplecache_never_serves_a_truncated_object(options: dict[str, Any], tmp_path: Path) -> None:
    fs = EnvelopeFileSystem(**options)
    fs.pipe_file("ledger.csv", DATA)
    flip(options, "ledger.csv", len(read_stored(options, "ledger.csv")) * 9 // 10)
    cache = tmp_path / "cache"
    opts = {"envelope": options, "simplecache": {"cache_storage": str(cache)}}
    for _ in range(2):  # the retry used to read the partial cache file as the whole object
        with pytest.raises(AuthenticationError), fsspec.open("simplecache::envelope://ledger.csv", "rb", **opts) as f:
            f.read()
    assert not cache.exists() or not [p for p in cache.iterdir() if p.stat().st_size]


def test_a_name_that_cannot_be_mapped_fails_alone_in_copy_prefix(tmp_path: Path) -> None:
    from dataplane.bulk import ContainerSpec, copy_prefix

    src_opts = local_container(tmp_path, "src")
    dst_opts = local_container(tmp_path, "dst")
    src = ContainerSpec(location=src_opts["container"], kms=src_opts["kms"])
    dst = ContainerSpec(location=dst_opts["container"], kms=dst_opts["kms"])
    container = src.open()
    long_name = "in/" + "/".join(["x" * 200] * 5)  # 1,008 bytes: legal here, too long under a longer prefix
    for name in ("in/a", "in/b", long_name):
        container.put(name, name.encode())
    report = copy_prefix(src, dst, "in/", dst_prefix="a-much-longer-prefix/")
    assert sorted(report.copied) == ["a-much-longer-prefix/a", "a-much-longer-prefix/b"]
    assert [f.name for f in report.failed] == [long_name]
