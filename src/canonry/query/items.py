"""The item tables of the index, written from the store's records as a tree diff changes files.

Items are registries, collections, aliases, links, artifacts and artifact versions (avs), with
their list fields in `vals` and their metadata and metrics in `kv` (see canonry.query.schema).
A changed file is applied row by row (`Items`, for an update) or all files at once (`BulkItems`,
for a rebuild); then what depends on several files is recomputed: each link's aliases and each
collection's alias map and version count (`Items.refresh_collection`, `refresh_collections_all`).
Records are read through the store's record cache; a file that does not validate is left out
(`canonry validate` reports it).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from canonry import model as m
from canonry.errors import SchemaError
from canonry.query.trees import RawTrees, tree_diff
from canonry.query.values import to_number

if TYPE_CHECKING:
    import sqlite3

__all__ = [
    "BulkItems",
    "Items",
    "Records",
    "dumps",
    "flatten",
    "link_aliases",
    "refresh_collections_all",
    "scalar_row",
    "version_num",
]

_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_REGISTRY_KEEP = ("description", "visibility", "types", "protected_aliases", "members", "created_at", "created_by")


def dumps(value: Any) -> str:
    """Compact JSON as the index stores it (an empty list or mapping keeps its kind)."""
    if not value:
        return "[]" if isinstance(value, list) else "{}" if isinstance(value, dict) else _ENCODE(value)
    return _ENCODE(value)


def scalar_row(value: Any) -> tuple[str, float | None, str | None] | None:
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


def flatten(prefix: str, value: Any, out: list) -> list:
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
                out.append((prefix, *row))
    else:
        row = scalar_row(value)
        if row is None:  # not a value a YAML record holds
            raise TypeError(f"{prefix}: unsupported value {value!r}")
        out.append((prefix, *row))
    return out


def version_num(name: str) -> int | None:
    """N of `vN.yaml` (None for any other file name)."""
    if not name.endswith(".yaml") or not name.startswith("v"):
        return None
    digits = name[1:-5]
    # ASCII digits only (isdigit() takes "١" too), and at most 16: sqlite holds 2**63 - 1
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 16 or (len(digits) > 1 and digits[0] == "0"):
        return None
    return int(digits)


def link_aliases(amap: dict, version: str, latest: str | None) -> list[str]:
    """As ops.link_record names them: the aliases held, sorted, then `latest`."""
    names = sorted(a for a, v in amap.items() if v == version)
    if latest == version:
        names.append("latest")
    return names


def _types(rec: dict) -> list:
    types = rec.get("types")
    return ["all"] if types == "all" else list(types or [])


class Records:
    """Parsed, validated records by blob id: the store's record cache first (in bulk), then YAML.
    An invalid file is None."""

    def __init__(self, store: Any):
        self.store = store
        self.cache = store.cache
        self.prefetched: dict[tuple[bytes, str], Any] = {}

    def prefetch(self, items: list[tuple[bytes, str]]) -> None:
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
                q = "SELECT sha, kind, body FROM records WHERE sha IN ({})".format(",".join("?" * len(chunk)))
                for sha, kind, body in db.execute(q, chunk):
                    self.prefetched[(bytes(sha), kind)] = body
        except Exception:
            self.prefetched.clear()

    def get(self, sha: bytes, path: str) -> dict | None:
        kind = m.kind_of_path(path) or "other"
        body = self.prefetched.get((sha, kind))
        if body is not None:
            return json.loads(body)
        try:
            return self.store.read_record(sha, path)
        except (SchemaError, KeyError):
            return None


class Items:
    """Applies the files a tree diff changed to the item tables, inside the caller's transaction.

    Counts the files it read (`files`) and left out (`invalid`); collects the collections whose
    aliases or links changed (`affected`, for refresh_affected) and the history keys of the items
    it wrote (`keys`: their updated_at must be recomputed). With `bulk`, rows are gathered and
    written by BulkItems (a rebuild into empty tables)."""

    def __init__(self, db: sqlite3.Connection, store: Any, trees: RawTrees, bulk: bool = False):
        self.db = db
        self.store = store
        self.storage = store.storage
        self.trees = trees
        self.files = 0
        self.invalid = 0
        self.affected: set[tuple[str, str]] = set()
        self.keys: set[str] = set()
        self.bulk = BulkItems(db) if bulk else None

    def apply_diff(self, old: bytes | None, new: bytes | None) -> None:
        """Every store file that differs between commits `old` and `new` (None: nothing)."""
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
        if self.bulk is not None:
            self.bulk.flush()

    def _apply_batch(self, batch: list[tuple[str, str, bytes | None, bytes | None]]) -> None:
        records = Records(self.store)
        records.prefetch([(new, path) for _, path, _, new in batch if new is not None])
        for kind, path, _old_sha, new_sha in batch:
            self.files += 1
            rec = None
            if new_sha is not None:
                rec = records.get(new_sha, path)
                if rec is None:
                    self.invalid += 1
            if self.bulk is not None:
                if rec is not None:
                    getattr(self.bulk, kind)(path.split("/"), rec)
            else:
                getattr(self, "_apply_" + kind)(path.split("/"), rec)
        if self.bulk is not None:
            self.bulk.flush()

    def _apply_registry(self, parts: list[str], rec: dict | None) -> None:
        name = parts[1]
        db = self.db
        old = db.execute("SELECT id FROM registries WHERE name = ?", (name,)).fetchone()
        if old is not None:
            db.execute("DELETE FROM vals WHERE item = ? AND field = 'r.types'", (old[0],))
        self.keys.add("registry:" + name)
        if rec is None:
            db.execute("DELETE FROM registries WHERE name = ?", (name,))
            return
        keep = {k: rec.get(k) for k in _REGISTRY_KEEP}
        row = (name, rec.get("description", ""), rec.get("visibility"), rec.get("created_at"),
               rec.get("created_by"), rec.get("created_at"), dumps(keep))
        rid = db.execute(
            "INSERT INTO registries (name, description, visibility, created_at, created_by, updated_at, rec) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET description = excluded.description, "
            "visibility = excluded.visibility, created_at = excluded.created_at, created_by = excluded.created_by, "
            "rec = excluded.rec RETURNING id", row).fetchone()[0]
        db.executemany("INSERT INTO vals VALUES ('r.types', ?, ?)", [(rid, t) for t in _types(rec)])

    def _apply_collection(self, parts: list[str], rec: dict | None) -> None:
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
            (reg, name, rec.get("type"), rec.get("description", ""), dumps(tags), rec.get("next_version"),
             rec.get("created_at"), rec.get("created_by"), rec.get("created_at"))).fetchone()[0]
        db.executemany("INSERT INTO vals VALUES ('c.tags', ?, ?)", [(cid, t) for t in tags])
        # c.aliases rows are written by refresh_collection (they depend on aliases and links)

    def _apply_aliases(self, parts: list[str], rec: dict | None) -> None:
        reg, coll = parts[1], parts[2]
        self.affected.add((reg, coll))
        self.db.execute("DELETE FROM aliases WHERE registry = ? AND collection = ?", (reg, coll))
        if rec is not None:
            self.db.executemany("INSERT INTO aliases VALUES (?, ?, ?, ?)",
                                [(reg, coll, a, v) for a, v in (rec.get("aliases") or {}).items()])

    def _apply_link(self, parts: list[str], rec: dict | None) -> None:
        if len(parts) != 5:
            return
        num = version_num(parts[4])
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
        lid, aliases = db.execute(
            "INSERT INTO links (registry, collection, num, version, artifact, av, digest, note, tags, aliases, "
            "linked_at, linked_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (registry, collection, num) DO UPDATE SET artifact = excluded.artifact, av = excluded.av, "
            "digest = excluded.digest, note = excluded.note, tags = excluded.tags, linked_at = excluded.linked_at, "
            "linked_by = excluded.linked_by RETURNING id, aliases",
            (reg, coll, num, f"v{num}", artifact, av[0] if av else None, rec.get("digest"),
             rec.get("description", ""), dumps(tags), "[]", rec.get("linked_at"), rec.get("linked_by"),
             rec.get("linked_at"))).fetchone()
        db.executemany("INSERT INTO vals VALUES ('l.tags', ?, ?)", [(lid, t) for t in tags])
        if old is not None:  # keep its alias rows until refresh_collection recomputes them
            db.executemany("INSERT INTO vals VALUES ('l.aliases', ?, ?)",
                           [(lid, a) for a in json.loads(aliases or "[]")])

    def _apply_artifact(self, parts: list[str], rec: dict | None) -> None:
        if len(parts) != 3:
            return
        name = parts[1]
        if rec is None:
            self.db.execute("DELETE FROM artifacts WHERE name = ?", (name,))
            return
        self.db.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?, ?)",
                        (name, rec.get("type"), rec.get("description", ""), rec.get("created_at"),
                         rec.get("created_by")))

    def _apply_artifact_version(self, parts: list[str], rec: dict | None) -> None:
        if len(parts) != 3:
            return
        num = version_num(parts[2])
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
               dumps(metadata), dumps(metrics), dumps(inputs), dumps(rec.get("producer") or {}))
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
                       [(aid, *r) for r in rows if r[0] not in ("metadata", "metrics")])
        if old is None:
            db.execute("UPDATE links SET av = ? WHERE artifact = ?", (aid, ref))

    # ---- derived per-collection data: aliases of each link, the collection's alias map -----------
    def refresh_affected(self) -> None:
        """refresh_collection for every collection whose aliases or links changed."""
        for reg, coll in sorted(self.affected):
            self.refresh_collection(reg, coll)

    def refresh_collection(self, reg: str, coll: str) -> None:
        db = self.db
        links = db.execute("SELECT id, num, aliases FROM links WHERE registry = ? AND collection = ? "
                           "ORDER BY num", (reg, coll)).fetchall()
        amap = dict(db.execute("SELECT alias, version FROM aliases WHERE registry = ? AND collection = ? "
                               "ORDER BY alias", (reg, coll)).fetchall())
        latest = f"v{links[-1][1]}" if links else None
        for lid, num, stored in links:
            names = link_aliases(amap, f"v{num}", latest)
            text = dumps(names)
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
                   (dumps(full), len(links), row[0]))
        db.execute("DELETE FROM vals WHERE item = ? AND field = 'c.aliases'", (row[0],))
        db.executemany("INSERT INTO vals VALUES ('c.aliases', ?, ?)", [(row[0], a) for a in full])


def refresh_collections_all(db: sqlite3.Connection) -> None:
    """After a rebuild: every link's aliases and artifact version id, and every collection's alias
    map and version count, in bulk."""
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
        names = link_aliases(amap, f"v{num}", f"v{top}" if top is not None else None)
        link_rows.append((dumps(names), lid))
        val_rows += [("l.aliases", lid, a) for a in names]
    db.executemany("UPDATE links SET aliases = ? WHERE id = ?", link_rows)
    db.execute("DELETE FROM vals WHERE field IN ('l.aliases', 'c.aliases')")
    coll_rows = []
    for cid, reg, coll in db.execute("SELECT id, registry, name FROM collections").fetchall():
        full = dict(amaps.get((reg, coll), {}))
        top = latest.get((reg, coll))
        if top is not None:
            full["latest"] = f"v{top}"
        coll_rows.append((dumps(full), counts.get((reg, coll), 0), cid))
        val_rows += [("c.aliases", cid, a) for a in full]
    db.executemany("UPDATE collections SET aliases = ?, versions = ? WHERE id = ?", coll_rows)
    db.executemany("INSERT INTO vals VALUES (?, ?, ?)", val_rows)
    db.execute("UPDATE links SET av = (SELECT id FROM avs WHERE avs.ref = links.artifact)")


class BulkItems:
    """Rows for a rebuild: ids given here, written with executemany (no lookups: every natural
    key occurs once in a tree). Links get their artifact version ids and aliases afterwards
    (refresh_collections_all)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self.rows: dict[str, list] = {t: [] for t in ("registries", "collections", "aliases", "links",
                                                       "artifacts", "avs", "vals", "kv")}
        self.ids = {"registries": 0, "collections": 0, "links": 0, "avs": 0}

    def _id(self, table: str) -> int:
        self.ids[table] += 1
        return self.ids[table]

    def registry(self, parts: list[str], rec: dict) -> None:
        rid = self._id("registries")
        keep = {k: rec.get(k) for k in _REGISTRY_KEEP}
        self.rows["registries"].append((rid, parts[1], rec.get("description", ""), rec.get("visibility"),
                                        rec.get("created_at"), rec.get("created_by"), rec.get("created_at"),
                                        dumps(keep)))
        self.rows["vals"] += [("r.types", rid, t) for t in _types(rec)]

    def collection(self, parts: list[str], rec: dict) -> None:
        cid = self._id("collections")
        tags = list(rec.get("tags", []))
        self.rows["collections"].append((cid, parts[1], parts[2], rec.get("type"), rec.get("description", ""),
                                         dumps(tags), "{}", 0, rec.get("next_version"), rec.get("created_at"),
                                         rec.get("created_by"), rec.get("created_at")))
        self.rows["vals"] += [("c.tags", cid, t) for t in tags]

    def aliases(self, parts: list[str], rec: dict) -> None:
        self.rows["aliases"] += [(parts[1], parts[2], a, v) for a, v in (rec.get("aliases") or {}).items()]

    def link(self, parts: list[str], rec: dict) -> None:
        num = version_num(parts[4]) if len(parts) == 5 else None
        if num is None:
            return
        lid = self._id("links")
        tags = list(rec.get("tags", []))
        self.rows["links"].append((lid, parts[1], parts[2], num, f"v{num}", rec.get("artifact"), None,
                                   rec.get("digest"), rec.get("description", ""), dumps(tags), "[]",
                                   rec.get("linked_at"), rec.get("linked_by"), rec.get("linked_at")))
        self.rows["vals"] += [("l.tags", lid, t) for t in tags]

    def artifact(self, parts: list[str], rec: dict) -> None:
        if len(parts) == 3:
            self.rows["artifacts"].append((parts[1], rec.get("type"), rec.get("description", ""),
                                           rec.get("created_at"), rec.get("created_by")))

    def artifact_version(self, parts: list[str], rec: dict) -> None:
        num = version_num(parts[2]) if len(parts) == 3 else None
        if num is None:
            return
        aid = self._id("avs")
        metadata = rec.get("metadata") or {}
        metrics = rec.get("metrics") or {}
        inputs = list(rec.get("inputs") or [])
        self.rows["avs"].append((aid, f"{parts[1]}:v{num}", parts[1], num, rec.get("type"), rec.get("digest"),
                                 rec.get("size"), len(rec.get("files") or []), rec.get("description", ""),
                                 rec.get("created_at"), rec.get("created_by"), rec.get("created_at"),
                                 dumps(metadata), dumps(metrics), dumps(inputs),
                                 dumps(rec.get("producer") or {})))
        self.rows["vals"] += [("a.inputs", aid, i) for i in inputs]
        kv = self.rows["kv"]
        for r in flatten("metadata", metadata, []) + flatten("metrics", metrics, []):
            if r[0] not in ("metadata", "metrics"):
                kv.append((aid, *r))

    def flush(self) -> None:
        for table, rows in self.rows.items():
            if rows:
                marks = ", ".join("?" * len(rows[0]))
                self.db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
                rows.clear()
