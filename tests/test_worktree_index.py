"""The git index of a checked-out store, kept in git's split-index mode (git/worktree.py): real git
must agree with it after every canonry write, whoever wrote the index last, and a user's own
edit must stay visible. Big transactions: pending paths indexed by directory (view.py)."""
from __future__ import annotations

import os

import pytest
from conftest import git, git_status

import canonry
from canonry.git import worktree
from canonry.store import init_store


def _agrees(path) -> None:
    """git reads the index, finds the work tree clean, and the index equals HEAD's tree."""
    assert git_status(path) == ""
    assert git("-C", path, "diff", "--cached", "--name-only") == ""
    assert git("-C", path, "diff", "--name-only") == ""
    staged = git("-C", path, "ls-files", "-s").splitlines()
    tree = git("-C", path, "ls-tree", "-r", "HEAD").splitlines()
    assert [line.split()[1] + " " + line.split()[-1] for line in staged] == \
        [line.split()[2] + " " + line.split()[-1] for line in tree]


def _shared_files(git_dir) -> list[str]:
    return sorted(n for n in os.listdir(git_dir) if n.startswith("sharedindex."))


def _artifacts(store, make_file, n: int) -> list[str]:
    return [store.log_artifact(str(make_file(f"w{i}")), name=f"a{i}", type="model").address
            for i in range(n)]


def test_git_agrees_after_every_write_and_the_index_is_split(store, store_path, make_file):
    refs = _artifacts(store, make_file, 3)
    _agrees(store_path)
    for round_ in range(6):
        for i, ref in enumerate(refs):
            lv = store.link(ref, f"model/c{i}", aliases=["candidate"])
            _agrees(store_path)
            store.set_alias(f"model/c{i}:{lv.version}", "production")
            _agrees(store_path)
            if round_ % 2:
                store.unlink(f"model/c{i}:{lv.version}")
                _agrees(store_path)
    # split mode: the big part in a shared file (git status may write new ones of its own),
    # .git/index holding only the changes
    assert _shared_files(store_path / ".git")
    assert os.path.getsize(store_path / ".git" / "index") < 4096
    assert git("-C", store_path, "fsck", "--no-dangling") == ""


def test_a_transaction_of_many_paths_writes_a_new_shared_index(store, store_path, make_file):
    ref = _artifacts(store, make_file, 1)[0]
    store.link(ref, "model/first")
    before = _shared_files(store_path / ".git")
    with store.transaction() as tx:  # more changed entries than a split index should carry
        for c in range(600):
            tx.link(ref, f"model/c{c:03d}")
    _agrees(store_path)
    after = _shared_files(store_path / ".git")
    assert after and after != before[-1:]
    assert worktree.read_index(str(store_path / ".git")).overlay == {}
    store.set_alias("model/c007:v0", "production")
    _agrees(store_path)


def test_user_edit_stays_and_shows_as_modified_across_writes(store, store_path, make_file):
    refs = _artifacts(store, make_file, 2)
    store.link(refs[0], "model/mine", aliases=["production"])
    edited = store_path / "registries" / "model" / "mine" / "aliases.yaml"
    edited.write_text("# my notes\n" + edited.read_text())
    for i in range(5):
        lv = store.link(refs[1], f"model/other{i}")
        store.set_alias(f"model/other{i}:{lv.version}", "production")
    store.link(refs[1], "model/mine", aliases=["staging"])  # touches the edited file
    assert edited.read_text().startswith("# my notes\n")
    assert git_status(store_path).splitlines() == [" M registries/model/mine/aliases.yaml"]
    assert git("-C", store_path, "diff", "--cached", "--name-only") == ""


@pytest.mark.parametrize("git_step", [
    ["update-index", "--no-split-index"],  # git turns it back into one whole index
    ["update-index", "--split-index"],  # git writes a split index (and a shared file) of its own
    ["update-index", "--index-version", "4"],  # path-compressed entries
    ["status"],  # git refreshes and rewrites the index
])
def test_index_written_by_git_in_between(store, store_path, make_file, git_step):
    refs = _artifacts(store, make_file, 2)
    store.link(refs[0], "model/c")
    (store_path / "notes.txt").write_text("mine\n")
    git("-C", store_path, "add", "notes.txt")  # the user's staged file: must stay staged
    git("-C", store_path, *git_step)
    for _ in range(3):
        lv = store.link(refs[1], "model/c", aliases=["candidate"])
        store.unlink(f"model/c:{lv.version}")
        git("-C", store_path, *git_step)
    assert git_status(store_path).splitlines() == ["A  notes.txt"]
    assert git("-C", store_path, "diff", "--cached", "--name-only").splitlines() == ["notes.txt"]
    git("-C", store_path, "commit", "-qm", "notes")
    _agrees(store_path)


def test_a_held_index_lock_is_waited_for_then_the_write_lands(store, store_path, make_file):
    ref = _artifacts(store, make_file, 1)[0]
    with worktree.locked_index(str(store_path / ".git")):
        from dulwich.file import FileLocked

        with pytest.raises(FileLocked), worktree.locked_index(str(store_path / ".git")):
            pass
    store.link(ref, "model/c")
    assert not (store_path / ".git" / "index.lock").exists()
    _agrees(store_path)


def test_clone_made_with_git_stays_clean(store, store_path, make_file, tmp_path):
    refs = _artifacts(store, make_file, 2)
    store.link(refs[0], "model/c", aliases=["production"])
    clone = tmp_path / "clone"
    git("clone", "-q", store_path, clone)
    with canonry.open(str(clone)) as c:
        for i in range(4):
            lv = c.link(refs[1], f"model/d{i}", aliases=["candidate"])
            c.set_alias(f"model/d{i}:{lv.version}", "production")
            _agrees(clone)
    assert _shared_files(clone / ".git")


def test_prefix_store_in_a_code_repository(tmp_path, make_file):
    repo = tmp_path / "code"
    repo.mkdir()
    git("init", "-q", "-b", "main", repo)
    (repo / "train.py").write_text("print('hi')\n")
    git("-C", repo, "add", "-A")
    git("-C", repo, "commit", "-qm", "code")
    store, _ = init_store(str(repo), prefix="registry")
    refs = _artifacts(store, make_file, 2)
    for i in range(4):
        lv = store.link(refs[i % 2], f"model/c{i}", aliases=["production"])
        _agrees(repo)
        store.unlink(f"model/c{i}:{lv.version}")
        _agrees(repo)
    (repo / "train.py").write_text("print('edited')\n")  # the user's code edit: left alone
    store.link(refs[0], "model/last")
    assert git_status(repo).splitlines() == [" M train.py"]
    assert (repo / "registry" / "registries" / "model" / "last" / "links" / "v0.yaml").exists()


def test_many_links_in_one_transaction_list_and_number_as_one_at_a_time(store, make_file):
    refs = _artifacts(store, make_file, 5)
    with store.transaction() as tx:
        for c in range(3):
            for ref in refs:
                tx.link(ref, f"model/c{c}")
        tx.unlink("model/c1:v2")
        tx.link(refs[2], "model/c1")  # linked again: a new number, the map kept in step
        view = tx.view()
        assert view.link_versions("model", "c1") == ["v0", "v1", "v3", "v4", "v5"]
        assert view.collection_names("model") == ["c0", "c1", "c2"]
        assert view.pending_under("registries/model/c2") and not view.pending_under("registries/model/c9")
    assert [v.version for v in store.versions("model/c1")] == ["v0", "v1", "v3", "v4", "v5"]
    assert store.link(refs[0], "model/c1").created is False  # the links map after the commit


def _fresh_process() -> None:
    """What a new process starts with: no index or shared index parsed yet."""
    worktree._shared_cache.clear()
    worktree._index_cache.clear()


def test_a_fresh_process_reads_the_shared_index_in_place_through_its_offsets(store, store_path, make_file):
    refs = _artifacts(store, make_file, 4)
    with store.transaction() as tx:  # enough entries for a new shared index (and its sidecar)
        for c in range(600):
            tx.link(refs[c % 4], f"model/c{c}")
    git_dir = store_path / ".git"
    sidecars = [n for n in os.listdir(git_dir) if n.startswith("canonry-sharedindex-offsets.")]
    assert sidecars
    _fresh_process()
    index = worktree.read_index(str(git_dir))
    assert isinstance(index.base, worktree._InPlace)  # no whole parse
    whole = worktree._parse((git_dir / f"sharedindex.{index.shared}").read_bytes(), "shared")[0]
    assert list(index.base.keys) == [k for k, _r in whole]  # the same entries, in the same order
    assert [index.base.raw[i] for i in range(len(whole))] == [r for _k, r in whole]
    assert all(index.base.pos.get(k) == i for i, (k, _r) in enumerate(whole[::37]) for i in [i * 37])
    assert index.base.pos.get(b"model/none\0\0") is None
    for c in range(0, 600, 50):  # writes through it keep git in agreement
        _fresh_process()
        store.set_alias(f"model/c{c}:v0", "production")
        _agrees(store_path)


def test_a_sidecar_that_does_not_fit_its_shared_index_is_not_used(store, store_path, make_file):
    refs = _artifacts(store, make_file, 2)
    with store.transaction() as tx:
        for c in range(600):
            tx.link(refs[c % 2], f"model/c{c}")
    git_dir = store_path / ".git"
    for name in os.listdir(git_dir):
        if name.startswith("canonry-sharedindex-offsets."):
            data = (git_dir / name).read_bytes()
            (git_dir / name).write_bytes(data[:-8])  # cut short
    _fresh_process()
    index = worktree.read_index(str(git_dir))
    assert isinstance(index.base, worktree._Entries)  # parsed whole, and the sidecar written anew
    store.set_alias("model/c3:v0", "production")
    _agrees(store_path)
    _fresh_process()
    assert isinstance(worktree.read_index(str(git_dir)).base, worktree._InPlace)
