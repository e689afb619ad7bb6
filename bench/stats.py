"""Medians with spread, paired ratios, and the interleaving loop every comparison uses."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Summary = dict[str, Any]


def summarize(values: Sequence[float], *, digits: int = 4) -> Summary:
    """Median, min, max and quartiles (inclusive method) of a non-empty sample."""
    if not values:
        raise ValueError("no values to summarize")
    ordered = sorted(values)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {
        "median": round(statistics.median(ordered), digits),
        "min": round(ordered[0], digits),
        "max": round(ordered[-1], digits),
        "q1": round(q1, digits),
        "q3": round(q3, digits),
        "n": len(ordered),
    }


def throughput(nbytes: int, seconds: Sequence[float]) -> list[float]:
    """MB/s (10^6 bytes per second) for each timing."""
    return [nbytes / s / 1e6 for s in seconds]


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Ratio of each round's pair: with interleaving, both sides saw the same machine state."""
    if len(numerator) != len(denominator):
        raise ValueError("paired samples must have the same length")
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def interleave(
    contenders: Mapping[str, Callable[[], float]],
    *,
    reps: int,
    warmup: int = 1,
    cpu: dict[str, list[float]] | None = None,
    before_round: Callable[[], object] | None = None,
    rotate: bool = True,
) -> dict[str, list[float]]:
    """Run each contender once per round, in order, for `warmup` + `reps` rounds.

    A contender returns the seconds it measured (so setup and teardown stay
    outside the timing). Warm-up rounds are discarded. The collector runs
    between runs, never inside one. With `cpu`, each run's process CPU time
    divided by its wall time (about 2.0 when two threads really ran at once)
    is recorded there too. `before_round` runs before each round (e.g. to wait
    for other processes on a shared machine to go quiet). With `rotate`, the
    order shifts by one each round, so no contender always runs first or
    always right after the same neighbour (a disk flush left behind by one
    run would otherwise land on the same next contender every round).
    """
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for round_index in range(warmup + reps):
        if before_round is not None:
            before_round()
        order = list(contenders.items())
        if rotate and order:
            shift = round_index % len(order)
            order = order[shift:] + order[:shift]
        for name, run in order:
            gc.collect()
            gc.disable()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            try:
                seconds = run()
            finally:
                gc.enable()
            wall1, cpu1 = time.perf_counter(), time.process_time()
            if round_index >= warmup:
                results[name].append(seconds)
                if cpu is not None:
                    cpu.setdefault(name, []).append((cpu1 - cpu0) / max(wall1 - wall0, 1e-9))
    return results


class Stopwatch:
    """`with Stopwatch() as sw: ...; sw.seconds`."""

    seconds: float = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
