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
from pathlib import Path

import pytest
from conftest import (
    assert_one_line_error,
    canonry_command,
    fsck,
    git,
    git_status,
    head_of,
)

import canonry

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


# ---- 2. work-tree stores after a crash -----------------------------------------------------------
def _worktree_store(tmp_path, model_file) -> Path:
    w = tmp_path / "w"
    assert _run("init", w).returncode == 0
    assert _run("-C", w, "log", model_file, "--name", "gem", "--type", "model").returncode == 0
    assert _run("-C", w, "link", "gem:v0", "model/first").returncode == 0
    assert git_status(w) == ""
    return w


def _kill_during_sync(w: Path, rel: str, *args) -> None:
    """Start a writer, hold it inside its work-tree sync (after its ref moved) on a FIFO put where
    it reads `rel`, SIGKILL it there, and put the file back as it was."""
    target = w / rel
    before = target.read_bytes()
    target.unlink()
    os.mkfifo(target)
    proc = subprocess.Popen([*canonry_command(), "-C", str(w), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        fd = None
        while fd is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                fd = os.open(target, os.O_WRONLY | os.O_NONBLOCK)  # once the writer reads it
            except OSError:
                time.sleep(0.01)
        assert fd is not None, proc.communicate()
        proc.kill()
        proc.wait()
        os.close(fd)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    target.unlink()
    target.write_bytes(before)


def test_work_tree_is_brought_to_the_head_after_a_writer_died_in_its_sync(tmp_path, model_file):
    """A writer SIGKILLed after its commit landed but before the work tree caught up, with a
    half-written index left (`index.lock`) and a temp file: the next write clears the lock,
    brings index and files to the branch head, and leaves the user's own edit alone."""
    w = _worktree_store(tmp_path, model_file)
    (w / "NOTES.md").write_text("mine\n")
    git("-C", w, "add", "NOTES.md")
    git("-C", w, "commit", "-qm", "user notes")
    (w / "NOTES.md").write_text("mine, edited\n")  # the user's edit in progress
    rel = "registries/model/first/links/v0.yaml"
    _kill_during_sync(w, rel, "tag", "add", "model/first:v0", "reviewed")
    assert "reviewed" in git("-C", w, "show", f"main:{rel}")  # the commit landed
    assert git_status(w) != " M NOTES.md\n"  # the work tree lags the branch
    # The writer died writing the index: its marker is older than the lock it left.
    [marker] = (w / ".git" / "canonry" / "syncing").iterdir()
    _age(marker, 10)
    lock = w / ".git" / "index.lock"
    lock.write_bytes(b"DIRC half-written")
    _age(lock, 5)
    (w / (rel + ".canonry-tmp")).write_text("half")
    started = time.monotonic()
    r = _run("-C", w, "alias", "set", "model/first:v0", "staging")
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr
    assert time.monotonic() - started < 20
    assert not lock.exists()
    assert git_status(w) == " M NOTES.md\n"
    assert (w / "NOTES.md").read_text() == "mine, edited\n"
    assert "reviewed" in (w / rel).read_text()
    assert not list((w / ".git" / "canonry" / "syncing").iterdir())
    assert fsck(w).returncode == 0


def test_live_gits_index_lock_is_left_and_the_next_write_catches_up(tmp_path, model_file,
                                                                    monkeypatch):
    """An index.lock a running git took before the write (`git commit` in an editor: old, and
    nobody flocks it) is never removed: the write lands, warns in one line, and the first
    write after the lock went brings the work tree up to date."""
    w = _worktree_store(tmp_path, model_file)
    lock = w / ".git" / "index.lock"
    lock.write_bytes(b"")
    _age(lock, 3600)
    store = canonry.open(str(w))
    from canonry import store as store_module

    monkeypatch.setattr(store_module, "WORKTREE_SYNC_WAIT", 0.5)
    store.set_alias("model/first:v0", "staging")
    assert lock.exists()
    assert git_status(w) != ""
    lock.unlink()
    store.tag("model/first:v0", "reviewed")
    assert git_status(w) == ""
    store.close()


# ---- 3. temporary files of killed writers --------------------------------------------------------
_HOLDER = r"""
import os, sys, time
import canonry
store = canonry.open(sys.argv[1])
if sys.argv[2] == "pack":  # dulwich writing a temporary pack (gc, fetch)
    f, _commit, _abort = store.storage.repo.object_store.add_pack()
    f.write(b"PACK" + os.urandom(1 << 20))
    f.flush()
    print("ready", flush=True)
    time.sleep(600)
else:  # `log` copying a file in: blocked reading a FIFO
    print("ready", flush=True)
    store.blobs.put_file(sys.argv[3])
"""


def _holder(store_path, *args) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(store_path), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
    return proc


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_temporary_pack_of_a_killed_writer_is_removed_by_gc_a_live_ones_never(linked, store_path):
    pack_dir = store_path / ".git" / "objects" / "pack"

    def temp_packs():
        return [p for p in pack_dir.iterdir() if p.name.startswith("tmp") and p.suffix == ".pack"]

    writer = _holder(store_path, "pack")
    try:
        [tmp] = temp_packs()
        _age(tmp, 3600)
        assert _run("-C", store_path, "gc").returncode == 0
        assert tmp.exists()  # its writer is alive
    finally:
        writer.kill()
        writer.wait()
    assert tmp.exists()
    assert _run("-C", store_path, "gc").returncode == 0
    assert temp_packs() == []
    assert fsck(store_path).returncode == 0


def test_incoming_blob_of_a_killed_log_is_removed_by_the_next_log(linked, store_path, make_file):
    blobs = store_path / ".git" / "canonry" / "blobs"
    fifo = store_path.parent / "fifo"
    os.mkfifo(fifo)
    writer = _holder(store_path, "blob", fifo)
    fd = -1
    try:
        _wait_for(lambda: any(p.name.startswith(".incoming-") for p in blobs.iterdir()))
        [incoming] = [p for p in blobs.iterdir() if p.name.startswith(".incoming-")]
        fd = os.open(fifo, os.O_WRONLY)
        os.write(fd, os.urandom(1 << 16))  # the copy is under way
        _age(incoming, 3600)
        r = _run("-C", store_path, "log", make_file("one"), "--name", "one", "--type", "model")
        assert r.returncode == 0, r.stderr
        assert incoming.exists()  # its writer is alive
    finally:
        writer.kill()
        writer.wait()
        if fd >= 0:
            os.close(fd)
    r = _run("-C", store_path, "log", make_file("two"), "--name", "two", "--type", "model")
    assert r.returncode == 0, r.stderr
    assert not incoming.exists()
    assert not [p for p in blobs.iterdir() if p.name.startswith(".incoming-")]


# ---- 4. a clone stuck after a real conflict -------------------------------------------------------
def test_clone_stuck_on_a_real_conflict_gets_out_with_pull_discard_local(tmp_path, run_cli,
                                                                         make_file):
    origin, one, two = tmp_path / "origin", tmp_path / "one", tmp_path / "two"
    assert run_cli("init", "--bare", origin).exit_code == 0
    for content in ("a", "b"):
        assert run_cli("-C", origin, "log", make_file(content), "--name", "m", "--type",
                       "model").exit_code == 0
    assert run_cli("-C", origin, "link", "m:v0", "model/c").exit_code == 0
    assert run_cli("-C", origin, "link", "m:v1", "model/c").exit_code == 0
    assert run_cli("clone", origin, one).exit_code == 0
    assert run_cli("clone", origin, two).exit_code == 0
    assert run_cli("-C", one, "alias", "set", "model/c:v0", "production").exit_code == 0
    assert run_cli("-C", two, "alias", "set", "model/c:v1", "production").exit_code == 0
    assert run_cli("-C", two, "tag", "add", "model/c:v1", "mine").exit_code == 0
    assert run_cli("-C", one, "push").exit_code == 0
    mine = head_of(two)
    # The conflict stops every push and pull of `two`, each naming the way out.
    for command in ("push", "pull"):
        r = run_cli("-C", two, command)
        assert_one_line_error(r, 1, contains=("both sides moved production",
                                              "canonry pull origin --discard-local"))
        assert head_of(two) == mine
    r = run_cli("-C", two, "pull", "--discard-local", "--json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert out["action"] == "discarded-local" and out["discarded"] == 2
    assert head_of(two) == head_of(origin)
    # nothing is lost: the dropped commits are kept under the named ref
    assert git("-C", two, "rev-parse", out["kept_at"]).strip() == mine
    assert git_status(two) == ""
    assert run_cli("-C", two, "push").exit_code == 0
    assert run_cli("-C", two, "pull").exit_code == 0
    assert run_cli("-C", two, "alias", "set", "model/c:v1", "staging").exit_code == 0
    assert run_cli("-C", two, "push").exit_code == 0
    assert fsck(two).returncode == 0
    # with nothing of its own to drop, --discard-local is an ordinary pull
    assert run_cli("-C", one, "pull", "--discard-local").exit_code == 0
    assert head_of(one) == head_of(origin)


# ---- 5. the crash loop, CI-sized (full size: stress/crash_loop.py) --------------------------------
def _crash_loop():
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "stress" / "crash_loop.py"
    spec = importlib.util.spec_from_file_location("crash_loop", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("layout", ["bare", "worktree"])
def test_writers_killed_at_random_moments_leave_nothing_stuck_lost_or_behind(tmp_path, layout):
    """10 SIGKILLs per layout, 0–300 ms into writes, gc or the log of a larger file: the next
    command succeeds promptly, every acknowledged operation is in exactly one commit and at the
    head, fsck --strict and validate are clean, git status is clean, no leftovers accumulate."""
    figures = _crash_loop().run(tmp_path, kills=10, layout=layout, big_mb=20, check_every=5,
                                bound=20.0, log=lambda _line: None)
    assert figures["kills"] == 10
