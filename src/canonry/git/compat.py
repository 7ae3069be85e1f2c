"""Every use of a dulwich private API (or of dulwich behaviour it does not document), in one place.

Canonry is pinned to dulwich minor versions it has been tested with (pyproject.toml); each item
below says what it relies on and why it is worth it. tests/test_compat.py checks every one of
these assumptions directly, so a dulwich upgrade that changes one fails loudly, naming it,
instead of slowing canonry down or corrupting a tree.

- `fast_apply_delta`: dulwich's compiled delta applier, imported from `dulwich._pack`.
- `parse_tree`: dulwich's compiled tree parser, imported from `dulwich._objects`.
- `tree_entries`, `tree_from_entries`: a Tree's entry map and serialized form
  (`Tree._entries`, `ShaFile._chunked_text`, `ShaFile._needs_serialization`).
- `serialize_pack_rescans`: a lock around `DiskObjectStore._update_pack_cache` and
  `_evict_pack`.
- `set_object_fsync`: `DiskObjectStore.fsync_object_files`, changed after the store is made.
- `hold_temp_packs`: `DiskObjectStore.add_pack` returning the open temporary pack file first.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:  # imported where trees are built: reading needs no dulwich.objects
    from dulwich.objects import Tree

__all__ = [
    "fast_apply_delta",
    "hold_temp_packs",
    "parse_tree",
    "serialize_pack_rescans",
    "set_object_fsync",
    "tree_entries",
    "tree_from_entries",
]

TreeEntry = tuple[bytes, int, bytes]  # (name, mode, hex id)


# ---- delta applier ------------------------------------------------------------------------------
def _load_fast_apply_delta() -> Callable[[bytes, bytes], bytes] | None:
    try:
        from dulwich._pack import apply_delta  # type: ignore[import-not-found]
    except ImportError:  # a dulwich built without its extensions
        return None

    def fast_apply_delta(base: bytes, delta: bytes) -> bytes:
        return b"".join(apply_delta(base, delta))

    return fast_apply_delta


fast_apply_delta: Callable[[bytes, bytes], bytes] | None = _load_fast_apply_delta()
"""`fast_apply_delta(base, delta)`: the object a git delta makes of `base`, by dulwich's
compiled applier; None when dulwich was built without it (reader.apply_delta then applies
deltas in Python).

Relies on: the private module `dulwich._pack` having `apply_delta(base: bytes, delta: bytes)`
that returns a list of byte chunks (dulwich.pack.apply_delta is the same function when the
extension is built, but importing dulwich.pack costs many times more than `dulwich._pack`,
and a fresh `canonry show` reads objects through git/reader.py to avoid exactly that import;
figures in docs/performance.md)."""


# ---- tree parser --------------------------------------------------------------------------------
def _load_parse_tree() -> Callable[..., list[TreeEntry]]:
    try:
        from dulwich._objects import parse_tree as parse  # type: ignore[import-not-found]
    except ImportError:  # a dulwich built without its extensions: the same function, in Python
        from dulwich.objects import parse_tree as parse
    return parse


_parse_tree: Callable[..., list[TreeEntry]] | None = None  # loaded on first use


def parse_tree(raw: bytes) -> list[TreeEntry]:
    """The entries of a raw tree object, in the order stored: [(name, mode, hex id)].

    Relies on: the private module `dulwich._objects` having `parse_tree(text, sha_len)` that
    returns (name, mode, hex id) tuples, `sha_len` being 20 for SHA-1 repositories (the
    argument was added with SHA-256 support; older versions take `text` alone). Why: parsing
    into plain tuples in compiled code is several times cheaper than into dulwich's Tree objects
    on trees of 10,000 entries, and `dulwich._objects` imports in a fraction of the time
    dulwich.objects takes (figures in docs/performance.md).
    """
    global _parse_tree
    if _parse_tree is None:
        _parse_tree = _load_parse_tree()
    try:
        return _parse_tree(raw, 20)
    except TypeError:  # a dulwich from before SHA-256 support: parse_tree(text[, strict])
        return _parse_tree(raw)


# ---- Tree internals -----------------------------------------------------------------------------
def tree_entries(tree: Tree) -> dict[bytes, tuple[int, bytes]]:
    """A Tree's entries as {name: (mode, hex id)} — the Tree's own map, not a copy: never
    change it (trees read from the store are cached and shared).

    Relies on: `Tree._entries` being that dict, kept current by `Tree.add` and `del tree[name]`.
    Why: a copy of the whole map costs one dict copy, where rebuilding a 1,000-entry tree entry
    by entry through the public API costs milliseconds per commit; comparing the few names a commit
    touched needs no iteration over items at all."""
    return cast("dict[bytes, tuple[int, bytes]]", tree._entries)


def tree_from_entries(entries: dict[bytes, tuple[int, bytes]], raw: bytes | None = None) -> Tree:
    """A new Tree holding `entries` ({name: (mode, hex id)}; taken over, not copied).

    Args:
      entries: the map the Tree will own; the caller must not change it afterwards.
      raw: the tree's serialized bytes when the caller already has them (treebytes.spliced):
        they are taken as the Tree's raw form, so its id needs no serialization. Without it,
        the Tree serializes its entries when first asked for its bytes or id.
    Relies on: `Tree._entries` (the entry map), `ShaFile._chunked_text` (the raw form as a list
    of chunks) and `ShaFile._needs_serialization` (whether the raw form must be rebuilt from
    the entries). Why: splicing a big tree's bytes costs a fraction of re-serializing it in
    Python (see treebytes.py; figures in docs/performance.md).
    """
    from dulwich.objects import Tree

    tree = Tree()
    tree._entries = cast("Any", entries)  # ids as dulwich's ObjectID (bytes)
    if raw is None:
        tree._needs_serialization = True
    else:
        tree._chunked_text = [raw]
        tree._needs_serialization = False
    return tree


# ---- the object store's pack cache --------------------------------------------------------------
RESCAN_LOCK_ATTRIBUTE = "_canonry_rescan_lock"  # canonry's own mark on a dulwich object store
PACK_CACHE_METHODS = ("_update_pack_cache", "_evict_pack")


def serialize_pack_rescans(object_store: Any) -> None:
    """Let one thread at a time rescan the pack folder of a shared dulwich object store.

    Packs vanish whenever small ones are merged (by this process or another); two threads that
    notice it together would both drop the same pack from dulwich's pack cache, and one of
    them fails with KeyError. A lock around dulwich's rescan and eviction (instance attributes:
    nothing global is patched) keeps a Store shared between threads working. Calling it again
    on the same store does nothing.

    Relies on: `DiskObjectStore._update_pack_cache()` (rescans the pack folder) and
    `DiskObjectStore._evict_pack(name)` (drops one pack from the cache) being the two methods
    that change the pack cache, looked up on the instance (so an instance attribute wraps
    them); and on no `_canonry_rescan_lock` attribute of dulwich's own.
    """
    if getattr(object_store, RESCAN_LOCK_ATTRIBUTE, None) is not None:
        return
    lock = threading.RLock()
    for name in PACK_CACHE_METHODS:
        original = getattr(object_store, name, None)
        if original is None:
            continue

        def serialized(*args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            with lock:
                return _original(*args, **kwargs)

        setattr(object_store, name, serialized)
    setattr(object_store, RESCAN_LOCK_ATTRIBUTE, lock)


# ---- fsync of objects ---------------------------------------------------------------------------
def set_object_fsync(object_store: Any, fsync: bool) -> None:
    """Make dulwich fsync the objects and packs it writes, or not, as canonry decided from
    git's `core.fsync` (dulwich reads only the older `core.fsyncObjectFiles`).

    Relies on: `DiskObjectStore.fsync_object_files`, set from the constructor's argument, being
    read each time an object or pack is written (not only when the store is made)."""
    object_store.fsync_object_files = fsync


# ---- temporary packs ------------------------------------------------------------------------------
def hold_temp_packs(object_store: Any) -> None:
    """Flock each temporary pack dulwich writes (`tmpXXXX.pack`, gc and fetch) while it is open,
    as canonry does its own (locks.hold): then one nobody flocks was left by a killed process and
    packs.remove_leftover_temp_files may take it. Calling it again does nothing.

    Relies on: `DiskObjectStore.add_pack()` returning (open file, commit, abort), the file kept
    open until the pack is renamed into place or removed, and being looked up on the instance."""
    if getattr(object_store, "_canonry_holds_temp_packs", False):
        return
    original = getattr(object_store, "add_pack", None)
    if original is None:
        return
    from canonry.git import locks

    def add_pack(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        try:
            locks.hold(result[0].fileno())
        except (AttributeError, OSError, TypeError, IndexError):
            pass  # another shape: nothing held, the temp file is judged by its age alone
        return result

    object_store.add_pack = add_pack
    object_store._canonry_holds_temp_packs = True
