"""Tree diffs for the index: the files that differ between two commits' trees, read fast.

The index is brought up to date from the tree diff between the commit it reflects and the
branch head, and history keeps the paths each hand-made commit changed: both diff trees of up
to tens of thousands of entries, so trees are read raw and parsed by dulwich's compiled parser
(canonry.git.compat.parse_tree), and unchanged subtrees are skipped by id.
"""
from __future__ import annotations

import os
import stat
import zlib
from collections.abc import Iterator
from operator import ne
from typing import Any

from canonry.git.compat import parse_tree

__all__ = ["RawTrees", "changed_entries", "tree_diff"]

Entry = tuple[bytes, int, bytes]  # (name, mode, hex sha), as the parser gives them
ModeSha = tuple[int, bytes]


class RawTrees:
    """Tree entries [(name, mode, hex sha)] straight from the object store, parsed by dulwich's
    compiled parser (dulwich's Tree objects wrap every id and cost ~5x more on big trees), kept
    (up to `limit` bytes of raw trees) when `cache` is on."""

    def __init__(self, storage: Any, cache: bool = True, limit: int = 64 << 20):
        self.objects = storage.repo.object_store
        self.loose = getattr(self.objects, "path", None)
        self.cache: dict[bytes, list[Entry]] | None = {} if cache else None
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

    def entries(self, sha: bytes) -> list[Entry]:
        if self.cache is not None:
            hit = self.cache.get(sha)
            if hit is not None:
                return hit
        raw = self.raw(sha)
        entries = parse_tree(raw)
        if self.cache is not None:
            if self.size + len(raw) > self.limit:
                self.cache.clear()
                self.size = 0
            self.cache[sha] = entries
            self.size += len(raw)
        return entries


def changed_entries(la: list[Entry], lb: list[Entry]) -> list[tuple[bytes, ModeSha | None, ModeSha | None]]:
    """(name, (mode, sha)|None, (mode, sha)|None) for entries that differ between two sorted
    entry lists. The common head and tail are found by comparing the lists pairwise in C (from
    the front, then from the back), so a one-entry change in a 10,000-entry directory costs
    about as much as parsing it; only the entries in between are compared by name."""
    n = min(len(la), len(lb))
    flags = list(map(ne, la, lb))
    head = flags.index(True) if True in flags else n
    flags = list(map(ne, reversed(la), reversed(lb)))
    tail = min(flags.index(True) if True in flags else n, n - head)
    a = {e[0]: (e[1], e[2]) for e in la[head:len(la) - tail]}
    b = {e[0]: (e[1], e[2]) for e in lb[head:len(lb) - tail]}
    return [(name, a.get(name), b.get(name)) for name in sorted(a.keys() | b.keys()) if a.get(name) != b.get(name)]


def tree_diff(trees: RawTrees, old_tree: bytes | None, new_tree: bytes | None,
              prefix: str = "") -> Iterator[tuple[str, bytes | None, bytes | None]]:
    """(path, old_sha|None, new_sha|None) for every file that differs between two trees, in
    path order. Unchanged subtrees are skipped by id."""
    if old_tree == new_tree:
        return
    la = trees.entries(old_tree) if old_tree is not None else []
    lb = trees.entries(new_tree) if new_tree is not None else []
    changes: list[tuple[bytes, ModeSha | None, ModeSha | None]]
    if not la:
        changes = [(e[0], None, (e[1], e[2])) for e in lb]
    elif not lb:
        changes = [(e[0], (e[1], e[2]), None) for e in la]
    else:
        changes = changed_entries(la, lb)
    for name, oa, ob in changes:
        path = prefix + name.decode("utf-8", "replace")
        a_dir = oa is not None and stat.S_ISDIR(oa[0])
        b_dir = ob is not None and stat.S_ISDIR(ob[0])
        if a_dir or b_dir:
            yield from tree_diff(trees, oa[1] if oa is not None and a_dir else None,
                                 ob[1] if ob is not None and b_dir else None, path + "/")
        fa = oa if oa is not None and not a_dir else None
        fb = ob if ob is not None and not b_dir else None
        if fa != fb:
            yield path, fa[1] if fa else None, fb[1] if fb else None
