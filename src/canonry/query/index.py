"""The derived SQLite index of the store: opening it, keeping it current, running queries in it.

It lives in <git dir>/canonry/index-v1.sqlite, is never committed and is never the truth: every
write reads the store itself (view.View); only reads that span the whole store come here
(search, lineage, compare, history). `for_store(store).query(fn)` is the one way in.

- Keyed by the commit it reflects (`meta.commit`). Before answering, it is brought up to date
  with the branch head from the tree diff between the two commits, whatever they are: a new
  commit, a fast-forward over many, a reset to an older commit, an unrelated history. The item
  tables follow the diff (canonry.query.items), the history tables the first-parent walk
  (canonry.query.commits); the tables themselves are in canonry.query.schema.
- Rebuilt from scratch when missing, of another layout version, stale beyond repair (the
  commit it reflects is gone from the repository) or corrupt (any sqlite error but "busy").
- Several processes may use it at once: WAL mode, and every update is one transaction taken
  with BEGIN IMMEDIATE. A query runs inside the transaction that checked (or made) the index
  current, so it always sees the state of one commit. Losing a race means redoing the update.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from canonry.errors import CanonryError
from canonry.query.commits import refresh_updated, refresh_updated_all, update_history
from canonry.query.items import Items, refresh_collections_all
from canonry.query.schema import LAYOUT, create_indexes, create_tables, has_table
from canonry.query.trees import RawTrees
from canonry.query.values import register_functions

if TYPE_CHECKING:
    import sqlite3

__all__ = ["FILE_NAME", "MAX_ATTEMPTS", "Index", "IndexUnavailable", "for_store", "index_path"]

FILE_NAME = "index-v1.sqlite"  # the file keeps its name; its meta.layout says what is inside
MAX_ATTEMPTS = 8

T = TypeVar("T")


class IndexUnavailable(CanonryError):
    """The index could not be brought up to date (kept busy by other processes)."""


def for_store(store: Any) -> Index:
    """The Index of a Store: one per Store object, kept in its `query_index` attribute."""
    if store.query_index is None:
        store.query_index = Index(store)
    return store.query_index


def index_path(store: Any) -> str:
    return os.path.join(store.storage.git_dir, "canonry", FILE_NAME)


class Index:
    """The index of one store: its SQLite connection (an in-memory database when the git
    directory cannot be written) and the update that keeps it at the branch head."""

    def __init__(self, store: Any, path: str | None = None):
        self.store = store
        self.storage = store.storage
        self.path = path or index_path(store)
        self._db: sqlite3.Connection | None = None
        self.in_memory = False
        self.last_update: dict = {}
        self.trees = RawTrees(self.storage)  # kept between updates: the next diff reuses them

    # ---- connection --------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
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
        register_functions(db)
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
    def query(self, fn: Callable[[sqlite3.Connection], T], head: bytes | None = None) -> T:
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
            if has_table(db, "meta"):
                db.execute("DELETE FROM meta")
            db.execute("COMMIT")
        except sqlite3.DatabaseError:
            _rollback(db)
            self._discard()
        return self.update(head)

    def _current(self, db: sqlite3.Connection, want: str) -> bool:
        if not has_table(db, "meta"):
            return False
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        return (meta.get("commit") == want and meta.get("layout") == str(LAYOUT)
                and meta.get("prefix") == self.storage.prefix)

    # ---- bringing it up to date ----------------------------------------------------------------
    def _bring_up_to_date(self, db: sqlite3.Connection, head: bytes | None) -> None:
        t0 = time.perf_counter()
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall()) if has_table(db, "meta") else {}
        old = meta.get("commit")
        usable = (old is not None and meta.get("layout") == str(LAYOUT)
                  and meta.get("prefix") == self.storage.prefix)
        old_id = old.encode() if usable and old else None
        if usable and old_id is not None and old_id not in self.storage.objects:
            usable = False  # the commit it reflects is gone (gc after a reset): start over
        stages: dict[str, float | None] = {}
        if not usable:
            if not self.in_memory and _interactive():
                sys.stderr.write("canonry: building the search index (once; later updates are incremental) …\n")
            items, added, dropped = self._rebuild(db, head, stages)
            mode = "rebuild"
        else:
            items, added, dropped = self._incremental(db, old_id, head)
            mode = "incremental"
        db.execute("INSERT OR REPLACE INTO meta VALUES ('commit', ?)", (head.decode() if head else "",))
        self.last_update = {"mode": mode, "files": items.files, "commits": added,
                            "dropped_commits": dropped, "invalid": items.invalid,
                            "seconds": time.perf_counter() - t0, "stages": stages}

    def _rebuild(self, db: sqlite3.Connection, head: bytes | None,
                 stages: dict[str, float | None]) -> tuple[Items, int, int]:
        """Every table from scratch, in stages (timed: benchmarks/bench_search.py reports them)."""
        create_tables(db, self.storage.prefix)
        trees = RawTrees(self.storage, cache=False)  # one pass: keep no trees in memory
        items = Items(db, self.store, trees, bulk=True)
        t = time.perf_counter()
        items.apply_diff(None, head)
        stages["files"] = time.perf_counter() - t
        stages["files_maxrss_mib"] = _maxrss_mib()
        t = time.perf_counter()
        create_indexes(db)
        stages["indexes"] = time.perf_counter() - t
        stages["indexes_maxrss_mib"] = _maxrss_mib()
        t = time.perf_counter()
        added, dropped = update_history(db, self.storage, trees, head, items.keys)
        stages["history"] = time.perf_counter() - t
        stages["history_maxrss_mib"] = _maxrss_mib()
        t = time.perf_counter()
        refresh_collections_all(db)
        refresh_updated_all(db)
        stages["derived"] = time.perf_counter() - t
        stages["derived_maxrss_mib"] = _maxrss_mib()
        return items, added, dropped

    def _incremental(self, db: sqlite3.Connection, old: bytes | None,
                     head: bytes | None) -> tuple[Items, int, int]:
        """The tables from the diff between `old` (the commit the index reflects; None for an
        empty branch) and `head`."""
        items = Items(db, self.store, self.trees)
        items.apply_diff(old, head)
        added, dropped = update_history(db, self.storage, self.trees, head, items.keys)
        items.refresh_affected()
        refresh_updated(db, items.keys)
        return items, added, dropped


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


def _rollback(db: sqlite3.Connection | None) -> None:
    if db is None:
        return
    try:
        if db.in_transaction:
            db.execute("ROLLBACK")
    except Exception:
        pass


def _commit(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        db.execute("COMMIT")


def _is_busy(e: Exception) -> bool:
    text = str(e).lower()
    return "locked" in text or "busy" in text
