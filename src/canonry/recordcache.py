"""Validated records by (git blob id, kind), kept across processes.

A git blob never changes, so a record parsed and validated once can be reused by every later
process without YAML parsing or JSON Schema validation (importing jsonschema alone costs more
than a whole `canonry show`). It lives in <git dir>/canonry/records.sqlite, is never committed,
and is only a cache: any trouble with it (missing, locked, corrupt) means "parse and validate".
"""
from __future__ import annotations

import json
import os
from typing import Any

from canonry.schemas import FORMAT_VERSION

__all__ = ["RecordCache"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS records (sha BLOB, kind TEXT, body TEXT, PRIMARY KEY (sha, kind))"


class RecordCache:
    def __init__(self, git_dir: str):
        self.path = os.path.join(git_dir, "canonry", f"records-v{FORMAT_VERSION}.sqlite")
        self._db: Any = None  # a sqlite3.Connection once opened (sqlite3 is imported on first use)
        self._broken = False
        self._pending: list[tuple[bytes, str, str]] = []
        self._flush_at_exit = False
        self._flushed_at = 0.0  # time.monotonic() of the last flush_soon() that flushed

    def _conn(self):
        if self._db is None and not self._broken:
            try:
                import sqlite3

                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                db = sqlite3.connect(self.path, timeout=0.5, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=OFF")  # a lost cache entry only costs a re-parse
                db.execute(_SCHEMA)
                self._db = db
            except Exception:
                self._broken = True
        return self._db

    def get(self, sha: bytes, kind: str):
        db = self._conn()
        if db is None:
            return None
        try:
            row = db.execute("SELECT body FROM records WHERE sha=? AND kind=?", (sha, kind)).fetchone()
        except Exception:
            self._broken, self._db = True, None
            return None
        return json.loads(row[0]) if row else None

    def get_field_many(self, shas: list[bytes], kind: str, field: str) -> dict[bytes, object]:
        """One top-level field of each cached record, extracted by SQLite (no JSON decoding
        of whole records in Python). Missing records, or SQLite without JSON support: {}."""
        return dict(self._select_many(shas, kind, f"json_extract(body, '$.{field}')"))

    def _select_many(self, shas: list[bytes], kind: str, column: str) -> list[tuple[bytes, object]]:
        db = self._conn()
        if db is None or not shas:
            return []
        rows = []
        try:
            for at in range(0, len(shas), 500):  # SQLite caps the number of parameters
                part = shas[at:at + 500]
                marks = ",".join("?" * len(part))
                rows += [(bytes(sha), value) for sha, value in db.execute(
                    f"SELECT sha, {column} FROM records WHERE kind=? AND sha IN ({marks})", (kind, *part))]
        except Exception:
            self._broken, self._db = True, None
            return []
        return rows

    def put(self, sha: bytes, kind: str, record: dict) -> None:
        if not self._flush_at_exit:
            import atexit

            atexit.register(self.flush)
            self._flush_at_exit = True
        self._pending.append((sha, kind, json.dumps(record, separators=(",", ":"))))

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None

    # A writer flushes every so many rows or seconds, not after each commit: a flush is a
    # SQLite transaction, and an entry not flushed yet only costs another process
    # a parse. Store.close() and the end of the process flush the rest.
    FLUSH_ROWS = 256
    FLUSH_S = 1.0

    def flush_soon(self) -> None:
        """Flush if enough rows are pending, or they have waited long enough."""
        import time

        now = time.monotonic()
        if self._pending and (len(self._pending) >= self.FLUSH_ROWS or now - self._flushed_at >= self.FLUSH_S):
            self.flush()
            self._flushed_at = now

    def flush(self) -> None:
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        db = self._conn()
        if db is None:
            return
        try:
            db.execute("BEGIN")
            db.executemany("INSERT OR IGNORE INTO records VALUES (?, ?, ?)", rows)
            db.execute("COMMIT")
        except Exception:
            try:
                db.execute("ROLLBACK")
            except Exception:
                pass
