"""Concurrency: many threads on one container handle, many processes on one container, both stores.

Every object round-trips, none is lost, no call fails, and each process pays exactly one KMS
Decrypt for the container (counted twice: by the plane's cache counters and by recording the
KMS requests actually sent).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from controlplane import ControlPlane
from dataplane import DataPlane
from envelope.kms import AwsKms, LocalKms
from tests.support.faults import KmsFaults

REPO = Path(__file__).resolve().parent.parent
THREADS = 16
PER_THREAD = 50
PROCESSES = 4
PER_PROCESS = {"local": 50, "s3": 25}  # moto_server answers ~100 requests/s; the local store far more


def payload(worker: str, i: int) -> bytes:
    seed = hashlib.sha256(f"{worker}/{i}".encode()).digest()
    return seed * (1 + (seed[0] % 40))  # 32 .. 1,280 bytes: one to several 256-byte frames


class Env:
    def __init__(self, kms: Any, key: str, location: str, s3: Any = None, faults: KmsFaults | None = None) -> None:
        self.kms, self.key, self.location, self.s3, self.faults = kms, key, location, s3, faults


@pytest.fixture(params=["local", "s3"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Env:
    if request.param == "local":
        kms = LocalKms(tmp_path / "keystore")
        kms.create_key(alias="alias/conc")
        e = Env(kms, "alias/conc", str(tmp_path / "container"))
    else:
        client = request.getfixturevalue("kms_client")
        s3 = request.getfixturevalue("s3_client")
        bucket = request.getfixturevalue("bucket")
        arn = client.create_key()["KeyMetadata"]["Arn"]
        e = Env(AwsKms(client), arn, f"s3://{bucket}/conc", s3, KmsFaults(client))
    ControlPlane(e.kms, e.s3).create_container(e.location, key_id=e.key, encryption_context={"tenant": "acme"})
    return e


@pytest.mark.timeout(120)
def test_sixteen_threads_share_one_container_handle(env: Env) -> None:
    plane = DataPlane(env.kms, env.s3, frame_length=256, discovery=True)
    container = plane.open(env.location)
    start = threading.Barrier(THREADS)

    def work(t: int) -> list[str]:
        start.wait()
        names = []
        for i in range(PER_THREAD):
            name = f"t{t:02d}/o{i:03d}"
            container.put(name, payload(f"t{t}", i))
            names.append(name)
            if i % 5 == 4:  # reads interleaved with other threads' writes
                back = f"t{t:02d}/o{i - 2:03d}"
                assert container.get(back) == payload(f"t{t}", i - 2)
        return names

    with ThreadPoolExecutor(THREADS) as pool:
        written = [name for names in pool.map(work, range(THREADS)) for name in names]

    assert len(written) == len(set(written)) == THREADS * PER_THREAD
    assert list(container.list()) == sorted(written)
    for name in written:
        t, i = name.split("/")
        assert container.get(name) == payload(f"t{int(t[1:])}", int(i[1:]))
    assert plane.cache_stats().kms_calls == 1
    if env.faults is not None:
        assert env.faults.count("Decrypt") == 1


@pytest.mark.timeout(60)
def test_a_thundering_herd_of_opens_costs_one_decrypt(env: Env) -> None:
    plane = DataPlane(env.kms, env.s3, discovery=True)
    start = threading.Barrier(THREADS)

    def open_and_write(t: int) -> None:
        start.wait()
        with plane.open(env.location) as container:
            container.put(f"herd/{t}", payload("herd", t))

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(open_and_write, range(THREADS)))
    assert plane.cache_stats().kms_calls == 1
    if env.faults is not None:
        assert env.faults.count("Decrypt") == 1
    with plane.open(env.location) as container:
        assert len(list(container.list("herd/"))) == THREADS


WORKER = """
import json, os, sys, time
import boto3
from botocore.config import Config
from dataplane import DataPlane
from envelope.kms import AwsKms, LocalKms
from tests.support.faults import KmsFaults
from tests.test_concurrency import payload

kind, location, go, worker, count = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
faults = None
s3 = None
if kind == "local":
    kms = LocalKms(sys.argv[6])
else:
    endpoint = sys.argv[6]
    client = boto3.client("kms", region_name="us-east-1", endpoint_url=endpoint,
                          config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    faults = KmsFaults(client)
    kms = AwsKms(client)
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint)
while not os.path.exists(go):
    time.sleep(0.005)
plane = DataPlane(kms, s3, frame_length=256, discovery=True)
errors = []
with plane.open(location) as container:
    for i in range(count):
        name = f"{worker}/o{i:03d}"
        try:
            container.put(name, payload(worker, i))
            if container.get(name) != payload(worker, i):
                errors.append(f"{name}: wrong bytes")
        except Exception as exc:
            errors.append(f"{name}: {exc!r}")
stats = plane.cache_stats()
print(json.dumps({"kms_calls": stats.kms_calls, "decrypt_requests": faults.count("Decrypt") if faults else None,
                  "errors": errors}))
"""


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["local", "s3"])
def test_four_processes_write_into_one_container(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if kind == "local":
        keystore = tmp_path / "keystore"
        kms: Any = LocalKms(keystore)
        key, s3, location, extra = kms.create_key(alias="alias/procs"), None, str(tmp_path / "container"), str(keystore)
    else:
        endpoint = request.getfixturevalue("moto_server_url")
        kms_client = request.getfixturevalue("server_kms_client")
        s3 = request.getfixturevalue("server_s3_client")
        bucket = request.getfixturevalue("server_bucket")
        kms, key = AwsKms(kms_client), kms_client.create_key()["KeyMetadata"]["Arn"]
        location, extra = f"s3://{bucket}/procs-{uuid.uuid4().hex[:8]}", endpoint
    ControlPlane(kms, s3).create_container(location, key_id=key)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    go = tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), kind, location, str(go), f"p{n}", str(PER_PROCESS[kind]), extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for n in range(PROCESSES)
    ]
    time.sleep(0.2)
    go.touch()  # all four start writing at once
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=150)
        assert proc.returncode == 0, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))

    for report in reports:
        assert report["errors"] == []
        assert report["kms_calls"] == 1
        if kind == "s3":
            assert report["decrypt_requests"] == 1
    with DataPlane(kms, s3, discovery=True).open(location) as container:
        expected = sorted(f"p{n}/o{i:03d}" for n in range(PROCESSES) for i in range(PER_PROCESS[kind]))
        assert list(container.list()) == expected
        for name in expected:
            worker, obj = name.split("/")
            assert container.get(name) == payload(worker, int(obj[1:]))
