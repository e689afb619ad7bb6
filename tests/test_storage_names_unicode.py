"""Object names cannot make a listing lie: no invisible, bidi or look-alike characters, NFC only."""

from __future__ import annotations

import sys
import unicodedata
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from envelope.errors import ValidationError
from envelope.storage import LocalStore, S3Store, validate_name
from envelope.storage.names import is_valid_name

ALL_CF = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"]

LOOK_ALIKES = {
    "\u202e": "RIGHT-TO-LEFT OVERRIDE",
    "\u202d": "LEFT-TO-RIGHT OVERRIDE",
    "\u2066": "LEFT-TO-RIGHT ISOLATE",
    "\u2069": "POP DIRECTIONAL ISOLATE",
    "\u200b": "ZERO WIDTH SPACE",
    "\u200d": "ZERO WIDTH JOINER",
    "\u2060": "WORD JOINER",
    "\ufeff": "ZERO WIDTH NO-BREAK SPACE",  # the BOM
    "\u00ad": "SOFT HYPHEN",
    "\U000e0041": "TAG LATIN CAPITAL LETTER A",
    "\uff0f": "FULLWIDTH SOLIDUS",
    "\u2025": "TWO DOT LEADER",
    "\u2024": "ONE DOT LEADER",
    "\u2026": "HORIZONTAL ELLIPSIS",
    "\u2215": "DIVISION SLASH",
    "\u2044": "FRACTION SLASH",
    "\u29f8": "BIG SOLIDUS",
    "\u2571": "BOX DRAWINGS LIGHT DIAGONAL UPPER RIGHT TO LOWER LEFT",
    "\u0338": "COMBINING LONG SOLIDUS OVERLAY",
    "\uff0e": "FULLWIDTH FULL STOP",
    "\ufe52": "SMALL FULL STOP",
    "\uff3c": "FULLWIDTH REVERSE SOLIDUS",
    "\ufe68": "SMALL REVERSE SOLIDUS",
    "\u2216": "SET MINUS",
    "\u29f5": "REVERSE SOLIDUS OPERATOR",
    "\u2100": "ACCOUNT OF",  # a/c in one character
    "\u2488": "DIGIT ONE FULL STOP",
    "\u0701": "SYRIAC SUPRALINEAR FULL STOP",
    "\u2028": "LINE SEPARATOR",
    "\u2029": "PARAGRAPH SEPARATOR",
    "\u00a0": "NO-BREAK SPACE",
    "\u3000": "IDEOGRAPHIC SPACE",
    "\u3164": "HANGUL FILLER",
    "\u2800": "BRAILLE PATTERN BLANK",
    "\ufe0f": "VARIATION SELECTOR-16",
    "\u034f": "COMBINING GRAPHEME JOINER",
}

STILL_FINE = [
    "unicode/é/中文/😀",
    "日本語/ファイル.txt",
    "Ελληνικά/αρχείο",
    "русский/файл",
    "עברית/קובץ",  # right-to-left script is fine; only the invisible controls are not
    "emoji/👍🏽",  # a skin-tone modifier is a visible symbol (So/Sk), not an invisible one
    "ﬁle",  # a ligature: its NFKC form is letters only
    "a.b/c-d_e~f g",
]


def assert_rejected_by_code_point(name: str, ch: str) -> str:
    with pytest.raises(ValidationError) as info:
        validate_name(name)
    message = str(info.value)
    assert f"U+{ord(ch):04X}" in message
    assert ch not in message  # named, never echoed raw
    assert message.isascii()
    return message


@pytest.mark.parametrize("ch", sorted(LOOK_ALIKES), ids=lambda ch: f"U+{ord(ch):04X}")
@pytest.mark.parametrize("template", ["{}", "a{}b", "dir/{}x", "x{}/y", "reports{}q3", "a/b{}"])
def test_look_alikes_and_invisibles_are_refused(ch: str, template: str) -> None:
    name = template.format(ch)
    assert LOOK_ALIKES[ch] in assert_rejected_by_code_point(name, ch)  # the character's Unicode name
    assert not is_valid_name(name)


def test_every_format_character_is_refused() -> None:
    assert len(ALL_CF) > 150  # sanity: the category is populated
    for ch in ALL_CF:
        assert_rejected_by_code_point(f"safe/na{ch}me", ch)


@given(
    prefix=st.text(st.characters(codec="utf-8", categories=["L", "N"]), max_size=20),
    ch=st.characters(categories=["Cf"]),
    suffix=st.text(st.characters(codec="utf-8", categories=["L", "N"]), max_size=20),
)
def test_a_format_character_anywhere_is_refused(prefix: str, ch: str, suffix: str) -> None:
    name = unicodedata.normalize("NFC", "n" + prefix) + ch + unicodedata.normalize("NFC", suffix + "n")
    assert_rejected_by_code_point(name, ch)


def test_a_decomposed_name_is_refused_and_the_composed_form_suggested() -> None:
    decomposed = "cafe\u0301/menu"
    with pytest.raises(ValidationError, match="NFC") as info:
        validate_name(decomposed)
    assert "caf\\xe9/menu" in str(info.value)  # the NFC spelling, ASCII-escaped
    assert "\u0301" not in str(info.value)
    assert validate_name("caf\u00e9/menu") == "caf\u00e9/menu"


@given(st.text(st.characters(codec="utf-8", categories=["L", "M", "N"]), min_size=1, max_size=30))
def test_nfc_is_required_exactly(text: str) -> None:
    name = "n" + text
    if is_valid_name(name):
        assert unicodedata.is_normalized("NFC", name)
    elif unicodedata.is_normalized("NFC", name):
        # refused for another reason than normalisation: a listed invisible or look-alike mark
        with pytest.raises(ValidationError, match="U\\+"):
            validate_name(name)


@pytest.mark.parametrize("name", STILL_FINE)
def test_ordinary_unicode_names_are_still_accepted(name: str) -> None:
    assert validate_name(name) is name


# -- listings cannot be made to lie: keys with such names (written by other tools) are skipped ----


def test_s3_listing_skips_keys_with_bidi_or_look_alike_names(s3_client: Any) -> None:
    bucket = f"envelope-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    for key in ["p/invoice\u202efdp.exe", "p/a\uff0fb", "p/x\u2025/y", "p/cafe\u0301", "p/real", "p/caf\u00e9"]:
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"x")
    store = S3Store(s3_client, bucket, "p")
    assert list(store.list()) == ["caf\u00e9", "real"]
    assert list(store.list_children()) == ["caf\u00e9", "real"]


def test_local_listing_skips_files_with_bidi_or_look_alike_names(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "root")
    store.put_bytes("real", b"x")
    for planted in ["invoice\u202efdp.exe", "a\u2215b", "zero\u200bwidth"]:
        (tmp_path / "root" / planted).write_bytes(b"x")
    assert list(store.list()) == ["real"]
    assert list(store.list_children()) == ["real"]


@pytest.mark.parametrize("name", ["x\u202e", "a\uff0fb", "n\u2025"])
def test_stores_refuse_before_any_request(s3_client: Any, tmp_path: Path, name: str) -> None:
    bucket = f"envelope-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    sent: list[str] = []
    s3_client.meta.events.register("before-send.s3", lambda request, **_: sent.append(request.url))
    local = LocalStore(tmp_path / "root")
    for store in (S3Store(s3_client, bucket), local):
        with pytest.raises(ValidationError):
            store.put_bytes(name, b"x")
        with pytest.raises(ValidationError):
            store.open_writer(name)
    assert sent == []
    assert list(tmp_path.rglob("*")) == []


@pytest.mark.parametrize("name", ["payroll.csv ", " payroll.csv", "dir /x", "dir/ x", "a/b "])
def test_a_segment_starting_or_ending_with_a_space_is_refused(name: str) -> None:
    # attacker review: 'payroll.csv' and 'payroll.csv ' listed as two identical lines
    with pytest.raises(ValidationError, match="space"):
        validate_name(name)
