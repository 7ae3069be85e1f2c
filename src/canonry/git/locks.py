"""Canonry's own locks between processes: one class, FileLock, an flock(2) on a file that stays.

Two locks use it: the gc lock (`canonry/gc.lock` in the common git dir: one process at a time
merges, deletes or repacks packs) and the work-tree lock (`canonry/worktree.lock` in the git
dir: one writer at a time brings the index and files to the branch head).

Why flock on a file that stays: taking and releasing it are two system calls, far cheaper
than creating and deleting a lock file (docs/performance.md), and the housekeeping after every
commit takes the gc lock. A process that dies, even by SIGKILL, releases it with its file descriptor, so no lock is
ever left stale and nobody has to guess when a lock file is old enough to break. Without fcntl
(Windows) the file's existence is the lock; one left by a crashed process is broken after
`stale_after` seconds.

Not FileLock, on purpose: the ref lock of `reader.update_ref` (git's `REF.lock`, created with
O_EXCL and renamed over the ref) and the `index.lock` dulwich takes when it writes the index.
Those are git's own protocol, shared with the git CLI and every other git tool working on the
same repository, so they must stay exactly as git does them. But such a lock file outlives a
writer killed while holding it, and git's protocol has no owner to ask. So canonry also flocks
every git lock file it creates, for as long as it holds it (`hold`), and `break_if_stale`
removes a lock file that nobody flocks and that is older than STALE_LOCK_AGE: not canonry's
live lock (it would be flocked), and not git's (git holds ref locks for milliseconds).
"""
from __future__ import annotations

import os
import threading
import time
from types import ModuleType

__all__ = ["STALE_LOCK_AGE", "FileLock", "break_if_stale", "hold", "lock_age", "lock_held",
           "remove_stale"]

# A git lock file nobody flocks is stale once this old. git holds a ref lock for the few
# milliseconds between creating it and renaming it over the ref (an fsync of one small file at
# worst); canonry flocks its own within microseconds of creating them. 2 s is hundreds of times
# the longest of those, and short enough that a dead writer's lock costs the next write a pause,
# not a failure. Without fcntl canonry's live locks cannot be told apart: NO_FLOCK_STALE_AGE.
STALE_LOCK_AGE = 2.0
NO_FLOCK_STALE_AGE = 600.0


def _fcntl() -> ModuleType | None:
    """fcntl where the platform has it (looked up at each use: cheap, and tests can hide it)."""
    try:
        import fcntl
    except ImportError:
        return None
    return fcntl


def hold(fd: int) -> None:
    """Mark the git lock file open at `fd` as held by a live process (see the module notes)."""
    fcntl = _fcntl()
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # someone breaking it flocks it for a moment: it is ours all the same
            pass


def lock_age(path: str) -> float | None:
    """Seconds since the lock file at `path` was last written; None if it is gone."""
    try:
        return max(0.0, time.time() - os.stat(path).st_mtime)
    except OSError:
        return None


def break_if_stale(path: str, stale_after: float = STALE_LOCK_AGE) -> bool:
    """Remove the git lock file at `path` if it was left by a dead process: nobody flocks it and
    it is older than `stale_after`. True if it is gone (removed here or by its holder).

    Safe against a second breaker and a new holder: the file is removed only while this process
    flocks it and only if the path still names the very file flocked (a new lock, created after
    the old one went, is another file)."""
    fcntl = _fcntl()
    if fcntl is None:
        stale_after = max(stale_after, NO_FLOCK_STALE_AGE)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if time.time() - st.st_mtime < stale_after:
            return False
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a live canonry holds it
        try:
            now = os.stat(path)
        except FileNotFoundError:
            return True
        if (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev):
            return False
        os.unlink(path)
        return True
    finally:
        os.close(fd)


def remove_stale(folder: str, match, stale_after: float = STALE_LOCK_AGE) -> int:
    """Remove the temporary files in `folder` whose names `match` (a predicate) that were left
    by dead processes: nobody flocks them (their writers `hold` them while writing) and they are
    older than `stale_after` (break_if_stale). Returns the bytes freed."""
    try:
        names = [n for n in os.listdir(folder) if match(n)]
    except FileNotFoundError:
        return 0
    freed = 0
    for name in names:
        path = os.path.join(folder, name)
        try:
            size = os.lstat(path).st_size
        except OSError:
            continue
        try:
            if break_if_stale(path, stale_after):
                freed += size
        except OSError:  # not ours to remove (permissions): it stays
            pass
    return freed


def lock_held(path: str, lock: str, shown: str) -> Exception:
    """The error for a git lock still held when the wait ran out: dulwich's FileLocked (what
    callers already catch), with `message`, one line naming the lock file `shown`, its age and
    what to do."""
    from dulwich.file import FileLocked

    age = lock_age(lock)
    fcntl = _fcntl()
    live = False
    if fcntl is not None:
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                live = True
            finally:
                os.close(fd)
    who = "a running canonry process" if live else "another process (git?)"
    err = FileLocked(path, lock)
    err.message = (f"{shown} has been held for {age or 0:.0f} s by {who}; if no git or canonry "  # type: ignore[attr-defined]
                   "process is running, delete it")
    return err


class FileLock:
    """An exclusive lock between processes and between threads, on the file at `path`.

    `acquire()` takes it if it is free (False at once if not); `acquire(wait=seconds)` waits
    for it within that time budget and raises dulwich's FileLocked when the budget runs out
    (the error the callers of git's own locks already handle). `with lock:` waits up to the
    `wait` given to the constructor. `release()` may be called from another thread than the
    one that acquired (a background thread finishes the work, then lets go).

    The file descriptor belongs to the process that opened it: a forked child opens its own,
    so it never believes it holds its parent's lock.

    Args:
      path: the lock file (created, with its folder, on first use; never deleted under flock).
      wait: seconds `with lock:` waits before it raises FileLocked.
      stale_after: without fcntl only, the age after which a lock file is taken for one left
        by a crashed process and broken.
    """

    def __init__(self, path: str, wait: float = 30.0, stale_after: float = 600.0):
        self.path = path
        self.wait = wait
        self.stale_after = stale_after
        self._fd: int | None = None
        self._pid = os.getpid()
        # flock excludes open files, not threads: two threads on one descriptor would both
        # "get" it. A plain Lock (not an RLock) can be released by another thread.
        self._mutex = threading.Lock()
        self._held = False

    # ---- taking and letting go --------------------------------------------------------------
    def acquire(self, wait: float = 0.0) -> bool:
        """Take the lock.

        Args:
          wait: 0 — try once and return False if someone holds it; > 0 — try for up to this
            many seconds (jittered polling), then raise FileLocked.
        Returns:
          True once held; False only when `wait` is 0 and the lock is held elsewhere.
        """
        self._after_fork()
        deadline = time.monotonic() + wait
        got = self._mutex.acquire(timeout=wait) if wait > 0 else self._mutex.acquire(blocking=False)
        if not got:  # another thread of this process holds it
            return self._timed_out(wait)
        try:
            delay = 0.002
            while not self._try():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                import random  # only when waiting: importing it costs a fresh `show` (it loads hashing)

                time.sleep(min(remaining, random.uniform(delay / 2, delay)))
                delay = min(delay * 2, 0.05)
            else:
                self._held = True
                return True
        except BaseException:
            self._mutex.release()
            raise
        self._mutex.release()
        return self._timed_out(wait)

    def release(self) -> None:
        """Let the lock go (from any thread of the process that holds it); no-op if not held."""
        if not self._held or self._pid != os.getpid():
            return
        fcntl = _fcntl()
        try:
            if fcntl is None:
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
            elif self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._held = False
            self._mutex.release()

    def close(self) -> None:
        """Release the lock if held, and close its file."""
        self.release()
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        """Whether this process holds the lock through this object."""
        return self._held and self._pid == os.getpid()

    def __enter__(self) -> FileLock:
        self.acquire(wait=self.wait)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ---- inside ---------------------------------------------------------------------------------
    def _after_fork(self) -> None:
        if self._pid != os.getpid():
            # The parent's descriptor and state are the parent's: start afresh (the inherited
            # descriptor is left open, as the parent may still hold the lock through it).
            self._fd, self._pid = None, os.getpid()
            self._mutex, self._held = threading.Lock(), False

    def _try(self) -> bool:
        """One attempt, holding the mutex: True if the lock is now held."""
        fcntl = _fcntl()
        if fcntl is None:
            return self._create()
        if self._fd is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _create(self) -> bool:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        try:
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            try:
                if time.time() - os.path.getmtime(self.path) > self.stale_after:
                    os.unlink(self.path)  # left by a crashed process
            except OSError:
                pass
            return False
        return True

    def _timed_out(self, wait: float) -> bool:
        if wait <= 0:
            return False
        from dulwich.file import FileLocked

        raise FileLocked(self.path, self.path)
