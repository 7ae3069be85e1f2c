"""How search compares values: numbers as IEEE doubles, regular expressions searched (not
anchored) with flags from 'imsx'.

One definition for both sides of a search: the index stores numbers with `to_number` and its SQL
calls `regex_search` (registered as the SQL function `canonry_regex`), and the reference
evaluator the tests check the SQL against (tests/_query_helpers.py) calls the same two.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlite3

__all__ = ["regex_search", "register_functions", "to_number"]

_REGEX_CACHE: dict[tuple[str, str], re.Pattern[str]] = {}
_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


def to_number(value: Any) -> float:
    """Numbers compare as IEEE doubles, in the index and in the reference evaluator alike."""
    try:
        return float(value)
    except OverflowError:  # an int too large for a double: beyond every finite one
        return float("inf") if value > 0 else float("-inf")


def regex_search(pattern: str, flags: str, value: Any) -> int:
    """REGEXP for SQL and the reference evaluator alike: re.search, flags from 'imsx'; 0 for a
    value that is not a string."""
    if not isinstance(value, str):
        return 0
    key = (pattern, flags)
    rx = _REGEX_CACHE.get(key)
    if rx is None:
        f = 0
        for ch in flags or "":
            f |= _FLAGS[ch]
        if len(_REGEX_CACHE) > 256:
            _REGEX_CACHE.clear()
        rx = _REGEX_CACHE[key] = re.compile(pattern, f)
    return 1 if rx.search(value) else 0


def register_functions(db: sqlite3.Connection) -> None:
    """Make `canonry_regex(pattern, flags, value)` callable from the SQL search writes."""
    db.create_function("canonry_regex", 3, regex_search, deterministic=True)
