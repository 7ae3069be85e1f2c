"""Canonry: an artifact registry kept as schema-validated YAML in a git repository.

    import canonry
    store = canonry.open("path/to/store")
    v = store.log_artifact("model.pt", name="gemma-finetuned", type="model")
    store.link(v.address, "model/first-collection", aliases=["production"])

The public API is what `__all__` names; everything else is reached through a Store. Names are
imported on first use, so `import canonry` costs a command almost nothing.
"""
__version__ = "0.1.0"
__all__ = ["CanonryError", "Store", "Transaction", "__version__", "hookimpl", "init", "open"]

from typing import TYPE_CHECKING

from canonry.errors import CanonryError


def __getattr__(name: str):
    # `from canonry import hookimpl` without importing pluggy for every command
    if name == "hookimpl":
        from canonry.automation.hookspecs import hookimpl

        return hookimpl
    if name in ("Store", "Transaction"):
        from canonry import store

        return getattr(store, name)
    raise AttributeError(f"module 'canonry' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


def open(path: "str | None" = None, branch: "str | None" = None,
         plugins_dir: "str | None" = None, load_plugins: bool = True) -> "Store":
    """Open an existing store (found from `path` upwards, like git finds a repository).

    Args:
        path: a folder inside the store (default: the current directory).
        branch: the branch to read and write (default: the store branch).
        plugins_dir: also load plugins (*.py) from this folder.
        load_plugins: False to run no plugin at all (then a store whose canonry.yaml lists
            `required_plugins` refuses every write).

    Returns:
        The Store.
    """
    from canonry.store import open_store

    return open_store(path, branch, plugins_dir=plugins_dir, load_plugins=load_plugins)


def init(path: str, branch: "str | None" = None, bare: bool = False) -> "Store":
    """Create a store at `path` (or adopt an existing git repository).

    Args:
        path: the folder to make a store of (created if missing).
        branch: the store branch (default: main).
        bare: make a bare repository (no work tree).

    Returns:
        The new Store.
    """
    from canonry.store import init_store

    return init_store(path, branch=branch, bare=bare)[0]


if TYPE_CHECKING:  # the names __getattr__ serves, for type checkers
    from canonry.store import Store, Transaction
del TYPE_CHECKING
