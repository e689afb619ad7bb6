"""Object names: the rules, and hostile names rejected by both stores before any I/O."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from envelope.errors import StorageError, ValidationError
from envelope.storage import LocalStore, S3Store, Store, validate_name, validate_prefix

HOSTILE_NAMES: list[Any] = [
    "",
    ".",
    "..",
    "../x",
    "../../etc/passwd",
    "a/../../x",
    "a/./b",
    "a/..",
    "/etc/passwd",
    "/",
    "a//b",
    "a/",
    "nul\x00byte",
    "a\\..\\x",
    "back\\slash",
    "line\nfeed",
    "tab\there",
    "esc\x1b[31m",
    "del\x7f",
    "c1\x85next-line",
    "c1\x9b",
    "x" * 1025,
    "é" * 513,  # 1026 UTF-8 bytes in 513 characters
    "seg/" + "s" * 256,
    ".hidden",
    "dir/.hidden",
    ".x.0123456789abcdef.tmp",  # shaped like a local temp file
    "lone\ud800surrogate",
    b"bytes",
    None,
    42,
]

GOOD_NAMES = [
    "a",
    "reports/q3.csv",
    "a/b/c/d",
    "/".join(["s" * 255, "t" * 255, "u" * 255, "v" * 254, "w"]),  # exactly 1024 bytes
    "é" * 127 + "x",  # a 255-byte segment
    "spaces are fine",
    "unicode/é/中文/😀",
    "dots.in.the.middle.",
    "trailing-dot./x",
    "~tilde",
    "a..b",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=repr)
def test_hostile_names_are_rejected(name: Any) -> None:
    with pytest.raises(ValidationError):
        validate_name(name)


@pytest.mark.parametrize("name", GOOD_NAMES, ids=lambda n: repr(n)[:40])
def test_good_names_are_accepted_unchanged(name: str) -> None:
    assert validate_name(name) is name


def test_error_messages_stay_short_for_huge_names() -> None:
    with pytest.raises(ValidationError) as info:
        validate_name("a/" + "\x00" * 100_000)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("prefix", ["", "a", "a/", "a/b", "a/b/", "rep"])
def test_valid_prefixes(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["/", "../", "a//", "a/../", "/etc/", ".", "a\x00"])
def test_invalid_prefixes(prefix: str) -> None:
    with pytest.raises(ValidationError):
        validate_prefix(prefix)


# -- both stores: hostile names change nothing and cause no I/O -----------------------------


def snapshot(root: Path) -> list[tuple[str, int | None]]:
    """Every path below root (including dot files, not following symlinks), with file sizes."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            path = Path(dirpath, entry)
            found.append((str(path.relative_to(root)), path.lstat().st_size if path.is_file() else None))
    return sorted(found)


class S3Calls:
    """Counts every HTTP request the client sends."""

    def __init__(self, client: Any) -> None:
        self.count = 0
        client.meta.events.register("before-send.s3", self._seen)

    def _seen(self, **_: Any) -> None:
        self.count += 1


@pytest.fixture(params=["local", "s3"])
def guarded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Callable[[], Any]]]:
    """A store with one object in it, and a function returning everything observable about its backend."""
    if request.param == "local":
        (tmp_path / "outside").mkdir()
        (tmp_path / "outside" / "passwd").write_bytes(b"secret")
        store: Store = LocalStore(tmp_path / "root")
        store.put_bytes("keep/me", b"kept")
        yield store, lambda: snapshot(tmp_path)
        return
    client = request.getfixturevalue("server_s3_client")
    bucket = request.getfixturevalue("server_bucket")
    store = S3Store(client, bucket, "pfx")
    store.put_bytes("keep/me", b"kept")
    calls = S3Calls(client)
    # Inspects the bucket through a second client, so its own requests are not counted.
    raw = boto3.client("s3", region_name="us-east-1", endpoint_url=client.meta.endpoint_url)

    def state() -> Any:
        keys = [o["Key"] for o in raw.list_objects_v2(Bucket=bucket).get("Contents", [])]
        uploads = raw.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return keys, uploads, calls.count

    yield store, state


OPERATIONS: list[tuple[str, Callable[[Store, Any], Any]]] = [
    ("put_bytes", lambda s, n: s.put_bytes(n, b"payload")),
    ("put_bytes overwrite", lambda s, n: s.put_bytes(n, b"payload", overwrite=True)),
    ("open_writer", lambda s, n: s.open_writer(n)),
    ("get_bytes", lambda s, n: s.get_bytes(n)),
    ("open_reader", lambda s, n: s.open_reader(n)),
    ("exists", lambda s, n: s.exists(n)),
    ("size", lambda s, n: s.size(n)),
    ("delete", lambda s, n: s.delete(n)),
    ("substore", lambda s, n: s.substore(n)),
    ("list", lambda s, n: s.list(n if not isinstance(n, str) else n + "/")),
]


@pytest.mark.parametrize("name", [n for n in HOSTILE_NAMES if n != ""], ids=repr)
def test_hostile_names_change_nothing_in_either_store(guarded: tuple[Store, Callable[[], Any]], name: Any) -> None:
    store, state = guarded
    before = state()
    for label, operation in OPERATIONS:
        with pytest.raises(ValidationError):
            operation(store, name)
        assert state() == before, label
    assert state() == before  # nothing written, and (S3) not a single request sent
    assert store.get_bytes("keep/me") == b"kept"


# -- local: symlinks planted inside the root ------------------------------------------------


@pytest.fixture
def planted(tmp_path: Path) -> tuple[LocalStore, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"do not touch")
    root = tmp_path / "root"
    store = LocalStore(root)
    store.put_bytes("ok/obj", b"fine")
    (root / "evil").symlink_to(outside)  # a directory symlink pointing out of the root
    (root / "ok" / "link").symlink_to(outside / "secret")  # a file symlink pointing out of the root
    return store, outside


def outside_unchanged(outside: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_bytes() == b"do not touch"


@pytest.mark.parametrize(
    "operation",
    [
        lambda s: s.put_bytes("evil/new", b"x"),
        lambda s: s.put_bytes("evil/secret", b"x", overwrite=True),
        lambda s: s.open_writer("evil/deeper/new"),
        lambda s: s.get_bytes("evil/secret"),
        lambda s: s.open_reader("evil/secret"),
        lambda s: s.exists("evil/secret"),
        lambda s: s.size("evil/secret"),
        lambda s: s.delete("evil/secret"),
        lambda s: s.get_bytes("ok/link"),
        lambda s: s.open_reader("ok/link"),
        lambda s: s.exists("ok/link"),
        lambda s: s.delete("ok/link"),
        lambda s: s.put_bytes("ok/link", b"x"),
        lambda s: s.put_bytes("ok/link", b"x", overwrite=True),
        lambda s: s.substore("evil").put_bytes("new", b"x"),
        lambda s: list(s.list("evil/")),
    ],
    ids=lambda f: "",
)
def test_symlinks_planted_inside_the_root_are_never_followed(
    planted: tuple[LocalStore, Path], operation: Callable[[LocalStore], Any]
) -> None:
    store, outside = planted
    with pytest.raises(StorageError, match="symbolic link"):
        operation(store)
    outside_unchanged(outside)
    assert store.get_bytes("ok/obj") == b"fine"


def test_listing_skips_planted_symlinks(planted: tuple[LocalStore, Path]) -> None:
    store, outside = planted
    assert list(store.list()) == ["ok/obj"]
    assert list(store.list("e")) == []
    assert list(store.list_children()) == ["ok/"]
    assert list(store.list_children("ok/")) == ["ok/obj"]
    assert store.cleanup_stale_temp_files(older_than=0) == 0
    outside_unchanged(outside)


def test_a_symlink_swapped_in_for_a_directory_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store = LocalStore(tmp_path / "root")
    store.put_bytes("d/obj", b"1")
    store.delete("d/obj")  # 'd' is pruned
    (tmp_path / "root" / "d").symlink_to(outside)
    with pytest.raises(StorageError, match="symbolic link"):
        store.put_bytes("d/obj", b"2")
    assert list(outside.iterdir()) == []


def test_the_root_itself_may_be_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    store = LocalStore(tmp_path / "alias")
    store.put_bytes("a/b", b"x")  # the caller chose this path; only what is below it is guarded
    assert (real / "a" / "b").read_bytes() == b"x"


def test_a_fifo_under_an_object_name_does_not_hang_the_reader(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "root")
    store.put_bytes("dir/obj", b"x")
    os.mkfifo(tmp_path / "root" / "dir" / "fifo")
    with pytest.raises(StorageError, match="not a regular file"):
        store.get_bytes("dir/fifo")
    with pytest.raises(StorageError, match="not a regular file"):
        store.exists("dir/fifo")
    assert list(store.list()) == ["dir/obj"]
