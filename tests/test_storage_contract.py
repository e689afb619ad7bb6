"""The Store contract, run against LocalStore and S3Store (on a loopback moto_server) alike."""

from __future__ import annotations

import array
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envelope.errors import ObjectExistsError, ObjectNotFoundError, StorageError, ValidationError
from envelope.storage import LocalStore, S3Store, Store

PART = 5 * 1024 * 1024
BIG = PART + 12_345  # just over one part: S3 goes multipart


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    client = request.getfixturevalue("server_s3_client")
    bucket = request.getfixturevalue("server_bucket")
    # A small read-ahead so short reads exercise both the window and the direct path.
    return S3Store(client, bucket, "tenants/acme", part_size=PART, read_ahead=4096)


def pattern(size: int, seed: int = 0) -> bytes:
    """Distinct, position-dependent bytes: a misplaced range can never compare equal by accident."""
    block = bytes((i * 131 + seed * 17 + (i >> 8)) & 0xFF for i in range(65_536))
    return (block * (size // len(block) + 1))[:size]


def visible(store: Store, name: str) -> bool:
    """Whether `name` shows up through every read path; all of them must agree."""
    parent = name.rpartition("/")[0]
    answers = {
        store.exists(name),
        name in list(store.list()),
        name in list(store.list_children(parent + "/" if parent else "")),
    }
    assert len(answers) == 1, f"read paths disagree about {name!r}"
    return answers.pop()


def read_all(store: Store, name: str) -> bytes:
    with store.open_reader(name) as reader:
        buf = bytearray(reader.size)
        assert reader.readinto_at(0, memoryview(buf)) == reader.size
        return bytes(buf)


# -- put / get ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 100_000])
def test_put_bytes_round_trips(store: Store, size: int) -> None:
    data = pattern(size)
    store.put_bytes("reports/q3.csv", data)
    assert store.get_bytes("reports/q3.csv") == data
    assert store.size("reports/q3.csv") == size
    assert read_all(store, "reports/q3.csv") == data


def test_create_only_put_refuses_an_existing_name_and_keeps_the_original(store: Store) -> None:
    store.put_bytes("header.json", b"first")
    with pytest.raises(ObjectExistsError):
        store.put_bytes("header.json", b"second")
    with pytest.raises(ObjectExistsError), store.open_writer("header.json") as w:
        w.write(b"third")
    assert store.get_bytes("header.json") == b"first"


def test_overwrite_mode_replaces_the_object(store: Store) -> None:
    store.put_bytes("obj", b"first")
    store.put_bytes("obj", b"second, longer", overwrite=True)
    assert store.get_bytes("obj") == b"second, longer"
    with store.open_writer("obj", overwrite=True) as w:
        w.write(b"3")
    assert store.get_bytes("obj") == b"3"
    store.put_bytes("fresh", b"new", overwrite=True)  # overwrite mode also creates
    assert store.get_bytes("fresh") == b"new"


def test_get_bytes_max_size(store: Store) -> None:
    store.put_bytes("blob", b"x" * 100)
    assert store.get_bytes("blob", max_size=100) == b"x" * 100
    with pytest.raises(StorageError, match="max_size"):
        store.get_bytes("blob", max_size=99)


def test_missing_objects(store: Store) -> None:
    assert not store.exists("nope")
    for call in (store.get_bytes, store.open_reader, store.size, store.delete):
        with pytest.raises(ObjectNotFoundError):
            call("nope")
    store.put_bytes("dir/obj", b"x")
    assert not store.exists("dir")  # a prefix is not an object
    with pytest.raises(ObjectNotFoundError):
        store.get_bytes("dir")
    with pytest.raises(ObjectNotFoundError):
        store.get_bytes("dir/obj/deeper")


def test_writes_accept_any_bytes_like(store: Store) -> None:
    words = array.array("I", range(1000))
    with store.open_writer("typed") as w:
        assert w.write(words) == len(words) * words.itemsize
        assert w.write(bytearray(b"ba")) == 2
        assert w.write(memoryview(b"--mv--")[2:4]) == 2
    assert store.get_bytes("typed") == words.tobytes() + b"bamv"
    with store.open_writer("not-bytes") as w:
        with pytest.raises(ValidationError):
            w.write("text is not bytes")  # type: ignore[arg-type]
        w.write(b"still usable")  # a rejected argument is not a failure of the writer
    assert store.get_bytes("not-bytes") == b"still usable"


# -- visibility ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [10, BIG], ids=["small", "multipart"])
def test_streamed_object_is_invisible_until_commit(store: Store, size: int) -> None:
    data = pattern(size, seed=3)
    writer = store.open_writer("stream/obj")
    for start in range(0, size, 1_000_003):
        writer.write(memoryview(data)[start : start + 1_000_003])
        assert not visible(store, "stream/obj")
        with pytest.raises(ObjectNotFoundError):
            store.open_reader("stream/obj")
    assert not visible(store, "stream/obj")
    writer.commit()
    assert visible(store, "stream/obj")
    assert read_all(store, "stream/obj") == data


@pytest.mark.parametrize("size", [10, BIG], ids=["small", "multipart"])
def test_abort_leaves_nothing(store: Store, size: int) -> None:
    writer = store.open_writer("aborted")
    writer.write(pattern(size))
    writer.abort()
    writer.abort()  # idempotent
    assert not visible(store, "aborted")
    assert list(store.list()) == []
    with pytest.raises(StorageError):
        writer.write(b"more")
    with pytest.raises(StorageError):
        writer.commit()
    store.put_bytes("aborted", b"later")  # the name is free
    assert store.get_bytes("aborted") == b"later"


@pytest.mark.parametrize("size", [10, BIG], ids=["small", "multipart"])
def test_exception_inside_with_leaves_nothing(store: Store, size: int) -> None:
    def write_then_fail() -> None:
        with store.open_writer("failed/obj") as w:
            w.write(pattern(size))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_then_fail()
    assert not visible(store, "failed/obj")
    assert list(store.list()) == []


def test_commit_is_create_only_even_if_the_name_appears_while_writing(store: Store) -> None:
    writer = store.open_writer("late")
    writer.write(b"from the writer")
    store.put_bytes("late", b"got there first")
    with pytest.raises(ObjectExistsError):
        writer.commit()
    assert store.get_bytes("late") == b"got there first"
    with pytest.raises(ObjectExistsError):
        writer.commit()  # errors are sticky
    writer.abort()  # and abort stays safe after a failed commit
    assert store.get_bytes("late") == b"got there first"


def test_commit_twice_and_exit_after_commit_are_harmless(store: Store) -> None:
    with store.open_writer("twice") as w:
        w.write(b"abc")
        w.commit()
        w.commit()
    assert store.get_bytes("twice") == b"abc"
    with pytest.raises(StorageError):
        w.write(b"more")
    w.abort()  # cannot un-commit
    assert store.get_bytes("twice") == b"abc"


# -- ranged reads ---------------------------------------------------------------------------


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=30)
@given(data=st.data())
def test_ranged_reads_at_any_offset_equal_the_bytes_written(store: Store, data: st.DataObject) -> None:
    size = data.draw(st.integers(0, 20_000), label="size")
    chunks = data.draw(st.lists(st.integers(1, 7_000), max_size=8), label="write chunking")
    content = pattern(size, seed=size)
    name = f"ranged/{uuid.uuid4().hex}"
    with store.open_writer(name) as w:
        pos = 0
        for chunk in chunks:
            w.write(content[pos : pos + chunk])
            pos += chunk
        w.write(content[pos:])
    with store.open_reader(name) as reader:
        assert reader.size == size
        reads = data.draw(st.lists(st.tuples(st.integers(0, size + 10), st.integers(0, 9_000)), max_size=12))
        for offset, length in reads:
            buf = bytearray(b"\xee" * length)
            n = reader.readinto_at(offset, memoryview(buf))
            expected = content[offset : offset + length]
            assert n == len(expected)
            assert bytes(buf[:n]) == expected
            assert buf[n:] == b"\xee" * (length - n)  # nothing written past what was read


def test_ranged_reads_across_a_part_boundary(store: Store) -> None:
    data = pattern(BIG, seed=9)
    with store.open_writer("big") as w:
        for start in range(0, BIG, 777_777):
            w.write(data[start : start + 777_777])
    with store.open_reader("big") as reader:
        assert reader.size == BIG
        for offset, length in [(0, 10), (PART - 5, 10), (PART - 1, 2), (PART, 12_345), (BIG - 1, 100), (1, BIG)]:
            buf = bytearray(length)
            n = reader.readinto_at(offset, memoryview(buf))
            assert bytes(buf[:n]) == data[offset : offset + length]
        # Many small sequential reads (served from the read-ahead window on S3).
        buf = bytearray(100)
        for offset in range(PART - 5_000, PART + 5_000, 100):
            assert reader.readinto_at(offset, memoryview(buf)) == 100
            assert bytes(buf) == data[offset : offset + 100]


def test_reader_rejects_bad_arguments_and_use_after_close(store: Store) -> None:
    store.put_bytes("r", b"0123456789")
    reader = store.open_reader("r")
    with pytest.raises(ValidationError):
        reader.readinto_at(-1, memoryview(bytearray(1)))
    with pytest.raises(ValidationError):
        reader.readinto_at(0, memoryview(b"read-only"))
    assert reader.readinto_at(10, memoryview(bytearray(5))) == 0
    assert reader.readinto_at(1_000, memoryview(bytearray(5))) == 0
    reader.close()
    with pytest.raises(ValidationError):
        reader.readinto_at(0, memoryview(bytearray(1)))


# -- listing, delete, substore --------------------------------------------------------------

# Orderings that trip up a naive directory walk: '-' and '.' sort before '/', '0' after it.
NAMES = ["a-b", "a.c", "a/b-c", "a/b/c", "a0", "ab/c", "b", "z/é", "z/ø/1", "\u4e2d/x"]


def test_list_is_sorted_recursive_and_filters_by_prefix(store: Store) -> None:
    names = NAMES
    for name in reversed(names):
        store.put_bytes(name, name.encode())
    assert list(store.list()) == sorted(names)
    assert list(store.list("a")) == ["a-b", "a.c", "a/b-c", "a/b/c", "a0", "ab/c"]
    assert list(store.list("a/")) == ["a/b-c", "a/b/c"]
    assert list(store.list("a/b")) == ["a/b-c", "a/b/c"]
    assert list(store.list("a/b/")) == ["a/b/c"]
    assert list(store.list("z/")) == ["z/é", "z/ø/1"]
    assert list(store.list("nothing")) == []
    assert list(store.list("nothing/")) == []
    # S3 orders keys by UTF-8 bytes; code-point order is the same, which the local walk relies on.
    assert sorted(names) == sorted(names, key=lambda n: n.encode())


def test_list_children_has_delimiter_semantics(store: Store) -> None:
    for name in ["top", "a-b", "a/x", "a/y/z", "a/y/w", "b/c/d/e"]:
        store.put_bytes(name, b"")
    assert list(store.list_children()) == ["a-b", "a/", "b/", "top"]
    assert list(store.list_children("a/")) == ["a/x", "a/y/"]
    assert list(store.list_children("a/y/")) == ["a/y/w", "a/y/z"]
    assert list(store.list_children("b/")) == ["b/c/"]
    assert list(store.list_children("missing/")) == []
    with pytest.raises(ValidationError):
        store.list_children("a")  # must be '' or end with '/'


def test_listing_more_than_1000_objects(store: Store) -> None:
    names = [f"many/{i:05d}" for i in range(1001)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: store.put_bytes(n, b"."), names))
    assert list(store.list("many/")) == names
    children = list(store.list_children("many/"))
    assert children == names


def test_delete_removes_only_that_object(store: Store) -> None:
    store.put_bytes("d/one", b"1")
    store.put_bytes("d/two", b"2")
    store.put_bytes("d/sub/three", b"3")
    store.delete("d/sub/three")
    assert not visible(store, "d/sub/three")
    assert list(store.list_children("d/")) == ["d/one", "d/two"]  # an emptied prefix disappears
    store.delete("d/one")
    assert list(store.list()) == ["d/two"]
    with pytest.raises(ObjectNotFoundError):
        store.delete("d/one")
    store.put_bytes("d/sub/three", b"again")  # the emptied prefix can be used again
    assert store.get_bytes("d/sub/three") == b"again"


def test_substore_is_rooted_at_its_prefix(store: Store) -> None:
    sub = store.substore("containers/c1")
    sub.put_bytes("objects/x", b"x")
    assert store.get_bytes("containers/c1/objects/x") == b"x"
    assert list(sub.list()) == ["objects/x"]
    assert list(store.list()) == ["containers/c1/objects/x"]
    assert sub.url == store.url + "/containers/c1"
    nested = sub.substore("objects")
    assert nested.get_bytes("x") == b"x"
    assert list(nested.list_children()) == ["x"]
    with pytest.raises(ValidationError):
        store.substore("../escape")
