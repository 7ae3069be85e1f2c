"""The derived index: consistent with a fresh rebuild (and with the store itself) after arbitrary
sequences of operations, hand-made commits, merges made by git and history rewinds; rebuilt when
missing, corrupt, stale beyond repair or of another layout; never committed; safe to share
between processes. History and audit read from it and agree with the history walk."""
from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import pytest
from _query_helpers import build_random_store, hand_commit, rand_metadata, rand_metrics, reference_documents
from conftest import git, git_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import canonry
from canonry.query.commits import path_keys
from canonry.query.history import history as index_history
from canonry.query.history import walk
from canonry.query.index import Index, for_store, index_path
from canonry.query.search import KINDS
from canonry.query.trees import changed_entries


def snapshot(idx: Index) -> dict:
    """Everything the index holds, by natural keys (no row ids): what must equal a rebuild."""
    def q(db):
        out = {}
        out["registries"] = db.execute(
            "SELECT name, description, visibility, created_at, created_by, updated_at, rec "
            "FROM registries ORDER BY name").fetchall()
        out["collections"] = db.execute(
            "SELECT registry, name, type, description, tags, aliases, versions, next_version, "
            "created_at, created_by, updated_at FROM collections ORDER BY registry, name").fetchall()
        out["aliases"] = db.execute("SELECT * FROM aliases ORDER BY 1, 2, 3").fetchall()
        out["links"] = db.execute(
            "SELECT l.registry, l.collection, l.num, l.version, l.artifact, a.ref, l.digest, l.note, "
            "l.tags, l.aliases, l.linked_at, l.linked_by, l.updated_at FROM links l "
            "LEFT JOIN avs a ON a.id = l.av ORDER BY 1, 2, 3").fetchall()
        out["artifacts"] = db.execute("SELECT * FROM artifacts ORDER BY name").fetchall()
        out["avs"] = db.execute(
            "SELECT ref, artifact, num, type, digest, size, files, description, created_at, "
            "created_by, updated_at, metadata, metrics, inputs, producer FROM avs ORDER BY ref").fetchall()
        vals = []
        for field, table, key in (("r.types", "registries", "name"),
                                  ("c.tags", "collections", "registry || '/' || t.name"),
                                  ("c.aliases", "collections", "registry || '/' || t.name"),
                                  ("l.tags", "links", "registry || '/' || collection || ':' || num"),
                                  ("l.aliases", "links", "registry || '/' || collection || ':' || num"),
                                  ("a.inputs", "avs", "ref")):
            vals += db.execute(f"SELECT v.field, {key}, v.value FROM vals v JOIN {table} t "
                               f"ON t.id = v.item WHERE v.field = ? ORDER BY 2, 3", (field,)).fetchall()
        out["vals"] = vals
        out["vals_orphans"] = db.execute(
            "SELECT count(*) FROM vals v WHERE NOT EXISTS (SELECT 1 FROM "
            "(SELECT id FROM registries WHERE v.field = 'r.types' UNION ALL "
            "SELECT id FROM collections WHERE v.field IN ('c.tags', 'c.aliases') UNION ALL "
            "SELECT id FROM links WHERE v.field IN ('l.tags', 'l.aliases') UNION ALL "
            "SELECT id FROM avs WHERE v.field = 'a.inputs') t WHERE t.id = v.item)").fetchone()[0]
        out["kv"] = db.execute("SELECT a.ref, k.key, k.kind, k.num, k.txt FROM kv k LEFT JOIN avs a "
                               "ON a.id = k.item ORDER BY 1, 2, 3, 4, 5").fetchall()
        out["commits"] = db.execute("SELECT seq, id, main, time, email, author, parents, hand, many, "
                                    "subject FROM commits ORDER BY seq").fetchall()
        out["hist"] = db.execute("SELECT * FROM hist ORDER BY seq, pos").fetchall()
        out["hkeys"] = db.execute("SELECT * FROM hkeys ORDER BY seq, pos, key").fetchall()
        out["key_time"] = db.execute("SELECT * FROM key_time ORDER BY key").fetchall()
        out["hpaths"] = db.execute("SELECT * FROM hpaths ORDER BY seq, path").fetchall()
        return out

    return idx.query(q)


def fresh_snapshot(store, where) -> dict:
    """The snapshot of an index rebuilt from scratch (in its own file) at the store's head."""
    other = Index(store, path=str(where / f"rebuilt-{uuid.uuid4().hex}.sqlite"))
    other.rebuild()
    snap = snapshot(other)
    other.close()
    return snap


def history_targets(store) -> list:
    view = store.view()
    targets = [None]
    for reg in view.registry_names():
        targets.append(reg)
        for coll in view.collection_names(reg):
            targets.append(f"{reg}/{coll}")
            versions = view.link_versions(reg, coll)
            if versions:
                targets.append(f"{reg}/{coll}:{versions[0]}")
            for alias in view.aliases(reg, coll):
                targets.append(f"{reg}/{coll}:{alias}")
    for art in view.artifact_names()[:3]:
        targets.append(art)
    return targets


def assert_consistent(store, where, check_history: bool = True) -> None:
    idx = for_store(store)
    snap = snapshot(idx)
    fresh = fresh_snapshot(store, where)
    for table in snap:
        assert snap[table] == fresh[table], f"table {table} differs from a rebuild"
    assert snap["vals_orphans"] == 0
    for kind in KINDS:
        assert store.search(None, kind=kind) == reference_documents(store, kind), kind
    if check_history:
        for target in history_targets(store):
            assert index_history(store, target) == walk(store, target), target
        for reg in store.view().registry_names():
            assert index_history(store, None, registry=reg) == walk(store, None, registry=reg), reg


# ---- arbitrary operation sequences -------------------------------------------------------------------
OPS = ["log", "link", "link", "alias", "tag", "unlink", "hand", "reset", "reset", "update", "update", "merge", "log"]


class Sequencer:
    def __init__(self, store, work):
        self.store = store
        self.work = work
        self.n = 0

    def file(self) -> str:
        self.n += 1
        p = self.work / "files" / f"f{self.n}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f"content {self.n} {uuid.uuid4().hex}".encode())
        return str(p)

    def mainline(self) -> list[str]:
        return git("-C", self.store.path, "rev-list", "--first-parent", "main").split()

    def apply(self, op: str, seed: int) -> None:
        from canonry.errors import CanonryError

        rng = random.Random(seed)
        s = self.store
        try:
            if op == "log":
                versions = [f"{a.name}:{v}" for a in s.artifacts() for v in a.versions]
                s.log_artifact(self.file(), name=rng.choice(["bert", "data", "yolo"]),
                               type="dataset" if rng.random() < 0.3 else "model", metadata=rand_metadata(rng),
                               metrics=rand_metrics(rng), inputs=rng.sample(versions, min(1, len(versions))))
            elif op == "link":
                versions = [f"{a.name}:{v}" for a in s.artifacts() if a.type == "model" for v in a.versions]
                if versions:
                    s.link(rng.choice(versions), rng.choice(["model/a", "model/b", "exp/c"]),
                           aliases=rng.sample(["production", "staging"], rng.randrange(0, 2)))
            elif op in ("alias", "tag", "unlink"):
                colls = [c.address for c in s.collections() if c.versions]
                if colls:
                    coll = rng.choice(colls)
                    version = rng.choice(s.versions(coll)).version
                    if op == "alias":
                        s.set_alias(f"{coll}:{version}", rng.choice(["production", "staging", "best"]))
                    elif op == "tag":
                        s.tag(rng.choice([coll, f"{coll}:{version}"]), rng.choice(["vision", "nlp"]))
                    else:
                        s.unlink(f"{coll}:{version}")
            elif op == "hand":
                hand_commit(s, rng)
            elif op == "reset":
                line = self.mainline()
                if len(line) > 2:
                    # back to an earlier commit (never the root: the store would be gone)
                    git("-C", s.path, "reset", "-q", "--hard", rng.choice(line[1:-1]))
            elif op == "merge":
                self.git_merge(rng)
            elif op == "update":
                for_store(s).update()
        except CanonryError:
            pass

    def git_merge(self, rng) -> None:
        """A side branch with a hand-made commit, merged into main by git (no trailers)."""
        path = self.store.path
        line = self.mainline()
        base = rng.choice(line[:max(1, len(line) - 1)])
        git("-C", path, "checkout", "-q", "-b", "side", base)
        reg = f"{path}/registries/exp/registry.yaml"
        with open(reg) as f:
            text = f.read()
        with open(reg, "w") as f:
            f.write(text.replace("description: experiments", f"description: experiments {rng.randrange(99)}")
                    if "description: experiments" in text else text)
        git("-C", path, "commit", "-q", "--allow-empty", "-am", "side: describe exp")
        git("-C", path, "checkout", "-q", "main")
        proc = subprocess.run(["git", "-C", path, "merge", "-q", "--no-ff", "-m", "merge side", "side"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            git("-C", path, "merge", "--abort", check=False)
        git("-C", path, "branch", "-q", "-D", "side")


@settings(max_examples=12, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 10_000)), min_size=4, max_size=20))
def test_index_equals_a_rebuild_after_any_sequence(tmp_path, ops):
    work = tmp_path / uuid.uuid4().hex
    store = canonry.init(str(work / "store"))
    store.create_registry("exp", description="experiments", visibility="organization")
    seq = Sequencer(store, work)
    for_store(store).update()
    for i, (op, seed) in enumerate(ops):
        seq.apply(op, seed)
        if op == "update" or i == len(ops) - 1:
            assert_consistent(store, work, check_history=i == len(ops) - 1)
    for_store(store).close()


def test_random_store_is_consistent(from_template, tmp_path):
    store = from_template("index-random-7", lambda s, work: build_random_store(s, work, 7, n_ops=30))
    assert_consistent(store, tmp_path)


# ---- history rewinds, unrelated histories, merges ------------------------------------------------------------
@pytest.fixture
def busy(store, make_file):
    s = store
    for i in range(3):
        v = s.log_artifact(str(make_file(f"m{i}")), name="clf", type="model", metrics={"acc": 0.8 + i / 100})
        s.link(v.address, "model/clf", aliases=["production"])
    s.tag("model/clf:v1", "vision")
    return s


def test_reset_to_an_older_commit_is_an_incremental_update(busy, tmp_path):
    s = busy
    idx = for_store(s)
    idx.update()
    old = git("-C", s.path, "rev-parse", "main~3").strip()
    git("-C", s.path, "reset", "-q", "--hard", old)
    info = idx.update()
    assert info["mode"] == "incremental" and info["dropped_commits"] == 3 and info["commits"] == 0
    assert_consistent(s, tmp_path)
    assert [v.address for v in s.versions(filter={"tag": "vision"})] == []
    # and forward again, on a new line of history
    s.tag("model/clf:v0", "vision")
    assert idx.update()["mode"] == "incremental"
    assert [v.address for v in s.versions(filter={"tag": "vision"})] == ["model/clf:v0"]
    assert_consistent(s, tmp_path)


def test_unrelated_history(busy, tmp_path, make_file):
    s = busy
    for_store(s).update()
    other = canonry.init(str(tmp_path / "other"))
    v = other.log_artifact(str(make_file("x")), name="yolo", type="model", metadata={"k": "v"})
    other.link(v.address, "model/det", aliases=["staging"])
    git("-C", s.path, "fetch", "-q", str(tmp_path / "other"), "main:refs/heads/unrelated")
    git("-C", s.path, "reset", "-q", "--hard", "unrelated")
    info = for_store(s).update()
    assert info["mode"] == "incremental" and info["dropped_commits"] > 0
    assert [x.address for x in s.versions(filter={})] == ["model/det:v0"]
    assert_consistent(s, tmp_path)


def test_merge_made_by_git_shows_the_side_commits(busy, tmp_path):
    s = busy
    path = s.path
    for_store(s).update()
    git("-C", path, "checkout", "-q", "-b", "side", "main~1")
    hand_commit(s, random.Random(3))
    git("-C", path, "checkout", "-q", "main")
    s.set_alias("model/clf:v0", "best")
    git("-C", path, "merge", "-q", "--no-ff", "-m", "merge side", "side")
    assert_consistent(s, tmp_path)


def test_history_and_audit_agree_with_the_walk(busy, tmp_path, monkeypatch):
    s = busy
    hand_commit(s, random.Random(1))
    monkeypatch.setenv("CANONRY_ACTOR", "Bob <bob@example.com>")
    bob = canonry.open(s.path)
    bob.set_alias("model/clf:v1", "staging")
    hand_commit(bob, random.Random(2))
    for target in history_targets(s):
        for limit in (None, 1, 2):
            for actor in (None, "bob@example.com", "ada@example.com", "Git User <git-user@example.com>"):
                assert index_history(s, target, limit=limit, actor=actor) == \
                    walk(s, target, limit=limit, actor=actor), (target, limit, actor)
    since = s.history("model/clf")[2].time
    for actor in (None, "bob@example.com"):
        assert index_history(s, None, since=since, actor=actor) == walk(s, None, since=since, actor=actor)
        assert index_history(s, None, since="2999-01-01T00:00:00Z") == []
    assert s.audit(registry="model") == walk(s, None, registry="model")
    assert s.history("model/clf:production") == walk(s, "model/clf:production")


def test_history_of_a_missing_target_is_not_found(busy):
    from canonry.errors import NotFound

    with pytest.raises(NotFound):
        busy.history("model/nope")


# ---- rebuilt when missing, corrupt, stale or of another layout -----------------------------------------------
def test_missing_index_is_rebuilt(busy):
    idx = for_store(busy)
    assert not os.path.exists(idx.path)
    assert idx.update()["mode"] == "rebuild"
    assert os.path.exists(idx.path)
    assert idx.update()["mode"] == "current"
    assert idx.path == os.path.join(busy.storage.git_dir, "canonry", "index-v1.sqlite")


def test_corrupt_index_is_deleted_and_rebuilt(busy):
    idx = for_store(busy)
    idx.update()
    expected = busy.search(None)
    idx.close()
    with open(idx.path, "r+b") as f:
        f.seek(0)
        f.write(b"this is not a database" * 200)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(idx.path + suffix):
            os.unlink(idx.path + suffix)
    fresh = canonry.open(busy.path)
    assert fresh.search(None) == expected
    assert for_store(fresh).last_update["mode"] == "rebuild"


def test_index_of_a_vanished_commit_is_rebuilt(busy):
    idx = for_store(busy)
    idx.update()
    idx.close()
    db = sqlite3.connect(idx.path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'commit'", ("0" * 40,))
    db.commit()
    db.close()
    assert idx.update()["mode"] == "rebuild"
    assert busy.search(None) == reference_documents(busy, "versions")


def test_index_of_another_layout_is_rebuilt(busy):
    idx = for_store(busy)
    idx.update()
    db = sqlite3.connect(idx.path)
    db.execute("UPDATE meta SET value = '0' WHERE key = 'layout'")
    db.commit()
    db.close()
    busy.tag("model/clf:v0", "x")
    assert idx.update()["mode"] == "rebuild"


def test_unusable_index_location_falls_back_to_memory(busy):
    path = index_path(busy)
    os.makedirs(path)  # a directory where the file should be: sqlite cannot open it
    fresh = canonry.open(busy.path)
    assert [v.address for v in fresh.versions(filter={"tag": "vision"})] == ["model/clf:v1"]
    assert for_store(fresh).in_memory


def test_index_is_never_committed(busy, store_path):
    busy.versions(filter={"tag": "vision"})
    assert os.path.exists(index_path(busy))
    assert index_path(busy).startswith(os.path.join(str(store_path), ".git"))
    assert git_status(store_path) == ""
    assert "index-v1" not in git("-C", store_path, "ls-tree", "-r", "--name-only", "main")


def test_writes_do_not_read_the_index(busy):
    """A write reads the store itself: a wrong index cannot make it wrong."""
    idx = for_store(busy)
    idx.update()
    db = sqlite3.connect(idx.path)
    db.execute("DELETE FROM links")
    db.commit()
    db.close()
    lv = busy.link("clf:v0", "model/other", aliases=["production"])
    assert lv.version == "v0" and busy.collection("model/other").aliases["production"] == "v0"


def test_one_commit_is_a_small_incremental_update(busy):
    idx = for_store(busy)
    idx.update()
    busy.set_alias("model/clf:v0", "staging")
    info = idx.update()
    assert info["mode"] == "incremental" and info["commits"] == 1 and info["files"] == 1


# ---- several processes ------------------------------------------------------------------------------------------
READER = r"""
import sys, json
sys.path[:0] = [p for p in sys.argv[3].split(":") if p]
import canonry
store = canonry.open(sys.argv[1])
seen = 0
for i in range(int(sys.argv[2])):
    seen = max(seen, len(store.versions(filter={"metrics.acc": {"$gt": 0}})))
    store.history("model/clf")
print(json.dumps({"ok": True, "max": seen}))
"""


def test_several_processes_update_one_index(busy, make_file, tmp_path):
    paths = ":".join(sys.path)
    procs = [subprocess.Popen([sys.executable, "-c", READER, busy.path, "15", paths], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for i in range(6):
        v = busy.log_artifact(str(make_file(f"more{i}")), name="clf", type="model", metrics={"acc": 0.5})
        busy.link(v.address, "model/clf")
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["ok"]
    assert len(busy.versions(filter={"metrics.acc": {"$gt": 0}})) == 9
    assert_consistent(busy, tmp_path, check_history=False)


def test_a_held_write_lock_only_delays(busy):
    idx = for_store(busy)
    idx.update()
    busy.tag("model/clf:v2", "late")
    holder = sqlite3.connect(idx.path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")

    def release():
        time.sleep(0.3)
        holder.execute("ROLLBACK")

    t = threading.Thread(target=release)
    t.start()
    try:
        assert [v.address for v in busy.versions(filter={"tag": "late"})] == ["model/clf:v2"]
    finally:
        t.join()
        holder.close()


def test_tree_diff_of_big_flat_directories():
    """The list diff skips the common head and tail and finds what is in between."""
    a = [(f"n{i:05d}".encode(), 0o100644, f"{i:040x}".encode()) for i in range(1000)]
    b = list(a)
    b[500] = (b[500][0], 0o100644, b"f" * 40)
    b.insert(700, (b"n00700a", 0o100644, b"e" * 40))
    del b[100]
    changed = changed_entries(a, b)
    assert [(n, x is None, y is None) for n, x, y in changed] == [
        (b"n00100", False, True), (b"n00500", False, False), (b"n00700a", True, False)]
    assert changed_entries(a, a) == []
    assert changed_entries(a, a[:-1]) == [(b"n00999", (0o100644, f"{999:040x}".encode()), None)]
    assert path_keys("registries/model/clf/links/v3.yaml") == {
        "registry:model", "collection:model/clf", "link:model/clf:v3"}


def test_store_under_a_prefix_of_a_code_repository(tmp_path, make_file):
    """A store kept in a folder of a code repository: code commits are commits made by hand
    that touch nothing of the store."""
    from canonry.store import init_store

    repo = tmp_path / "code"
    repo.mkdir()
    git("init", "-q", "-b", "main", repo)
    (repo / "train.py").write_text("print('hi')\n")
    git("-C", repo, "add", "-A")
    git("-C", repo, "commit", "-qm", "code")
    store, _ = init_store(str(repo), prefix="registry")
    v = store.log_artifact(str(make_file("w")), name="clf", type="model", metrics={"acc": 0.7})
    store.link(v.address, "model/clf", aliases=["production"])
    (repo / "train.py").write_text("print('hello')\n")
    git("-C", repo, "commit", "-qam", "more code")
    assert [x.address for x in store.versions(filter={"metrics.acc": {"$lt": 1}})] == ["model/clf:v0"]
    assert_consistent(store, tmp_path)
    assert any(e.op == "commit" for e in store.audit())  # code commits, as the walk shows them
