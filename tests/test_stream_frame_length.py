"""A plane never writes what its own default reader refuses: the writer's frame lengths end at the reader's limit."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dataplane.format import MAX_FORMAT_FRAME_LENGTH, MAX_FRAME_LENGTH, Limits
from dataplane.hazmat import BufferSource, MessageReader, check_frame_length
from dataplane.message import decrypt_message
from envelope.errors import ValidationError
from tests.test_format import KEY, write_message

# Every multiple of 16 the header's u32 can carry (the SDKs accept up to 2^31-1), plus a little past it.
candidate_lengths = st.integers(min_value=1, max_value=(MAX_FORMAT_FRAME_LENGTH + 16) // 16).map(lambda n: 16 * n)


def test_the_writers_largest_frame_is_the_default_readers_limit() -> None:
    assert MAX_FRAME_LENGTH == 16 << 20
    assert Limits().max_frame_length == MAX_FRAME_LENGTH
    assert check_frame_length(MAX_FRAME_LENGTH) == MAX_FRAME_LENGTH


@given(frame_length=candidate_lengths, size=st.integers(min_value=0, max_value=40))
@example(frame_length=MAX_FRAME_LENGTH, size=0)
@example(frame_length=MAX_FRAME_LENGTH, size=33)
@example(frame_length=MAX_FRAME_LENGTH + 16, size=1)
@example(frame_length=32 << 20, size=1)
@example(frame_length=16, size=40)
def test_every_frame_length_the_writer_accepts_is_read_with_default_limits(frame_length: int, size: int) -> None:
    if frame_length > MAX_FRAME_LENGTH:
        for refuse in (check_frame_length, lambda n: write_message(b"x", n)):
            with pytest.raises(ValidationError, match=str(MAX_FRAME_LENGTH)):  # the message names the limit
                refuse(frame_length)
        return
    assert check_frame_length(frame_length) == frame_length
    plaintext = bytes(i % 251 for i in range(size))
    message = write_message(plaintext, frame_length)
    assert MessageReader(BufferSource(message), resolve_key=lambda _h: KEY).read() == plaintext
    assert decrypt_message(message, lambda _h: KEY).read() == plaintext


@pytest.mark.parametrize("frame_length", [MAX_FRAME_LENGTH + 16, 32 << 20, MAX_FORMAT_FRAME_LENGTH - 15])
def test_larger_frames_are_refused_with_a_validation_error_naming_the_limit(frame_length: int) -> None:
    with pytest.raises(ValidationError, match=r"16\.\.16777216"):
        check_frame_length(frame_length)
