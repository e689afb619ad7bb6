"""The benchmark harness still runs: `python -m bench --tiny` end to end (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = {"streams", "threads", "peers", "rss", "random", "kms", "provisioning", "s3", "small"}


def test_tiny_run_writes_every_figure_and_a_chart(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    chart = tmp_path / "chart.png"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--quiet", "--json", str(out), "--chart", str(chart)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    results = json.loads(out.read_text())
    assert set(results) >= {"meta", "figures", "summary"}
    assert results["meta"]["mode"] == "tiny"
    assert set(results["meta"]["machine"]) >= {"cpu", "cores", "python", "versions"}
    assert set(results["figures"]) == FIGURES
    for name, figure in results["figures"].items():
        assert "error" not in figure, (name, figure["error"])
        assert figure["summary"], name
    assert {item["figure"] for item in results["summary"]} == {str(i) for i in range(1, 9)} | {"10"}
    for item in results["summary"]:
        assert set(item) >= {"figure", "name", "value", "unit", "target", "met"}
    streams = results["figures"]["streams"]["rows"][0]
    assert {"memory_encrypt_vs_raw", "memory_decrypt_vs_raw", "file_encrypt_vs_raw", "file_decrypt_vs_raw"} <= set(
        streams["ratio"]
    )
    assert set(results["figures"]["kms"]) >= {"ours", "esdk_default", "esdk_caching"}
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
