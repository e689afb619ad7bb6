"""DataPlane containers: round trips on both stores, one Decrypt, binding to name and container, threads."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from controlplane import ControlPlane
from dataplane import DataPlane
from envelope.errors import (
    AuthenticationError,
    ContainerNotFoundError,
    ObjectExistsError,
    ObjectNotFoundError,
    ValidationError,
)
from envelope.kms import AwsKms, LocalKms
from tests.support.faults import KmsFaults


class Env:
    def __init__(self, kms: Any, key: str, location: Any, other: Any, s3: Any = None, faults: KmsFaults | None = None):
        self.kms, self.key, self.location, self.other, self.s3, self.faults = kms, key, location, other, s3, faults

    def plane(self, **kw: Any) -> DataPlane:
        if self.key.startswith("arn:") and "discovery" not in kw:
            kw.setdefault("key_ids", [self.key])  # strict, as AwsKms users must be
        return DataPlane(self.kms, self.s3, **kw)


@pytest.fixture(params=["local", "s3"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Env:
    if request.param == "local":
        kms = LocalKms(tmp_path / "ks")
        kms.create_key(alias="alias/dp")
        e = Env(kms, "alias/dp", str(tmp_path / "c1"), str(tmp_path / "c2"))
    else:
        kms_client = request.getfixturevalue("kms_client")
        s3 = request.getfixturevalue("s3_client")
        bucket = request.getfixturevalue("bucket")
        arn = kms_client.create_key()["KeyMetadata"]["Arn"]
        faults = KmsFaults(kms_client)
        e = Env(AwsKms(kms_client), arn, f"s3://{bucket}/tenants/c1", f"s3://{bucket}/tenants/c2", s3, faults)
    cp = ControlPlane(e.kms, e.s3)
    cp.create_container(e.location, key_id=e.key, encryption_context={"tenant": "acme"})
    cp.create_container(e.other, key_id=e.key, encryption_context={"tenant": "acme"})
    return e


SIZES = [0, 1, 4095, 4096, 4097, 3 * 4096, 50_000]


def test_put_get_round_trip_every_size(env: Env) -> None:
    with env.plane(frame_length=4096).open(env.location) as c:
        for n in SIZES:
            data = os.urandom(n)
            c.put(f"obj/{n}", data)
            assert c.get(f"obj/{n}") == data
        assert list(c.list("obj/")) == sorted(f"obj/{n}" for n in SIZES)


def test_one_decrypt_for_many_objects(env: Env) -> None:
    plane = env.plane(frame_length=1024)
    with plane.open(env.location) as c:
        for i in range(50):
            c.put(f"o{i}", b"x" * i)
        for i in range(50):
            assert c.get(f"o{i}") == b"x" * i
    with plane.open(env.location) as c:
        c.get("o3")
    assert plane.cache_stats().kms_calls == 1
    if env.faults:
        assert env.faults.count("Decrypt") == 1


def test_streaming_writer_and_seekable_reader(env: Env) -> None:
    data = os.urandom(300_000)
    with env.plane(frame_length=4096).open(env.location) as c:
        with c.open_writer("big.bin", frame_length=1024) as w:
            shutil.copyfileobj(io.BytesIO(data), w, length=7777)
        with c.open_reader("big.bin") as r:
            assert r.readable() and r.seekable() and not r.writable()
            r.seek(123_456)
            assert r.read(4096) == data[123_456 : 123_456 + 4096]
            assert r.tell() == 123_456 + 4096
            r.seek(-10, io.SEEK_END)
            assert r.read() == data[-10:]
            r.seek(0)
            assert r.read() == data
        result = c.verify("big.bin")
        assert result.size == len(data)
        assert result.bound


def test_tarfile_through_the_container(env: Env, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"hello")
    (src / "b.bin").write_bytes(os.urandom(10_000))
    with env.plane(frame_length=512).open(env.location) as c:
        with c.open_writer("backup.tar") as w, tarfile.open(fileobj=w, mode="w|") as tar:
            tar.add(src, arcname="src")
        with c.open_reader("backup.tar") as r, tarfile.open(fileobj=r, mode="r:") as tar:
            names = sorted(tar.getnames())
            member = tar.extractfile("src/b.bin")
            assert member is not None
            assert member.read() == (src / "b.bin").read_bytes()
    assert names == ["src", "src/a.txt", "src/b.bin"]


def test_create_only_and_overwrite(env: Env) -> None:
    with env.plane().open(env.location) as c:
        c.put("x", b"one")
        with pytest.raises(ObjectExistsError):
            c.put("x", b"two")
        assert c.get("x") == b"one"
        c.put("x", b"three", overwrite=True)
        assert c.get("x") == b"three"
        c.delete("x")
        assert not c.exists("x")
        with pytest.raises(ObjectNotFoundError):
            c.get("x")


def test_exception_inside_writer_leaves_nothing(env: Env) -> None:
    with env.plane(frame_length=1024).open(env.location) as c:
        with pytest.raises(RuntimeError), c.open_writer("partial") as w:
            w.write(os.urandom(10_000))
            raise RuntimeError("boom")
        assert not c.exists("partial")
        assert list(c.list()) == []


def _copy_object(env: Env, c: Any, src: str, dst_container: Any, dst: str) -> None:
    raw = c._objects.get_bytes(src)
    dst_container._objects.put_bytes(dst, raw)


def test_object_moved_to_another_name_is_rejected(env: Env) -> None:
    with env.plane().open(env.location) as c:
        c.put("reports/q3.csv", b"secret numbers")
        _copy_object(env, c, "reports/q3.csv", c, "reports/q4.csv")
        with pytest.raises(AuthenticationError):
            c.get("reports/q4.csv")
        with pytest.raises(AuthenticationError):
            c.verify("reports/q4.csv")


def test_object_copied_from_another_container_is_rejected(env: Env) -> None:
    plane = env.plane()
    with plane.open(env.location) as c1, plane.open(env.other) as c2:
        c1.put("a", b"from container one")
        _copy_object(env, c1, "a", c2, "a")
        with pytest.raises(AuthenticationError):
            c2.get("a")


def test_one_handle_sixteen_threads(env: Env) -> None:
    plane = env.plane(frame_length=256)
    with plane.open(env.location) as c:

        def work(i: int) -> bool:
            data = os.urandom(i * 37)
            c.put(f"t/{i}", data)
            return c.get(f"t/{i}") == data

        with ThreadPoolExecutor(16) as pool:
            assert all(pool.map(work, range(64)))
        assert len(list(c.list("t/"))) == 64
    assert plane.cache_stats().kms_calls == 1


def test_bad_input_is_a_validation_error_before_any_io(env: Env) -> None:
    with env.plane().open(env.location) as c:
        for bad in ("", "../x", "/abs", "a//b", "a\x00b", "a\\b"):
            with pytest.raises(ValidationError):
                c.put(bad, b"x")
            with pytest.raises(ValidationError):
                c.open_reader(bad)
        with pytest.raises(ValidationError):
            c.put("ok", "text is not bytes")  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            c.open_writer("ok", frame_length=1000)
        assert list(c.list()) == []
    for kwargs in ({"frame_length": 15}, {"frame_length": 0}, {"threads": 0}, {"allow_unbound": "yes"}):
        with pytest.raises(ValidationError):
            env.plane(**kwargs)


def test_missing_container(env: Env, tmp_path: Path) -> None:
    missing = str(tmp_path / "nothing") if not env.s3 else env.location.rsplit("/", 1)[0] + "/nope"
    with pytest.raises(ContainerNotFoundError):
        env.plane().open(missing)


def test_inspect_shows_nothing_secret(env: Env) -> None:
    plane = env.plane()
    with plane.open(env.location) as c:
        c.put("doc", b"plaintext here")
        info = c.inspect("doc")
        key = c.data_key().reveal()
    assert info.bound_to_container
    assert info.encryption_context["tenant"] == "acme"
    text = repr(info)
    assert key.hex() not in text
    assert "plaintext here" not in text


def test_open_without_fetching_the_key_makes_no_kms_call_until_needed(env: Env) -> None:
    with env.plane().open(env.location) as c:
        c.put("doc", b"hello")
    plane = env.plane()
    with plane.open(env.location, fetch_key=False) as c:
        assert list(c.list()) == ["doc"]
        assert c.inspect("doc").bound_to_container
        assert plane.cache_stats().kms_calls == 0
        assert c.get("doc") == b"hello"
        assert plane.cache_stats().kms_calls == 1
