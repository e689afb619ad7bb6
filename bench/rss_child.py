"""One peak-RSS measurement in a fresh interpreter: `python -m bench.rss_child MODE ...`.

Every mode imports the same modules first, so `idle` is the baseline the
others are compared with. The data key arrives on stdin (hex), never on
the command line. Prints one JSON line: {"maxrss_kib": ..., "bytes": ...} where maxrss_kib
is the peak RSS of this process image (VmHWM; see `_peak_kib`).

- idle: nothing after the imports.
- encrypt SIZE FRAME THREADS: a generator of 64 KiB chunks (one reused
  block) -> MessageWriter -> a counting sink.
- decrypt PATH FRAME THREADS: LocalStore reader on PATH -> MessageReader ->
  `readinto` a 64 KiB buffer -> a counting sink.
"""

from __future__ import annotations

import json
import os
import resource
import sys

from bench.ours import new_reader, new_writer
from bench.streams import CountingSink, KiB, chunks
from dataplane.stream import MessageReader, MessageWriter  # noqa: F401 - part of the common imports
from envelope.storage.local import LocalStore

IO_CHUNK = 64 * KiB


def _encrypt(size: int, frame_length: int, threads: int, key: bytes) -> int:
    sink = CountingSink()
    writer = new_writer(sink, key, frame_length, threads)
    for piece in chunks(size, IO_CHUNK):
        writer.write(piece)
    writer.close()
    return sink.count


def _decrypt(path: str, threads: int, key: bytes) -> int:
    store = LocalStore(os.path.dirname(path))
    reader = new_reader(store.open_reader(os.path.basename(path)), key, threads)
    sink = CountingSink()
    buf = memoryview(bytearray(IO_CHUNK))
    while n := reader.readinto(buf):
        sink.write(buf[:n])
    reader.close()
    return sink.count


def _ru_maxrss_kib() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def _peak_kib() -> int:
    """This process image's peak RSS.

    Linux carries ru_maxrss across fork + exec: a child of a big parent
    reports at least the parent's RSS at fork time (which is why the bench
    parent, holding hundreds of MiB of test data, cannot use it). VmHWM
    belongs to the address space created by exec, so it measures only us.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return _ru_maxrss_kib()


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode == "idle":
        count = 0
    else:
        key = bytes.fromhex(sys.stdin.readline().strip())
        if mode == "encrypt":
            count = _encrypt(int(argv[1]), int(argv[2]), int(argv[3]), key)
        elif mode == "decrypt":
            count = _decrypt(argv[1], int(argv[3]), key)
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps({"maxrss_kib": _peak_kib(), "ru_maxrss_kib": _ru_maxrss_kib(), "bytes": count}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
