"""`python -m bench.docs_table [results.json]`: the Markdown tables docs/benchmarks.md shows.

Prints the summary (ratios and verdicts first), then the absolute figures,
from a results file written by `python -m bench` (default: docs/benchmarks.json).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from bench.report import markdown_table


def _label(n: int) -> str:
    return f"{n >> 30} GiB" if n >= 1 << 30 else f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


def _m(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "-"
    return f"{summary['median']:,.0f} [{summary['min']:,.0f}-{summary['max']:,.0f}]"


def absolute_tables(results: dict[str, Any]) -> str:
    figures = results["figures"]
    out: list[str] = []
    streams = figures.get("streams", {})
    if "rows" in streams:
        out += [
            f"Figure 1, MB/s, {_label(streams['bytes'])} per run, median [min-max]:",
            "",
            "| frame | op | ours in memory | raw AES-GCM in memory | ours file-to-file | raw file-to-file | plain copy |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in streams["rows"]:
            m = row["mb_per_s"]
            for op in ("encrypt", "decrypt"):
                out.append(
                    f"| {_label(row['frame_length'])} | {op} | {_m(m.get(f'ours_memory_{op}'))} | {_m(m.get(f'raw_memory_{op}'))} "
                    f"| {_m(m.get(f'ours_file_{op}'))} | {_m(m.get(f'raw_file_{op}'))} | {_m(m.get(f'copy_file_{op}'))} |"
                )
        out.append("")
    threads = figures.get("threads", {})
    if "rows" in threads:
        out += [
            f"Figure 2, MB/s, {_label(threads['bytes'])} per run (CPU/wall in parentheses: 2.0 = two cores busy):",
            "",
            "| frame | op | ours 1 thread | ours 2 threads | raw 1 thread | raw 2 threads |",
            "|---|---|---|---|---|---|",
        ]
        for row in threads["rows"]:
            m, c = row["mb_per_s"], row.get("cpu_per_wall", {})

            def cell(name: str, m: dict[str, Any] = m, c: dict[str, Any] = c) -> str:
                util = f" ({c[name]['median']:.2f})" if name in c else ""
                return _m(m.get(name)) + util

            for op in ("encrypt", "decrypt"):
                out.append(
                    f"| {_label(row['frame_length'])} | {op} | {cell(f'{op}_t1')} | {cell(f'{op}_t2')} "
                    f"| {cell(f'raw_{op}_t1')} | {cell(f'raw_{op}_t2')} |"
                )
        out.append("")
    peers = figures.get("peers", {})
    if "mb_per_s" in peers:
        m = peers["mb_per_s"]
        names = [n[: -len("_encrypt")] for n in m if n.endswith("_encrypt")]
        out += [
            f"Figure 3, MB/s, {_label(peers['bytes'])} per message, in memory:",
            "",
            "| | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
            "| encrypt | " + " | ".join(_m(m.get(f"{n}_encrypt")) for n in names) + " |",
            "| decrypt | " + " | ".join(_m(m.get(f"{n}_decrypt")) for n in names) + " |",
            "",
        ]
    rss = figures.get("rss", {})
    if "rows" in rss:
        out += [
            f"Figure 4, peak RSS over an idle interpreter (idle: {rss['idle_kib']['median'] / 1024:.1f} MiB), "
            f"MiB, {_label(rss['frame_length'])} frames, bound {rss['bound_mib']:g} MiB:",
            "",
            "| op | threads | " + " | ".join(_label(s) for s in sorted({r["bytes"] for r in rss["rows"]})) + " |",
            "|---|---|" + "---|" * len({r["bytes"] for r in rss["rows"]}),
        ]
        groups: dict[tuple[str, int], list[str]] = {}
        for row in sorted(rss["rows"], key=lambda r: r["bytes"]):
            groups.setdefault((row["op"], row["threads"]), []).append(f"{row['over_idle_mib']['median']:.1f}")
        for (op, threads), cells in groups.items():
            out.append(f"| {op} | {threads} | " + " | ".join(cells) + " |")
        out.append("")
    random = figures.get("random", {})
    if "rows" in random:
        out += [
            f"Figure 5, 4 KiB reads in a {_label(random['object_bytes'])} object, microseconds:",
            "",
            "| frame | near start | near end | end/start | frames per read (mean, max) |",
            "|---|---|---|---|---|",
        ]
        for row in random["rows"]:
            lat = row["latency_us"]
            out.append(
                f"| {_label(row['frame_length'])} | {lat['start']['median']:.0f} | {lat['end']['median']:.0f} "
                f"| {row['end_over_start']:.2f} | {row['frames_per_read']['mean']:.2f}, {row['frames_per_read']['max']:.0f} |"
            )
        out.append("")
    kms = figures.get("kms", {})
    if "ours" in kms:
        out += [
            f"Figure 6, KMS calls for {kms['objects']:,} objects of {kms['object_bytes']} bytes written and read back:",
            "",
            "| | calls | by operation | seconds |",
            "|---|---|---|---|",
            f"| ours | {kms['ours']['total']} | {kms['ours']['provisioning_calls']} + {kms['ours']['calls']} | {kms['ours']['seconds']} |",
            f"| ESDK | {kms['esdk_default']['total']} | {kms['esdk_default']['calls']} | {kms['esdk_default']['seconds']} |",
            f"| ESDK, caching CMM | {kms['esdk_caching']['total']} | {kms['esdk_caching']['calls']} | {kms['esdk_caching']['seconds']} |",
            "",
        ]
    prov = figures.get("provisioning", {})
    if "per_second" in prov:
        p = prov["per_second"]
        out += [
            f"Figure 7, per second, {prov['per_round']} per round, {prov['workers']} workers: containers "
            f"{_m(p['containers'])}, raw GenerateDataKeyWithoutPlaintext calls {_m(p['raw_calls'])}.",
            "",
        ]
    s3 = figures.get("s3", {})
    if "mb_per_s" in s3:
        m = s3["mb_per_s"]
        out += [
            f"Figure 8, MB/s, {_label(s3['bytes'])} object on moto_server: put ours {_m(m['ours_put'])}, "
            f"boto3 {_m(m['boto3_put'])}; get ours {_m(m['ours_get'])}, boto3 {_m(m['boto3_get'])}.",
            "",
        ]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    path = argv[0] if argv else "docs/benchmarks.json"
    with open(path, encoding="utf-8") as f:
        results = json.load(f)
    print(markdown_table(results["summary"]))
    print()
    print(absolute_tables(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
