"""Canonry: an artifact registry kept as schema-validated YAML in a git repository.

    import canonry
    store = canonry.open("path/to/store")
    v = store.log_artifact("model.pt", name="gemma-finetuned", type="model")
    store.link(v.address, "model/first-collection", aliases=["production"])

The public API is what `__all__` names; everything else is reached through a Store. Names are
imported on first use, so `import canonry` costs a command almost nothing.
"""
__version__ = "0.1.0"
__all__ = ["CanonryError", "Store", "Transaction", "__version__", "hookimpl", "init", "open", "use"]

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


def use(target: str, path: "str | None" = None, record: "bool | None" = None,
        purpose: "str | None" = None) -> str:
    """A local folder holding the files of TARGET's version, downloaded once and verified.

        model_dir = canonry.use("model/mnist:production", record=True, purpose="nightly eval")

    Args:
        target: REGISTRY/COLLECTION:ALIAS, REGISTRY/COLLECTION:vN or ARTIFACT:vK.
        path: a folder inside the store (default: the current directory, or CANONRY_STORE).
        record: True records the use in the store's usage log (who, when, host, the git commit
            of the repository the current directory is in, `purpose`); None (default) records
            it when a registry the version is linked in has `record_usage` on; False never. A
            use that cannot be recorded warns one line on stderr and still returns the folder.
        purpose: why it is used, kept with the record.

    Returns:
        The folder in the download cache ($CANONRY_CACHE_DIR, else ~/.cache/canonry) that holds
        the version's files; later calls for the same content return it without downloading.
    """
    from canonry.store import open_store

    with open_store(path) as store:
        return store.use(target, record=record, purpose=purpose)


def init(path: str, branch: "str | None" = None, bare: bool = False,
         storage: "str | None" = None) -> "Store":
    """Create a store at `path` (or adopt an existing git repository).

    Args:
        path: the folder to make a store of (created if missing).
        branch: the store branch (default: main).
        bare: make a bare repository (no work tree).
        storage: where artifact bytes live for every clone (a folder, s3://, gs://, az://;
            default: each clone's <git dir>/canonry/blobs).

    Returns:
        The new Store.
    """
    from canonry.store import init_store

    return init_store(path, branch=branch, bare=bare, storage=storage)[0]


if TYPE_CHECKING:  # the names __getattr__ serves, for type checkers
    from canonry.store import Store, Transaction
del TYPE_CHECKING
