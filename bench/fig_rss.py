"""Figure 4: peak RSS of a stream over an idle interpreter with the same imports.

One subprocess per measurement (`bench.rss_child`), `ru_maxrss` read in the
child. Encrypt streams from a generator of 64 KiB chunks to a counting
sink; decrypt streams from a ciphertext file (LocalStore reader, page cache)
to a counting sink through a 64 KiB `readinto` buffer. The target is
`4 x frame length + 8 MiB` over idle at every size, and flat: the figure at
the largest size within 2 MiB of the smallest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from bench import ours
from bench.report import verdict
from bench.stats import summarize
from bench.streams import KiB, MiB, chunks

FLAT_TOLERANCE_MIB = 2.0


def _child(args: list[str], key: bytes, cwd: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.rss_child", *args],
        input=key.hex() + "\n",
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"rss child {args[0]} failed: {proc.stderr.strip()[-400:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


class _FileSink:
    def __init__(self, path: str) -> None:
        self._f = open(path, "wb", buffering=0)  # noqa: SIM115 - closed in commit/abort

    def write(self, data: Any) -> int:
        return self._f.write(data) or 0

    def commit(self) -> None:
        self._f.close()

    def abort(self) -> None:
        self._f.close()


def _label(size: int) -> str:
    return f"{size // (1 << 30)} GiB" if size >= 1 << 30 else f"{size // MiB} MiB"


def run(cfg: Any, ctx: Any) -> dict[str, Any]:
    frame_length = cfg.rss_frame
    key = os.urandom(32)
    workdir = ctx.tempdir("rss")
    cwd = ctx.project_root
    files: dict[int, str] = {}
    for size in cfg.rss_sizes:
        path = os.path.join(workdir, f"message-{size}.bin")
        writer = ours.new_writer(_FileSink(path), key, frame_length)
        for piece in chunks(size, 64 * KiB):
            writer.write(piece)
        writer.close()
        files[size] = path
    configs = [("encrypt", 1), ("encrypt", 2), ("decrypt", 1)]
    idle: list[int] = []
    peaks: dict[tuple[str, int, int], list[int]] = {}
    for _ in range(cfg.rss_reps):
        idle.append(_child(["idle"], key, cwd)["maxrss_kib"])
        for size in cfg.rss_sizes:
            for op, threads in configs:
                target = str(size) if op == "encrypt" else files[size]
                got = _child([op, target, str(frame_length), str(threads)], key, cwd)
                if got["bytes"] < size:
                    raise RuntimeError(f"rss child {op} streamed {got['bytes']} of {size} bytes")
                peaks.setdefault((op, threads, size), []).append(got["maxrss_kib"])
    for path in files.values():
        os.unlink(path)
    idle_median = summarize(idle)["median"]
    bound_mib = (4 * frame_length + 8 * MiB) / MiB
    rows = []
    summary = []
    for op, threads in configs:
        deltas = {}
        for size in cfg.rss_sizes:
            over = [(p - idle_median) / 1024 for p in peaks[(op, threads, size)]]
            deltas[size] = summarize(over, digits=2)
            rows.append(
                {
                    "op": op,
                    "threads": threads,
                    "bytes": size,
                    "frame_length": frame_length,
                    "peak_kib": summarize(peaks[(op, threads, size)]),
                    "over_idle_mib": deltas[size],
                }
            )
        worst = max(d["median"] for d in deltas.values())
        growth = deltas[cfg.rss_sizes[-1]]["median"] - deltas[cfg.rss_sizes[0]]["median"]
        name = f"{op}{'' if threads == 1 else ', 2 threads'}: peak RSS over idle, worst of {', '.join(_label(s) for s in cfg.rss_sizes)}"
        summary.append(verdict("4", name, round(worst, 2), target=("<=", bound_mib), unit="MiB"))
        summary.append(
            verdict(
                "4",
                f"{op}{'' if threads == 1 else ', 2 threads'}: growth {_label(cfg.rss_sizes[0])} -> {_label(cfg.rss_sizes[-1])}",
                round(growth, 2),
                target=("<=", FLAT_TOLERANCE_MIB),
                unit="MiB",
            )
        )
    return {
        "frame_length": frame_length,
        "io_chunk": 64 * KiB,
        "idle_kib": summarize(idle),
        "bound_mib": bound_mib,
        "reps": cfg.rss_reps,
        "rows": rows,
        "summary": summary,
    }
