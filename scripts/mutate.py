"""Curated mutation run: each security-critical check, broken on purpose, must make its tests fail.

Reads scripts/mutations.toml. For each mutation: the snippet must occur exactly
once in its file (otherwise the entry has rotted and the run fails), the file
is patched in a temporary copy of the repository (the files git knows about,
including uncommitted ones), and only the tests listed for it run there with
the project's interpreter and PYTHONPATH pointing at the copy. Verdicts:

    killed      a listed test failed (named in the report)
    SURVIVED    every listed test passed: a claim is untested
    NOT-FOUND   the snippet is not in the file, or is there more than once
    ERROR       pytest could not run the tests (a bad node id, a collection error)

Before any mutation, the listed tests run once on the unmutated copy and must
pass, so that a "killed" means the mutation and not a broken test. Exit status
0 only when every mutation was killed.

Not part of the installed package; run it as scripts/mutate.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "scripts" / "mutations.toml"
PACKAGES = ("envelope", "controlplane", "dataplane", "envelope_cli")
PER_RUN_TIMEOUT = 900  # seconds for one mutation's tests; a hang counts as killed (and is reported)
FAILED_LINE = re.compile(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$")  # node ids may hold spaces (param ids)


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    snippet: str
    replacement: str
    tests: tuple[str, ...]
    breaks: str


def load(path: Path) -> list[Mutation]:
    with path.open("rb") as f:
        doc = tomllib.load(f)
    mutations = []
    for entry in doc.get("mutation", []):
        m = Mutation(
            name=entry["name"],
            file=entry["file"],
            snippet=entry["snippet"],
            replacement=entry["replacement"],
            tests=tuple(entry["tests"]),
            breaks=entry.get("breaks", ""),
        )
        if not m.tests or m.snippet == m.replacement:
            raise SystemExit(f"mutate: entry {m.name!r} needs tests and a replacement that differs")
        mutations.append(m)
    names = [m.name for m in mutations]
    if len(set(names)) != len(names):
        raise SystemExit("mutate: mutation names must be unique")
    return mutations


def copy_repository(dest: Path) -> None:
    """Copy every file git tracks or would track (uncommitted work included) into dest."""
    # A fixed argv; git is found on PATH like any developer tool.
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        rel = os.fsdecode(raw)
        src = ROOT / rel
        if not src.is_file():  # deleted in the working tree
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def environment(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check_imports_come_from(copy: Path, env: dict[str, str]) -> None:
    """The venv has the project installed in editable mode: make sure the copy shadows it."""
    code = "import sys\n" + "".join(f"import {p}; print({p}.__file__)\n" for p in PACKAGES)
    out = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], cwd=copy, env=env, check=True, capture_output=True, text=True
    )
    for line in out.stdout.split():
        if not Path(line).resolve().is_relative_to(copy.resolve()):
            raise SystemExit(f"mutate: the copy does not shadow the installed package ({line})")


def run_tests(copy: Path, env: dict[str, str], tests: tuple[str, ...]) -> tuple[int | None, list[str], str]:
    """(pytest exit code or None on timeout, failing node ids, output tail)."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider", "--no-header", *tests]
    try:
        proc = subprocess.run(  # noqa: S603 - our interpreter; the node ids come from the checked-in list
            cmd, check=False, cwd=copy, env=env, capture_output=True, text=True, timeout=PER_RUN_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return None, [], ""
    output = proc.stdout + proc.stderr
    failed = [m.group(1) for line in output.splitlines() if (m := FAILED_LINE.match(line))]
    return proc.returncode, failed, "\n".join(output.splitlines()[-15:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/mutate", description=__doc__.split("\n", 1)[0])
    parser.add_argument("names", nargs="*", help="run only these mutations")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
    parser.add_argument("--data", type=Path, default=DATA, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    mutations = load(args.data)
    if args.list:
        for m in mutations:
            print(f"{m.name:32} {m.file}  ({m.breaks})")
        return 0
    unknown = set(args.names) - {m.name for m in mutations}
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(sorted(unknown))}")
    selected = [m for m in mutations if not args.names or m.name in args.names]

    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="envelope-mutate-"))
    copy = tmp / "repo"
    try:
        copy_repository(copy)
        env = environment(copy)
        check_imports_come_from(copy, env)

        all_tests = tuple(dict.fromkeys(t for m in selected for t in m.tests))
        code, failed, tail = run_tests(copy, env, all_tests)
        if code != 0:
            print(f"baseline: the listed tests do not pass on the unmutated code (exit {code}): {failed}")
            print(tail)
            return 2
        print(f"baseline: {len(all_tests)} listed tests pass on the unmutated code")

        results: list[tuple[Mutation, str, str]] = []
        for m in selected:
            verdict, detail = mutate_one(copy, env, m)
            results.append((m, verdict, detail))
            print(f"{verdict:10} {m.name:32} {detail}", flush=True)
    finally:
        if args.keep:
            print(f"copy kept at {copy}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    elapsed = time.monotonic() - started
    killed = sum(1 for _, v, _ in results if v == "killed")
    print(f"\n{killed}/{len(results)} killed in {elapsed:.0f} s")
    return 0 if killed == len(results) else 1


def mutate_one(copy: Path, env: dict[str, str], m: Mutation) -> tuple[str, str]:
    path = copy / m.file
    if not path.is_file():
        return "NOT-FOUND", f"no file {m.file}"
    original = path.read_text(encoding="utf-8")
    count = original.count(m.snippet)
    if count != 1:
        return "NOT-FOUND", f"the snippet occurs {count} times in {m.file} (must be exactly once)"
    try:
        path.write_text(original.replace(m.snippet, m.replacement), encoding="utf-8")
        code, failed, tail = run_tests(copy, env, m.tests)
    finally:
        path.write_text(original, encoding="utf-8")
    if code is None:
        return "killed", f"by a timeout after {PER_RUN_TIMEOUT} s (a hang)"
    if code == 0:
        return "SURVIVED", f"{len(m.tests)} test(s) passed: {', '.join(m.tests)}"
    if code == 1 and failed:
        return "killed", f"by {failed[0]}"
    return "ERROR", f"pytest exit {code}\n{tail}"


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `scripts/mutate --list | head` ends quietly
    sys.exit(main())
