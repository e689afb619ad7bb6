"""Figure 11: re-encryption in place (`Container.rekey_all`) against a plain durable copy of the same
bytes, and 2 Dask worker processes against 1 on a prefix of many objects.

Rekey reads each stored object, authenticates and decrypts every frame,
re-encrypts it under the newest generation and replaces the object
atomically (temp file, fsync, rename under the directory lock, directory
fsync). The baseline does the same file I/O without any cryptography: read
the stored bytes, write them to a temp file, fsync, rename, fsync the
directory. Each round rotates the container first (outside the timing) so
every object is stale again; rounds are interleaved with the baseline.

The Dask part runs `rekey_all(executor=client.get_executor())` on a
LocalCluster with 1 and then 2 worker processes (1 thread each); work items
are (ContainerSpec, names) batches. This machine has 2 cores, shared with
the scheduler and the client, so 2 workers can at best approach 2x.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.report import verdict
from bench.stats import interleave, paired_ratios, summarize

TARGET = 0.8


def _durable_copy(src_dir: str, dst_dir: str, names: list[str]) -> None:
    for name in names:
        with open(os.path.join(src_dir, name), "rb") as f:
            data = f.read()
        tmp = os.path.join(dst_dir, f".{name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(dst_dir, name))
        dfd = os.open(dst_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def run(cfg: Any, ctx: Any) -> dict[str, Any]:
    from controlplane import ControlPlane
    from dataplane import DataPlane
    from envelope.kms import LocalKms

    count, size = (8, 256 << 10) if cfg.mode == "tiny" else (32, 4 << 20) if cfg.mode == "quick" else (64, 8 << 20)
    root = ctx.tempdir("rekey")
    kms = LocalKms(os.path.join(root, "keystore"))
    key = kms.create_key(alias="alias/bench-rekey")
    location = os.path.join(root, "c")
    control = ControlPlane(kms)
    control.create_container(location, key_id=key)
    plane = DataPlane(kms)
    container = plane.open(location)
    names = [f"o{i:03d}" for i in range(count)]
    payload = os.urandom(size)
    for name in names:
        container.put(name, payload)
    objects = os.path.join(location, "objects")
    copies = ctx.tempdir("rekey-copy")

    def rekey() -> float:
        control.rotate_container(location)
        start = time.perf_counter()
        report = container.rekey_all(workers=1)
        seconds = time.perf_counter() - start
        if not report.ok or len(report.rekeyed) != count:
            raise RuntimeError(f"rekey_all: {len(report.rekeyed)} rekeyed, failures {dict(report.failed)}")
        return seconds

    def plain_copy() -> float:
        start = time.perf_counter()
        _durable_copy(objects, copies, names)
        return time.perf_counter() - start

    times = interleave({"rekey": rekey, "plain_copy": plain_copy}, reps=cfg.reps, warmup=cfg.warmup)
    mb = count * size / 1e6
    rates = {name: [mb / s for s in t] for name, t in times.items()}
    ratio = summarize(paired_ratios(rates["rekey"], rates["plain_copy"]))
    result: dict[str, Any] = {
        "objects": count,
        "object_bytes": size,
        "reps": cfg.reps,
        "MB_per_s": {name: summarize(r, digits=1) for name, r in rates.items()},
        "ratio": ratio,
        "summary": [
            verdict(
                "11",
                "rekey_all / plain durable copy (same bytes, 1 thread)",
                ratio,
                target=(">=", TARGET),
                detail=(
                    f"{summarize(rates['rekey'], digits=1)['median']:.0f} vs "
                    f"{summarize(rates['plain_copy'], digits=1)['median']:.0f} MB/s"
                ),
            )
        ],
    }
    extra = _dask(cfg, ctx, location, kms, control, count, size)
    if "dask_summary" in extra:
        result["summary"].append(extra.pop("dask_summary"))
    result.update(extra)
    return result


def _dask(cfg: Any, ctx: Any, location: str, kms: Any, control: Any, count: int, size: int) -> dict[str, Any]:
    try:
        import distributed
    except ImportError:
        return {"dask": "skipped: the distributed package is not installed (pip install 'kms-envelope[dask]')"}
    from dataplane.bulk import ContainerSpec, forget_process_planes

    spec = ContainerSpec(location=location, kms=f"local:{kms.path}")
    seconds: dict[int, list[float]] = {}
    for workers in (1, 2):
        cluster = distributed.LocalCluster(
            n_workers=workers,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
            worker_dashboard_address=None,
        )
        try:
            with distributed.Client(cluster) as client:
                container = spec.open()
                runs = []
                for _ in range(max(1, cfg.reps // 2)):
                    control.rotate_container(location)
                    start = time.perf_counter()
                    report = container.rekey_all(executor=client.get_executor())
                    runs.append(time.perf_counter() - start)
                    if not report.ok:
                        raise RuntimeError(f"rekey_all on Dask: failures {dict(report.failed)}")
                client.run(forget_process_planes)
                seconds[workers] = runs
        finally:
            cluster.close()
        forget_process_planes()
    speedup = summarize([a / b for a, b in zip(seconds[1], seconds[2], strict=True)])
    ctx.log(f"  dask: 1 worker {min(seconds[1]):.2f}s, 2 workers {min(seconds[2]):.2f}s")
    return {
        "dask_seconds": {str(k): summarize(v) for k, v in seconds.items()},
        "dask_speedup": speedup,
        "dask_summary": verdict(
            "11",
            "rekey_all on 2 Dask workers / 1 (2 cores, shared with scheduler and client)",
            speedup,
            target=None,
            detail=f"{count} objects of {size >> 20 or size >> 10}{'MiB' if size >> 20 else 'KiB'}",
        ),
    }
