"""Events: what a commit changed in registry terms, computed from the diff with its parent.

Because events come from tree diffs and not from the API's code path, a change made by
canonry, a hand edit committed with git, a merged pull request and a pull from a remote all
produce the same events. For a merge, the diff is taken against the first parent: what the
merge brought into the branch.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dulwich.diff_tree import tree_changes

from canonry import model as m
from canonry.git.graph import can_fast_forward, first_parents

__all__ = [
    "KINDS", "Event", "LazyEvents", "commit_actor_time", "commits_in_range", "diff_events", "events_for_commit",
    "off_first_parent_line",
]

KINDS = (
    "link.created", "link.removed",
    "alias.added", "alias.moved", "alias.removed",
    "artifact.logged",
    "tags.changed",
    "collection.created", "collection.changed",
    "registry.created", "registry.changed",
)


@dataclass(frozen=True)
class Event:
    """One change, after it was committed. `id` is stable: `<commit>:<position>`."""

    kind: str
    id: str
    commit: str
    actor: str
    time: str
    registry: str | None = None
    collection: str | None = None  # REGISTRY/COLLECTION
    version: str | None = None  # vN of the link concerned
    alias: str | None = None
    previous_version: str | None = None  # for alias.moved (and alias.removed: the version it left)
    artifact: str | None = None  # ARTIFACT:vK concerned
    tags: tuple[str, ...] = ()  # the tags after a tags.changed
    previous_tags: tuple[str, ...] = ()
    target: str = ""  # the address the event is about
    changes: dict = field(default_factory=dict, hash=False, compare=False)  # settings: field -> [before, after]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tags"], d["previous_tags"] = list(self.tags), list(self.previous_tags)
        return d


class LazyEvents(Sequence):
    """Events computed on first use: a policy plugin with nothing configured never pays for
    diffing the commit."""

    def __init__(self, compute):
        self._compute = compute
        self._events: list[Event] | None = None

    def _all(self) -> list[Event]:
        if self._events is None:
            self._events = self._compute()
        return self._events

    def __getitem__(self, i):
        return self._all()[i]

    def __len__(self) -> int:
        return len(self._all())

    def __iter__(self):
        return iter(self._all())


def commit_actor_time(commit) -> tuple[str, str]:
    author = commit.author.decode("utf-8", "replace")
    email = author[author.find("<") + 1:author.rfind(">")] if "<" in author else author
    return email, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(commit.author_time))


def events_for_commit(storage, commit_id: bytes, read, paths=None) -> list[Event]:
    """Events of one commit against its first parent. `read(sha, path)` parses a stored record."""
    commit = storage.commit(commit_id)
    parent = commit.parents[0] if commit.parents else None
    actor, when = commit_actor_time(commit)
    return diff_events(storage, parent, commit_id, read, actor, when, commit_id.decode(), paths)


def _tree_diff(storage, old_root, new_root):
    for ch in tree_changes(storage.repo.object_store, old_root, new_root):
        old_sha = ch.old.sha if ch.old is not None else None
        new_sha = ch.new.sha if ch.new is not None else None
        path = (ch.new.path if ch.new is not None and ch.new.path else ch.old.path).decode()
        yield path, old_sha, new_sha


def _path_diff(storage, old_root, new_root, paths):
    """The same as _tree_diff, when the changed paths are known (canonry's own commits): it
    costs as much as the changed files, not as the trees they sit in."""
    for path in sorted(paths):
        old = storage.lookup(old_root, path)
        new = storage.lookup(new_root, path)
        if old != new:
            yield path, old[1] if old else None, new[1] if new else None


def diff_events(storage, old_commit, new_commit, read, actor: str, when: str, commit_hex: str,
                paths=None) -> list[Event]:
    """Events between two commits; `paths`, when given, are all the store paths that differ."""
    old_root = storage.root_tree(old_commit)
    new_root = storage.root_tree(new_commit)
    raw: list[dict] = []
    changes = (_tree_diff(storage, old_root, new_root) if paths is None
               else _path_diff(storage, old_root, new_root, paths))
    for path, old_sha, new_sha in changes:
        kind = m.kind_of_path(path)
        if kind is None:
            continue
        before = read(old_sha, path) if old_sha else None
        after = read(new_sha, path) if new_sha else None
        raw += _events_of_file(kind, path, before, after)
    for e in raw:  # alias events name the artifact version the alias points (or pointed) at
        if e["kind"].startswith("alias.") and e.get("version"):
            root = old_root if e["kind"] == "alias.removed" else new_root
            reg, coll = e["collection"].split("/")
            path = m.link_file(reg, coll, e["version"])
            entry = storage.lookup(root, path)
            if entry is not None:
                e["artifact"] = read(entry[1], path)["artifact"]
    order = {"registry": 0, "collection": 1, "artifact": 2, "link": 3, "alias": 4, "tags": 5}
    raw.sort(key=lambda e: order.get(e["kind"].split(".")[0], 9))
    return [Event(id=f"{commit_hex}:{i}", commit=commit_hex, actor=actor, time=when, **e)
            for i, e in enumerate(raw)]


def _events_of_file(kind: str, path: str, before: dict | None, after: dict | None) -> list[dict]:
    parts = path.split("/")
    if kind == "registry":
        reg = parts[1]
        if before is None and after is not None:
            return [dict(kind="registry.created", registry=reg, target=reg)]
        if before is not None and after is not None:
            changes = _setting_changes(before, after, skip=("format",))
            if changes:
                return [dict(kind="registry.changed", registry=reg, target=reg, changes=changes)]
        return []
    if kind in ("collection", "aliases", "link"):
        reg, coll = parts[1], parts[2]
        where = f"{reg}/{coll}"
        base: dict[str, Any] = dict(registry=reg, collection=where)
        if kind == "collection":
            if before is None and after is not None:
                return [dict(kind="collection.created", target=where, **base)]
            if before is None or after is None:
                return []
            out = []
            if before.get("tags", []) != after.get("tags", []):
                out.append(dict(kind="tags.changed", target=where, tags=tuple(after.get("tags", [])),
                                previous_tags=tuple(before.get("tags", [])), **base))
            changes = _setting_changes(before, after, skip=("format", "tags", "next_version"))
            if changes:
                out.append(dict(kind="collection.changed", target=where, changes=changes, **base))
            return out
        if kind == "aliases":
            old = (before or {}).get("aliases", {})
            new = (after or {}).get("aliases", {})
            out = []
            for alias in sorted(set(old) | set(new)):
                o, n = old.get(alias), new.get(alias)
                if o == n:
                    continue
                if o is None:
                    out.append(dict(kind="alias.added", alias=alias, version=n,
                                    target=f"{where}:{alias}", **base))
                elif n is None:
                    out.append(dict(kind="alias.removed", alias=alias, version=o, previous_version=o,
                                    target=f"{where}:{alias}", **base))
                else:
                    out.append(dict(kind="alias.moved", alias=alias, version=n, previous_version=o,
                                    target=f"{where}:{alias}", **base))
            return out
        version = parts[4][:-5]
        target = f"{where}:{version}"
        if before is None and after is not None:
            return [dict(kind="link.created", version=version, artifact=after["artifact"],
                         target=target, tags=tuple(after.get("tags", [])), **base)]
        if before is not None and after is None:
            return [dict(kind="link.removed", version=version, artifact=before["artifact"],
                         target=target, **base)]
        if before and after and before.get("tags", []) != after.get("tags", []):
            return [dict(kind="tags.changed", version=version, artifact=after["artifact"], target=target,
                         tags=tuple(after.get("tags", [])), previous_tags=tuple(before.get("tags", [])),
                         **base)]
        return []
    if kind == "artifact_version" and before is None and after is not None:
        ref = f"{parts[1]}:{parts[2][:-5]}"
        return [dict(kind="artifact.logged", artifact=ref, target=ref)]
    return []


def _setting_changes(before: dict, after: dict, skip=()) -> dict:
    keys = [k for k in dict.fromkeys(list(before) + list(after)) if k not in skip]
    return {k: [before.get(k), after.get(k)] for k in keys if before.get(k) != after.get(k)}


def commits_in_range(storage, spec: str) -> list[bytes]:
    """Commits of `A..B` (or a single rev: that commit), oldest first, along B's first parents,
    down to the first one that A already has (as `git log --first-parent A..B`). A merge stands
    for what it brought in: its events are taken against its first parent."""
    if ".." not in spec:
        return [storage.resolve_rev(spec)]
    base, _, head = spec.partition("..")
    if head.startswith("."):
        head = head[1:]  # A...B: the same commits for a first-parent walk from B
    base_id = storage.resolve_rev(base) if base else None
    head_id = storage.resolve_rev(head or storage.branch)
    out = []
    for commit in first_parents(storage, head_id, stop=base_id):
        if base_id is not None and can_fast_forward(storage, commit.id, base_id):
            break  # A already has it (A moved on, or was rebased onto it)
        out.append(commit.id)
    return out[::-1]



# How far back in commit time the walk of off_first_parent_line looks below the oldest commit
# asked about: clocks of different machines may disagree (a day is far more than they do).
CLOCK_SLACK = 24 * 3600


def off_first_parent_line(storage, head: bytes | None, commits: list[bytes]) -> list[bytes]:
    """Those of `commits` that are not on `head`'s first-parent line, in their order.

    The first-parent line of the store branch is every state the branch has held: a commit a
    merge brought in from a side branch is not on it (its change reached the branch as the
    merge's, and is delivered as the merge's events). The walk from `head` stops when all are
    found, or at commits older than the oldest asked about (less CLOCK_SLACK)."""
    todo = set(commits)
    if head is None or not todo:
        return list(commits)
    floor = min(storage.commit(c).commit_time for c in todo) - CLOCK_SLACK
    for commit in first_parents(storage, head):
        todo.discard(commit.id)
        if not todo or commit.commit_time < floor:
            break
    return [c for c in commits if c in todo]
