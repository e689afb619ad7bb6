"""Run one fuzz target: ``python -m fuzz --target header --runs 1000000`` (or ``python fuzz/run.py ...``).

Engines:

- ``atheris`` (default when it is installed): coverage-guided libFuzzer over
  the envelope and dataplane modules, instrumented at import. Each run starts
  from the target's seeds (valid inputs, written into the corpus directory)
  and a dictionary of format tokens. libFuzzer prints its own progress and
  final statistics (executions, exec/s, coverage ``cov``/``ft``); crashing
  inputs are saved under ``--artifacts``.
- ``mutate`` (the fallback): a seeded random mutation loop over the same
  seeds -- bit flips, byte writes, boundary integers, insertions, deletions,
  splices. It is not coverage-guided; it exists so the command still works
  where atheris will not install.

Exit status 0 when every execution finished with an allowed outcome, 1 on a
crash (the input is saved), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_NAMES = ("header", "message")
INSTRUMENTED = ["envelope", "dataplane"]


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, choices=TARGET_NAMES)
    parser.add_argument("--runs", type=int, default=1_000_000, help="executions (default 1,000,000)")
    parser.add_argument("--max-seconds", type=int, default=0, help="stop after this long (0: no limit)")
    parser.add_argument("--max-len", type=int, default=4096, help="largest input, in bytes")
    parser.add_argument("--engine", choices=("auto", "atheris", "mutate"), default="auto")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument("--corpus", type=Path, help="corpus directory (default: a fresh temporary one)")
    parser.add_argument("--artifacts", type=Path, default=Path("fuzz-artifacts"), help="where crashing inputs go")
    parser.add_argument("--rss-limit-mb", type=int, default=1024)
    parser.add_argument("--timeout", type=int, default=10, help="seconds one input may take before it is a hang")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.max_len < 1:
        parser.error("--runs and --max-len must be positive")
    return args


def _have_atheris() -> bool:
    return importlib.util.find_spec("atheris") is not None


def _write_corpus(directory: Path, seeds: list[bytes]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        (directory / f"seed-{hashlib.sha1(seed).hexdigest()}").write_bytes(seed)  # noqa: S324 - a file name


def _write_dictionary(path: Path, tokens: list[str]) -> None:
    # libFuzzer dictionary syntax: one "token" per line; inner quotes escaped, \xNN kept as written.
    path.write_text("".join('"' + token.replace('"', '\\"') + '"\n' for token in tokens))


def _run_atheris(args: argparse.Namespace) -> None:
    import atheris  # type: ignore[import-untyped,unused-ignore]

    with atheris.instrument_imports(include=INSTRUMENTED):
        from fuzz.targets import TARGETS
    target, seeds, tokens = TARGETS[args.target]
    corpus = args.corpus or Path(tempfile.mkdtemp(prefix=f"envelope-fuzz-{args.target}-"))
    _write_corpus(corpus, seeds())
    args.artifacts.mkdir(parents=True, exist_ok=True)
    dictionary = corpus.parent / f".{corpus.name}.dict"
    _write_dictionary(dictionary, tokens)
    libfuzzer_args = [
        sys.argv[0],
        str(corpus),
        f"-runs={args.runs}",
        f"-max_len={args.max_len}",
        f"-seed={args.seed}",
        f"-rss_limit_mb={args.rss_limit_mb}",
        f"-timeout={args.timeout}",
        f"-artifact_prefix={args.artifacts}/{args.target}-",
        f"-dict={dictionary}",
        "-print_final_stats=1",
    ]
    if args.max_seconds:
        libfuzzer_args.append(f"-max_total_time={args.max_seconds}")
    print(f"fuzz: atheris (libFuzzer), target {args.target}, corpus {corpus}", file=sys.stderr, flush=True)
    atheris.Setup(libfuzzer_args, target)
    atheris.Fuzz()  # exits the process when done


# --- the fallback engine -------------------------------------------------------------------------

_BOUNDARY = [0, 1, 2, 15, 16, 17, 31, 32, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF]


def mutate(data: bytes, rng: random.Random, pool: list[bytes], max_len: int) -> bytes:
    """One to four random edits of `data` (a plain, not coverage-guided, mutator)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op == 2 and len(buf) >= 2:
            width = rng.choice((1, 2, 4))
            value = rng.choice(_BOUNDARY) & ((1 << (8 * width)) - 1)
            i = rng.randrange(max(1, len(buf) - width + 1))
            buf[i : i + width] = value.to_bytes(width, "big")
        elif op == 3:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 4 and buf:
            del buf[pos : pos + rng.randint(1, 16)]
        elif op == 5 and pool:
            other = rng.choice(pool)
            cut = rng.randrange(len(other) + 1)
            buf[pos:] = other[cut:]
        elif op == 6 and buf:
            buf = buf[: rng.randrange(len(buf) + 1)]
        elif op == 7 and buf:
            i, j = sorted(rng.randrange(len(buf) + 1) for _ in range(2))
            buf[pos:pos] = buf[i:j]
    return bytes(buf[:max_len])


def run_mutations(
    target: Callable[[bytes], None], seeds: list[bytes], runs: int, *, seed: int = 1, max_len: int = 4096
) -> int:
    """Run `target` on the seeds, then on `runs` mutants of them; returns executions. Raises on a crash."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test inputs, not secrets
    executed = 0
    while executed < runs:
        data = seeds[executed] if executed < len(seeds) else mutate(rng.choice(seeds), rng, seeds, max_len)
        try:
            target(data)
        except Exception as exc:
            raise FuzzCrash(data) from exc
        executed += 1
    return executed


class FuzzCrash(Exception):
    """A target raised something it may not; `.data` is the input."""

    def __init__(self, data: bytes) -> None:
        super().__init__(f"crash on a {len(data)}-byte input")
        self.data = data


def _run_mutate(args: argparse.Namespace) -> int:
    from fuzz.targets import TARGETS

    target, seeds, _ = TARGETS[args.target]
    print(f"fuzz: mutate (not coverage-guided), target {args.target}", file=sys.stderr, flush=True)
    start = time.monotonic()
    deadline = start + args.max_seconds if args.max_seconds else None
    executed = 0
    chunk = 10_000
    status = 0
    try:
        while executed < args.runs and (deadline is None or time.monotonic() < deadline):
            n = min(chunk, args.runs - executed)
            executed += run_mutations(target, seeds(), n, seed=args.seed + executed, max_len=args.max_len)
    except FuzzCrash as crash:
        args.artifacts.mkdir(parents=True, exist_ok=True)
        path = args.artifacts / f"{args.target}-crash-{hashlib.sha1(crash.data).hexdigest()}"  # noqa: S324
        path.write_bytes(crash.data)
        traceback.print_exception(crash.__cause__ or crash)
        print(f"fuzz: crash saved to {path}", file=sys.stderr)
        status = 1
    elapsed = time.monotonic() - start
    rate = executed / elapsed if elapsed else 0.0
    print(f"fuzz: {executed} executions in {elapsed:.1f} s ({rate:.0f} exec/s), crashes: {status}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if _have_atheris() else "mutate"
    if engine == "atheris":
        if not _have_atheris():
            print("fuzz: atheris is not installed (pip install atheris)", file=sys.stderr)
            return 2
        _run_atheris(args)
        return 0
    os.environ.setdefault("PYTHONHASHSEED", "0")
    return _run_mutate(args)


if __name__ == "__main__":
    sys.exit(main())
