"""Many writers on one store at once: every operation lands, nothing is lost, aliases stay
consistent, and a transaction that lost the race is replayed on the new state."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import assert_one_line_error, fsck, git, git_status, head_of, show_file

import canonry
from canonry.errors import CanonryError

N = 8  # link + 2 alias operations per round, per writer

WRITER = r"""
import sys, canonry
path, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = canonry.open(path)
for j in range(n):
    lv = store.link(f"{who}:v{j}", "model/shared")
    store.set_alias(lv.address, f"last-{who}")
    store.set_alias(lv.address, "champion")
print("done")
"""


def _prepare(store, tmp_path, writers, n=N):
    """Artifacts w0, w1, … with versions v0..v(n-1) each, logged up front in one transaction."""
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    with store.transaction(message="prepare") as tx:
        for w in writers:
            for j in range(n):
                f = src / f"{w}-{j}.bin"
                f.write_text(f"{w} {j}\n")
                tx.log_artifact(str(f), name=w, type="model")


def _writer_thread(path, who, n, errors, barrier, shared_store=None):
    try:
        store = shared_store or canonry.open(str(path))
        barrier.wait()
        for j in range(n):
            lv = store.link(f"{who}:v{j}", "model/shared")
            store.set_alias(lv.address, f"last-{who}")
            store.set_alias(lv.address, "champion")
    except BaseException as e:
        errors.append(repr(e))


def _check_outcome(store_path, writers, n=N):
    store = canonry.open(str(store_path))
    links = store.versions("model/shared")
    # every link landed exactly once, numbers unique and dense
    assert len(links) == len(writers) * n
    assert sorted(int(lv.version[1:]) for lv in links) == list(range(len(writers) * n))
    assert sorted(lv.artifact for lv in links) == sorted(f"{w}:v{j}" for w in writers
                                                         for j in range(n))
    coll = store.collection("model/shared")
    assert coll.next_version == len(writers) * n
    by_version = {lv.version: lv.artifact for lv in links}
    # each writer's own alias ends on its own last link (no lost alias update)
    for w in writers:
        assert by_version[coll.aliases[f"last-{w}"]] == f"{w}:v{n - 1}"
    assert by_version[coll.aliases["champion"]] in {f"{w}:v{n - 1}" for w in writers}
    # history has every link exactly once
    link_ops = [e for e in store.history("model/shared") if e.op == "link"]
    assert len(link_ops) == len(writers) * n
    # aliases.yaml is valid at every commit, and each alias names one existing link
    revs = git("-C", store_path, "rev-list", "main").split()
    for text in _files_at(store_path, revs, "registries/model/shared/aliases.yaml"):
        if text is not None:
            aliases = yaml.safe_load(text)["aliases"]
            assert set(aliases) <= {"champion"} | {f"last-{w}" for w in writers}
            assert all(v in by_version for v in aliases.values())
    assert fsck(store_path).returncode == 0


def _files_at(repo, revs, path):
    """The text of `path` at each rev (None where absent), with one `git cat-file --batch`."""
    query = "".join(f"{rev}:{path}\n" for rev in revs).encode()
    out = subprocess.run(["git", "-C", str(repo), "cat-file", "--batch"], input=query,
                         capture_output=True, check=True).stdout
    texts, pos = [], 0
    for _ in revs:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if header[-1] == b"missing":
            texts.append(None)
            continue
        size = int(header[2])
        texts.append(out[pos:pos + size].decode())
        pos += size + 1
    return texts


def test_two_threads_own_stores_all_operations_land(store, store_path, tmp_path):
    writers = ["w0", "w1"]
    _prepare(store, tmp_path, writers)
    errors: list = []
    barrier = threading.Barrier(len(writers))
    threads = [threading.Thread(target=_writer_thread, args=(store_path, w, N, errors, barrier))
               for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    _check_outcome(store_path, writers)
    # in this checked-out store, racing writers left no phantom changes behind
    assert git_status(store_path) == ""


def test_two_threads_sharing_one_store_object(store, store_path, tmp_path):
    writers = ["w0", "w1"]
    _prepare(store, tmp_path, writers)
    errors: list = []
    barrier = threading.Barrier(len(writers))
    threads = [threading.Thread(target=_writer_thread,
                                args=(store_path, w, N, errors, barrier, store)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    _check_outcome(store_path, writers)


def test_two_processes_all_operations_land(store, store_path, tmp_path):
    writers = ["p0", "p1"]
    _prepare(store, tmp_path, writers)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(store_path), w, str(N)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in writers]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
        assert out.strip() == "done"
    _check_outcome(store_path, writers)


def test_two_cli_processes_at_once(store, store_path, tmp_path):
    """Real `canonry` commands racing each other: each shell links 2 versions."""
    from conftest import canonry_command

    writers = ["c0", "c1"]
    _prepare(store, tmp_path, writers, n=2)
    script = " && ".join(
        f"{' '.join(canonry_command())} -C {store_path} link {{w}}:v{j} model/shared -a last-{{w}}"
        for j in range(2))
    procs = [subprocess.Popen(["sh", "-c", script.format(w=w)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for w in writers]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "Traceback" not in err
    store = canonry.open(str(store_path))
    links = store.versions("model/shared")
    assert sorted(lv.artifact for lv in links) == sorted(f"{w}:v{j}" for w in writers
                                                         for j in range(2))
    assert sorted(lv.version for lv in links) == sorted(f"v{i}" for i in range(4))
    aliases = store.collection("model/shared").aliases
    assert {aliases["last-c0"], aliases["last-c1"]} <= {lv.version for lv in links}


def test_transaction_that_lost_the_race_is_replayed(store, store_path, make_file):
    for name in ("mine", "theirs"):
        store.log_artifact(str(make_file(name)), name=name, type="model")
    store.link("theirs:v0", "model/c")  # the collection exists: v0
    other = canonry.open(str(store_path))
    with store.transaction(message="my promotion") as tx:
        first = tx.link("mine:v0", "model/c", aliases=["production"])
        assert first.version == "v1"  # as seen from the transaction's starting state
        # meanwhile another writer links into the same collection and takes v1
        other.link("theirs:v0", "model/d")
        theirs = other.log_artifact(str(make_file("theirs 2")), name="theirs", type="model")
        assert other.link(theirs.address, "model/c", aliases=["production"]).version == "v1"
    # the transaction was replayed on the new state: renumbered, alias moved after theirs
    assert tx.results[0].version == "v2"
    coll = store.collection("model/c")
    assert coll.aliases["production"] == "v2"
    assert {lv.version: lv.artifact for lv in store.versions("model/c")} == {
        "v0": "theirs:v0", "v1": "theirs:v1", "v2": "mine:v0"}
    msg = git("-C", store_path, "log", "-1", "--format=%B")
    assert msg.startswith("my promotion")
    assert '"version":"v2"' in msg
    alias_hist = store.history("model/c:production")
    assert [(e.before, e.after) for e in alias_hist[:2]] == [("v1", "v2"), (None, "v1")]


def test_replayed_transaction_fails_cleanly_when_replay_is_impossible(store, store_path,
                                                                     make_file):
    store.log_artifact(str(make_file("a")), name="gem", type="model")
    store.link("gem:v0", "model/c")
    other = canonry.open(str(store_path))
    with pytest.raises(CanonryError), store.transaction() as tx:
        tx.set_alias("model/c:v0", "production")
        other.unlink("model/c:v0")  # the version the transaction aliased is gone
    assert store.collection("model/c").aliases == {}
    assert store.versions("model/c") == []


def _ref_lock(store_path) -> Path:
    return Path(store_path) / ".git" / "refs" / "heads" / "main.lock"


def test_held_ref_lock_is_waited_out(linked, store_path):
    lock = _ref_lock(store_path)
    lock.write_text("")
    timer = threading.Timer(0.15, lock.unlink)
    timer.start()
    try:
        ch = linked.set_alias("model/first-collection:v0", "staging")
    finally:
        timer.join()
    assert ch.after == "v0"
    assert linked.resolve("model/first-collection:staging").version == "v0"


def test_ref_lock_held_by_a_live_process_gives_up_with_one_line_error(linked, store_path, cli,
                                                                      monkeypatch):
    """A live holder (it flocks the lock, as canonry does) is waited for within the budget,
    then the error names the lock. A dead writer's lock: tests/test_crash_recovery.py."""
    import fcntl

    from canonry.git import reader

    monkeypatch.setattr(reader, "REF_LOCK_WAIT", 1.0)
    lock = _ref_lock(store_path)
    lock.write_text("")
    head = head_of(store_path)
    with open(lock, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            started = time.monotonic()
            r = cli("alias", "set", "model/first-collection:v0", "staging")
            elapsed = time.monotonic() - started
        finally:
            lock.unlink()
    assert_one_line_error(r, 1, contains=("refs/heads/main.lock has been held",))
    assert head_of(store_path) == head
    assert elapsed < 20


def test_held_object_lock_is_waited_out(linked, store_path):
    """Two writers storing the same new git object at once: dulwich locks the loose object
    file; the loser of that race must wait or retry, not fail."""
    from dulwich.objects import Blob

    store = linked
    git_dir = Path(store.storage.git_dir)
    locks = []
    with store.transaction() as tx:
        tx.set_alias("model/first-collection:v0", "staging")
        for data in tx._view.pending.values():
            sha = Blob.from_string(data).id.decode()
            if not (git_dir / "objects" / sha[:2] / sha[2:]).exists():
                lock = git_dir / "objects" / sha[:2] / (sha[2:] + ".lock")
                lock.parent.mkdir(exist_ok=True)
                lock.write_text("")
                locks.append(lock)
        assert locks
        timer = threading.Timer(0.15, lambda: [lk.unlink() for lk in locks])
        timer.start()
    timer.join()
    assert store.resolve("model/first-collection:staging").version == "v0"


def test_index_update_of_one_writer_is_not_lost_to_another(linked, store_path):
    """Writer A is syncing the work tree (it has read the index) when writer B commits and
    syncs other paths; A's index write must not throw away B's entries. A real FIFO in the
    work tree holds A at the right moment, deterministically."""
    store = linked
    other = canonry.open(str(store_path))
    rel = "registries/model/first-collection/aliases.yaml"
    fifo = store_path / rel
    fifo.unlink()
    os.mkfifo(fifo)
    errors: list = []

    def writer_a():
        try:
            store.set_alias("model/first-collection:v0", "staging")  # touches aliases.yaml
        except BaseException as e:
            errors.append(repr(e))

    thread = threading.Thread(target=writer_a)
    thread.start()
    fd = None
    deadline = time.monotonic() + 10
    while fd is None and time.monotonic() < deadline and thread.is_alive():
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # succeeds once A is reading it
        except OSError:
            time.sleep(0.01)
    b_errors: list = []

    def writer_b():
        try:
            other.tag("model/first-collection:v0", "reviewed")  # touches links/v0.yaml only
        except BaseException as e:
            b_errors.append(repr(e))

    thread_b = threading.Thread(target=writer_b)
    try:
        assert fd is not None, "writer A never read the work-tree file"
        # Without a lock around the sync, B commits and syncs completely (in a few ms) while A
        # still holds its copy of the index. With one, B waits for A: let A go after a while.
        thread_b.start()
        thread_b.join(0.5)
    finally:
        if fd is not None:
            os.write(fd, b"# a local edit\n")
            os.close(fd)
        thread.join(20)
        if thread_b.ident:
            thread_b.join(20)
    assert b_errors == []
    assert errors == []
    assert canonry.open(str(store_path)).resolve("model/first-collection:staging").version == "v0"
    fifo.unlink()
    fifo.write_text(show_file(store_path, f"main:{rel}"))
    status = git_status(store_path)
    # B's link file must not show up as changed: the index must hold what main holds
    assert "links/v0.yaml" not in status, status
    assert status == "", status
