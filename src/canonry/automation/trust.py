"""Where trust comes from: the store branch's head, never the branch being written or validated.

Trust settings (`trust_local_plugins`, `trust_local_automations`, `required_plugins`) and the
code of the store's own `plugins/` folder are read at the head of the store branch (the branch
the store is configured with: `canonry.branch`, CANONRY_BRANCH, or the default), or of its
remote-tracking branch when a CI checkout has no local one. A proposal branch (`--branch evil`)
or the head of a range under review can change its own canonry.yaml and plugins/ as it likes:
none of it runs, and none of it decides what runs, until it is merged.

Also here, for `canonry --help`: a cheap answer to "may this store have trusted plugins?" that
reads two tree entries and one blob, without YAML, pluggy or importing any plugin.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from canonry.git import reader

if TYPE_CHECKING:
    from canonry.git.storage import GitStorage
    from canonry.view import ParseCache, View

__all__ = ["store_plugins_may_exist", "trusted_commit", "trusted_config", "trusted_view"]

# `trust_local_plugins: false` (or no, off) on a line of its own: this store does not trust.
_NOT_TRUSTED = re.compile(rb"^trust_local_plugins[ \t]*:[ \t]*(?:false|no|off)[ \t]*(?:#.*)?$",
                          re.IGNORECASE | re.MULTILINE)


def trusted_commit(storage: GitStorage) -> bytes | None:
    """The head of the store branch (or of origin's, in a checkout without a local one)."""
    branch = storage.store_branch.encode()
    for ref in (b"refs/heads/" + branch, b"refs/remotes/origin/" + branch):
        found = reader.read_ref(storage.common_dir, ref)
        if found is not None:
            return found
    return None


def trusted_view(storage: GitStorage, cache: ParseCache) -> View | None:
    """The store at the trusted commit, or None when the store branch has no commit (yet)."""
    from canonry.view import View

    commit = trusted_commit(storage)
    return None if commit is None else View(storage, commit, cache)


def trusted_config(view: View | None) -> dict:
    """canonry.yaml at a trusted view; {} when there is none (a store being made)."""
    from canonry.model import STORE_FILE

    if view is None or not view.exists(STORE_FILE):
        return {}
    return view.store_config()


def store_plugins_may_exist(start: str | None) -> bool:
    """Whether the store at `start` (or the current directory) may load plugins from its own
    plugins/ folder: the trusted tree has a plugins/*.py and its canonry.yaml does not plainly
    say `trust_local_plugins: false`. A yes may be wrong (the plugin manager then decides);
    a no is right: no such plugin can load. Any trouble reading says no (the command itself
    would fail the same way)."""
    import os

    from canonry.errors import CanonryError
    from canonry.git.storage import STORE_FILE, GitStorage, find_repo_path

    try:
        start = start or os.environ.get("CANONRY_STORE") or os.getcwd()
        storage = GitStorage.open(find_repo_path(start), start=start)
        try:
            root = storage.root_tree(trusted_commit(storage))
            if root is None:
                return False
            if not any(n.endswith(".py") and not n.startswith("_") for n in storage.names(root, "plugins")):
                return False
            entry = storage.lookup(root, STORE_FILE)
            if entry is None:
                return False
            text = storage.blob(entry[1])
        finally:
            storage.close()
    except (CanonryError, OSError, KeyError, ValueError):
        return False
    return b"trust_local_plugins" in text and not _NOT_TRUSTED.search(text)
