"""scripts/mutate itself: it reports killed, SURVIVED and NOT-FOUND truthfully and fails unless all are killed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _in_a_git_checkout() -> bool:
    try:
        done = subprocess.run(["git", "rev-parse", "--git-dir"], cwd=ROOT, capture_output=True, check=False, timeout=30)
    except OSError:
        return False
    return done.returncode == 0


pytestmark = pytest.mark.skipif(not _in_a_git_checkout(), reason="scripts/mutate copies the files git knows about")

FAST_UNIT_TEST = "tests/test_format.py::test_message_id_verifies_only_for_its_own_container_and_name"

DATA = f"""
[[mutation]]
name = "name-dropped"
file = "dataplane/binding.py"
breaks = "killed by the binding unit test"
snippet = '''    for field in (container_id.encode("utf-8"), random_part, name.encode("utf-8")):'''
replacement = '''    for field in (container_id.encode("utf-8"), random_part):'''
tests = ["{FAST_UNIT_TEST}"]

[[mutation]]
name = "comment-only"
file = "dataplane/binding.py"
breaks = "nothing: a comment changes, so it must survive"
snippet = '''# HKDF's default salt'''
replacement = '''# an edited comment'''
tests = ["{FAST_UNIT_TEST}"]

[[mutation]]
name = "rotted"
file = "dataplane/binding.py"
breaks = "the snippet is not in the file"
snippet = '''this line is not in binding.py'''
replacement = '''anything'''
tests = ["{FAST_UNIT_TEST}"]
"""


@pytest.mark.timeout(300)
def test_the_runner_reports_each_verdict_and_fails_unless_all_are_killed(tmp_path: Path) -> None:
    data = tmp_path / "mutations.toml"
    data.write_text(DATA, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "mutate.py"), "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    verdicts = {
        line.split()[1]: line.split()[0]
        for line in proc.stdout.splitlines()
        if line.split() and line.split()[0] in ("killed", "SURVIVED", "NOT-FOUND", "ERROR")
    }
    assert verdicts == {"name-dropped": "killed", "comment-only": "SURVIVED", "rotted": "NOT-FOUND"}, proc.stdout
    assert f"by {FAST_UNIT_TEST}" in proc.stdout
    assert "1/3 killed" in proc.stdout
    assert proc.returncode == 1
    # The working tree was never touched: only the temporary copy was mutated.
    assert 'name.encode("utf-8")):' in (ROOT / "dataplane" / "binding.py").read_text(encoding="utf-8")


@pytest.mark.timeout(300)
def test_the_runner_refuses_to_judge_when_the_listed_tests_fail_unmutated(tmp_path: Path) -> None:
    data = tmp_path / "mutations.toml"
    data.write_text(DATA.replace(FAST_UNIT_TEST, "tests/test_format.py::test_there_is_no_such_test"), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "mutate.py"), "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout.startswith("baseline: the listed tests do not pass")
