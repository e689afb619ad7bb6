"""The ceiling: bare `AESGCM.encrypt_into` / `decrypt_into` at a given chunk size.

The baselines pay what the stream layer cannot avoid either -- a nonce built
from a counter, an AAD of the same size, one reused output buffer per chunk,
one `write` call to the same sink per chunk -- and nothing else: no header,
no frame prefixes, no file-like object.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from envelope.storage.local import Writeback

TAG = 16
_IV = struct.Struct(">8xI")
AAD = bytes(70)  # our frame AAD: 32-byte message id + label + u32 sequence + u64 length


def _cipher() -> AESGCM:
    return AESGCM(os.urandom(32))


def encrypt_memory(plaintext: memoryview, chunk: int, sink: Any) -> float:
    """Encrypt `plaintext` chunk by chunk into one reused buffer; returns seconds."""
    aead = _cipher()
    out = memoryview(bytearray(chunk + TAG))
    nonce = bytearray(12)
    size = len(plaintext)
    start = time.perf_counter()
    for seq, offset in enumerate(range(0, size, chunk), start=1):
        _IV.pack_into(nonce, 0, seq)
        n = min(chunk, size - offset)
        aead.encrypt_into(nonce, plaintext[offset : offset + n], AAD, out[: n + TAG])
        sink.write(out[: n + TAG])
    return time.perf_counter() - start


def make_ciphertext(plaintext: memoryview, chunk: int) -> tuple[AESGCM, bytearray]:
    """Chunks laid end to end (ciphertext || tag each) for `decrypt_memory`."""
    aead = _cipher()
    size = len(plaintext)
    count = -(-size // chunk)
    buf = bytearray(size + count * TAG)
    view = memoryview(buf)
    nonce = bytearray(12)
    pos = 0
    for seq, offset in enumerate(range(0, size, chunk), start=1):
        _IV.pack_into(nonce, 0, seq)
        n = min(chunk, size - offset)
        aead.encrypt_into(nonce, plaintext[offset : offset + n], AAD, view[pos : pos + n + TAG])
        pos += n + TAG
    return aead, buf


def decrypt_memory(aead: AESGCM, ciphertext: memoryview, plaintext_size: int, chunk: int, sink: Any) -> float:
    out = memoryview(bytearray(chunk))
    nonce = bytearray(12)
    start = time.perf_counter()
    pos = 0
    for seq, offset in enumerate(range(0, plaintext_size, chunk), start=1):
        _IV.pack_into(nonce, 0, seq)
        n = min(chunk, plaintext_size - offset)
        aead.decrypt_into(nonce, ciphertext[pos : pos + n + TAG], AAD, out[:n])
        sink.write(out[:n])
        pos += n + TAG
    return time.perf_counter() - start


def _encrypt_chunks(aead: AESGCM, src: io.RawIOBase, write: Callable[[memoryview], object], chunk: int) -> None:
    """The raw baseline's loop: readinto a reused buffer, encrypt_into a reused buffer, write."""
    inbuf = memoryview(bytearray(chunk))
    out = memoryview(bytearray(chunk + TAG))
    nonce = bytearray(12)
    seq = 0
    while n := src.readinto(inbuf):
        seq += 1
        _IV.pack_into(nonce, 0, seq)
        aead.encrypt_into(nonce, inbuf[:n], AAD, out[: n + TAG])
        write(out[: n + TAG])


def encrypt_file(source_path: str, target_path: str, chunk: int, *, durable: bool = True) -> float:
    """File to file with the same I/O pattern as a LocalStore writer: temp file, early writeback, fsync, rename."""
    aead = _cipher()
    temp = target_path + ".tmp"
    start = time.perf_counter()
    with open(source_path, "rb", buffering=0) as src:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        writeback = Writeback(fd)

        def write(data: memoryview) -> None:
            os.write(fd, data)
            if durable:
                writeback.wrote(len(data))

        try:
            _encrypt_chunks(aead, src, write, chunk)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
    os.rename(temp, target_path)
    return time.perf_counter() - start


def prepare_file_ciphertext(source_path: str, target_path: str, chunk: int) -> AESGCM:
    aead = _cipher()
    with open(source_path, "rb", buffering=0) as src, open(target_path, "wb", buffering=0) as dst:
        _encrypt_chunks(aead, src, dst.write, chunk)
    return aead


def decrypt_file(aead: AESGCM, source_path: str, target_path: str, chunk: int) -> float:
    """Ciphertext file to plaintext file (no fsync, like ours: the output is the caller's)."""
    inbuf = memoryview(bytearray(chunk + TAG))
    out = memoryview(bytearray(chunk))
    nonce = bytearray(12)
    start = time.perf_counter()
    with open(source_path, "rb", buffering=0) as src:
        fd = os.open(target_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            seq = 0
            while True:
                n = src.readinto(inbuf)
                if not n:
                    break
                seq += 1
                _IV.pack_into(nonce, 0, seq)
                aead.decrypt_into(nonce, inbuf[:n], AAD, out[: n - TAG])
                os.write(fd, out[: n - TAG])
        finally:
            os.close(fd)
    return time.perf_counter() - start


def encrypt_memory_threads(plaintext: memoryview, chunk: int, threads: int) -> float:
    """The machine's own ceiling for 2 threads: the plaintext split in `threads` runs of
    whole chunks, each run encrypted by its own thread into its own reused buffer."""
    return _threaded(lambda part: encrypt_memory(part, chunk, _NullSink()), plaintext, chunk, threads)


def decrypt_memory_threads(
    aead: AESGCM, ciphertext: memoryview, plaintext_size: int, chunk: int, threads: int
) -> float:
    count = -(-plaintext_size // chunk)
    per = -(-count // threads)
    spans = []
    for t in range(threads):
        first, last = t * per, min(count, (t + 1) * per)
        if first >= last:
            continue
        start = first * (chunk + TAG)
        size = min(plaintext_size, last * chunk) - first * chunk
        spans.append((ciphertext[start : start + size + (last - first) * TAG], size, first))

    def run(span: tuple[memoryview, int, int]) -> None:
        view, size, first = span
        out = memoryview(bytearray(chunk))
        nonce = bytearray(12)
        pos = 0
        for seq, offset in enumerate(range(0, size, chunk), start=first + 1):
            _IV.pack_into(nonce, 0, seq)
            n = min(chunk, size - offset)
            aead.decrypt_into(nonce, view[pos : pos + n + TAG], AAD, out[:n])
            pos += n + TAG

    workers = [threading.Thread(target=run, args=(span,)) for span in spans]
    start_time = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - start_time


class _NullSink:
    def write(self, data: Any) -> int:
        return len(data)


def _threaded(fn: Any, plaintext: memoryview, chunk: int, threads: int) -> float:
    count = -(-len(plaintext) // chunk)
    per = -(-count // threads) * chunk
    parts = [plaintext[i : i + per] for i in range(0, len(plaintext), per)]
    workers = [threading.Thread(target=fn, args=(part,)) for part in parts]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - start


def copy_file(source_path: str, target_path: str, chunk: int, *, durable: bool) -> float:
    """The I/O alone, no cipher: `readinto` + `os.write`, and with `durable` the temp file,
    early writeback, fsync and rename of a store commit. File-to-file cannot beat this."""
    buf = memoryview(bytearray(chunk))
    temp = target_path + ".tmp" if durable else target_path
    start = time.perf_counter()
    with open(source_path, "rb", buffering=0) as src:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        writeback = Writeback(fd)
        try:
            while n := src.readinto(buf):
                os.write(fd, buf[:n])
                if durable:
                    writeback.wrote(n)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
    if durable:
        os.rename(temp, target_path)
    return time.perf_counter() - start
