"""Sync markers: how the next command learns that a writer died before the work tree caught up.

In a checked-out store, a commit lands in two steps: the branch ref moves, then the index and the
store's files are brought to the new head (GitStorage.sync_worktree). A writer killed between the
two leaves the index and files behind the branch (`git status` dirty), possibly a half-written
index (`index.lock`) or file (`*.canonry-tmp`). Scanning the whole work tree at every write to
find out would cost every write; instead each writer leaves a marker, `canonry/syncing/<pid>-<n>`
in the git dir, holding "OLD NEW" (the commits it moves between), from before the ref moves
until its sync is done. It flocks the marker meanwhile, so a marker nobody flocks was left by a
dead process (or one whose sync failed): the next writer repairs what that commit touched.
"""
from __future__ import annotations

import itertools
import os
import threading

from canonry.git import locks

__all__ = ["Marker", "begin", "dead", "finish", "remove"]

_counter = itertools.count()
_lock = threading.Lock()


class Marker:
    """A live writer's marker: its file and the open, flocked descriptor."""

    def __init__(self, path: str, fd: int):
        self.path, self.fd = path, fd


def _dir(git_dir: str) -> str:
    return os.path.join(git_dir, "canonry", "syncing")


def begin(git_dir: str, old: bytes | None, new: bytes) -> Marker | None:
    """Leave a flocked marker saying this process moves the branch from `old` to `new` (None
    without flock, on Windows: there a crashed writer's work tree is repaired by hand)."""
    try:
        import fcntl
    except ImportError:
        return None
    folder = _dir(git_dir)
    with _lock:
        name = f"{os.getpid()}-{next(_counter)}"
    # Made under a dot name and renamed once flocked and written: `dead` never sees a live
    # writer's marker unflocked.
    tmp, path = os.path.join(folder, "." + name), os.path.join(folder, name)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, (old or b"-") + b" " + new + b"\n")
        os.replace(tmp, path)
    except BaseException:
        os.close(fd)
        raise
    return Marker(path, fd)


def remove(path: str) -> None:
    """Remove a dead writer's marker once its repair is written."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def finish(marker: Marker, done: bool) -> None:
    """Let the marker go: removed if the sync was `done`, else left for the next writer."""
    try:
        if done:
            try:
                os.unlink(marker.path)
            except FileNotFoundError:
                pass
    finally:
        os.close(marker.fd)


def dead(git_dir: str) -> list[tuple[str, bytes | None, bytes | None]]:
    """Markers of dead writers (nobody flocks them): (path, old, new) each. One listdir when
    there are none, which is nearly always."""
    try:
        import fcntl
    except ImportError:
        return []
    folder = _dir(git_dir)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    out: list[tuple[str, bytes | None, bytes | None]] = []
    for name in names:
        path = os.path.join(folder, name)
        if name.startswith("."):  # a marker being made; one a killed writer never finished goes
            if (locks.lock_age(path) or 0) > locks.STALE_LOCK_AGE:
                remove(path)
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its writer is alive and syncing
            words = os.read(fd, 200).split()
        finally:
            os.close(fd)
        old = words[0] if words and words[0] != b"-" else None
        new = words[1] if len(words) > 1 else None
        out.append((path, old, new))
    return out
