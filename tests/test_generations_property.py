"""Property: any interleaving of put, overwrite, delete, rotate, rekey and rekey_all leaves every live
object readable at its last written content, and `usage()` agreeing with the objects' generations."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from controlplane import ControlPlane
from dataplane import DataKeyCache, DataPlane
from envelope.kms import LocalKms

NAMES = st.sampled_from(["a", "b/c", "b/d", "e"])
DATA = st.binary(max_size=3000)


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="lifecycle-"))
        self.kms = LocalKms(self.root / "keystore")
        self.kms.create_key(alias="alias/one")
        self.kms.create_key(alias="alias/two")
        self.location = str(self.root / "c")
        self.control = ControlPlane(self.kms)
        self.control.create_container(self.location, key_id="alias/one")
        self.now = [0.0]
        # the clock moves only when a rule says so: writers follow rotations once max_age has passed
        self.plane = DataPlane(self.kms, frame_length=512, cache=DataKeyCache(max_age=10, clock=lambda: self.now[0]))
        self.container = self.plane.open(self.location)
        self.expected: dict[str, bytes] = {}
        self.generations = 1
        self.migrated = False

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    @rule(name=NAMES, data=DATA)
    def put(self, name: str, data: bytes) -> None:
        self.container.put(name, data, overwrite=True)
        self.expected[name] = data

    @rule(name=NAMES)
    def delete(self, name: str) -> None:
        if name in self.expected:
            self.container.delete(name)
            del self.expected[name]

    @rule(migrate=st.booleans())
    def rotate(self, migrate: bool) -> None:
        # Without a key the container's own key is kept; once migrated, every rotation names its key.
        key_id = "alias/two" if migrate or self.migrated else None
        self.migrated = self.migrated or migrate
        g = self.control.rotate_container(self.location, key_id=key_id)
        self.generations += 1
        assert g.generation == self.generations

    @rule()
    def time_passes(self) -> None:
        self.now[0] += 10

    @rule(name=NAMES)
    def rekey(self, name: str) -> None:
        if name in self.expected:
            changed = self.container.rekey(name)
            assert self.container.rekey(name) is False
            assert changed or self.container.generation_of(name) == self.container.generation

    @rule()
    def rekey_all(self) -> None:
        report = self.container.rekey_all(workers=2)
        assert report.ok, report.failed
        assert self.container.usage() in ({}, {self.container.generation: len(self.expected)})

    @invariant()
    def every_live_object_reads_back_and_usage_agrees(self) -> None:
        fresh = DataPlane(self.kms).open(self.location)
        assert sorted(fresh.list()) == sorted(self.expected)
        counts: dict[int, int] = {}
        for name, data in self.expected.items():
            assert fresh.get(name) == data
            generation = fresh.generation_of(name)
            assert generation is not None and 1 <= generation <= self.generations
            counts[generation] = counts.get(generation, 0) + 1
        assert fresh.usage() == dict(sorted(counts.items()))


Lifecycle.TestCase.settings = settings(max_examples=25, stateful_step_count=15, deadline=None)
test_lifecycle = Lifecycle.TestCase
