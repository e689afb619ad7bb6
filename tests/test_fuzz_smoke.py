"""A short run of the fuzz targets in CI, and the bounded-allocation rule for hostile length fields.

The long runs (>= 1M executions per target) are `python -m fuzz --target header|message`;
here each target gets a few thousand inputs: the seeds, seeded random mutants of them,
hypothesis-driven edits (structured ones for the JSON header), and -- when atheris is
installed -- a short libFuzzer run of the real runner. Only the error types each parser
promises may escape (the targets raise anything else), and nothing may hang (timeouts).
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import struct
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplane import DataPlane
from dataplane.format import Limits, read_header
from dataplane.stream import BufferSource, MessageReader
from envelope.errors import AuthenticationError, FormatError, UnsupportedFormatError
from envelope.header import ContainerHeader
from envelope.kms import LocalKms
from envelope.storage import LocalStore
from fuzz.run import run_mutations
from fuzz.targets import (
    FUZZ_KEY,
    container_header,
    container_header_seeds,
    encrypt,
    message,
    message_seeds,
)

REPO = Path(__file__).resolve().parent.parent
HEADER_SEEDS = container_header_seeds()
MESSAGE_SEEDS = message_seeds()
SMOKE = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


# --- the seeds are what the targets say they are -----------------------------------------------


def test_header_seeds_parse_and_near_misses_are_refused() -> None:
    for seed in HEADER_SEEDS[:4]:
        ContainerHeader.from_json(seed)
    for near_miss in HEADER_SEEDS[4:6]:  # version 2, suite 0x0578
        with pytest.raises(UnsupportedFormatError):
            ContainerHeader.from_json(near_miss)
    with pytest.raises(FormatError):
        ContainerHeader.from_json(HEADER_SEEDS[-1])  # base64 of a header


def test_message_seeds_decrypt_under_the_fuzz_key() -> None:
    for seed in MESSAGE_SEEDS:
        with MessageReader(BufferSource(seed), resolve_key=lambda _h: FUZZ_KEY) as reader:
            assert len(reader.read()) == reader.plaintext_size()


def test_a_target_reports_a_broken_invariant() -> None:
    """The harness itself can fail: an exception the parser does not promise is not swallowed."""

    def buggy(data: bytes) -> None:
        if data.startswith(b"{"):
            raise IndexError("boom")

    with pytest.raises(Exception, match="crash"):
        run_mutations(buggy, [b"{}"], 10)


# --- seeded mutation: a few thousand inputs each ---------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("target", "seeds", "runs"),
    [(container_header, HEADER_SEEDS, 4000), (message, MESSAGE_SEEDS, 3000)],
    ids=["header", "message"],
)
def test_seeded_mutants_raise_only_typed_errors(target: Callable[[bytes], None], seeds: list[bytes], runs: int) -> None:
    assert run_mutations(target, seeds, runs, seed=20240506) == runs


# --- hypothesis: arbitrary edits, and structured JSON damage ---------------------------------------


def _apply(seed: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    data = bytearray(seed)
    for position, width, replacement in edits:
        at = position % (len(data) + 1)
        data[at : at + width] = replacement
    return bytes(data)


EDITS = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 8), st.binary(max_size=8)), max_size=6)


@pytest.mark.timeout(60)
@SMOKE
@given(seed=st.sampled_from(MESSAGE_SEEDS), edits=EDITS)
def test_edited_messages_raise_only_typed_errors(seed: bytes, edits: list[tuple[int, int, bytes]]) -> None:
    message(_apply(seed, edits))


@pytest.mark.timeout(60)
@SMOKE
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_as_a_message_raise_only_typed_errors(data: bytes) -> None:
    message(b"\x02\x04\x78" + data)
    message(data)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
FIELDS = ["format", "version", "container_id", "suite", "data_keys", "encryption_context", "created_at", "labels"]
KEY_FIELDS = ["provider", "key_id", "ciphertext"]


@pytest.mark.timeout(60)
@SMOKE
@given(
    seed=st.sampled_from(HEADER_SEEDS[:4]),
    field=st.sampled_from(FIELDS + [f"data_keys.{k}" for k in KEY_FIELDS] + ["encryption_context.*", "extra"]),
    value=JSON,
    drop=st.booleans(),
)
def test_structurally_damaged_container_headers_raise_only_format_errors(
    seed: bytes, field: str, value: Any, drop: bool
) -> None:
    doc = json.loads(seed)
    where: dict[str, Any] = doc
    name = field
    if field.startswith("data_keys."):
        where, name = doc["data_keys"][0], field.split(".", 1)[1]
    elif field == "encryption_context.*":
        where, name = doc["encryption_context"], "envelope:container-id"
    if drop and name in where:
        del where[name]
    else:
        where[name] = value
    container_header(json.dumps(doc).encode())


@pytest.mark.timeout(60)
@SMOKE
@given(seed=st.sampled_from(HEADER_SEEDS), edits=EDITS)
def test_edited_container_header_bytes_raise_only_format_errors(
    seed: bytes, edits: list[tuple[int, int, bytes]]
) -> None:
    container_header(_apply(seed, edits))


# --- atheris, when installed: the real runner, briefly ------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")
@pytest.mark.parametrize("target", ["header", "message"])
def test_the_libfuzzer_runner_completes_a_short_run(target: str, tmp_path: Path) -> None:
    runs = 2000
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fuzz",
            "--target",
            target,
            "--runs",
            str(runs),
            "--corpus",
            str(tmp_path / "corpus"),
            "--artifacts",
            str(tmp_path / "artifacts"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Done {runs} runs" in result.stderr
    assert not (tmp_path / "artifacts").exists() or not any((tmp_path / "artifacts").iterdir())


def test_the_mutation_runner_saves_nothing_on_a_clean_run(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "fuzz/run.py",
            "--engine",
            "mutate",
            "--target",
            "header",
            "--runs",
            "500",
            "--artifacts",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "500 executions" in result.stderr
    assert not any(tmp_path.iterdir())


# --- hostile length fields: memory bounded by the configured Limits ---------------------------------

SMALL = Limits(
    max_header_size=2048,
    max_encrypted_data_keys=4,
    max_encryption_context_size=512,
    max_frame_length=256,
    max_non_framed_size=1024,
)
SLACK = 16 << 10  # interpreter and cipher objects (a run measures about 6 KiB in all)


class ClaimsToBeHuge:
    """A source reporting a 1 TiB object whose bytes past `data` read as 0xFF."""

    def __init__(self, data: bytes, size: int = 1 << 40) -> None:
        self._data, self.size, self.bytes_read = data, size, 0

    def readinto_at(self, offset: int, buf: memoryview, /) -> int:
        n = max(0, min(len(buf), self.size - offset))
        head = max(0, min(n, len(self._data) - offset))
        buf[:head] = self._data[offset : offset + head]
        buf[head:n] = b"\xff" * (n - head)
        self.bytes_read += n
        return n

    def close(self) -> None:
        pass


def _length_field_offsets(msg: bytes) -> dict[str, tuple[int, int]]:
    """name -> (offset, width) of every length/count field of a message header."""
    fields: dict[str, tuple[int, int]] = {}
    pos = 35
    (context_length,) = struct.unpack_from(">H", msg, pos)
    fields["context length"] = (pos, 2)
    fields["context pair count"] = (pos + 2, 2)
    fields["first context key length"] = (pos + 4, 2)
    pos += 2 + context_length
    fields["EDK count"] = (pos, 2)
    pos += 2
    for part in ("provider id", "provider info", "EDK ciphertext"):
        fields[f"{part} length"] = (pos, 2)
        pos += 2 + struct.unpack_from(">H", msg, pos)[0]
    fields["frame length"] = (pos + 1, 4)
    return fields


def _hostile_variants() -> list[tuple[str, bytes]]:
    msg = encrypt(b"z" * 100, frame_length=32)
    variants = []
    for name, (offset, width) in _length_field_offsets(msg).items():
        for value in (0xFFFF if width == 2 else 0xFFFFFFFF, 0x7FFFFFFF if width == 4 else 0x8000):
            hostile = bytearray(msg)
            hostile[offset : offset + width] = value.to_bytes(width, "big")
            variants.append((f"{name}={value:#x}", bytes(hostile)))
    # The object size is a length too: a valid message in an object claiming to be 1 TiB,
    # framed and non-framed (the last seed).
    variants.append(("unchanged framed message", msg))
    variants.append(("non-framed message", MESSAGE_SEEDS[-1]))
    return variants


@pytest.mark.parametrize(("case", "data"), _hostile_variants(), ids=[c for c, _ in _hostile_variants()])
def test_a_hostile_length_field_never_allocates_past_the_limits(case: str, data: bytes) -> None:
    source = ClaimsToBeHuge(data)
    bound = SMALL.max_header_size + 2 * (SMALL.max_frame_length + 64) + SLACK
    tracemalloc.start()
    try:
        with contextlib.suppress(FormatError, AuthenticationError):
            read_header(source, SMALL)
        try:
            with MessageReader(source, resolve_key=lambda _h: FUZZ_KEY, limits=SMALL) as reader:
                reader.read(SMALL.max_frame_length)
        except (FormatError, AuthenticationError):
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < bound, f"{case}: peak {peak} bytes"
    assert source.bytes_read <= 2 * SMALL.max_header_size + 2 * (SMALL.max_frame_length + 64)


def test_an_oversized_container_header_is_refused_without_reading_it(tmp_path: Path) -> None:
    keystore = LocalKms(tmp_path / "ks")
    keystore.create_key(alias="alias/f")
    location = tmp_path / "container"
    LocalStore(location).put_bytes("container.json", b"{}")
    with open(location / "container.json", "r+b") as f:
        f.truncate(256 << 20)  # sparse: 256 MiB of zeros on disk costs nothing
    tracemalloc.start()
    try:
        with pytest.raises(FormatError):
            DataPlane(keystore).open(location)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_deeply_nested_or_huge_number_json_is_a_format_error() -> None:
    for document in (
        b"[" * 100_000 + b"]" * 100_000,
        b'{"format": "envelope.container", "version": 1' + b"0" * 5000 + b"}",
        b'{"format": "envelope.container", "version": 1, "suite": 1e999999}',
        base64.b64encode(os.urandom(3000)),
    ):
        with pytest.raises(FormatError):
            ContainerHeader.from_json(document)
