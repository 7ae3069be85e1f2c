"""Crash recovery: what a writer killed at any moment leaves behind never blocks, breaks or
clutters the store for the next command (issue 15).

Real parts only: stores in tmp_path, the real git CLI, writers in real subprocesses killed with
SIGKILL. The full-size loop is stress/crash_loop.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import (
    assert_one_line_error,
    canonry_command,
    fsck,
    head_of,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and flock")


def _age(path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def _run(*args, cwd=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([*canonry_command(), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


# ---- 1. a dead writer's ref lock ----------------------------------------------------------------
def test_dead_writers_ref_lock_is_removed_and_the_write_goes_on(tmp_path, model_file):
    """The issue's repro: an hour-old `main.lock` nobody holds used to fail every later write
    with "kept moving: gave up after 30 attempts"."""
    s = tmp_path / "s"
    assert _run("init", "--bare", s).returncode == 0
    assert _run("-C", s, "log", model_file, "--name", "a", "--type", "model").returncode == 0
    lock = s / "refs" / "heads" / "main.lock"
    lock.write_text("")
    _age(lock, 3600)
    started = time.monotonic()
    r = _run("-C", s, "link", "a:v0", "model/c")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - started < 10
    assert not lock.exists()
    assert fsck(s).returncode == 0


def test_fresh_unheld_ref_lock_is_removed_once_it_is_old_enough(linked, store_path):
    """A lock nobody flocks but young enough to be git's own is waited for, and removed once
    it is older than locks.STALE_LOCK_AGE: the write goes on after a pause, not a failure."""
    lock = store_path / ".git" / "refs" / "heads" / "main.lock"
    lock.write_text("")
    started = time.monotonic()
    linked.set_alias("model/first-collection:v0", "staging")
    assert 1.0 < time.monotonic() - started < 10
    assert not lock.exists()
    assert linked.resolve("model/first-collection:staging").version == "v0"


def test_ref_lock_of_a_live_canonry_is_never_broken(linked, store_path, run_cli, monkeypatch):
    """A lock a live process flocks (canonry's own while it holds it) is waited for, never
    removed, however old; the error names it, its age and the way out."""
    import fcntl

    from canonry.git import reader

    monkeypatch.setattr(reader, "REF_LOCK_WAIT", 1.0)
    lock = store_path / ".git" / "refs" / "heads" / "main.lock"
    lock.write_text("")
    _age(lock, 12)
    head = head_of(store_path)
    with open(lock, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        r = run_cli("-C", store_path, "alias", "set", "model/first-collection:v0", "staging")
        assert lock.exists()
    lock.unlink()
    assert_one_line_error(r, 1, contains=("refs/heads/main.lock has been held for 1",
                                          "a running canonry process", "delete it"))
    assert "kept moving" not in r.stderr
    assert head_of(store_path) == head
