"""Re-encryption in place (DESIGN §12): rekey, rekey_all, and what they must never lose.

A rekey streams an object from its generation into the newest one and
replaces it only if it is still the version it read (S3 If-Match, locally
the same check under the directory lock). A concurrent overwrite therefore
always wins, a crash at any point leaves every object readable, and a second
run does nothing.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controlplane import ControlPlane
from dataplane import Container, DataPlane
from envelope.errors import ObjectChangedError, ObjectNotFoundError
from envelope.kms import AwsKms, LocalKms

REPO = Path(__file__).resolve().parent.parent


class World:
    def __init__(self, kms: Any, key: str, location: str, s3: Any) -> None:
        self.kms, self.key, self.location, self.s3 = kms, key, location, s3

    def plane(self, **kw: Any) -> DataPlane:
        return DataPlane(self.kms, self.s3, key_ids=[self.key], frame_length=1024, **kw)

    def rotate(self) -> None:
        # dated an hour back so that retire_generation does not wait for running writers
        ControlPlane(self.kms, self.s3, clock=lambda: datetime.now(UTC) - timedelta(hours=1)).rotate_container(
            self.location
        )


@pytest.fixture(params=["local", "s3"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> World:
    if request.param == "local":
        kms: Any = LocalKms(tmp_path / "keystore")
        key = kms.create_key(alias="alias/rekey")
        location, s3 = str(tmp_path / "c"), None
    else:
        client = request.getfixturevalue("kms_client")
        s3 = request.getfixturevalue("s3_client")
        key = client.create_key()["KeyMetadata"]["Arn"]
        kms = AwsKms(client)
        location = f"s3://{request.getfixturevalue('bucket')}/c"
    ControlPlane(kms, s3).create_container(location, key_id=key, encryption_context={"tenant": "acme"})
    return World(kms, key, location, s3)


def test_rekey_moves_an_object_to_the_newest_generation_once(world: World) -> None:
    with world.plane().open(world.location) as c:
        c.put("a", b"A" * 5000)
    world.rotate()
    with world.plane().open(world.location) as c:
        assert c.generation_of("a") == 1
        assert c.rekey("a") is True
        assert c.generation_of("a") == 2 and c.get("a") == b"A" * 5000
        assert c.rekey("a") is False  # idempotent
        c.verify("a")


def test_rekey_all_reports_and_one_bad_object_never_stops_the_sweep(world: World) -> None:
    with world.plane().open(world.location) as c:
        for i in range(6):
            c.put(f"p/{i}", os.urandom(3000 + i))
        c.put("other", b"not under the prefix")
    world.rotate()
    with world.plane().open(world.location) as c:
        c.put("p/new", b"written under generation 2")
        _damage(world, c, "p/3")
        report = c.rekey_all("p/")
        assert sorted(report.rekeyed) == ["p/0", "p/1", "p/2", "p/4", "p/5"]
        assert report.current == ("p/new",)
        assert list(report.failed) == ["p/3"] and "AuthenticationError" in report.failed["p/3"]
        assert not report.ok
        assert c.usage() == {1: 2, 2: 6}  # p/3 (damaged) and "other" stay at 1
        again = c.rekey_all("p/")
        assert again.rekeyed == () and len(again.current) == 6 and list(again.failed) == ["p/3"]


def _damage(world: World, c: Container, name: str) -> None:
    data = bytearray(c._objects.get_bytes(name))
    data[-40] ^= 1
    c._objects.put_bytes(name, bytes(data), overwrite=True)


def test_a_concurrent_overwrite_between_read_and_commit_is_never_lost(world: World) -> None:
    plane = world.plane()
    with plane.open(world.location) as c:
        c.put("x", b"old content")
    world.rotate()
    rekeying = plane.open(world.location)
    writer = world.plane().open(world.location)
    real_open_writer = rekeying._objects.open_writer

    def overwrite_first(name: str, **kw: Any) -> Any:
        if kw.get("if_match") is not None:  # the rekey is about to write: another writer wins first
            writer.put(name, b"the newer write", overwrite=True)
        return real_open_writer(name, **kw)

    rekeying._objects.open_writer = overwrite_first  # type: ignore[method-assign]
    with pytest.raises(ObjectChangedError):
        rekeying.rekey("x")
    assert writer.get("x") == b"the newer write"
    assert rekeying.rekey_all().current == ("x",)  # the newer write is already under generation 2
    assert writer.get("x") == b"the newer write"


def test_a_delete_between_read_and_commit_is_never_undone(world: World) -> None:
    plane = world.plane()
    with plane.open(world.location) as c:
        c.put("x", b"old content")
    world.rotate()
    rekeying = plane.open(world.location)
    real_open_writer = rekeying._objects.open_writer

    def delete_first(name: str, **kw: Any) -> Any:
        if kw.get("if_match") is not None:
            rekeying._objects.delete(name)
        return real_open_writer(name, **kw)

    rekeying._objects.open_writer = delete_first  # type: ignore[method-assign]
    # S3's reader is pinned to the version it opened and finds it gone; locally the commit finds it gone
    with pytest.raises((ObjectChangedError, ObjectNotFoundError)):
        rekeying.rekey("x")
    assert not rekeying.exists("x")


def test_rekey_racing_overwriters_under_threads_keeps_every_last_write(world: World) -> None:
    names = [f"r/{i}" for i in range(6)]
    with world.plane().open(world.location) as c:
        for name in names:
            c.put(name, b"v0 " + name.encode())
    world.rotate()
    last: dict[str, bytes] = {}
    errors: list[BaseException] = []
    go = threading.Barrier(len(names) + 1)

    def overwrite(name: str) -> None:
        with world.plane().open(world.location) as c:
            go.wait()
            try:
                for v in range(1, 8):
                    data = b"v%d %s" % (v, name.encode())
                    c.put(name, data, overwrite=True)
                    last[name] = data
            except BaseException as e:  # noqa: BLE001 - a worker thread's every outcome is asserted below
                errors.append(e)

    threads = [threading.Thread(target=overwrite, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    rekeying = world.plane().open(world.location)
    go.wait()
    reports = [rekeying.rekey_all("r/") for _ in range(3)]
    for thread in threads:
        thread.join()
    assert errors == []
    for report in reports:
        assert all("ObjectChangedError" in reason for reason in report.failed.values()), report.failed
    final = rekeying.rekey_all("r/")
    assert final.ok
    for name in names:
        assert rekeying.get(name) == last[name], "a rekey lost a concurrent overwrite"
        assert rekeying.generation_of(name) == 2


def test_rekey_all_on_a_process_pool_or_any_executor(world: World) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with world.plane().open(world.location) as c:
        for i in range(5):
            c.put(f"e/{i}", b"%d" % i)
    world.rotate()
    with world.plane().open(world.location) as c, ThreadPoolExecutor(2) as pool:
        report = c.rekey_all("e/", executor=pool)
        assert len(report.rekeyed) == 5 and report.ok
        assert c.usage("e/") == {2: 5}


# --- crash safety: SIGKILL at seeded points during a rekey (local store) ---------------------------------


def content(i: int) -> bytes:
    seed = hashlib.sha256(b"rekey %d" % i).digest()
    return (seed * 4000)[: 20_000 + seed[0] * 100]


CHILD = """
import sys
from dataplane import DataPlane
from envelope.kms import LocalKms
from envelope.storage import local

keystore, location, pause_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
calls = [0]

def pause():
    print("paused", flush=True)
    sys.stdin.readline()  # blocks until the parent's SIGKILL

def counted(fn):
    def wrapper(*args, **kw):
        calls[0] += 1
        if calls[0] == pause_at:
            pause()
        result = fn(*args, **kw)
        calls[0] += 1
        if calls[0] == pause_at:
            pause()
        return result
    return wrapper

# every temp-file write and every publish (before the rename and after it) is a possible kill point
local.LocalObjectWriter.write = counted(local.LocalObjectWriter.write)
local.LocalObjectWriter._publish = counted(local.LocalObjectWriter._publish)
with DataPlane(LocalKms(keystore), frame_length=4096).open(location) as c:
    print("ready", flush=True)
    report = c.rekey_all("obj/", workers=1)
    print("finished", len(report.rekeyed), len(report.failed), flush=True)
"""


@pytest.mark.timeout(240)
def test_sigkill_at_any_point_of_a_rekey_leaves_every_object_readable(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "keystore")
    key = kms.create_key(alias="alias/crash")
    location = str(tmp_path / "c")
    ControlPlane(kms).create_container(location, key_id=key)
    count = 8
    with DataPlane(kms, frame_length=4096).open(location) as c:
        for i in range(count):
            c.put(f"obj/{i}", content(i))
    ControlPlane(kms).rotate_container(location)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rng = random.Random(20261130)
    for _ in range(6):
        pause_at = rng.randrange(1, 40)
        proc = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "keystore"), location, str(pause_at)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline() for _ in range(1)]
            assert lines[0].startswith("ready"), proc.stderr.read() if proc.stderr else ""
            line = proc.stdout.readline()
            assert line.startswith(("paused", "finished")), (line, proc.stderr.read() if proc.stderr else "")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        with DataPlane(kms).open(location) as c:  # every object readable, at its old or new generation
            assert sorted(c.list("obj/")) == [f"obj/{i}" for i in range(count)]
            for i in range(count):
                assert c.get(f"obj/{i}") == content(i)
                assert c.generation_of(f"obj/{i}") in (1, 2)
    with DataPlane(kms).open(location) as c:  # and a final run finishes the job
        c.rekey_all("obj/")
        assert c.usage("obj/") == {2: count}
        assert all(c.get(f"obj/{i}") == content(i) for i in range(count))


def test_rekey_all_on_a_process_pool_needs_a_spec_and_carries_only_configuration(tmp_path: Path) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from dataplane.bulk import ContainerSpec
    from envelope.errors import ValidationError

    kms = LocalKms(tmp_path / "keystore")
    kms.create_key(alias="alias/pool")
    location = str(tmp_path / "c")
    ControlPlane(kms).create_container(location, key_id="alias/pool")
    spec = ContainerSpec(location=location, kms=f"local:{tmp_path / 'keystore'}")
    container = spec.open()
    for i in range(6):
        container.put(f"p/{i}", b"%d" % i)
    ControlPlane(kms).rotate_container(location)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        with pytest.raises(ValidationError, match="ContainerSpec"):
            DataPlane(kms).open(location).rekey_all(executor=pool)  # opened directly: nothing to ship
        report = container.rekey_all("p/", executor=pool)
    assert report.ok and len(report.rekeyed) == 6
    assert container.usage("p/") == {2: 6}
