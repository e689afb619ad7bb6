"""The peers, driven the way their documentation shows: the AWS Encryption SDK
for Python (streaming API, suite 0x0478) and Tink's streaming AEAD.

Both are fed from memory and drained into a counting sink in 1 MiB reads or
writes, like ours. The ESDK uses a KMS master key provider against moto
in-process: it calls KMS once per message (GenerateDataKey to encrypt,
Decrypt to decrypt), which moto answers in about a millisecond, so the
per-message KMS cost is inside its figure but is small at these sizes.
"""

from __future__ import annotations

import io
import time
from typing import Any

from bench.streams import CountingWriter, MiB

ESDK_FRAME_LENGTHS = (4096, 64 * 1024, MiB)
IO_CHUNK = MiB


class Esdk:
    """An EncryptionSDKClient (REQUIRE_ENCRYPT_REQUIRE_DECRYPT) with a KMS master key provider."""

    def __init__(self, key_arn: str, botocore_session: Any) -> None:
        import aws_encryption_sdk
        from aws_encryption_sdk import Algorithm, CommitmentPolicy

        self.client = aws_encryption_sdk.EncryptionSDKClient(
            commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
        )
        self.provider = aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(
            key_ids=[key_arn], botocore_session=botocore_session
        )
        self.algorithm = Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY

    def encrypt_to(self, data: bytes | memoryview, frame_length: int, sink: Any, **kwargs: Any) -> None:
        with self.client.stream(
            mode="e",
            source=io.BytesIO(data),
            key_provider=kwargs.pop("key_provider", self.provider),
            frame_length=frame_length,
            algorithm=self.algorithm,
            **kwargs,
        ) as encryptor:
            while chunk := encryptor.read(IO_CHUNK):
                sink.write(chunk)

    def encrypt(self, data: bytes | memoryview, frame_length: int) -> bytes:
        out = io.BytesIO()
        self.encrypt_to(data, frame_length, out)
        return out.getvalue()

    def decrypt_to(self, message: bytes | memoryview, sink: Any, **kwargs: Any) -> None:
        with self.client.stream(
            mode="d", source=io.BytesIO(message), key_provider=kwargs.pop("key_provider", self.provider), **kwargs
        ) as decryptor:
            while chunk := decryptor.read(IO_CHUNK):
                sink.write(chunk)

    def time_encrypt(self, data: bytes, frame_length: int) -> float:
        sink = CountingWriter()
        start = time.perf_counter()
        self.encrypt_to(data, frame_length, sink)
        return time.perf_counter() - start

    def time_decrypt(self, message: bytes) -> float:
        sink = CountingWriter()
        start = time.perf_counter()
        self.decrypt_to(message, sink)
        return time.perf_counter() - start


class Tink:
    """Tink streaming AEAD, template AES256_GCM_HKDF_1MB."""

    AAD = b"envelope-bench"

    def __init__(self) -> None:
        import tink
        from tink import streaming_aead

        streaming_aead.register()
        handle = tink.new_keyset_handle(streaming_aead.streaming_aead_key_templates.AES256_GCM_HKDF_1MB)
        self.primitive = handle.primitive(streaming_aead.StreamingAead)

    def _encrypt_to(self, data: bytes | memoryview, sink: Any) -> None:
        view = memoryview(data)
        with self.primitive.new_encrypting_stream(sink, self.AAD) as stream:
            for offset in range(0, len(view), IO_CHUNK):
                stream.write(view[offset : offset + IO_CHUNK])

    def encrypt(self, data: bytes | memoryview) -> bytes:
        out = _KeepOpen()
        self._encrypt_to(data, out)
        return out.getvalue()

    def time_encrypt(self, data: bytes) -> float:
        sink = CountingWriter()
        start = time.perf_counter()
        self._encrypt_to(data, sink)
        return time.perf_counter() - start

    def time_decrypt(self, message: bytes) -> float:
        start = time.perf_counter()
        with self.primitive.new_decrypting_stream(io.BytesIO(message), self.AAD) as stream:
            while stream.read(IO_CHUNK):
                pass
        return time.perf_counter() - start


class _KeepOpen(io.BytesIO):
    """Tink closes its destination when the encrypting stream closes; keep the bytes."""

    def close(self) -> None:
        self._kept = self.getvalue()
        super().close()

    def getvalue(self) -> bytes:
        if self.closed:
            return self._kept
        return super().getvalue()
