"""Our side of every comparison, through the public pieces as they are meant to be used.

- Stream level: `dataplane.stream.MessageWriter` / `MessageReader` with a
  data key in hand (no KMS), into a counting sink / from memory.
- Container level: `ControlPlane` + `DataPlane` on a `LocalStore` (a temp
  dir) or an S3 location, with `AwsKms` or `LocalKms`.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.streams import BufferSink

TAG = 16
CONTEXT = {"tenant": "bench", "purpose": "throughput"}
# What a container's EDK looks like: provider "aws-kms", a key ARN, a CiphertextBlob-sized blob.
EDK = ("aws-kms", b"arn:aws:kms:us-east-1:123456789012:key/00000000-0000-4000-8000-000000000000", bytes(184))


def new_writer(sink: Any, key: bytes, frame_length: int, threads: int = 1) -> Any:
    from dataplane.stream import MessageWriter

    return MessageWriter(
        sink,
        data_key=key,
        message_id=os.urandom(32),
        encryption_context=CONTEXT,
        encrypted_data_keys=[EDK],
        frame_length=frame_length,
        threads=threads,
    )


def new_reader(source: Any, key: bytes, threads: int = 1) -> Any:
    from dataplane.stream import MessageReader

    return MessageReader(source, resolve_key=lambda _header: key, threads=threads)


def buffer_source(message: bytes | bytearray | memoryview) -> Any:
    from dataplane.stream import BufferSource

    return BufferSource(message)


def message_size(plaintext_size: int, frame_length: int) -> int:
    """An upper bound on the message size (header allowance + frame overheads)."""
    frames = plaintext_size // frame_length + 1
    return 4096 + plaintext_size + frames * (4 + 12 + TAG + 8)


def encrypt_memory(
    plaintext: memoryview, key: bytes, frame_length: int, sink: Any, *, chunk: int, threads: int = 1
) -> float:
    """Seconds to write `plaintext` through a writer in `chunk`-sized writes (header and close included)."""
    size = len(plaintext)
    start = time.perf_counter()
    writer = new_writer(sink, key, frame_length, threads)
    write = writer.write
    for offset in range(0, size, chunk):
        write(plaintext[offset : offset + chunk])
    writer.close()
    return time.perf_counter() - start


def make_message(plaintext: memoryview, key: bytes, frame_length: int) -> memoryview:
    sink = BufferSink(message_size(len(plaintext), frame_length))
    encrypt_memory(plaintext, key, frame_length, sink, chunk=frame_length)
    return sink.getvalue()


def decrypt_memory(message: memoryview, key: bytes, sink: Any, *, chunk: int, threads: int = 1) -> float:
    """Seconds to read the whole message back through `readinto` of `chunk`-sized buffers."""
    out = memoryview(bytearray(chunk))
    start = time.perf_counter()
    reader = new_reader(buffer_source(message), key, threads)
    readinto = reader.readinto
    write = sink.write
    while n := readinto(out):
        write(out[:n])
    reader.close()
    return time.perf_counter() - start


# --- containers ---------------------------------------------------------------


def dataplane_available() -> bool:
    try:
        from controlplane import ControlPlane  # noqa: F401
        from dataplane import DataPlane  # noqa: F401
    except ImportError:
        return False
    return True


class LocalContainer:
    """A container in a local directory, provisioned with LocalKms, opened through DataPlane."""

    def __init__(
        self, root: str, *, frame_length: int, threads: int = 1, kms: Any = None, key_arn: str | None = None
    ) -> None:
        from controlplane import ControlPlane
        from dataplane import DataPlane
        from envelope.kms import LocalKms

        if kms is None:
            kms = LocalKms(os.path.join(root, "keystore"))
            key_arn = kms.create_key(alias="alias/bench")
        self.kms = kms
        self.location = os.path.join(root, "container")
        if not os.path.exists(os.path.join(self.location, "container.json")):
            assert key_arn is not None, "pass key_arn with kms"
            ControlPlane(kms).create_container(self.location, key_id=key_arn, encryption_context=CONTEXT)
        self.plane = DataPlane(kms, frame_length=frame_length, threads=threads, discovery=True)
        self.container = self.plane.open(self.location)

    def object_path(self, name: str) -> str:
        return os.path.join(self.location, "objects", name)

    def delete(self, name: str) -> None:
        self.container.delete(name)

    def close(self) -> None:
        closer = getattr(self.container, "close", None)
        if callable(closer):
            closer()


def container_write_file(c: LocalContainer, name: str, source_path: str, chunk: int) -> float:
    """Seconds to copy a plaintext file into the container (`readinto` a chunk, `write` it)."""
    buf = memoryview(bytearray(chunk))
    start = time.perf_counter()
    with open(source_path, "rb", buffering=0) as src, c.container.open_writer(name) as writer:
        while n := src.readinto(buf):
            writer.write(buf[:n])
    return time.perf_counter() - start


def container_read_file(c: LocalContainer, name: str, target_path: str, chunk: int) -> float:
    """Seconds to copy an object out to a plaintext file (`readinto` a chunk, `os.write` it)."""
    buf = memoryview(bytearray(chunk))
    start = time.perf_counter()
    fd = os.open(target_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with c.container.open_reader(name) as reader:
            while n := reader.readinto(buf):
                os.write(fd, buf[:n])
    finally:
        os.close(fd)
    return time.perf_counter() - start
