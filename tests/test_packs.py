"""Per-commit packs and their tiered merging (packs.py), checked against the git CLI."""
from __future__ import annotations

import os
import stat

import pytest
from conftest import fsck, git
from dulwich.objects import Blob, Tree
from dulwich.pack import apply_delta
from dulwich.repo import Repo
from hypothesis import given, settings
from hypothesis import strategies as st

import canonry
from canonry.git import packs
from canonry.git import reader as gitread


def write_pack(pack_dir: str, objects, fsync: bool = False) -> str | None:
    """Write dulwich objects as one pack (duplicates dropped), as a writer's commit would;
    return its base path, or None when there is nothing to write."""
    content = packs.PackContent()
    content.add_objects(objects)
    return packs.write(pack_dir, content, fsync)


def _pack_dir(repo_path) -> str:
    return os.path.join(str(repo_path), "objects", "pack")


def _indexes(repo_path) -> list[str]:
    return sorted(n for n in os.listdir(_pack_dir(repo_path)) if n.endswith(".idx"))


def _packs(repo_path) -> list[str]:
    return sorted(n for n in os.listdir(_pack_dir(repo_path)) if n.endswith(".pack"))


def _tree(n: int, salt: str) -> Tree:
    """A tree of n blob entries whose ids depend on `salt` for entry 0 only."""
    tree = Tree()
    for i in range(n):
        content = f"{i}:{salt}" if i == 0 else str(i)
        tree.add(f"entry-{i:05d}".encode(), 0o100644, Blob.from_string(content.encode()).id)
    return tree


def _verify_with_git(repo_path) -> None:
    for name in os.listdir(_pack_dir(repo_path)):
        if name.endswith(".idx"):
            git("verify-pack", os.path.join(_pack_dir(repo_path), name))


def test_a_written_pack_is_read_by_git_and_dulwich(tmp_path):
    repo = tmp_path / "r.git"
    git("init", "-q", "--bare", repo)
    objects = [Blob.from_string(b"hello\n"), Blob.from_string(b"x" * 100_000), _tree(3, "a")]
    base = write_pack(_pack_dir(repo), objects + objects[:1])  # duplicates are dropped
    assert base is not None and os.path.exists(base + ".idx")
    _verify_with_git(repo)
    for obj in objects:
        assert git("-C", repo, "cat-file", "-t", obj.id.decode()).strip() == obj.type_name.decode()
    assert git("-C", repo, "cat-file", "-p", objects[0].id.decode()) == "hello\n"
    assert Repo(str(repo)).object_store[objects[1].id].as_raw_string() == b"x" * 100_000
    assert packs.object_count(base + ".idx") == 3
    assert [sha for sha, _, _ in packs.read_index(base + ".idx")] == sorted(o.sha().digest() for o in objects)


def test_merging_full_tier_deltifies_similar_trees_and_git_reads_every_object(tmp_path):
    repo = tmp_path / "r.git"
    git("init", "-q", "--bare", repo)
    trees = [_tree(200, f"v{k}") for k in range(packs.TIER_WIDTH)]  # ~7 KB each, one entry differs
    for tree in trees:
        write_pack(_pack_dir(repo), [tree, Blob.from_string(tree.id)])
    assert len(_packs(repo)) == packs.TIER_WIDTH
    plan = packs.merge_plan(_pack_dir(repo))
    assert len(plan) == packs.TIER_WIDTH
    store = Repo(str(repo)).object_store
    before = sum(os.path.getsize(b + ".pack") for b in plan)
    merged = packs.merge(store, plan)
    assert _packs(repo) == [os.path.basename(merged) + ".pack"]
    assert os.path.getsize(merged + ".pack") < before / 3  # deltas, not eight whole trees
    _verify_with_git(repo)
    verbose = git("verify-pack", "-v", merged + ".idx")
    assert "chain length = 1:" in verbose
    fresh = Repo(str(repo)).object_store
    for tree in trees:
        assert fresh[tree.id].as_raw_string() == tree.as_raw_string()
        assert git("-C", repo, "cat-file", "-s", tree.id.decode()).strip() == str(len(tree.as_raw_string()))
    assert packs.merge_plan(_pack_dir(repo)) == []


def test_merge_plan_waits_for_a_full_tier_and_leaves_big_packs_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(packs, "AUTO_MERGE_LIMIT", 300)  # small, to keep the test quick
    repo = tmp_path / "r.git"
    git("init", "-q", "--bare", repo)
    for k in range(packs.TIER_WIDTH - 1):
        write_pack(_pack_dir(repo), [Blob.from_string(f"small {k}".encode())])
    assert packs.merge_plan(_pack_dir(repo)) == []
    big = [Blob.from_string(f"big {i}".encode()) for i in range(packs.AUTO_MERGE_LIMIT + packs.TIER_WIDTH)]
    for k in range(packs.TIER_WIDTH):  # a full tier of packs too big to merge automatically
        write_pack(_pack_dir(repo), big[k:])
    plan = packs.merge_plan(_pack_dir(repo))
    assert plan == []
    write_pack(_pack_dir(repo), [Blob.from_string(b"one more")])
    plan = packs.merge_plan(_pack_dir(repo))
    assert len(plan) == packs.TIER_WIDTH and all(packs.object_count(b + ".idx") == 1 for b in plan)


def test_packs_written_by_git_with_deltas_are_merged_whole(tmp_path):
    work = tmp_path / "w"
    git("init", "-q", work)
    for k in range(5):
        (work / "f.txt").write_text("line\n" * 400 + f"change {k}\n")
        git("-C", work, "add", "f.txt")
        git("-C", work, "-c", "user.name=T", "-c", "user.email=t@e", "commit", "-q", "-m", f"c{k}")
    git("-C", work, "-c", "pack.writeReverseIndex=true", "repack", "-adq", "--depth=10", "--window=10")
    repo = work / ".git"
    assert "chain length" in git("verify-pack", "-v", *[os.path.join(_pack_dir(repo), n)
                                                         for n in os.listdir(_pack_dir(repo)) if n.endswith(".idx")])
    assert any(n.endswith(".rev") for n in os.listdir(_pack_dir(repo)))
    mine = write_pack(_pack_dir(repo), [Blob.from_string(b"extra")])
    theirs = [os.path.join(_pack_dir(repo), n[:-4]) for n in os.listdir(_pack_dir(repo))
              if n.endswith(".idx") and os.path.join(_pack_dir(repo), n[:-4]) != mine]
    merged = packs.merge(Repo(str(work)).object_store, [*theirs, mine])
    assert _packs(repo) == [os.path.basename(merged) + ".pack"]
    assert sorted(os.listdir(_pack_dir(repo))) == sorted(  # git's .rev went with its pack
        os.path.basename(merged) + ext for ext in (".idx", ".pack"))
    _verify_with_git(repo)
    assert fsck(work).returncode == 0
    assert git("-C", work, "show", "HEAD~2:f.txt").endswith("change 2\n")


def test_a_reader_opened_before_a_merge_still_finds_every_object(tmp_path):
    repo = tmp_path / "r.git"
    git("init", "-q", "--bare", repo)
    blobs = [Blob.from_string(f"blob {k}".encode()) for k in range(packs.TIER_WIDTH)]
    for blob in blobs:
        write_pack(_pack_dir(repo), [blob])
    reader = Repo(str(repo)).object_store
    assert reader[blobs[0].id].data == b"blob 0"  # the reader has listed the small packs
    packs.merge(Repo(str(repo)).object_store, packs.merge_plan(_pack_dir(repo)))
    assert len(_packs(repo)) == 1
    assert [reader[b.id].data for b in blobs] == [b.data for b in blobs]


@settings(max_examples=200, deadline=None)
@given(base=st.binary(max_size=3000), edits=st.lists(
    st.tuples(st.integers(0, 3000), st.integers(0, 50), st.binary(max_size=300)), max_size=3))
def test_make_delta_reproduces_the_target_and_both_appliers_agree(base, edits):
    """make_delta against dulwich's applier, and gitread's pure-Python applier (used where
    dulwich's compiled one is missing) against it."""
    target = bytearray(base)
    for at, cut, insert in edits:
        at = min(at, len(target))
        target[at:at + cut] = insert
    target = bytes(target)
    delta = packs.make_delta(base, target)
    if delta is not None:
        assert b"".join(apply_delta(base, delta)) == target
        assert gitread.apply_delta_py(base, delta) == target == gitread.apply_delta(base, delta)
        assert len(delta) < len(target) // 4 + 32
    if base == target and len(base) > 0:
        assert delta is not None


def test_store_writes_no_loose_objects_and_keeps_the_pack_count_bounded(tmp_path, model_file):
    path = tmp_path / "s.git"
    store = canonry.init(str(path), bare=True)
    store.log_artifact(str(model_file), name="gem", type="model")
    for c in range(80):  # a registry tree big enough to be stored as deltas
        store.link("gem:v0", f"model/c{c:03d}")
    for i in range(150):
        store.set_alias(f"model/c{i % 80:03d}:v0", f"a{i % 5}")
    counts = dict(line.split(": ") for line in git("-C", path, "count-objects", "-v").splitlines())
    assert int(counts["count"]) == 0
    assert int(counts["packs"]) <= 2 * packs.TIER_WIDTH
    assert fsck(path).returncode == 0
    _verify_with_git(path)
    reopened = canonry.open(str(path))
    assert reopened.resolve("model/c009:a4").version == "v0"
    assert len(reopened.history("model/c009")) >= 2
    assert stat.S_IMODE(os.stat(os.path.join(_pack_dir(path), _packs(path)[0])).st_mode) == 0o444


# ---- looking up an entry of a large tree in its raw bytes (treebytes.find_entry) --------------
_NAMES = st.text(alphabet="ab .-_1v", min_size=1, max_size=6).filter(lambda n: n not in (".", ".."))


@settings(max_examples=300, deadline=None)
@given(entries=st.dictionaries(_NAMES, st.tuples(st.booleans(), st.binary(min_size=20, max_size=20)),
                               min_size=1, max_size=30),
       probe=_NAMES)
def test_raw_entry_search_agrees_with_parsing(entries, probe):
    from canonry.git.treebytes import AMBIGUOUS as _AMBIGUOUS
    from canonry.git.treebytes import find_entry as _find_entry

    tree = Tree()
    for name, (is_dir, sha) in entries.items():
        tree.add(name.encode(), stat.S_IFDIR if is_dir else 0o100644, sha.hex().encode())
    raw = tree.as_raw_string()
    for name in [probe, *entries]:
        found = _find_entry(raw, name.encode())
        if found is _AMBIGUOUS:
            continue  # the caller parses: always right
        expected = tree[name.encode()] if name.encode() in tree else None  # noqa: SIM401 - a Tree has no get()
        assert found == (tuple(expected) if expected else None), name


def test_lookups_in_a_large_tree_match_a_parsed_tree(tmp_path, model_file):
    store = canonry.init(str(tmp_path / "s"), bare=True)
    store.log_artifact(str(model_file), name="gem", type="model")
    with store.transaction(message="many collections") as tx:
        for c in range(600):  # registries/model: a tree of ~25 KB
            tx.link("gem:v0", f"model/c{c:04d}")
    fresh = canonry.open(str(tmp_path / "s"))
    storage = fresh.storage
    registry_tree = storage.lookup(storage.root_tree(storage.head()), "registries/model")[1]
    assert len(storage._objects.get_raw(registry_tree)[1]) > 16_384
    assert fresh.resolve("model/c0299:latest").artifact == "gem:v0"
    assert registry_tree not in storage._trees  # answered from the raw bytes, not parsed
    for c in (0, 599):  # more lookups: the tree ends up parsed once, answers stay the same
        assert fresh.resolve(f"model/c{c:04d}:latest").artifact == "gem:v0"
    assert storage.lookup(storage.root_tree(storage.head()), "registries/model/c0600") is None
    parsed = Tree.from_raw_string(Tree.type_num, storage._objects.get_raw(registry_tree)[1])
    for name in (b"c0000", b"c0300", b"registry.yaml"):
        assert storage._entry(registry_tree, name) == tuple(parsed[name])


@settings(max_examples=100, deadline=None)
@given(size=st.integers(65, 200), edits=st.lists(st.tuples(
    st.integers(0, 260), st.sampled_from(["replace", "add", "delete", "dir", "dir-beside"])),
    min_size=1, max_size=4))
def test_build_tree_gives_the_ids_git_would(tmp_path_factory, size, edits):
    """build_tree splices a big tree's bytes for replaced entries: the ids must be exactly
    those of the tree serialized from scratch."""
    from canonry.git.storage import GitStorage

    repo_path = tmp_path_factory.mktemp("bt") / "r.git"
    git("init", "-q", "--bare", repo_path)
    storage = GitStorage(Repo(str(repo_path)))
    blob = lambda text: Blob.from_string(text.encode())  # noqa: E731
    base = {f"n{i:03d}.yaml": blob(str(i)).id for i in range(size)}
    base_objects: list = [blob(str(i)) for i in range(size)]
    base_tree = storage.build_tree(None, {k: (0o100644, v) for k, v in base.items()}, base_objects)
    storage.write_objects(base_objects)
    expected = {k: (0o100644, v) for k, v in base.items()}
    changes = {}
    for n, kind in edits:
        name = f"n{n:03d}.yaml"
        if kind == "delete":
            changes[name] = None
            expected.pop(name, None)
        elif kind in ("dir", "dir-beside"):
            # "dir-beside": a directory n065 next to the file n065.yaml (git sorts it as "n065/")
            name = f"d{n:03d}" if kind == "dir" else f"n{n:03d}"
            changes[f"{name}/x.yaml"] = (0o100644, blob("x").id)
            expected[name] = "dir"
        else:
            changes[name] = (0o100644, blob(f"{kind} {n}").id)
            expected[name] = changes[name]
    out: list = []
    new_id = storage.build_tree(base_tree, changes, out)
    reference = Tree()
    for name, value in expected.items():
        if value == "dir":
            sub = Tree()
            sub.add(b"x.yaml", 0o100644, blob("x").id)
            reference.add(name.encode(), stat.S_IFDIR, sub.id)
        else:
            reference.add(name.encode(), *value)
    assert new_id == reference.id
    if new_id != base_tree:  # else nothing changed and nothing new was written
        assert next(o for o in out if o.id == new_id).as_raw_string() == reference.as_raw_string()


def test_a_long_lived_reader_follows_a_writer_whose_merges_remove_packs(tmp_path, model_file):
    """Two Store objects (two dulwich pack caches, as in two processes): the reader's listed
    packs are merged away under it again and again; its reads stay right."""
    path = str(tmp_path / "s.git")
    store = canonry.init(path, bare=True)
    store.log_artifact(str(model_file), name="gem", type="model")
    for c in range(3):
        store.link("gem:v0", f"model/c{c}")
    reader, writer = canonry.open(path), canonry.open(path)
    seen = set()
    for i in range(3 * packs.TIER_WIDTH ** 2 // 2):  # enough commits for merges of two tiers
        seen |= set(_packs(path))
        writer.set_alias(f"model/c{i % 3}:v0", f"a{i}")  # (its merges delete packs meanwhile)
        assert reader.resolve(f"model/c{i % 3}:a{i}").version == "v0"
        assert f"a{i}" in reader.collection(f"model/c{i % 3}").aliases
    writer.close()
    assert len(seen - set(_packs(path))) > packs.TIER_WIDTH  # packs the reader had listed went away
    assert fsck(path).returncode == 0


def test_kept_and_cruft_packs_are_never_merged(tmp_path):
    repo = tmp_path / "r.git"
    git("init", "-q", "--bare", repo)
    bases = [write_pack(_pack_dir(repo), [Blob.from_string(f"b{k}".encode())])
             for k in range(packs.TIER_WIDTH + 2)]
    open(bases[0] + ".keep", "w").close()
    open(bases[1] + ".mtimes", "wb").close()
    plan = packs.merge_plan(_pack_dir(repo))
    assert len(plan) == packs.TIER_WIDTH and bases[0] not in plan and bases[1] not in plan


def test_packs_are_fsynced_unless_git_config_leaves_them_out(tmp_path, monkeypatch, model_file):
    """As git: packs are hardened by default, refs are not; core.fsync starts from git's default
    set, `none` empties it, `-x` removes; core.fsyncObjectFiles true says yes (for packs)."""
    cases = ((None, True), (("core.fsync", "committed"), True), (("core.fsync", "index,reference"), True),
             (("core.fsync", "none"), False), (("core.fsync", "-pack"), False),
             (("core.fsync", "none,reference"), False), (("core.fsync", "none,objects"), True),
             (("core.fsync", "all,-objects"), False), (("core.fsyncObjectFiles", "true"), True))
    real_fsync, synced = os.fsync, []

    def counting_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    for n, (setting, expected) in enumerate(cases):
        path = tmp_path / f"s{n}"
        canonry.init(str(path), bare=True)
        if setting:
            git("-C", path, "config", *setting)
        store = canonry.open(str(path))
        assert store.storage.fsync_packs is expected, setting
        assert store.storage.repo.object_store.fsync_object_files is expected  # dulwich's packs too
        synced.clear()
        store.log_artifact(str(model_file), name=f"m{n}", type="model")
        packed = [p for p in synced if "/objects/pack/" in p]
        assert bool(packed) is expected, (setting, synced)
        # the ref, only when core.fsync names references (git's default does not)
        refs_hardened = bool(setting) and setting[1] in ("committed", "index,reference", "all,-objects",
                                                            "none,reference")
        assert any("/refs/heads/" in p for p in synced) is refs_hardened, (setting, synced)
        if expected:  # the pack and its index, before either got its final name
            assert sorted(os.path.basename(p).split("_")[1].rsplit(".", 1)[1] for p in packed) == ["idx", "pack"]


def test_a_failing_merge_never_fails_an_operation(tmp_path, model_file, capfd):
    """Merging is housekeeping after a commit has landed: a failure is a warning, and every
    operation still lands (it used to raise after the commit)."""
    path = tmp_path / "s.git"
    store = canonry.init(str(path), bare=True)
    v = store.log_artifact(str(model_file), name="gem", type="model")
    # A pack whose index is fine and whose data is not: merging it must fail.
    bad = write_pack(_pack_dir(path), [Blob.from_string(b"to be damaged")])
    os.chmod(bad + ".pack", 0o644)
    with open(bad + ".pack", "r+b") as f:
        f.seek(12)
        f.write(b"\xff" * 8)
    for k in range(packs.TIER_WIDTH):  # a full tier 0, as other processes' commits leave it
        write_pack(_pack_dir(path), [Blob.from_string(f"other {k}".encode())])
    for c in range(2 * packs.TIER_WIDTH):
        lv = store.link(v.address, f"model/c{c}")
        assert lv.version == "v0"
    err = capfd.readouterr().err
    assert "canonry: warning: merging packs failed" in err
    assert all(line.startswith("canonry: warning: ") for line in err.splitlines())
    names = {x.name for x in store.collections("model")}
    assert {f"c{c}" for c in range(2 * packs.TIER_WIDTH)} <= names
    assert os.path.exists(bad + ".idx")  # nothing was deleted by the failed merges


def test_a_pack_left_without_its_index_is_ignored_then_replaced_whole(tmp_path):
    """The index is renamed into place last: a crash before that leaves a pack no reader lists;
    writing the same objects again replaces it whole."""
    repo = tmp_path / "r.git"
    git("init", "-q", "--bare", repo)
    blobs = [Blob.from_string(f"blob {k}".encode()) for k in range(3)]
    base = write_pack(_pack_dir(repo), blobs)
    os.unlink(base + ".idx")
    os.chmod(base + ".pack", 0o644)
    with open(base + ".pack", "r+b") as f:  # half-written
        f.truncate(20)
    reader = gitread.ObjectReader(str(repo / "objects"))
    assert blobs[0].id not in reader
    assert write_pack(_pack_dir(repo), blobs) == base
    assert [reader.get_raw(b.id)[1] for b in blobs] == [b.data for b in blobs]
    assert sorted(os.listdir(_pack_dir(repo))) == [os.path.basename(base) + ext for ext in (".idx", ".pack")]
    _verify_with_git(repo)


def _hold(lock) -> int:
    """Take the gc lock as another process would: the descriptor that holds it."""
    import fcntl

    lock.parent.mkdir(exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _held(lock) -> bool:
    try:
        os.close(_hold(lock))
    except BlockingIOError:
        return True
    return False


def test_packs_a_merge_replaced_are_deleted_in_the_background_then_the_lock_released(tmp_path, model_file):
    """The commit that triggers a merge does not wait for the 16 unlinks: a thread deletes the
    replaced packs while holding the gc lock, and close() (or the end of the process) waits
    for it."""
    import subprocess
    import sys

    path = tmp_path / "s.git"
    store = canonry.init(str(path), bare=True)
    v = store.log_artifact(str(model_file), name="gem", type="model")
    lock = path / "canonry" / "gc.lock"
    for k in range(packs.TIER_WIDTH - 1):  # small packs, as other processes' commits leave them
        write_pack(_pack_dir(path), [Blob.from_string(f"other {k}".encode())])
    merged_away = set()
    for c in range(2 * packs.TIER_WIDTH):
        before = set(_indexes(path))
        store.link(v.address, f"model/c{c}")
        # Already hidden from any reader that starts now (git lists packs by their index),
        # perhaps not deleted yet.
        hidden = before - set(_indexes(path))
        if hidden:  # this link merged packs, or retired the one its growing pack replaced
            listed = git("-C", path, "count-objects", "-v")
            assert f"packs: {len(_indexes(path))}" in listed
            assert fsck(path).returncode == 0
            store.storage.wait_for_housekeeping()
            left = os.listdir(_pack_dir(path))
            assert not [n for n in left if n.split(".")[0] in {h.split(".")[0] for h in hidden}], left
            merged_away |= hidden
            assert not _held(lock)
    assert len(merged_away) >= packs.TIER_WIDTH  # the others' packs were merged
    assert fsck(path).returncode == 0

    # A script that simply ends: the interpreter waits for the thread, nothing is left behind.
    script = ("import sys, canonry\nstore = canonry.open(sys.argv[1])\n"
              f"for c in range({2 * packs.TIER_WIDTH}):\n    store.link('gem:v0', f'model/d{{c}}')\n")
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert not _held(lock)
    assert len(_packs(path)) < 2 * packs.TIER_WIDTH
    assert fsck(path).returncode == 0
    assert canonry.open(str(path)).resolve(f"model/d{2 * packs.TIER_WIDTH - 1}:latest").version == "v0"


def test_gc_waits_for_a_merge_under_way_and_says_so_when_it_lasts(tmp_path, model_file, monkeypatch):
    import threading
    import time

    from canonry.errors import Conflict
    from canonry.git import housekeeping

    path = tmp_path / "s.git"
    store = canonry.init(str(path), bare=True)
    v = store.log_artifact(str(model_file), name="gem", type="model")
    for c in range(3):
        store.link(v.address, f"model/c{c}")
    store.storage.wait_for_housekeeping()  # the packs this store's growing pack replaced are deleted
    lock = path / "canonry" / "gc.lock"
    holder = _hold(lock)  # another process is merging
    threading.Timer(0.3, os.close, [holder]).start()
    started = time.monotonic()
    assert store.storage.gc()["packs"] == 1
    assert time.monotonic() - started >= 0.3 and not _held(lock)
    holder = _hold(lock)
    monkeypatch.setattr(housekeeping, "GC_LOCK_WAIT", 0.1)
    with pytest.raises(Conflict, match="another process has been packing objects"):
        store.storage.gc()
    assert _held(lock)  # still the other's
    os.close(holder)


def test_packs_retired_by_an_interrupted_process_are_deleted_by_the_next_merge_or_gc(tmp_path, model_file):
    """A process that ended between hiding merged packs and deleting them leaves `.retired`
    indexes with their packs: git ignores them, and the next merge (or gc) deletes them."""
    path = tmp_path / "s.git"
    store = canonry.init(str(path), bare=True)
    v = store.log_artifact(str(model_file), name="gem", type="model")
    store.close()
    # Two packs whose objects are also in another pack, as after a merge: retire them.
    pack_dir = _pack_dir(path)
    bases = [write_pack(pack_dir, [Blob.from_string(f"spare {i}".encode())]) for i in range(2)]
    write_pack(pack_dir, [Blob.from_string(f"spare {i}".encode()) for i in range(2)])
    assert packs.retire_packs(bases) == bases
    assert fsck(path).returncode == 0 and len(packs.leftover_retired(pack_dir)) == 2
    for k in range(packs.TIER_WIDTH):  # a full tier 0, as other processes' commits leave it
        write_pack(pack_dir, [Blob.from_string(f"other {k}".encode())])
    store = canonry.open(str(path))
    store.link(v.address, "model/c0")  # merges
    store.close()
    assert packs.leftover_retired(pack_dir) == []
    assert not [n for n in os.listdir(pack_dir) if os.path.basename(bases[0]) in n]
    packs.retire_packs([write_pack(pack_dir, [Blob.from_string(b"spare 0")])])
    assert store.storage.gc()["packs"] == 1 and packs.leftover_retired(pack_dir) == []
    assert fsck(path).returncode == 0


def test_a_writer_grows_one_pack_and_retires_the_one_it_replaces(tmp_path, model_file):
    """Each commit's pack holds the previous one (while small), which is then hidden and deleted:
    a writer leaves one pack of tier 0 behind, not one per commit, and git reads every step."""
    path = tmp_path / "s.git"
    store = canonry.init(str(path), bare=True)
    v = store.log_artifact(str(model_file), name="gem", type="model")
    store.storage.wait_for_housekeeping()
    settled = set(_indexes(path))
    previous, kept = None, set()
    for c in range(6):
        store.link(v.address, f"model/c{c}", aliases=["candidate"])
        store.storage.wait_for_housekeeping()
        mine = set(_indexes(path)) - settled
        assert len(mine) == 1, mine  # the growing pack only
        grown = mine.pop()
        if previous is not None:
            assert previous not in _indexes(path) and previous.replace(".idx", ".pack") not in _packs(path)
            previous_ids = {sha for sha, _off, _crc in packs.read_index(os.path.join(_pack_dir(path), grown))}
            assert kept <= previous_ids  # everything the replaced pack held
        previous = grown
        kept = {sha for sha, _off, _crc in packs.read_index(os.path.join(_pack_dir(path), grown))}
    _verify_with_git(path)
    assert fsck(path).returncode == 0
    assert git("-C", path, "log", "--format=%s", "main").count("\n") >= 7
    reopened = canonry.open(str(path))
    assert [reopened.resolve(f"model/c{c}:candidate").version for c in range(6)] == ["v0"] * 6


def test_a_growing_pack_stores_large_trees_as_deltas_and_stops_growing_at_tier_one(tmp_path):
    """A registry's big tree changes by one entry a commit: in the growing pack each version is
    a delta against the one before, so the pack stays small; past SMALLEST_TIER objects the
    pack is left as it is and the next commit starts a new one."""
    repo = tmp_path / "r.git"
    git("init", "-q", "--bare", repo)
    growing = packs.GrowingPack(_pack_dir(repo))
    trees, bases, superseded = [], [], []
    for k in range(40):
        tree = _tree(200, f"version {k}")  # ~8 KB, one entry differs from the previous version
        trees.append(tree)
        base, replaced = growing.write([tree, Blob.from_string(f"record {k}".encode())], fsync=False)
        bases.append(base)
        superseded.append(replaced)
    assert superseded[0] is None and superseded[1] == bases[0]
    first_new = next(k for k in range(1, 40) if superseded[k] is None)  # the pack stopped growing
    assert 2 * (first_new - 1) + 2 >= packs.SMALLEST_TIER > 2 * (first_new - 1)
    size = os.path.getsize(bases[first_new - 1] + ".pack")
    assert size < 8_500 + first_new * 400, size  # one whole tree, deltas for the others
    reader = gitread.ObjectReader(str(repo / "objects"))
    for tree in trees:
        assert reader.get_raw(tree.id) == (2, tree.as_raw_string())
    for base in set(bases):
        git("verify-pack", base + ".idx")


def test_a_superseded_pack_waits_while_another_process_holds_the_gc_lock(tmp_path, model_file):
    """The replaced pack is a duplicate, so when another process holds the gc lock it simply
    stays (every reader still finds everything) and is retired once the lock is free."""
    path = tmp_path / "s.git"
    store = canonry.init(str(path), bare=True)
    v = store.log_artifact(str(model_file), name="gem", type="model")
    store.storage.wait_for_housekeeping()
    before = set(_indexes(path))
    lock = path / "canonry" / "gc.lock"
    holder = _hold(lock)
    for c in range(3):
        store.link(v.address, f"model/c{c}")
    assert len(set(_indexes(path)) - before) == 3  # nothing retired under another's lock
    assert fsck(path).returncode == 0
    assert canonry.open(str(path)).resolve("model/c2:latest").version == "v0"
    os.close(holder)
    store.link(v.address, "model/c3")
    store.storage.wait_for_housekeeping()
    assert len(set(_indexes(path)) - before) == 1 and not packs.leftover_retired(_pack_dir(path))
    assert fsck(path).returncode == 0
    assert [canonry.open(str(path)).resolve(f"model/c{c}:latest").version for c in range(4)] == ["v0"] * 4


def test_a_growing_pack_merged_away_by_another_process_is_not_grown_again(tmp_path):
    repo = tmp_path / "r.git"
    git("init", "-q", "--bare", repo)
    growing = packs.GrowingPack(_pack_dir(repo))
    first, _ = growing.write([Blob.from_string(b"one")], fsync=False)
    # Another process merges it with other small packs and retires it.
    others = [write_pack(_pack_dir(repo), [Blob.from_string(f"other {k}".encode())]) for k in range(3)]
    _merged, replaced = packs.merge_packs(gitread.ObjectReader(str(repo / "objects")), [first, *others])
    assert first in replaced and packs.retire_packs(replaced) == replaced
    second, superseded = growing.write([Blob.from_string(b"two")], fsync=False)
    assert superseded is None  # started afresh: "one" is in the merged pack already
    assert {sha for sha, _o, _c in packs.read_index(second + ".idx")} == {Blob.from_string(b"two").sha().digest()}
    packs.remove_retired(replaced)
    _verify_with_git(repo)


def _objects_bytes(repo_path) -> int:
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _dirs, names in os.walk(os.path.join(str(repo_path), "objects")) for name in names)


def test_gc_keeps_the_deltas_merges_made_and_the_store_is_no_larger(tmp_path, model_file):
    """A registry tree of 80 collections is rewritten by every link; tiered merges store its
    versions as deltas, and a full gc must keep them (dulwich's repack wrote them whole: the
    store grew by half). Every object stays, and git agrees."""
    path = tmp_path / "s.git"
    store = canonry.init(str(path), bare=True)
    v = store.log_artifact(str(model_file), name="gem", type="model")
    for c in range(80):
        store.link(v.address, f"model/collection-with-a-long-name-{c:03d}")
    store.storage.wait_for_housekeeping()
    before_objects = set(git("-C", path, "cat-file", "--batch-all-objects", "--batch-check").splitlines())
    before = _objects_bytes(path)
    assert len(_packs(path)) > 1
    result = store.gc()
    assert result["packs"] == 1 and len(_packs(path)) == 1
    assert _objects_bytes(path) <= before
    assert set(git("-C", path, "cat-file", "--batch-all-objects", "--batch-check").splitlines()) == before_objects
    assert fsck(path).returncode == 0
    deltas = [line for line in git("verify-pack", "-v", os.path.join(_pack_dir(path), _packs(path)[0])).splitlines()
              if line.split()[1:2] == ["tree"] and len(line.split()) == 7]
    assert len(deltas) > 40  # most versions of the registry tree are deltas
    reopened = canonry.open(str(path))
    assert reopened.resolve("model/collection-with-a-long-name-079:latest").version == "v0"
    reopened.set_alias("model/collection-with-a-long-name-079:v0", "production")  # writes go on
    assert store.gc()["packs"] == 1 and fsck(path).returncode == 0
