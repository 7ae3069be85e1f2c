"""History and audit: the changes to a target (or to anything), newest first, read from the index.

Canonry's own commits say what they did in their Canonry-Op trailers (journal), so history reads
commit messages, never tree diffs; the index keeps those records and the keys they touch
(canonry.query.commits). Commits made by hand (git CLI, a merged pull request without canonry
trailers) carry no records: for those, and only those, the paths they changed decide.

`walk` finds the same entries without the index, walking commits one by one: the reference
implementation that tests/test_index.py checks `history` against, and the fallback when the
index is kept busy by other processes.
"""
from __future__ import annotations

import json
from typing import Any

from canonry import journal
from canonry import model as m
from canonry.model import HistoryEntry
from canonry.names import LATEST, parse
from canonry.query.index import IndexUnavailable, for_store
from canonry.query.mainline import commit_author, commit_subject, commit_time, entry, mainline

__all__ = ["history", "target_key_and_path", "walk"]


def target_key_and_path(store: Any, target: str) -> tuple[str, str]:
    """Key matched against journal.keys(), and the store path hand-made commits are checked on."""
    from canonry.errors import NotFound

    view = store.view()
    addr = parse(target)
    try:
        addr = store.classify(view, addr)
    except NotFound:
        if addr.kind != "name":
            raise
        # a registry deleted (or renamed away) keeps its history; nothing found: NotFound then
        return "registry:" + addr.registry, m.registry_dir(addr.registry)
    if addr.kind == "registry":
        return "registry:" + addr.registry, m.registry_dir(addr.registry)
    if addr.kind == "collection":
        return "collection:" + str(addr), m.collection_dir(addr.registry, addr.collection)
    if addr.kind == "link":
        where = addr.collection_path
        if addr.ref == LATEST or (addr.ref.startswith("v") and addr.ref[1:].isdigit()):
            version = view.resolve_link_ref(addr.registry, addr.collection, addr.ref) \
                if addr.ref == LATEST else addr.ref
            return f"link:{where}:{version}", m.link_file(addr.registry, addr.collection, version)
        return f"alias:{where}:{addr.ref}", m.aliases_file(addr.registry, addr.collection)
    if addr.kind == "artifact":
        view.artifact(addr.artifact)
        return "artifact:" + addr.artifact, m.artifact_dir(addr.artifact)
    version = addr.ref
    if version == LATEST:
        version = view.resolve_artifact_ref(addr.artifact, LATEST)
    return f"av:{addr.artifact}:{version}", m.artifact_version_file(addr.artifact, version)


def history(store: Any, target: str | None = None, limit: int | None = None, actor: str | None = None,
            since: str | None = None, registry: str | None = None) -> list[HistoryEntry]:
    """The same entries as `walk`, read from the index (no walk, no tree diff except for
    hand-made commits that changed more paths than the index keeps)."""
    key = path = None
    if target:
        key, path = target_key_and_path(store, target)
    check_path = m.registry_dir(registry) if registry else path
    idx = for_store(store)

    def q(db):
        where: list[str] = []
        args: list[object] = []
        if actor:
            where.append("(c.email = ? OR c.author = ?)")
            args += [actor, actor]
        cutoff = 0
        if since:
            row = db.execute("SELECT max(seq) FROM commits c WHERE c.time < ? AND c.parents <= 1"
                             + (" AND (c.email = ? OR c.author = ?)" if actor else ""),
                             [since] + ([actor, actor] if actor else [])).fetchone()
            cutoff = row[0] or 0
            where.append("c.seq > ? AND c.time >= ?")
            args += [cutoff, since]
        cond = (" AND " + " AND ".join(where)) if where else ""
        if key is not None or registry:
            match_key = key if key is not None else f"registry:{registry}"
            rows = db.execute(
                "SELECT c.seq, h.pos, c.id, c.time, c.email, h.op, h.target, h.before, h.after, h.summary "
                "FROM hkeys k JOIN hist h ON h.seq = k.seq AND h.pos = k.pos JOIN commits c ON c.seq = k.seq "
                "WHERE k.key = ? AND k.pos >= 0" + cond, [match_key, *args]).fetchall()
            if key is not None and registry:
                reg_key = f"registry:{registry}"
                rows = [r for r in rows if db.execute(
                    "SELECT 1 FROM hkeys WHERE key = ? AND seq = ? AND pos = ?", (reg_key, r[0], r[1])).fetchone()]
        else:
            rows = db.execute(
                "SELECT c.seq, h.pos, c.id, c.time, c.email, h.op, h.target, h.before, h.after, h.summary "
                "FROM hist h JOIN commits c ON c.seq = h.seq WHERE 1" + cond, args).fetchall()
        hand_sql = ("SELECT c.seq, c.id, c.time, c.email, c.subject, c.many FROM commits c "
                    "INDEXED BY commits_hand WHERE c.hand = 1 AND c.parents <= 1" + cond)
        hand = db.execute(hand_sql, args).fetchall()
        if check_path is not None and hand:
            touched = {s for (s,) in db.execute(
                "SELECT DISTINCT seq FROM hpaths WHERE path = ? OR (path > ? AND path < ?)",
                (check_path, check_path + "/", check_path + "0"))}
            # a commit that changed more paths than the index keeps (`many`): look at its trees
            hand = [h for h in hand if h[0] in touched
                    or (h[5] and _touches(store.storage, store.storage.commit(h[1].encode()), check_path))]
        return rows, hand

    try:
        rows, hand = idx.query(q)
    except IndexUnavailable:  # kept busy too long: the walk gives the same answer, slower
        return walk(store, target, limit=limit, actor=actor, since=since, registry=registry)
    entries = []
    for seq, pos, cid, stamp, email, op, tgt, before, after, summary in rows:
        entries.append((-seq, pos, HistoryEntry(commit=cid, time=stamp, actor=email, op=op, target=tgt,
                                                before=json.loads(before), after=json.loads(after),
                                                summary=summary)))
    for seq, cid, stamp, email, subject, _ in hand:
        entries.append((-seq, 0, HistoryEntry(commit=cid, time=stamp, actor=email, op="commit",
                                              target=target or "", before=None, after=None, summary=subject)))
    entries.sort(key=lambda e: (e[0], e[1]))
    out: list[HistoryEntry] = []
    last_seq = None
    for neg_seq, _, e in entries:
        if limit and len(out) >= limit and neg_seq != last_seq:
            break
        out.append(e)
        last_seq = neg_seq
    if not out and target:
        store.resolve(target)
    return out


def walk(store: Any, target: str | None, limit: int | None = None, actor: str | None = None,
         since: str | None = None, registry: str | None = None) -> list[HistoryEntry]:
    """The reference implementation of `history`: the same entries, found by walking the commits
    (canonry.query.mainline, each parsed in full by dulwich) and diffing the trees of hand-made
    ones. Slow on a long history; tests/test_index.py checks the index's answers against it."""
    storage = store.storage
    head = storage.head()
    key = path = None
    if target:
        key, path = target_key_and_path(store, target)
    out: list[HistoryEntry] = []
    for commit, _ in mainline(storage, head):
        email, author = commit_author(commit)
        if actor and actor not in (email, author):
            continue
        stamp = commit_time(commit)
        if since and stamp < since:
            if len(commit.parents) <= 1:
                break  # first-parent history is (nearly) time-ordered: older ones follow
            continue
        records = journal.records(commit.message)
        if records:
            for rec in records:
                keys = journal.keys(rec)
                if key is not None and key not in keys:
                    continue
                if registry and f"registry:{registry}" not in keys:
                    continue
                out.append(entry(commit, stamp, email, rec))
        elif len(commit.parents) <= 1 and _touches(storage, commit, path if not registry
                                                          else m.registry_dir(registry)):
            out.append(HistoryEntry(commit=commit.id.decode(), time=stamp, actor=email, op="commit",
                                    target=target or "", before=None, after=None, summary=commit_subject(commit)))
        if limit and len(out) >= limit:
            break
    if not out and target:
        store.resolve(target)  # nothing ever happened to it: say so if it does not exist either
    return out


def _touches(storage: Any, commit: Any, path: str | None) -> bool:
    """Whether `commit` changed `path` (a file or a folder) against its first parent."""
    if path is None:
        return True
    parent = commit.parents[0] if commit.parents else None
    now = storage.lookup(storage.root_tree(commit.id), path)
    before = storage.lookup(storage.root_tree(parent), path) if parent else None
    return now != before
