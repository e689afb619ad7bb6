"""The one-match fast path of `validate_name` accepts exactly the printable-ASCII names the rules accept.

`validate_name` first tries one compiled match for the common case and only
runs the rules one by one when it fails; the two must never disagree: a name
the match accepts is one the rules accept, and every ASCII name the rules
accept is matched (else the fast path is just slower, which the second
property also catches).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from envelope.errors import ValidationError
from envelope.storage import names
from envelope.storage.names import MAX_NAME_BYTES, MAX_SEGMENT_BYTES, validate_name

# Every ASCII character, the separators and the edge characters weighted up.
_ascii = st.one_of(st.sampled_from("/. \\\x00\x1f\x7f-~!a"), st.characters(max_codepoint=0x7F))
_segment_edge = st.sampled_from(["x" * MAX_SEGMENT_BYTES, "x" * (MAX_SEGMENT_BYTES + 1), ".", "..", " ", "a "])


def _rules_accept(name: str) -> bool:
    try:
        names._validate_by_rules(name)
    except ValidationError:
        return False
    return True


@given(
    st.one_of(
        st.text(_ascii, max_size=40),
        st.lists(st.one_of(st.text(_ascii, max_size=8), _segment_edge), max_size=6).map("/".join),
    )
)
@example("a" * MAX_NAME_BYTES)
@example("a" * (MAX_NAME_BYTES + 1))
@example("/".join(["x" * MAX_SEGMENT_BYTES] * 5))
@example("a/b c/d.e")
# One name per edge of each character class in the match (first, middle, last character of a segment).
@example(".a")
@example("a/..")
@example("a/.b")
@example(" a")
@example("a ")
@example("a/ /b")
@example("a\\b")
@example("a\x7fb")
@example("a\x1fb")
@example("a\x00")
@example("/a")
@example("a/")
@example("a//b")
@example("")
@example("x" * (MAX_SEGMENT_BYTES + 1))
@example("!-0[]~/a.b-c")
def test_the_fast_match_and_the_rules_agree_on_every_ascii_name(name: str) -> None:
    fast = names._PLAIN_ASCII_NAME.fullmatch(name) is not None and len(name) <= MAX_NAME_BYTES
    assert fast == _rules_accept(name), name
    if fast:
        assert validate_name(name) is name
    else:
        with pytest.raises(ValidationError):
            validate_name(name)


@pytest.mark.parametrize("name", ["a\u00e9", "caf\u00e9/x", "\uff0e\uff0e/x", "a\u200bb"])
def test_non_ascii_names_are_judged_by_the_rules(name: str) -> None:
    assert names._PLAIN_ASCII_NAME.fullmatch(name) is None
    try:
        expected = names._validate_by_rules(name)
    except ValidationError as e:
        with pytest.raises(ValidationError, match=re.escape(str(e))):
            validate_name(name)
    else:
        assert validate_name(name) == expected


def test_a_str_subclass_is_judged_by_the_rules() -> None:
    class Name(str):
        pass

    assert validate_name(Name("a/b")) == "a/b"
    with pytest.raises(ValidationError):
        validate_name(Name("../b"))
