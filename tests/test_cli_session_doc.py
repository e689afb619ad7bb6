"""The worked session in docs/cli.md runs as written, against this test's moto_server (a free port)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOC_PORT = "http://127.0.0.1:5000"


def session_block() -> str:
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    [block] = re.findall(r"^```sh session\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    return str(block)


@pytest.mark.server
def test_the_worked_session_runs(moto_server_url: str, tmp_path: Path) -> None:
    lines = session_block().splitlines()
    # The test runs its own emulator: drop the lines that start and wait for the doc's.
    script = "\n".join(line for line in lines if not line.startswith(("moto_server ", "sleep ")))
    assert DOC_PORT in script
    script = script.replace(DOC_PORT, moto_server_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENVELOPE_", "AWS_ENDPOINT_URL"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=240,
        check=False,
    )
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, (out, err)
    assert "reports/q3.csv" in out  # ls -l
    assert "verified 2 object(s)" in out and "2 ok, 0 failed" in out
    assert out.rstrip().splitlines()[-2:] == ["2024/web/css/a.css", "2024/web/index.html"]
    assert (tmp_path / "q3.out").read_bytes() == (tmp_path / "q3.csv").read_bytes()
