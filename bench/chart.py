"""Render the results JSON as one PNG (matplotlib, Agg backend): one panel per figure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from bench.fig_provision import TARGET as PROVISION_TARGET
from bench.fig_throughput import FILE_VS_COPY_TARGET, IN_MEMORY_TARGET, THREADS_TARGET

OURS = "#1f6feb"
OURS_2 = "#79b8ff"
PEER = "#8b949e"
PEER_2 = "#d0d7de"
TARGET = "#cf222e"


def _label(n: int) -> str:
    return f"{n >> 30} GiB" if n >= 1 << 30 else f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


def _err(summary: dict[str, Any]) -> list[float]:
    """Error bars span the interquartile range (the table gives min-max)."""
    return [max(0.0, summary["median"] - summary["q1"]), max(0.0, summary["q3"] - summary["median"])]


def _bars(ax: Axes, groups: list[str], series: list[tuple[str, list[dict[str, Any] | None], str]]) -> None:
    width = 0.8 / max(len(series), 1)
    for i, (name, values, color) in enumerate(series):
        xs: list[float] = []
        ys: list[float] = []
        errs: list[list[float]] = [[], []]
        for g, v in enumerate(values):
            if v is None:
                continue
            xs.append(g - 0.4 + width * (i + 0.5))
            ys.append(v["median"])
            lo, hi = _err(v)
            errs[0].append(lo)
            errs[1].append(hi)
        ax.bar(xs, ys, width, yerr=errs, color=color, label=name, capsize=2)
    ax.set_xticks(range(len(groups)), groups)


def _target(ax: Axes, y: float, text: str) -> None:
    ax.axhline(y, color=TARGET, linestyle="--", linewidth=1)
    ax.annotate(text, (1.0, y), xycoords=("axes fraction", "data"), ha="right", va="bottom", color=TARGET, fontsize=7)


def _streams(ax: Axes, fig: dict[str, Any]) -> None:
    rows = fig["rows"]
    groups = [_label(r["frame_length"]) for r in rows]
    series = [
        ("mem enc", [r["ratio"].get("memory_encrypt_vs_raw") for r in rows], OURS),
        ("mem dec", [r["ratio"].get("memory_decrypt_vs_raw") for r in rows], OURS_2),
    ]
    if fig.get("file_to_file"):
        series += [
            ("file enc / copy", [r["ratio"].get("file_encrypt_vs_copy") for r in rows], PEER),
            ("file dec / copy", [r["ratio"].get("file_decrypt_vs_copy") for r in rows], PEER_2),
        ]
    _bars(ax, groups, series)
    _target(ax, IN_MEMORY_TARGET, f"{IN_MEMORY_TARGET:.2f} (memory)")
    _target(ax, FILE_VS_COPY_TARGET, f"{FILE_VS_COPY_TARGET:.2f} (file / plain copy)")
    ax.set_title("1. in memory: ours / raw AES-GCM; file to file: ours / plain copy", fontsize=9)
    ax.set_ylabel("ratio")
    ax.set_ylim(top=ax.get_ylim()[1] * 1.3)
    ax.legend(fontsize=7, loc="upper right", ncol=2)


def _threads(ax: Axes, fig: dict[str, Any]) -> None:
    rows = fig["rows"]
    _bars(
        ax,
        [_label(r["frame_length"]) for r in rows],
        [
            ("ours encrypt", [r["ratio"]["encrypt_2_vs_1"] for r in rows], OURS),
            ("ours decrypt", [r["ratio"]["decrypt_2_vs_1"] for r in rows], OURS_2),
            ("raw encrypt", [r["ratio"].get("raw_encrypt_2_vs_1") for r in rows], PEER),
            ("raw decrypt", [r["ratio"].get("raw_decrypt_2_vs_1") for r in rows], PEER_2),
        ],
    )
    _target(ax, THREADS_TARGET, f"{THREADS_TARGET:g}")
    ax.set_title(f"2. 2 threads / 1 thread ({_label(fig['bytes'])})", fontsize=9)
    ax.set_ylabel("ratio")
    ax.set_ylim(top=ax.get_ylim()[1] * 1.3)
    ax.legend(fontsize=7, loc="upper left", ncol=2)


def _peers(ax: Axes, fig: dict[str, Any]) -> None:
    mbps = fig["mb_per_s"]
    names = [n[: -len("_encrypt")] for n in mbps if n.endswith("_encrypt")]
    _bars(
        ax,
        [n.replace("esdk_", "ESDK ").replace("ours", "ours").replace("tink", "Tink") for n in names],
        [
            ("encrypt", [mbps[f"{n}_encrypt"] for n in names], OURS),
            ("decrypt", [mbps[f"{n}_decrypt"] for n in names], OURS_2),
        ],
    )
    ax.set_yscale("log")
    ax.set_title(f"3. MB/s in memory ({_label(fig['bytes'])}), log scale", fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=7)


def _rss(ax: Axes, fig: dict[str, Any]) -> None:
    by: dict[str, list[tuple[int, float]]] = {}
    for row in fig["rows"]:
        label = row["op"] + ("" if row["threads"] == 1 else " (2 threads)")
        by.setdefault(label, []).append((row["bytes"], row["over_idle_mib"]["median"]))
    for label, points in by.items():
        xs = [_label(p[0]) for p in points]
        ax.plot(xs, [p[1] for p in points], marker="o", label=label)
    _target(ax, fig["bound_mib"], f"4 x frame + 8 MiB = {fig['bound_mib']:g} MiB")
    ax.set_ylim(bottom=0, top=max(fig["bound_mib"] * 1.3, ax.get_ylim()[1]))
    ax.set_title(f"4. peak RSS over idle, MiB ({_label(fig['frame_length'])} frames)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")


def _random(ax: Axes, fig: dict[str, Any]) -> None:
    rows = fig["rows"]
    _bars(
        ax,
        [_label(r["frame_length"]) + " frames" for r in rows],
        [
            ("near start", [r["latency_us"]["start"] for r in rows], OURS),
            ("near end", [r["latency_us"]["end"] for r in rows], OURS_2),
        ],
    )
    for i, r in enumerate(rows):
        ax.annotate(
            f"{r['frames_per_read']['mean']:.2f} frames/read\nend/start {r['end_over_start']:.2f}",
            (i, max(r["latency_us"]["start"]["q3"], r["latency_us"]["end"]["q3"])),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            fontsize=7,
        )
    ax.set_ylim(top=ax.get_ylim()[1] * 1.25)
    ax.set_title(f"5. 4 KiB random read latency, us ({_label(fig['object_bytes'])} object)", fontsize=9)
    ax.legend(fontsize=7)


def _kms(ax: Axes, fig: dict[str, Any]) -> None:
    labels = ["ours", "ESDK", "ESDK caching CMM"]
    values = [fig["ours"]["total"], fig["esdk_default"]["total"], fig["esdk_caching"]["total"]]
    bars = ax.bar(labels, [max(v, 0.8) for v in values], color=[OURS, PEER, PEER_2])
    for bar, v in zip(bars, values, strict=True):
        ax.annotate(
            f"{v:,}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8
        )
    ax.set_yscale("log")
    ax.set_title(f"6. KMS calls, {fig['objects']:,} objects written + read", fontsize=9)


def _provisioning(ax: Axes, fig: dict[str, Any]) -> None:
    per = fig["per_second"]
    _bars(
        ax, ["per second"], [("containers", [per["containers"]], OURS), ("raw GDKwoP calls", [per["raw_calls"]], PEER)]
    )
    ax.set_title(f"7. provisioning, {fig['workers']} workers: ratio {fig['ratio']['median']:.2f}", fontsize=9)
    _target(ax, PROVISION_TARGET * per["raw_calls"]["median"], f"{PROVISION_TARGET:g} x raw")
    ax.legend(fontsize=7, loc="lower right")


def _s3(ax: Axes, fig: dict[str, Any]) -> None:
    mbps = fig["mb_per_s"]
    _bars(
        ax,
        ["put", "get"],
        [
            ("ours", [mbps["ours_put"], mbps["ours_get"]], OURS),
            ("boto3 plaintext", [mbps["boto3_put"], mbps["boto3_get"]], PEER),
        ],
    )
    ax.set_title(f"8. S3 on moto_server, MB/s ({_label(fig['bytes'])})", fontsize=9)
    ax.legend(fontsize=7)


def _small(ax: Axes, fig: dict[str, Any]) -> None:
    sizes = list(fig["sizes"])
    groups = [(size, op) for size in sizes for op in ("put", "get")]
    width = 0.27
    for k, who in enumerate(("ours", "plain", "esdk")):
        values = [fig["sizes"][size]["per_second"][f"{who}_{op}"]["median"] for size, op in groups]
        xs = [i + (k - 1) * width for i in range(len(groups))]
        ax.bar(xs, values, width, label={"esdk": "ESDK caching CMM", "plain": "plain files"}.get(who, who))
    ax.set_xticks(range(len(groups)), [f"{size} {op}" for size, op in groups], fontsize=7)
    ax.set_yscale("log")
    ax.set_title(f"10. small objects per second ({fig['objects_per_round']:,} per round), log scale", fontsize=9)
    ax.legend(fontsize=7)


PANELS: dict[str, Callable[[Axes, dict[str, Any]], None]] = {
    "streams": _streams,
    "threads": _threads,
    "peers": _peers,
    "rss": _rss,
    "random": _random,
    "kms": _kms,
    "provisioning": _provisioning,
    "s3": _s3,
    "small": _small,
}


def render(results: dict[str, Any], path: str) -> None:
    fig, axes = plt.subplots(3, 3, figsize=(18, 13))
    for ax, (name, draw) in zip(axes.flat, PANELS.items(), strict=True):
        data = results["figures"].get(name)
        if not data or "error" in data:
            ax.set_axis_off()
            ax.text(
                0.5,
                0.5,
                f"{name}: not measured" + (f"\n{data['error'][:80]}" if data else ""),
                ha="center",
                fontsize=8,
                wrap=True,
            )
            continue
        try:
            draw(ax, data)
        except (KeyError, TypeError, ValueError) as exc:
            ax.clear()
            ax.set_axis_off()
            ax.text(0.5, 0.5, f"{name}: cannot draw ({exc})", ha="center", fontsize=8)
        ax.tick_params(labelsize=8)
    meta = results["meta"]
    machine = meta["machine"]
    fig.suptitle(
        f"envelope benchmarks ({meta['mode']} run, {meta['started_at']}) - {machine['cpu']}, {machine['cores']} cores, "
        f"Python {machine['python']}, cryptography {machine['versions'].get('cryptography')}",
        fontsize=10,
    )
    fig.text(
        0.5,
        0.005,
        "bars: medians; error bars: interquartile range; ratios are paired per interleaved round",
        ha="center",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.02, 1, 0.96))
    fig.savefig(path, dpi=100)
    plt.close(fig)
