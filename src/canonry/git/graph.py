"""The commit graph: merge bases, ancestry and first-parent walks, one of each.

Every walk over a store's history goes through here, so "newest first along first parents"
means the same thing to history, the index, diffs, events, merges and remotes:

- `merge_base(storage, a, b)`: the best common ancestor of two commits (`git merge-base`).
- `can_fast_forward(storage, old, new)`: whether `new` descends from `old` (`git merge-base
  --is-ancestor old new`).
- `first_parents(storage, head, stop=...)`: a lazy iterator over commits newest first along
  first parents (`git rev-list --first-parent head ^stop`); the caller may stop early, and may
  pass its own commit loader (the index parses raw commits itself, faster than dulwich).
- `first_parent_chain(storage, base, head)`: the ids of the same walk from `base` (exclusive)
  to `head`, oldest first — the commits a branch adds, in the order to replay them.

`storage` is a GitStorage (anything with `.repo` and `.commit(id)`).
"""
from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["can_fast_forward", "first_parent_chain", "first_parents", "merge_base"]


def merge_base(storage: Any, a: bytes, b: bytes) -> bytes | None:
    """The best common ancestor of commits `a` and `b`, or None when they share no history.

    git's algorithm (paint_down_to_common): walk down from both sides newest first, painting
    each commit with the side(s) it descends from; a commit painted by both is a candidate and
    makes its ancestors stale; the walk ends when only stale commits are left; candidates that
    are ancestors of other candidates are dropped. Not dulwich's find_merge_base: with commits
    of equal timestamps (several in one second, as scripts and CI make them) it can answer a
    worse base, or none.

    Args:
      storage: the GitStorage the commits live in.
      a, b: commit ids.
    Returns:
      The merge base's id (`a` itself when a == b or a is an ancestor of b), or None.
    """
    if a == b or can_fast_forward(storage, a, b):
        return a
    if can_fast_forward(storage, b, a):
        return b
    meta = _Meta(storage)
    side_a, side_b, stale = 1, 2, 4
    flags = {a: side_a, b: side_b}
    queue = [(-meta.time(a), a), (-meta.time(b), b)]
    candidates: list[bytes] = []
    while any(not flags[c] & stale for _t, c in queue):  # the queue is as wide as the graph: short
        _t, commit = heapq.heappop(queue)
        paint = flags[commit] & (side_a | side_b | stale)
        if paint == side_a | side_b:
            candidates.append(commit)
            paint |= stale
        for parent in meta.parents(commit):
            if flags.get(parent, 0) & paint == paint:
                continue
            flags[parent] = flags.get(parent, 0) | paint
            heapq.heappush(queue, (-meta.time(parent), parent))
    best = [c for c in candidates if not flags[c] & stale]
    best = [c for c in best if not any(o != c and can_fast_forward(storage, c, o) for o in best)]
    return max(best, key=meta.time) if best else None


def can_fast_forward(storage: Any, old: bytes, new: bytes) -> bool:
    """Whether moving a branch from `old` to `new` is a fast-forward: `old` is `new` or one of
    its ancestors (any parent, not only first parents).

    A plain reachability search from `new`, not pruned by visiting order, so commits of equal
    timestamps cannot mislead it (dulwich's can_fast_forward can answer False then). Like
    dulwich's and git's, it does not look below commits older than `old`: a history whose
    clocks ran backwards by more than that can hide an ancestor."""
    if old == new:
        return True
    meta = _Meta(storage)
    floor = meta.time(old)
    seen = {new}
    todo = [new]
    while todo:
        for parent in meta.parents(todo.pop()):
            if parent == old:
                return True
            if parent not in seen:
                seen.add(parent)
                if meta.time(parent) >= floor:
                    todo.append(parent)
    return False


class _Meta:
    """Parents and commit time of commits, each commit read once."""

    def __init__(self, storage: Any):
        self._storage = storage
        self._known: dict[bytes, tuple[int, list[bytes]]] = {}

    def _get(self, commit_id: bytes) -> tuple[int, list[bytes]]:
        found = self._known.get(commit_id)
        if found is None:
            commit = self._storage.commit(commit_id)
            found = self._known[commit_id] = (commit.commit_time, list(commit.parents))
        return found

    def time(self, commit_id: bytes) -> int:
        return self._get(commit_id)[0]

    def parents(self, commit_id: bytes) -> list[bytes]:
        return self._get(commit_id)[1]


def first_parents(storage: Any, head: bytes | None, stop: bytes | None = None,
                  load: Callable[[Any, bytes], Any] | None = None) -> Iterator[Any]:
    """Commits newest first from `head` along first parents, lazily: each is read only when the
    caller asks for the next one, so breaking out of the loop stops the walk.

    Args:
      storage: the GitStorage to read from.
      head: the commit to start from (yielded first); None yields nothing.
      stop: a commit at which to stop, exclusive (the walk ends at the root otherwise).
      load: `load(storage, id)` returns the commit object yielded (anything with `.id` and
        `.parents`); by default `storage.commit`, a parsed dulwich Commit.
    Yields:
      Commit objects, newest first.
    """
    current = head
    while current is not None and current != stop:
        commit = load(storage, current) if load is not None else storage.commit(current)
        yield commit
        current = commit.parents[0] if commit.parents else None


def first_parent_chain(storage: Any, base: bytes | None, head: bytes) -> list[bytes]:
    """Ids of the commits from `base` (exclusive) to `head`, oldest first, along first parents
    (`git rev-list --reverse --first-parent base..head` when base is on head's first-parent line;
    from the root when `base` is None)."""
    return [c.id for c in first_parents(storage, head, stop=base)][::-1]
