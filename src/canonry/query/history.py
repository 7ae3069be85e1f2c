"""History of a target, read from commit trailers (no tree diffs for canonry's own commits).

Commits made by hand (git CLI, a merged pull request without canonry trailers) carry no records;
for those, and only those, we compare the target's tree entry with the parent's.
"""
from __future__ import annotations

import time

from canonry import journal
from canonry import model as m
from canonry.model import HistoryEntry
from canonry.names import LATEST, parse


def target_key_and_path(store, target: str) -> tuple[str, str]:
    """Key matched against journal.keys(), and the store path hand-made commits are checked on."""
    view = store.view()
    addr = store._classify(view, parse(target))
    if addr.kind == "registry":
        return "registry:" + addr.registry, m.registry_dir(addr.registry)
    if addr.kind == "collection":
        return "collection:" + str(addr), m.collection_dir(addr.registry, addr.collection)
    if addr.kind == "link":
        where = addr.collection_path
        if addr.ref == LATEST or addr.ref.startswith("v") and addr.ref[1:].isdigit():
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


def walk(store, target: str | None, limit: int | None = None, actor: str | None = None,
         since: str | None = None, registry: str | None = None) -> list[HistoryEntry]:
    storage = store.storage
    head = storage.head()
    key = path = None
    if target:
        key, path = target_key_and_path(store, target)
    out: list[HistoryEntry] = []
    for commit in _mainline(storage, head):
        author = commit.author.decode("utf-8", "replace")
        email = author[author.find("<") + 1:author.rfind(">")] if "<" in author else author
        if actor and actor not in (email, author):
            continue
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(commit.author_time))
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
                out.append(_entry(commit, stamp, email, rec))
        elif len(commit.parents) <= 1 and _touches(storage, commit, path if not registry
                                                          else m.registry_dir(registry)):
            subject = commit.message.decode("utf-8", "replace").splitlines()[0] if commit.message else ""
            out.append(HistoryEntry(commit=commit.id.decode(), time=stamp, actor=email, op="commit",
                                    target=target or "", before=None, after=None, summary=subject))
        if limit and len(out) >= limit:
            break
    if not out and target:
        store.resolve(target)  # nothing ever happened to it: say so if it does not exist either
    return out


def _entry(commit, stamp: str, actor: str, rec: dict) -> HistoryEntry:
    op = rec["op"]
    target = rec.get("target") or rec.get("collection") or rec.get("registry") or rec.get("artifact") or ""
    before = rec.get("before")
    after = rec.get("after")
    if op in ("link",):
        target, before, after = f"{rec['collection']}:{rec['version']}", None, rec["artifact"]
    elif op == "unlink":
        target, before, after = f"{rec['collection']}:{rec['version']}", rec["artifact"], None
    elif op.startswith("alias."):
        target = f"{rec['collection']}:{rec['alias']}"
    elif op == "log":
        after = rec["artifact"]
    elif op == "registry.edit":
        before = {k: v[0] for k, v in rec["changes"].items()}
        after = {k: v[1] for k, v in rec["changes"].items()}
    return HistoryEntry(commit=commit.id.decode(), time=stamp, actor=actor, op=op, target=target,
                        before=before, after=after, summary=rec.get("summary", ""))


def _touches(storage, commit, path: str | None) -> bool:
    if path is None:
        return True
    parent = commit.parents[0] if commit.parents else None
    now = storage.lookup(storage.root_tree(commit.id), path)
    before = storage.lookup(storage.root_tree(parent), path) if parent else None
    return now != before


def _mainline(storage, head):
    """Commits newest first along first parents. A merge with canonry records (canonry merge)
    stands for its branch; a merge without them (made by git) is followed by the commits it
    brought in, so hand-merged pull requests still show up in history."""
    from canonry.sharing.merge import merge_base

    current = head
    while current is not None:
        commit = storage.commit(current)
        yield commit
        if len(commit.parents) > 1 and not journal.records(commit.message):
            base = merge_base(storage.repo, commit.parents[0], commit.parents[1])
            side = []
            c = commit.parents[1]
            while c is not None and c != base:
                side.append(c)
                ps = storage.commit(c).parents
                c = ps[0] if ps else None
            for c in side:
                yield storage.commit(c)
        current = commit.parents[0] if commit.parents else None
