"""Reflogs: the line git appends to `logs/<ref>` (and `logs/HEAD`) each time a ref moves, so
that `git reflog main` lists canonry's commits as it lists git's own.

Which refs are logged follows git (`core.logAllRefUpdates`, refs/files-backend.c): unset means
`true` in a repository with a work tree and `false` in a bare one; `true` creates the logs of
branches, remote-tracking refs, notes and HEAD; `always` of every ref; a log that exists is
appended to whatever the setting. When the ref moved is the branch HEAD names, HEAD's log gets
the line too, as git writes it.

The line is written while the ref's lock is held, before the lock is renamed over the ref (as
git does), with one write() on a file opened O_APPEND: concurrent writers never interleave
within a line, and the lines of one ref come in the order its moves happened.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

__all__ = ["ZERO_ID", "Reflog", "line"]

ZERO_ID = b"0" * 40
_AUTOCREATED = (b"refs/heads/", b"refs/remotes/", b"refs/notes/")
_TRUE = {"true", "yes", "on", "1", ""}


def line(old: bytes | None, new: bytes, committer: bytes, when: int, offset: int, message: str) -> bytes:
    """One reflog line: `OLD NEW Name <email> TIME +HHMM<TAB>message`; the message on one line,
    its runs of blanks made one space (git's copy_reflog_msg)."""
    sign = "-" if offset < 0 else "+"
    minutes = abs(offset) // 60
    text = " ".join(message.split())
    return b"%s %s %s %d %s%02d%02d\t%s\n" % (old or ZERO_ID, new, committer, when, sign.encode(),
                                              minutes // 60, minutes % 60, text.encode("utf-8"))


class Reflog:
    """Where one repository's ref moves are logged, and the logging itself.

    `storage` gives `git_dir`, `common_dir`, `is_bare`, `config(section, key)` and
    `commit(sha)`; `identity()` the committer (`Name <email>` bytes) of a move that is not a
    commit canonry made (a fast-forward)."""

    def __init__(self, storage, identity: Callable[[], bytes]):
        self.storage = storage
        self.identity = identity

    def mode(self) -> str:
        """`none`, `normal` or `always` (what git's core.logAllRefUpdates means here)."""
        value = self.storage.config(b"core", b"logAllRefUpdates")
        if value is None:
            return "none" if self.storage.is_bare else "normal"
        value = value.strip().lower()
        if value == "always":
            return "always"
        return "normal" if value in _TRUE else "none"

    def writer(self, ref: bytes, old: bytes | None, new: bytes, message: str) -> Callable[[], None]:
        """What reader.update_ref calls under the ref's lock once it knows the ref moves.

        A message starting with `commit` is a commit canonry made: the line carries that
        commit's committer and time, as git's does. Any other move carries `identity()` and now."""

        def write() -> None:
            mode = self.mode()
            targets = [(os.path.join(self.storage.common_dir, "logs", os.fsdecode(ref)),
                        mode == "always" or (mode == "normal" and ref.startswith(_AUTOCREATED)))]
            if self._head_names(ref):
                targets.append((os.path.join(self.storage.git_dir, "logs", "HEAD"), mode != "none"))
            if not any(create or os.path.exists(path) for path, create in targets):
                return
            if message.startswith("commit"):
                commit = self.storage.commit(new)
                who, when, offset = commit.committer, commit.commit_time, commit.commit_timezone
            else:
                who, when = self.identity(), int(time.time())
                offset = time.localtime(when).tm_gmtoff or 0
            entry = line(old, new, who, when, offset, message)
            for path, create in targets:
                _append(path, entry, create)

        return write

    def _head_names(self, ref: bytes) -> bool:
        try:
            with open(os.path.join(self.storage.git_dir, "HEAD"), "rb") as f:
                return f.read().strip() == b"ref: " + ref
        except OSError:
            return False


def _append(path: str, entry: bytes, create: bool) -> None:
    """Append one line in one write; a log that cannot be written is a warning (the commit,
    the audit log that matters, has landed or is about to)."""
    flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT if create else 0)
    try:
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:
            if not create:
                return
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, flags, 0o644)
        try:
            os.write(fd, entry)
        finally:
            os.close(fd)
    except OSError as e:
        sys.stderr.write(f"canonry: warning: could not write the reflog {path}: {e}\n")
