"""dataplane.bulk: ContainerSpec, verify_all and copy_prefix on threads and on a process pool.

Work items are (spec, names) batches: the spec pickles as configuration
only; each process opens the container itself; one bad object is reported
by name and never stops the sweep; a copy that fails leaves nothing at its
destination.
"""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from dataplane.bulk import ContainerSpec, copy_prefix, forget_process_planes, verify_all
from envelope.errors import AuthenticationError, ObjectExistsError, StorageError, ValidationError
from tests.support.envelope_fs import flip, local_container, read_stored, s3_container
from tests.test_secrets_hygiene import Secrets

FRAME = 4096


@pytest.fixture(autouse=True)
def _fresh_planes() -> Iterator[None]:
    forget_process_planes()
    yield
    forget_process_planes()


def spec_of(options: dict[str, Any]) -> ContainerSpec:
    rest = {k: v for k, v in options.items() if k not in ("container", "kms")}
    return ContainerSpec(location=options["container"], kms=options["kms"], frame_length=FRAME, **rest)


def fill(spec: ContainerSpec, prefix: str, count: int) -> dict[str, bytes]:
    container = spec.open()
    objects = {f"{prefix}{i:02d}.bin": bytes([i % 251]) * (FRAME * (i % 3) + 7 * i) for i in range(count)}
    for name, data in objects.items():
        container.put(name, data)
    return objects


def test_verify_all_on_threads_reports_each_bad_object_and_finishes(tmp_path: Path) -> None:
    opts = local_container(tmp_path)
    spec = spec_of(opts)
    objects = fill(spec, "a/", 20)
    spec.open().put("b/outside.bin", b"not under the prefix")
    for victim in ("a/03.bin", "a/17.bin"):
        flip(opts, victim, len(read_stored(opts, victim)) - 1)
    report = verify_all(spec, "a/", batch_size=3)
    assert not report.ok
    assert sorted(r.name for r in report.verified) == sorted(set(objects) - {"a/03.bin", "a/17.bin"})
    assert {r.name: r.size for r in report.verified} == {
        n: len(d) for n, d in objects.items() if n not in ("a/03.bin", "a/17.bin")
    }
    assert [(f.name, f.error) for f in report.failed] == [
        ("a/03.bin", "AuthenticationError"),
        ("a/17.bin", "AuthenticationError"),
    ]
    assert verify_all(spec, "b/").ok
    with ThreadPoolExecutor(2) as pool:
        again = verify_all(spec, "a/", executor=pool)
    assert len(again.verified) == 18 and len(again.failed) == 2
    assert spec.plane().cache_stats().kms_calls == 1  # every thread shared this process's plane


def test_verify_all_on_a_process_pool_ships_configuration_only(tmp_path: Path) -> None:
    opts = local_container(tmp_path)
    spec = spec_of(opts)
    objects = fill(spec, "p/", 12)
    secrets = Secrets(spec.open().data_key().reveal())
    blob = pickle.dumps(spec)
    assert secrets.leaks("pickled spec", blob) == []
    assert pickle.loads(blob) == spec
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        report = verify_all(spec, "p/", executor=pool, batch_size=2)
    assert report.ok and sorted(r.name for r in report.verified) == sorted(objects)


class _LosesSecondBatch(ThreadPoolExecutor):
    """An executor whose second work item fails as a whole (a worker lost, a task that cannot start)."""

    def __init__(self) -> None:
        super().__init__(1)
        self.calls = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.calls += 1
        if self.calls == 2:
            lost: Future[Any] = Future()
            lost.set_exception(StorageError("worker lost"))
            return lost
        return super().submit(fn, *args, **kwargs)


def test_a_batch_that_fails_as_a_whole_fails_each_of_its_names_and_the_sweep_goes_on(tmp_path: Path) -> None:
    spec = spec_of(local_container(tmp_path))
    objects = fill(spec, "x/", 7)
    with _LosesSecondBatch() as pool:
        report = verify_all(spec, "x/", executor=pool, batch_size=3)
    assert [(f.name, f.error, f.message) for f in report.failed] == [
        (name, "StorageError", "worker lost") for name in sorted(objects)[3:6]
    ]
    assert sorted(r.name for r in report.verified) == sorted(objects)[:3] + sorted(objects)[6:]


def test_a_container_the_caller_cannot_open_fails_before_any_work(tmp_path: Path) -> None:
    opts = local_container(tmp_path)
    fill(spec_of(opts), "x/", 2)
    wrong = ContainerSpec(location=opts["container"], kms=opts["kms"], container_id="0" * 32)
    with pytest.raises(AuthenticationError):
        verify_all(wrong, "x/")
    assert wrong.plane().cache_stats().kms_calls == 0


def test_copy_prefix_re_encrypts_into_another_container(tmp_path: Path, moto_server_url: str) -> None:
    src_opts = local_container(tmp_path)
    src = spec_of(src_opts)
    objects = fill(src, "in/", 9)
    dst = spec_of(s3_container(moto_server_url))
    flip(src_opts, "in/04.bin", len(read_stored(src_opts, "in/04.bin")) // 2 + 1)
    report = copy_prefix(src, dst, "in/", dst_prefix="out/", batch_size=2)
    expected = {("out/" + n.removeprefix("in/")): d for n, d in objects.items() if n != "in/04.bin"}
    assert sorted(report.copied) == sorted(expected)
    assert [(f.name, f.error) for f in report.failed] == [("in/04.bin", "AuthenticationError")]
    target = dst.open()
    assert sorted(target.list()) == sorted(expected)  # nothing at the failed object's destination
    for name, data in expected.items():
        assert target.get(name) == data
        assert target.verify(name).bound
    again = copy_prefix(src, dst, "in/", dst_prefix="out/")
    assert {f.error for f in again.failed} == {ObjectExistsError.__name__, AuthenticationError.__name__}
    assert copy_prefix(src, dst, "in/0", dst_prefix="out/0", overwrite=True).copied


@pytest.mark.parametrize(
    "bad",
    [
        {"prefix": "../up"},
        {"prefix": "in/", "dst_prefix": "/abs"},
        {"prefix": "in/", "batch_size": 0},
        {"prefix": "in/", "executor": object()},
        {"prefix": "in/", "overwrite": "yes"},
    ],
)
def test_copy_prefix_rejects_bad_arguments_before_any_io(tmp_path: Path, bad: dict[str, Any]) -> None:
    spec = ContainerSpec(location=str(tmp_path / "missing"), kms=f"local:{tmp_path / 'ks'}")
    with pytest.raises(ValidationError):
        copy_prefix(spec, spec, **bad)
    assert not (tmp_path / "missing").exists()


def test_container_spec_normalizes_and_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = ContainerSpec(location="rel/c", kms="local:ks", expect_context={"b": "2", "a": "1"}, key_ids=None)
    assert spec.location == str(tmp_path / "rel/c")  # absolute: a worker's working directory may differ
    assert spec.kms == f"local:{tmp_path / 'ks'}"
    assert spec.expect_context == (("a", "1"), ("b", "2"))
    assert hash(spec) == hash(
        ContainerSpec(
            location=str(tmp_path / "rel/c"), kms=f"local:{tmp_path}/ks", expect_context=[("a", "1"), ("b", "2")]
        )
    )
    monkeypatch.setenv("ENVELOPE_KEYSTORE", str(tmp_path / "env-ks"))
    assert ContainerSpec(location="s3://bucket/x", kms="local").kms == f"local:{tmp_path / 'env-ks'}"
    assert ContainerSpec(
        location="s3://bucket/x", kms="aws", discovery=True, discovery_accounts=["111122223333"]
    ).discovery
    for bad in (
        {"kms": "aws"},
        {"kms": "local:"},
        {"location": 3},
        {"location": "gs://b/x"},
        {"key_ids": "arn:aws:kms:us-east-1:111122223333:key/k"},
        {"discovery": 1},
        {"frame_length": 17},
        {"region": ""},
        {"grant_tokens": [""]},
        {"expect_context": {"a": 1}},
    ):
        with pytest.raises(ValidationError):
            ContainerSpec(**{"location": "s3://bucket/x", "kms": "local:ks", **bad})
