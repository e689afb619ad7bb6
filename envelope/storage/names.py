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

import functools
import re
import unicodedata
from typing import Final

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


# Characters that pass for a separator or a dot in a listing without being one, and whose
# compatibility (NFKC) form does not give them away (those are found by `_deceptive` itself).
_LOOK_ALIKES: Final = frozenset(
    {
        # slashes
        0x2044,  # FRACTION SLASH
        0x2215,  # DIVISION SLASH
        0x2571,  # BOX DRAWINGS LIGHT DIAGONAL UPPER RIGHT TO LOWER LEFT
        0x27CB,  # MATHEMATICAL RISING DIAGONAL
        0x29F8,  # BIG SOLIDUS
        0x2F03,  # KANGXI RADICAL SLASH
        0x1735,  # PHILIPPINE SINGLE PUNCTUATION
        0x0337,  # COMBINING SHORT SOLIDUS OVERLAY
        0x0338,  # COMBINING LONG SOLIDUS OVERLAY
        0x20EB,  # COMBINING LONG DOUBLE SOLIDUS OVERLAY
        # backslashes
        0x2216,  # SET MINUS
        0x2572,  # BOX DRAWINGS LIGHT DIAGONAL UPPER LEFT TO LOWER RIGHT
        0x27CD,  # MATHEMATICAL FALLING DIAGONAL
        0x29F5,  # REVERSE SOLIDUS OPERATOR
        0x29F9,  # BIG REVERSE SOLIDUS
        0x20E5,  # COMBINING REVERSE SOLIDUS OVERLAY
        # dots
        0x0701,  # SYRIAC SUPRALINEAR FULL STOP
        0x0702,  # SYRIAC SUBLINEAR FULL STOP
        0xA4F8,  # LISU LETTER TONE MYA TI
        0x10A50,  # KHAROSHTHI PUNCTUATION DOT
    }
)

# Invisible characters that are not in category Cf: fillers, a blank pattern, joiners and
# variation selectors (two names differing only by one of these look identical).
_INVISIBLE: Final = frozenset(
    {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x2800, 0x3164, 0xFFA0}
    | set(range(0xFE00, 0xFE10))
    | set(range(0xE0100, 0xE01F0))
)


@functools.lru_cache(maxsize=4096)
def _deceptive(ch: str) -> str | None:
    """Why a non-ASCII character may not be in a name (None if it may)."""
    code = ord(ch)
    category = unicodedata.category(ch)
    if category == "Cf":
        return "an invisible formatting character (bidi control, zero-width, BOM...)"
    if category in ("Zl", "Zp"):
        return "a line or paragraph separator"
    if category == "Zs":
        return "a space other than U+0020, which looks like one"
    if code in _INVISIBLE:
        return "an invisible character"
    if code in _LOOK_ALIKES or any(c in unicodedata.normalize("NFKC", ch) for c in "/\\."):
        return "a look-alike of '/', '\\' or '.'"
    return None


def _code_point(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" ({name})" if name else "")


def _ascii(name: str) -> str:
    # Every non-ASCII character escaped: the name may be built to mislead when displayed.
    text = ascii(name)
    return text if len(text) <= 80 else text[:77] + "..."


def _show(name: str) -> str:
    # Names are not secret, but they may be hostile and huge: keep messages short.
    text = repr(name)
    return text if len(text) <= 80 else text[:77] + "..."


# The common case in one C-level match: printable ASCII, every rule below at once (no '\\', no control
# character; segments of 1..255 characters that start with neither '.' nor ' ' and do not end with ' ').
# Anything it does not match goes through the rules one by one, which accept or explain.
_SEGMENT: Final = r"[!-\-0-\[\]-~](?:[ -.0-\[\]-~]{0,253}[!-.0-\[\]-~])?"
_PLAIN_ASCII_NAME: Final = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")


def validate_name(name: object) -> str:
    """Return `name` unchanged if it is a valid object name, else raise `ValidationError`.

    A valid name is a `str` of 1..1024 UTF-8 bytes made of `/`-separated
    segments, where:

    - there is no leading or trailing `/` and no empty segment (`a//b`);
    - no segment is `.` or `..`, and no segment starts with `.` at all
      (dot-prefixed names are reserved for the stores' temp files);
    - no segment is longer than 255 UTF-8 bytes;
    - there is no backslash, no NUL and no control character (C0, DEL, C1);
    - the text is encodable as UTF-8 (no lone surrogates);
    - nothing that makes a listing lie: no invisible formatting character
      (category Cf: bidi controls, zero-width characters, BOM...), no line or
      paragraph separator, no space other than U+0020, no other invisible
      character (fillers, variation selectors...), and no look-alike of `/`,
      `\\` or `.` (fullwidth solidus, division slash, two-dot leader...: any
      character whose NFKC form contains one of them, and a listed few more);
    - the text is in Unicode NFC (two names never differ only by composition).

    Errors name the offending code point as U+XXXX and never echo it raw.
    """
    if type(name) is str and len(name) <= MAX_NAME_BYTES and _PLAIN_ASCII_NAME.fullmatch(name):
        return name
    return _validate_by_rules(name)


def _validate_by_rules(name: object) -> str:
    """`validate_name` rule by rule: the judge of every name the one-match fast path does not accept."""
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
        if ch >= "\x80" and (why := _deceptive(ch)) is not None:
            raise ValidationError(f"object name {_ascii(name)} contains {_code_point(ch)}, {why}")
    if not name.isascii() and not unicodedata.is_normalized("NFC", name):
        raise ValidationError(
            f"object name {_ascii(name)} is not in Unicode NFC form; use {_ascii(unicodedata.normalize('NFC', name))}"
        )
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
        if segment != segment.strip(" "):
            # 'payroll.csv' and 'payroll.csv ' would list as the same line.
            raise ValidationError(f"object name {_show(name)} has a segment starting or ending with a space")
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
