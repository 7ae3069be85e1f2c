"""Commit messages: a sentence for people, trailers for machines.

    link gemma-finetuned:v3 -> model/first-collection as v0 [+production]

    Canonry-Op: {"op": "link", "artifact": "gemma-finetuned:v3", ...}
    Canonry-Op: {"op": "alias.set", "alias": "production", "before": null, "after": "v0", ...}

Every record of the operation is one `Canonry-Op` trailer (compact JSON on one line), so
history, audits and replays read commit messages only, never tree diffs.
"""
from __future__ import annotations

import json

__all__ = ["TRAILER", "keys", "message", "records"]

TRAILER = "Canonry-Op"
_PREFIX = TRAILER + ": "


def message(records: list[dict], subject: str | None = None) -> str:
    subject = subject or records[0]["summary"]
    lines = [_one_line(subject), ""]
    summaries = [r["summary"] for r in records]
    if len(records) > 1 or subject != records[0]["summary"]:
        lines += [f"- {s}" for s in summaries] + [""]
    lines += [_PREFIX + json.dumps(r, separators=(",", ":"), sort_keys=False) for r in records]
    return "\n".join(lines) + "\n"


def records(message: str | bytes) -> list[dict]:
    """The op records in a commit message ([] for a commit canonry did not make)."""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    if _PREFIX not in message:
        return []
    found = []
    for line in message.splitlines():
        if line.startswith(_PREFIX):
            try:
                rec = json.loads(line[len(_PREFIX):])
            except ValueError:
                continue
            if isinstance(rec, dict) and "op" in rec:
                found.append(rec)
    return found


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


def keys(record: dict) -> set[str]:
    """What a record touches, as keys that targets are matched against (see Store.history)."""
    op = record.get("op", "")
    out: set[str] = set()
    if "registry" in record:
        out.add("registry:" + record["registry"])
    coll = record.get("collection")
    if coll:
        out.add("registry:" + coll.split("/")[0])
        out.add("collection:" + coll)
    art = record.get("artifact")
    if art:
        out.add("artifact:" + art.split(":")[0])
        out.add("av:" + art)
    if op in ("link", "unlink") and coll:
        out.add(f"link:{coll}:{record['version']}")
    if op.startswith("alias.") and coll:
        out.add(f"alias:{coll}:{record['alias']}")
        for v in (record.get("before"), record.get("after")):
            if v:
                out.add(f"link:{coll}:{v}")
    if op == "registry.rename" and record.get("to"):
        out.add("registry:" + record["to"])
    if op == "collection.rename" and record.get("to"):
        out.add("collection:" + record["to"])
    if op.startswith("tag.") and ":" in record.get("target", ""):
        out.add("link:" + record["target"])
    return out
