"""Nonce-taking building blocks stay out of the safe namespace; the frame layout has one definition."""

from __future__ import annotations

import dataplane
import dataplane.hazmat as hazmat
from dataplane.format import FINAL_FRAME_IV, REGULAR_FRAME_IV, frame_iv, read_header
from dataplane.hazmat import BufferSource, MessageWriter
from tests.test_format import write_message


def test_the_writer_that_takes_a_message_id_is_only_in_hazmat() -> None:
    assert "MessageWriter" not in dataplane.__all__
    assert not hasattr(dataplane, "MessageWriter")
    assert hazmat.MessageWriter is MessageWriter
    assert {"DataPlane", "Container", "decrypt_message", "Limits", "MessageReader"} <= set(dataplane.__all__)


def test_the_writer_puts_frame_iv_where_the_layout_says() -> None:
    message = write_message(bytes(3 * 16 + 5), 16)
    body = read_header(BufferSource(message)).size
    for index in range(3):
        frame = message[body + index * 48 : body + (index + 1) * 48]
        assert frame[REGULAR_FRAME_IV] == frame_iv(index + 1)
    assert message[body + 3 * 48 :][FINAL_FRAME_IV] == frame_iv(4)
