"""Figure 6: KMS calls to write and read back N small objects in one container.

Ours: `ControlPlane.create_container` (one GenerateDataKeyWithoutPlaintext),
then one `DataPlane` puts N objects and gets them back. The ESDK: N
`encrypt` and N `decrypt` calls with a KMS master key provider (its default
materials manager), and again with its caching materials manager. Calls
are counted the same way for both: a botocore `before-call.kms` hook on the
client (ours) or the botocore session (the ESDK's), against moto in
process. Our data-key cache's own counter (`cache.stats().kms_calls`) is
reported next to it.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

from bench import ours
from bench.env import REGION
from bench.peers import Esdk
from bench.report import verdict

OBJECT_SIZE = 1024


def _counter(events: Any) -> Counter[str]:
    calls: Counter[str] = Counter()

    def on_call(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    events.register("before-call.kms", on_call)
    return calls


def run(cfg: Any, ctx: Any) -> dict[str, Any]:
    import boto3
    import botocore.session
    from moto import mock_aws

    if not ours.dataplane_available():
        raise RuntimeError("needs dataplane.DataPlane and controlplane.ControlPlane")
    from controlplane import ControlPlane
    from dataplane import DataPlane
    from envelope.kms import AwsKms

    n = cfg.kms_objects
    payloads = [os.urandom(OBJECT_SIZE) for _ in range(n)]
    result: dict[str, Any] = {"objects": n, "object_bytes": OBJECT_SIZE, "emulator": "moto in-process"}
    with mock_aws():
        setup = boto3.client("kms", region_name=REGION)
        arn = setup.create_key(Description="bench kms calls")["KeyMetadata"]["Arn"]

        client = boto3.client("kms", region_name=REGION)
        calls = _counter(client.meta.events)
        kms = AwsKms(client)
        location = os.path.join(ctx.tempdir("kms"), "container")
        ControlPlane(kms).create_container(location, key_id=arn, encryption_context={"tenant": "bench"})
        provisioning_calls = dict(calls)
        calls.clear()
        plane = DataPlane(kms, discovery=True)
        t0 = time.perf_counter()
        with plane.open(location) as container:
            for i, payload in enumerate(payloads):
                container.put(f"obj/{i:05d}", payload)
            for i, payload in enumerate(payloads):
                if container.get(f"obj/{i:05d}") != payload:
                    raise RuntimeError("round trip mismatch")
        ours_seconds = time.perf_counter() - t0
        stats = plane.cache.stats()
        result["ours"] = {
            "provisioning_calls": provisioning_calls,
            "calls": dict(calls),
            "total": sum(calls.values()) + sum(provisioning_calls.values()),
            "cache_kms_calls": stats.kms_calls,
            "cache_hits": stats.hits,
            "seconds": round(ours_seconds, 3),
        }

        for variant in ("default", "caching"):
            session = botocore.session.Session()
            esdk_calls = _counter(session)
            esdk = Esdk(arn, session)
            kwargs: dict[str, Any] = {}
            if variant == "caching":
                import aws_encryption_sdk

                cmm = aws_encryption_sdk.CachingCryptoMaterialsManager(
                    master_key_provider=esdk.provider,
                    cache=aws_encryption_sdk.LocalCryptoMaterialsCache(capacity=16),
                    max_age=600.0,
                    max_messages_encrypted=max(n, 1),
                )
                kwargs = {"materials_manager": cmm}
            else:
                kwargs = {"key_provider": esdk.provider}
            t0 = time.perf_counter()
            messages = [esdk.client.encrypt(source=p, algorithm=esdk.algorithm, **kwargs)[0] for p in payloads]
            for payload, message in zip(payloads, messages, strict=True):
                if esdk.client.decrypt(source=message, **kwargs)[0] != payload:
                    raise RuntimeError("ESDK round trip mismatch")
            result[f"esdk_{variant}"] = {
                "calls": dict(esdk_calls),
                "total": sum(esdk_calls.values()),
                "seconds": round(time.perf_counter() - t0, 3),
            }
    ours_total = result["ours"]["total"]
    esdk_total = result["esdk_default"]["total"]
    decrypts = result["ours"]["calls"].get("Decrypt", 0)
    result["note"] = (
        "ours.total counts the container's provisioning call too; ESDK totals are GenerateDataKey + Decrypt"
    )
    result["summary"] = [
        verdict("6", f"our KMS Decrypt calls for {n:,} objects (write + read)", decrypts, target=("==", 1), unit=""),
        verdict(
            "6",
            f"ESDK KMS calls / ours, {n:,} objects",
            round(esdk_total / max(ours_total, 1), 1),
            target=None,
            detail=f"ours {ours_total}, ESDK default {esdk_total}, ESDK caching CMM {result['esdk_caching']['total']}",
        ),
    ]
    return result
