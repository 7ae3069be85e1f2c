"""A git tree object's raw bytes: finding one entry, listing names, splicing in changes.

Why not parse: a tree is `MODE SP NAME NUL` + 20-byte id per entry, sorted by name, and a
store's large trees (a registry of 1,000 collections, `artifacts/` of 10,000) are read for one
entry or rewritten with one entry changed far more often than they are walked. Parsing one
costs milliseconds in Python, searching or splicing its bytes a fraction of that.
"""
from __future__ import annotations

import binascii
import stat
from typing import TYPE_CHECKING

from canonry.git import compat

if TYPE_CHECKING:  # imported where trees are built: reading raw trees needs no dulwich
    from dulwich.objects import Tree

__all__ = ["AMBIGUOUS", "FILE_MODE", "find_entry", "names", "spliced"]

FILE_MODE = 0o100644

_MODE_TEXT = {stat.S_IFDIR: b"40000", FILE_MODE: b"100644"}
AMBIGUOUS = object()
_SIX_DIGIT_MODES = (b"100644", b"100755", b"120000", b"160000")


def find_entry(raw: bytes, name: bytes):
    """(mode, hex sha) of entry `name` in a raw tree, None when absent, AMBIGUOUS when the
    bytes do not settle it (the caller then parses the tree). An entry is `MODE SP NAME NUL`
    and 20 bytes of id, so `SP NAME NUL` occurs wherever the entry is; if it occurs once, with
    a valid mode before it, that is the entry."""
    key = b" " + name + b"\0"
    at = raw.find(key)
    if at < 0:
        return None
    if raw.find(key, at + 1) >= 0:
        return AMBIGUOUS
    if at >= 5 and raw[at - 5:at] == b"40000":  # no six-digit mode ends in 40000
        mode = stat.S_IFDIR
    elif at >= 6 and raw[at - 6:at] in _SIX_DIGIT_MODES:
        mode = int(raw[at - 6:at], 8)
    else:
        return AMBIGUOUS
    start = at + len(key)
    sha = raw[start:start + 20]
    return (mode, binascii.hexlify(sha)) if len(sha) == 20 else AMBIGUOUS


def spliced(base: Tree, entries: dict, touched: set[bytes]) -> Tree | None:
    """`base` with the entries among `touched` replaced, removed or added, made by splicing its
    raw bytes: re-serializing a big tree in Python costs tens of times more per commit.
    None when unsure (an unusual mode, an entry not found once): the caller serializes."""
    old = compat.tree_entries(base)
    raw = base.as_raw_string()
    added = []
    for name in touched:
        if name not in old:
            if name in entries:
                added.append(name)
            continue
        before = _entry_bytes(name, *old[name])
        if before is None:
            return None
        at = _find_once(raw, before)
        if at is None:
            return None
        if name not in entries:  # removed
            raw = raw[:at] + raw[at + len(before):]
            continue
        after = _entry_bytes(name, *entries[name])
        if after is None:
            return None
        raw = raw[:at] + after + raw[at + len(before):]
    for name in sorted(added, key=lambda n: _sort_key(n, entries[n][0])):
        new = _entry_bytes(name, *entries[name])
        if new is None:
            return None
        key = _sort_key(name, entries[name][0])
        # It goes before the first entry (of those already in the bytes) that sorts after it:
        # one pass, no sort (a links folder of 1,000 entries gets a new one on every link).
        successor = successor_key = None
        for n in old:
            value = entries.get(n)
            if value is None:
                continue
            k = n + b"/" if value[0] & 0o170000 == 0o040000 else n
            if k > key and (successor_key is None or k < successor_key):
                successor, successor_key = n, k
        if successor is None:
            raw += new
            continue
        at = _find_once(raw, _entry_bytes(successor, *entries[successor]) or b"")
        if at is None:
            return None
        raw = raw[:at] + new + raw[at:]
    # Set the parsed and the raw form together: parsing the bytes back would cost what we saved.
    return compat.tree_from_entries(entries, raw)  # the caller's fresh map: no one else holds it


def names(raw: bytes) -> list[str]:
    """Entry names of a raw tree: each entry is `MODE SP NAME NUL` and a 20-byte id."""
    names, at, end = [], 0, len(raw)
    find = raw.find
    while at < end:
        name_at = find(b" ", at) + 1
        nul = find(b"\0", name_at)
        if name_at == 0 or nul < 0:
            raise ValueError("malformed tree object")
        names.append(raw[name_at:nul].decode())
        at = nul + 21
    return names


def _entry_bytes(name: bytes, mode: int, sha: bytes) -> bytes | None:
    """A tree entry as git stores it; None for modes canonry never writes."""
    text = _MODE_TEXT.get(mode)
    return None if text is None else text + b" " + name + b"\0" + binascii.unhexlify(sha)


def _find_once(raw: bytes, entry: bytes) -> int | None:
    """Where a whole entry (37+ bytes, its id included) starts, if it occurs exactly once at an
    entry boundary (the byte 21 back is the NUL ending the previous entry's name)."""
    at = raw.find(entry) if entry else -1
    if at < 0 or (at > 0 and raw[at - 21:at - 20] != b"\0") or raw.find(entry, at + 1) >= 0:
        return None
    return at


def _sort_key(name: bytes, mode: int) -> bytes:
    """git orders tree entries by name, a directory's as if it ended in '/'."""
    return name + b"/" if stat.S_ISDIR(mode) else name
