"""The commits `canonry history` lists, in its order, and what each of them says.

One walk, shared by the index (which records it) and by history.walk (the slow reference the
index is checked against): newest first along the branch's first parents (canonry.git.graph).
A merge with canonry records (`canonry merge`) stands for its branch; a merge without them (made
by git: a pull request merged on a forge) is followed by the commits it brought in, from its
second parent back to the merge base, so hand-merged work still shows up in history.

Each commit is told as history by `commit_time`, `commit_author`, `commit_subject` and `entry`
(a Canonry-Op record as a HistoryEntry).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from canonry import journal
from canonry.git.graph import first_parents, merge_base
from canonry.model import HistoryEntry

__all__ = [
    "LightCommit",
    "commit_author",
    "commit_subject",
    "commit_time",
    "entry",
    "light_commit",
    "mainline",
]


class LightCommit:
    """The parts of a commit history needs, parsed from the raw object (dulwich's full parse
    costs several times more, and a rebuild of the index reads every commit of the branch)."""

    __slots__ = ("author", "author_time", "id", "message", "parents")

    def __init__(self, sha: bytes, raw: bytes):
        self.id = sha
        head, _, self.message = raw.partition(b"\n\n")
        self.parents: list[bytes] = []
        self.author = b""
        self.author_time = 0
        for line in head.split(b"\n"):
            if line.startswith(b"parent "):
                self.parents.append(line[7:47])
            elif line.startswith(b"author "):
                # author NAME <EMAIL> TIME TZ
                rest = line[7:]
                end = rest.rfind(b">")
                self.author = rest[:end + 1]
                try:
                    self.author_time = int(rest[end + 1:].split()[0])
                except (ValueError, IndexError):
                    self.author_time = 0


def light_commit(storage: Any, sha: bytes) -> Any:
    """A LightCommit of `sha`, or dulwich's parsed Commit when the raw object cannot be read."""
    try:
        type_num, raw = storage.repo.object_store.get_raw(sha)
        if type_num == 1:
            return LightCommit(sha, raw)
    except Exception:
        pass
    return storage.commit(sha)


def mainline(storage: Any, head: bytes | None,
             load: Callable[[Any, bytes], Any] | None = None) -> Iterator[tuple[Any, bool]]:
    """(commit, on the first-parent line) newest first, lazily, in the order history lists them.

    `load(storage, id)` reads each commit (default: dulwich's full parse, `storage.commit`; the
    index passes `light_commit`)."""
    for commit in first_parents(storage, head, load=load):
        yield commit, True
        if len(commit.parents) > 1 and not journal.records(commit.message):
            base = merge_base(storage, commit.parents[0], commit.parents[1])
            for side in first_parents(storage, commit.parents[1], stop=base, load=load):
                yield side, False


def commit_time(commit: Any) -> str:
    """The author time, as history shows it: ISO 8601 UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(commit.author_time))


def commit_author(commit: Any) -> tuple[str, str]:
    """(email, full author): history's actor is the email; --actor matches either."""
    author = commit.author.decode("utf-8", "replace")
    email = author[author.find("<") + 1:author.rfind(">")] if "<" in author else author
    return email, author


def commit_subject(commit: Any) -> str:
    """The first line of the message: the summary of a commit made by hand."""
    return commit.message.decode("utf-8", "replace").splitlines()[0] if commit.message else ""


def entry(commit: Any, stamp: str, actor: str, rec: dict) -> HistoryEntry:
    """One Canonry-Op record of `commit` as a history entry."""
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
    elif op == "store.storage":
        target = "storage"
        before, after = rec["changes"]["storage"]
    elif op in ("registry.edit", "collection.edit", "artifact.edit", "registry.protect", "registry.unprotect"):
        before = {k: v[0] for k, v in rec["changes"].items()}
        after = {k: v[1] for k, v in rec["changes"].items()}
    elif op in ("registry.rename", "collection.rename"):
        before, after = target, rec["to"]
    elif op == "registry.delete":
        before, after = {"collections": rec.get("collections", []), "links": rec.get("links", 0)}, None
    elif op == "collection.delete":
        before, after = {"links": rec.get("links", 0), "aliases": rec.get("aliases", {})}, None
    elif op == "collection.create":
        after = {"type": rec.get("type")}
    elif op == "artifact.delete":
        before, after = rec["artifact"], None
    elif op in ("member.set", "member.rm"):  # name the member: MEMBER=ROLE on each side
        member = rec.get("member", "")
        before = {member: before} if before else None
        after = {member: after} if after else None
    elif op == "store.admin":
        target = "store admins"
        before, after = (None, rec.get("member")) if rec.get("added") else (rec.get("member"), None)
    elif op == "store.group":
        target = f"group:{rec.get('group', '')}"
        after = rec.get("members") or None
    return HistoryEntry(commit=commit.id.decode(), time=stamp, actor=actor, op=op, target=target,
                        before=before, after=after, summary=rec.get("summary", ""))
