"""The entry point: run the figures, print the table, write the JSON, draw the chart."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from bench import env
from bench.report import table
from bench.streams import KiB, MiB

GiB = 1 << 30
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Config:
    mode: str
    reps: int
    warmup: int
    throughput_size: int
    frame_lengths: tuple[int, ...]
    thread_size: int
    thread_frames: tuple[int, ...]
    peer_size: int
    rss_sizes: tuple[int, ...]
    rss_frame: int
    rss_reps: int
    random_size: int
    random_frames: tuple[int, ...]
    random_reads: int
    kms_objects: int
    small_objects: int
    provision_count: int
    provision_workers: int
    provision_reps: int
    s3_size: int
    s3_reps: int
    cli_size: int
    quiet_wait_s: float


FULL = Config(
    mode="full",
    reps=7,
    warmup=1,
    throughput_size=256 * MiB,
    frame_lengths=(64 * KiB, 256 * KiB, MiB, 4 * MiB),
    thread_size=256 * MiB,
    thread_frames=(256 * KiB, MiB, 4 * MiB),
    peer_size=64 * MiB,
    rss_sizes=(64 * MiB, GiB, 4 * GiB),
    rss_frame=MiB,
    rss_reps=3,
    random_size=GiB,
    random_frames=(64 * KiB, MiB),
    random_reads=300,
    kms_objects=1000,
    small_objects=1000,
    provision_count=200,
    provision_workers=8,
    provision_reps=5,
    s3_size=256 * MiB,
    s3_reps=3,
    cli_size=256 * MiB,  # the row; --quick keeps it (start-up would dominate a smaller file)
    quiet_wait_s=40.0,
)
QUICK = replace(
    FULL,
    mode="quick",
    reps=5,
    throughput_size=32 * MiB,
    thread_size=64 * MiB,
    peer_size=16 * MiB,
    rss_sizes=(64 * MiB, 256 * MiB),
    rss_reps=2,
    random_size=64 * MiB,
    random_reads=100,
    provision_count=64,
    small_objects=300,
    provision_reps=3,
    s3_size=32 * MiB,
    s3_reps=2,
    quiet_wait_s=4.0,
)
TINY = replace(
    QUICK,
    mode="tiny",
    reps=1,
    warmup=0,
    throughput_size=2 * MiB,
    frame_lengths=(64 * KiB, MiB),
    thread_size=4 * MiB,
    thread_frames=(MiB,),
    peer_size=MiB,
    rss_sizes=(2 * MiB, 4 * MiB),
    rss_reps=1,
    random_size=4 * MiB,
    random_frames=(64 * KiB,),
    random_reads=5,
    kms_objects=10,
    small_objects=10,
    provision_count=4,
    provision_workers=4,
    provision_reps=1,
    s3_size=2 * MiB,
    s3_reps=1,
    cli_size=2 * MiB,
    quiet_wait_s=0.0,
)


def _figures() -> dict[str, tuple[str, Callable[[Config, Context], dict[str, Any]]]]:
    from bench import (
        fig_cli,
        fig_fsspec,
        fig_kms,
        fig_peers,
        fig_provision,
        fig_random,
        fig_rekey,
        fig_rss,
        fig_s3,
        fig_small,
        fig_throughput,
    )

    return {
        "streams": ("1. stream throughput vs raw AES-GCM", fig_throughput.run_streams),
        "threads": ("2. 1 vs 2 threads", fig_throughput.run_threads),
        "peers": ("3. vs the AWS Encryption SDK and Tink", fig_peers.run),
        "rss": ("4. peak RSS", fig_rss.run),
        "random": ("5. random access", fig_random.run),
        "kms": ("6. KMS calls for small objects", fig_kms.run),
        "provisioning": ("7. provisioning rate", fig_provision.run),
        "s3": ("8. S3 streaming", fig_s3.run),
        "fsspec": ("9. Parquet through envelope:// (opt-in)", fig_fsspec.run),
        "small": ("10. small objects per second", fig_small.run),
        "rekey": ("11. rekey in place vs a durable copy; Dask 2 workers vs 1 (opt-in)", fig_rekey.run),
        "cli": ("12. the envelope command vs age, whole-process time (opt-in; needs age)", fig_cli.run),
    }


FIGURE_NAMES = ("streams", "threads", "peers", "rss", "random", "kms", "provisioning", "s3", "small")
# Run only when named with --only: they need the test extra's data tools (pandas, pyarrow, fsspec), or
# (cli) the `age` command, which is no dependency of the project.
OPT_IN_FIGURES = ("fsspec", "rekey", "cli")


class Context:
    """What figures share: a temp root on disk, a lazily started moto_server, logging."""

    project_root = PROJECT_ROOT

    def __init__(self, *, verbose: bool = True) -> None:
        self._stack = contextlib.ExitStack()
        self._root = tempfile.mkdtemp(prefix="envelope-bench-")
        self._started = time.monotonic()
        self._verbose = verbose
        self._moto_url: str | None = None

    def log(self, message: str) -> None:
        if self._verbose:
            print(f"[{time.monotonic() - self._started:7.1f}s] {message}", file=sys.stderr, flush=True)

    def tempdir(self, name: str) -> str:
        return tempfile.mkdtemp(prefix=f"{name}-", dir=self._root)

    @staticmethod
    def filesystem(path: str) -> str:
        best, fstype = "", "unknown"
        try:
            with open("/proc/mounts", encoding="utf-8") as f:
                for line in f:
                    parts = line.split()
                    mount = parts[1]
                    if os.path.realpath(path).startswith(mount) and len(mount) > len(best):
                        best, fstype = mount, parts[2]
        except OSError:
            pass
        return fstype

    def moto_server(self) -> str:
        if self._moto_url is None:
            sys.path.insert(0, PROJECT_ROOT)
            from tests.support.servers import moto_server

            self.log("  starting moto_server on 127.0.0.1")
            self._moto_url = self._stack.enter_context(moto_server())
        return self._moto_url

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            shutil.rmtree(self._root, ignore_errors=True)


def run(config: Config, only: list[str] | None = None, *, verbose: bool = True) -> dict[str, Any]:
    env.isolate_aws()
    figures = _figures()
    selected = [name for name in FIGURE_NAMES + OPT_IN_FIGURES if (name in only if only else name in FIGURE_NAMES)]
    ctx = Context(verbose=verbose)
    started = time.monotonic()
    results: dict[str, Any] = {
        "meta": {
            "mode": config.mode,
            "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": "python -m bench " + " ".join(sys.argv[1:]),
            "machine": env.machine(),
            "config": asdict(config),
            "units": "MB/s = 10^6 bytes per second; ratios are paired per interleaved round (median [min-max])",
        },
        "figures": {},
        "summary": [],
    }
    try:
        for name in selected:
            title, fn = figures[name]
            ctx.log(title)
            t0 = time.monotonic()
            snapshot = env.cpu_snapshot()
            try:
                figure = fn(config, ctx)
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                figure = {"error": f"{type(exc).__name__}: {exc}", "summary": []}
            figure["seconds"] = round(time.monotonic() - t0, 1)
            figure["other_processes_cores"] = env.others_cores(snapshot, env.cpu_snapshot())
            results["figures"][name] = figure
            results["summary"].extend(figure.get("summary", []))
    finally:
        ctx.close()
    results["meta"]["duration_s"] = round(time.monotonic() - started, 1)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, well under 2 minutes")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, one round: only checks the harness runs")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=FIGURE_NAMES + OPT_IN_FIGURES,
        metavar="FIGURE",
        help=f"any of {', '.join(FIGURE_NAMES + OPT_IN_FIGURES)} (the last only when named)",
    )
    parser.add_argument("--json", default=os.path.join(PROJECT_ROOT, "bench", "results", "latest.json"))
    parser.add_argument(
        "--chart", default=None, help="PNG path (default: docs/benchmarks.png for a full run, else bench/results/)"
    )
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    config = TINY if args.tiny else QUICK if args.quick else FULL
    results = run(config, args.only, verbose=not args.quiet)
    print(table(results["summary"]))
    errors = {name: fig["error"] for name, fig in results["figures"].items() if "error" in fig}
    for name, error in errors.items():
        print(f"figure {name} failed: {error}")
    print(f"{config.mode} run: {results['meta']['duration_s']:.0f} s")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, sort_keys=False)
        f.write("\n")
    print(f"results: {args.json}")
    if not args.no_chart:
        from bench.chart import render

        chart = args.chart or (
            os.path.join(PROJECT_ROOT, "docs", "benchmarks.png")
            if config.mode == "full" and not args.only
            else os.path.join(PROJECT_ROOT, "bench", "results", f"{config.mode}.png")
        )
        os.makedirs(os.path.dirname(os.path.abspath(chart)), exist_ok=True)
        render(results, chart)
        print(f"chart: {chart}")
    return 1 if errors else 0
