"""The index's tables: the SQL that makes them, and the layout number that says which they are.

Item tables (written by canonry.query.items):
  registries, collections, aliases, links (with their aliases and tags), artifacts,
  avs (artifact versions: type, metadata, metrics, inputs, producer, times),
  vals (one row per element of a list field: tags, aliases, inputs, accepted types; indexed by
  value), kv (one row per metadata/metrics path and scalar value; indexed by number and by text).
History tables (written by canonry.query.commits):
  commits (one per commit of the first-parent history, numbered by `seq`), hist (their
  Canonry-Op records), hkeys (history key -> commit), key_time (history key -> newest change),
  hpaths (the store paths of hand-made commits).
meta holds `layout`, `prefix` and `commit` (the commit the index reflects).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

__all__ = ["ALL_TABLES", "LAYOUT", "create_indexes", "create_tables", "has_table"]

LAYOUT = 4  # bump when the tables, or what goes in them, change: an index of another layout is rebuilt

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
ALL_TABLES = ("meta", "registries", "collections", "aliases", "links", "artifacts", "avs", "vals",
              "kv", "commits", "hist", "hkeys", "key_time", "hpaths")


def _run(db: sqlite3.Connection, script: str) -> None:
    # statement by statement: executescript would commit the caller's transaction
    for stmt in script.strip().split(";"):
        if stmt.strip():
            db.execute(stmt)


def create_tables(db: sqlite3.Connection, prefix: str) -> None:
    """Drop every table of the index and make them again, empty but for meta's layout and the
    store's prefix (inside the caller's transaction)."""
    for t in ALL_TABLES:
        db.execute(f"DROP TABLE IF EXISTS {t}")
    _run(db, _TABLES)
    db.execute("INSERT INTO meta VALUES ('layout', ?)", (str(LAYOUT),))
    db.execute("INSERT INTO meta VALUES ('prefix', ?)", (prefix,))


def create_indexes(db: sqlite3.Connection) -> None:
    """The secondary indexes, once the tables are filled."""
    _run(db, _INDEXES)


def has_table(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None
