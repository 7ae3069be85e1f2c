"""Storage engine: read YAML files from git trees, write commits without a working tree.

Writes go blobs -> trees -> commit -> compare-and-swap of the branch ref. A lost race is
reported to the caller (who re-reads and redoes the operation); nothing here retries.
"""
from __future__ import annotations

import atexit
import os
import stat
import threading
import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from canonry.errors import NotAStore
from canonry.git import compat, packs, reader, syncmarks, treebytes
from canonry.git.housekeeping import Housekeeping
from canonry.git.locks import FileLock
from canonry.git.reflog import Reflog
from canonry.git.treebytes import FILE_MODE

if TYPE_CHECKING:  # dulwich.objects is imported where objects are built: a fresh `show` needs none
    from dulwich.objects import Commit, ObjectID, ShaFile, Tree

__all__ = [
    "DEFAULT_BRANCH",
    "RAW_LOOKUPS_BEFORE_PARSE",
    "RAW_TREES_MAX_BYTES",
    "STORE_FILE",
    "WORKTREE_LOCK_WAIT",
    "GitStorage",
    "Identity",
    "find_repo_path",
    "fsync_components",
    "head_commit_of",
    "identity",
    "parse_identity",
]

STORE_FILE = "canonry.yaml"
DEFAULT_BRANCH = "main"

# A tree is searched in its raw bytes until it has been looked up this many times, then parsed
# once (a long-running process looks up the same trees over and over). Raw trees kept meanwhile
# take at most this much memory.
RAW_LOOKUPS_BEFORE_PARSE = 16
RAW_TREES_MAX_BYTES = 16 << 20
WORKTREE_LOCK_WAIT = 30.0  # seconds a writer waits for another to finish updating the work tree
_COMMIT, _TREE = 1, 2  # git's object type numbers


class Identity(NamedTuple):
    name: str
    email: str

    @property
    def git(self) -> bytes:
        return f"{self.name} <{self.email}>".encode()

    @property
    def actor(self) -> str:
        """How records and history name the actor: the email, as git identifies authors."""
        return self.email or self.name


def find_repo_path(start: str) -> str:
    """Walk up from `start` like git does; return the repository's top (work tree or bare dir)."""
    path = os.path.abspath(start)
    while True:
        if os.path.exists(os.path.join(path, ".git")):
            return path
        if _looks_bare(path):
            return path
        parent = os.path.dirname(path)
        if parent == path:
            raise NotAStore(f"not a canonry store (or any parent up to /): {os.path.abspath(start)}")
        path = parent


def _looks_bare(path: str) -> bool:
    return all(os.path.exists(os.path.join(path, p)) for p in ("HEAD", "objects", "refs"))


class GitStorage:
    """One git repository, one store branch, an optional path prefix inside its tree.

    Reads go through reader (objects and refs straight from the files); dulwich's Repo is
    opened on first need (writing a ref, the index, the config stack, remotes)."""

    def __init__(self, repo=None, branch: str = DEFAULT_BRANCH, prefix: str = "",
                 store_branch: str | None = None, *, path: str | None = None,
                 git_dir: str | None = None, bare: bool | None = None):
        self._repo = repo
        if repo is not None:
            path, git_dir, bare = repo.path, repo.controldir(), repo.bare
            objects_dir = repo.object_store.path
            # A linked worktree's git dir holds its HEAD and index; branches, config and
            # objects live in the repository's common dir.
            self.common_dir = repo.commondir()
        else:
            objects_dir = os.path.join(git_dir, "objects")
            self.common_dir = git_dir
        self.path, self.git_dir, self.is_bare = path, git_dir, bare
        self.objects_dir = objects_dir
        self._use_branch(branch, store_branch)
        self.prefix = prefix.strip("/")
        self._trees: dict[bytes, Tree] = {}
        self._raw_trees: dict[bytes, bytes] = {}  # trees not parsed (yet): see _entry
        self._raw_bytes = 0
        self.housekeeping = Housekeeping(self)
        self.reflog = Reflog(self, lambda: identity(lambda: self.repo).git)
        # One writer at a time brings index and files to the branch head (sync_worktree).
        self.worktree_lock = FileLock(os.path.join(git_dir, "canonry", "worktree.lock"),
                                      wait=WORKTREE_LOCK_WAIT, stale_after=120.0)
        self._markers: dict[bytes, syncmarks.Marker] = {}  # commit -> its pending sync's marker
        self._markers_lock = threading.Lock()
        self._raw_lookups: dict[bytes, int] = {}
        self._commits: dict[bytes, Commit] = {}
        self._objects = reader.ObjectReader(objects_dir, fallback=lambda: self.repo.object_store)
        self.pack_dir = os.path.join(objects_dir, "pack")
        self._fsync: bool | None = None
        self._fsync_refs: bool | None = None
        self._config: tuple[tuple[int, int], bytes, Any] | None = None  # ((mtime, size), lowered text, parsed file or None)
        self.packs_written = 0
        self.growing = packs.GrowingPack(self.pack_dir)
        self.superseded: list[str] = []  # packs the growing pack replaced, to retire (housekeeping)
        if repo is not None:
            compat.serialize_pack_rescans(repo.object_store)
            compat.set_object_fsync(repo.object_store, self.fsync_packs)
            compat.hold_temp_packs(repo.object_store)
        _open_storages.add(self)

    @property
    def repo(self):
        """dulwich's Repo for this repository, opened on first use."""
        if self._repo is None:
            with _repo_opening:
                if self._repo is None:
                    from dulwich.repo import Repo

                    repo = Repo(self.path)
                    compat.serialize_pack_rescans(repo.object_store)
                    # dulwich writes packs too (fetch, gc): harden them as ours
                    compat.set_object_fsync(repo.object_store, self.fsync_packs)
                    compat.hold_temp_packs(repo.object_store)
                    self._repo = repo
        return self._repo

    @property
    def objects(self) -> reader.ObjectReader:
        """The object reader (reader.ObjectReader): packs and loose objects, read without dulwich."""
        return self._objects

    def close(self) -> None:
        """Close open pack files (the storage can still be used: they reopen)."""
        self.housekeeping.close()
        self.worktree_lock.close()
        self._objects.close()
        if self._repo is not None:
            self._repo.close()

    # ---- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str, branch: str | None = None, start: str | None = None,
             store_branch: str | None = None) -> GitStorage:
        git_dir, bare = _plain_git_dir(path)
        if git_dir is None:  # a linked worktree, a .git file, …: let dulwich work it out
            from dulwich.errors import NotGitRepository
            from dulwich.repo import Repo

            try:
                repo = Repo(path)
            except NotGitRepository:
                raise NotAStore(f"not a canonry store: {path} is not a git repository") from None
            storage = cls(repo)
        else:
            storage = cls(path=path, git_dir=git_dir, bare=bare)
        store_branch = (store_branch or os.environ.get("CANONRY_BRANCH")
                        or storage.config(b"canonry", b"branch") or storage._default_branch())
        prefix = storage.config(b"canonry", b"prefix")
        storage._use_branch(branch or store_branch, store_branch)
        storage.prefix = (prefix or "").strip("/")
        if prefix is None:
            storage.prefix = storage.find_prefix(start or path)
        return storage

    def _use_branch(self, branch: str, store_branch: str | None) -> None:
        self.branch = branch
        self.ref = b"refs/heads/" + branch.encode()
        # A proposal branch (`--branch promote/x`) starts from the store branch when missing.
        self.store_branch = store_branch or branch
        self.base_ref = None if self.store_branch == branch else b"refs/heads/" + self.store_branch.encode()

    def config(self, section: bytes, key: bytes) -> str | None:
        """A value of the repository's own config file (.git/config), or None."""
        path = os.path.join(self.common_dir, "config")
        try:
            st = os.stat(path)
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            return None
        if self._config is None or self._config[0] != stamp:
            with open(path, "rb") as f:
                text = f.read()
            self._config = (stamp, text.lower(), None)
        stamp, text, parsed = self._config
        # Only a file that mentions the section (or includes others) needs a real parser.
        if section.lower() not in text and b"include" not in text:
            return None
        if parsed is None:  # parsed once per version of the file, not once per key asked
            from dulwich.config import ConfigFile

            parsed = ConfigFile.from_path(path)
            self._config = (stamp, text, parsed)
        return _config_get(parsed, section, key)

    def _default_branch(self) -> str:
        """`main`, unless it does not exist and HEAD names another branch (a git clone of a store
        kept on a code repository's own branch, say `trunk`)."""
        if reader.read_ref(self.common_dir, b"refs/heads/" + DEFAULT_BRANCH.encode()) is not None:
            return DEFAULT_BRANCH
        try:
            with open(os.path.join(self.git_dir, "HEAD"), "rb") as f:
                head = f.read().strip()
        except OSError:
            head = b""
        if head.startswith(b"ref: refs/heads/"):
            return head[len(b"ref: refs/heads/"):].decode()
        return DEFAULT_BRANCH

    def find_prefix(self, start: str) -> str:
        """Where the store lives in the tree when no `canonry.prefix` is configured (a clone made
        with git): the folder holding canonry.yaml nearest above `start`, else the root, else a
        single canonry.yaml one or two folders down."""
        head = self.head()
        if head is None:
            return ""
        tree = self.commit_tree(head)
        if not self.is_bare:
            rel = os.path.relpath(os.path.abspath(start), self.path).replace(os.sep, "/")
            parts = [] if rel == "." or rel.startswith("..") else rel.split("/")
            while parts:
                if self.lookup(tree, "/".join([*parts, STORE_FILE])):
                    return "/".join(parts)
                parts.pop()
        if self.lookup(tree, STORE_FILE):
            return ""
        found = []
        for name, mode, _ in self.listdir(tree, ""):
            if stat.S_ISDIR(mode):
                if self.lookup(tree, f"{name}/{STORE_FILE}"):
                    found.append(name)
                for sub, smode, _ in self.listdir(tree, name):
                    if stat.S_ISDIR(smode) and self.lookup(tree, f"{name}/{sub}/{STORE_FILE}"):
                        found.append(f"{name}/{sub}")
        return found[0] if len(found) == 1 else ""

    @property
    def is_proposal_branch(self) -> bool:
        return self.base_ref is not None

    def branch_exists(self) -> bool:
        return reader.read_ref(self.common_dir, self.ref) is not None

    # ---- reading ---------------------------------------------------------------------------
    def head(self) -> bytes | None:
        """The branch head; for a proposal branch not made yet, the store branch's head."""
        for ref in (self.ref, self.base_ref, self._tracking_ref()):
            if ref is None:
                continue
            found = reader.read_ref(self.common_dir, ref)
            if found is not None:
                return found
        return None

    def _tracking_ref(self) -> bytes:
        # A CI checkout often has only origin/<store branch>: read from there (writes still
        # create the local branch, starting from it).
        return b"refs/remotes/origin/" + self.store_branch.encode()

    def resolve_rev(self, rev: str) -> bytes:
        """A commit id for a branch, tag, sha (abbreviated too), HEAD, `rev~N`, …"""
        import re

        from dulwich.objectspec import parse_commit

        from canonry.errors import NotFound

        base, suffix = re.match(r"^(.*?)((?:[~^][0-9]*)*)$", rev).groups()
        try:
            commit = parse_commit(self.repo, base.encode()).id
            for op, count in re.findall(r"([~^])([0-9]*)", suffix):
                n = int(count) if count else 1
                if op == "~":
                    for _ in range(n):
                        commit = self.commit(commit).parents[0]
                elif n:
                    commit = self.commit(commit).parents[n - 1]
            return commit
        except (KeyError, ValueError, IndexError, AssertionError, TypeError):
            raise NotFound("revision", rev) from None

    def commit(self, commit_id: bytes) -> Commit:
        commit = self._commits.get(commit_id)
        if commit is None:
            commit = cast("Commit", self.object(commit_id))
            if len(self._commits) > 5000:
                self._commits.clear()
            self._commits[commit_id] = commit
        return commit

    def commit_tree(self, commit_id: bytes) -> bytes:
        """The id of a commit's (whole) tree."""
        commit = self._commits.get(commit_id)
        if commit is not None:
            return commit.tree
        # A commit starts with its tree: no need to parse it (nor to import dulwich.objects).
        _type_num, raw = self._objects.get_raw(commit_id)
        if raw[:5] != b"tree " or raw[45:46] != b"\n":
            return self.commit(commit_id).tree
        return raw[5:45]

    def root_tree(self, commit_id: bytes | None) -> bytes | None:
        """The tree holding the store at `commit_id` (below the prefix), or None."""
        if commit_id is None:
            return None
        tree_id = self.commit_tree(commit_id)
        if self.prefix:
            entry = self.lookup(tree_id, self.prefix)
            return entry[1] if entry and stat.S_ISDIR(entry[0]) else None
        return tree_id

    def tree(self, tree_id: bytes) -> Tree:
        tree = self._trees.get(tree_id)
        return tree if tree is not None else self._parsed(tree_id)

    def _parsed(self, tree_id: bytes, raw: bytes | None = None) -> Tree:
        from dulwich.objects import ShaFile

        if raw is None:
            _type_num, raw = self._objects.get_raw(tree_id)
        tree = cast("Tree", ShaFile.from_raw_string(_TREE, raw, cast("ObjectID", tree_id)))
        if len(self._trees) > 20000:
            self._trees.clear()
        self._trees[tree_id] = tree
        return tree

    def lookup(self, tree_id: bytes | None, path: str) -> tuple[int, bytes] | None:
        """(mode, sha) of `path` below `tree_id`, or None when absent."""
        if tree_id is None:
            return None
        mode, sha = stat.S_IFDIR, tree_id
        for part in path.split("/"):
            if not part:
                continue
            if not stat.S_ISDIR(mode):
                return None
            found = self._entry(sha, part.encode())
            if found is None:
                return None
            mode, sha = found
        return mode, sha

    def _entry(self, tree_id: bytes, name: bytes) -> tuple[int, bytes] | None:
        """(mode, sha) of one entry."""
        tree = self._tree_or_raw(tree_id)
        if type(tree) is bytes:
            found = treebytes.find_entry(tree, name)
            if found is not treebytes.AMBIGUOUS:
                return found
            tree = self._parsed(tree_id, tree)
        try:
            return tree[name]
        except KeyError:
            return None

    def _tree_or_raw(self, tree_id: bytes):
        """The parsed tree, or its raw bytes while it has been read fewer than
        RAW_LOOKUPS_BEFORE_PARSE times: parsing a tree of thousands of entries costs far more than
        searching its bytes, and a fresh `canonry show` reads a dozen entries (with no
        dulwich.objects imported)."""
        tree = self._trees.get(tree_id)
        if tree is not None:
            return tree
        raw = self._raw_trees.get(tree_id)
        if raw is None:
            _type_num, raw = self._objects.get_raw(tree_id)
        lookups = self._raw_lookups.get(tree_id, 0)
        if lookups >= RAW_LOOKUPS_BEFORE_PARSE:
            self._raw_bytes -= len(self._raw_trees.pop(tree_id, b""))
            return self._parsed(tree_id, raw)
        if len(self._raw_lookups) >= 20000:
            self._raw_lookups.clear()
        self._raw_lookups[tree_id] = lookups + 1
        if tree_id not in self._raw_trees:
            if self._raw_bytes + len(raw) > RAW_TREES_MAX_BYTES or len(self._raw_trees) >= 1024:
                self._raw_trees.clear()
                self._raw_bytes = 0
            self._raw_trees[tree_id] = raw
            self._raw_bytes += len(raw)
        return raw

    def listdir(self, tree_id: bytes | None, path: str) -> list[tuple[str, int, bytes]]:
        entry = self.lookup(tree_id, path)
        if entry is None or not stat.S_ISDIR(entry[0]):
            return []
        return [(e.path.decode(), e.mode, e.sha) for e in self.tree(entry[1]).iteritems()]

    def names(self, tree_id: bytes | None, path: str) -> list[str]:
        """Entry names of directory `path`, unsorted (cheaper than listdir's sorted entries)."""
        entry = self.lookup(tree_id, path)
        if entry is None or not stat.S_ISDIR(entry[0]):
            return []
        tree = self._tree_or_raw(entry[1])
        if type(tree) is bytes:
            return treebytes.names(tree)
        return [name.decode() for name in tree]

    def blob(self, sha: bytes) -> bytes:
        return self._objects.get_raw(sha)[1]

    def object(self, sha: bytes) -> ShaFile:
        from dulwich.objects import ShaFile

        type_num, raw = self._objects.get_raw(sha)
        return ShaFile.from_raw_string(type_num, raw, cast("ObjectID", sha))

    def get_raw(self, sha: bytes) -> tuple[int, bytes]:
        return self._objects.get_raw(sha)

    # ---- writing ---------------------------------------------------------------------------
    def write_commit(
        self,
        parent: bytes | None,
        changes: dict[str, bytes | None],
        message: str,
        author: Identity,
        when: float | None = None,
        extra_parents: Sequence[bytes] = (),
        committer: Identity | None = None,
    ) -> bytes:
        """Store blobs, trees and a commit for `changes` on top of `parent`; move no ref."""
        from dulwich.objects import Blob, Commit, Tree

        base_tree = self.commit_tree(parent) if parent is not None else None
        new_objects: list = []  # written together as one pack: see packs.py for why
        full: dict[str, tuple[int, bytes] | None] = {}
        for path, data in changes.items():
            full_path = f"{self.prefix}/{path}" if self.prefix else path
            if data is None:
                full[full_path] = None
            else:
                blob = Blob.from_string(data)
                new_objects.append(blob)
                full[full_path] = (FILE_MODE, blob.id)
        new_tree = self.build_tree(base_tree, full, new_objects)
        if new_tree is None:
            empty = Tree()
            new_objects.append(empty)
            new_tree = empty.id
        commit = Commit()
        commit.tree = new_tree
        commit.parents = cast("list[ObjectID]", [*([parent] if parent is not None else []), *extra_parents])
        commit.author = author.git
        commit.committer = (committer or author).git
        now = int(time.time())
        stamp = int(when if when is not None else now)
        commit.author_time, commit.commit_time = stamp, now
        commit.author_timezone = _local_utc_offset(stamp)
        commit.commit_timezone = _local_utc_offset(now)
        commit.encoding = b"UTF-8"
        commit.message = message.encode("utf-8")
        new_objects.append(commit)
        self.write_objects(new_objects)
        return commit.id

    def compare_and_swap(self, old: bytes | None, new: bytes, message: str = "") -> bool:
        """Move the branch from `old` to `new`. False if it moved meanwhile; FileLocked if held.
        `message` is the reflog's (git's words: `commit: SUBJECT`, see reflog.py)."""
        log = self.reflog.writer(self.ref, old, new, message)
        if self._fsync_refs is None:
            self._fsync_refs = "reference" in fsync_components(self.config(b"core", b"fsync"))
        # In a checked-out store, a marker says from before the ref moves until sync_worktree
        # is done that the work tree may lag the branch (syncmarks).
        marker = syncmarks.begin(self.git_dir, old, new) if self.checked_out_here() else None
        moved = False
        try:
            moved = reader.update_ref(self.common_dir, self.ref, old, new, fsync=self._fsync_refs, on_move=log)
            # `old` may be where a branch not made yet starts (a proposal branch off the store
            # branch's head): then the ref must still not exist.
            moved = moved or (old is not None and not self.branch_exists() and reader.update_ref(
                self.common_dir, self.ref, None, new, fsync=self._fsync_refs, on_move=log))
        finally:
            if marker is not None:
                if moved:
                    with self._markers_lock:
                        self._markers[new] = marker
                else:
                    syncmarks.finish(marker, done=True)
        return moved

    def set_ref(self, ref: bytes, new: bytes, message: str) -> None:
        """Point `ref` (not the store branch: a remote-tracking ref) at `new` wherever it was,
        under git's lock, with its reflog line."""
        while True:
            old = reader.read_ref(self.common_dir, ref)
            if old == new or reader.update_ref(self.common_dir, ref, old, new, fsync=False,
                                               on_move=self.reflog.writer(ref, old, new, message)):
                return

    def write_side_commit(self, tree: bytes, parents: list[bytes], author: bytes, message: str,
                          objects: list) -> bytes:
        """A commit of `tree` on `parents` by `author` (git form), now, written with `objects`;
        no ref moves. For the refs beside the store branch (run log notes, usage records)."""
        from dulwich.objects import Commit

        commit = Commit()
        commit.tree = cast("ObjectID", tree)
        commit.parents = cast("list[ObjectID]", parents)
        commit.author = commit.committer = author
        commit.author_time = commit.commit_time = int(time.time())
        commit.author_timezone = commit.commit_timezone = 0
        commit.message = message.encode("utf-8")
        self.write_objects([*objects, commit])
        return commit.id

    def write_objects(self, objects: list) -> None:
        """Store git objects in a new pack, which also holds the last pack this storage wrote
        while that one is small (packs.GrowingPack; see packs.py for why not loose objects)."""
        _base, superseded = self.growing.write(objects, fsync=self.fsync_packs)
        if superseded is not None:
            self.superseded.append(superseded)
        self.packs_written += 1
        for obj in objects:
            self._remember(obj)

    def _remember(self, obj) -> None:
        if obj.type_num == _TREE:
            self._trees[obj.id] = obj
        elif obj.type_num == _COMMIT:
            self._commits[obj.id] = obj

    def build_tree(self, tree_id: bytes | None, changes: dict[str, tuple[int, bytes] | None],
                   out: list) -> bytes | None:
        """New tree id after applying path -> (mode, sha)|None; None when the tree ends up empty.
        New tree objects are appended to `out`, children before parents.

        Never mutates a Tree that came from the object store (they are cached and shared)."""
        from dulwich.objects import Tree

        if tree_id is not None:
            # Copy the entry map wholesale: per-entry adds are slow on a big tree.
            tree = compat.tree_from_entries(dict(compat.tree_entries(self.tree(tree_id))))
        else:
            tree = Tree()
        nested: dict[str, dict] = {}
        touched: set[bytes] = set()  # names whose entry may differ from the base tree's
        for path, value in changes.items():
            head, _, rest = path.partition("/")
            touched.add(head.encode())
            if rest:
                nested.setdefault(head, {})[rest] = value
            elif value is None:
                if head.encode() in tree:
                    del tree[head.encode()]
            else:
                tree.add(head.encode(), value[0], cast("ObjectID", value[1]))
        for name, sub in nested.items():
            key = name.encode()
            old = tree[key][1] if key in tree and stat.S_ISDIR(tree[key][0]) else None
            new = self.build_tree(old, sub, out)
            if new is None:
                if key in tree:
                    del tree[key]
            else:
                tree.add(key, stat.S_IFDIR, cast("ObjectID", new))
        if len(tree) == 0:
            return None
        if tree_id is not None:
            # Only touched names can differ: compare those, not all entries of a big tree.
            base = self.tree(tree_id)
            entries, base_entries = compat.tree_entries(tree), compat.tree_entries(base)
            if all(entries.get(k) == base_entries.get(k) for k in touched):
                return tree_id
            if len(entries) > 32:
                tree = treebytes.spliced(base, entries, touched) or tree
        out.append(tree)
        return tree.id

    @property
    def fsync_packs(self) -> bool:
        if self._fsync is None:
            self._fsync = self._wants_object_fsync()
        return self._fsync

    def _wants_object_fsync(self) -> bool:
        """Whether new packs are fsynced before the branch may point into them (and before the
        packs a merge replaces are deleted). Yes, as git does, unless git's `core.fsync`
        leaves packs out (`none`, `-pack`, …); `core.fsyncObjectFiles true` also says yes."""
        legacy = (self.config(b"core", b"fsyncObjectFiles") or "").lower()
        if legacy in ("true", "yes", "on", "1"):
            return True
        return "pack" in fsync_components(self.config(b"core", b"fsync"))

    # ---- housekeeping (housekeeping.py) -------------------------------------------------------
    def maybe_pack(self) -> bool:
        return self.housekeeping.maybe_pack()

    def wait_for_housekeeping(self) -> None:
        self.housekeeping.wait()

    def gc(self, full: bool = True) -> dict:
        return self.housekeeping.gc(full)

    # ---- keeping a checked-out work tree honest -----------------------------------------------
    def checked_out_here(self) -> bool:
        if self.is_bare:
            return False
        try:
            return self.repo.refs.read_ref(b"HEAD") == b"ref: " + self.ref
        except KeyError:
            return False

    def sync_worktree(self, old: bytes | None, new: bytes, paths: list[str]) -> None:
        """After the branch moved, bring index and files of `paths` to the branch head.

        Runs under a lock, against the head at that moment (not `new`): when several writers
        finish out of order, a later sync never writes older content. A file whose content is not
        what the index says we last put there was modified by the user: it is left as it is (and
        shows as modified). First repairs what writers that died before their sync left behind
        (syncmarks), so the work tree never stays behind after a crash. The cost follows the
        paths, not the store's size (git/worktree.py: the index is kept split)."""
        with self._markers_lock:
            marker = self._markers.pop(new, None)
        done = False
        try:
            if not self.checked_out_here():
                done = True
                return
            from canonry.git import worktree  # a checked-out store's writes only: `show` needs none

            with self.worktree_lock:
                repaired = worktree.sync(self, [f"{self.prefix}/{rel}" if self.prefix else rel
                                                for rel in paths], self._fsync_index())
                for path in repaired:
                    syncmarks.remove(path)
            done = True
        finally:
            if marker is not None:
                syncmarks.finish(marker, done)

    def repair_worktree(self) -> bool:
        """Repair now what writers that died before their work-tree sync left behind; True if
        there was anything (a read calls this: one listdir when there is nothing)."""
        if self.is_bare or not syncmarks.dead(self.git_dir):
            return False
        if not self.checked_out_here():
            return False
        from canonry.git import worktree

        with self.worktree_lock:
            repaired = worktree.sync(self, [], self._fsync_index())
            for path in repaired:
                syncmarks.remove(path)
        return bool(repaired)

    def _fsync_index(self) -> bool:
        return "index" in fsync_components(self.config(b"core", b"fsync"))

    def tree_of(self, commit: bytes | None) -> bytes | None:
        """A commit's tree; None when the commit is not there (a crashed writer may never have
        written it: asked as a question, without the reader's wait for a missing object)."""
        if commit is None or commit not in self._objects:
            return None
        try:
            return self.commit(commit).tree
        except KeyError:
            return None


# Storages still open at exit are closed then: dulwich objects closed by the garbage collector
# during interpreter shutdown print "Exception ignored in __del__" noise to stderr.
_open_storages: weakref.WeakSet[GitStorage] = weakref.WeakSet()
_repo_opening = threading.RLock()


@atexit.register
def _close_open_storages() -> None:
    for storage in list(_open_storages):
        try:
            storage.close()
        except Exception:  # exiting anyway: never turn cleanup into an error
            pass


# git's core.fsync components (Documentation/config/core.txt): its default set, and aggregates.
_FSYNC_DEFAULT = {"pack", "pack-metadata", "commit-graph"}
_FSYNC_AGGREGATES = {"objects": {"loose-object", "pack"},
                     "derived-metadata": {"pack-metadata", "commit-graph"},
                     "committed": {"loose-object", "pack", "reference"},
                     "added": {"loose-object", "pack", "reference", "index"},
                     "all": {"loose-object", "pack", "pack-metadata", "commit-graph", "index",
                             "reference"}}


def fsync_components(value: str | None) -> set[str]:
    """What git's `core.fsync` value (None: unset) hardens. Like git: start from the default
    set, `none` empties it, `-x` removes, `x` adds."""
    components = set(_FSYNC_DEFAULT)
    for item in (value or "").lower().split(","):
        item = item.strip()
        if not item:
            continue
        if item == "none":
            components = set()
            continue
        name = item.lstrip("-")
        named = _FSYNC_AGGREGATES.get(name, {name})
        if item.startswith("-"):
            components -= named
        else:
            components |= named
    return components


def head_commit_of(path: str) -> bytes | None:
    """The commit HEAD names in the repository at `path` (None: no commit yet)."""
    git_dir, _ = _plain_git_dir(path)
    if git_dir is not None:
        return reader.read_ref(git_dir, b"HEAD")
    from dulwich.repo import Repo

    with Repo(path) as repo:
        try:
            return repo.head()
        except KeyError:
            return None


def _plain_git_dir(path: str) -> tuple[str | None, bool]:
    """(git dir, bare) of a repository whose git dir holds its own objects and refs; (None, _)
    for anything else (a .git file, a linked worktree's commondir), which dulwich resolves."""
    dot_git = os.path.join(path, ".git")
    if os.path.isdir(dot_git):
        git_dir, bare = dot_git, False
    elif _looks_bare(path):
        git_dir, bare = path, True
    else:
        return None, False
    if os.path.exists(os.path.join(git_dir, "commondir")):
        return None, bare
    return git_dir, bare







def _config_get(config, section: bytes, key: bytes) -> str | None:
    try:
        return config.get(section, key).decode()
    except KeyError:
        return None


def _local_utc_offset(stamp: int) -> int:
    lt = time.localtime(stamp)
    return lt.tm_gmtoff or 0


def identity(repo) -> Identity:
    """The acting identity: CANONRY_ACTOR, else git's user.name/user.email, else user@host.
    `repo` may be a callable returning the repository: it is opened only to read git's config."""
    actor = os.environ.get("CANONRY_ACTOR", "").strip()
    if actor:
        return parse_identity(actor)
    name = email = None
    if callable(repo):
        repo = repo()
    if repo is not None:
        stack = repo.get_config_stack()
        name = _config_get(stack, b"user", b"name")
        email = _config_get(stack, b"user", b"email")
    name = name or os.environ.get("GIT_AUTHOR_NAME")
    email = email or os.environ.get("GIT_AUTHOR_EMAIL")
    if not email:
        import getpass
        import socket

        email = f"{getpass.getuser()}@{socket.gethostname()}"
    return Identity(name or email.split("@")[0], email)


def parse_identity(text: str) -> Identity:
    """`Name <email>`, an email, or a bare name, as an Identity."""
    if "<" in text and text.endswith(">"):
        name, _, email = text[:-1].partition("<")
        return Identity(name.strip() or email.strip(), email.strip())
    if "@" in text:
        return Identity(text.split("@")[0], text)
    return Identity(text, text)
