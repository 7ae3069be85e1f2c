"""Figures the web catalog shows for every registry at once, read from the index in a few queries.

`registry_figures(store)` answers "how many collections and linked versions does each registry
hold, and what was its newest promotion" without reading a record per collection: on a store
of 100,000 links the registries page needs it in well under its 200 ms (docs/performance.md).
"""
from __future__ import annotations

import json

from canonry.query.index import for_store

__all__ = ["PROMOTION_OPS", "registry_figures"]

PROMOTION_OPS = ("alias.set",)  # an alias added to or moved onto a version: a promotion


def registry_figures(store) -> dict[str, dict]:
    """registry name -> {"collections": n, "versions": n (links present now), "promotion":
    the newest alias set in it ({commit, time, actor, target, before, after}) or None}."""

    def run(db):
        out: dict[str, dict] = {}
        for name, in db.execute("SELECT name FROM registries ORDER BY name"):
            out[name] = {"collections": 0, "versions": 0, "promotion": None}
        for name, colls, links in db.execute(
                "SELECT registry, count(*), coalesce(sum(versions), 0) FROM collections GROUP BY registry"):
            if name in out:
                out[name].update(collections=colls, versions=links)
        marks = ",".join("?" * len(PROMOTION_OPS))
        for name in out:
            row = db.execute(
                "SELECT c.id, c.time, c.email, h.target, h.before, h.after FROM hkeys k "
                "JOIN hist h ON h.seq = k.seq AND h.pos = k.pos JOIN commits c ON c.seq = k.seq "
                f"WHERE k.key = ? AND k.pos >= 0 AND h.op IN ({marks}) ORDER BY k.seq DESC, k.pos DESC LIMIT 1",
                (f"registry:{name}", *PROMOTION_OPS)).fetchone()
            if row:
                cid, stamp, email, target, before, after = row
                out[name]["promotion"] = {"commit": cid, "time": stamp, "actor": email, "target": target,
                                          "before": json.loads(before), "after": json.loads(after)}
        return out

    return for_store(store).query(run)
