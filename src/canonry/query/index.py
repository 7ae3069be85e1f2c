"""A derived SQLite index of the store, for queries across it (search, lineage, compare, history).

It lives in <git dir>/canonry/index-v1.sqlite, is never committed and is never the truth: every
write reads the store itself (state.View); only reads that span the whole store come here.

- Keyed by the commit it reflects (`meta.commit`). Before answering, it is brought up to date
  with the branch head from the tree diff between the two commits, whatever they are: a new
  commit, a fast-forward over many, a reset to an older commit, an unrelated history.
- Rebuilt from scratch when missing, of another layout version, stale beyond repair (the
  commit it reflects is gone from the repository) or corrupt (any sqlite error but "busy").
- Several processes may use it at once: WAL mode, and every update is one transaction taken
  with BEGIN IMMEDIATE. A query runs inside the transaction that checked (or made) the index
  current, so it always sees the state of one commit. Losing a race means redoing the update.
- History: one row per commit of the first-parent history as `canonry history` walks it (a
  merge made by git stands for nothing and is followed by the commits it brought in), with the
  Canonry-Op records of each commit and the keys they touch (journal.keys); for commits made
  by hand, the store paths they changed (up to HAND_PATH_CAP of them). When the head moves,
  the walk goes back from the new head to the first commit already indexed on the first-parent
  line; rows after that one are dropped and the new ones appended, so a reset branch is
  handled like any other move.

Tables: registries, collections, aliases, links (with their aliases and tags), artifacts,
avs (artifact versions: type, metadata, metrics, inputs, producer, times), `vals` (one row per
element of a list field: tags, aliases, inputs, accepted types; indexed by value), `kv` (one
row per metadata/metrics path and scalar value; indexed by number and by text), commits, hist,
hkeys (key -> commit) and key_time (key -> newest change), hpaths (hand-made commits' paths).

`updated_at` of a registry, collection, linked version or artifact version is the time of the
newest commit on the branch's history that touched it (its history key, as `canonry history
TARGET` finds it), or its creation (link) time if that is later or there is none.
"""
from __future__ import annotations

import json
import os
import stat
import sys
import time
import zlib

from canonry import journal
from canonry import model as m
from canonry.errors import CanonryError, SchemaError

LAYOUT = 3  # bump when the tables change: an index of another layout is rebuilt
FILE_NAME = "index-v1.sqlite"  # the file keeps its name; its meta.layout says what is inside
HAND_PATH_CAP = 1000  # paths kept per hand-made commit; beyond, history checks that commit's tree
MAX_ATTEMPTS = 8

_TABLES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE registries (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, description TEXT,
    visibility TEXT, created_at TEXT, created_by TEXT, updated_at TEXT, rec TEXT);
CREATE TABLE collections (id INTEGER PRIMARY KEY, registry TEXT NOT NULL, name TEXT NOT NULL,
    type TEXT, description TEXT, tags TEXT, aliases TEXT, versions INTEGER, next_version INTEGER,
    created_at TEXT, created_by TEXT, updated_at TEXT, UNIQUE (registry, name));
CREATE TABLE aliases (registry TEXT NOT NULL, collection TEXT NOT NULL, alias TEXT NOT NULL,
    version TEXT, PRIMARY KEY (registry, collection, alias)) WITHOUT ROWID;
CREATE TABLE links (id INTEGER PRIMARY KEY, registry TEXT NOT NULL, collection TEXT NOT NULL,
    num INTEGER NOT NULL, version TEXT, artifact TEXT, av INTEGER, digest TEXT, note TEXT,
    tags TEXT, aliases TEXT, linked_at TEXT, linked_by TEXT, updated_at TEXT,
    UNIQUE (registry, collection, num));
CREATE TABLE artifacts (name TEXT PRIMARY KEY, type TEXT, description TEXT, created_at TEXT,
    created_by TEXT) WITHOUT ROWID;
CREATE TABLE avs (id INTEGER PRIMARY KEY, ref TEXT NOT NULL UNIQUE, artifact TEXT, num INTEGER,
    type TEXT, digest TEXT, size INTEGER, files INTEGER, description TEXT, created_at TEXT,
    created_by TEXT, updated_at TEXT, metadata TEXT, metrics TEXT, inputs TEXT, producer TEXT);
CREATE TABLE vals (field TEXT NOT NULL, item INTEGER NOT NULL, value TEXT);
CREATE TABLE kv (item INTEGER NOT NULL, key TEXT NOT NULL, kind TEXT NOT NULL, num REAL, txt TEXT);
CREATE TABLE commits (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, main INTEGER, time TEXT,
    email TEXT, author TEXT, parents INTEGER, hand INTEGER, many INTEGER, subject TEXT);
CREATE TABLE hist (seq INTEGER NOT NULL, pos INTEGER NOT NULL, op TEXT, target TEXT,
    before TEXT, after TEXT, summary TEXT, PRIMARY KEY (seq, pos)) WITHOUT ROWID;
CREATE TABLE hkeys (key TEXT NOT NULL, seq INTEGER NOT NULL, pos INTEGER NOT NULL, time TEXT);
CREATE TABLE key_time (key TEXT PRIMARY KEY, time TEXT) WITHOUT ROWID;
CREATE TABLE hpaths (seq INTEGER NOT NULL, path TEXT NOT NULL);
"""
# Secondary indexes: created after the bulk insert of a rebuild (faster than maintaining them).
_INDEXES = """
CREATE INDEX links_artifact ON links (artifact);
CREATE INDEX links_av ON links (av);
CREATE INDEX avs_artifact ON avs (artifact, num);
CREATE INDEX vals_value ON vals (field, value, item);
CREATE INDEX vals_item ON vals (item, field);
CREATE INDEX kv_num ON kv (key, kind, num, item);
CREATE INDEX kv_txt ON kv (key, kind, txt, item);
CREATE INDEX kv_item ON kv (item);
CREATE INDEX commits_id ON commits (id);
CREATE INDEX commits_hand ON commits (seq) WHERE hand = 1 AND parents <= 1;
CREATE INDEX hkeys_key ON hkeys (key, seq);
CREATE INDEX hkeys_seq ON hkeys (seq);
CREATE INDEX hpaths_path ON hpaths (path);
CREATE INDEX hpaths_seq ON hpaths (seq);
"""
_ALL_TABLES = ("meta", "registries", "collections", "aliases", "links", "artifacts", "avs", "vals",
               "kv", "commits", "hist", "hkeys", "key_time", "hpaths")


class IndexUnavailable(CanonryError):
    """The index could not be brought up to date (kept busy by other processes)."""


def for_store(store) -> "Index":
    """The Index of a Store (one per Store object)."""
    idx = store.__dict__.get("_canonry_index")
    if idx is None:
        idx = Index(store)
        store.__dict__["_canonry_index"] = idx
    return idx


def index_path(store) -> str:
    return os.path.join(store.storage.git_dir, "canonry", FILE_NAME)


# ---- time and small helpers -----------------------------------------------------------------------
def commit_time(commit) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(commit.author_time))


def commit_author(commit) -> tuple[str, str]:
    """(email, full author) as history.walk matches --actor against them."""
    author = commit.author.decode("utf-8", "replace")
    email = author[author.find("<") + 1:author.rfind(">")] if "<" in author else author
    return email, author


_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _dumps(value) -> str:
    if not value:
        return "[]" if isinstance(value, list) else "{}" if isinstance(value, dict) else _ENCODE(value)
    return _ENCODE(value)


def to_number(value) -> float:
    """Numbers compare as IEEE doubles, in the index and in search.matches alike."""
    try:
        return float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")


def scalar_row(value):
    """(kind, num, txt) of a scalar for the kv table; None for a list or mapping."""
    if isinstance(value, bool):
        return "b", 1.0 if value else 0.0, None
    if isinstance(value, (int, float)):
        return "n", to_number(value), None
    if isinstance(value, str):
        return "s", None, value
    if value is None:
        return "z", None, None
    return None


def flatten(prefix: str, value, out: list) -> list:
    """kv rows (key, kind, num, txt) for a metadata/metrics value at dotted path `prefix`.

    Mappings are walked (keys holding '.' cannot be addressed and are skipped); a list is a leaf
    whose scalar elements are its values; every path present has at least one row."""
    if isinstance(value, dict):
        out.append((prefix, "o", None, None))
        for k, v in value.items():
            if isinstance(k, str) and k and "." not in k:
                flatten(f"{prefix}.{k}", v, out)
    elif isinstance(value, list):
        out.append((prefix, "a", None, None))
        for v in value:
            row = scalar_row(v)
            if row is not None:
                out.append((prefix,) + row)
    else:
        out.append((prefix,) + scalar_row(value))
    return out


def _version_num(name: str) -> int | None:
    """N of `vN.yaml` (None for any other file name)."""
    if not name.endswith(".yaml") or not name.startswith("v"):
        return None
    digits = name[1:-5]
    if not digits.isdigit() or (len(digits) > 1 and digits[0] == "0"):
        return None
    return int(digits)


# ---- tree diff ----------------------------------------------------------------------------------
try:  # the C parser; dulwich's Tree objects wrap every id and cost ~5x more on big trees
    from dulwich._objects import parse_tree as _parse_tree
except ImportError:  # pragma: no cover - dulwich without its extensions
    from dulwich.objects import parse_tree as _parse_tree


class RawTrees:
    """Tree entries [(name, mode, hex sha)] straight from the object store, parsed by dulwich's C
    parser, kept (up to `limit` bytes of raw trees) when `cache` is on."""

    def __init__(self, storage, cache: bool = True, limit: int = 64 << 20):
        self.objects = storage.repo.object_store
        self.loose = getattr(self.objects, "path", None)
        self.cache: dict | None = {} if cache else None
        self.limit = limit
        self.size = 0

    def raw(self, sha: bytes) -> bytes:
        # A loose object read by dulwich is parsed whole first (slow for a 10,000-entry tree):
        # inflate it here. Packed ones come raw from the pack.
        if self.loose:
            hexsha = sha.decode()
            try:
                with open(os.path.join(self.loose, hexsha[:2], hexsha[2:]), "rb") as f:
                    data = zlib.decompress(f.read())
                header, _, body = data.partition(b"\0")
                if header.startswith(b"tree "):
                    return body
            except (OSError, zlib.error):
                pass
        return self.objects.get_raw(sha)[1]

    def entries(self, sha: bytes) -> list:
        if self.cache is not None:
            hit = self.cache.get(sha)
            if hit is not None:
                return hit
        raw = self.raw(sha)
        try:
            entries = _parse_tree(raw, 20)
        except TypeError:  # an older signature
            entries = _parse_tree(raw)
        if self.cache is not None:
            if self.size + len(raw) > self.limit:
                self.cache.clear()
                self.size = 0
            self.cache[sha] = entries
            self.size += len(raw)
        return entries


def _changed(la: list, lb: list) -> list:
    """(name, (mode, sha)|None, (mode, sha)|None) for entries that differ between two sorted
    entry lists. The common head and tail are found by comparing the lists pairwise in C (from
    the front, then from the back), so a one-entry change in a 10,000-entry directory costs
    about as much as parsing it; only the entries in between are compared by name."""
    from operator import ne

    n = min(len(la), len(lb))
    flags = list(map(ne, la, lb))
    head = flags.index(True) if True in flags else n
    flags = list(map(ne, reversed(la), reversed(lb)))
    tail = min(flags.index(True) if True in flags else n, n - head)
    a = {e[0]: (e[1], e[2]) for e in la[head:len(la) - tail]}
    b = {e[0]: (e[1], e[2]) for e in lb[head:len(lb) - tail]}
    return [(name, a.get(name), b.get(name)) for name in sorted(a.keys() | b.keys()) if a.get(name) != b.get(name)]


def tree_diff(trees: RawTrees, old_tree: bytes | None, new_tree: bytes | None, prefix: str = ""):
    """(path, old_sha|None, new_sha|None) for every file that differs between two trees, in
    path order. Unchanged subtrees are skipped by id."""
    if old_tree == new_tree:
        return
    la = trees.entries(old_tree) if old_tree is not None else []
    lb = trees.entries(new_tree) if new_tree is not None else []
    if not la:
        changes = [(e[0], None, (e[1], e[2])) for e in lb]
    elif not lb:
        changes = [(e[0], (e[1], e[2]), None) for e in la]
    else:
        changes = _changed(la, lb)
    for name, oa, ob in changes:
        path = prefix + name.decode("utf-8", "replace")
        a_dir = oa is not None and stat.S_ISDIR(oa[0])
        b_dir = ob is not None and stat.S_ISDIR(ob[0])
        if a_dir or b_dir:
            yield from tree_diff(trees, oa[1] if a_dir else None, ob[1] if b_dir else None, path + "/")
        fa = oa if oa is not None and not a_dir else None
        fb = ob if ob is not None and not b_dir else None
        if fa != fb:
            yield path, fa[1] if fa else None, fb[1] if fb else None


def path_keys(path: str) -> set[str]:
    """History keys (journal.keys vocabulary) of a store path a hand-made commit changed: the
    registry, collection, link, artifact and artifact version it lies in (as `canonry history`
    matches hand-made commits by path)."""
    parts = path.split("/")
    out: set[str] = set()
    if parts[0] == m.REGISTRIES and len(parts) >= 3:
        out.add("registry:" + parts[1])
        if len(parts) >= 4:
            where = f"{parts[1]}/{parts[2]}"
            out.add("collection:" + where)
            if len(parts) == 5 and parts[3] == "links" and _version_num(parts[4]) is not None:
                out.add(f"link:{where}:{parts[4][:-5]}")
    elif parts[0] == m.ARTIFACTS and len(parts) >= 3:
        out.add("artifact:" + parts[1])
        if len(parts) == 3 and _version_num(parts[2]) is not None:
            out.add(f"av:{parts[1]}:{parts[2][:-5]}")
    return out


def item_of_key(key: str):
    """(table, natural key) of the item whose updated_at a history key sets, or None."""
    kind, _, rest = key.partition(":")
    if kind == "registry":
        return "registries", (rest,)
    if kind == "collection":
        reg, _, coll = rest.partition("/")
        return "collections", (reg, coll)
    if kind == "link":
        where, _, version = rest.rpartition(":")
        reg, _, coll = where.partition("/")
        if version[1:].isdigit():
            return "links", (reg, coll, int(version[1:]))
    if kind == "av":
        return "avs", (rest,)
    return None


# ---- the index ------------------------------------------------------------------------------------
class Index:
    def __init__(self, store, path: str | None = None):
        self.store = store
        self.storage = store.storage
        self.path = path or index_path(store)
        self._db = None
        self.in_memory = False
        self.last_update: dict = {}
        self.trees = RawTrees(self.storage)

    # ---- connection --------------------------------------------------------------------------
    def _connect(self):
        import sqlite3

        if self._db is not None:
            return self._db
        db = None
        try:
            if self.in_memory:
                raise OSError("in memory")
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
        except (OSError, sqlite3.OperationalError) as e:
            if db is not None:
                db.close()
            if isinstance(e, sqlite3.OperationalError) and _is_busy(e):
                raise  # another process is creating it: the caller tries again
            # An unwritable git directory (a read-only mount): an index for this process only.
            self.in_memory = True
            db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA temp_store=MEMORY")
        db.execute("PRAGMA cache_size=-32000")
        _register_functions(db)
        self._db = db
        return db

    def close(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except Exception:
                pass
            self._db = None

    def _discard(self) -> None:
        """A corrupt or unreadable index: delete it (it is rebuilt on next use)."""
        self.close()
        if self.in_memory:
            return
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(self.path + suffix)
            except OSError:
                pass

    # ---- the one entry point for queries ---------------------------------------------------
    def query(self, fn, head: bytes | None = None):
        """fn(db) inside a transaction that sees the index at the branch head (or `head`).

        Losing a race to another process only means checking (or updating) again. An index
        that sqlite calls corrupt, or that fails while being updated, is deleted and rebuilt."""
        import sqlite3

        head = self.storage.head() if head is None else head
        want = head.decode() if head else ""
        last_error = None
        for attempt in range(MAX_ATTEMPTS):
            db = None
            updated = False
            try:
                db = self._connect()
                db.execute("BEGIN")
                if self._current(db, want):
                    self.last_update = {"mode": "current"}
                else:
                    db.execute("ROLLBACK")
                    db.execute("BEGIN IMMEDIATE")
                    if not self._current(db, want):
                        self._bring_up_to_date(db, head)
                        updated = True
                    else:
                        self.last_update = {"mode": "current"}
            except sqlite3.DatabaseError as e:
                _rollback(db)
                last_error = e
                if isinstance(e, sqlite3.OperationalError) and _is_busy(e):
                    time.sleep(0.01 * (attempt + 1))
                    continue
                self._discard()  # corrupt, not a database, or a failed update: start over
                continue
            except BaseException:
                _rollback(db)
                raise
            try:
                result = fn(db)
            except sqlite3.DatabaseError as e:
                _rollback(db)
                last_error = e
                if isinstance(e, sqlite3.OperationalError) and _is_busy(e):
                    time.sleep(0.01 * (attempt + 1))
                    continue
                if type(e) is sqlite3.DatabaseError:  # "malformed", "not a database"
                    self._discard()
                    continue
                raise
            except BaseException:
                if updated:  # keep the update; the query's own error goes to the caller
                    _commit(db)
                else:
                    _rollback(db)
                raise
            _commit(db)
            return result
        raise IndexUnavailable(f"the search index at {self.path} could not be used: {last_error}")

    def update(self, head: bytes | None = None) -> dict:
        """Bring the index up to date with the branch head; returns what it did."""
        self.query(lambda db: None, head)
        return dict(self.last_update)

    def rebuild(self, head: bytes | None = None) -> dict:
        """Rebuild from scratch (what happens by itself when it is missing or corrupt)."""
        import sqlite3

        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            if _has_table(db, "meta"):
                db.execute("DELETE FROM meta")
            db.execute("COMMIT")
        except sqlite3.DatabaseError:
            _rollback(db)
            self._discard()
        return self.update(head)

    def _current(self, db, want: str) -> bool:
        if not _has_table(db, "meta"):
            return False
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        return (meta.get("commit") == want and meta.get("layout") == str(LAYOUT)
                and meta.get("prefix") == self.storage.prefix)

    # ---- bringing it up to date ----------------------------------------------------------------
    def _bring_up_to_date(self, db, head: bytes | None) -> None:
        t0 = time.perf_counter()
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall()) if _has_table(db, "meta") else {}
        old = meta.get("commit")
        usable = (old is not None and meta.get("layout") == str(LAYOUT)
                  and meta.get("prefix") == self.storage.prefix)
        old_id = old.encode() if usable and old else None
        if usable and old_id is not None:
            try:
                self.storage.commit(old_id)
            except KeyError:  # the commit it reflects is gone (gc after a reset): start over
                usable = False
        up = _Updater(self, db)
        if not usable:
            if not self.in_memory and _interactive():
                sys.stderr.write("canonry: building the search index (once; later updates are incremental) …\n")
            up.rebuild(head)
            mode = "rebuild"
        else:
            up.incremental(old_id, head)
            mode = "incremental"
        db.execute("INSERT OR REPLACE INTO meta VALUES ('commit', ?)", (head.decode() if head else "",))
        self.last_update = {"mode": mode, "files": up.files, "commits": up.commits_added,
                            "dropped_commits": up.commits_dropped, "invalid": up.invalid,
                            "seconds": time.perf_counter() - t0, "stages": up.stages}

    # ---- reads used by search, lineage, compare and history ------------------------------------
    def snapshot(self) -> dict:
        """Everything the index holds, by natural keys (no row ids): for consistency tests."""
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

        return self.query(q)


def _maxrss_mib() -> float | None:
    """Peak resident memory of this process so far (VmHWM: ru_maxrss would include the peak of
    the parent that forked us)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except (ImportError, OSError):
        return None


def _interactive() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _has_table(db, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


def _rollback(db) -> None:
    if db is None:
        return
    try:
        if db.in_transaction:
            db.execute("ROLLBACK")
    except Exception:
        pass


def _commit(db) -> None:
    if db.in_transaction:
        db.execute("COMMIT")


def _is_busy(e) -> bool:
    text = str(e).lower()
    return "locked" in text or "busy" in text


_REGEX_CACHE: dict = {}


def regex_search(pattern: str, flags: str, value) -> int:
    """REGEXP for SQL and search.matches alike: re.search, flags from 'imsx'."""
    if not isinstance(value, str):
        return 0
    key = (pattern, flags)
    rx = _REGEX_CACHE.get(key)
    if rx is None:
        import re

        f = 0
        for ch in flags or "":
            f |= {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}[ch]
        if len(_REGEX_CACHE) > 256:
            _REGEX_CACHE.clear()
        rx = _REGEX_CACHE[key] = re.compile(pattern, f)
    return 1 if rx.search(value) else 0


def _register_functions(db) -> None:
    db.create_function("canonry_regex", 3, regex_search, deterministic=True)


# ---- the updater ------------------------------------------------------------------------------------
class _Updater:
    """Applies a tree diff and a history walk to the tables, inside the caller's transaction."""

    def __init__(self, index: Index, db):
        self.index = index
        self.db = db
        self.store = index.store
        self.storage = index.storage
        self.files = 0
        self.invalid = 0
        self.commits_added = 0
        self.commits_dropped = 0
        self.affected: set[tuple[str, str]] = set()  # collections whose aliases/links changed
        self.keys: set[str] = set()  # history keys whose item's updated_at must be recomputed
        self._bulk = False
        self.trees = index.trees
        self.stages: dict[str, float] = {}

    # ---- whole rebuild and incremental update ---------------------------------------------------
    def rebuild(self, head: bytes | None) -> None:
        db = self.db
        for t in _ALL_TABLES:
            db.execute(f"DROP TABLE IF EXISTS {t}")
        for stmt in _TABLES.strip().split(";"):
            if stmt.strip():
                db.execute(stmt)
        db.execute("INSERT INTO meta VALUES ('layout', ?)", (str(LAYOUT),))
        db.execute("INSERT INTO meta VALUES ('prefix', ?)", (self.storage.prefix,))
        self._bulk = True
        self.trees = RawTrees(self.storage, cache=False)  # one pass: keep no trees in memory
        self.bulk = _Bulk(self)
        t = time.perf_counter()
        self.apply_diff(None, head)
        self.bulk.flush()
        self.stages["files"] = time.perf_counter() - t
        self.stages["files_maxrss_mib"] = _maxrss_mib()
        t = time.perf_counter()
        for stmt in _INDEXES.strip().split(";"):
            if stmt.strip():
                db.execute(stmt)
        self.stages["indexes"] = time.perf_counter() - t
        self.stages["indexes_maxrss_mib"] = _maxrss_mib()
        t = time.perf_counter()
        self.history(head)
        self.stages["history"] = time.perf_counter() - t
        self.stages["history_maxrss_mib"] = _maxrss_mib()
        self._bulk = False
        self.trees = self.index.trees
        t = time.perf_counter()
        self.refresh_collections_all()
        self.refresh_updated_all()
        self.stages["derived"] = time.perf_counter() - t
        self.stages["derived_maxrss_mib"] = _maxrss_mib()

    def incremental(self, old: bytes, head: bytes | None) -> None:
        self.apply_diff(old, head)
        self.history(head)
        for reg, coll in sorted(self.affected):
            self.refresh_collection(reg, coll)
        self.refresh_updated(self.keys)

    # ---- state: the tree diff ------------------------------------------------------------------
    def apply_diff(self, old: bytes | None, new: bytes | None) -> None:
        storage = self.storage
        old_root = storage.root_tree(old) if old is not None else None
        new_root = storage.root_tree(new) if new is not None else None
        batch: list[tuple[str, str, bytes | None, bytes | None]] = []
        for path, old_sha, new_sha in tree_diff(self.trees, old_root, new_root):
            kind = m.kind_of_path(path)
            if kind is None or kind == "store":
                continue
            batch.append((kind, path, old_sha, new_sha))
            if len(batch) >= 2000:
                self._apply_batch(batch)
                batch = []
        if batch:
            self._apply_batch(batch)

    def _apply_batch(self, batch) -> None:
        records = _Records(self.store)
        records.prefetch([(new, path) for _, path, _, new in batch if new is not None])
        for kind, path, old_sha, new_sha in batch:
            self.files += 1
            rec = None
            if new_sha is not None:
                rec = records.get(new_sha, path)
                if rec is None:
                    self.invalid += 1
            if self._bulk:
                if rec is not None:
                    getattr(self.bulk, kind)(path.split("/"), rec)
            else:
                getattr(self, "_apply_" + kind)(path.split("/"), rec)
        if self._bulk:
            self.bulk.flush()

    def _apply_registry(self, parts, rec) -> None:
        name = parts[1]
        db = self.db
        old = db.execute("SELECT id FROM registries WHERE name = ?", (name,)).fetchone()
        if old is not None:
            db.execute("DELETE FROM vals WHERE item = ? AND field = 'r.types'", (old[0],))
        self.keys.add("registry:" + name)
        if rec is None:
            db.execute("DELETE FROM registries WHERE name = ?", (name,))
            return
        keep = {k: rec.get(k) for k in ("description", "visibility", "types", "protected_aliases",
                                          "members", "created_at", "created_by")}
        row = (name, rec.get("description", ""), rec.get("visibility"), rec.get("created_at"),
               rec.get("created_by"), rec.get("created_at"), _dumps(keep))
        rid = db.execute(
            "INSERT INTO registries (name, description, visibility, created_at, created_by, updated_at, rec) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET description = excluded.description, "
            "visibility = excluded.visibility, created_at = excluded.created_at, created_by = excluded.created_by, "
            "rec = excluded.rec RETURNING id", row).fetchone()[0]
        types = rec.get("types")
        types = ["all"] if types == "all" else list(types or [])
        db.executemany("INSERT INTO vals VALUES ('r.types', ?, ?)", [(rid, t) for t in types])

    def _apply_collection(self, parts, rec) -> None:
        reg, name = parts[1], parts[2]
        db = self.db
        self.affected.add((reg, name))
        self.keys.add(f"collection:{reg}/{name}")
        old = db.execute("SELECT id FROM collections WHERE registry = ? AND name = ?", (reg, name)).fetchone()
        if old is not None:
            db.execute("DELETE FROM vals WHERE item = ? AND field IN ('c.tags', 'c.aliases')", (old[0],))
        if rec is None:
            db.execute("DELETE FROM collections WHERE registry = ? AND name = ?", (reg, name))
            return
        tags = list(rec.get("tags", []))
        cid = db.execute(
            "INSERT INTO collections (registry, name, type, description, tags, aliases, versions, "
            "next_version, created_at, created_by, updated_at) VALUES (?, ?, ?, ?, ?, '{}', 0, ?, ?, ?, ?) "
            "ON CONFLICT (registry, name) DO UPDATE SET type = excluded.type, description = excluded.description, "
            "tags = excluded.tags, next_version = excluded.next_version, created_at = excluded.created_at, "
            "created_by = excluded.created_by RETURNING id",
            (reg, name, rec.get("type"), rec.get("description", ""), _dumps(tags), rec.get("next_version"),
             rec.get("created_at"), rec.get("created_by"), rec.get("created_at"))).fetchone()[0]
        db.executemany("INSERT INTO vals VALUES ('c.tags', ?, ?)", [(cid, t) for t in tags])
        # c.aliases rows are written by refresh_collection (they depend on aliases and links)

    def _apply_aliases(self, parts, rec) -> None:
        reg, coll = parts[1], parts[2]
        self.affected.add((reg, coll))
        self.db.execute("DELETE FROM aliases WHERE registry = ? AND collection = ?", (reg, coll))
        if rec is not None:
            self.db.executemany("INSERT INTO aliases VALUES (?, ?, ?, ?)",
                                [(reg, coll, a, v) for a, v in (rec.get("aliases") or {}).items()])

    def _apply_link(self, parts, rec) -> None:
        if len(parts) != 5:
            return
        num = _version_num(parts[4])
        if num is None:  # not vN.yaml: canonry does not list it
            return
        reg, coll = parts[1], parts[2]
        db = self.db
        self.affected.add((reg, coll))
        self.keys.add(f"link:{reg}/{coll}:v{num}")
        old = db.execute("SELECT id FROM links WHERE registry = ? AND collection = ? AND num = ?",
                         (reg, coll, num)).fetchone()
        if old is not None:
            db.execute("DELETE FROM vals WHERE item = ? AND field IN ('l.tags', 'l.aliases')", (old[0],))
        if rec is None:
            db.execute("DELETE FROM links WHERE registry = ? AND collection = ? AND num = ?", (reg, coll, num))
            return
        tags = list(rec.get("tags", []))
        artifact = rec.get("artifact")
        av = db.execute("SELECT id FROM avs WHERE ref = ?", (artifact,)).fetchone()
        lid = db.execute(
            "INSERT INTO links (registry, collection, num, version, artifact, av, digest, note, tags, aliases, "
            "linked_at, linked_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (registry, collection, num) DO UPDATE SET artifact = excluded.artifact, av = excluded.av, "
            "digest = excluded.digest, note = excluded.note, tags = excluded.tags, linked_at = excluded.linked_at, "
            "linked_by = excluded.linked_by RETURNING id, aliases",
            (reg, coll, num, f"v{num}", artifact, av[0] if av else None, rec.get("digest"),
             rec.get("description", ""), _dumps(tags), "[]", rec.get("linked_at"), rec.get("linked_by"),
             rec.get("linked_at"))).fetchone()
        lid, aliases = lid
        db.executemany("INSERT INTO vals VALUES ('l.tags', ?, ?)", [(lid, t) for t in tags])
        if old is not None:  # keep its alias rows until refresh_collection recomputes them
            db.executemany("INSERT INTO vals VALUES ('l.aliases', ?, ?)",
                           [(lid, a) for a in json.loads(aliases or "[]")])

    def _apply_artifact(self, parts, rec) -> None:
        if len(parts) != 3:
            return
        name = parts[1]
        if rec is None:
            self.db.execute("DELETE FROM artifacts WHERE name = ?", (name,))
            return
        self.db.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?, ?)",
                        (name, rec.get("type"), rec.get("description", ""), rec.get("created_at"),
                         rec.get("created_by")))

    def _apply_artifact_version(self, parts, rec) -> None:
        if len(parts) != 3:
            return
        num = _version_num(parts[2])
        if num is None:
            return
        name = parts[1]
        ref = f"{name}:v{num}"
        db = self.db
        self.keys.add("av:" + ref)
        old = db.execute("SELECT id FROM avs WHERE ref = ?", (ref,)).fetchone()
        if old is not None:
            db.execute("DELETE FROM vals WHERE item = ? AND field = 'a.inputs'", (old[0],))
            db.execute("DELETE FROM kv WHERE item = ?", (old[0],))
        if rec is None:
            if old is not None:
                db.execute("DELETE FROM avs WHERE id = ?", (old[0],))
                db.execute("UPDATE links SET av = NULL WHERE av = ?", (old[0],))
            return
        metadata = rec.get("metadata") or {}
        metrics = rec.get("metrics") or {}
        inputs = list(rec.get("inputs") or [])
        files = rec.get("files") or []
        row = (ref, name, num, rec.get("type"), rec.get("digest"), rec.get("size"), len(files),
               rec.get("description", ""), rec.get("created_at"), rec.get("created_by"), rec.get("created_at"),
               _dumps(metadata), _dumps(metrics), _dumps(inputs), _dumps(rec.get("producer") or {}))
        aid = db.execute(
            "INSERT INTO avs (ref, artifact, num, type, digest, size, files, description, created_at, created_by, "
            "updated_at, metadata, metrics, inputs, producer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (ref) DO UPDATE SET type = excluded.type, digest = excluded.digest, size = excluded.size, "
            "files = excluded.files, description = excluded.description, created_at = excluded.created_at, "
            "created_by = excluded.created_by, metadata = excluded.metadata, metrics = excluded.metrics, "
            "inputs = excluded.inputs, producer = excluded.producer RETURNING id", row).fetchone()[0]
        db.executemany("INSERT INTO vals VALUES ('a.inputs', ?, ?)", [(aid, i) for i in inputs])
        rows = flatten("metadata", metadata, []) + flatten("metrics", metrics, [])
        db.executemany("INSERT INTO kv VALUES (?, ?, ?, ?, ?)",
                       [(aid,) + r for r in rows if r[0] not in ("metadata", "metrics")])
        if old is None and not self._bulk:
            db.execute("UPDATE links SET av = ? WHERE artifact = ?", (aid, ref))

    # ---- derived per-collection data: aliases of each link, the collection's alias map -----------
    def refresh_collection(self, reg: str, coll: str) -> None:
        db = self.db
        links = db.execute("SELECT id, num, aliases FROM links WHERE registry = ? AND collection = ? "
                           "ORDER BY num", (reg, coll)).fetchall()
        amap = dict(db.execute("SELECT alias, version FROM aliases WHERE registry = ? AND collection = ? "
                               "ORDER BY alias", (reg, coll)).fetchall())
        latest = f"v{links[-1][1]}" if links else None
        for lid, num, stored in links:
            names = _link_aliases(amap, f"v{num}", latest)
            text = _dumps(names)
            if text != stored:
                db.execute("UPDATE links SET aliases = ? WHERE id = ?", (text, lid))
                db.execute("DELETE FROM vals WHERE item = ? AND field = 'l.aliases'", (lid,))
                db.executemany("INSERT INTO vals VALUES ('l.aliases', ?, ?)", [(lid, a) for a in names])
        row = db.execute("SELECT id FROM collections WHERE registry = ? AND name = ?", (reg, coll)).fetchone()
        if row is None:
            return
        full = dict(amap)
        if latest:
            full["latest"] = latest
        db.execute("UPDATE collections SET aliases = ?, versions = ? WHERE id = ?",
                   (_dumps(full), len(links), row[0]))
        db.execute("DELETE FROM vals WHERE item = ? AND field = 'c.aliases'", (row[0],))
        db.executemany("INSERT INTO vals VALUES ('c.aliases', ?, ?)", [(row[0], a) for a in full])

    def refresh_collections_all(self) -> None:
        """After a rebuild: every link's aliases and every collection's alias map, in bulk."""
        db = self.db
        amaps: dict[tuple[str, str], dict] = {}
        for reg, coll, alias, version in db.execute(
                "SELECT registry, collection, alias, version FROM aliases ORDER BY registry, collection, alias"):
            amaps.setdefault((reg, coll), {})[alias] = version
        latest = {(r, c): n for r, c, n in db.execute(
            "SELECT registry, collection, max(num) FROM links GROUP BY registry, collection")}
        counts = {(r, c): n for r, c, n in db.execute(
            "SELECT registry, collection, count(*) FROM links GROUP BY registry, collection")}
        link_rows, val_rows = [], []
        for lid, reg, coll, num in db.execute("SELECT id, registry, collection, num FROM links").fetchall():
            amap = amaps.get((reg, coll), {})
            top = latest.get((reg, coll))
            names = _link_aliases(amap, f"v{num}", f"v{top}" if top is not None else None)
            link_rows.append((_dumps(names), lid))
            val_rows += [("l.aliases", lid, a) for a in names]
        db.executemany("UPDATE links SET aliases = ? WHERE id = ?", link_rows)
        db.execute("DELETE FROM vals WHERE field IN ('l.aliases', 'c.aliases')")
        coll_rows = []
        for cid, reg, coll in db.execute("SELECT id, registry, name FROM collections").fetchall():
            full = dict(amaps.get((reg, coll), {}))
            top = latest.get((reg, coll))
            if top is not None:
                full["latest"] = f"v{top}"
            coll_rows.append((_dumps(full), counts.get((reg, coll), 0), cid))
            val_rows += [("c.aliases", cid, a) for a in full]
        db.executemany("UPDATE collections SET aliases = ?, versions = ? WHERE id = ?", coll_rows)
        db.executemany("INSERT INTO vals VALUES (?, ?, ?)", val_rows)
        db.execute("UPDATE links SET av = (SELECT id FROM avs WHERE avs.ref = links.artifact)")

    # ---- history: commits, their records and the keys they touch -----------------------------------
    def history(self, head: bytes | None) -> None:
        db = self.db
        new: list[tuple] = []  # (commit, main) newest first
        anchor = None
        empty = db.execute("SELECT 1 FROM commits LIMIT 1").fetchone() is None
        for commit, main in mainline(self.storage, head):
            if main and not empty:
                row = db.execute("SELECT seq FROM commits WHERE id = ? AND main = 1",
                                 (commit.id.decode(),)).fetchone()
                if row is not None:
                    anchor = row[0]
                    break
            new.append((commit, main))
        base = anchor if anchor is not None else 0
        dropped = db.execute("SELECT count(*) FROM commits WHERE seq > ?", (base,)).fetchone()[0]
        if dropped:
            self.commits_dropped = dropped
            for (key,) in db.execute("SELECT DISTINCT key FROM hkeys WHERE seq > ?", (base,)).fetchall():
                self.keys.add(key)
            for t in ("commits", "hist", "hkeys", "hpaths"):
                db.execute(f"DELETE FROM {t} WHERE seq > ?", (base,))
            self._recompute_key_times(self.keys)
        commit_rows, hist_rows, key_rows, path_rows = [], [], [], []
        key_times: dict[str, str] = {}
        for i, (commit, main) in enumerate(reversed(new)):
            seq = base + 1 + i
            stamp = commit_time(commit)
            email, author = commit_author(commit)
            records = journal.records(commit.message)
            subject = commit.message.decode("utf-8", "replace").splitlines()[0] if commit.message else ""
            many = 0
            if records:
                from canonry.query.history import _entry

                for pos, rec in enumerate(records):
                    e = _entry(commit, stamp, email, rec)
                    hist_rows.append((seq, pos, e.op, e.target, _dumps(e.before), _dumps(e.after), e.summary))
                    for key in journal.keys(rec):
                        key_rows.append((key, seq, pos, stamp))
                        if key_times.get(key, "") < stamp:
                            key_times[key] = stamp
            elif len(commit.parents) <= 1:
                paths, many = self._hand_paths(commit)
                keys: set[str] = set()
                for p in paths:
                    path_rows.append((seq, p))
                    keys |= path_keys(p)
                for key in keys:
                    key_rows.append((key, seq, -1, stamp))
                    if key_times.get(key, "") < stamp:
                        key_times[key] = stamp
            commit_rows.append((seq, commit.id.decode(), 1 if main else 0, stamp, email, author,
                                len(commit.parents), 0 if records else 1, many, subject))
        db.executemany("INSERT INTO commits VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", commit_rows)
        db.executemany("INSERT INTO hist VALUES (?, ?, ?, ?, ?, ?, ?)", hist_rows)
        db.executemany("INSERT INTO hkeys VALUES (?, ?, ?, ?)", key_rows)
        db.executemany("INSERT INTO hpaths VALUES (?, ?)", path_rows)
        db.executemany("INSERT INTO key_time VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                       "time = max(time, excluded.time)", key_times.items())
        self.keys |= set(key_times)
        self.commits_added = len(commit_rows)

    def _hand_paths(self, commit) -> tuple[list[str], int]:
        """Store paths a hand-made commit changed against its first parent (capped)."""
        storage = self.storage
        parent = commit.parents[0] if commit.parents else None
        new_root = storage.root_tree(commit.id)
        old_root = storage.root_tree(parent) if parent is not None else None
        out = []
        for path, _, _ in tree_diff(self.trees, old_root, new_root):
            if len(out) >= HAND_PATH_CAP:
                return [], 1
            out.append(path)
        return out, 0

    def _recompute_key_times(self, keys) -> None:
        db = self.db
        for key in keys:
            db.execute("DELETE FROM key_time WHERE key = ?", (key,))
            db.execute("INSERT INTO key_time SELECT key, max(time) FROM hkeys WHERE key = ? GROUP BY key", (key,))

    # ---- updated_at ---------------------------------------------------------------------------------
    def refresh_updated(self, keys) -> None:
        db = self.db
        for key in keys:
            item = item_of_key(key)
            if item is None:
                continue
            table, nat = item
            t = db.execute("SELECT time FROM key_time WHERE key = ?", (key,)).fetchone()
            t = t[0] if t else ""
            if table == "registries":
                db.execute("UPDATE registries SET updated_at = max(coalesce(created_at, ''), ?) WHERE name = ?",
                           (t, nat[0]))
            elif table == "collections":
                db.execute("UPDATE collections SET updated_at = max(coalesce(created_at, ''), ?) "
                           "WHERE registry = ? AND name = ?", (t,) + nat)
            elif table == "links":
                db.execute("UPDATE links SET updated_at = max(coalesce(linked_at, ''), ?) "
                           "WHERE registry = ? AND collection = ? AND num = ?", (t,) + nat)
            else:
                db.execute("UPDATE avs SET updated_at = max(coalesce(created_at, ''), ?) WHERE ref = ?",
                           (t, nat[0]))

    def refresh_updated_all(self) -> None:
        db = self.db
        db.execute("UPDATE registries SET updated_at = max(coalesce(created_at, ''), coalesce("
                   "(SELECT time FROM key_time WHERE key = 'registry:' || registries.name), ''))")
        db.execute("UPDATE collections SET updated_at = max(coalesce(created_at, ''), coalesce("
                   "(SELECT time FROM key_time WHERE key = 'collection:' || collections.registry || '/' || "
                   "collections.name), ''))")
        db.execute("UPDATE links SET updated_at = max(coalesce(linked_at, ''), coalesce("
                   "(SELECT time FROM key_time WHERE key = 'link:' || links.registry || '/' || links.collection "
                   "|| ':' || links.version), ''))")
        db.execute("UPDATE avs SET updated_at = max(coalesce(created_at, ''), coalesce("
                   "(SELECT time FROM key_time WHERE key = 'av:' || avs.ref), ''))")


class _Bulk:
    """Rows for a rebuild: ids given here, written with executemany (no lookups: every natural
    key occurs once in a tree). Links get their artifact version ids and aliases afterwards."""

    def __init__(self, up: _Updater):
        self.db = up.db
        self.rows: dict[str, list] = {t: [] for t in ("registries", "collections", "aliases", "links",
                                                       "artifacts", "avs", "vals", "kv")}
        self.ids = {"registries": 0, "collections": 0, "links": 0, "avs": 0}

    def _id(self, table: str) -> int:
        self.ids[table] += 1
        return self.ids[table]

    def registry(self, parts, rec) -> None:
        rid = self._id("registries")
        keep = {k: rec.get(k) for k in ("description", "visibility", "types", "protected_aliases",
                                          "members", "created_at", "created_by")}
        self.rows["registries"].append((rid, parts[1], rec.get("description", ""), rec.get("visibility"),
                                        rec.get("created_at"), rec.get("created_by"), rec.get("created_at"),
                                        _dumps(keep)))
        types = rec.get("types")
        self.rows["vals"] += [("r.types", rid, t) for t in (["all"] if types == "all" else list(types or []))]

    def collection(self, parts, rec) -> None:
        cid = self._id("collections")
        tags = list(rec.get("tags", []))
        self.rows["collections"].append((cid, parts[1], parts[2], rec.get("type"), rec.get("description", ""),
                                         _dumps(tags), "{}", 0, rec.get("next_version"), rec.get("created_at"),
                                         rec.get("created_by"), rec.get("created_at")))
        self.rows["vals"] += [("c.tags", cid, t) for t in tags]

    def aliases(self, parts, rec) -> None:
        self.rows["aliases"] += [(parts[1], parts[2], a, v) for a, v in (rec.get("aliases") or {}).items()]

    def link(self, parts, rec) -> None:
        num = _version_num(parts[4]) if len(parts) == 5 else None
        if num is None:
            return
        lid = self._id("links")
        tags = list(rec.get("tags", []))
        self.rows["links"].append((lid, parts[1], parts[2], num, f"v{num}", rec.get("artifact"), None,
                                   rec.get("digest"), rec.get("description", ""), _dumps(tags), "[]",
                                   rec.get("linked_at"), rec.get("linked_by"), rec.get("linked_at")))
        self.rows["vals"] += [("l.tags", lid, t) for t in tags]

    def artifact(self, parts, rec) -> None:
        if len(parts) == 3:
            self.rows["artifacts"].append((parts[1], rec.get("type"), rec.get("description", ""),
                                           rec.get("created_at"), rec.get("created_by")))

    def artifact_version(self, parts, rec) -> None:
        num = _version_num(parts[2]) if len(parts) == 3 else None
        if num is None:
            return
        aid = self._id("avs")
        metadata = rec.get("metadata") or {}
        metrics = rec.get("metrics") or {}
        inputs = list(rec.get("inputs") or [])
        self.rows["avs"].append((aid, f"{parts[1]}:v{num}", parts[1], num, rec.get("type"), rec.get("digest"),
                                 rec.get("size"), len(rec.get("files") or []), rec.get("description", ""),
                                 rec.get("created_at"), rec.get("created_by"), rec.get("created_at"),
                                 _dumps(metadata), _dumps(metrics), _dumps(inputs),
                                 _dumps(rec.get("producer") or {})))
        self.rows["vals"] += [("a.inputs", aid, i) for i in inputs]
        kv = self.rows["kv"]
        for r in flatten("metadata", metadata, []) + flatten("metrics", metrics, []):
            if r[0] not in ("metadata", "metrics"):
                kv.append((aid,) + r)

    def flush(self) -> None:
        for table, rows in self.rows.items():
            if rows:
                marks = ", ".join("?" * len(rows[0]))
                self.db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
                rows.clear()


def _link_aliases(amap: dict, version: str, latest: str | None) -> list[str]:
    """As ops.link_record names them: the aliases held, sorted, then `latest`."""
    names = sorted(a for a, v in amap.items() if v == version)
    if latest == version:
        names.append("latest")
    return names


class _Records:
    """Parsed, validated records by blob id: the store's record cache first (in bulk), then YAML.
    An invalid file is left out of the index (canonry validate reports it)."""

    def __init__(self, store):
        self.store = store
        self.cache = store.cache
        self.prefetched: dict[tuple[bytes, str], dict] = {}

    def prefetch(self, items) -> None:
        """Look many blobs up in the on-disk record cache at once (one query per 500)."""
        disk = getattr(self.cache, "disk", None)
        conn = getattr(disk, "_conn", None)
        if conn is None or len(items) < 50:
            return
        try:
            db = conn()
        except Exception:
            return
        if db is None:
            return
        shas = list({sha for sha, _ in items})
        try:
            for i in range(0, len(shas), 500):
                chunk = shas[i:i + 500]
                q = "SELECT sha, kind, body FROM records WHERE sha IN (%s)" % ",".join("?" * len(chunk))
                for sha, kind, body in db.execute(q, chunk):
                    self.prefetched[(bytes(sha), kind)] = body
        except Exception:
            self.prefetched.clear()

    def get(self, sha: bytes, path: str):
        kind = m.kind_of_path(path) or "other"
        body = self.prefetched.get((sha, kind))
        if body is not None:
            return json.loads(body)
        try:
            return self.store._read_record(sha, path)
        except (SchemaError, KeyError):
            return None


# ---- the history walk ---------------------------------------------------------------------------------
class LightCommit:
    """The parts of a commit history needs, parsed from the raw object (dulwich's full parse
    costs several times more, and a rebuild reads every commit of the branch)."""

    __slots__ = ("id", "parents", "author", "author_time", "message")

    def __init__(self, sha: bytes, raw: bytes):
        self.id = sha
        head, _, self.message = raw.partition(b"\n\n")
        self.parents = []
        self.author = b""
        self.author_time = 0
        for line in head.split(b"\n"):
            if line.startswith(b"parent "):
                self.parents.append(line[7:47])
            elif line.startswith(b"author "):
                # author NAME <EMAIL> TIME TZ
                rest = line[7:]
                end = rest.rfind(b">")
                self.author = rest[:end + 1]
                try:
                    self.author_time = int(rest[end + 1:].split()[0])
                except (ValueError, IndexError):
                    self.author_time = 0
            elif line.startswith(b"gpgsig") or line.startswith(b"mergetag"):
                continue


def _light(storage, sha: bytes):
    try:
        type_num, raw = storage.repo.object_store.get_raw(sha)
        if type_num == 1:
            return LightCommit(sha, raw)
    except Exception:
        pass
    return storage.commit(sha)


def mainline(storage, head):
    """(commit, on the first-parent line) newest first, exactly as history._mainline walks."""
    from canonry.sharing.merge import merge_base

    current = head
    while current is not None:
        commit = _light(storage, current)
        yield commit, True
        if len(commit.parents) > 1 and not journal.records(commit.message):
            base = merge_base(storage.repo, commit.parents[0], commit.parents[1])
            side = []
            c = commit.parents[1]
            while c is not None and c != base:
                side.append(c)
                ps = storage.commit(c).parents
                c = ps[0] if ps else None
            for c in side:
                yield _light(storage, c), False
        current = commit.parents[0] if commit.parents else None


# ---- history and audit read from the index ---------------------------------------------------------
def history(store, target: str | None = None, limit: int | None = None, actor: str | None = None,
            since: str | None = None, registry: str | None = None):
    """The same entries as history.walk, read from the index (no walk, no tree diff except for
    hand-made commits that changed more paths than the index keeps)."""
    from canonry.query.history import target_key_and_path
    from canonry.model import HistoryEntry

    key = path = None
    if target:
        key, path = target_key_and_path(store, target)
    check_path = m.registry_dir(registry) if registry else path
    idx = for_store(store)

    def q(db):
        where, args = [], []
        if actor:
            where.append("(c.email = ? OR c.author = ?)")
            args += [actor, actor]
        cutoff = 0
        if since:
            row = db.execute("SELECT max(seq) FROM commits c WHERE c.time < ? AND c.parents <= 1"
                             + (" AND (c.email = ? OR c.author = ?)" if actor else ""),
                             [since] + ([actor, actor] if actor else [])).fetchone()
            cutoff = row[0] or 0
            where.append("c.seq > ? AND c.time >= ?")
            args += [cutoff, since]
        cond = (" AND " + " AND ".join(where)) if where else ""
        if key is not None or registry:
            match_key = key if key is not None else f"registry:{registry}"
            rows = db.execute(
                "SELECT c.seq, h.pos, c.id, c.time, c.email, h.op, h.target, h.before, h.after, h.summary "
                "FROM hkeys k JOIN hist h ON h.seq = k.seq AND h.pos = k.pos JOIN commits c ON c.seq = k.seq "
                "WHERE k.key = ? AND k.pos >= 0" + cond, [match_key] + args).fetchall()
            if key is not None and registry:
                reg_key = f"registry:{registry}"
                rows = [r for r in rows if db.execute(
                    "SELECT 1 FROM hkeys WHERE key = ? AND seq = ? AND pos = ?", (reg_key, r[0], r[1])).fetchone()]
        else:
            rows = db.execute(
                "SELECT c.seq, h.pos, c.id, c.time, c.email, h.op, h.target, h.before, h.after, h.summary "
                "FROM hist h JOIN commits c ON c.seq = h.seq WHERE 1" + cond, args).fetchall()
        hand_sql = ("SELECT c.seq, c.id, c.time, c.email, c.subject, c.many FROM commits c "
                    "INDEXED BY commits_hand WHERE c.hand = 1 AND c.parents <= 1" + cond)
        hand = db.execute(hand_sql, args).fetchall()
        if check_path is not None and hand:
            touched = {s for (s,) in db.execute(
                "SELECT DISTINCT seq FROM hpaths WHERE path = ? OR (path > ? AND path < ?)",
                (check_path, check_path + "/", check_path + "0"))}
            hand = [h for h in hand if h[0] in touched or (h[5] and _touches(store.storage, h[1], check_path))]
        return rows, hand

    try:
        rows, hand = idx.query(q)
    except IndexUnavailable:  # kept busy too long: the walk gives the same answer, slower
        from canonry.query.history import walk

        return walk(store, target, limit=limit, actor=actor, since=since, registry=registry)
    entries = []
    for seq, pos, cid, stamp, email, op, tgt, before, after, summary in rows:
        entries.append((-seq, pos, HistoryEntry(commit=cid, time=stamp, actor=email, op=op, target=tgt,
                                                before=json.loads(before), after=json.loads(after),
                                                summary=summary)))
    for seq, cid, stamp, email, subject, _ in hand:
        entries.append((-seq, 0, HistoryEntry(commit=cid, time=stamp, actor=email, op="commit",
                                              target=target or "", before=None, after=None, summary=subject)))
    entries.sort(key=lambda e: (e[0], e[1]))
    out = []
    last_seq = None
    for neg_seq, _, e in entries:
        if limit and len(out) >= limit and neg_seq != last_seq:
            break
        out.append(e)
        last_seq = neg_seq
    if not out and target:
        store.resolve(target)
    return out


def _touches(storage, commit_hex: str, path: str) -> bool:
    commit = storage.commit(commit_hex.encode())
    parent = commit.parents[0] if commit.parents else None
    now = storage.lookup(storage.root_tree(commit.id), path)
    before = storage.lookup(storage.root_tree(parent), path) if parent else None
    return now != before
