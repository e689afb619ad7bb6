"""One-shot messages: a whole small message opened from bytes, or sealed into bytes, in one call.

`Container.get` and `Container.put` use these for objects of at most
`ONESHOT_BYTES` (stored size for a get, plaintext size for a put): the store
reads the object in one read, or writes it in one write, and no file object
is built around the message. Larger objects keep the streaming reader and
writer, whose memory is bounded whatever the size.

There is no second copy of any check here. The header goes through the same
parsers (`format.parse_header`: the fast one, then the careful one), the body
layout through `format.body_layout`, key commitment and the header tag through
`format.authenticate_header`, and every frame through the streaming reader's
own `OpenSlot` (stored sequence numbers, frame tags, the final frame's marker,
sequence number and declared length: `OpenSlot.open_regular` and
`OpenSlot.open_last`), in the streaming reader's order, so a message gets the
same plaintext or the same typed error either way. Sealing goes through the
writer's own `encode_header` and `SealSlot`.

What this module must never do: return a byte of plaintext before every frame
and the end of the message authenticated (the output is built in a buffer
nobody else sees, and wiped if any frame fails), or hold raw key bytes in its
frames (keys travel as `DataKey` holders and `MessageKey`s).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from io import BytesIO

from envelope.datakey import DataKey
from envelope.errors import AuthenticationError

from ._frames import OpenSlot, SealSlot, wipe
from .format import (
    FIRST_SEQUENCE_NUMBER,
    MAX_FRAME_COUNT,
    TAG_LENGTH,
    EncryptedDataKey,
    Limits,
    MessageHeader,
    authenticate_header,
    body_layout,
    encode_header,
    parse_header,
)

__all__ = ["ONESHOT_BYTES", "open_message", "seal_message"]

ONESHOT_BYTES = 1 << 20
"""Objects up to this size are read or written whole: 1 MiB, the default frame length (such an object
is one final frame). `get` returns the whole plaintext anyway, so holding the message too at most
doubles what the caller asked for; a larger object streams with bounded buffers."""

# A one-shot message can never run out of sequence numbers (the writer checks it for longer ones).
assert ONESHOT_BYTES + 1 < MAX_FRAME_COUNT


def open_message(
    message: bytes,
    *,
    resolve_key: Callable[[MessageHeader], bytes | DataKey],
    check_message_id: Callable[[bytes], bool] | None,
    limits: Limits,
) -> bytes:
    """The plaintext of a whole message, once every part of it authenticated.

    The steps and their order are `MessageReader`'s: parse the header, check
    the object size against the body layout, ``resolve_key(header)``, key
    commitment and header tag, ``check_message_id`` (name binding), then every
    frame in order, the final frame last. Any failure raises the error the
    streaming reader raises for the same bytes.
    """
    header = parse_header(message, limits)
    layout = body_layout(header, len(message), limits)
    key = authenticate_header(header, resolve_key(header))
    if check_message_id is not None and not check_message_id(header.message_id):
        raise AuthenticationError
    slot = OpenSlot(key, header.message_id, layout.frame_length, layout.framed)
    regular = layout.regular_frames * layout.frame_length
    final_offset = layout.frame_offset(layout.final_index)
    # Decrypt straight into the bytes returned (BytesIO lends its initial bytes out writable and
    # getvalue() hands the same object back on CPython), as the streaming reader's read() does.
    stream = BytesIO(bytes(layout.plaintext_size))
    with memoryview(message) as data, stream.getbuffer() as out:
        try:
            if layout.regular_frames:
                body = data[layout.body_offset : final_offset]
                slot.open_regular(FIRST_SEQUENCE_NUMBER, layout.regular_frames, body, out[:regular])
            slot.open_last(layout, data[final_offset:], out[regular:])
        except BaseException:
            wipe(out)  # earlier frames verified, but the message did not: release none of it
            raise
    return stream.getvalue()


def seal_message(
    plaintext: memoryview,
    *,
    data_key: DataKey,
    message_id: bytes,
    encryption_context: Mapping[str, str],
    encrypted_data_keys: Sequence[EncryptedDataKey],
    frame_length: int,
) -> bytes:
    """The whole message for `plaintext` (at most `ONESHOT_BYTES`), as `MessageWriter` would write it.

    Regular frames of `frame_length` bytes, then the final frame with the rest
    (empty when the plaintext is a multiple of the frame length), sealed by the
    writer's `SealSlot` under the header `encode_header` builds.
    """
    header, key = encode_header(
        data_key=data_key,
        message_id=message_id,
        encryption_context=encryption_context,
        encrypted_data_keys=encrypted_data_keys,
        frame_length=frame_length,
    )
    regular, final = divmod(len(plaintext), frame_length)
    slot = SealSlot(key, header.message_id, frame_length, regular + 1)
    start = slot.plaintext_offset(regular)
    slot.reserve(start + final + TAG_LENGTH)  # all of it now: a later growth would wipe sealed frames
    frames = slot.seal(FIRST_SEQUENCE_NUMBER, regular, plaintext[: regular * frame_length])
    try:
        slot.view[start : start + final] = plaintext[regular * frame_length :]
        head, body = slot.seal_final(regular, FIRST_SEQUENCE_NUMBER + regular, final)
    except BaseException:
        wipe(slot.view)  # the final frame's plaintext, copied in to be sealed in place
        raise
    return b"".join((header.to_bytes(), frames, head, body))
