"""The record of automation runs, kept in git notes on refs/notes/canonry-automations.

One note per store commit, one JSON object per line: which plugin or automation handled which
event, with what status, how long it took, and the error if any. Notes travel with the
repository (`git push origin refs/notes/*`), and `git notes --ref canonry-automations show C`
reads them. Notes are written like everything else: new tree + commit, then compare-and-swap
of the notes ref, retried on a lost race.
"""
from __future__ import annotations

import json
import random
import time
from typing import TYPE_CHECKING

from dulwich.file import FileLocked

if TYPE_CHECKING:
    pass

__all__ = ["NOTES_REF", "RunLog", "merge_notes"]

NOTES_REF = b"refs/notes/canonry-automations"


class RunLog:
    def __init__(self, storage):
        self.storage = storage

    def _head(self):
        try:
            return self.storage.repo.refs[NOTES_REF]
        except KeyError:
            return None

    def _note_tree(self, notes_commit):
        return self.storage.commit(notes_commit).tree if notes_commit else None

    def read(self, commit_hex: str, notes_commit=None) -> list[dict]:
        notes_commit = notes_commit or self._head()
        tree = self._note_tree(notes_commit)
        if tree is None:
            return []
        entry = (self.storage.lookup(tree, f"{commit_hex[:2]}/{commit_hex[2:]}")
                 or self.storage.lookup(tree, commit_hex))  # git writes flat notes while few
        if entry is None:
            return []
        out = []
        for line in self.storage.blob(entry[1]).decode("utf-8", "replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a hand-written note line: not ours
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def all(self) -> list[tuple[str, dict]]:
        """(annotated commit, record) for every recorded run."""
        head = self._head()
        tree = self._note_tree(head)
        out = []
        for name, _mode, _sha in self.storage.listdir(tree, ""):
            if len(name) == 2:
                for rest, _, _ in self.storage.listdir(tree, name):
                    out += [(name + rest, r) for r in self.read(name + rest, head)]
            elif len(name) == 40:
                out += [(name, r) for r in self.read(name, head)]
        return out

    def append(self, commit_hex: str, records: list[dict], author) -> None:
        if not records:
            return
        from dulwich.objects import Blob, Commit

        for attempt in range(30):
            head = self._head()
            existing = self.read(commit_hex, head) if head else []
            body = "".join(json.dumps(r, sort_keys=True) + "\n" for r in existing + records)
            blob = Blob.from_string(body.encode("utf-8"))
            objects = [blob]
            base_tree = self._note_tree(head)
            path = f"{commit_hex[:2]}/{commit_hex[2:]}"
            changes = {path: (0o100644, blob.id)}
            if base_tree is not None and self.storage.lookup(base_tree, commit_hex):
                changes[commit_hex] = None  # fold a flat note written by git into the fan-out
            tree = self.storage.build_tree(base_tree, changes, objects)
            commit = Commit()
            commit.tree = tree
            commit.parents = [head] if head else []
            commit.author = commit.committer = author.git
            commit.author_time = commit.commit_time = int(time.time())
            commit.author_timezone = commit.commit_timezone = 0
            commit.message = f"automation runs for {commit_hex[:12]}\n".encode()
            self.storage.write_objects([*objects, commit])
            try:
                if head is None:
                    ok = self.storage.repo.refs.add_if_new(NOTES_REF, commit.id)
                else:
                    ok = self.storage.repo.refs.set_if_equals(NOTES_REF, head, commit.id)
            except FileLocked:
                ok = False
            if ok:
                return
            time.sleep(random.uniform(0, min(0.2, 0.002 * 2 ** attempt)))
        raise RuntimeError("could not record automation runs: the notes ref kept moving")


def merge_notes(storage, ours: bytes, theirs: bytes, author) -> bytes:
    """A notes commit with both parents whose notes hold the lines of both sides (union)."""
    from dulwich.objects import Blob

    log = RunLog(storage)
    paths: dict[str, list[bytes]] = {}
    for head in (ours, theirs):
        tree = storage.commit(head).tree
        for name, _, _ in storage.listdir(tree, ""):
            if len(name) == 2:
                for rest, _, _ in storage.listdir(tree, name):
                    paths.setdefault(name + rest, []).append(head)
            elif len(name) == 40:
                paths.setdefault(name, []).append(head)
    changes, objects = {}, []
    for commit_hex, heads in paths.items():
        lines: list[str] = []
        for head in heads:
            for rec in log.read(commit_hex, head):
                line = json.dumps(rec, sort_keys=True)
                if line not in lines:
                    lines.append(line)
        blob = Blob.from_string("".join(line + "\n" for line in lines).encode("utf-8"))
        objects.append(blob)
        changes[f"{commit_hex[:2]}/{commit_hex[2:]}"] = (0o100644, blob.id)
    tree = storage.build_tree(None, changes, objects)
    return storage.write_side_commit(tree, [ours, theirs], author.git, "merge automation run notes\n", objects)
