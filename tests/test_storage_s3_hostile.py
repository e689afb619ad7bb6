"""S3Store against a broken or hostile S3-compatible endpoint (a scripted server on 127.0.0.1).

Each test starts its own `hostile_s3` server, which answers with exactly the
bytes the test scripts (lying lengths, endless chunked bodies, ignored
ranges, looping listings) and stops it at the end. Every failure must be a
typed StorageError, and the client must never consume more than it asked for.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from envelope.errors import StorageError
from envelope.storage import S3Store
from tests.support.hostile_s3 import HostileS3, Reply, Request, hostile_s3, list_page, xml_error

MiB = 1024 * 1024
BUCKET = "hostile-bucket"
OBJECT = bytes(i % 251 for i in range(1000))
ETAG = '"0123456789abcdef0123456789abcdef"'


def make_store(server: HostileS3, **options: Any) -> S3Store:
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=server.url,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"}),
    )
    return S3Store(client, BUCKET, "p", **options)


def endless(total: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    piece = b"x" * chunk
    for _ in range(total // chunk):
        yield piece


# -- whole-object reads -----------------------------------------------------------------------------


@pytest.mark.parametrize("max_size", [None, 1000])
def test_a_chunked_body_under_a_small_content_length_is_not_read_past_it(max_size: int | None) -> None:
    # Content-Length says 100; a chunked body of 64 MiB follows. The client must stop after 101 bytes.
    sent_total = 64 * MiB

    def answer(request: Request) -> Reply:
        return Reply(200, {"Content-Length": "100", "ETag": ETAG}, chunks=endless(sent_total))

    with hostile_s3(answer) as server:
        store = make_store(server)
        with pytest.raises(StorageError, match="announced 100 bytes and sent more"):
            store.get_bytes("container.json", max_size=max_size)
        assert server.replies_finished.wait(timeout=30)
        # What the server could push before the client hung up: the client's reads plus the
        # loopback socket buffers, nowhere near the body (an uncapped read takes all 64 MiB).
        assert server.body_bytes_sent < 16 * MiB


def test_a_body_longer_than_announced_is_refused() -> None:
    def answer(request: Request) -> Reply:
        return Reply(200, {"Content-Length": "10", "ETag": ETAG}, chunks=[b"a" * 20])

    with hostile_s3(answer) as server, pytest.raises(StorageError, match="sent more"):
        make_store(server).get_bytes("obj")


def test_a_body_shorter_than_announced_is_refused() -> None:
    def answer(request: Request) -> Reply:
        return Reply(200, {"Content-Length": "100", "ETag": ETAG}, chunks=[b"a" * 20])

    with hostile_s3(answer) as server, pytest.raises(StorageError):
        make_store(server).get_bytes("obj")


def test_an_honest_get_still_works() -> None:
    def answer(request: Request) -> Reply:
        return Reply(200, {"ETag": ETAG}, OBJECT)

    with hostile_s3(answer) as server:
        assert make_store(server).get_bytes("obj", max_size=1000) == OBJECT


# -- a missing Content-Length -----------------------------------------------------------------------


def test_a_get_without_content_length_is_a_storage_error() -> None:
    def answer(request: Request) -> Reply:
        return Reply(200, {"ETag": ETAG}, chunks=[OBJECT])  # chunked: no Content-Length at all

    with hostile_s3(answer) as server, pytest.raises(StorageError, match="Content-Length"):
        make_store(server).get_bytes("obj", max_size=10_000)


@pytest.mark.parametrize("operation", ["size", "exists", "open_reader"])
def test_a_head_without_content_length_is_a_storage_error(operation: str) -> None:
    def answer(request: Request) -> Reply:
        return Reply(200, {"ETag": ETAG}, content_length=False)

    with hostile_s3(answer) as server, pytest.raises(StorageError, match="Content-Length"):
        getattr(make_store(server), operation)("obj")


def test_a_head_without_etag_is_a_storage_error() -> None:
    def answer(request: Request) -> Reply:
        return Reply(200, {"Content-Length": "1000"})

    with hostile_s3(answer) as server, pytest.raises(StorageError, match="ETag"):
        make_store(server).open_reader("obj")


# -- ranged reads -----------------------------------------------------------------------------------


def ranged(get: Callable[[Request, int, int], Reply]) -> Callable[[Request], Reply]:
    """HEAD answers honestly (1000 bytes, ETAG); GET with Range: bytes=a-b is answered by `get`."""

    def answer(request: Request) -> Reply:
        if request.method == "HEAD":
            return Reply(200, {"Content-Length": str(len(OBJECT)), "ETag": ETAG})
        match = re.fullmatch(r"bytes=(\d+)-(\d+)", request.headers.get("range", ""))
        if match is None:
            return xml_error("InvalidRequest", 400)
        return get(request, int(match[1]), int(match[2]))

    return answer


def honest(request: Request, start: int, end: int) -> Reply:
    headers = {"Content-Range": f"bytes {start}-{end}/{len(OBJECT)}", "ETag": ETAG}
    return Reply(206, headers, OBJECT[start : end + 1])


def read_at(server: HostileS3, offset: int, size: int) -> bytes:
    buf = bytearray(size)
    with make_store(server, read_ahead=0, max_read_ahead=0).open_reader("obj") as reader:
        n = reader.readinto_at(offset, memoryview(buf))
    return bytes(buf[:n])


def test_an_honest_ranged_read_works() -> None:
    with hostile_s3(ranged(honest)) as server:
        assert read_at(server, 100, 200) == OBJECT[100:300]
        assert server.requests[-1].headers["range"] == "bytes=100-299"
        assert server.requests[-1].headers["if-match"] == ETAG


def test_an_endpoint_that_ignores_range_is_refused() -> None:
    # 200 with the whole object: reading len(buf) bytes of it would silently return bytes 0.. instead of 100..
    def ignores(request: Request, start: int, end: int) -> Reply:
        return Reply(200, {"ETag": ETAG}, OBJECT)

    with hostile_s3(ranged(ignores)) as server, pytest.raises(StorageError, match="not 206"):
        read_at(server, 100, 200)


WRONG_RANGES = {
    "another-range": lambda start, end: f"bytes 0-{end - start}/1000",
    "wrong-total": lambda start, end: f"bytes {start}-{end}/5000",
    "garbage": lambda start, end: "bytes */1000",
    "missing": lambda start, end: None,
}


@pytest.mark.parametrize("kind", sorted(WRONG_RANGES))
def test_a_wrong_content_range_is_refused(kind: str) -> None:
    def wrong(request: Request, start: int, end: int) -> Reply:
        content_range = WRONG_RANGES[kind](start, end)
        headers = {"ETag": ETAG} | ({"Content-Range": content_range} if content_range else {})
        return Reply(206, headers, OBJECT[: end - start + 1])

    with hostile_s3(ranged(wrong)) as server, pytest.raises(StorageError, match="Content-Range"):
        read_at(server, 100, 200)


def test_a_range_of_another_version_is_refused() -> None:
    # The endpoint ignored If-Match and served a different object's bytes.
    def other_version(request: Request, start: int, end: int) -> Reply:
        reply = honest(request, start, end)
        reply.headers["ETag"] = '"ffffffffffffffffffffffffffffffff"'
        return reply

    with hostile_s3(ranged(other_version)) as server, pytest.raises(StorageError, match="replaced"):
        read_at(server, 100, 200)


# -- listings ---------------------------------------------------------------------------------------

GIVE_UP_AFTER = 300  # the scripted server ends the listing after this many pages (bounds an unfixed client)


def listing(page: Callable[[int], Reply]) -> Callable[[Request], Reply]:
    count = itertools.count()

    def answer(request: Request) -> Reply:
        if request.query.get("list-type") != "2":
            return xml_error("InvalidRequest", 400)
        n = next(count)
        return page(n) if n < GIVE_UP_AFTER else list_page([], token=None, prefix="p/")

    return answer


LOOPS: dict[str, tuple[Callable[[int], Reply], str]] = {
    # fresh keys every page, but the same continuation token: a loop the keys do not show
    "repeated-token": (lambda n: list_page([f"p/k{n:04d}"], token="again", prefix="p/"), "continuation token"),
    # fresh tokens, but the same keys every page
    "same-keys": (lambda n: list_page(["p/a", "p/b"], token=f"t{n}", prefix="p/"), "went backwards"),
    # fresh tokens, empty pages, forever
    "empty-pages": (lambda n: list_page([], token=f"t{n}", prefix="p/"), "empty truncated pages"),
}


@pytest.mark.parametrize("kind", sorted(LOOPS))
@pytest.mark.parametrize("method", ["list", "list_children"])
def test_a_looping_listing_is_detected(kind: str, method: str) -> None:
    page, message = LOOPS[kind]
    with hostile_s3(listing(page)) as server:
        names = getattr(make_store(server), method)()
        with pytest.raises(StorageError, match=message):
            for _ in itertools.islice(names, 10 * GIVE_UP_AFTER):
                pass
        assert len(server.requests) < GIVE_UP_AFTER


def test_an_honest_paged_listing_works() -> None:
    def page(n: int) -> Reply:
        keys = [f"p/k{n:04d}-{i}" for i in range(3)]
        return list_page(keys, token=f"t{n}" if n < 4 else None, prefix="p/")

    with hostile_s3(listing(page)) as server:
        names = list(make_store(server).list())
    assert names == [f"k{n:04d}-{i}" for n in range(5) for i in range(3)]


def test_the_server_leaves_no_thread_behind() -> None:
    before = set(threading.enumerate())
    with hostile_s3(lambda request: Reply(200, {"ETag": ETAG}, OBJECT)) as server:
        store = make_store(server)
        assert store.get_bytes("obj") == OBJECT  # a kept-alive connection stays open after this
    assert set(threading.enumerate()) <= before
