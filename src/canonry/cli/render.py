"""Human renderings of store data (the dicts of Store.show and the typed records)."""
from __future__ import annotations

from canonry.output import block, change, fmt, human_size, table

__all__ = [
    "collections_table", "events_table", "history_table", "render_show", "runs_table", "versions_table",
]


def _aliases(aliases) -> str:
    return fmt(list(aliases)) if aliases else "-"


def collections_table(colls) -> str:
    rows = [[c.address, c.type, c.versions, _alias_map(c.aliases), fmt(c.tags)] for c in colls]
    return table(rows, ["COLLECTION", "TYPE", "VERSIONS", "ALIASES", "TAGS"])


def _alias_map(aliases: dict) -> str:
    return ", ".join(f"{a}={v}" for a, v in aliases.items()) if aliases else "-"


def versions_table(versions) -> str:
    rows = [[v.version, v.artifact, _aliases(v.aliases), fmt(v.tags), v.linked_at, v.linked_by]
            for v in versions]
    return table(rows, ["VERSION", "ARTIFACT", "ALIASES", "TAGS", "LINKED AT", "LINKED BY"])


def history_table(entries) -> str:
    rows = [[e.time, e.actor, e.op, e.target, change(e.before, e.after), e.commit[:10]] for e in entries]
    return table(rows, ["TIME", "ACTOR", "OPERATION", "TARGET", "BEFORE → AFTER", "COMMIT"])


def render_show(d: dict) -> str:
    kind = d["kind"]
    if kind == "registry":
        head = block([("registry", d["name"]), ("description", d["description"]),
                      ("visibility", d["visibility"]),
                      ("types", d["types"] if d["types"] == "all" else fmt(d["types"])),
                      ("protected", d["protected_aliases"]), ("members", d["members"]),
                      *([("usage", "every download is recorded (canonry usage)")] if d.get("record_usage") else []),
                      ("created", f"{d['created_at']} by {d['created_by']}")])
        rows = [[c["name"], c["type"], c["versions"], _alias_map(c["aliases"]), fmt(c["tags"])]
                for c in d["collections"]]
        return head + "\n\n" + (table(rows, ["COLLECTION", "TYPE", "VERSIONS", "ALIASES", "TAGS"])
                                if rows else "(no collections)")
    if kind == "collection":
        head = block([("collection", f"{d['registry']}/{d['name']}"), ("type", d["type"]),
                      ("description", d["description"]), ("tags", d["tags"]),
                      *([("metadata", d["metadata"])] if d.get("metadata") else []),
                      ("aliases", _alias_map(d["aliases"])),
                      ("created", f"{d['created_at']} by {d['created_by']}")])
        rows = [[v["version"], v["artifact"], _aliases(v["aliases"]), fmt(v["tags"]), v["linked_at"],
                 v["linked_by"]] for v in d["links"]]
        return head + "\n\n" + (table(rows, ["VERSION", "ARTIFACT", "ALIASES", "TAGS", "LINKED AT",
                                             "LINKED BY"]) if rows else "(no linked versions)")
    if kind == "link":
        pairs = [("version", f"{d['registry']}/{d['collection']}:{d['version']}"),
                 ("artifact", d["artifact"]), ("aliases", d["aliases"]), ("tags", d["tags"]),
                 ("link note", d["description"]), ("linked", f"{d['linked_at']} by {d['linked_by']}")]
        return _artifact_version_body(d["artifact_version"], pairs)
    if kind == "artifact":
        return block([("artifact", d["name"]), ("type", d["type"]), ("description", d["description"]),
                      ("versions", d["versions"]), ("created", f"{d['created_at']} by {d['created_by']}")])
    links = d.get("links", [])
    linked = table([[f"{x['registry']}/{x['collection']}:{x['version']}", _aliases(x["aliases"])]
                    for x in links], ["LINKED AS", "ALIASES"]) if links else "(not linked to any collection)"
    return _artifact_version_body(d, [("artifact", f"{d['artifact']}:{d['version']}")]) + "\n\n" + linked


def _artifact_version_body(av: dict, head: list) -> str:
    producer = av.get("producer") or {}
    if head[0][0] == "version":
        head = [*head[:2], ("artifact type", av["type"]), *head[2:]]
    else:
        head = [*head, ("type", av["type"])]
    text = block([*head, ("digest", av["digest"]), ("size", f"{human_size(av['size'])} in {len(av['files'])} file(s)"), ("description", av["description"]), ("metadata", av["metadata"]), ("metrics", av["metrics"]), ("inputs", av["inputs"]), ("logged", f"{av['created_at']} by {av['created_by']}"), *([("deleted", f"{av['deleted_at']} by {av['deleted_by']} (its files are no longer kept)")] if av.get("deleted_at") else []), ("git commit", producer.get("git_commit")), ("command", producer.get("command")), ("host", producer.get("host"))])
    files = table([[f["path"], f["size"], f["sha256"][:16]] for f in av["files"][:50]],
                  ["FILE", "SIZE", "SHA256"])
    more = f"\n… and {len(av['files']) - 50} more files" if len(av["files"]) > 50 else ""
    return text + "\n\n" + files + more


def events_table(events) -> str:
    rows = []
    for e in events:
        if e.kind == "alias.moved":
            detail = f"{e.previous_version} → {e.version}"
        elif e.kind == "tags.changed":
            detail = f"{fmt(list(e.previous_tags))} → {fmt(list(e.tags))}"
        elif e.changes:
            detail = ", ".join(f"{k}: {fmt(b)} → {fmt(a)}" for k, (b, a) in e.changes.items())
        else:
            detail = e.version or ""
        rows.append([e.id[:12] + e.id[40:], e.time, e.actor, e.kind, e.target, detail, e.artifact or ""])
    return table(rows, ["EVENT", "TIME", "ACTOR", "KIND", "TARGET", "DETAIL", "ARTIFACT"])


def runs_table(runs) -> str:
    rows = [[r.get("at", ""), r.get("receiver", ""), r.get("kind", ""), r.get("target", ""),
             r.get("status", ""), f"{r.get('duration_ms', 0):g} ms", r.get("error", "")] for r in runs]
    return table(rows, ["AT", "RECEIVER", "EVENT", "TARGET", "STATUS", "DURATION", "ERROR"])
