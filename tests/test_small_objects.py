"""Small objects: `Container.get` and `Container.put` handle an object of at most `ONESHOT_BYTES` in one call.

The one-shot path must be indistinguishable from the streaming one except in
speed: every tampering the streaming reader refuses, it refuses with the same
typed error (and releases nothing); every message it accepts, it returns the
same plaintext for; and `put` writes the very bytes the streaming writer
writes. Each test checks which path ran, so none of them passes by accident
through the other one.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import dataplane._oneshot
import dataplane.plane
from controlplane import ControlPlane
from dataplane import Container, DataPlane
from dataplane._oneshot import ONESHOT_BYTES
from dataplane.format import derive_keys, parse_header
from envelope.errors import AuthenticationError, EnvelopeError, ObjectExistsError
from envelope.kms import LocalKms
from tests.test_tamper import MemStore, header_regions

FRAME = 16
PLAINTEXT = bytes(range(1, 54))  # 3 regular frames and a 5-byte final frame
NAME = "docs/report.bin"
REGULAR_FRAME_SIZE = 4 + 12 + FRAME + 16


class Paths:
    """Counts the one-shot opens and seals `Container` makes (the functions themselves still run)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened = self.sealed = 0
        real_open, real_seal = dataplane.plane.open_message, dataplane.plane.seal_message

        def opened(*args: Any, **kwargs: Any) -> bytes:
            self.opened += 1
            return real_open(*args, **kwargs)

        def sealed(*args: Any, **kwargs: Any) -> bytes:
            self.sealed += 1
            return real_seal(*args, **kwargs)

        monkeypatch.setattr(dataplane.plane, "open_message", opened)
        monkeypatch.setattr(dataplane.plane, "seal_message", sealed)


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> Paths:
    return Paths(monkeypatch)


class Box:
    """Two containers on disk under one KMS key (so two data keys), and a plane reading 16-byte frames."""

    def __init__(self, root: Path) -> None:
        self.kms = LocalKms(root / "keystore")
        self.kms.create_key(alias="alias/small")
        self.locations = [root / "first", root / "second"]
        for location in self.locations:
            ControlPlane(self.kms).create_container(location, "alias/small", encryption_context={"tenant": "t"})
        self.plane = DataPlane(self.kms, frame_length=FRAME, discovery=True)
        self.container = self.plane.open(self.locations[0])
        self.second = self.plane.open(self.locations[1])
        self.container.put(NAME, PLAINTEXT)
        self.container.put("other.bin", bytes(reversed(PLAINTEXT)))
        self.second.put(NAME, PLAINTEXT)
        self.message = self.path(NAME).read_bytes()
        self.other = self.path("other.bin").read_bytes()
        self.foreign = self.path(NAME, container=1).read_bytes()
        self.header_size = len(header_regions(self.message))

    def path(self, name: str, container: int = 0) -> Path:
        return self.locations[container] / "objects" / name

    def frame(self, message: bytes, index: int) -> slice:
        """Where regular frame `index` is (index 3: the final frame)."""
        start = self.header_size + index * REGULAR_FRAME_SIZE
        return slice(start, start + REGULAR_FRAME_SIZE if index < 3 else len(message))

    def region(self, name: str) -> int:
        """The first offset of a header field."""
        return header_regions(self.message).index(name)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Box:
    return Box(tmp_path_factory.mktemp("small"))


def outcome(read: Callable[[], bytes]) -> tuple[str, object]:
    try:
        return "plaintext", read()
    except EnvelopeError as exc:
        return type(exc).__name__, str(exc)


def streamed(container: Container, name: str) -> tuple[str, object]:
    def read() -> bytes:
        with container.open_reader(name) as reader:
            return reader.read()

    return outcome(read)


def flip(data: bytes, offset: int) -> bytes:
    damaged = bytearray(data)
    damaged[offset] ^= 0x01
    return bytes(damaged)


def swap_frames(box: Box, m: bytes, a: int, b: int) -> bytes:
    fa, fb = m[box.frame(m, a)], m[box.frame(m, b)]
    return m[: box.frame(m, a).start] + fb + fa + m[box.frame(m, b).stop :]


def with_frame(box: Box, m: bytes, index: int, frame: bytes) -> bytes:
    where = box.frame(m, index)
    return m[: where.start] + frame + m[where.stop :]


def stored_field(box: Box, m: bytes, index: int, offset: int, value: int) -> bytes:
    """`m` with the u32 at `offset` inside frame `index` replaced (sequence number, marker, length)."""
    start = box.frame(m, index).start + offset
    return m[:start] + struct.pack(">I", value) + m[start + 4 :]


def forged_commitment(box: Box) -> bytes:
    """Another commitment key under a header tag that verifies (forged with the data key): the body frames
    do not cover the header, so only the commitment check refuses this message."""
    header = parse_header(box.message)
    start = box.region("commitment-key")
    body = header.body[:start] + bytes(32)
    derived = derive_keys(box.container.data_key().reveal(), header.message_id).derived_key
    tag = AESGCM(derived).encrypt(bytes(12), b"", body)
    return body + tag + box.message[box.header_size :]


# Each attack: (id, function of the box giving the damaged message). All must fail, and alike.
ATTACKS: list[tuple[str, Callable[[Box], bytes]]] = [
    *[(f"tag-of-frame-{i}", lambda b, i=i: flip(b.message, b.frame(b.message, i).stop - 1)) for i in range(4)],
    *[(f"ciphertext-of-frame-{i}", lambda b, i=i: flip(b.message, b.frame(b.message, i).stop - 17)) for i in range(4)],
    *[
        (f"truncated-after-frame-{i}", lambda b, i=i: b.message[: b.header_size + i * REGULAR_FRAME_SIZE])
        for i in range(4)
    ],
    ("truncated-inside-the-final-frame", lambda b: b.message[:-1]),
    ("truncated-after-the-header", lambda b: b.message[: b.header_size]),
    ("one-byte-after-the-final-frame", lambda b: b.message + b"\x00"),
    ("a-frame-after-the-final-frame", lambda b: b.message + b.message[b.frame(b.message, 0)]),
    ("final-frame-twice", lambda b: b.message + b.message[b.frame(b.message, 3)]),
    ("bad-commitment", lambda b: flip(b.message, b.region("commitment-key"))),
    ("wrong-commitment-under-a-valid-header-tag", forged_commitment),
    ("bad-header-tag", lambda b: flip(b.message, b.region("header-tag"))),
    ("bad-message-id", lambda b: flip(b.message, b.region("message-id"))),
    ("sequence-swap-0-1", lambda b: swap_frames(b, b.message, 0, 1)),
    ("sequence-swap-1-2", lambda b: swap_frames(b, b.message, 1, 2)),
    ("stored-sequence-number", lambda b: stored_field(b, b.message, 1, 0, 7)),
    ("final-frame-marker", lambda b: stored_field(b, b.message, 3, 0, 0xFFFFFFFE)),
    ("final-frame-sequence-number", lambda b: stored_field(b, b.message, 3, 4, 3)),
    ("final-frame-declared-length", lambda b: stored_field(b, b.message, 3, 20, 4)),
    ("frame-from-another-object", lambda b: with_frame(b, b.message, 1, b.other[b.frame(b.other, 1)])),
    ("final-frame-from-another-object", lambda b: with_frame(b, b.message, 3, b.other[b.frame(b.other, 3)])),
    ("header-of-another-object", lambda b: b.other[: b.header_size] + b.message[b.header_size :]),
    ("another-object-under-this-name", lambda b: b.other),
    ("an-object-of-another-container", lambda b: b.foreign),
    ("foreign-edk", lambda b: flip(b.message, b.region("edk-ciphertext") + 5)),
    ("context-changed", lambda b: flip(b.message, b.region("context") + 8)),
    ("empty", lambda b: b""),
    ("one-byte", lambda b: b.message[:1]),
]


@pytest.mark.parametrize("attack", [a for _, a in ATTACKS], ids=[name for name, _ in ATTACKS])
def test_the_one_shot_get_refuses_every_tampering_the_streaming_reader_refuses(
    box: Box, paths: Paths, attack: Callable[[Box], bytes]
) -> None:
    damaged = attack(box)
    assert damaged != box.message
    path = box.path(NAME)
    path.write_bytes(damaged)
    kms_calls = box.plane.cache_stats().kms_calls
    try:
        expected = streamed(box.container, NAME)
        got = outcome(lambda: box.container.get(NAME))
    finally:
        path.write_bytes(box.message)
    assert paths.opened == 1  # the one-shot path judged it
    assert expected[0] != "plaintext"
    assert got == expected
    assert box.plane.cache_stats().kms_calls == kms_calls  # refused without asking KMS (the key is cached)
    assert box.container.get(NAME) == PLAINTEXT


def test_an_object_moved_to_another_name_is_refused_alike(box: Box, paths: Paths) -> None:
    moved = box.path("docs/moved.bin")
    moved.write_bytes(box.message)
    try:
        expected = streamed(box.container, "docs/moved.bin")
        got = outcome(lambda: box.container.get("docs/moved.bin"))
    finally:
        moved.unlink()
    assert paths.opened == 1
    assert expected[0] == "AuthenticationError"
    assert got == expected


def test_the_one_shot_get_refuses_every_single_bit_flip(box: Box, paths: Paths) -> None:
    path = box.path(NAME)
    try:
        for offset in range(len(box.message)):
            path.write_bytes(flip(box.message, offset))
            assert outcome(lambda: box.container.get(NAME)) == streamed(box.container, NAME)
    finally:
        path.write_bytes(box.message)
    assert paths.opened == len(box.message)


def test_a_get_that_fails_wipes_the_plaintext_of_the_frames_that_verified(
    box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames 0-2 verify, the final frame does not: the buffer they were decrypted into is zeroed."""
    streams: list[BytesIO] = []

    class Kept(BytesIO):
        def __init__(self, initial: bytes) -> None:
            super().__init__(initial)
            streams.append(self)

    monkeypatch.setattr(dataplane._oneshot, "BytesIO", Kept)
    path = box.path(NAME)
    path.write_bytes(flip(box.message, len(box.message) - 1))
    try:
        with pytest.raises(AuthenticationError):
            box.container.get(NAME)
        (stream,) = streams
        assert stream.getvalue() == bytes(len(PLAINTEXT))
        path.write_bytes(box.message)
        assert box.container.get(NAME) == PLAINTEXT
        assert streams[1].getvalue() == PLAINTEXT  # what was checked is the buffer the plaintext goes to
    finally:
        path.write_bytes(box.message)


# --- the same plaintext, the same bytes -----------------------------------------------------------------


def fixed_random(n: int) -> bytes:
    return b"\x5a" * n


@pytest.fixture(scope="module")
def planes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Container, Container, int]:
    """The same container through two planes with deterministic message ids (16-byte frames, default
    frames), and the stored size of an empty object with default frames (header and final frame)."""
    root = tmp_path_factory.mktemp("sizes")
    kms = LocalKms(root / "keystore")
    kms.create_key(alias="alias/sizes")
    location = root / "container"
    ControlPlane(kms).create_container(location, "alias/sizes")
    small = DataPlane(kms, frame_length=FRAME, discovery=True, random_bytes=fixed_random).open(location)
    default = DataPlane(kms, discovery=True, random_bytes=fixed_random).open(location)
    default.put("probe", b"")
    overhead = default.size("probe")
    default.delete("probe")
    return small, default, overhead


def _boundary_sizes(small: Container, default: Container, overhead: int) -> list[tuple[str, Container, int]]:
    return [
        ("0", small, 0),
        ("1", small, 1),
        ("frame-1", small, FRAME - 1),
        ("frame", small, FRAME),
        ("frame+1", small, FRAME + 1),
        ("53", small, 53),
        ("64KiB-16-byte-frames", small, 64 << 10),
        ("64KiB", default, 64 << 10),
        ("stored-size-at-the-threshold", default, ONESHOT_BYTES - overhead),
        ("stored-size-threshold+1", default, ONESHOT_BYTES - overhead + 1),
        ("plaintext-at-the-threshold", default, ONESHOT_BYTES),
        ("plaintext-threshold+1", default, ONESHOT_BYTES + 1),
    ]


@pytest.mark.parametrize("case", range(12))
def test_put_and_get_match_the_streaming_writer_and_reader_at_every_boundary(
    planes: tuple[Container, Container, int], paths: Paths, case: int
) -> None:
    label, container, n = _boundary_sizes(*planes)[case]
    data = os.urandom(n)
    name = f"sizes/{label}"
    container.put(name, data)
    one_shot_put = paths.sealed == 1
    assert one_shot_put == (n <= ONESHOT_BYTES), label
    by_put = container._objects.get_bytes(name)  # type: ignore[attr-defined]
    container.delete(name)
    with container.open_writer(name) as writer:
        writer.write(data)
    assert paths.sealed == int(one_shot_put)  # the writer never seals one-shot
    # Deterministic message ids: the two writers must have produced the very same message.
    assert container._objects.get_bytes(name) == by_put  # type: ignore[attr-defined]
    assert container.get(name) == data == streamed(container, name)[1]
    assert paths.opened == (1 if len(by_put) <= ONESHOT_BYTES else 0), label
    container.delete(name)


def test_a_one_shot_put_is_create_only_unless_overwrite(box: Box, paths: Paths) -> None:
    with pytest.raises(ObjectExistsError):
        box.container.put(NAME, b"another")
    assert box.container.get(NAME) == PLAINTEXT
    box.container.put("docs/new.bin", b"v1")
    box.container.put("docs/new.bin", b"v2", overwrite=True)
    assert box.container.get("docs/new.bin") == b"v2"
    box.container.delete("docs/new.bin")
    assert paths.sealed == 3
    assert sorted(p.name for p in box.path(NAME).parent.iterdir()) == ["report.bin"]  # no temp file left


def test_a_one_shot_put_that_fails_leaves_nothing(box: Box, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> bytes:
        raise RuntimeError("sealing failed")

    monkeypatch.setattr(dataplane.plane, "seal_message", broken)
    with pytest.raises(RuntimeError):
        box.container.put("docs/never.bin", b"x")
    assert not box.container.exists("docs/never.bin")
    assert sorted(p.name for p in box.path(NAME).parent.iterdir()) == ["report.bin"]


def test_one_shot_puts_count_against_the_cache_usage_bounds(tmp_path: Path) -> None:
    from dataplane import DataKeyCache

    kms = LocalKms(tmp_path / "keystore")
    kms.create_key(alias="alias/usage")
    ControlPlane(kms).create_container(tmp_path / "c", "alias/usage")
    plane = DataPlane(kms, discovery=True, cache=DataKeyCache(max_messages=2))
    container = plane.open(tmp_path / "c")
    calls = plane.cache_stats().kms_calls
    for i in range(5):
        container.put(f"o{i}", b"x")
    assert plane.cache_stats().kms_calls == calls + 2  # the key served two messages: Decrypt again for 3 and 5


def test_the_one_shot_path_works_on_a_store_without_read_small(tmp_path: Path, paths: Paths) -> None:
    """Any `Store` (here an in-memory one with only the protocol's methods) gets the one-shot path too."""
    kms = LocalKms(tmp_path / "keystore")
    kms.create_key(alias="alias/mem")
    store = MemStore()
    ControlPlane(kms).create_container(store, "alias/mem")
    container = DataPlane(kms, frame_length=FRAME, discovery=True).open(store)
    container.put(NAME, PLAINTEXT)
    assert container.get(NAME) == PLAINTEXT
    assert (paths.sealed, paths.opened) == (1, 1)
    from envelope.errors import ValidationError

    for bad in ("../x", "", "a//b"):
        with pytest.raises(ValidationError):
            container.get(bad)
        with pytest.raises(ValidationError):
            container.put(bad, b"x")


def test_the_header_parser_never_serves_one_headers_sections_for_another(box: Box) -> None:
    """The fast parser remembers the last context and EDKs it parsed: only for the very same bytes."""
    from dataplane.format import DEFAULT_LIMITS, Limits, parse_header, read_header_from_stream

    def careful(message: bytes, limits: Limits = DEFAULT_LIMITS) -> Any:
        from io import BytesIO as Stream

        return read_header_from_stream(Stream(message), limits)

    for message in (box.message, box.foreign, box.message, box.other, box.foreign):
        fast, slow = parse_header(message), careful(message)
        assert fast == slow
        assert dict(fast.encryption_context) == dict(slow.encryption_context)
        assert fast.encrypted_data_keys == slow.encrypted_data_keys
    # The limits apply to a remembered parse too.
    from envelope.errors import FormatError

    parse_header(box.message)
    with pytest.raises(FormatError, match="encryption context exceeds"):
        parse_header(box.message, Limits(max_encryption_context_size=10))
    from dataplane.format import encode_header

    two_edks, _ = encode_header(
        data_key=bytes(32),
        message_id=bytes(32),
        encryption_context={"a": "b"},
        encrypted_data_keys=[("p", b"one", b"x"), ("p", b"two", b"y")],
        frame_length=FRAME,
    )
    assert len(parse_header(two_edks.to_bytes()).encrypted_data_keys) == 2
    with pytest.raises(FormatError, match="more than 1 encrypted data keys"):
        parse_header(two_edks.to_bytes(), Limits(max_encrypted_data_keys=1))


def test_the_materials_judge_every_header_afresh(box: Box, monkeypatch: pytest.MonkeyPatch) -> None:
    """`written_under` remembers its last answer for the same header object only: a foreign header asked
    about right after one of ours is not ours, and its data key is never used."""
    planted = box.path("docs/planted.bin")
    planted.write_bytes(box.foreign)  # the same alias, another container: another data key and context
    try:
        assert box.container.inspect(NAME).generation == 1
        assert box.container.inspect("docs/planted.bin").generation is None
        assert box.container.usage("docs/") == {0: 1, 1: 1}
        resolved: list[object] = []
        real = dataplane.plane._Resolution.resolve_key

        def resolve_key(self: Any, header: Any) -> Any:
            resolved.append(header)
            return real(self, header)

        monkeypatch.setattr(dataplane.plane._Resolution, "resolve_key", resolve_key)
        authenticated: list[object] = []
        real_authenticate = dataplane._oneshot.authenticate_header
        monkeypatch.setattr(
            dataplane._oneshot,
            "authenticate_header",
            lambda header, key: authenticated.append(header) or real_authenticate(header, key),
        )
        assert box.container.get(NAME) == PLAINTEXT
        with pytest.raises(AuthenticationError):
            box.container.get("docs/planted.bin")
        assert len(resolved) == 2 and len(authenticated) == 1  # the planted header never reached its key
    finally:
        planted.unlink()


def test_the_header_encoder_reuses_only_the_encoding_of_equal_inputs() -> None:
    """The writer's encoder remembers the last context/EDK section it encoded: only for equal inputs."""
    from dataplane.format import encode_header
    from envelope.errors import ValidationError

    def encoded(context: dict[str, str], edks: list[tuple[str, bytes, bytes]], frame_length: int = FRAME) -> Any:
        header, _ = encode_header(
            data_key=bytes(32),
            message_id=bytes(32),
            encryption_context=context,
            encrypted_data_keys=edks,
            frame_length=frame_length,
        )
        return parse_header(header.to_bytes())

    one, two = [("p", b"k1", b"x")], [("p", b"k2", b"yy")]
    for context, edks, frame_length in [
        ({"a": "1"}, one, FRAME),
        ({"a": "1"}, one, FRAME),
        ({"a": "2"}, one, FRAME),
        ({"a": "2"}, two, FRAME),
        ({"a": "2"}, two, 4096),
        ({"a": "2", "b": "3"}, two, 4096),
    ]:
        header = encoded(context, edks, frame_length)
        assert dict(header.encryption_context) == context
        assert [tuple(e) for e in header.encrypted_data_keys] == edks
        assert header.frame_length == frame_length
    encoded({"a": "1"}, one)
    with pytest.raises(ValidationError, match="reserved"):
        encoded({"aws-crypto-public-key": "1"}, one)
    with pytest.raises(ValidationError, match="encrypted data keys"):
        encoded({"a": "1"}, [])


def test_threads_reading_and_writing_two_containers_never_mix_up_their_memos(tmp_path: Path) -> None:
    """The parser's, encoder's and materials' one-entry memos, raced by threads on two containers with
    different contexts and data keys: every object reads back as itself, and a planted foreign object
    is refused every time."""
    import threading

    kms = LocalKms(tmp_path / "keystore")
    kms.create_key(alias="alias/race")
    plane = DataPlane(kms, frame_length=FRAME, discovery=True)
    containers = []
    for i in range(2):
        ControlPlane(kms).create_container(tmp_path / f"c{i}", "alias/race", encryption_context={"tenant": f"t{i}"})
        containers.append(plane.open(tmp_path / f"c{i}"))
        containers[i].put("seed", f"seed {i}".encode())
    (tmp_path / "c0" / "objects" / "planted").write_bytes((tmp_path / "c1" / "objects" / "seed").read_bytes())
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for j in range(60):
                c = containers[(t + j) % 2]
                data = f"{t}-{j}".encode() * (j % 5)
                c.put(f"t{t}/{j}", data)
                assert c.get(f"t{t}/{j}") == data
                assert c.get("seed") == f"seed {(t + j) % 2}".encode()
                with pytest.raises(AuthenticationError):
                    containers[0].get("planted")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
