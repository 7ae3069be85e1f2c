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

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from dulwich.objects import ObjectID

__all__ = ["can_fast_forward", "first_parent_chain", "first_parents", "merge_base"]


def merge_base(storage: Any, a: bytes, b: bytes) -> bytes | None:
    """The best common ancestor of commits `a` and `b`, or None when they share no history.

    Args:
      storage: the GitStorage the commits live in.
      a, b: commit ids.
    Returns:
      The merge base's id (`a` itself when a == b or a is an ancestor of b), or None.
    """
    from dulwich.graph import find_merge_base  # lazily: commands that never walk skip the import

    if a == b:
        return a
    bases = find_merge_base(storage.repo, [cast("ObjectID", a), cast("ObjectID", b)])
    return bases[0] if bases else None


def can_fast_forward(storage: Any, old: bytes, new: bytes) -> bool:
    """Whether moving a branch from `old` to `new` is a fast-forward: `old` is `new` or one of
    its ancestors (any parent, not only first parents)."""
    from dulwich.graph import can_fast_forward as is_fast_forward

    return is_fast_forward(storage.repo, cast("ObjectID", old), cast("ObjectID", new))


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
