"""dataplane.fs: a container as the fsspec filesystem `envelope`, on a local and an S3 (moto_server) container.

The properties: fsspec finds it by protocol; names and implied directories
behave like S3's; sizes are plaintext sizes read from headers without a key;
reads fetch only the frames they touch and never hand out unauthenticated
bytes; writes are create-only and appear only on a clean close; a pickled
filesystem is configuration only and rebuilds its plane lazily, one Decrypt
per container per process.
"""

from __future__ import annotations

import base64
import datetime
import io
import os
import pickle
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from dataplane.bulk import ContainerSpec, forget_process_planes
from dataplane.format import FINAL_FRAME_OVERHEAD, REGULAR_FRAME_OVERHEAD, read_header
from dataplane.fs import EnvelopeFileSystem, EnvelopeReadFile
from dataplane.stream import BufferSource
from envelope.errors import AuthenticationError, ObjectExistsError, ValidationError
from tests.support.envelope_fs import flip, local_container, read_stored, s3_container, write_stored
from tests.test_secrets_hygiene import Secrets

FRAME = 4096
DATA = bytes(range(256)) * 100  # 25_600 bytes: 6 regular 4 KiB frames and a 1_024-byte final frame


@pytest.fixture(autouse=True)
def _fresh_instances() -> Iterator[None]:
    EnvelopeFileSystem.clear_instance_cache()
    forget_process_planes()
    yield
    EnvelopeFileSystem.clear_instance_cache()
    forget_process_planes()


@pytest.fixture(params=["local", "s3"])
def options(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "local":
        opts = local_container(tmp_path)
    else:
        opts = s3_container(request.getfixturevalue("moto_server_url"))
    return {**opts, "frame_length": FRAME}


def kms_calls(fs: EnvelopeFileSystem) -> int:
    return fs.spec.plane().cache_stats().kms_calls


# --- discovery and the namespace -----------------------------------------------------------------


def test_fsspec_finds_the_filesystem_by_protocol(options: dict[str, Any]) -> None:
    assert fsspec.get_filesystem_class("envelope") is EnvelopeFileSystem
    fs = fsspec.filesystem("envelope", **options)
    assert isinstance(fs, EnvelopeFileSystem)
    with fsspec.open("envelope://in/one.bin", "wb", **options) as f:
        f.write(DATA)
    with fsspec.open("envelope://in/one.bin", "rb", **options) as f:
        assert f.read() == DATA
    files = fsspec.open_files("envelope://in/*.bin", "rb", **options)
    assert [f.path for f in files] == ["in/one.bin"]
    with files[0] as f:
        assert f.read(5) == DATA[:5]


def test_directories_are_implied_by_names(options: dict[str, Any]) -> None:
    fs = fsspec.filesystem("envelope", **options)
    fs.pipe_file("a/b/x.bin", DATA)
    fs.pipe_file("a/y.bin", b"y")
    fs.pipe_file("top.bin", b"")
    assert fs.ls("", detail=False) == ["a", "top.bin"]
    assert fs.ls("envelope://a", detail=True) == [
        {"name": "a/b", "size": 0, "type": "directory"},
        {
            "name": "a/y.bin",
            "size": 1,
            "type": "file",
            "encrypted_size": fs.info("a/y.bin")["encrypted_size"],
            "frame_length": FRAME,
        },
    ]
    assert fs.info("a") == {"name": "a", "size": 0, "type": "directory"}
    assert fs.info("a/b/x.bin")["type"] == "file"
    assert fs.isdir("a/b") and not fs.isfile("a/b")
    assert fs.isfile("a/b/x.bin") and not fs.isdir("a/b/x.bin")
    assert fs.exists("a") and fs.exists("a/b/x.bin") and not fs.exists("a/b/nope") and not fs.exists("../x")
    assert fs.find("") == ["a/b/x.bin", "a/y.bin", "top.bin"]
    assert fs.find("a", maxdepth=1) == ["a/y.bin"]
    assert fs.find("a", withdirs=True) == ["a", "a/b", "a/b/x.bin", "a/y.bin"]
    assert fs.find("a/b/x.bin") == ["a/b/x.bin"]
    assert fs.glob("envelope://a/**/*.bin") == ["a/b/x.bin", "a/y.bin"]
    assert fs.glob("*.bin") == ["top.bin"]
    assert set(fs.glob("a/*", detail=True)) == {"a/b", "a/y.bin"}
    with pytest.raises(FileNotFoundError):
        fs.info("nothing/here")
    with pytest.raises(FileNotFoundError):
        fs.ls("nothing")
    with pytest.raises(ValidationError):
        fs.info("a/../etc/passwd")

    with pytest.raises(ValidationError):
        fs.rm("a")  # a directory, not recursive
    fs.rm("a/b", recursive=True)
    assert fs.find("") == ["a/y.bin", "top.bin"]
    fs.rm(["a/y.bin", "envelope://top.bin"])
    assert fs.find("") == []
    with pytest.raises(FileNotFoundError):
        fs.rm("top.bin")


def test_sizes_are_plaintext_sizes_read_without_any_key(options: dict[str, Any]) -> None:
    writer = fsspec.filesystem("envelope", **options)
    writer.pipe_file("d/data.bin", DATA)
    writer.pipe_file("d/empty.bin", b"")
    EnvelopeFileSystem.clear_instance_cache()
    forget_process_planes()
    fs = fsspec.filesystem("envelope", **options)
    entries = {e["name"]: e for e in fs.ls("d")}
    assert entries["d/data.bin"]["size"] == len(DATA)
    assert entries["d/data.bin"]["encrypted_size"] > len(DATA)
    assert entries["d/empty.bin"]["size"] == 0
    assert fs.info("d/data.bin")["size"] == fs.size("d/data.bin") == len(DATA)
    assert {k: v["size"] for k, v in fs.find("d", detail=True).items()} == {"d/data.bin": len(DATA), "d/empty.bin": 0}
    assert fs.du("d") == len(DATA)
    assert kms_calls(fs) == 0  # headers and stored sizes only
    with fs.open("d/data.bin") as f:
        assert f.size == len(DATA)
    assert kms_calls(fs) == 1


# --- reading ------------------------------------------------------------------------------------


def test_open_rb_is_seekable_and_cat_file_takes_ranges(options: dict[str, Any]) -> None:
    fs = fsspec.filesystem("envelope", **options)
    fs.pipe_file("r.bin", DATA)
    with fs.open("r.bin", "rb") as f:
        assert isinstance(f, EnvelopeReadFile) and f.seekable() and f.readable() and not f.writable()
        f.seek(10_000)
        assert f.read(100) == DATA[10_000:10_100]
        assert f.tell() == 10_100
        f.seek(-5, io.SEEK_END)
        assert f.read() == DATA[-5:]
        f.seek(4090)
        buf = bytearray(20)
        assert f.readinto(buf) == 20 and bytes(buf) == DATA[4090:4110]
    assert fs.cat_file("r.bin") == DATA
    assert fs.cat_file("r.bin", 100, 200) == DATA[100:200]
    assert fs.cat_file("r.bin", -10) == DATA[-10:]
    assert fs.cat_file("r.bin", 5, -5) == DATA[5:-5]
    assert fs.cat_file("r.bin", 30_000, 40_000) == b""
    assert fs.cat("r.bin") == DATA
    assert fs.cat_ranges(["r.bin", "r.bin"], [0, 8000], [10, 8010]) == [DATA[:10], DATA[8000:8010]]
    with fs.open("r.bin", "r", encoding="latin-1") as text:
        assert text.read(3) == DATA[:3].decode("latin-1")


def test_each_thread_reads_at_its_own_position(options: dict[str, Any]) -> None:
    """DuckDB reads one open file from several threads as seek(offset) then read(n) from each."""
    fs = fsspec.filesystem("envelope", **options)
    fs.pipe_file("threads.bin", DATA)
    got: dict[str, bytes] = {}
    with fs.open("threads.bin") as f:
        f.seek(100)
        a_seeked, b_seeked = threading.Event(), threading.Event()

        def a() -> None:
            f.seek(20_000)
            a_seeked.set()
            assert b_seeked.wait(30)
            got["a"] = f.read(50)

        def b() -> None:
            assert a_seeked.wait(30)
            f.seek(7)  # between a's seek and a's read
            b_seeked.set()
            got["b"] = f.read(50)

        workers = [threading.Thread(target=a), threading.Thread(target=b)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        assert not any(w.is_alive() for w in workers)
        assert got == {"a": DATA[20_000:20_050], "b": DATA[7:57]}
        assert f.read(10) == DATA[100:110]  # this thread's own position is untouched


def test_a_ranged_read_on_s3_fetches_only_the_frames_it_touches(moto_server_url: str) -> None:
    options = s3_container(moto_server_url)  # 1 MiB frames: larger than the store's 1 MiB read-ahead window
    fs = fsspec.filesystem("envelope", **options)
    mib = 1 << 20
    big = os.urandom(12 * mib)
    fs.pipe_file("big.bin", big)
    client = fs.spec.objects()._client  # the fs's own S3 client: watch what it asks S3 for
    ranges: list[str] = []
    client.meta.events.register(
        "before-parameter-build.s3.GetObject", lambda params, **_: ranges.append(params.get("Range", "whole"))
    )
    with fs.open("big.bin") as f:
        f.seek(8 * mib + 100)
        assert f.read(200) == big[8 * mib + 100 : 8 * mib + 300]
    assert "whole" not in ranges
    fetched = 0
    for r in ranges:
        start, end = r.removeprefix("bytes=").split("-")
        fetched += int(end) - int(start) + 1
    stored = len(read_stored(options, "big.bin"))
    # One read-ahead window for the header, then the one frame the read touched -- not the object.
    assert len(ranges) == 2 and fetched <= 2 * mib + 100, (fetched, stored, ranges)


def test_a_long_read_on_s3_is_one_get_per_planned_piece_and_stops_where_the_read_ends(moto_server_url: str) -> None:
    options = s3_container(moto_server_url)
    fs = fsspec.filesystem("envelope", **options)
    mib = 1 << 20
    stride = mib + REGULAR_FRAME_OVERHEAD
    big = os.urandom(12 * mib)
    fs.pipe_file("long.bin", big)
    lengths: list[int] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        start, end = params["Range"].removeprefix("bytes=").split("-")
        lengths.append(int(end) - int(start) + 1)

    fs.spec.s3_client().meta.events.register("before-parameter-build.s3.GetObject", record)
    with fs.open("long.bin") as f:
        lengths.clear()  # the header read at open
        f.seek(2 * mib + 10)
        assert f.read(5 * mib) == big[2 * mib + 10 : 7 * mib + 10]
        # Frames 2..7 in one GET: not one per frame, and nothing past the frame the read ends in.
        assert len(lengths) == 1 and 6 * stride <= lengths[0] <= 6 * stride + FINAL_FRAME_OVERHEAD
        lengths.clear()
        assert f.read() == big[7 * mib + 10 :]
        # A read to the end of more than 4 MiB first opens the final frame (one small GET: the stored
        # length is not trusted for the allocation); frame 7 is cached; frames 8..11 in one more GET.
        assert len(lengths) == 2 and lengths[0] <= FINAL_FRAME_OVERHEAD and 4 * stride <= lengths[1] < 5 * stride


# --- tampering ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where", ["message id", "header tag", "first frame", "middle frame", "final frame tag", "truncated"]
)
def test_tampering_anywhere_is_an_authentication_error_and_no_byte_escapes(options: dict[str, Any], where: str) -> None:
    fs = fsspec.filesystem("envelope", **options)
    fs.pipe_file("t.bin", DATA)
    stored = read_stored(options, "t.bin")
    assert read_header(BufferSource(stored)).size == len(stored) - (
        6 * (FRAME + REGULAR_FRAME_OVERHEAD) + 1024 + FINAL_FRAME_OVERHEAD
    )
    body = len(stored) - (6 * (FRAME + REGULAR_FRAME_OVERHEAD) + 1024 + FINAL_FRAME_OVERHEAD)  # the header's size
    offsets = {
        "message id": 10,
        "header tag": body - 1,
        "first frame": body + 100,
        "middle frame": body + 3 * (FRAME + REGULAR_FRAME_OVERHEAD) + 50,
        "final frame tag": len(stored) - 1,
    }
    if where == "truncated":
        write_stored(options, "t.bin", stored[:-20])
    else:
        flip(options, "t.bin", offsets[where])
    with pytest.raises(AuthenticationError):
        fs.cat_file("t.bin")
    with pytest.raises(AuthenticationError), fs.open("t.bin") as f:
        got = b""
        while chunk := f.read(1000):
            got += chunk
            # Only whole verified frames before the damage may come out, and they are the originals.
            assert DATA.startswith(got)
    if where in ("message id", "header tag", "first frame"):
        with pytest.raises(AuthenticationError):
            fs.cat_file("t.bin", 0, 10)
    else:
        # A read that touches only frames before the damage gets them, authenticated (they are intact).
        assert fs.cat_file("t.bin", 0, 10) == DATA[:10]


# --- writing --------------------------------------------------------------------------------------


def test_writes_are_create_only_unless_the_overwrite_option_is_set(options: dict[str, Any]) -> None:
    fs = fsspec.filesystem("envelope", **options)
    fs.pipe_file("w.bin", b"one")
    with pytest.raises(ObjectExistsError):
        fs.pipe_file("w.bin", b"two")
    with pytest.raises(FileExistsError), fs.open("w.bin", "wb") as f:
        f.write(b"two")
    assert fs.cat_file("w.bin") == b"one"
    replacing = fsspec.filesystem("envelope", **options, overwrite=True)
    assert replacing is not fs
    replacing.pipe_file("w.bin", b"three")
    assert fs.cat_file("w.bin") == b"three"
    with pytest.raises(ObjectExistsError):
        replacing.pipe_file("w.bin", b"four", mode="create")
    with pytest.raises(ObjectExistsError):
        replacing.open("w.bin", "xb").close()
    assert fs.cat_file("w.bin") == b"three"


def test_a_write_appears_only_on_a_clean_close(options: dict[str, Any]) -> None:
    fs = fsspec.filesystem("envelope", **options)
    f = fs.open("w/streamed.bin", "wb")
    for i in range(0, len(DATA), 1000):
        f.write(DATA[i : i + 1000])
    assert not fs.exists("w/streamed.bin")
    f.close()
    assert fs.cat_file("w/streamed.bin") == DATA

    with pytest.raises(RuntimeError), fsspec.open("envelope://w/openfile.bin", "wb", **options) as g:
        g.write(DATA)
        raise RuntimeError("the producer crashed")
    with pytest.raises(RuntimeError), fs.open("w/with.bin", "wb") as h:
        h.write(DATA)
        raise RuntimeError("the producer crashed")
    opened = fs.open("w/finally.bin", "wb")
    with pytest.raises(RuntimeError):
        try:
            opened.write(DATA)
            raise RuntimeError("the producer crashed")
        finally:
            opened.close()  # what pandas does: close in a finally while the error propagates
    dropped = fs.open("w/dropped.bin", "wb")
    dropped.write(DATA)
    del dropped
    discarded = fs.open("w/discarded.bin", "wb")
    discarded.write(DATA)
    discarded.discard()
    assert fs.find("w") == ["w/streamed.bin"]

    # A file opened while handling an earlier error is still published by a clean close.
    try:
        raise KeyError("earlier")
    except KeyError:
        with fsspec.open("envelope://w/in-handler.bin", "wb", **options) as k:
            k.write(b"report")
    assert fs.cat_file("w/in-handler.bin") == b"report"


def test_modified_is_the_stored_objects_time(options: dict[str, Any]) -> None:
    fs = fsspec.filesystem("envelope", **options)
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    fs.pipe_file("when.bin", b"w")
    stamp = fs.modified("envelope://when.bin")
    assert stamp.tzinfo is not None and stamp >= before
    with pytest.raises(FileNotFoundError):
        fs.modified("not-there.bin")


def test_unsupported_modes_and_transactions_are_refused(options: dict[str, Any]) -> None:
    fs = fsspec.filesystem("envelope", **options)
    fs.pipe_file("m.bin", b"m")
    for mode in ("ab", "rb+", "wb+"):
        with pytest.raises(ValidationError):
            fs.open("m.bin", mode)
    with pytest.raises(ValidationError), fs.transaction:
        fs.open("n.bin", "wb")
    assert fs.find("") == ["m.bin"]


# --- configuration --------------------------------------------------------------------------------


def test_bad_options_are_refused_before_any_io(tmp_path: Path) -> None:
    base = {"container": str(tmp_path / "none"), "kms": f"local:{tmp_path / 'ks'}"}
    for bad in (
        {"kms": "vault"},
        {"kms": "aws"},  # neither key_ids nor discovery: whom to trust?
        {"kms": "aws", "key_ids": ["arn:aws:kms:us-east-1:111122223333:key/k"], "discovery": True},
        {"aws_secret_access_key": "x"},  # no option carries credentials
        {"container": "ftp://host/x"},
        {"frame_length": 1000},
        {"expect_context": "tenant=acme"},
        {"discovery_accounts": ["111122223333"]},
        {"overwrite": "yes"},
        {"prefetch": 1},
        {"prefetch": True},
        {"read_ahead": 2 << 20, "max_read_ahead": 1 << 20},
        {"read_ahead": 100},
    ):
        with pytest.raises(ValidationError):
            EnvelopeFileSystem(**{**base, **bad})
    with pytest.raises(ValidationError):
        EnvelopeFileSystem(kms="aws", discovery=True)
    assert not (tmp_path / "none").exists() and not (tmp_path / "ks").exists()


def test_expected_context_and_container_id_are_checked_before_any_kms_call(tmp_path: Path) -> None:
    opts = local_container(tmp_path, context={"tenant": "acme"})
    good = fsspec.filesystem("envelope", **opts, expect_context={"tenant": "acme"})
    good.pipe_file("x.bin", b"x")
    container_id = good.spec.open().container_id
    assert fsspec.filesystem("envelope", **opts, container_id=container_id).cat_file("x.bin") == b"x"
    forget_process_planes()
    for wrong in ({"expect_context": {"tenant": "evil"}}, {"container_id": "0" * 32}):
        fs = EnvelopeFileSystem(**opts, **wrong, skip_instance_cache=True)
        with pytest.raises(AuthenticationError):
            fs.cat_file("x.bin")
        assert kms_calls(fs) == 0


# --- pickling and processes -----------------------------------------------------------------------


def test_a_pickled_filesystem_is_configuration_only(options: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "Sekr1tAccessKeyMaterial0123456789abcdefgh"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    fs = fsspec.filesystem("envelope", **options)
    fs.pipe_file("p.bin", DATA)
    assert fs.cat_file("p.bin") == DATA  # the plane, its clients and the data key are live now
    secrets = Secrets(fs.spec.open().data_key().reveal())
    secrets.add_message("p.bin", read_stored(options, "p.bin"))
    blob = pickle.dumps(fs, protocol=pickle.HIGHEST_PROTOCOL)
    assert secrets.leaks("pickle", blob) == []
    for needle in (
        secret,
        base64.b64encode(secret.encode()).decode(),
        "botocore",
        "boto3",
        "DataPlane",
        "LocalKms",
        "AwsKms",
    ):
        assert needle.encode() not in blob, needle
    assert secrets.leaks("repr", repr(fs)) == []
    assert pickle.loads(blob) is fs  # same process, same options: fsspec's instance cache answers
    with pytest.raises(TypeError), fs.open("p.bin") as f:
        pickle.dumps(f)


CHILD = textwrap.dedent(
    """
    import pickle, sys
    fs = pickle.loads(sys.stdin.buffer.read())
    from dataplane.bulk import ContainerSpec
    before = ContainerSpec.__module__ and fs.spec.plane().cache_stats().kms_calls
    data = [fs.cat_file("p.bin"), fs.cat_file("p.bin", 5, 10), fs.cat_file("q.bin")]
    import fsspec
    twin = fsspec.filesystem("envelope", **fs.storage_options, overwrite=True)  # another instance, same container
    data.append(twin.cat_file("p.bin"))
    print(before, fs.spec.plane().cache_stats().kms_calls, twin.spec.plane() is fs.spec.plane(), len(b"".join(data)))
    """
)


def test_an_unpickled_filesystem_builds_its_plane_lazily_one_decrypt_per_process(options: dict[str, Any]) -> None:
    fs = fsspec.filesystem("envelope", **options)
    fs.pipe_file("p.bin", DATA)
    fs.pipe_file("q.bin", b"q" * 10)
    blob = pickle.dumps(fs)
    run = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=blob,
        capture_output=True,
        check=False,
        timeout=120,
        cwd=Path(__file__).parent.parent,
    )
    assert run.returncode == 0, run.stderr.decode()
    before, after, shared, nbytes = run.stdout.decode().split()
    assert (before, after, shared) == ("0", "1", "True")
    assert int(nbytes) == 2 * len(DATA) + 5 + 10


def test_instances_are_cached_by_options_and_share_one_plane(options: dict[str, Any]) -> None:
    a = fsspec.filesystem("envelope", **options)
    assert fsspec.filesystem("envelope", **options) is a
    b = fsspec.filesystem("envelope", **options, overwrite=True)
    assert b is not a and b.spec == a.spec
    a.pipe_file("s.bin", b"s")
    assert b.cat_file("s.bin") == b"s"
    assert a.spec.plane() is b.spec.plane()
    assert kms_calls(a) == 1
    other = ContainerSpec(
        location=options["container"],
        kms=options["kms"],
        frame_length=8192,
        **{k: v for k, v in options.items() if k not in ("container", "kms", "frame_length")},
    )
    assert other.plane() is not a.spec.plane()
