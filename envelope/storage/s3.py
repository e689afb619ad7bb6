"""The S3 store: one S3 object per object name, under a bucket and key prefix.

Create-only writes are conditional (`If-None-Match: *` on PutObject and on
CompleteMultipartUpload), so S3 itself decides which of two racing writers
wins. Streamed writes fill one part buffer at a time and upload each full
buffer as a multipart part, keeping up to `upload_concurrency` part uploads
in flight on the writer's own small thread pool while the caller fills the
next buffer; an object that never fills a part goes up in one PutObject at
commit. Nothing is visible before commit,
and any failure or abort aborts the multipart upload. Readers issue ranged
GETs pinned to the ETag seen at open, reading straight into the caller's
buffer.

This module must never construct a boto3 client (the caller owns endpoint,
region, credentials and retries), never download a whole object to serve a
ranged read, never hold more than `upload_concurrency + 1` parts in memory
per writer (or more than the read-ahead window per reader), and never let a
botocore exception escape untranslated.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import hashlib
import heapq
import io
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, Final, cast

from botocore.exceptions import BotoCoreError, ClientError

from envelope.errors import ObjectChangedError, ObjectExistsError, ObjectNotFoundError, StorageError, ValidationError
from envelope.storage._base import (
    ABORTED,
    COMMITTED,
    OPEN,
    BaseStore,
    BytesLike,
    StickyWriterState,
    as_byte_view,
)
from envelope.storage.names import MAX_NAME_BYTES, is_valid_name, validate_name

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

__all__ = ["S3ObjectWriter", "S3Reader", "S3Store", "validate_bucket_name"]

MiB: Final = 1024 * 1024
MIN_PART_SIZE: Final = 5 * MiB  # S3's minimum for every part but the last
MAX_PART_SIZE: Final = 5 * 1024 * MiB
MAX_PARTS: Final = 10_000
DEFAULT_PART_SIZE: Final = 8 * MiB
DEFAULT_READ_AHEAD: Final = 1 * MiB
DEFAULT_MAX_READ_AHEAD: Final = 16 * MiB
DEFAULT_UPLOAD_CONCURRENCY: Final = 4
MAX_UPLOAD_CONCURRENCY: Final = 16
_BODY_READ_SIZE: Final = 256 * 1024

_NOT_FOUND_CODES: Final = frozenset({"NoSuchKey", "404", "NotFound"})
_EXISTS_CODES: Final = frozenset({"PreconditionFailed", "412"})
# Real S3 answers 409 when two conditional writes to one key overlap; the loser of a retry gets 412.
_CONFLICT_CODES: Final = frozenset({"ConditionalRequestConflict"})
_CONFLICT_RETRIES: Final = 3
_MAX_EMPTY_PAGES: Final = 100  # consecutive truncated, empty ListObjectsV2 pages tolerated
_CONTENT_RANGE_RE: Final = re.compile(r"\Abytes (\d+)-(\d+)/(\d+)\Z")

_BUCKET_RE: Final = re.compile(r"\A[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_IPV4_RE: Final = re.compile(r"\A\d{1,3}(\.\d{1,3}){3}\Z")


def validate_bucket_name(bucket: object) -> str:
    """Return `bucket` if it follows S3's general-purpose bucket naming rules, else raise ValidationError."""
    if not isinstance(bucket, str):
        raise ValidationError(f"bucket name must be a str, not {type(bucket).__name__}")
    shown = repr(bucket) if len(bucket) <= 70 else repr(bucket[:67] + "...")
    if not _BUCKET_RE.match(bucket):
        raise ValidationError(
            f"invalid bucket name {shown}: 3-63 characters of lowercase letters, digits, '.' and '-', "
            "starting and ending with a letter or digit"
        )
    if ".." in bucket or ".-" in bucket or "-." in bucket or _IPV4_RE.match(bucket):
        raise ValidationError(f"invalid bucket name {shown}")
    if bucket.startswith(("xn--", "sthree-")) or bucket.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3")):
        raise ValidationError(f"invalid bucket name {shown}: reserved prefix or suffix")
    return bucket


def _normalize_prefix(prefix: object) -> str:
    """'' or 'a/b/' (a valid name plus '/'); accepts the name with or without the trailing '/'."""
    if not isinstance(prefix, str):
        raise ValidationError(f"S3 key prefix must be a str, not {type(prefix).__name__}")
    if not prefix:
        return ""
    validate_name(prefix.removesuffix("/"))
    return prefix.removesuffix("/") + "/"


def _positive_int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValidationError(f"{what} must be a non-negative int")
    return value


def _pool_size(client: object) -> int:
    """The client's `max_pool_connections` (botocore's default, 10, when it does not say)."""
    size = getattr(getattr(getattr(client, "meta", None), "config", None), "max_pool_connections", None)
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 1 else 10


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@contextmanager
def _translated(operation: str, name: str, *, create_only: bool = False, conditional: bool = False) -> Iterator[None]:
    """Turn botocore failures into envelope errors, keeping the original as `__cause__`."""
    try:
        yield
    except ClientError as e:
        code = _error_code(e)
        if conditional and code in _EXISTS_CODES | _NOT_FOUND_CODES:
            raise ObjectChangedError(f"{name!r} changed since it was read; nothing was written") from e
        if code in _NOT_FOUND_CODES:
            raise ObjectNotFoundError(f"no object named {name!r}") from e
        if create_only and code in _EXISTS_CODES | _CONFLICT_CODES:
            raise ObjectExistsError(f"an object named {name!r} already exists") from e
        raise StorageError(f"S3 {operation} failed for {name!r} ({code or 'no error code'})") from e
    except BotoCoreError as e:
        raise StorageError(f"S3 {operation} failed for {name!r} ({type(e).__name__})") from e


def _content_length(response: Any, operation: str, name: str) -> int:
    """The response's Content-Length as a non-negative int; StorageError if it is missing or bad."""
    value = response.get("ContentLength")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StorageError(f"S3 {operation} for {name!r} answered without a valid Content-Length")
    return value


def _read_exactly(body: Any, size: int, name: str) -> bytes:
    """Read the `size` bytes a response announced, and never more than `size + 1` from the stream.

    The announced length is the one that was checked against `max_size`; a
    server that sends more (a chunked body under a small Content-Length) is
    refused after one extra byte instead of being read into memory.
    """
    data = bytearray()
    while len(data) <= size:
        piece = body.read(min(_BODY_READ_SIZE, size + 1 - len(data)))
        if not piece:
            break
        data += piece
    if len(data) != size:
        more = "more" if len(data) > size else f"only {len(data)}"
        raise StorageError(f"S3 GetObject for {name!r} announced {size} bytes and sent {more}")
    return bytes(data)


def _is_conflict(error: ClientError) -> bool:
    return _error_code(error) in _CONFLICT_CODES


def _was_retried(error: ClientError) -> bool:
    """Whether botocore sent the request more than once (an earlier attempt may have landed)."""
    return bool(error.response.get("ResponseMetadata", {}).get("RetryAttempts"))


class _ConditionalWrite:
    """One create-only (or overwriting) PutObject / CompleteMultipartUpload, with the 409 retry.

    Every attempt gets a fresh body over the same bytes: a body object is a
    stream that the previous attempt consumed, and botocore would send what
    is left of it (nothing) as the next attempt's body. `retried` records
    whether any request was sent more than once by botocore, i.e. whether an
    earlier attempt may have landed although its answer never arrived.
    """

    def __init__(self, call: Any, body: memoryview | None = None, **kwargs: Any) -> None:
        self._call = call
        self._body = body
        self._kwargs = kwargs
        self.retried = False

    def run(self) -> Any:
        # A conditional write that overlapped another one may be retried; a retry after the other
        # one committed is answered with 412, so exactly one writer ends up winning.
        for attempt in range(_CONFLICT_RETRIES):
            kwargs = dict(self._kwargs)
            if self._body is not None:
                kwargs["Body"] = cast("IO[bytes]", _ViewBody(self._body))
            try:
                return self._call(**kwargs)
            except ClientError as e:
                self.retried = self.retried or _was_retried(e)
                if not _is_conflict(e) or attempt == _CONFLICT_RETRIES - 1:
                    raise
                time.sleep(0.05 * (2**attempt))
        raise AssertionError("unreachable")


def _md5_etag(view: memoryview) -> str:
    """The ETag S3 gives an object stored by one PutObject of `view` (without SSE-KMS): its MD5."""
    return hashlib.md5(view, usedforsecurity=False).hexdigest()


_PART_ETAG_RE: Final = re.compile(r'\A"?([0-9a-fA-F]{32})"?\Z')


def _multipart_etag(parts: list[CompletedPartTypeDef]) -> str | None:
    """The ETag S3 gives a completed multipart upload of `parts`: MD5 of the parts' binary MD5s, '-', count.

    Each part's MD5 is the ETag S3 answered its UploadPart with (the MD5 of the
    bytes it received, which its CRC32 check and the request signature tie to
    the bytes we sent). None when a part's ETag is not an MD5 (SSE-KMS, some
    S3-compatible stores): then no ETag can be predicted, and nothing matches.
    """
    digests = []
    for part in parts:
        match = _PART_ETAG_RE.match(str(part.get("ETag", "")))
        if match is None:
            return None
        digests.append(bytes.fromhex(match.group(1)))
    return f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{len(digests)}"


class _ViewBody(io.RawIOBase):
    """A seekable read-only file over a memoryview.

    botocore accepts bytes, bytearray or a file as a request body; this lets it
    send a slice of the part buffer (and rewind it for a retry) without the
    slice being copied into a new bytes object first. A sized `read` returns
    at most `_BODY_READ_SIZE` bytes (a raw file may return less than asked,
    and botocore, urllib3 and http.client all read until empty): botocore
    reads 1 MiB at a time to sign a body, and that copy, in every upload
    thread, would otherwise add 1 MiB per thread to a writer's memory.
    """

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        end = (
            len(self._view)
            if size is None or size < 0
            else min(len(self._view), self._pos + size, self._pos + _BODY_READ_SIZE)
        )
        start, self._pos = self._pos, max(self._pos, end)
        return bytes(self._view[start:end])

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        n = max(0, min(len(target), len(self._view) - self._pos))
        target[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n


class S3Store(BaseStore):
    """Objects stored as S3 objects `prefix + name` in `bucket`, through the caller's boto3 client.

    Thread-safe (boto3 clients are). `part_size` bounds a writer's memory
    (times `upload_concurrency + 1`, see below); objects of at most
    `small_object_threshold` bytes that never filled a part are written with
    one PutObject. `read_ahead` bytes are fetched for small
    reads so sequential small reads do not each cost a GET; while a reader
    keeps reading sequentially its window doubles up to `max_read_ahead`, so
    a streaming read costs one GET per `max_read_ahead` bytes (each GET has a
    round trip, and S3 serves large ranges best), with memory bounded by it
    (default 16 MiB per reader).

    A streaming writer keeps up to `upload_concurrency` (1..16, default 4,
    capped at the client's `max_pool_connections`)
    UploadPart calls in flight, each on a thread of a pool owned by that
    writer (started at its first part, shut down at commit/abort/failure), so
    the caller fills the next part while earlier ones are sent. Its part
    buffers are allocated on demand and reused, at most
    `upload_concurrency + 1` of them: a writer's memory is bounded by
    `(upload_concurrency + 1) * part_size` (40 MiB at the defaults, 4 and
    8 MiB parts: what it takes to keep up with boto3's `upload_fileobj`).
    With `upload_concurrency=1` parts are uploaded one at a
    time in the caller's thread from a single buffer: no pool, `part_size`
    of memory, and a failed part is reported by the `write` that filled it
    (with more, by the next `write` or `commit` after it failed).
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str = "",
        *,
        part_size: int = DEFAULT_PART_SIZE,
        small_object_threshold: int | None = None,
        read_ahead: int = DEFAULT_READ_AHEAD,
        max_read_ahead: int = DEFAULT_MAX_READ_AHEAD,
        list_page_size: int = 1000,
        upload_concurrency: int = DEFAULT_UPLOAD_CONCURRENCY,
    ) -> None:
        if client is None:
            raise ValidationError("S3Store needs a boto3 S3 client")
        self._client = client
        self._bucket = validate_bucket_name(bucket)
        self._prefix = _normalize_prefix(prefix)
        part_size = _positive_int(part_size, "part_size")
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValidationError(f"part_size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes")
        self._part_size = part_size
        threshold = part_size if small_object_threshold is None else small_object_threshold
        threshold = _positive_int(threshold, "small_object_threshold")
        if threshold > part_size:
            raise ValidationError("small_object_threshold must not exceed part_size (the writer buffers one part)")
        self._threshold = threshold
        self._read_ahead = _positive_int(read_ahead, "read_ahead")
        self._max_read_ahead = _positive_int(max_read_ahead, "max_read_ahead")
        if self._max_read_ahead < self._read_ahead:
            raise ValidationError("max_read_ahead must be at least read_ahead")
        if not 1 <= _positive_int(list_page_size, "list_page_size") <= 1000:
            raise ValidationError("list_page_size must be between 1 and 1000")
        self._page_size = list_page_size
        if not 1 <= _positive_int(upload_concurrency, "upload_concurrency") <= MAX_UPLOAD_CONCURRENCY:
            raise ValidationError(f"upload_concurrency must be between 1 and {MAX_UPLOAD_CONCURRENCY}")
        # More uploads in flight than the client's connection pool holds would each open a new
        # connection and drop it afterwards (urllib3 warns "Connection pool is full"): no faster.
        self._upload_concurrency = min(upload_concurrency, _pool_size(client))

    # -- identity ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"s3://{self._bucket}/{self._prefix.removesuffix('/')}".removesuffix("/")

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def prefix(self) -> str:
        """The key prefix: '' or ending in '/'."""
        return self._prefix

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    def substore(self, prefix: str) -> S3Store:
        validate_name(prefix)
        if len((self._prefix + prefix + "/").encode("utf-8")) >= MAX_NAME_BYTES:
            raise ValidationError(f"substore prefix {prefix!r} leaves no room for object names in an S3 key")
        child = S3Store.__new__(S3Store)
        child.__dict__.update(self.__dict__)
        child._prefix = self._prefix + prefix + "/"
        return child

    def _key(self, name: str) -> str:
        validate_name(name)
        key = self._prefix + name
        if len(key.encode("utf-8")) > MAX_NAME_BYTES:
            raise ValidationError(f"S3 key for {name!r} would exceed {MAX_NAME_BYTES} bytes with the store prefix")
        return key

    # -- writes --------------------------------------------------------------------------------

    def open_writer(self, name: str, *, overwrite: bool = False, if_match: str | None = None) -> S3ObjectWriter:
        if if_match is not None and not isinstance(if_match, str):
            raise ValidationError("if_match must be a version (ETag) from a reader")
        return S3ObjectWriter(
            self, name, self._key(name), overwrite=overwrite or if_match is not None, if_match=if_match
        )

    def _put(self, name: str, view: memoryview, *, overwrite: bool) -> None:
        key = self._key(name)
        if view.nbytes > self._threshold:
            with S3ObjectWriter(self, name, key, overwrite=overwrite) as writer:
                writer.write(view)
            return
        self._put_object(name, key, view, overwrite=overwrite)

    def _put_object(
        self, name: str, key: str, view: memoryview, *, overwrite: bool, if_match: str | None = None
    ) -> None:
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Key": key}
        if not overwrite:
            kwargs["IfNoneMatch"] = "*"
        if if_match is not None:
            kwargs["IfMatch"] = if_match
        write = _ConditionalWrite(self._client.put_object, view, **kwargs)
        try:
            with _translated("PutObject", name, create_only=not overwrite, conditional=if_match is not None):
                write.run()
        except (ObjectExistsError, ObjectChangedError) as e:
            if not self._landed(key, e, write, size=view.nbytes, etag=lambda: _md5_etag(view)):
                raise

    def _landed(
        self, key: str, error: StorageError, write: _ConditionalWrite, *, size: int, etag: Callable[[], str | None]
    ) -> bool:
        """Whether a conditional write refused on a retry had in fact landed: our own lost response.

        Only when botocore sent the request more than once (an earlier attempt
        may have been delivered and its answer lost) and the object now there
        has exactly the size and ETag of the bytes we sent. A refusal on a
        first attempt is always a genuine conflict.
        """
        if not write.retried or not isinstance(error.__cause__, ClientError):
            return False
        try:
            head = self._client.head_object(Bucket=self._bucket, Key=key)
        except (ClientError, BotoCoreError):
            return False
        if head.get("ContentLength") != size:
            return False
        expected = etag()
        return expected is not None and str(head.get("ETag", "")).strip('"') == expected

    # -- reads ---------------------------------------------------------------------------------

    def open_reader(self, name: str) -> S3Reader:
        key = self._key(name)
        with _translated("HeadObject", name):
            head = self._client.head_object(Bucket=self._bucket, Key=key)
        etag = head.get("ETag")
        if not isinstance(etag, str) or not etag:
            raise StorageError(f"S3 HeadObject for {name!r} answered without an ETag")
        return S3Reader(self, name, key, size=_content_length(head, "HeadObject", name), etag=etag)

    def _read_all(self, name: str, max_size: int | None) -> bytes:
        key = self._key(name)
        with _translated("GetObject", name):
            response = self._client.get_object(Bucket=self._bucket, Key=key)
            body = response["Body"]
            try:
                size = _content_length(response, "GetObject", name)
                self._check_max_size(name, size, max_size)
                return _read_exactly(body, size, name)
            finally:
                body.close()

    def size(self, name: str) -> int:
        key = self._key(name)
        with _translated("HeadObject", name):
            head = self._client.head_object(Bucket=self._bucket, Key=key)
        return _content_length(head, "HeadObject", name)

    def delete(self, name: str) -> None:
        key = self._key(name)
        # DeleteObject succeeds on a missing key; the contract wants ObjectNotFoundError, so look first.
        with _translated("HeadObject", name):
            self._client.head_object(Bucket=self._bucket, Key=key)
        with _translated("DeleteObject", name):
            self._client.delete_object(Bucket=self._bucket, Key=key)

    # -- listing -------------------------------------------------------------------------------

    def _list(self, prefix: str) -> Iterator[str]:
        for page in self._pages(prefix, delimiter=False):
            for item in page.get("Contents", ()):
                name = item["Key"][len(self._prefix) :]
                if is_valid_name(name):
                    yield name

    def _list_children(self, prefix: str) -> Iterator[str]:
        cut = len(self._prefix)
        for page in self._pages(prefix, delimiter=True):
            objects = (item["Key"][cut:] for item in page.get("Contents", ()))
            prefixes = (item["Prefix"][cut:] for item in page.get("CommonPrefixes", ()))
            # Each list is sorted and pages advance through the key space, so a merge keeps order.
            for child in heapq.merge(objects, prefixes):
                if is_valid_name(child.removesuffix("/")):
                    yield child

    def _pages(self, prefix: str, *, delimiter: bool) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": self._prefix + prefix, "MaxKeys": self._page_size}
        if delimiter:
            kwargs["Delimiter"] = "/"
        seen: set[str] = set()
        last = ""  # the greatest key or common prefix listed so far
        empty = 0  # consecutive truncated pages that listed nothing
        while True:
            with _translated("ListObjectsV2", prefix):
                page: dict[str, Any] = dict(self._client.list_objects_v2(**kwargs))
            # A broken or hostile endpoint must not make a listing loop or repeat itself forever:
            # keys come in strictly increasing order, and no continuation token comes twice.
            entries = [item.get("Key", "") for item in page.get("Contents", ())]
            entries += [item.get("Prefix", "") for item in page.get("CommonPrefixes", ())]
            first = min(entries, default=None)
            if first is not None and last and first <= last:
                raise StorageError(f"S3 ListObjectsV2 for {prefix!r} went backwards (listed {last!r}, then {first!r})")
            last = max(entries, default=last)
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            if token in seen:
                raise StorageError(f"S3 ListObjectsV2 for {prefix!r} repeated a continuation token (a listing loop)")
            seen.add(token)
            empty = 0 if entries else empty + 1
            if empty > _MAX_EMPTY_PAGES:
                raise StorageError(f"S3 ListObjectsV2 for {prefix!r} returned {empty} empty truncated pages in a row")
            kwargs["ContinuationToken"] = token


def _crc32_b64(body: memoryview) -> str:
    """S3's `x-amz-checksum-crc32` of `body`: the big-endian CRC32, base64 (zlib reads the view in place)."""
    return base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode("ascii")


def _send_part(
    client: S3Client, *, bucket: str, key: str, name: str, upload_id: str, number: int, body: memoryview
) -> CompletedPartTypeDef:
    """One UploadPart of `body` (a filled slice of a part buffer); runs in the caller or a pool thread.

    Returns the part's entry for CompleteMultipartUpload: its number, the ETag
    S3 answered (for the lost-response check at completion) and the CRC32 we
    computed over the buffer. The CRC32 goes with the request, so S3 refuses
    a part whose bytes arrived changed, and again with the Complete, so S3
    checks every stored part against what we sent. Passing it also stops
    botocore computing it a second time through copies of the body.
    botocore rewinds the body for each of its own retries, so every attempt
    sends all of it.
    """
    checksum = _crc32_b64(body)
    with _translated("UploadPart", name):
        response = client.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=cast("IO[bytes]", _ViewBody(body)),
            ChecksumAlgorithm="CRC32",
            ChecksumCRC32=checksum,
        )
    etag = response.get("ETag")
    if not isinstance(etag, str) or not etag:
        raise StorageError(f"S3 UploadPart for {name!r} (part {number}) answered without an ETag")
    return {"PartNumber": number, "ETag": etag, "ChecksumCRC32": checksum}


def _ranges(numbers: list[int]) -> str:
    """'1-3, 5' for [1, 2, 3, 5] (part numbers in error messages, kept short)."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    text = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in spans[:20])
    return (text + ", ...") if len(spans) > 20 else (text or "none")


class S3ObjectWriter(StickyWriterState):
    """Fills part buffers; uploads full ones, up to `upload_concurrency` at once; publishes on commit.

    Memory: at most `upload_concurrency + 1` part buffers (one when
    `upload_concurrency` is 1), each `part_size` bytes, allocated on demand
    and reused: one being filled by `write` while up to `upload_concurrency`
    others are uploaded by this writer's own thread pool
    (`upload_concurrency` threads, started at the first part and shut down
    at commit, abort or failure). When every buffer is in flight, `write`
    waits for an upload to finish. With `upload_concurrency=1` there is one
    buffer and parts go up in the caller's thread, one at a time. `write`
    always copies the caller's bytes before it returns.

    Not thread-safe. Errors are sticky, including a failed part upload
    (reported by the next `write` or `commit` once it has failed; at
    concurrency 1, by the `write` that filled the part); every failure, and
    `abort`, first cancels queued part uploads and waits for running ones,
    then aborts the multipart upload, so nothing (not even invisible parts)
    is left behind.
    `commit` waits for every part and lists them in order. A writer that is
    abandoned without commit or abort (or a crashed process) leaves an
    incomplete multipart upload: invisible, but billed until a bucket
    lifecycle rule (AbortIncompleteMultipartUpload) removes it.
    """

    def __init__(self, store: S3Store, name: str, key: str, *, overwrite: bool, if_match: str | None = None) -> None:
        self._store = store
        self._if_match = if_match
        self._client = store._client
        self._bucket = store._bucket
        self._start(name)
        self._key = key
        self._overwrite = overwrite
        self._part_size = store._part_size
        self._concurrency = store._upload_concurrency
        self._buffer = memoryview(bytearray(self._part_size))  # the buffer `write` is filling
        self._allocated = 1  # part buffers ever allocated: at most upload_concurrency + 1
        self._free: list[memoryview] = []  # allocated buffers whose upload has finished
        self._filled = 0
        self._upload_id: str | None = None
        self._next_number = 1
        self._parts: list[CompletedPartTypeDef] = []  # finished parts, in completion order
        self._pending: list[tuple[concurrent.futures.Future[CompletedPartTypeDef], memoryview]] = []
        self._sent = 0  # bytes handed to UploadPart
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def write(self, data: BytesLike, /) -> int:
        self._check_open()
        view = as_byte_view(data)
        total = view.nbytes
        try:
            while view:
                n = min(len(view), self._part_size - self._filled)
                # Assigning through memoryviews copies once, with no temporary object.
                self._buffer[self._filled : self._filled + n] = view[:n]
                self._filled += n
                view = view[n:]
                if self._filled == self._part_size:
                    self._upload_part(last=False)
        except BaseException as e:
            self._fail(e)
            raise
        return total

    def _upload_part(self, *, last: bool) -> None:
        if self._upload_id is None:
            with _translated("CreateMultipartUpload", self._name):
                created = self._client.create_multipart_upload(
                    Bucket=self._bucket, Key=self._key, ChecksumAlgorithm="CRC32"
                )
            self._upload_id = created["UploadId"]
        number = self._next_number
        if number > MAX_PARTS:
            raise StorageError(f"{self._name!r} needs more than {MAX_PARTS} parts; use a larger part_size")
        body = self._buffer[: self._filled]
        self._sent += self._filled
        args: dict[str, Any] = {
            "bucket": self._bucket,
            "key": self._key,
            "name": self._name,
            "upload_id": self._upload_id,
            "number": number,
            "body": body,
        }
        if self._concurrency == 1:
            self._parts.append(_send_part(self._client, **args))
            self._next_number += 1
            self._filled = 0
            return
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._concurrency, thread_name_prefix="envelope-s3-upload"
            )
        self._pending.append((self._executor.submit(_send_part, self._client, **args), self._buffer))
        self._next_number += 1
        self._filled = 0
        self._buffer = memoryview(bytearray(0))
        if not last:
            self._buffer = self._take_buffer()

    def _take_buffer(self) -> memoryview:
        """A free part buffer: reuse one, allocate one (up to the bound), or wait for an upload to finish."""
        self._collect(wait=None)  # also surfaces a failed part as early as possible
        if not self._free and self._allocated <= self._concurrency:
            self._allocated += 1
            return memoryview(bytearray(self._part_size))
        while not self._free:
            self._collect(wait=concurrent.futures.FIRST_COMPLETED)
        return self._free.pop()

    def _collect(self, wait: str | None) -> None:
        """Take in finished uploads (after waiting per `wait`); re-raise the first failure."""
        if wait is not None and self._pending:
            concurrent.futures.wait([future for future, _ in self._pending], return_when=wait)
        # One pass decides each upload's fate: two scans (done, then not done) would drop an
        # upload that finished between them from both lists, and its part from the object.
        done: list[tuple[concurrent.futures.Future[CompletedPartTypeDef], memoryview]] = []
        pending: list[tuple[concurrent.futures.Future[CompletedPartTypeDef], memoryview]] = []
        for item in self._pending:
            (done if item[0].done() else pending).append(item)
        self._pending = pending
        for future, buffer in done:
            self._parts.append(future.result())
            self._free.append(buffer)

    def commit(self) -> None:
        if self._state == COMMITTED:
            return
        self._check_open()
        try:
            if self._upload_id is None and self._filled <= self._store._threshold:
                self._store._put_object(
                    self._name,
                    self._key,
                    self._buffer[: self._filled],
                    overwrite=self._overwrite,
                    if_match=self._if_match,
                )
            else:
                if self._filled or self._next_number == 1:
                    self._upload_part(last=True)
                while self._pending:
                    self._collect(wait=concurrent.futures.FIRST_EXCEPTION)
                self._complete()
        except BaseException as e:
            self._fail(e)
            raise
        self._state = COMMITTED
        self._release()

    def _complete(self) -> None:
        assert self._upload_id is not None
        finished = sorted(self._parts, key=lambda part: part["PartNumber"])
        numbers = [part["PartNumber"] for part in finished]
        if numbers != list(range(1, self._next_number)):
            # Never publish an object with a part missing or twice, whatever went wrong above.
            raise StorageError(
                f"refusing to complete {self._name!r}: uploaded parts {_ranges(numbers)}, "
                f"expected 1-{self._next_number - 1}"
            )
        kwargs: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": self._key,
            "UploadId": self._upload_id,
            "MultipartUpload": {"Parts": finished},
        }
        if not self._overwrite:
            kwargs["IfNoneMatch"] = "*"
        if self._if_match is not None:
            kwargs["IfMatch"] = self._if_match
            self._check_still(self._if_match)
        write = _ConditionalWrite(self._client.complete_multipart_upload, **kwargs)
        try:
            with _translated(
                "CompleteMultipartUpload",
                self._name,
                create_only=not self._overwrite,
                conditional=self._if_match is not None,
            ):
                write.run()
        except StorageError as e:
            # A retried Complete whose first attempt landed is refused (412 if create-only or
            # conditional) or finds its upload gone (NoSuchUpload): if the object is the one we
            # assembled, we committed.
            cause = e.__cause__
            lost = isinstance(cause, ClientError) and (
                isinstance(e, ObjectExistsError | ObjectChangedError) or _error_code(cause) == "NoSuchUpload"
            )
            if not lost or not self._store._landed(
                self._key, e, write, size=self._sent, etag=lambda: _multipart_etag(finished)
            ):
                raise
        self._upload_id = None  # completed: nothing left to abort

    def _check_still(self, etag: str) -> None:
        # S3 enforces IfMatch on CompleteMultipartUpload; this look first narrows the window for
        # S3-compatible stores that ignore it (and costs one HEAD per conditional multipart write).
        with _translated("HeadObject", self._name, conditional=True):
            head = self._client.head_object(Bucket=self._bucket, Key=self._key)
        if head["ETag"] != etag:
            raise ObjectChangedError(f"{self._name!r} changed since it was read; nothing was written")

    def abort(self) -> None:
        if self._state == OPEN:
            self._state = ABORTED
        self._abort_upload()

    def _fail(self, error: BaseException) -> None:
        self._record_failure(error)
        self._abort_upload()

    def _abort_upload(self) -> None:
        # Parts still queued are cancelled and running ones waited for, so none lands after the abort.
        self._release()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            return
        # If this fails the upload is still invisible; a lifecycle rule reaps what we could not abort.
        with contextlib.suppress(ClientError, BotoCoreError):
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=upload_id)

    def _release(self) -> None:
        """Stop the pool (cancel queued uploads, wait for running ones) and drop every buffer."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        self._pending = []
        self._free = []
        self._buffer = memoryview(bytearray(0))
        self._filled = 0


class S3Reader:
    """Ranged GETs pinned to the ETag seen at open, so a replaced object cannot be read as a mix.

    Reads at least as large as the read-ahead window go straight into the
    caller's buffer; smaller ones are served from one window, which doubles
    (up to the store's `max_read_ahead`) while reads stay sequential. Safe to
    share between threads (the window is guarded by a lock; direct reads need none).
    """

    def __init__(self, store: S3Store, name: str, key: str, *, size: int, etag: str) -> None:
        self._client = store._client
        self._bucket = store._bucket
        self._name = name
        self._key = key
        self._size = size
        self._etag = etag
        self._window_size = min(store._read_ahead, size)
        self._max_window = min(store._max_read_ahead, size)
        self._next_sequential = -1  # where a sequential reader's next read starts
        self._window = bytearray(0)  # allocated on the first small read, then reused
        self._window_start = 0
        self._window_len = 0
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"S3Reader({self._name!r}, size={self._size})"

    @property
    def size(self) -> int:
        return self._size

    @property
    def version(self) -> str:
        return self._etag

    def readinto_at(self, offset: int, buf: memoryview, /) -> int:
        if self._closed:
            raise ValidationError(f"reader for {self._name!r} is closed")
        if not isinstance(offset, int) or offset < 0:
            raise ValidationError("offset must be a non-negative int")
        view = as_byte_view(buf)
        if view.readonly:
            raise ValidationError("buf must be writable")
        want = max(0, min(view.nbytes, self._size - offset))
        with self._lock:
            if offset == self._next_sequential and self._window_size < self._max_window:
                self._window_size = min(2 * self._window_size, self._max_window)
            self._next_sequential = offset + want
        done = 0
        while done < want:
            pos = offset + done
            rest = want - done
            with self._lock:
                hit = self._from_window(pos, view[done:want])
            if hit:
                done += hit
            elif rest >= self._window_size:
                self._get_range(pos, view[done:want])
                done = want
            else:
                with self._lock:
                    self._fill_window(pos)
        return want

    def _from_window(self, pos: int, target: memoryview) -> int:
        start = pos - self._window_start
        if not 0 <= start < self._window_len:
            return 0
        n = min(self._window_len - start, len(target))
        target[:n] = memoryview(self._window)[start : start + n]
        return n

    def _fill_window(self, pos: int) -> None:
        if len(self._window) < self._window_size:
            self._window = bytearray(self._window_size)
        length = min(self._window_size, self._size - pos)
        self._window_len = 0  # invalid until the GET has filled it
        self._get_range(pos, memoryview(self._window)[:length])
        self._window_start, self._window_len = pos, length

    def _get_range(self, pos: int, target: memoryview) -> None:
        end = pos + len(target) - 1
        with _translated("GetObject", self._name):
            try:
                response = self._client.get_object(
                    Bucket=self._bucket, Key=self._key, Range=f"bytes={pos}-{end}", IfMatch=self._etag
                )
            except ClientError as e:
                if _error_code(e) in _EXISTS_CODES:
                    raise ObjectChangedError(f"{self._name!r} was replaced while it was being read") from e
                raise
            body = response["Body"]
            try:
                self._check_range(response, pos, end)
                got = 0
                while got < len(target):
                    # urllib3 serves readinto(b) through a temporary bytes of len(b): bound that copy.
                    piece = target[got : got + _BODY_READ_SIZE]
                    # botocore-stubs mistype readinto's argument; botocore takes any writable buffer.
                    n = body.readinto(piece)  # type: ignore[arg-type]
                    if not n:
                        raise StorageError(f"short read from S3 for {self._name!r}")
                    got += n
            finally:
                body.close()

    def _check_range(self, response: Any, start: int, end: int) -> None:
        """Refuse a response that is not exactly the pinned version's bytes start..end."""
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status != 206:
            raise StorageError(
                f"S3 GetObject for {self._name!r} answered a ranged read with HTTP {status}, not 206 "
                "(the endpoint ignored the Range header)"
            )
        match = _CONTENT_RANGE_RE.match(str(response.get("ContentRange", "")))
        got = tuple(int(group) for group in match.groups()) if match else None
        if got != (start, end, self._size):
            raise StorageError(
                f"S3 GetObject for {self._name!r} returned Content-Range "
                f"{str(response.get('ContentRange'))[:60]!r}, not bytes {start}-{end}/{self._size}"
            )
        if response.get("ContentLength") != end - start + 1:
            raise StorageError(f"S3 GetObject for {self._name!r} returned a range of the wrong length")
        etag = response.get("ETag")
        if etag is not None and etag != self._etag:
            raise StorageError(f"{self._name!r} was replaced while it was being read")

    def close(self) -> None:
        self._closed = True
        with self._lock:
            self._window, self._window_len = bytearray(0), 0

    def __enter__(self) -> S3Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
