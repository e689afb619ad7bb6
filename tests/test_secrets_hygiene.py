"""Secrets hygiene: a full workflow, and then a search for the data key everywhere it must not be.

Each test runs the control plane, the data plane and (for the local keystore) the command line,
with every logger at DEBUG, with failures forced (tampered objects, wrong names, a disabled key,
a wrong keystore, bad arguments), and with every object of the API repr'd and pickled. Then
the data key -- and the keys derived from it (the name-binding key, each message's derived key)
-- is searched for, raw and in every common text encoding, in: the log records, the reprs and
strs, the exceptions (messages and formatted tracebacks, causes included), the pickles that
succeed, the command line's output, and every file under the test's directory (the keystore
holds the *KMS master key*, legitimately; never a data key).
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import pickle
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane import ControlPlane
from dataplane import DataPlane
from dataplane.binding import derive_binding_key
from dataplane.format import derive_keys, read_header
from dataplane.hazmat import BufferSource, MessageReader, MessageWriter
from envelope.errors import (
    AuthenticationError,
    EnvelopeError,
    ObjectExistsError,
    ObjectNotFoundError,
    ValidationError,
)
from envelope.kms import AwsKms, LocalKms
from envelope.storage import LocalStore
from tests.support.faults import KmsFaults

FRAME = 64


def encodings(secret: bytes) -> dict[str, bytes]:
    """The ways a key could show up in text or in a file."""
    b64 = base64.b64encode(secret)
    urlsafe = base64.urlsafe_b64encode(secret)
    return {
        "raw": secret,
        "hex": secret.hex().encode(),
        "HEX": secret.hex().upper().encode(),
        "base64": b64,
        "base64 unpadded": b64.rstrip(b"="),
        "urlsafe base64": urlsafe.rstrip(b"="),
        "bytes repr": repr(secret)[2:-1].encode(),
        "base32": base64.b32encode(secret).rstrip(b"="),
    }


class Secrets:
    """Every key derived from one data key, and a search over blobs of text or bytes."""

    def __init__(self, data_key: bytes) -> None:
        self.keys: dict[str, bytes] = {"data key": data_key, "binding key": derive_binding_key(data_key)}

    def add_message(self, name: str, message: bytes) -> None:
        header = read_header(BufferSource(message))
        self.keys[f"derived key of {name}"] = derive_keys(self.keys["data key"], header.message_id).derived_key

    def leaks(self, where: str, blob: bytes | str) -> list[str]:
        data = blob.encode("utf-8", "surrogateescape") if isinstance(blob, str) else blob
        found = []
        for key_name, key in self.keys.items():
            for encoding, needle in encodings(key).items():
                if needle in data:
                    found.append(f"{key_name} ({encoding}) in {where}")
        return found


class Evidence:
    """Everything the workflow produced that a secret could hide in."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []
        self.errors: list[BaseException] = []
        self.pickles: list[tuple[str, bytes]] = []

    def show(self, name: str, obj: object) -> None:
        self.texts.append((f"repr({name})", repr(obj)))
        self.texts.append((f"str({name})", str(obj)))
        with contextlib.suppress(TypeError, AttributeError, pickle.PicklingError):
            self.pickles.append((name, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)))

    def expect(
        self, error: type[BaseException] | tuple[type[BaseException], ...], call: Any, *args: Any, **kwargs: Any
    ) -> None:
        with pytest.raises(error) as caught:
            call(*args, **kwargs)
        self.errors.append(caught.value)

    def all_texts(self) -> Iterator[tuple[str, str]]:
        yield from self.texts
        for error in self.errors:
            name = type(error).__name__
            yield f"str({name})", str(error)
            yield f"repr({name})", repr(error)
            yield f"traceback of {name}", "".join(traceback.format_exception(error))


def files_under(*roots: Path) -> Iterable[Path]:
    for root in roots:
        yield from (p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("botocore", "boto3", "urllib3", "s3transfer", "moto", "envelope", "dataplane", "controlplane"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def log_texts(caplog: pytest.LogCaptureFixture, *, exclude: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in caplog.records:
        if record.name.startswith(exclude):
            continue
        yield f"log record of {record.name}", formatter.format(record)
        yield f"log args of {record.name}", repr(record.args)


def run_workflow(kms: Any, location: Any, key_id: str, evidence: Evidence, s3: Any = None) -> Secrets:
    """Both planes end to end, with failures forced and everything repr'd."""
    control = ControlPlane(kms, s3)
    header = control.create_container(location, key_id, encryption_context={"tenant": "acme"}, labels={"l": "v"})
    plane = DataPlane(kms, s3, frame_length=FRAME, discovery=True)
    container = plane.open(location)
    data_key = container.data_key()
    secrets = Secrets(data_key.reveal())

    container.put("a/small", b"hello world")
    container.put("a/frames", bytes(range(256)) * 3)
    with container.open_writer("a/stream") as writer:
        writer.write(b"x" * 1000)
        evidence.show("writer", writer)
    evidence.expect(RuntimeError, _abort_midway, container)
    with container.open_reader("a/frames") as reader:
        reader.seek(100)
        reader.read(50)
        evidence.show("reader", reader)
        evidence.show("message header", reader.header)
    verified = container.verify("a/stream")
    info = container.inspect("a/small")
    for name in ("a/small", "a/frames", "a/stream"):
        with container._objects.open_reader(name) as source:  # raw message bytes, to derive its key
            raw = bytearray(source.size)
            source.readinto_at(0, memoryview(raw))
        secrets.add_message(name, bytes(raw))
    keys = derive_keys(secrets.keys["data key"], read_header(BufferSource(bytes(raw))).message_id)

    # Failures, each one kept for inspection.
    evidence.expect(ObjectNotFoundError, container.get, "a/missing")
    evidence.expect(ObjectExistsError, container.put, "a/small", b"again")
    evidence.expect(ValidationError, container.put, "../escape", b"")
    evidence.expect(ValidationError, container.put, "a/x", "not bytes")
    evidence.expect(ValidationError, DataPlane, kms, None, frame_length=17)
    tampered = bytearray(raw)
    tampered[-20] ^= 1
    container._objects.put_bytes("a/tampered", bytes(tampered))
    evidence.expect(AuthenticationError, container.get, "a/tampered")
    container._objects.put_bytes("a/moved", bytes(raw))
    evidence.expect(AuthenticationError, container.get, "a/moved")
    evidence.expect(
        AuthenticationError,
        lambda: MessageReader(BufferSource(bytes(raw)), resolve_key=lambda _h: bytes(32)).read(),
    )
    evidence.expect(EnvelopeError, kms.decrypt, header.data_keys[0].ciphertext, encryption_context={"tenant": "x"})

    for name, obj in {
        "data key": data_key,
        "container": container,
        "plane": plane,
        "cache": plane.cache,
        "cache stats": plane.cache_stats(),
        "container header": header,
        "verify result": verified,
        "object info": info,
        "kms": kms,
        "control plane": control,
    }.items():
        evidence.show(name, obj)
    # A bare (derived key, commitment key) pair is cipher-internal: its repr must hide it (it is a
    # plain tuple of bytes underneath, so it is not offered for pickling here).
    evidence.texts.append(("repr(derived keys)", repr(keys)))
    for unpicklable in (data_key,):
        with pytest.raises(TypeError):
            pickle.dumps(unpicklable)
    container.delete("a/tampered")
    container.delete("a/moved")
    return secrets


def _abort_midway(container: Any) -> None:
    with container.open_writer("a/aborted") as writer:
        writer.write(b"y" * 500)
        raise RuntimeError("caller failure in the middle of a write")


def assert_no_leaks(secrets: Secrets, texts: Iterable[tuple[str, str]], evidence: Evidence, *roots: Path) -> None:
    leaks: list[str] = []
    for where, text in texts:
        leaks += secrets.leaks(where, text)
    for where, text in evidence.all_texts():
        leaks += secrets.leaks(where, text)
    for name, blob in evidence.pickles:
        leaks += secrets.leaks(f"pickle of {name}", blob)
    for path in files_under(*roots):
        leaks += secrets.leaks(f"file {path}", path.read_bytes())
    assert leaks == []


def test_the_search_finds_a_planted_key(tmp_path: Path) -> None:
    """The detector itself works: each encoding of a key, planted in a file or a text, is found."""
    secrets = Secrets(bytes(range(100, 132)))
    for encoding, needle in encodings(secrets.keys["data key"]).items():
        (tmp_path / encoding).write_bytes(b"prefix " + needle + b" suffix")
        assert secrets.leaks("text", "... " + needle.decode("latin-1") + " ...") or encoding == "raw"
    assert len([p for p in files_under(tmp_path) if secrets.leaks(str(p), p.read_bytes())]) == len(encodings(b"k"))


def test_local_keystore_workflow_leaks_no_key(
    tmp_path: Path, debug_logs: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    kms = LocalKms(tmp_path / "keystore")
    key_arn = kms.create_key(alias="alias/hygiene")
    evidence = Evidence()
    secrets = run_workflow(kms, tmp_path / "container", key_arn, evidence)
    LocalStore(tmp_path / "container").list()  # the store itself, for its repr
    evidence.show("store", LocalStore(tmp_path / "container"))

    # A disabled key and a keystore that does not hold the key: typed KMS errors.
    other = LocalKms(tmp_path / "other-keystore")
    other.create_key()
    evidence.expect(EnvelopeError, DataPlane(other, discovery=True).open, tmp_path / "container")
    kms.disable_key(key_arn)
    evidence.expect(EnvelopeError, DataPlane(kms, discovery=True).open, tmp_path / "container")
    kms.enable_key(key_arn)

    cli_output = run_cli_workflow(tmp_path, capsys)
    assert_no_leaks(secrets, [*log_texts(debug_logs), ("cli output", cli_output)], evidence, tmp_path)


def run_cli_workflow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """The command line on the same keystore and container, errors shown with --debug tracebacks."""
    from envelope_cli.main import main

    kms = ["--kms", f"local:{tmp_path / 'keystore'}", "--debug"]
    container = str(tmp_path / "container")
    source = tmp_path / "plain.txt"
    source.write_bytes(b"cli plaintext " * 100)
    commands = [
        ["put", container, "cli/one", str(source)],
        ["get", container, "cli/one", "-o", str(tmp_path / "out.txt")],
        ["get", container, "cli/one"],
        ["verify", container],
        ["inspect", container, "cli/one"],
        ["inspect", container],
        ["describe", container],
        ["ls", container, "-l"],
        ["--json", "describe", container],
        ["key", "list"],
        ["get", container, "cli/missing", "-o", str(tmp_path / "missing.txt")],
        ["put", container, "cli/one", str(source)],
        ["create", str(tmp_path / "c2"), "--key", "alias/hygiene", "--context", "envelope:x=y"],
    ]
    outputs = []
    for command in commands:
        main([*kms, *command])
        captured = capsys.readouterr()
        outputs.append(captured.out + captured.err)
    # A tampered object through the command line: refused, and with --debug a traceback is printed.
    objects = LocalStore(Path(container) / "objects")
    message = bytearray(objects.get_bytes("cli/one"))
    message[-30] ^= 0x04
    objects.put_bytes("cli/one", bytes(message), overwrite=True)
    assert main([*kms, "get", container, "cli/one", "-o", str(tmp_path / "tampered.txt")]) == 3
    assert main([*kms, "verify", container, "cli/one"]) == 3
    captured = capsys.readouterr()
    outputs.append(captured.out + captured.err)
    assert "Traceback" in outputs[-1]
    return "\n".join(outputs)


def _aws_workflow(
    tmp_path: Path, kms_client: Any, s3_client: Any, bucket: str, evidence: Evidence
) -> tuple[Secrets, AwsKms]:
    arn = kms_client.create_key()["KeyMetadata"]["Arn"]
    kms = AwsKms(kms_client)
    secrets = run_workflow(kms, f"s3://{bucket}/tenants/acme", arn, evidence, s3=s3_client)
    # moto does not enforce key states: inject the error KMS gives for a disabled key.
    KmsFaults(kms_client, lambda op: ("DisabledException", None) if op == "Decrypt" else None)
    evidence.expect(EnvelopeError, DataPlane(kms, s3_client, discovery=True).open, f"s3://{bucket}/tenants/acme")
    return secrets, kms


def test_aws_workflow_leaks_no_key_even_with_botocore_at_debug(
    tmp_path: Path, kms_client: Any, s3_client: Any, bucket: str, debug_logs: pytest.LogCaptureFixture
) -> None:
    # botocore logs every response body at DEBUG; AwsKms redacts Decrypt's Plaintext from those records.
    evidence = Evidence()
    secrets, _ = _aws_workflow(tmp_path, kms_client, s3_client, bucket, evidence)
    assert any(r.name == "botocore.parsers" for r in debug_logs.records)  # response bodies really were logged
    assert_no_leaks(secrets, log_texts(debug_logs), evidence, tmp_path)


def test_readers_writers_and_keys_refuse_pickling(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "ks")
    kms.create_key(alias="alias/p")
    ControlPlane(kms).create_container(tmp_path / "c", "alias/p")
    container = DataPlane(kms, discovery=True).open(tmp_path / "c")
    container.put("x", b"data")
    with container.open_reader("x") as reader, pytest.raises(TypeError):
        pickle.dumps(reader)
    with container.open_writer("y") as writer, pytest.raises(TypeError):
        pickle.dumps(writer)
    for key in (container.data_key(),):
        with pytest.raises(TypeError):
            pickle.dumps(key)
        with pytest.raises(TypeError):
            __import__("copy").copy(key)
    stream = io.BytesIO()
    with pytest.raises(TypeError):
        pickle.Pickler(stream).dump({"nested": container.data_key()})


def _captured_locals(error: BaseException) -> str:
    """`error` as an error tracker records it: every frame's locals, causes and contexts included."""
    return "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format())


_STREAM_KEY = bytes(range(0x61, 0x81))  # a module global: no frame of the test itself holds it


def test_stream_tracebacks_with_captured_locals_hold_no_key() -> None:
    """A flipped header-tag bit, a wrong key, a bad frame, a failing sink: no key in any frame's locals.

    (tests/test_traceback_locals.py walks every failure path; this is the same search as the workflows above.)
    """
    sink = _MemorySink()
    writer = MessageWriter(
        sink, data_key=_STREAM_KEY, message_id=bytes(32), encryption_context={}, encrypted_data_keys=[("p", b"i", b"c")]
    )
    writer.write(b"secret plaintext " * 10)
    writer.close()
    message = bytes(sink.data)
    secrets = Secrets(_STREAM_KEY)
    secrets.add_message("message", message)
    header_size = read_header(BufferSource(message)).size
    errors: list[BaseException] = []
    for offset in (header_size - 1, header_size + 30, len(message) - 1):  # header tag, frame, final frame
        damaged = bytearray(message)
        damaged[offset] ^= 1
        with pytest.raises(AuthenticationError) as caught:
            MessageReader(BufferSource(bytes(damaged)), resolve_key=lambda _h: _STREAM_KEY).read()
        errors.append(caught.value)
    with pytest.raises(OSError) as failed_sink:
        MessageWriter(
            _MemorySink(fail=True),
            data_key=_STREAM_KEY,
            message_id=bytes(32),
            encryption_context={},
            encrypted_data_keys=[("p", b"i", b"c")],
        )
    errors.append(failed_sink.value)
    leaks = [leak for error in errors for leak in secrets.leaks(type(error).__name__, _captured_locals(error))]
    assert leaks == []


def test_container_tracebacks_with_captured_locals_hold_no_key(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "ks")
    kms.create_key(alias="alias/locals")
    ControlPlane(kms).create_container(tmp_path / "c", "alias/locals")
    container = DataPlane(kms, frame_length=FRAME).open(tmp_path / "c")
    container.put("x", b"y" * 300)
    secrets = Secrets(container.data_key().reveal())
    message = bytearray(container._objects.get_bytes("x"))
    secrets.add_message("x", bytes(message))
    message[read_header(BufferSource(bytes(message))).size - 1] ^= 1  # the header tag
    container._objects.put_bytes("x", bytes(message), overwrite=True)
    with pytest.raises(AuthenticationError) as caught:
        container.get("x")
    assert secrets.leaks("container.get", _captured_locals(caught.value)) == []


class _MemorySink:
    def __init__(self, *, fail: bool = False) -> None:
        self.data = bytearray()
        self.fail = fail

    def write(self, data: memoryview, /) -> int:
        if self.fail:
            raise OSError("disk full")
        self.data += data
        return len(data)

    def commit(self) -> None:
        pass

    def abort(self) -> None:
        pass
