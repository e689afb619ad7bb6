"""Figure 10: small objects per second, put and get, against plain files and the ESDK.

For 1 KiB and 64 KiB objects, each round (interleaved, order rotating) runs:

- *ours*: `Container.put` of N objects (LocalStore: temp file, fsync, link,
  directory fsync), then `Container.get` of the same N;
- *plain*: the same bytes with no cipher, written the same durable, atomic
  way (temp file, fsync, link, unlink, directory fsync) and read back with
  `open` + `read`;
- *ESDK*: the AWS Encryption SDK's `encrypt` with its caching materials
  manager (so it calls KMS once, like ours), the message written the same
  durable way as plain; get reads the file and `decrypt`s it.

Every contender writes into its own fresh directory each round; gets read
what that round's put wrote. KMS is moto in process. Rates are objects per
second; ratios are per round (same machine state), reported as median and
range. Goals (issue rows): get >= 0.3x plain reads, put >= 0.9x plain
durable writes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from bench import ours
from bench.env import REGION
from bench.peers import Esdk
from bench.report import verdict
from bench.stats import interleave, paired_ratios, summarize

GET_TARGET = 0.3
PUT_TARGET = 0.9
SIZES = (1024, 64 * 1024)


def _durable_write(directory: str, leaf: str, data: bytes) -> None:
    temp = os.path.join(directory, f".{leaf}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.link(temp, os.path.join(directory, leaf))
    os.unlink(temp)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _measure(cfg: Any, container: Any, esdk: Esdk, cmm: Any, root: str, size: int) -> tuple[dict[str, Any], list[Any]]:
    """One object size: interleaved rounds of (put pass, get pass) for ours, plain files and the ESDK."""
    n = cfg.small_objects
    payloads = [os.urandom(size) for _ in range(n)]
    counter = iter(range(1 << 30))
    state: dict[str, str] = {}

    def fresh(kind: str) -> str:
        path = os.path.join(root, f"{kind}-{size}-{next(counter)}")
        os.mkdir(path)
        state[kind] = path
        return path

    def ours_put() -> float:
        prefix = f"s{size}-r{next(counter)}"
        state["ours"] = prefix
        start = time.perf_counter()
        for i, data in enumerate(payloads):
            container.put(f"{prefix}/{i:05d}", data)
        return time.perf_counter() - start

    def plain_put() -> float:
        directory = fresh("plain")
        start = time.perf_counter()
        for i, data in enumerate(payloads):
            _durable_write(directory, f"{i:05d}", data)
        return time.perf_counter() - start

    def esdk_put() -> float:
        directory = fresh("esdk")
        start = time.perf_counter()
        for i, data in enumerate(payloads):
            message, _ = esdk.client.encrypt(source=data, algorithm=esdk.algorithm, materials_manager=cmm)
            _durable_write(directory, f"{i:05d}", message)
        return time.perf_counter() - start

    def ours_get() -> float:
        prefix = state["ours"]
        start = time.perf_counter()
        for i in range(n):
            container.get(f"{prefix}/{i:05d}")
        return time.perf_counter() - start

    def plain_get() -> float:
        directory = state["plain"]
        start = time.perf_counter()
        for i in range(n):
            _read(os.path.join(directory, f"{i:05d}"))
        return time.perf_counter() - start

    def esdk_get() -> float:
        directory = state["esdk"]
        start = time.perf_counter()
        for i in range(n):
            esdk.client.decrypt(source=_read(os.path.join(directory, f"{i:05d}")), materials_manager=cmm)
        return time.perf_counter() - start

    # One contender = one put pass then one get pass of the same objects (each timed).
    times: dict[str, list[float]] = {}

    def pair(put: Callable[[], float], get: Callable[[], float], name: str) -> Callable[[], float]:
        def both() -> float:
            times.setdefault(f"{name}_put", []).append(put())
            os.sync()  # no writeback left behind for the next contender's timing
            seconds = get()
            times.setdefault(f"{name}_get", []).append(seconds)
            return seconds

        return both

    interleave(
        {
            "ours": pair(ours_put, ours_get, "ours"),
            "plain": pair(plain_put, plain_get, "plain"),
            "esdk": pair(esdk_put, esdk_get, "esdk"),
        },
        reps=cfg.reps,
        warmup=cfg.warmup,
    )
    keep = slice(cfg.warmup, None)
    rates = {name: [n / s for s in t[keep]] for name, t in times.items()}
    label = f"{size // 1024} KiB"
    ratios = {
        "get_vs_plain": summarize(paired_ratios(rates["ours_get"], rates["plain_get"])),
        "put_vs_plain": summarize(paired_ratios(rates["ours_put"], rates["plain_put"])),
        "get_vs_esdk": summarize(paired_ratios(rates["ours_get"], rates["esdk_get"])),
        "put_vs_esdk": summarize(paired_ratios(rates["ours_put"], rates["esdk_put"])),
    }
    per_second = {name: summarize(r, digits=1) for name, r in rates.items()}

    def rate(name: str) -> str:
        return f"{per_second[name]['median']:,.0f}/s"

    summary = [
        verdict(
            "10",
            f"{label} objects: get/s ours / plain file reads",
            ratios["get_vs_plain"],
            target=(">=", GET_TARGET),
            detail=f"{rate('ours_get')} vs {rate('plain_get')}; ESDK caching CMM {rate('esdk_get')}",
        ),
        verdict(
            "10",
            f"{label} objects: put/s ours / plain durable atomic writes",
            ratios["put_vs_plain"],
            target=(">=", PUT_TARGET),
            detail=f"{rate('ours_put')} vs {rate('plain_put')}; ESDK caching CMM {rate('esdk_put')}",
        ),
        verdict("10", f"{label} objects: get/s ours / ESDK caching CMM", ratios["get_vs_esdk"], target=None),
        verdict("10", f"{label} objects: put/s ours / ESDK caching CMM", ratios["put_vs_esdk"], target=None),
    ]
    return {"per_second": per_second, "ratios": ratios}, summary


def run(cfg: Any, ctx: Any) -> dict[str, Any]:
    import aws_encryption_sdk
    import boto3
    import botocore.session
    from moto import mock_aws

    if not ours.dataplane_available():
        raise RuntimeError("needs dataplane.DataPlane and controlplane.ControlPlane")
    from controlplane import ControlPlane
    from dataplane import DataPlane
    from envelope.kms import AwsKms

    n = cfg.small_objects
    result: dict[str, Any] = {"objects_per_round": n, "reps": cfg.reps, "emulator": "moto in-process", "sizes": {}}
    summary: list[dict[str, Any]] = []
    with mock_aws():
        client = boto3.client("kms", region_name=REGION)
        arn = client.create_key(Description="bench small objects")["KeyMetadata"]["Arn"]
        kms = AwsKms(client)
        esdk = Esdk(arn, botocore.session.Session())
        cmm = aws_encryption_sdk.CachingCryptoMaterialsManager(
            master_key_provider=esdk.provider,
            cache=aws_encryption_sdk.LocalCryptoMaterialsCache(capacity=16),
            max_age=600.0,
            max_messages_encrypted=1 << 30,
        )
        plane = DataPlane(kms, discovery=True)
        root = ctx.tempdir("small")
        location = os.path.join(root, "container")
        ControlPlane(kms).create_container(location, key_id=arn, encryption_context={"tenant": "bench"})
        with plane.open(location) as container:
            container.put("warm/up", b"x")
            container.get("warm/up")
            for size in SIZES:
                entry, lines = _measure(cfg, container, esdk, cmm, root, size)
                result["sizes"][f"{size // 1024} KiB"] = entry
                summary += lines
    result["summary"] = summary
    return result
