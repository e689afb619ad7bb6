"""Object-name rules: the one place a name is judged safe for every store.

A name is checked here once, before any I/O, and every store relies on that
check instead of repeating it. The rules are chosen so that a valid name maps
to a path strictly inside a local store's root on any POSIX filesystem and to
a well-formed S3 key, and so that it can never collide with a store's own
temp files (those are dot-prefixed).

This module must never touch the filesystem or the network, and must never
"repair" a name (strip, normalise, re-encode): a name is accepted exactly as
given or rejected.
"""

from __future__ import annotations

from envelope.errors import ValidationError

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_SEGMENT_BYTES",
    "is_valid_name",
    "validate_directory_prefix",
    "validate_name",
    "validate_prefix",
]

MAX_NAME_BYTES = 1024
"""S3's key limit; local stores keep the same limit so names stay portable."""

MAX_SEGMENT_BYTES = 255
"""NAME_MAX of common local filesystems; applied to S3 too so a container can move between stores."""


def _is_control(ch: str) -> bool:
    code = ord(ch)
    # C0, DEL and C1: invisible in listings and logs, and NUL truncates C paths.
    return code < 0x20 or 0x7F <= code <= 0x9F


def _show(name: str) -> str:
    # Names are not secret, but they may be hostile and huge: keep messages short.
    text = repr(name)
    return text if len(text) <= 80 else text[:77] + "..."


def validate_name(name: object) -> str:
    """Return `name` unchanged if it is a valid object name, else raise `ValidationError`.

    A valid name is a `str` of 1..1024 UTF-8 bytes made of `/`-separated
    segments, where:

    - there is no leading or trailing `/` and no empty segment (`a//b`);
    - no segment is `.` or `..`, and no segment starts with `.` at all
      (dot-prefixed names are reserved for the stores' temp files);
    - no segment is longer than 255 UTF-8 bytes;
    - there is no backslash, no NUL and no control character (C0, DEL, C1);
    - the text is encodable as UTF-8 (no lone surrogates).
    """
    if not isinstance(name, str):
        raise ValidationError(f"object name must be a str, not {type(name).__name__}")
    if not name:
        raise ValidationError("object name must not be empty")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError(f"object name {_show(name)} is not valid UTF-8 text") from None
    if size > MAX_NAME_BYTES:
        raise ValidationError(f"object name is {size} bytes; at most {MAX_NAME_BYTES} are allowed")
    for ch in name:
        if _is_control(ch):
            raise ValidationError(f"object name {_show(name)} contains a control character (U+{ord(ch):04X})")
        if ch == "\\":
            # A backslash is a separator on Windows and in some tools; refuse the ambiguity.
            raise ValidationError(f"object name {_show(name)} contains a backslash")
    if name.startswith("/"):
        raise ValidationError(f"object name {_show(name)} must be relative (no leading '/')")
    if name.endswith("/"):
        raise ValidationError(f"object name {_show(name)} must not end with '/'")
    for segment in name.split("/"):
        if not segment:
            raise ValidationError(f"object name {_show(name)} has an empty segment")
        if segment.startswith("."):
            # Covers '.' and '..' (traversal) as well as collisions with '.NAME.<random>.tmp'.
            raise ValidationError(f"object name {_show(name)} has a segment starting with '.'")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise ValidationError(f"object name {_show(name)} has a segment longer than {MAX_SEGMENT_BYTES} bytes")
    return name


def validate_prefix(prefix: object) -> str:
    """Return a listing prefix unchanged if valid, else raise `ValidationError`.

    A prefix is `""`, a valid name (it also matches longer names: `rep`
    matches `reports/q3`), or a valid name followed by one `/`.
    """
    if not isinstance(prefix, str):
        raise ValidationError(f"prefix must be a str, not {type(prefix).__name__}")
    if prefix:
        try:
            validate_name(prefix.removesuffix("/"))
        except ValidationError as e:
            raise ValidationError(f"invalid prefix: {e}") from None
    return prefix


def validate_directory_prefix(prefix: object) -> str:
    """A prefix for `list_children`: `""` or a valid name followed by `/`."""
    validate_prefix(prefix)
    assert isinstance(prefix, str)
    if prefix and not prefix.endswith("/"):
        raise ValidationError(f"list_children prefix {_show(prefix)} must be '' or end with '/'")
    return prefix


def is_valid_name(name: str) -> bool:
    """Whether `name` is a valid object name. Listings use it to skip entries written by
    other tools (empty or dot segments...), which are not objects of a store."""
    try:
        validate_name(name)
    except ValidationError:
        return False
    return True
