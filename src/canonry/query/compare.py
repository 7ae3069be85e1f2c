"""`canonry compare REGISTRY/COLLECTION`: every linked version with its aliases and metrics,
sorted by the chosen metric, with a small terminal chart of it (bars per version, and a
sparkline in link order for the trend)."""
from __future__ import annotations

from canonry.errors import InvalidInput
from canonry.names import parse_collection
from canonry.query.search import query

__all__ = ["BARS", "BAR_WIDTH", "SPARKS", "bar", "compare", "render_text", "sparkline"]

BARS = " ▏▎▍▌▋▊▉█"
SPARKS = "▁▂▃▄▅▆▇█"
BAR_WIDTH = 24


def compare(store, collection: str, metrics=None, ascending: bool = False) -> dict:
    """Versions of `collection` with aliases and metrics. Sorted by the first of `metrics`
    (highest first, or lowest with ascending=True; versions without it last), else by version."""
    addr = parse_collection(collection)
    store.view().collection(addr.registry, addr.collection)  # NotFound names the candidates
    docs = query(store, "versions", None, registry=addr.registry, collection=addr.collection)
    available = sorted({k for d in docs for k in d.get("metrics", {})})
    chosen = list(dict.fromkeys(metrics or []))
    unknown = [x for x in chosen if x not in available]
    if unknown and docs:
        raise InvalidInput(f"no version of {addr.registry}/{addr.collection} has metric "
                           f"{', '.join(map(repr, unknown))}; metrics: {', '.join(available) or 'none'}")
    rows = [{"version": d["version"], "address": d["address"], "artifact": d["artifact"],
             "aliases": d["aliases"], "tags": d["tags"], "metrics": d.get("metrics", {}),
             "created_at": d.get("created_at"), "linked_at": d["linked_at"], "linked_by": d["linked_by"]}
            for d in docs]
    sort_by = chosen[0] if chosen else None
    number = lambda r: int(r["version"][1:])  # noqa: E731
    if sort_by:
        have = [r for r in rows if _num(r["metrics"].get(sort_by)) is not None]
        lack = [r for r in rows if _num(r["metrics"].get(sort_by)) is None]
        have.sort(key=lambda r: (_num(r["metrics"][sort_by]) * (1 if ascending else -1), number(r)))
        rows = have + sorted(lack, key=number)
    else:
        rows.sort(key=number)
    by_order = sorted(rows, key=number)
    trend = [_num(r["metrics"].get(sort_by)) if sort_by else None for r in by_order]
    return {"collection": f"{addr.registry}/{addr.collection}", "metrics": chosen or available,
            "sort": sort_by, "ascending": ascending, "versions": rows,
            "best": rows[0]["address"] if sort_by and rows and _num(rows[0]["metrics"].get(sort_by)) is not None
            else None,
            "trend": {"metric": sort_by, "versions": [r["version"] for r in by_order], "values": trend,
                      "sparkline": sparkline(trend) if sort_by else ""}}


def _num(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def bar(value: float | None, lo: float, hi: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar in eighths of a character: lo gets a sliver, hi the full width."""
    if value is None:
        return ""
    frac = 1.0 if hi == lo else (value - lo) / (hi - lo)
    eighths = max(1, round((0.04 + 0.96 * frac) * width * 8))
    full, rest = divmod(eighths, 8)
    return "█" * full + (BARS[rest] if rest else "")


def sparkline(values) -> str:
    nums = [v for v in values if v is not None]
    if not nums:
        return ""
    lo, hi = min(nums), max(nums)
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif hi == lo:
            out.append(SPARKS[len(SPARKS) // 2])
        else:
            out.append(SPARKS[min(len(SPARKS) - 1, int((v - lo) / (hi - lo) * (len(SPARKS) - 1) + 0.5))])
    return "".join(out)


def render_text(result: dict) -> str:
    from canonry.output import fmt, table

    rows = result["versions"]
    if not rows:
        return f"{result['collection']} has no linked versions\n"
    metrics = result["metrics"]
    sort_by = result["sort"]
    values = [_num(r["metrics"].get(sort_by)) for r in rows] if sort_by else []
    nums = [v for v in values if v is not None]
    lo, hi = (min(nums), max(nums)) if nums else (0.0, 0.0)
    headers = ["VERSION", "ARTIFACT", "ALIASES"] + [m.upper() for m in metrics]
    body = []
    for i, r in enumerate(rows):
        cells = [r["version"], r["artifact"], fmt(r["aliases"])]
        cells += [fmt(r["metrics"].get(m)) if m in r["metrics"] else "-" for m in metrics]
        if sort_by:
            cells.append(bar(values[i], lo, hi))
        body.append(cells)
    if sort_by:
        headers.append(sort_by.upper() + (" ↑" if result["ascending"] else " ↓"))
    text = table(body, headers)
    if sort_by and nums:
        trend = result["trend"]
        first, last = trend["versions"][0], trend["versions"][-1]
        text += (f"\n\n{sort_by} by version ({first}…{last}): {trend['sparkline']}   "
                 f"min {fmt(lo)}, max {fmt(hi)}; best {result['best']}")
    return text + "\n"
