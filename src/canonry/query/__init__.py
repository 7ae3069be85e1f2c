"""Questions across the whole store, answered from a derived SQLite index.

- index: opening the index, keeping it at the branch head, running queries in it (`for_store`).
- schema: its tables; items: the item tables, from the store's records; commits: the history
  tables, from the commits; trees: the tree diffs both are updated from; values: how numbers and
  regular expressions compare.
- mainline: the one walk over a branch's history (which commits, in what order, read how).
- history: history and audit; search: filters over registries, collections and versions;
  lineage: what a version was made from and what was made from it; compare: a collection's
  versions side by side.
"""
__all__: list[str] = []
