"""Canonry: an artifact registry kept as schema-validated YAML in a git repository.

    import canonry
    store = canonry.open("path/to/store")
    v = store.log_artifact("model.pt", name="gemma-finetuned", type="model")
    store.link(v.address, "model/first-collection", aliases=["production"])
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["open", "init", "hookimpl", "CanonryError", "__version__"]

from canonry.errors import CanonryError


def __getattr__(name):  # `from canonry import hookimpl` without importing pluggy for every command
    if name == "hookimpl":
        from canonry.automation.hookspecs import hookimpl

        return hookimpl
    raise AttributeError(name)


def open(path: str | None = None, branch: str | None = None,  # noqa: A001 - mirrors the CLI verb
         plugins_dir: str | None = None, load_plugins: bool = True):
    """Open an existing store (found from `path` upwards, like git finds a repository)."""
    from canonry.store import open_store

    return open_store(path, branch, plugins_dir=plugins_dir, load_plugins=load_plugins)


def init(path: str, branch: str | None = None, bare: bool = False):
    """Create a store at `path` (or adopt an existing git repository). Returns the Store."""
    from canonry.store import init_store

    return init_store(path, branch=branch, bare=bare)[0]
