"""The record cache (<git dir>/canonry/records-v1.sqlite): derived data kept by git object id,
so it can only ever be missing, never wrong."""
from __future__ import annotations

import canonry
from canonry import model as m


def _links_tree(store, collection: str) -> bytes:
    storage = store.storage
    return storage.lookup(storage.root_tree(storage.head()), m.links_dir("model", collection))[1]


def _cached_index(path, tree_id: bytes):
    fresh = canonry.open(str(path))  # another process's view: only the SQLite file is shared
    return fresh.cache.get(tree_id, "links-index")


def test_a_link_leaves_the_artifact_to_link_map_of_the_new_tree_for_other_processes(
        store, store_path, make_file):
    for k in range(3):
        store.log_artifact(str(make_file(f"weights {k}", f"w{k}.bin")), name="gem", type="model")
    store.link("gem:v0", "model/c")
    store.link("gem:v1", "model/c", aliases=["production"])
    store.close()  # a writer flushes the cache every second or 256 entries, and when it closes
    assert _cached_index(store_path, _links_tree(store, "c")) == {"gem:v0": "v0", "gem:v1": "v1"}
    # and the map is right: linking v1 again is recognised as already linked
    again = canonry.open(str(store_path)).link("gem:v1", "model/c")
    assert again.created is False and again.version == "v1"


def test_a_transaction_that_links_then_unlinks_leaves_no_stale_map(store, store_path, make_file):
    for k in range(2):
        store.log_artifact(str(make_file(f"weights {k}", f"w{k}.bin")), name="gem", type="model")
    store.link("gem:v0", "model/c")
    with store.transaction(message="link and take back") as tx:
        tx.link("gem:v1", "model/c")
        tx.unlink("model/c:v1")
    cached = _cached_index(store_path, _links_tree(store, "c"))
    assert cached in (None, {"gem:v0": "v0"})
    fresh = canonry.open(str(store_path))
    relinked = fresh.link("gem:v1", "model/c")
    assert relinked.created is True and relinked.version == "v2"


def test_a_corrupt_cache_file_is_only_a_slower_read(store, store_path, make_file):
    store.log_artifact(str(make_file("weights", "w.bin")), name="gem", type="model")
    store.link("gem:v0", "model/c", aliases=["production"])
    cache_file = canonry.open(str(store_path)).cache.disk.path
    with open(cache_file, "wb") as f:
        f.write(b"this is not a SQLite database" * 100)
    fresh = canonry.open(str(store_path))
    assert fresh.resolve("model/c:production").artifact == "gem:v0"
    assert fresh.link("gem:v0", "model/c").created is False


def test_a_writer_flushes_the_cache_after_a_second_or_many_entries(store, store_path, make_file, monkeypatch):
    """Not after every commit (a flush is a SQLite transaction): what is pending reaches the
    file once enough rows wait, or once they have waited FLUSH_S, and at close."""
    from canonry.recordcache import RecordCache

    disk = store.cache.disk
    store.log_artifact(str(make_file("weights", "w.bin")), name="gem", type="model")
    monkeypatch.setattr(RecordCache, "FLUSH_S", 3600.0)
    store.link("gem:v0", "model/b")
    assert disk._pending  # kept for a later flush
    monkeypatch.setattr(RecordCache, "FLUSH_S", 0.0)
    store.link("gem:v0", "model/c")
    assert not disk._pending
    monkeypatch.setattr(RecordCache, "FLUSH_S", 3600.0)
    monkeypatch.setattr(RecordCache, "FLUSH_ROWS", 1)
    store.link("gem:v0", "model/d")
    assert not disk._pending
    monkeypatch.setattr(RecordCache, "FLUSH_ROWS", 10_000)
    store.link("gem:v0", "model/e")
    assert disk._pending
    store.close()
    assert not disk._pending
    assert _cached_index(store_path, _links_tree(canonry.open(str(store_path)), "e")) == {"gem:v0": "v0"}
