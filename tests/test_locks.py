"""canonry.git.locks.FileLock between real processes and threads: exclusion, a holder killed
with -9 leaves nothing stale, waiting stays within its time budget, the fallback without fcntl."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from dulwich.file import FileLocked

import canonry
from canonry.git.locks import FileLock

SRC = os.path.dirname(os.path.dirname(canonry.__file__))
# A process that takes the lock, says so, and holds it until killed (or told to let go).
HOLDER = ("import sys, time; sys.path[:0] = [sys.argv[2]]\nfrom canonry.git.locks import FileLock\n"
          "lock = FileLock(sys.argv[1])\nassert lock.acquire(wait=30)\nprint('held', flush=True)\n"
          "sys.stdin.readline()\nlock.release()\nprint('released', flush=True)\nsys.stdin.readline()\n")
PROBE = ("import sys; sys.path[:0] = [sys.argv[2]]\nfrom canonry.git.locks import FileLock\n"
         "print(FileLock(sys.argv[1]).acquire())")

needs_flock = pytest.mark.skipif(sys.platform == "win32", reason="flock(2) only")


def _probe(path) -> str:
    """Whether a fresh process can take the lock right now ("True"/"False")."""
    return subprocess.run([sys.executable, "-c", PROBE, str(path), SRC], capture_output=True,
                          text=True, timeout=60).stdout.strip()


@pytest.fixture
def holder(tmp_path):
    """Start a process holding the lock at a path; yields (process, path)."""
    procs = []

    def start(path):
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), SRC], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)


@needs_flock
def test_the_lock_excludes_across_processes_and_without_fcntl_falls_back_to_a_lock_file(tmp_path, monkeypatch):
    path = tmp_path / "canonry" / "gc.lock"
    mine = FileLock(str(path))
    assert mine.acquire() and mine.held
    assert _probe(path) == "False"
    mine.release()
    assert not mine.held
    assert _probe(path) == "True"  # and that process's end released it
    mine.close()
    assert path.exists()  # the file stays: only the flock comes and goes

    monkeypatch.setitem(sys.modules, "fcntl", None)  # as on Windows: `import fcntl` fails
    fallback = tmp_path / "fallback.lock"
    first, second = FileLock(str(fallback)), FileLock(str(fallback))
    assert first.acquire() and fallback.exists()
    assert not second.acquire()
    first.release()
    assert not fallback.exists() and second.acquire()
    second.release()


@needs_flock
def test_a_second_process_cannot_take_a_held_lock_until_it_is_released(tmp_path, holder):
    path = tmp_path / "l" / "x.lock"
    proc = holder(path)
    mine = FileLock(str(path))
    assert not mine.acquire()
    assert _probe(path) == "False"
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "released"
    assert mine.acquire()  # the holder is still alive, its lock released
    mine.close()


@needs_flock
def test_a_lock_held_by_a_process_killed_with_sigkill_is_free_at_once(tmp_path, holder):
    path = tmp_path / "l" / "x.lock"
    proc = holder(path)
    mine = FileLock(str(path))
    assert not mine.acquire()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert mine.acquire()  # no stale lock to wait out or break
    mine.close()


@needs_flock
def test_waiting_ends_within_its_time_budget_with_file_locked(tmp_path, holder):
    path = tmp_path / "l" / "x.lock"
    holder(path)
    mine = FileLock(str(path), wait=0.3)
    started = time.monotonic()
    with pytest.raises(FileLocked):
        mine.acquire(wait=0.3)
    took = time.monotonic() - started
    assert 0.3 <= took < 0.3 + 5  # the budget, plus at most a sleep and a loaded machine's delay
    with pytest.raises(FileLocked), mine:
        pass
    assert not mine.held
    mine.close()


@needs_flock
def test_waiting_takes_the_lock_once_the_holder_lets_go(tmp_path, holder):
    path = tmp_path / "l" / "x.lock"
    proc = holder(path)
    threading.Timer(0.2, lambda: (proc.stdin.write("\n"), proc.stdin.flush())).start()
    mine = FileLock(str(path))
    started = time.monotonic()
    assert mine.acquire(wait=60)
    assert time.monotonic() - started >= 0.2
    mine.close()


def test_threads_exclude_each_other_and_another_thread_may_release(tmp_path):
    """flock alone would let two threads sharing the descriptor both 'hold' the lock."""
    lock = FileLock(str(tmp_path / "t.lock"))
    assert lock.acquire()
    got = []
    t = threading.Thread(target=lambda: got.append(lock.acquire()))
    t.start()
    t.join()
    assert got == [False]
    # A background thread finishes the work and lets go (as the pack deleter does).
    t = threading.Thread(target=lock.release)
    t.start()
    t.join()
    assert not lock.held
    assert lock.acquire()
    lock.release()
    lock.release()  # releasing what is not held is a no-op
    lock.close()


def test_two_lock_objects_on_one_file_exclude_each_other_in_one_process(tmp_path):
    """Two stores opened on one repository in one process each have their own lock object."""
    path = str(tmp_path / "t.lock")
    a, b = FileLock(path), FileLock(path)
    assert a.acquire()
    assert not b.acquire()
    a.close()  # closing releases
    assert b.acquire()
    b.close()


@needs_flock
@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_opens_its_own_descriptor(tmp_path):
    """A child inherits the parent's descriptor, and with it the parent's flock: it must not
    take that for holding the lock itself."""
    lock = FileLock(str(tmp_path / "f.lock"))
    assert lock.acquire()
    pid = os.fork()
    if pid == 0:  # the child: the lock is its parent's, not its own
        code = 0 if (not lock.held and not lock.acquire()) else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert lock.held
    lock.close()
