"""Figure 12: the `envelope` command against `age`, whole-process wall time, output made durable by both.

Opt-in (`python -m bench --only cli`), and skipped with its reason when
`age` or `age-keygen` is not on PATH (Debian: `apt-get install age`). Each
interleaved round (order rotating, warm-up discarded) runs, on one file of
`cli_size` bytes (256 MiB, in --quick runs too; 2 MiB in --tiny) held in
the page cache:

- encrypt: `envelope put C NAME FILE` (the default embedded mode: a local
  container and the local keystore; the store writes a temp file, fsyncs
  it, links it in and fsyncs the directory) against `age -e -r RECIPIENT -o
  OUT FILE` followed by `sync OUT DIR` (coreutils: fsync of the output and
  of its directory), both timed from the first exec to the last exit;
- decrypt: `envelope get C NAME -o OUT` (an anonymous file, fsync, linkat,
  directory fsync) against `age -d -i IDENTITY -o OUT FILE.age` + `sync
  OUT DIR`;
- `--threads 2` variants of ours, to show what a second core buys;
- a 1 KiB file each way, which is start-up plus fixed costs: what a
  large-file ratio is made of.

Every output is removed, and `sync` run, outside the timed region before
each run, so no writeback left by one contender lands on the next; in a
full run each round first waits (at most 5 s) for other processes to go
quiet, and `quiet_rounds` records how many started noisy anyway. The
command runs as an installed one does (bytecode cached: the warm-up round
writes it), with `PYTHONDONTWRITEBYTECODE` removed from its environment.
Goals (issue 16): put <= 1.05x age -e, get -o <= 1.05x age -d.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.env import QuietRounds
from bench.report import verdict
from bench.stats import interleave, paired_ratios, summarize

PUT_TARGET = 1.05
GET_TARGET = 1.05
SMALL = 1024


def _envelope_command() -> list[str]:
    """The console script next to this interpreter (what a user runs), else `python -m envelope_cli`."""
    script = os.path.join(os.path.dirname(sys.executable), "envelope")
    return [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "envelope_cli"]


class _Runner:
    """Runs commands with one environment; each call returns the wall seconds from exec to exit."""

    def __init__(self, env: dict[str, str], cwd: str) -> None:
        self.env = env
        self.cwd = cwd

    def check(self, argv: Sequence[str]) -> str:
        proc = subprocess.run(argv, env=self.env, cwd=self.cwd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        return proc.stdout

    def timed(self, *commands: Sequence[str]) -> float:
        """Run the commands one after the other (each must succeed); the wall time of all of them."""
        start = time.perf_counter()
        for argv in commands:
            if subprocess.run(argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL, check=False).returncode:
                raise RuntimeError(f"{' '.join(argv)} failed")
        return time.perf_counter() - start


def _fresh(*paths: str) -> None:
    """Remove the outputs of the last run and flush its writeback, outside any timing."""
    for path in paths:
        if os.path.lexists(path):
            os.unlink(path)
    os.sync()


@dataclass
class _Tools:
    """The two commands under test and what they need: keys, a container, an output directory."""

    sh: _Runner
    envelope: list[str]
    age: str
    sync: str
    identity: str
    recipient: str
    root: str
    outputs: str

    @property
    def out(self) -> str:
        return os.path.join(self.outputs, "out")


def run(cfg: Any, ctx: Any) -> dict[str, Any]:
    age, keygen, sync = shutil.which("age"), shutil.which("age-keygen"), shutil.which("sync")
    if age is None or keygen is None or sync is None:
        missing = [name for name, path in (("age", age), ("age-keygen", keygen), ("sync", sync)) if path is None]
        reason = f"skipped: {', '.join(missing)} not on PATH (Debian: apt-get install age)"
        ctx.log(f"  {reason}")
        return {"skipped": reason, "summary": []}
    root = ctx.tempdir("cli")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENVELOPE_", "AWS_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode cached after the first (warm-up) run
    env["ENVELOPE_KEYSTORE"] = os.path.join(root, "keystore")
    sh = _Runner(env, root)
    envelope = _envelope_command()
    sh.check([*envelope, "-q", "key", "create", "--alias", "alias/bench"])
    sh.check([*envelope, "-q", "create", "c", "--key", "alias/bench"])
    identity = os.path.join(root, "identity.txt")
    sh.check([keygen, "-o", identity])
    outputs = os.path.join(root, "out")
    os.mkdir(outputs)
    tools = _Tools(
        sh=sh,
        envelope=envelope,
        age=age,
        sync=sync,
        identity=identity,
        recipient=sh.check([keygen, "-y", identity]).strip(),
        root=root,
        outputs=outputs,
    )
    result: dict[str, Any] = {
        "bytes": cfg.cli_size,
        "reps": cfg.reps,
        "age": sh.check([age, "--version"]).strip(),
        "command": " ".join(os.path.basename(a) for a in envelope),
        "filesystem": ctx.filesystem(root),
        "sizes": {},
    }
    summary: list[dict[str, Any]] = []
    for nbytes in (cfg.cli_size, SMALL):
        ctx.log(f"  {nbytes:,} bytes")
        entry = _measure(cfg, tools, nbytes, threads=nbytes == cfg.cli_size)
        result["sizes"][str(nbytes)] = entry
        summary += _lines(nbytes, entry)
    result["summary"] = summary
    return result


def _measure(cfg: Any, t: _Tools, nbytes: int, *, threads: bool) -> dict[str, Any]:
    """Interleaved rounds of put/age -e and get -o/age -d on one file of `nbytes` (plus --threads 2)."""
    source = os.path.join(t.root, f"plain-{nbytes}")
    with open(source, "wb") as f:
        remaining = nbytes
        while remaining:
            chunk = os.urandom(min(remaining, 1 << 20))
            f.write(chunk)
            remaining -= len(chunk)
    sealed = os.path.join(t.root, f"sealed-{nbytes}.age")
    t.sh.check([t.age, "-e", "-r", t.recipient, "-o", sealed, source])
    name = f"obj-{nbytes}"
    t.sh.check([*t.envelope, "-q", "put", "c", name, source])
    counter = iter(range(1 << 30))

    def ours_put(*extra: str) -> Callable[[], float]:
        def go() -> float:
            target = f"w{next(counter)}"
            seconds = t.sh.timed([*t.envelope, "-q", "put", "c", target, source, *extra])
            os.unlink(os.path.join(t.root, "c", "objects", target))  # a local container's layout
            os.sync()
            return seconds

        return go

    def age_encrypt() -> float:
        _fresh(t.out)
        return t.sh.timed([t.age, "-e", "-r", t.recipient, "-o", t.out, source], [t.sync, t.out, t.outputs])

    def ours_get(*extra: str) -> Callable[[], float]:
        def go() -> float:
            _fresh(t.out)
            return t.sh.timed([*t.envelope, "-q", "get", "c", name, "-o", t.out, *extra])

        return go

    def age_decrypt() -> float:
        _fresh(t.out)
        return t.sh.timed([t.age, "-d", "-i", t.identity, "-o", t.out, sealed], [t.sync, t.out, t.outputs])

    contenders: dict[str, Callable[[], float]] = {
        "ours_put": ours_put(),
        "age_encrypt": age_encrypt,
        "ours_get": ours_get(),
        "age_decrypt": age_decrypt,
    }
    if threads:
        contenders["ours_put_threads2"] = ours_put("--threads", "2")
        contenders["ours_get_threads2"] = ours_get("--threads", "2")
    rounds = QuietRounds(cfg.quiet_wait_s / 8)  # full runs: each round waits (bounded) for a quiet machine
    times = interleave(contenders, reps=cfg.reps, warmup=cfg.warmup, before_round=rounds)
    _fresh(t.out)
    entry: dict[str, Any] = {
        "quiet_rounds": rounds.report(),
        "seconds": {k: summarize(v, digits=4) for k, v in times.items()},
        "mb_per_s": {k: round(nbytes / summarize(v)["median"] / 1e6, 1) for k, v in times.items()},
        "ratios": {
            "put_vs_age": summarize(paired_ratios(times["ours_put"], times["age_encrypt"])),
            "get_vs_age": summarize(paired_ratios(times["ours_get"], times["age_decrypt"])),
        },
    }
    if threads:
        entry["ratios"]["put_threads2_vs_1"] = summarize(paired_ratios(times["ours_put_threads2"], times["ours_put"]))
        entry["ratios"]["get_threads2_vs_1"] = summarize(paired_ratios(times["ours_get_threads2"], times["ours_get"]))
    return entry


def _label(nbytes: int) -> str:
    return f"{nbytes >> 20} MiB" if nbytes >= 1 << 20 else f"{nbytes >> 10} KiB"


def _ms(entry: dict[str, Any], name: str) -> str:
    return f"{entry['seconds'][name]['median'] * 1000:.0f} ms"


def _lines(nbytes: int, entry: dict[str, Any]) -> list[dict[str, Any]]:
    ratios = entry["ratios"]
    label = _label(nbytes)
    # The 1 KiB rows are start-up and fixed costs: no goal of their own, they explain the large-file rows.
    small = nbytes == SMALL
    rows = (
        ("put", "age -e", "put_vs_age", "ours_put", "age_encrypt", PUT_TARGET),
        ("get -o", "age -d", "get_vs_age", "ours_get", "age_decrypt", GET_TARGET),
    )
    lines = [
        verdict(
            "12",
            f"CLI {op} {label} / {peer} + fsync ({'time; start-up' if small else 'whole-process time'})",
            ratios[key],
            target=None if small else ("<=", goal),
            detail=f"{_ms(entry, ours)} vs {_ms(entry, theirs)}",
        )
        for op, peer, key, ours, theirs, goal in rows
    ]
    for op, key in (("put", "put_threads2_vs_1"), ("get -o", "get_threads2_vs_1")):
        if key in ratios:
            lines.append(verdict("12", f"CLI {op} {label}: --threads 2 / default (time)", ratios[key], target=None))
    return lines
