"""Create-only writers racing for one name: exactly one wins, the loser gets ObjectExistsError.

S3 runs on a moto server that handles one request at a time. The shared
moto_server is threaded, and moto checks `If-None-Match: *` and then stores
the object as two separate steps, so under a true race it can let both
writers "win" -- a gap in the emulator, not in S3, which applies the
condition atomically. A serial server gives the atomic semantics of S3 while
our two writers still race over the network.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from envelope.errors import ObjectExistsError
from envelope.storage import LocalStore, S3Store, Store
from tests.support.servers import free_port

PART = 5 * 1024 * 1024

SERIAL_MOTO = """
import os, sys
from werkzeug.serving import run_simple
from moto.server import DomainDispatcherApplication, create_backend_app
port = int(sys.argv[1])
os.environ["MOTO_PORT"] = str(port)
run_simple("127.0.0.1", port, DomainDispatcherApplication(create_backend_app), threaded=False)
"""


@pytest.fixture(scope="module")
def serial_moto_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERIAL_MOTO, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "serial moto server exited"
            try:
                with urllib.request.urlopen(url + "/moto-api/", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "serial moto server did not start"
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(params=["local", "s3", "s3-concurrent-parts"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    url = request.getfixturevalue("serial_moto_url")
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=url)
    bucket = f"race-{os.urandom(6).hex()}"
    client.create_bucket(Bucket=bucket)
    concurrency = 4 if request.param == "s3-concurrent-parts" else 1
    return S3Store(client, bucket, "p", part_size=PART, upload_concurrency=concurrency)


def pattern(size: int, seed: int) -> bytes:
    block = bytes((i * 7 + seed * 101) & 0xFF for i in range(4096))
    return (block * (size // 4096 + 1))[:size]


def race(n: int, action: Any) -> list[Any]:
    """Run action(i) in n threads released together; return each one's result or ObjectExistsError."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            action(i)
            results[i] = "won"
        except ObjectExistsError as e:
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a racing writer hung"
    return results


@pytest.mark.parametrize("size", [1_000, PART + 4_321], ids=["small", "multipart"])
def test_racing_streamed_writers_exactly_one_wins_and_its_bytes_are_intact(store: Store, size: int) -> None:
    for round_no in range(8):
        name = f"race/{round_no}"
        payloads = [pattern(size, seed=1), pattern(size, seed=2)]
        writers = [store.open_writer(name) for _ in payloads]
        for writer, payload in zip(writers, payloads, strict=True):
            writer.write(payload)
        results = race(2, lambda i, writers=writers: writers[i].commit())
        assert results.count("won") == 1, results
        winner = results.index("won")
        assert isinstance(results[1 - winner], ObjectExistsError)
        assert store.get_bytes(name) == payloads[winner]
        writers[1 - winner].abort()
        assert list(store.list("race/")) == [f"race/{i}" for i in range(round_no + 1)]


def test_racing_put_bytes_exactly_one_wins(store: Store) -> None:
    for round_no in range(10):
        name = f"put-race/{round_no}"
        results = race(4, lambda i, name=name: store.put_bytes(name, f"writer {i}".encode()))
        assert results.count("won") == 1, results
        assert all(isinstance(r, ObjectExistsError) for r in results if r != "won")
        assert store.get_bytes(name) == f"writer {results.index('won')}".encode()


@pytest.mark.parametrize("size", [1_000, PART + 4_321], ids=["small", "multipart"])
@pytest.mark.parametrize("first", [0, 1], ids=["first-commits-first", "second-commits-first"])
def test_whichever_writer_commits_first_wins_and_the_other_gets_exists(store: Store, size: int, first: int) -> None:
    """Both orders, forced: the race tests above cannot choose which writer wins, this one does."""
    payloads = [pattern(size, seed=1), pattern(size, seed=2)]
    writers = [store.open_writer("ordered") for _ in payloads]
    for writer, payload in zip(writers, payloads, strict=True):
        writer.write(payload)
    writers[first].commit()
    with pytest.raises(ObjectExistsError):
        writers[1 - first].commit()
    writers[1 - first].abort()
    assert store.get_bytes("ordered") == payloads[first]
    assert list(store.list()) == ["ordered"]
