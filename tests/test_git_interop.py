"""The store is a plain git repository: real git can check it, read it, clone it and push it."""
from __future__ import annotations

import json
import os

import pytest
import yaml
from conftest import ACTOR, ACTOR_EMAIL, commit_count, fsck, git, git_status, head_of, run_process, show_file

import canonry


def _busy_store(store, make_file, links: int = 6):
    for i in range(links):
        store.log_artifact(str(make_file(f"weights {i}")), name="gem", type="model",
                           metrics={"acc": i / 10})
        lv = store.link(f"gem:v{i}", "model/first-collection", aliases=["staging"])
        if i % 2:
            store.set_alias(lv.address, "production")
        store.tag(lv.address, f"run{i}")
    store.log_artifact(str(make_file("rows")), name="rows", type="dataset")
    store.link("rows:v0", "dataset/train", aliases=["golden"])
    store.unlink("model/first-collection:v0")
    store.remove_alias("model/first-collection", "staging")
    store.create_registry("team", types=["model", "dataset"])
    store.edit_registry("team", add_types=["prompt"])
    with store.transaction(message="batch") as tx:
        tx.link("gem:v1", "team/picks", aliases=["best"])
        tx.tag("team/picks", "curated")
    return store


def test_fsck_strict_is_clean_after_many_operations(store, store_path, make_file):
    _busy_store(store, make_file)
    result = fsck(store_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in result.stderr.lower() and "warning" not in result.stderr.lower()
    assert commit_count(store_path) > 20


def test_fsck_strict_is_clean_on_bare_store_and_after_gc(tmp_path, make_file):
    path = tmp_path / "bare.git"
    store = canonry.init(str(path), bare=True)
    _busy_store(store, make_file, links=3)
    assert fsck(path).returncode == 0
    store.gc()
    result = fsck(path)
    assert result.returncode == 0, result.stderr


def test_git_log_is_readable_with_sentences_and_trailers(store, store_path, model_file):
    store.log_artifact(str(model_file), name="gemma-finetuned", type="model")
    store.link("gemma-finetuned:v0", "model/first-collection", aliases=["production"])
    store.set_alias("model/first-collection:v0", "staging")
    subjects = git("-C", store_path, "log", "--format=%s").splitlines()
    assert subjects[0] == "set alias staging on model/first-collection:v0"
    assert subjects[1] == "link gemma-finetuned:v0 -> model/first-collection as v0 [+production]"
    assert subjects[2].startswith("log gemma-finetuned:v0 (model, 1 file, ")
    assert subjects[3] == "init canonry store on main"
    trailers = git("-C", store_path, "log", "-1", "--skip=1",
                   "--format=%(trailers:key=Canonry-Op,valueonly)")
    records = [json.loads(line) for line in trailers.splitlines() if line.strip()]
    assert [r["op"] for r in records] == ["link", "alias.set"]
    assert records[0]["artifact"] == "gemma-finetuned:v0"
    assert records[0]["collection"] == "model/first-collection" and records[0]["version"] == "v0"
    assert records[1] == {**records[1], "alias": "production", "before": None, "after": "v0"}
    # git's own trailer parser sees them as trailers (keyed output)
    keyed = git("-C", store_path, "log", "-1", "--format=%(trailers:key=Canonry-Op)")
    assert keyed.startswith("Canonry-Op: {")


def test_author_and_committer_are_the_actor(store, store_path, model_file, monkeypatch):
    store.log_artifact(str(model_file), name="gem", type="model")
    assert git("-C", store_path, "log", "-1", "--format=%an <%ae>|%cn <%ce>").strip() == \
        f"{ACTOR}|{ACTOR}"
    monkeypatch.setenv("CANONRY_ACTOR", "carol@example.org")
    other = canonry.open(str(store_path))
    other.link("gem:v0", "model/c")
    assert git("-C", store_path, "log", "-1", "--format=%ae").strip() == "carol@example.org"
    assert other.resolve("model/c:v0").linked_by == "carol@example.org"


def test_author_falls_back_to_git_config(store, store_path, model_file, monkeypatch):
    monkeypatch.delenv("CANONRY_ACTOR")
    git("-C", store_path, "config", "user.name", "Repo Person")
    git("-C", store_path, "config", "user.email", "repo@example.com")
    fresh = canonry.open(str(store_path))
    fresh.log_artifact(str(model_file), name="gem", type="model")
    assert git("-C", store_path, "log", "-1", "--format=%an <%ae>").strip() == \
        "Repo Person <repo@example.com>"
    assert fresh.resolve("gem:v0").created_by == "repo@example.com"


def test_clone_made_with_git_works_with_canonry(store, store_path, tmp_path, model_file,
                                                run_cli, monkeypatch):
    store.log_artifact(str(model_file), name="gemma-finetuned", type="model")
    store.link("gemma-finetuned:v0", "model/first-collection", aliases=["production"])
    clone = tmp_path / "clone"
    git("clone", "-q", store_path, clone)
    opened = canonry.open(str(clone))
    assert opened.resolve("model/first-collection:production").artifact == "gemma-finetuned:v0"
    r = run_cli("-C", clone, "show", "model/first-collection", "--json")
    assert r.exit_code == 0, r
    assert r.json()["aliases"]["production"] == "v0"
    # write in the clone: a link needs no bytes
    lv = opened.link("gemma-finetuned:v0", "model/second-collection", aliases=["candidate"])
    assert lv.address == "model/second-collection:v0"
    assert git_status(clone) == ""
    assert fsck(clone).returncode == 0
    # bytes live outside git: get in the clone needs the shared blob storage
    r = run_cli("-C", clone, "get", "gemma-finetuned:v0", "--to", tmp_path / "out")
    assert r.exit_code == 1 and "not in storage" in r.stderr
    monkeypatch.setenv("CANONRY_BLOBS", str(store.blobs.root))
    r = run_cli("-C", clone, "get", "gemma-finetuned:v0", "--to", tmp_path / "out")
    assert r.exit_code == 0, r
    assert (tmp_path / "out" / "my_model.txt").read_bytes() == model_file.read_bytes()


def test_clone_push_and_pull_round_trip(tmp_path, model_file):
    origin = tmp_path / "origin.git"
    store = canonry.init(str(origin), bare=True)
    store.log_artifact(str(model_file), name="gem", type="model")
    store.link("gem:v0", "model/c")
    work = tmp_path / "work"
    git("clone", "-q", origin, work)
    canonry.open(str(work)).set_alias("model/c:v0", "production")
    git("-C", work, "push", "-q", "origin", "main")
    assert canonry.open(str(origin)).resolve("model/c:production").version == "v0"
    # and the other way: a change made in origin is pulled into the clone
    canonry.open(str(origin)).tag("model/c", "pulled")
    git("-C", work, "pull", "-q", "--ff-only")
    assert canonry.open(str(work)).collection("model/c").tags == ["pulled"]
    assert git_status(work) == ""


def test_history_includes_hand_made_commits(store, store_path, model_file):
    store.log_artifact(str(model_file), name="gem", type="model")
    store.link("gem:v0", "model/c")
    rel = "registries/model/c/aliases.yaml"
    (store_path / rel).write_text("format: 1\naliases:\n  production: v0\n")
    git("-C", store_path, "add", rel)
    git("-C", store_path, "commit", "-q", "-m", "promote c:v0 by pull request")
    entries = store.history("model/c")
    assert entries[0].op == "commit" and entries[0].summary == "promote c:v0 by pull request"
    assert entries[0].actor == "git-user@example.com"
    assert store.resolve("model/c:production").version == "v0"


def test_worktree_stays_clean_after_canonry_writes(store, store_path, make_file):
    assert git_status(store_path) == ""
    _busy_store(store, make_file, links=3)
    assert git_status(store_path) == ""
    # the files on disk are what the branch holds
    rel = "registries/model/first-collection/aliases.yaml"
    assert (store_path / rel).read_text() == show_file(store_path, f"main:{rel}")
    assert not (store_path / "registries/model/first-collection/links/v0.yaml").exists()
    assert git("-C", store_path, "diff", "HEAD", "--stat") == ""


def test_a_work_tree_locked_too_long_is_a_warning_and_the_commit_stands(store, store_path, make_file, capfd,
                                                                        monkeypatch):
    """Another canonry process holds the work-tree lock: the lock wait ends in FileLocked (which
    the commit's housekeeping retries, then reports), never in a traceback; the commit stands."""
    from dulwich.file import FileLocked

    from canonry import store as store_module
    from canonry.git.locks import FileLock

    store.log_artifact(str(make_file("weights", "w.bin")), name="gem", type="model")
    lock = store_path / ".git" / "canonry" / "worktree.lock"
    other = FileLock(str(lock))  # its own descriptor: as exclusive as another process's
    assert other.acquire()
    with pytest.raises(FileLocked):
        store.storage.worktree_lock.acquire(wait=0.05)
    monkeypatch.setattr(store_module.time, "sleep", lambda s: None)  # the 20 retries, at once
    monkeypatch.setattr(store.storage.worktree_lock, "wait", 0.01)
    store.link("gem:v0", "model/c")
    assert "the git index stayed locked" in capfd.readouterr().err
    assert other.held  # not ours
    other.close()
    assert canonry.open(str(store_path)).resolve("model/c:latest").version == "v0"


def test_local_uncommitted_edit_of_touched_file_is_preserved(linked, store_path):
    store = linked
    rel = "registries/model/first-collection/aliases.yaml"
    local = "# my local notes\nformat: 1\naliases:\n  production: v0\n"
    (store_path / rel).write_text(local)
    store.set_alias("model/first-collection:v0", "staging")
    assert (store_path / rel).read_text() == local  # the user's edit is not overwritten
    status = git_status(store_path)
    assert status.splitlines() == [f" M {rel}"]
    committed = yaml.safe_load(show_file(store_path, f"main:{rel}"))
    assert committed["aliases"] == {"production": "v0", "staging": "v0"}
    # an untouched file the user edited stays edited and nothing else shows up
    other = "registries/model/registry.yaml"
    (store_path / other).write_text((store_path / other).read_text() + "# note\n")
    store.tag("model/first-collection", "x")
    assert sorted(git_status(store_path).splitlines()) == sorted([f" M {rel}", f" M {other}"])


def test_untracked_user_file_in_the_way_is_kept(linked, store_path):
    rel = "registries/model/first-collection/links/v1.yaml"
    (store_path / rel).write_text("mine\n")
    v = linked.log_artifact(__file__, name="other", type="model")
    linked.link(v.address, "model/first-collection")
    assert (store_path / rel).read_text() == "mine\n"
    assert yaml.safe_load(show_file(store_path, f"main:{rel}"))["artifact"] == "other:v0"


def test_bare_store_through_cli(run_cli, tmp_path, model_file):
    path = tmp_path / "bare.git"
    git("init", "-q", "--bare", path)
    assert run_cli("init", path).exit_code == 0
    assert run_cli("-C", path, "log", model_file, "-n", "gem", "-t", "model").exit_code == 0
    assert run_cli("-C", path, "link", "gem:v0", "model/c", "-a", "production").exit_code == 0
    r = run_cli("-C", path, "show", "model/c:production", "--json")
    assert r.exit_code == 0 and r.json()["artifact"] == "gem:v0"
    # blob storage sits inside the bare git directory
    assert (path / "canonry" / "blobs").is_dir()
    assert git("-C", path, "ls-tree", "-r", "--name-only", "main").count("links/v0.yaml") == 1


def test_store_on_other_branch_leaves_checked_out_branch_alone(tmp_path, model_file):
    path = tmp_path / "project"
    git("init", "-q", "-b", "main", path)
    (path / "train.py").write_text("print(1)\n")
    git("-C", path, "add", ".")
    git("-C", path, "commit", "-q", "-m", "code")
    store = canonry.init(str(path), branch="registry")
    store.log_artifact(str(model_file), name="gem", type="model")
    store.link("gem:v0", "model/c", aliases=["production"])
    assert git_status(path) == ""
    assert sorted(os.listdir(path)) == [".git", "train.py"]
    assert commit_count(path, "main") == 1
    assert "registries/model/c/aliases.yaml" in git("-C", path, "ls-tree", "-r", "--name-only",
                                                   "registry")


def test_gc_consolidates_packs_and_store_stays_readable(store, store_path, make_file, run_cli):
    _busy_store(store, make_file, links=4)
    before = dict(line.split(": ") for line in git("-C", store_path, "count-objects", "-v").splitlines())
    assert int(before["count"]) == 0  # canonry writes each commit's objects as a pack, none loose
    assert int(before["packs"]) > 1
    r = run_cli("-C", store_path, "gc")
    assert r.exit_code == 0, r
    assert r.stdout.startswith("packed ")
    after = dict(line.split(": ") for line in
                 git("-C", store_path, "count-objects", "-v").splitlines())
    assert int(after["count"]) == 0
    assert int(after["packs"]) == 1
    reopened = canonry.open(str(store_path))
    assert reopened.resolve("model/first-collection:production").version == "v3"
    assert reopened.resolve("team/picks:best").artifact == "gem:v1"
    assert fsck(store_path).returncode == 0
    # and writes continue on top of the packed store
    reopened.set_alias("model/first-collection:v1", "production")
    assert canonry.open(str(store_path)).resolve("model/first-collection:production").version == "v1"
    second = store.gc()
    assert second["packs"] == 1


def test_subprocess_write_in_clone_of_bare_origin(tmp_path, model_file):
    origin = tmp_path / "origin.git"
    canonry.init(str(origin), bare=True).log_artifact(str(model_file), name="gem", type="model")
    clone = tmp_path / "clone"
    git("clone", "-q", origin, clone)
    r = run_process(["link", "gem:v0", "model/c", "--alias", "production"], cwd=clone)
    assert r.returncode == 0, r.stderr
    assert git_status(clone) == ""
    assert head_of(clone) != head_of(origin)
    assert git("-C", clone, "log", "-1", "--format=%ae").strip() == ACTOR_EMAIL


def test_clone_of_store_on_other_branch_works(run_cli, tmp_path):
    origin = tmp_path / "origin"
    assert run_cli("init", origin, "--store-branch", "registry").exit_code == 0
    clone = tmp_path / "clone"
    git("clone", "-q", origin, clone)
    r = run_cli("-C", clone, "ls", "--json")
    assert r.exit_code == 0, r
    assert [x["name"] for x in r.json()] == ["dataset", "model"]


def test_loose_objects_are_packed_automatically_by_count(linked, store_path):
    """Like `git gc --auto`, canonry estimates the loose objects from one fan-out directory
    (objects/17) and packs them during a write once there are many."""
    from dulwich.objects import Blob

    store = linked
    objects = store.storage.repo.object_store
    made, i = [], 0
    while len(made) < 40:  # 40 in objects/17 estimates 10,240 loose objects
        blob = Blob.from_string(f"filler {i}\n".encode())
        i += 1
        if blob.id.startswith(b"17"):
            objects.add_object(blob)
            made.append(blob.id.decode())
    assert len(os.listdir(store_path / ".git" / "objects" / "17")) >= 40
    store.set_alias("model/first-collection:v0", "staging")  # any write
    counts = dict(line.split(": ") for line in
                  git("-C", store_path, "count-objects", "-v").splitlines())
    assert int(counts["count"]) == 0, counts
    assert int(counts["in-pack"]) >= 40
    # the objects are still there, now packed, and the store reads fine
    assert git("-C", store_path, "cat-file", "-t", made[0]).strip() == "blob"
    assert canonry.open(str(store_path)).resolve("model/first-collection:staging").version == "v0"
    assert fsck(store_path).returncode == 0


def test_store_keeps_working_after_real_git_gc_and_packed_refs(linked, store_path):
    git("-C", store_path, "gc", "-q", "--prune=now")
    git("-C", store_path, "pack-refs", "--all")
    assert not (store_path / ".git" / "refs" / "heads" / "main").exists()  # now in packed-refs
    store = canonry.open(str(store_path))
    assert store.resolve("model/first-collection:production").version == "v0"
    before = head_of(store_path)
    store.set_alias("model/first-collection:v0", "staging")
    assert git("-C", store_path, "rev-parse", "main~1").strip() == before
    assert canonry.open(str(store_path)).resolve("model/first-collection:staging").version == "v0"
    assert git_status(store_path) == ""
    assert fsck(store_path).returncode == 0


def test_a_linked_worktree_reads_and_writes_the_shared_branch(store, store_path, model_file, tmp_path):
    """`git worktree add`: the worktree's git dir holds only its HEAD and index; branches,
    config and objects are the main repository's. canonry must read and move those."""
    v = store.log_artifact(str(model_file), name="gem", type="model")
    store.link(v.address, "model/first-collection", aliases=["production"])
    wt = tmp_path / "wt"
    git("-C", store_path, "worktree", "add", "-q", "-b", "side", str(wt))
    from_wt = canonry.open(str(wt))
    assert from_wt.storage.branch == "main"
    assert from_wt.resolve("model/first-collection:production").artifact == v.address
    (tmp_path / "w2.bin").write_bytes(b"from the worktree")
    v2 = from_wt.log_artifact(str(tmp_path / "w2.bin"), name="gem", type="model")
    from_wt.set_alias(from_wt.link(v2.address, "model/first-collection").address, "production")
    # the main repository's branch moved; nothing was written under the worktree's git dir
    head = git("-C", store_path, "rev-parse", "main").strip()
    assert git("-C", wt, "rev-parse", "main").strip() == head
    assert not list((store_path / ".git" / "worktrees").glob("*/refs/heads/*"))
    assert canonry.open(str(store_path)).resolve("model/first-collection:production").artifact == v2.address
    assert fsck(store_path).returncode == 0
