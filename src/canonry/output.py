"""Formatting for the CLI: aligned tables and key/value blocks for people, JSON for machines."""
from __future__ import annotations

import json
import sys

__all__ = ["block", "change", "emit_json", "fmt", "human_size", "table"]


def emit_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def table(rows: list[list], headers: list[str]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def block(pairs: list[tuple[str, object]]) -> str:
    pairs = [(k, v) for k, v in pairs if v not in (None, "", [], {})]
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k + ':':<{width + 1}} {fmt(v)}" for k, v in pairs)


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt(v)}" for k, v in value.items()) if value else "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def change(before, after) -> str:
    if before is None and after is None:
        return ""
    return f"{fmt(before)} → {fmt(after)}"


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
