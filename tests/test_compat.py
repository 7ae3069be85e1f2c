"""Each assumption canonry.git.compat makes about dulwich's private APIs, checked directly on
real objects made by the git CLI, so a dulwich upgrade that breaks one fails here, naming it."""
from __future__ import annotations

import hashlib
import importlib
import inspect
import subprocess
import threading
import zlib

import pytest
from conftest import GIT, git
from dulwich.object_store import DiskObjectStore
from dulwich.objects import Tree
from dulwich.repo import Repo

from canonry.git import compat
from canonry.git.reader import apply_delta_py, entry_header, offset_at

_OFS_DELTA, _REF_DELTA = 6, 7


def _raw(path, kind: str, sha: str) -> bytes:
    """An object's bytes as git has them (`git cat-file TYPE`)."""
    return subprocess.run([GIT, "-C", str(path), "cat-file", kind, sha], capture_output=True,
                          check=True).stdout


@pytest.fixture
def repo(tmp_path):
    """A repository made by git: files, an executable, a symlink, a folder, names that sort
    around '/', and a big file edited over several commits, then packed with deltas."""
    path = tmp_path / "r"
    git("init", "-q", "-b", "main", path)
    big = "".join(f"line {i}: {'x' * (i % 50)}\n" for i in range(3000))
    (path / "sub").mkdir()
    (path / "sub" / "inner.txt").write_text("inner\n")
    (path / "sub.txt").write_text("sorts before sub/\n")
    (path / "sub0").write_text("sorts after sub/\n")
    (path / "run.sh").write_text("#!/bin/sh\n")
    (path / "run.sh").chmod(0o755)
    (path / "link").symlink_to("sub.txt")
    for version in range(4):
        (path / "big.txt").write_text(big.replace("line 1500", f"line 1500 v{version}"))
        git("-C", path, "add", "-A")
        git("-C", path, "commit", "-q", "-m", f"v{version}")
    git("-C", path, "repack", "-q", "-a", "-d", "-f", "--depth=10", "--window=10")
    return path


def _ls_tree(path, tree: str) -> list[tuple[bytes, int, bytes]]:
    out = []
    for line in git("-C", path, "ls-tree", "--full-tree", tree).splitlines():
        meta, name = line.split("\t", 1)
        mode, _kind, sha = meta.split()
        out.append((name.encode(), int(mode, 8), sha.encode()))
    return out


# ---- fast_apply_delta ---------------------------------------------------------------------------
def test_dulwich_private_pack_module_has_apply_delta():
    """Assumption: `dulwich._pack.apply_delta(base, delta)` exists (compiled) and returns chunks."""
    module = importlib.import_module("dulwich._pack")
    assert callable(getattr(module, "apply_delta", None)), \
        "dulwich._pack.apply_delta is gone: update canonry.git.compat.fast_apply_delta"
    assert compat.fast_apply_delta is not None
    chunks = module.apply_delta(b"hello world", _copy_delta(b"hello world", 0, 5))
    assert isinstance(chunks, list) and b"".join(chunks) == b"hello", \
        "dulwich._pack.apply_delta no longer returns a list of byte chunks"


def _copy_delta(base: bytes, offset: int, size: int) -> bytes:
    """A git delta with one copy instruction (sizes < 128, offset < 256)."""
    return bytes([len(base), size, 0x80 | 0x01 | 0x10, offset, size])


def test_fast_apply_delta_on_real_git_deltas(repo):
    """Assumption: dulwich's compiled applier turns each delta of a pack git wrote into the
    object git has (and agrees with canonry's Python applier)."""
    data = next((repo / ".git" / "objects" / "pack").glob("*.pack")).read_bytes()
    raw_at: dict[int, tuple[int, bytes]] = {}
    deltas = 0
    at = 12  # "PACK", version, count
    for _ in range(int.from_bytes(data[8:12], "big")):  # git writes a base before the deltas on it
        start = at
        type_num, _size, at = entry_header(data, at)
        if type_num == _OFS_DELTA:
            back, at = offset_at(data, at)
        inflate = zlib.decompressobj()
        body = inflate.decompress(data[at:])
        at = len(data) - len(inflate.unused_data)
        if type_num == _OFS_DELTA:
            base_type, base = raw_at[start - back]
            made = compat.fast_apply_delta(base, body)
            assert made == apply_delta_py(base, body), "dulwich's apply_delta disagrees with git's format"
            raw_at[start] = (base_type, made)
            deltas += 1
        else:
            assert type_num != _REF_DELTA  # git refers to bases in its own pack by offset
            raw_at[start] = (type_num, body)
    assert deltas >= 3, "git made no deltas: the test proves nothing"
    names = {1: "commit", 2: "tree", 3: "blob", 4: "tag"}
    for type_num, made in raw_at.values():
        header = f"{names[type_num]} {len(made)}\0".encode()
        sha = hashlib.sha1(header + made).hexdigest()
        assert _raw(repo, names[type_num], sha) == made


# ---- parse_tree ---------------------------------------------------------------------------------
def test_dulwich_private_objects_module_has_parse_tree():
    """Assumption: `dulwich._objects.parse_tree(text, sha_len)` exists (compiled)."""
    module = importlib.import_module("dulwich._objects")
    assert callable(getattr(module, "parse_tree", None)), \
        "dulwich._objects.parse_tree is gone: update canonry.git.compat.parse_tree"
    raw = b"100644 a\0" + b"\x01" * 20
    assert module.parse_tree(raw, 20) == [(b"a", 0o100644, b"01" * 20)], \
        "dulwich._objects.parse_tree(text, 20) no longer gives [(name, mode, hex id)]"


def test_parse_tree_on_real_trees_is_git_ls_tree(repo):
    for tree in (git("-C", repo, "rev-parse", "HEAD^{tree}").strip(),
                 git("-C", repo, "rev-parse", "HEAD:sub").strip()):
        assert compat.parse_tree(_raw(repo, "tree", tree)) == _ls_tree(repo, tree)


# ---- Tree internals -----------------------------------------------------------------------------
def test_a_tree_keeps_its_entries_in_entries(repo):
    """Assumption: `Tree._entries` is {name: (mode, hex id)}, kept current by add and del."""
    head = git("-C", repo, "rev-parse", "HEAD^{tree}").strip().encode()
    tree = Repo(str(repo)).object_store[head]
    assert isinstance(getattr(tree, "_entries", None), dict), "Tree._entries is no longer a dict"
    assert compat.tree_entries(tree) == {n: (m, s) for n, m, s in _ls_tree(repo, head.decode())}
    fresh = Tree()
    fresh.add(b"x", 0o100644, b"1" * 40)
    assert compat.tree_entries(fresh) == {b"x": (0o100644, b"1" * 40)}
    del fresh[b"x"]
    assert compat.tree_entries(fresh) == {}


def test_a_tree_made_from_entries_has_gits_id(repo):
    """Assumption: a Tree given `_entries` and `_needs_serialization = True` serializes them."""
    head = git("-C", repo, "rev-parse", "HEAD^{tree}").strip()
    entries = {n: (m, s) for n, m, s in _ls_tree(repo, head)}
    tree = compat.tree_from_entries(dict(entries))
    assert tree.id.decode() == head and tree.as_raw_string() == _raw(repo, "tree", head), \
        "a Tree built from _entries no longer serializes to git's bytes"
    tree.add(b"new", 0o100644, b"2" * 40)  # still an ordinary Tree
    made = git("-C", repo, "mktree", "--missing", input="".join(
        f"{m:06o} {'tree' if m == 0o40000 else 'blob'} {s.decode()}\t{n.decode()}\n"
        for n, (m, s) in compat.tree_entries(tree).items()))
    assert tree.id.decode() == made.strip()


def test_a_tree_made_from_entries_and_raw_bytes_keeps_the_bytes(repo):
    """Assumption: `_chunked_text = [raw]` with `_needs_serialization = False` is taken as the
    Tree's serialized form (its id is computed from it, nothing re-serialized)."""
    for attribute in ("_chunked_text", "_needs_serialization"):
        assert hasattr(Tree(), attribute), f"dulwich's ShaFile has no {attribute} any more"
    head = git("-C", repo, "rev-parse", "HEAD^{tree}").strip()
    raw = _raw(repo, "tree", head)
    entries = {n: (m, s) for n, m, s in _ls_tree(repo, head)}
    tree = compat.tree_from_entries(entries, raw)
    assert tree.as_raw_string() is raw or tree.as_raw_string() == raw
    assert tree.id.decode() == head
    # The bytes are what counts: entries that disagree with them are not re-serialized.
    liar = compat.tree_from_entries({}, raw)
    assert liar.id.decode() == head, "dulwich re-serializes a Tree marked as serialized"


# ---- the pack cache -----------------------------------------------------------------------------
def test_the_pack_cache_methods_canonry_serializes_exist():
    """Assumption: `DiskObjectStore._update_pack_cache()` and `._evict_pack(pack)` are the
    methods that change the pack cache, and dulwich has no `_canonry_rescan_lock` of its own."""
    for name in compat.PACK_CACHE_METHODS:
        assert callable(getattr(DiskObjectStore, name, None)), \
            f"DiskObjectStore.{name} is gone: update canonry.git.compat.serialize_pack_rescans"
    assert list(inspect.signature(DiskObjectStore._update_pack_cache).parameters) == ["self"]
    assert len(inspect.signature(DiskObjectStore._evict_pack).parameters) == 2
    assert not hasattr(DiskObjectStore, compat.RESCAN_LOCK_ATTRIBUTE)


def test_pack_rescans_are_serialized_and_still_rescan(repo):
    store = Repo(str(repo)).object_store
    compat.serialize_pack_rescans(store)
    wrapped = store._update_pack_cache
    compat.serialize_pack_rescans(store)  # a second call changes nothing
    assert store._update_pack_cache is wrapped
    lock = getattr(store, compat.RESCAN_LOCK_ATTRIBUTE)
    # Still dulwich's rescan: a pack git writes now is found.
    (repo / "late.txt").write_text("late\n")
    git("-C", repo, "add", "late.txt")
    git("-C", repo, "commit", "-q", "-m", "late")
    before = len(store.packs)
    git("-C", repo, "repack", "-q")
    store._update_pack_cache()
    assert len(store.packs) == before + 1
    # And a rescan waits while another thread holds the lock.
    finished = threading.Event()
    with lock:
        t = threading.Thread(target=lambda: (store._update_pack_cache(), finished.set()))
        t.start()
        assert not finished.wait(0.2)
    t.join(timeout=60)
    assert finished.is_set()
    store.close()


# ---- fsync --------------------------------------------------------------------------------------
def test_dulwich_reads_fsync_object_files_when_it_writes():
    """Assumption: `DiskObjectStore.fsync_object_files` is read by the methods that write
    objects and packs, not only by the constructor (canonry sets it afterwards)."""
    readers = [name for name, fn in inspect.getmembers(DiskObjectStore, inspect.isfunction)
               if name != "__init__" and "self.fsync_object_files" in inspect.getsource(fn)]
    assert readers, "DiskObjectStore no longer reads fsync_object_files when writing"


def test_set_object_fsync(repo):
    store = Repo(str(repo)).object_store
    assert hasattr(store, "fsync_object_files")
    compat.set_object_fsync(store, True)
    assert store.fsync_object_files is True
    compat.set_object_fsync(store, False)
    assert store.fsync_object_files is False
    store.close()
