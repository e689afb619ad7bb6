"""Process setup for the benchmarks: fake AWS credentials (nothing may reach real
AWS), the moto endpoints, and a description of the machine for the report."""

from __future__ import annotations

import os
import platform
import sys
import time
from importlib import metadata
from typing import Any

REGION = "us-east-1"


def isolate_aws() -> None:
    """Fake credentials, no config files, no metadata service, no endpoint overrides."""
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    os.environ.pop("AWS_PROFILE", None)
    for key in list(os.environ):
        if key.startswith("AWS_ENDPOINT_URL"):
            del os.environ[key]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return sorted(flags & {"aes", "avx2", "avx512f", "vaes", "vpclmulqdq", "pclmulqdq"})
    except OSError:
        pass
    return []


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / (1 << 20), 1)
    except OSError:
        pass
    return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "versions": {
            name: _version(name)
            for name in ("cryptography", "boto3", "moto", "aws-encryption-sdk", "tink", "kms-envelope")
        },
    }


def cpu_snapshot() -> tuple[float, float, float]:
    """(wall, machine busy CPU seconds, this process's CPU seconds incl. reaped children)."""
    busy = 0.0
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    t = os.times()
    return time.monotonic(), busy, t.user + t.system + t.children_user + t.children_system


def others_cores(before: tuple[float, float, float], after: tuple[float, float, float]) -> float:
    """Average cores used by everything else on the machine between two snapshots
    (a moto_server we started counts as 'else' until it exits)."""
    wall = max(after[0] - before[0], 1e-9)
    return round(max(0.0, (after[1] - before[1]) - (after[2] - before[2])) / wall, 2)


def wait_for_quiet(max_seconds: float, *, threshold: float = 0.3, window: float = 1.0) -> dict[str, float]:
    """Wait (at most `max_seconds`) until other processes use under `threshold` cores over `window` s.

    For figures that need a second free core on a shared machine. Returns how
    long it waited and what the others used in the last window.
    """
    start = time.monotonic()
    others = 0.0
    while True:
        before = cpu_snapshot()
        time.sleep(window)
        others = others_cores(before, cpu_snapshot())
        waited = time.monotonic() - start
        if others < threshold or waited >= max_seconds:
            return {"waited_s": round(waited, 1), "other_processes_cores": others, "quiet": others < threshold}


class QuietRounds:
    """A `before_round` hook: wait (at most `max_seconds` per round) for a quiet machine; keeps totals."""

    def __init__(self, max_seconds: float, *, window: float = 0.5) -> None:
        self.max_seconds = max_seconds
        self.window = window
        self.rounds = 0
        self.waited_s = 0.0
        self.noisy_rounds = 0

    def __call__(self) -> None:
        if self.max_seconds < self.window:  # too short to measure: quick and tiny runs do not wait
            return
        got = wait_for_quiet(self.max_seconds, window=self.window)
        self.rounds += 1
        self.waited_s += got["waited_s"]
        self.noisy_rounds += 0 if got["quiet"] else 1

    def report(self) -> dict[str, float]:
        return {"rounds": self.rounds, "waited_s": round(self.waited_s, 1), "rounds_started_noisy": self.noisy_rounds}
