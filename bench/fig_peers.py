"""Figure 3: the same data through ours, the AWS Encryption SDK and Tink, interleaved.

Ours is the stream writer/reader at its default frame length, one thread,
in memory (like the peers). The ESDK runs at frame lengths 4 KiB (its
default), 64 KiB and 1 MiB with a KMS master key provider on moto in
process (one GenerateDataKey per encrypt, one Decrypt per decrypt, inside
its timing); Tink runs AES256_GCM_HKDF_1MB. The ratio is ours over each
peer's best configuration (highest median), paired round by round. The raw
cipher at the same chunk size runs in the same rounds: raw / peer is the
largest ratio any implementation could show against that peer here.
"""

from __future__ import annotations

import os
from typing import Any

from bench import env, ours, raw
from bench.env import REGION
from bench.peers import ESDK_FRAME_LENGTHS, Esdk, Tink
from bench.report import verdict
from bench.stats import interleave, paired_ratios, summarize, throughput
from bench.streams import CountingSink, KiB, MiB, pattern

TARGETS = {("esdk", "encrypt"): 6.0, ("esdk", "decrypt"): 5.0, ("tink", "encrypt"): 3.0, ("tink", "decrypt"): 2.0}


def _esdk_label(frame_length: int) -> str:
    return f"esdk_{frame_length // MiB}m" if frame_length >= MiB else f"esdk_{frame_length // KiB}k"


def run(cfg: Any, ctx: Any) -> dict[str, Any]:
    import boto3
    import botocore.session
    from moto import mock_aws

    from dataplane.format import DEFAULT_FRAME_LENGTH

    size = cfg.peer_size
    data = bytes(pattern(size))
    view = memoryview(data)
    key = os.urandom(32)
    frame_length = DEFAULT_FRAME_LENGTH
    with mock_aws():
        kms = boto3.client("kms", region_name=REGION)
        arn = kms.create_key(Description="bench esdk")["KeyMetadata"]["Arn"]
        esdk = Esdk(arn, botocore.session.Session())
        tink = Tink()
        message = ours.make_message(view, key, frame_length)
        raw_aead, raw_ct = raw.make_ciphertext(view, frame_length)
        raw_view = memoryview(raw_ct)
        esdk_messages = {fl: esdk.encrypt(data, fl) for fl in ESDK_FRAME_LENGTHS}
        tink_message = tink.encrypt(data)
        contenders: dict[str, Any] = {
            "ours_encrypt": lambda: ours.encrypt_memory(view, key, frame_length, CountingSink(), chunk=MiB),
        }
        for fl in ESDK_FRAME_LENGTHS:
            contenders[f"{_esdk_label(fl)}_encrypt"] = lambda fl=fl: esdk.time_encrypt(data, fl)
        contenders["tink_encrypt"] = lambda: tink.time_encrypt(data)
        contenders["raw_encrypt"] = lambda: raw.encrypt_memory(view, frame_length, CountingSink())
        contenders["ours_decrypt"] = lambda: ours.decrypt_memory(message, key, CountingSink(), chunk=MiB)
        for fl in ESDK_FRAME_LENGTHS:
            contenders[f"{_esdk_label(fl)}_decrypt"] = lambda fl=fl: esdk.time_decrypt(esdk_messages[fl])
        contenders["tink_decrypt"] = lambda: tink.time_decrypt(tink_message)
        contenders["raw_decrypt"] = lambda: raw.decrypt_memory(raw_aead, raw_view, size, frame_length, CountingSink())
        quiet = env.wait_for_quiet(cfg.quiet_wait_s / 4) if cfg.quiet_wait_s > 0 else None
        rounds = env.QuietRounds(cfg.quiet_wait_s / 24)
        times = interleave(contenders, reps=cfg.reps, warmup=cfg.warmup, before_round=rounds)
    mbps = {name: throughput(size, t) for name, t in times.items()}
    medians = {name: summarize(v, digits=1) for name, v in mbps.items()}
    result: dict[str, Any] = {
        "bytes": size,
        "reps": cfg.reps,
        "ours": {"frame_length": frame_length, "threads": 1},
        "esdk": {"frame_lengths": list(ESDK_FRAME_LENGTHS), "key_provider": "KMS master key provider, moto in-process"},
        "tink": {"template": "AES256_GCM_HKDF_1MB"},
        "quiet_wait": quiet,
        "quiet_rounds": rounds.report(),
        "mb_per_s": medians,
        "best": {},
        "ratio": {},
        "summary": [],
    }
    for op in ("encrypt", "decrypt"):
        esdk_names = [f"{_esdk_label(fl)}_{op}" for fl in ESDK_FRAME_LENGTHS]
        best_esdk = max(esdk_names, key=lambda n: medians[n]["median"])
        for name in esdk_names:
            result["ratio"][f"{op}_vs_{name.rsplit('_', 1)[0]}"] = summarize(
                paired_ratios(mbps[f"ours_{op}"], mbps[name])
            )
        for peer, best in (("esdk", best_esdk), ("tink", f"tink_{op}")):
            ratio = summarize(paired_ratios(mbps[f"ours_{op}"], mbps[best]))
            ceiling = summarize(paired_ratios(mbps[f"raw_{op}"], mbps[best]))
            result["best"][f"{peer}_{op}"] = best
            result["ratio"][f"{op}_vs_{peer}"] = ratio
            result["ratio"][f"raw_{op}_vs_{peer}"] = ceiling
            others = ""
            if peer == "esdk":
                others = "; ours / ESDK " + ", ".join(
                    f"{n.split('_')[1]}: {result['ratio'][f'{op}_vs_' + n.rsplit('_', 1)[0]]['median']:.1f}x"
                    for n in esdk_names
                )
            result["summary"].append(
                verdict(
                    "3",
                    f"{op} / {'ESDK' if peer == 'esdk' else 'Tink'} best ({best.rsplit('_', 1)[0]})",
                    ratio,
                    target=(">=", TARGETS[(peer, op)]),
                    detail=f"ceiling (raw AES-GCM / same peer): {ceiling['median']:.2f}x{others}",
                )
            )
    return result
