"""Figure 7: containers per second through `ControlPlane.create_containers` against
raw GenerateDataKeyWithoutPlaintext calls per second, same moto_server, same
boto3 client, same concurrency, rounds interleaved.

Containers go to a local temp dir on disk: each header is a create-only,
durable write (temp file, fsync, link, directory fsync). moto_server runs
on the same two cores, so our per-container CPU and fsyncs compete with
the emulator; with a real KMS (milliseconds of network latency per call)
the header write is a small fraction.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import ours
from bench.env import REGION
from bench.report import verdict
from bench.stats import interleave, paired_ratios, summarize

TARGET = 0.9


def run(cfg: Any, ctx: Any) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    if not ours.dataplane_available():
        raise RuntimeError("needs controlplane.ControlPlane")
    from controlplane import ContainerRequest, ControlPlane
    from envelope.kms import AwsKms

    url = ctx.moto_server()
    workers = cfg.provision_workers
    count = cfg.provision_count
    client = boto3.client(
        "kms",
        region_name=REGION,
        endpoint_url=url,
        config=Config(max_pool_connections=max(10, workers * 2), retries={"mode": "standard", "total_max_attempts": 3}),
    )
    arn = client.create_key(Description="bench provisioning")["KeyMetadata"]["Arn"]
    plane = ControlPlane(AwsKms(client))
    root = ctx.tempdir("provision")
    rounds = iter(range(1 << 30))

    def raw_calls() -> float:
        def one(i: int) -> None:
            client.generate_data_key_without_plaintext(
                KeyId=arn, KeySpec="AES_256", EncryptionContext={"tenant": f"t{i}"}
            )

        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, range(count)))
        return time.perf_counter() - start

    def containers() -> float:
        batch = os.path.join(root, f"round-{next(rounds)}")
        requests = [
            ContainerRequest(
                location=os.path.join(batch, f"c{i:05d}"), key_id=arn, encryption_context={"tenant": f"t{i}"}
            )
            for i in range(count)
        ]
        start = time.perf_counter()
        results = plane.create_containers(requests, max_workers=workers)
        seconds = time.perf_counter() - start
        failed = [r for r in results if not r.ok]
        if failed:
            raise RuntimeError(f"{len(failed)} containers failed, first: {failed[0].error!r}")
        return seconds

    times = interleave({"raw_calls": raw_calls, "containers": containers}, reps=cfg.provision_reps, warmup=cfg.warmup)
    rates = {name: [count / s for s in t] for name, t in times.items()}
    ratio = summarize(paired_ratios(rates["containers"], rates["raw_calls"]))
    return {
        "emulator": "moto_server on 127.0.0.1",
        "per_round": count,
        "workers": workers,
        "reps": cfg.provision_reps,
        "per_second": {name: summarize(r, digits=1) for name, r in rates.items()},
        "ratio": ratio,
        "summary": [
            verdict(
                "7",
                f"containers/s / raw GenerateDataKeyWithoutPlaintext/s ({workers} workers)",
                ratio,
                target=(">=", TARGET),
                detail=(
                    f"{summarize(rates['containers'], digits=1)['median']:.0f} vs "
                    f"{summarize(rates['raw_calls'], digits=1)['median']:.0f} per s"
                ),
            )
        ],
    }
