"""Building blocks under `DataPlane`: hazardous when used directly. Prefer `Container` and `decrypt_message`.

`MessageWriter` takes the message id from its caller. Reusing a message id
with the same data key repeats every derived key and every frame IV (the
suite derives the body key from the data key and the message id alone):
AES-GCM under a repeated key and IV loses confidentiality and integrity.
`Container.open_writer` never does that: each object gets 16 fresh random
bytes plus its name binding. Use the writer directly only with a message id
from a CSPRNG per message, and with a key you own.

The readers verify everything before releasing a byte, but take the key
from a resolver you write: they check nothing about *which* key or header
is acceptable (that is `Container.open_reader`'s name binding and EDK match).
"""

from __future__ import annotations

from ._byteio import BufferSource, FileSource, MessageSink, MessageSource, MessageStream
from ._params import check_frame_length, check_threads
from ._reader import MessageReader
from ._sequential import SequentialMessageReader
from ._writer import MessageWriter

__all__ = [
    "BufferSource",
    "FileSource",
    "MessageReader",
    "MessageSink",
    "MessageSource",
    "MessageStream",
    "MessageWriter",
    "SequentialMessageReader",
    "check_frame_length",
    "check_threads",
]
