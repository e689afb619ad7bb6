"""open_store / parse_location: paths, file:// and s3:// URLs, Store pass-through, refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from envelope.errors import ValidationError
from envelope.storage import LocalStore, S3Store, open_store, parse_location


def test_a_local_path_str_or_pathlike(tmp_path: Path) -> None:
    for location in (str(tmp_path / "c"), tmp_path / "c"):
        store = open_store(location)
        assert isinstance(store, LocalStore)
        assert store.url == (tmp_path / "c").as_uri()


def test_a_relative_path_and_a_colon_are_paths_not_urls() -> None:
    assert parse_location("containers/acme").kind == "file"
    assert parse_location("c:acme").path == "c:acme"


def test_file_urls(tmp_path: Path) -> None:
    spaced = tmp_path / "with space" / "é"
    store = open_store(spaced.as_uri())
    assert isinstance(store, LocalStore)
    assert store.path == spaced
    assert parse_location("file://localhost/tmp/x").path == "/tmp/x"
    assert parse_location("FILE:///tmp/x").path == "/tmp/x"


@pytest.mark.parametrize(
    "url",
    [
        "file://otherhost/tmp/x",
        "file:///tmp/x?query",
        "file:///tmp/x#fragment",
        "file:///tmp/%00x",
        "file:///tmp/%ff",
        "file://",
    ],
)
def test_bad_file_urls(url: str) -> None:
    with pytest.raises(ValidationError):
        parse_location(url)


def test_s3_urls_need_a_client(server_s3_client: Any, server_bucket: str) -> None:
    with pytest.raises(ValidationError, match="s3_client"):
        open_store(f"s3://{server_bucket}/tenants/acme")
    store = open_store(f"s3://{server_bucket}/tenants/acme/", s3_client=server_s3_client)
    assert isinstance(store, S3Store)
    assert store.bucket == server_bucket
    assert store.prefix == "tenants/acme/"
    assert store.url == f"s3://{server_bucket}/tenants/acme"
    store.put_bytes("x", b"1")
    assert server_s3_client.get_object(Bucket=server_bucket, Key="tenants/acme/x")["Body"].read() == b"1"


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [("s3://my-bucket", "my-bucket", ""), ("s3://my-bucket/", "my-bucket", ""), ("s3://b.c-d/a/b", "b.c-d", "a/b/")],
)
def test_s3_url_parts(url: str, bucket: str, prefix: str) -> None:
    parsed = parse_location(url)
    assert (parsed.kind, parsed.bucket, parsed.prefix) == ("s3", bucket, prefix)


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3:///prefix",
        "s3://UPPER/x",
        "s3://ab/x",
        "s3://bucket..name/x",
        "s3://user@bucket/x",
        "s3://bucket:443/x",
        "s3://bucket/../x",
        "s3://bucket/a//b",
        "s3://bucket/.hidden",
        "s3://bucket/x?versionId=1",
        "s3://bucket/x#frag",
        "s3://bucket/a\\b",
    ],
)
def test_bad_s3_urls(url: str) -> None:
    with pytest.raises(ValidationError):
        parse_location(url)


@pytest.mark.parametrize("location", ["http://example.com/x", "https://b.s3.amazonaws.com/x", "gs://b/x", "ftp://h/x"])
def test_other_schemes_are_refused(location: str) -> None:
    with pytest.raises(ValidationError, match="scheme"):
        open_store(location)


@pytest.mark.parametrize("location", ["", "a\x00b", b"/tmp/x", 42, None])
def test_not_a_location(location: Any) -> None:
    with pytest.raises(ValidationError):
        open_store(location)


def test_a_store_is_returned_as_is(tmp_path: Path, server_s3_client: Any, server_bucket: str) -> None:
    local = LocalStore(tmp_path)
    assert open_store(local) is local
    s3 = S3Store(server_s3_client, server_bucket)
    assert open_store(s3, s3_client=None) is s3


def test_a_store_url_opens_the_same_store(tmp_path: Path, server_s3_client: Any, server_bucket: str) -> None:
    local = LocalStore(tmp_path / "a b" / "c").substore("d")
    assert open_store(local.url).url == local.url
    s3 = S3Store(server_s3_client, server_bucket, "x/y").substore("z")
    assert open_store(s3.url, s3_client=server_s3_client).url == s3.url
