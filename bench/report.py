"""Result records shared by the figures: targets, verdicts, and the printed table."""

from __future__ import annotations

import operator
from typing import Any

from bench.stats import Summary

_OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq}


def verdict(
    figure: str,
    name: str,
    value: Summary | float | int,
    *,
    target: tuple[str, float] | None,
    unit: str = "x",
    detail: str = "",
) -> dict[str, Any]:
    """One line of the summary table: a measured value (median with spread) against a goal."""
    median = value["median"] if isinstance(value, dict) else value
    met = None if target is None else bool(_OPS[target[0]](median, target[1]))
    return {
        "figure": figure,
        "name": name,
        "value": value,
        "unit": unit,
        "target": None if target is None else f"{target[0]} {target[1]:g}{_suffix(unit)}",
        "met": met,
        "detail": detail,
    }


def _suffix(unit: str) -> str:
    return unit if unit in ("x", "") else " " + unit


def _fmt(value: Any, unit: str) -> str:
    if isinstance(value, dict):
        med, lo, hi = value["median"], value["min"], value["max"]
        if unit == "x":
            return f"{med:.2f}x [{lo:.2f}-{hi:.2f}]"
        return f"{med:,.1f} [{lo:,.1f}-{hi:,.1f}] {unit}"
    if isinstance(value, float):
        return f"{value:.2f}{_suffix(unit)}"
    return f"{value:,}{_suffix(unit)}"


def table(summary: list[dict[str, Any]]) -> str:
    rows = [("fig", "measure", "value [min-max]", "target", "met")]
    for item in summary:
        met = {True: "yes", False: "NO", None: "-"}[item["met"]]
        rows.append((item["figure"], item["name"], _fmt(item["value"], item["unit"]), item["target"] or "-", met))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(summary: list[dict[str, Any]]) -> str:
    lines = ["| fig | measure | median [min-max] | target | met |", "|---|---|---|---|---|"]
    for item in summary:
        met = {True: "yes", False: "**no**", None: "-"}[item["met"]]
        lines.append(
            f"| {item['figure']} | {item['name']} | {_fmt(item['value'], item['unit'])} | {item['target'] or '-'} | {met} |"
        )
    return "\n".join(lines)
