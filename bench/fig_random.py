"""Figure 5: 4 KiB reads at random offsets in one large object on a LocalStore.

The object is written through a container (`open_writer`) and read through
`open_reader` (`seek` + `read(4096)`). Frames decrypted per read are
counted by wrapping the AES-GCM object the reader builds
(`dataplane.format.AESGCM`), so only `decrypt_into` calls on frames count.
Latency is compared between a zone at the start of the object and one at
the end, reads alternating between the two (one reader each).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from typing import Any

from bench import ours
from bench.report import verdict
from bench.stats import summarize
from bench.streams import KiB, MiB, chunks

READ_SIZE = 4 * KiB
FRAMES_TARGET = 2
LATENCY_RATIO_TARGET = 1.2


class _Counter:
    decrypts = 0


class CountingAESGCM:
    """Forwards to a real AESGCM, counting `decrypt_into` calls."""

    def __init__(self, key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(key)

    def decrypt_into(self, *args: Any) -> Any:
        _Counter.decrypts += 1
        return self._aead.decrypt_into(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._aead, name)


@contextlib.contextmanager
def counting_decrypts() -> Iterator[type[_Counter]]:
    import dataplane.format as stream  # MessageKey.cipher() builds every AES-GCM object there

    original = getattr(stream, "AESGCM")  # noqa: B009 - a private import of that module, patched on purpose
    setattr(stream, "AESGCM", CountingAESGCM)  # noqa: B010
    _Counter.decrypts = 0
    try:
        yield _Counter
    finally:
        setattr(stream, "AESGCM", original)  # noqa: B010


def _label(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB else f"{n // KiB} KiB"


def run(cfg: Any, ctx: Any) -> dict[str, Any]:
    if not ours.dataplane_available():
        raise RuntimeError("needs dataplane.DataPlane and controlplane.ControlPlane")
    size = cfg.random_size
    zone = min(64 * MiB, size // 4)
    rng = random.Random(7)
    rows = []
    summary = []
    for frame_length in cfg.random_frames:
        ctx.log(f"  frame {_label(frame_length)}")
        workdir = ctx.tempdir(f"random-{frame_length}")
        container = ours.LocalContainer(workdir, frame_length=frame_length)
        with container.container.open_writer("big") as writer:
            for piece in chunks(size, 8 * MiB):
                writer.write(piece)
        starts = [rng.randrange(0, zone - READ_SIZE) for _ in range(cfg.random_reads)]
        ends = [rng.randrange(size - zone, size - READ_SIZE) for _ in range(cfg.random_reads)]
        latency: dict[str, list[float]] = {"start": [], "end": []}
        frames: list[int] = []
        with (
            counting_decrypts() as counter,
            container.container.open_reader("big") as near_start,
            container.container.open_reader("big") as near_end,
        ):
            # Warm-up: one read each (opening cost and first-touch are not part of a random read).
            for reader, offset in ((near_start, 0), (near_end, size - READ_SIZE)):
                reader.seek(offset)
                reader.read(READ_SIZE)
            for a, b in zip(starts, ends, strict=True):
                for where, reader, offset in (("start", near_start, a), ("end", near_end, b)):
                    before = counter.decrypts
                    t0 = time.perf_counter()
                    reader.seek(offset)
                    got = reader.read(READ_SIZE)
                    latency[where].append((time.perf_counter() - t0) * 1e6)
                    frames.append(counter.decrypts - before)
                    if len(got) != READ_SIZE:
                        raise RuntimeError("short read")
        container.delete("big")
        container.close()
        if sum(frames) == 0:
            raise RuntimeError("decrypt counter saw no calls: the reader no longer builds dataplane.format.AESGCM")
        start_us = summarize(latency["start"], digits=1)
        end_us = summarize(latency["end"], digits=1)
        ratio = round(end_us["median"] / start_us["median"], 3)
        frames_summary = summarize([float(f) for f in frames], digits=3)
        mean_frames = round(sum(frames) / len(frames), 3)
        rows.append(
            {
                "frame_length": frame_length,
                "object_bytes": size,
                "zone_bytes": zone,
                "reads_per_zone": cfg.random_reads,
                "latency_us": {"start": start_us, "end": end_us},
                "end_over_start": ratio,
                "frames_per_read": {"mean": mean_frames, "max": max(frames), **frames_summary},
            }
        )
        summary.append(
            verdict(
                "5",
                f"frames decrypted per 4 KiB read (max), {_label(frame_length)} frames",
                max(frames),
                target=("<=", FRAMES_TARGET),
                unit="",
                detail=f"mean {mean_frames}",
            )
        )
        summary.append(
            verdict(
                "5",
                f"read latency end / start, {_label(frame_length)} frames",
                ratio,
                target=("<=", LATENCY_RATIO_TARGET),
                detail=f"start {start_us['median']:.0f} us, end {end_us['median']:.0f} us",
            )
        )
    return {"object_bytes": size, "read_size": READ_SIZE, "rows": rows, "summary": summary}
