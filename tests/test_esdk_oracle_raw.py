"""The Python AWS Encryption SDK (4.x) as an oracle, with a raw AES wrapping key, both directions.

SDK -> us: messages the SDK writes (framed at several frame lengths, and
non-framed) open through `decrypt_message` with a resolver that unwraps the
raw-AES EDK. Us -> SDK: messages `MessageWriter` writes, carrying an EDK
wrapped the same way, decrypt through the SDK's `RawMasterKey`.

The SDK only writes frame lengths that are multiples of 128 (it checks them
against the AES block size in bits), so frame lengths 1 and 16 come from our
reference encoder in test_stream instead.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dataplane.binding import derive_binding_key, new_message_id
from dataplane.format import EncryptedDataKey, MessageHeader, serialize_encryption_context
from dataplane.message import decrypt_message
from dataplane.stream import MessageWriter
from envelope.errors import AuthenticationError
from tests.test_format import MemorySink

aws_encryption_sdk = pytest.importorskip("aws_encryption_sdk")
from aws_encryption_sdk import CommitmentPolicy  # noqa: E402
from aws_encryption_sdk.identifiers import Algorithm, EncryptionKeyType, WrappingAlgorithm  # noqa: E402
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey  # noqa: E402
from aws_encryption_sdk.key_providers.raw import RawMasterKey  # noqa: E402

NAMESPACE = "envelope-oracle"
KEY_NAME = b"raw-aes-256"
WRAPPING_KEY = bytes(range(100, 132))
SUITE = Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY
CONTEXTS = [{}, {"tenant": "acme", "purpose": "oracle", "é": "ü"}]
MIB = 1 << 20


@pytest.fixture(scope="module")
def client() -> Any:
    return aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)


@pytest.fixture(scope="module")
def master_key() -> Any:
    return RawMasterKey(
        provider_id=NAMESPACE,
        key_id=KEY_NAME,
        wrapping_key=WrappingKey(
            wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
            wrapping_key=WRAPPING_KEY,
            wrapping_key_type=EncryptionKeyType.SYMMETRIC,
        ),
    )


def wrap(data_key: bytes, context: Mapping[str, str]) -> EncryptedDataKey:
    """The raw AES keyring's EDK: info = name || u32 tag bits || u32 IV length || IV."""
    iv = os.urandom(12)
    wrapped = AESGCM(WRAPPING_KEY).encrypt(iv, data_key, serialize_encryption_context(context))
    return EncryptedDataKey(NAMESPACE, KEY_NAME + struct.pack(">II", 128, 12) + iv, wrapped)


def unwrap(header: MessageHeader) -> bytes:
    for edk in header.encrypted_data_keys:
        info = edk.provider_info
        if edk.provider_id != NAMESPACE or info[: len(KEY_NAME)] != KEY_NAME or len(info) != len(KEY_NAME) + 20:
            continue
        assert struct.unpack(">II", info[len(KEY_NAME) : len(KEY_NAME) + 8]) == (128, 12)
        return AESGCM(WRAPPING_KEY).decrypt(
            info[-12:], edk.ciphertext, serialize_encryption_context(header.encryption_context)
        )
    raise LookupError("no raw AES EDK for our key")


def cases() -> list[tuple[int, int]]:
    out = [(0, 0), (0, 1), (0, 700)]  # non-framed
    for frame_length in (128, 512, 4096):
        out += [
            (frame_length, n) for n in (0, 1, frame_length - 1, frame_length, frame_length + 1, 2 * frame_length + 3)
        ]
    out += [(MIB, MIB + 1)]
    return out


def plaintext_of(n: int) -> bytes:
    return os.urandom(n)


@pytest.mark.parametrize("context", CONTEXTS, ids=["empty-context", "context"])
@pytest.mark.parametrize(("frame_length", "size"), cases())
def test_sdk_messages_decrypt_through_decrypt_message(
    client: Any, master_key: Any, frame_length: int, size: int, context: dict[str, str]
) -> None:
    pt = plaintext_of(size)
    ciphertext, _ = client.encrypt(
        source=pt, key_provider=master_key, encryption_context=context, frame_length=frame_length, algorithm=SUITE
    )
    reader = decrypt_message(ciphertext, unwrap)
    assert reader.header.content_type == (1 if frame_length == 0 else 2)
    assert reader.header.frame_length == frame_length
    assert dict(reader.header.encryption_context) == context
    assert reader.read() == pt
    if size:
        reader.seek(size // 2)
        assert reader.read(7) == pt[size // 2 : size // 2 + 7]
    # And a flipped bit in the SDK's last byte is ours to catch.
    tampered = bytearray(ciphertext)
    tampered[-1] ^= 1
    with pytest.raises(AuthenticationError):
        decrypt_message(bytes(tampered), unwrap).read()


def write(pt: bytes, context: Mapping[str, str], frame_length: int, *, threads: int = 1, chunk: int = 0) -> bytes:
    data_key = os.urandom(32)
    message_id = new_message_id(derive_binding_key(data_key), "c0ffee" * 5 + "00", "objects/x")
    sink = MemorySink()
    with MessageWriter(
        sink,
        data_key=data_key,
        message_id=message_id,
        encryption_context=context,
        encrypted_data_keys=[wrap(data_key, context)],
        frame_length=frame_length,
        threads=threads,
    ) as w:
        step = chunk or max(len(pt), 1)
        for i in range(0, len(pt), step):
            w.write(pt[i : i + step])
    return bytes(sink.data)


@pytest.mark.parametrize("context", CONTEXTS, ids=["empty-context", "context"])
@pytest.mark.parametrize(
    ("frame_length", "size"),
    [(f, n) for f, n in cases() if f] + [(16, 0), (16, 33), (4096 + 16, 10000)],
)
def test_our_messages_decrypt_through_the_sdk(
    client: Any, master_key: Any, frame_length: int, size: int, context: dict[str, str]
) -> None:
    pt = plaintext_of(size)
    ours = write(pt, context, frame_length, chunk=1000)
    plaintext, header = client.decrypt(source=ours, key_provider=master_key)
    assert plaintext == pt
    assert header.encryption_context == context
    assert header.frame_length == frame_length
    if frame_length % 128 == 0:
        # The SDK lays out the same plaintext in exactly as many bytes: same frames, same final frame.
        theirs, _ = client.encrypt(
            source=pt, key_provider=master_key, encryption_context=context, frame_length=frame_length, algorithm=SUITE
        )
        assert len(theirs) == len(ours)


def test_threaded_writer_output_decrypts_through_the_sdk(client: Any, master_key: Any) -> None:
    pt = plaintext_of(300_000)
    ours = write(pt, CONTEXTS[1], 4096, threads=2, chunk=65536)
    plaintext, _ = client.decrypt(source=ours, key_provider=master_key)
    assert plaintext == pt


def test_sdk_streaming_decrypt_of_our_message(client: Any, master_key: Any) -> None:
    pt = plaintext_of(50_000)
    ours = write(pt, CONTEXTS[1], 4096)
    out = bytearray()
    with client.stream(mode="d", source=ours, key_provider=master_key) as decryptor:
        for chunk in decryptor:
            out += chunk
    assert out == pt
