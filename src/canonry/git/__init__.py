"""The git engine: objects, trees, commits and refs of the store repository, written without a work tree.

`storage` is the engine the layers above use (GitStorage); `reader` reads objects and refs straight from
pack, index and ref files; `packs` writes packs (a writer's growing pack, tiered merges); `housekeeping`
retires and merges packs; `treebytes` edits trees in their raw bytes; `graph` walks history (merge bases,
first parents); `locks` is the one lock class; `compat` holds every use of a dulwich private API.
"""
