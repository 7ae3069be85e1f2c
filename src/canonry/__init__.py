"""Canonry: an artifact registry kept as schema-validated YAML in a git repository.

    import canonry
    store = canonry.open("path/to/store")
    v = store.log_artifact("model.pt", name="gemma-finetuned", type="model")
    store.link(v.address, "model/first-collection", aliases=["production"])
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["open", "init", "CanonryError", "__version__"]

from .errors import CanonryError


def open(path: str | None = None, branch: str | None = None):  # noqa: A001 - mirrors the CLI verb
    """Open an existing store (found from `path` upwards, like git finds a repository)."""
    from .store import open_store

    return open_store(path, branch)


def init(path: str, branch: str | None = None, bare: bool = False):
    """Create a store at `path` (or adopt an existing git repository). Returns the Store."""
    from .store import init_store

    return init_store(path, branch=branch, bare=bare)[0]
