"""Turn a user-supplied location into a Store.

Accepted: a local path (`str` or `os.PathLike`), a `file://` URL, an
`s3://bucket/prefix` URL (with a caller-supplied boto3 S3 client), or a Store
instance (returned unchanged). Anything else is a `ValidationError`.

This module must never touch the filesystem or the network, never construct
a boto3 client, and never guess: an unknown scheme is an error, not a path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import unquote, urlsplit

from envelope.errors import ValidationError
from envelope.storage._base import Store
from envelope.storage.local import LocalStore, check_encodable_path
from envelope.storage.names import validate_name

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["Location", "open_store", "parse_location"]

# Only 'scheme://' marks a URL: a bare 'name:thing' is a legitimate relative file name.
_URL_RE: Final = re.compile(r"\A([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True, slots=True)
class Location:
    """A parsed location: `path` for kind "file"; `bucket` and `prefix` ('' or ending in '/') for "s3"."""

    kind: Literal["file", "s3"]
    path: str = ""
    bucket: str = ""
    prefix: str = ""


def _show(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def parse_location(location: str | os.PathLike[str]) -> Location:
    """Parse a path or URL without opening anything; raise ValidationError if it is not acceptable."""
    if isinstance(location, os.PathLike):
        location = os.fspath(location)
    if not isinstance(location, str):
        raise ValidationError(f"a location must be a str path, a URL or a Store, not {type(location).__name__}")
    if not location:
        raise ValidationError("a location must not be empty")
    if "\x00" in location:
        raise ValidationError("a location must not contain NUL")
    match = _URL_RE.match(location)
    if match is None:
        return Location(kind="file", path=check_encodable_path(location))
    scheme = match.group(1).lower()
    parse = _URL_PARSERS.get(scheme)
    if parse is None:
        raise ValidationError(
            f"unsupported location scheme {scheme!r} in {_show(location)}: use a path, file:// or s3://"
        )
    return parse(location)


def _parse_file_url(url: str) -> Location:
    parts = urlsplit(url)
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValidationError(f"a file:// URL must not have a query or fragment: {_show(url)}")
    if parts.netloc not in ("", "localhost"):
        raise ValidationError(f"a file:// URL must name a local path (file:///...), got host in {_show(url)}")
    try:
        path = unquote(parts.path, errors="strict")
    except UnicodeDecodeError:
        raise ValidationError(f"a file:// URL must percent-encode UTF-8: {_show(url)}") from None
    if not path.startswith("/"):
        raise ValidationError(f"a file:// URL must hold an absolute path: {_show(url)}")
    if "\x00" in path:
        raise ValidationError("a file:// URL must not contain NUL")
    return Location(kind="file", path=check_encodable_path(path))


def _parse_s3_url(url: str) -> Location:
    from envelope.storage.s3 import validate_bucket_name  # botocore: loaded only for s3:// locations

    # Keys are taken literally (no percent-decoding), as the AWS CLI does with s3:// URLs.
    rest = url[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if "?" in rest or "#" in rest:
        raise ValidationError(f"an s3:// URL must not have a query or fragment: {_show(url)}")
    if "@" in bucket or ":" in bucket:
        raise ValidationError(f"an s3:// URL must not carry credentials or a port: {_show(url)}")
    validate_bucket_name(bucket)
    if prefix:
        try:
            validate_name(prefix.removesuffix("/"))
        except ValidationError as e:
            raise ValidationError(f"invalid key prefix in {_show(url)}: {e}") from None
        prefix = prefix.removesuffix("/") + "/"
    return Location(kind="s3", bucket=bucket, prefix=prefix)


_URL_PARSERS: Final[dict[str, Callable[[str], Location]]] = {"file": _parse_file_url, "s3": _parse_s3_url}
"""URL scheme -> parser; a path without a scheme is a "file" location."""


def _open_file(parsed: Location, s3_client: S3Client | None) -> Store:
    return LocalStore(parsed.path)


def _open_s3(parsed: Location, s3_client: S3Client | None) -> Store:
    if s3_client is None:
        raise ValidationError("an s3:// location needs an s3_client (a boto3 S3 client) to be passed in")
    from envelope.storage.s3 import S3Store

    return S3Store(s3_client, parsed.bucket, parsed.prefix)


_OPENERS: Final[dict[str, Callable[[Location, S3Client | None], Store]]] = {"file": _open_file, "s3": _open_s3}
"""Location kind -> store factory."""


def open_store(location: Store | str | os.PathLike[str], *, s3_client: S3Client | None = None) -> Store:
    """Return the Store for `location` (a Store is returned as is). s3:// needs `s3_client`."""
    if isinstance(location, Store):
        return location
    parsed = parse_location(location)
    return _OPENERS[parsed.kind](parsed, s3_client)
