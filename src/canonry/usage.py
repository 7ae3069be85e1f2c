"""The usage log: who used which artifact version, when, and from where, on refs/canonry/usage.

A use is not a change to the registry, so it is never a commit on the store branch: the log
is its own line of commits on `refs/canonry/usage`, one commit per recorded use, each adding
one small JSON file:

    <artifact>/<vK>/<YYYY-MM>/<DD>T<HHMMSS>.<microseconds>Z-<random>.json

Every record has its own path (the random part makes two uses in one second two files), so
two clones' logs merge by taking the union of their trees: no path is ever written twice
with different bytes, hence no conflict (`merge_usage`). Records of one version sit under one
folder (`usage TARGET` reads one folder), and by month (`--since` skips older months unread).
A record is added as everything else is: new objects, then a compare-and-swap of the ref
under git's lock protocol, redone on a lost race, so concurrent writers in one clone lose
nothing. The ref is fetched, merged and pushed with the store (sharing/remote.py).
"""
from __future__ import annotations

import json
import os
import random
import secrets
import time
from typing import TYPE_CHECKING

from canonry.errors import Conflict
from canonry.git import reader

if TYPE_CHECKING:
    pass

__all__ = ["RECORD_BUDGET_S", "USAGE_REF", "UsageLog", "consumer_location", "iso_since", "merge_usage"]

USAGE_REF = b"refs/canonry/usage"
RECORD_BUDGET_S = 10.0  # how long recording a use keeps retrying lost races on the ref


def consumer_location(store_repo_path: str | None = None, cwd: str | None = None) -> dict:
    """Where a use happens: host, working directory, and the HEAD commit of the git repository
    the working directory is in (the consumer's code), None outside one, or when that
    repository is the store's own (its commit says nothing about the consumer)."""
    import socket

    from canonry.git.storage import find_repo_path, head_commit_of

    cwd = cwd or os.getcwd()
    git_commit = None
    try:
        repo = find_repo_path(cwd)
        if store_repo_path is None or os.path.realpath(repo) != os.path.realpath(store_repo_path):
            head = head_commit_of(repo)
            git_commit = head.decode() if head else None
    except Exception:  # not in a repository, or one git reads and dulwich cannot: no commit
        git_commit = None
    return {"host": socket.gethostname(), "cwd": cwd, "git_commit": git_commit}


class UsageLog:
    """The usage records of one repository (a GitStorage)."""

    def __init__(self, storage):
        self.storage = storage

    def head(self) -> bytes | None:
        return reader.read_ref(self.storage.common_dir, USAGE_REF)

    def record(self, rec: dict, author, when: float | None = None) -> str:
        """Add one use (`rec` holds at least `artifact` ARTIFACT:vK and `at`; its `id` is set
        here, unique, and orders uses within one second by `when`'s microseconds, the time.time()
        `at` was taken from); returns its path in the log."""
        from dulwich.file import FileLocked
        from dulwich.objects import Blob

        name, _, version = rec["artifact"].partition(":")
        at = rec["at"]  # 2026-11-01T12:34:56Z
        micro = int(when % 1 * 1_000_000) if when is not None else 0
        rec["id"] = f"{at[:10]}T{at[11:19].replace(':', '')}.{micro:06d}Z-{secrets.token_hex(4)}"
        path = f"{name}/{version}/{at[:7]}/{rec['id'][8:]}.json"
        blob = Blob.from_string((json.dumps(rec, sort_keys=True) + "\n").encode("utf-8"))
        deadline = time.monotonic() + RECORD_BUDGET_S
        attempt = 0
        while True:
            head = self.head()
            objects: list = [blob]
            tree = self.storage.build_tree(self._tree(head), {path: (0o100644, blob.id)}, objects)
            commit_id = self.storage.write_side_commit(tree, [head] if head else [], author.git,
                                                       f"usage: {rec['artifact']} by {rec.get('actor', '?')}\n",
                                                       objects)
            try:
                if reader.update_ref(self.storage.common_dir, USAGE_REF, head, commit_id, fsync=False):
                    return path
            except FileLocked:
                pass
            attempt += 1
            if time.monotonic() > deadline and attempt >= 3:
                raise Conflict(f"could not record the use: {USAGE_REF.decode()} kept moving")
            time.sleep(random.uniform(0, min(0.2, 0.002 * 2 ** min(attempt, 8))))

    def _tree(self, head: bytes | None) -> bytes | None:
        return self.storage.commit(head).tree if head else None

    def read(self, artifact: str, version: str | None = None, since: str | None = None) -> list[dict]:
        """Uses of ARTIFACT (every version, or `version`), at or after `since` (ISO 8601 UTC),
        oldest first."""
        tree = self._tree(self.head())
        if tree is None:
            return []
        versions = [version] if version else sorted(self.storage.names(tree, artifact))
        out = []
        for v in versions:
            for month in sorted(self.storage.names(tree, f"{artifact}/{v}")):
                if since and month < since[:7]:
                    continue
                for _name, _mode, sha in self.storage.listdir(tree, f"{artifact}/{v}/{month}"):
                    try:
                        rec = json.loads(self.storage.blob(sha))
                    except ValueError:
                        continue  # not ours (a hand-written file): skip it
                    if isinstance(rec, dict) and (not since or str(rec.get("at", "")) >= since):
                        out.append(rec)
        out.sort(key=lambda r: (str(r.get("at", "")), str(r.get("id", ""))))
        return out


def merge_usage(storage, ours: bytes, theirs: bytes, author) -> bytes:
    """A usage commit with both parents whose tree is the union of both sides' trees."""

    objects: list = []
    tree = _union(storage, storage.commit(ours).tree, storage.commit(theirs).tree, objects)
    return storage.write_side_commit(tree, [ours, theirs], author.git, "merge usage records\n", objects)


def _union(storage, a: bytes, b: bytes, out: list) -> bytes:
    """The tree holding every entry of trees `a` and `b` (folders merged; for a file present
    on both sides with different bytes, which canonry never writes, `a`'s)."""
    import stat

    from dulwich.objects import Tree

    if a == b:
        return a
    entries = {e.path: (e.mode, e.sha) for e in storage.tree(a).iteritems()}
    for e in storage.tree(b).iteritems():
        mine = entries.get(e.path)
        if mine is None:
            entries[e.path] = (e.mode, e.sha)
        elif mine[1] != e.sha and stat.S_ISDIR(mine[0]) and stat.S_ISDIR(e.mode):
            entries[e.path] = (stat.S_IFDIR, _union(storage, mine[1], e.sha, out))
    tree = Tree()
    for name, (mode, sha) in entries.items():
        tree.add(name, mode, sha)
    out.append(tree)
    return tree.id



def iso_since(since: str | None) -> str | None:
    """A `--since` value (a date 2026-11-01, or a time 2026-11-01T12:00[:00][Z]) as ISO 8601
    UTC; None when not given. InvalidInput for anything else (names.iso_since)."""
    from canonry.names import iso_since as parse_since

    return parse_since(since) if since else None
