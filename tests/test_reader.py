"""gitread: objects and refs read straight from a repository's files, checked against dulwich
and the git CLI on repositories git itself wrote (deltas of both kinds, loose objects,
alternates, packed refs)."""
from __future__ import annotations

import os

from conftest import fsck, git
from dulwich.repo import Repo

import canonry
from canonry.git import packs
from canonry.git import reader as gitread


def _git_repo_with_history(path, commits: int = 12) -> None:
    """A normal git repository whose files change a little per commit (good delta material)."""
    git("init", "-q", "-b", "main", str(path))
    lines = [f"line {i} " + "x" * (i % 7) for i in range(400)]
    for c in range(commits):
        lines[c * 13 % 400] = f"changed in commit {c}"
        (path / "big.txt").write_text("\n".join(lines))
        (path / "sub").mkdir(exist_ok=True)
        (path / "sub" / f"f{c % 4}.txt").write_text(f"{c}\n" * 50)
        git("-C", str(path), "add", "-A")
        git("-C", str(path), "-c", "user.name=T", "-c", "user.email=t@example.com",
            "commit", "-q", "-m", f"commit {c}")
    git("-C", str(path), "tag", "-a", "-m", "a tag", "v1")


def _all_objects(path) -> list[bytes]:
    out = git("-C", str(path), "cat-file", "--batch-all-objects", "--batch-check=%(objectname)")
    return [line.encode() for line in out.split()]


def _assert_reads_like_dulwich(path) -> int:
    objects = _all_objects(path)
    reader = gitread.ObjectReader(os.path.join(str(path), ".git", "objects"))
    with Repo(str(path)) as repo:
        for sha in objects:
            assert reader.get_raw(sha) == repo.object_store.get_raw(sha), sha
            # binary ids too, as dulwich takes them
            assert reader.get_raw(bytes.fromhex(sha.decode())) == repo.object_store.get_raw(sha)
    reader.close()
    return len(objects)


def test_reads_every_object_of_git_packs_with_offset_deltas(tmp_path):
    repo = tmp_path / "r"
    _git_repo_with_history(repo)
    git("-C", str(repo), "gc", "-q", "--aggressive")
    verify = git("verify-pack", "-v", *[str(p) for p in (repo / ".git/objects/pack").glob("*.idx")])
    assert "delta" in verify  # the repository really has deltified objects
    assert _assert_reads_like_dulwich(repo) > 40


def test_reads_ref_deltas_and_loose_objects(tmp_path):
    """`git pack-objects` without --delta-base-offset writes REF_DELTA entries; objects made
    after the pack stay loose."""
    repo = tmp_path / "r"
    _git_repo_with_history(repo)
    objects = "\n".join(o.decode() for o in _all_objects(repo)) + "\n"
    pack_dir = repo / ".git/objects/pack"
    pack_dir.mkdir(parents=True, exist_ok=True)
    git("-C", str(repo), "pack-objects", "-q", "--window=50", str(pack_dir / "pack"), input=objects)
    idx = next(pack_dir.glob("*.idx"))
    data = idx.with_suffix(".pack").read_bytes()
    kinds = {gitread.entry_header(data, off)[0] for _, off, _ in packs.read_index(str(idx))}
    assert packs._REF_DELTA in kinds and packs._OFS_DELTA not in kinds
    (repo / "new.txt").write_text("after the pack\n")
    git("-C", str(repo), "add", "new.txt")
    git("-C", str(repo), "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-q", "-m", "loose")
    assert _assert_reads_like_dulwich(repo) > 40


def test_reads_objects_of_alternates(tmp_path):
    src = tmp_path / "src"
    _git_repo_with_history(src, commits=3)
    git("clone", "-q", "--shared", str(src), str(tmp_path / "shared"))
    shared = tmp_path / "shared"
    assert (shared / ".git/objects/info/alternates").exists()
    assert not list((shared / ".git/objects/pack").glob("*.pack"))
    assert _assert_reads_like_dulwich(shared) > 10


def test_an_index_it_cannot_read_is_left_to_dulwich(tmp_path):
    """A pack index v1 (git still writes one when asked): the reader hands those objects over."""
    repo = tmp_path / "r"
    _git_repo_with_history(repo, commits=3)
    git("-C", str(repo), "-c", "pack.indexVersion=1", "gc", "-q")
    objects = _all_objects(repo)
    with Repo(str(repo)) as dulwich_repo:
        reader = gitread.ObjectReader(str(repo / ".git/objects"), fallback=lambda: dulwich_repo.object_store)
        for sha in objects:
            assert reader.get_raw(sha) == dulwich_repo.object_store.get_raw(sha)
        reader.close()
    alone = gitread.ObjectReader(str(repo / ".git/objects"))
    try:
        alone.get_raw(objects[0], must_exist=False)
        raise AssertionError("read an object from an index it does not know")
    except KeyError:
        pass


def test_missing_objects_are_key_errors(tmp_path):
    repo = tmp_path / "r"
    _git_repo_with_history(repo, commits=2)
    reader = gitread.ObjectReader(str(repo / ".git/objects"))
    assert b"0" * 40 not in reader
    assert _all_objects(repo)[0] in reader


def test_reader_keeps_working_when_packs_are_merged_away(tmp_path):
    """Another process merges the packs this reader has open: old objects are still found (in
    the merged pack), new ones too."""
    path = tmp_path / "store"
    writer = canonry.init(str(path), bare=True)
    reader_store = canonry.open(str(path))
    data = tmp_path / "d.bin"
    for i in range(3):
        data.write_text(f"v{i}")
        writer.link(writer.log_artifact(str(data), name="m", type="model").address, "model/m")
    assert reader_store.resolve("model/m:latest").version == "v2"
    writer.storage.gc(full=True)  # every pack the reader has open is replaced by one
    assert len(list((path / "objects/pack").glob("*.pack"))) == 1
    for i in range(3, 5):
        data.write_text(f"v{i}")
        writer.link(writer.log_artifact(str(data), name="m", type="model").address, "model/m")
    assert reader_store.resolve("model/m:latest").version == "v4"
    assert [v.version for v in reader_store.versions("model/m")] == [f"v{i}" for i in range(5)]


def test_refs_loose_packed_and_symbolic(tmp_path):
    repo = tmp_path / "r"
    _git_repo_with_history(repo, commits=2)
    git_dir = str(repo / ".git")
    head = git("-C", str(repo), "rev-parse", "HEAD").strip().encode()
    assert gitread.read_ref(git_dir, b"refs/heads/main") == head
    assert gitread.read_ref(git_dir, b"HEAD") == head  # symbolic, followed
    git("-C", str(repo), "branch", "other")
    git("-C", str(repo), "pack-refs", "--all")
    assert not (repo / ".git/refs/heads/other").exists()
    assert gitread.read_ref(git_dir, b"refs/heads/other") == head
    assert gitread.read_ref(git_dir, b"refs/tags/v1") == git(
        "-C", str(repo), "rev-parse", "refs/tags/v1").strip().encode()
    assert gitread.read_ref(git_dir, b"refs/heads/none") is None
    assert gitread.read_ref(git_dir, b"refs/heads/main/deeper") is None


def test_update_ref_is_a_compare_and_swap_under_gits_lock(tmp_path):
    from dulwich.file import FileLocked

    repo = tmp_path / "r"
    _git_repo_with_history(repo, commits=3)
    git_dir = str(repo / ".git")
    c0, c1, c2 = git("-C", str(repo), "rev-list", "HEAD").split()[::-1]
    ref = b"refs/heads/main"
    # wrong expectation: nothing moves, no lock is left behind
    assert gitread.update_ref(git_dir, ref, c0.encode(), c1.encode(), fsync=False) is False
    assert git("-C", str(repo), "rev-parse", "main").strip() == c2
    assert not (repo / ".git/refs/heads/main.lock").exists()
    assert gitread.update_ref(git_dir, ref, c2.encode(), c1.encode(), fsync=True) is True
    assert git("-C", str(repo), "rev-parse", "main").strip() == c1
    # a ref that must not exist yet
    assert gitread.update_ref(git_dir, b"refs/heads/x/new", None, c0.encode(), fsync=False) is True
    assert gitread.update_ref(git_dir, b"refs/heads/x/new", None, c1.encode(), fsync=False) is False
    assert git("-C", str(repo), "rev-parse", "x/new").strip() == c0
    # a ref held only in packed-refs: compared there, then written loose (as git does)
    git("-C", str(repo), "pack-refs", "--all")
    assert not (repo / ".git/refs/heads/main").exists()
    assert gitread.update_ref(git_dir, ref, c0.encode(), c2.encode(), fsync=False) is False
    assert gitread.update_ref(git_dir, ref, c1.encode(), c2.encode(), fsync=False) is True
    assert git("-C", str(repo), "rev-parse", "main").strip() == c2
    # another writer (git itself) holds the lock: a fresh lock is waited for, never removed
    (repo / ".git/refs/heads/main.lock").write_text("")
    try:
        gitread.update_ref(git_dir, ref, c2.encode(), c0.encode(), fsync=False, wait=0.3)
        raise AssertionError("moved a locked ref")
    except FileLocked:
        pass
    assert (repo / ".git/refs/heads/main.lock").exists()  # not ours to remove
    (repo / ".git/refs/heads/main.lock").unlink()
    assert fsck(repo).returncode == 0


def test_packs_of_any_name_with_an_index_are_read(tmp_path):
    """git maintenance writes loose-<hash>.pack: an ordinary pack, read like any other."""
    repo = tmp_path / "r"
    _git_repo_with_history(repo, commits=2)
    git("-C", str(repo), "gc", "-q")
    pack_dir = repo / ".git/objects/pack"
    for path in pack_dir.iterdir():
        if path.name.startswith("pack-"):
            path.rename(pack_dir / ("loose-" + path.name[len("pack-"):]))
    reader = gitread.ObjectReader(str(repo / ".git/objects"))
    objects = _all_objects(repo)
    assert objects and all(sha in reader for sha in objects)


def test_trees_read_from_their_bytes_agree_with_dulwichs_parse(tmp_path):
    """Storage answers a tree's first lookups and listings from its raw bytes (no dulwich
    objects): names with spaces, dots, every mode git writes, lookups of missing names."""
    from canonry.git import storage as storage_mod

    repo = tmp_path / "r"
    _git_repo_with_history(repo, commits=3)
    (repo / "a b.txt").write_text("space\n")
    (repo / "a.b").mkdir()
    (repo / "a.b" / "x").write_text("x\n")
    (repo / "run.sh").write_text("#!/bin/sh\n")
    (repo / "run.sh").chmod(0o755)
    os.symlink("big.txt", repo / "link")
    git("-C", str(repo), "add", "-A")
    git("-C", str(repo), "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-q", "-m", "more")
    head = git("-C", str(repo), "rev-parse", "HEAD").strip().encode()
    with Repo(str(repo)) as dulwich_repo:
        trees = {head: dulwich_repo[dulwich_repo[head].tree]}
        trees[b"sub"] = dulwich_repo[trees[head][b"sub"][1]]
    st = storage_mod.GitStorage.open(str(repo))
    try:
        assert st.commit_tree(head) == trees[head].id
        root = st.root_tree(head)
        for path, tree in (("", trees[head]), ("sub", trees[b"sub"])):
            for _ in range(storage_mod.RAW_LOOKUPS_BEFORE_PARSE + 2):  # raw, then parsed
                assert sorted(st.names(root, path)) == sorted(n.decode() for n in tree)
                for name in [*tree, b"missing", b"a", b"b.txt"]:
                    full = f"{path}/{name.decode()}".lstrip("/")
                    expected = tuple(tree[name]) if name in tree else None
                    assert st.lookup(root, full) == expected, full
    finally:
        st.close()
