"""The history tables of the index, and the `updated_at` of items that they set.

One row in `commits` per commit that `canonry history` walks (canonry.query.mainline), numbered
oldest first by `seq`; in `hist`, the Canonry-Op records of each, with the history keys they
touch (journal.keys) in `hkeys` and the newest time of each key in `key_time`; for a commit made
by hand, the store paths it changed (up to HAND_PATH_CAP of them) in `hpaths`, and the keys of
those paths (`path_keys`).

When the head moves, the walk goes back from the new head to the first commit already recorded
on the first-parent line; rows after that one are dropped and the new ones appended, so a reset
branch is handled like any other move.

`updated_at` of a registry, collection, linked version or artifact version is the time of the
newest commit on the branch's history that touched it (its history key, as `canonry history
TARGET` finds it), or its creation (link) time if that is later or there is none.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from canonry import journal
from canonry import model as m
from canonry.query.items import dumps, version_num
from canonry.query.mainline import commit_author, commit_subject, commit_time, entry, light_commit, mainline
from canonry.query.trees import RawTrees, tree_diff

if TYPE_CHECKING:
    import sqlite3

__all__ = [
    "HAND_PATH_CAP",
    "item_of_key",
    "path_keys",
    "refresh_updated",
    "refresh_updated_all",
    "update_history",
]

HAND_PATH_CAP = 1000  # paths kept per hand-made commit; beyond, history checks that commit's tree


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
            if len(parts) == 5 and parts[3] == "links" and version_num(parts[4]) is not None:
                out.add(f"link:{where}:{parts[4][:-5]}")
    elif parts[0] == m.ARTIFACTS and len(parts) >= 3:
        out.add("artifact:" + parts[1])
        if len(parts) == 3 and version_num(parts[2]) is not None:
            out.add(f"av:{parts[1]}:{parts[2][:-5]}")
    return out


def item_of_key(key: str) -> tuple[str, tuple] | None:
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


def update_history(db: sqlite3.Connection, storage: Any, trees: RawTrees, head: bytes | None,
                   keys: set[str]) -> tuple[int, int]:
    """Bring the history tables to `head` (inside the caller's transaction): drop the rows after
    the newest commit still on the first-parent line, append the commits since.

    `keys` holds the history keys whose updated_at the caller will recompute: the keys of the
    rows dropped and of the rows added are added to it. Returns (commits added, commits dropped)."""
    new: list[tuple[Any, bool]] = []  # (commit, main) newest first
    anchor = None
    empty = db.execute("SELECT 1 FROM commits LIMIT 1").fetchone() is None
    for commit, main in mainline(storage, head, load=light_commit):
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
        for (key,) in db.execute("SELECT DISTINCT key FROM hkeys WHERE seq > ?", (base,)).fetchall():
            keys.add(key)
        for t in ("commits", "hist", "hkeys", "hpaths"):
            db.execute(f"DELETE FROM {t} WHERE seq > ?", (base,))
        _recompute_key_times(db, keys)
    commit_rows, hist_rows, key_rows, path_rows = [], [], [], []
    key_times: dict[str, str] = {}
    for i, (commit, main) in enumerate(reversed(new)):
        seq = base + 1 + i
        stamp = commit_time(commit)
        email, author = commit_author(commit)
        records = journal.records(commit.message)
        many = 0
        if records:
            for pos, rec in enumerate(records):
                e = entry(commit, stamp, email, rec)
                hist_rows.append((seq, pos, e.op, e.target, dumps(e.before), dumps(e.after), e.summary))
                for key in journal.keys(rec):
                    key_rows.append((key, seq, pos, stamp))
                    if key_times.get(key, "") < stamp:
                        key_times[key] = stamp
        elif len(commit.parents) <= 1:
            paths, many = _hand_paths(storage, trees, commit)
            touched: set[str] = set()
            for p in paths:
                path_rows.append((seq, p))
                touched |= path_keys(p)
            for key in touched:
                key_rows.append((key, seq, -1, stamp))
                if key_times.get(key, "") < stamp:
                    key_times[key] = stamp
        commit_rows.append((seq, commit.id.decode(), 1 if main else 0, stamp, email, author,
                            len(commit.parents), 0 if records else 1, many, commit_subject(commit)))
    db.executemany("INSERT INTO commits VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", commit_rows)
    db.executemany("INSERT INTO hist VALUES (?, ?, ?, ?, ?, ?, ?)", hist_rows)
    db.executemany("INSERT INTO hkeys VALUES (?, ?, ?, ?)", key_rows)
    db.executemany("INSERT INTO hpaths VALUES (?, ?)", path_rows)
    db.executemany("INSERT INTO key_time VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                   "time = max(time, excluded.time)", key_times.items())
    keys |= set(key_times)
    return len(commit_rows), dropped


def _hand_paths(storage: Any, trees: RawTrees, commit: Any) -> tuple[list[str], int]:
    """Store paths a hand-made commit changed against its first parent, and 1 when there were
    more than HAND_PATH_CAP (then none are kept)."""
    parent = commit.parents[0] if commit.parents else None
    new_root = storage.root_tree(commit.id)
    old_root = storage.root_tree(parent) if parent is not None else None
    out: list[str] = []
    for path, _, _ in tree_diff(trees, old_root, new_root):
        if len(out) >= HAND_PATH_CAP:
            return [], 1
        out.append(path)
    return out, 0


def _recompute_key_times(db: sqlite3.Connection, keys: set[str]) -> None:
    for key in keys:
        db.execute("DELETE FROM key_time WHERE key = ?", (key,))
        db.execute("INSERT INTO key_time SELECT key, max(time) FROM hkeys WHERE key = ? GROUP BY key", (key,))


def refresh_updated(db: sqlite3.Connection, keys: set[str]) -> None:
    """updated_at of the items of `keys`, from key_time."""
    for key in keys:
        item = item_of_key(key)
        if item is None:
            continue
        table, nat = item
        row = db.execute("SELECT time FROM key_time WHERE key = ?", (key,)).fetchone()
        t = row[0] if row else ""
        if table == "registries":
            db.execute("UPDATE registries SET updated_at = max(coalesce(created_at, ''), ?) WHERE name = ?",
                       (t, nat[0]))
        elif table == "collections":
            db.execute("UPDATE collections SET updated_at = max(coalesce(created_at, ''), ?) "
                       "WHERE registry = ? AND name = ?", (t, *nat))
        elif table == "links":
            db.execute("UPDATE links SET updated_at = max(coalesce(linked_at, ''), ?) "
                       "WHERE registry = ? AND collection = ? AND num = ?", (t, *nat))
        else:
            db.execute("UPDATE avs SET updated_at = max(coalesce(created_at, ''), ?) WHERE ref = ?",
                       (t, nat[0]))


def refresh_updated_all(db: sqlite3.Connection) -> None:
    """updated_at of every item, from key_time (after a rebuild)."""
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
