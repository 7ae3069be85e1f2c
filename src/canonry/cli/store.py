"""`canonry init`, `quickstart` and `gc`: making a store and keeping it packed."""
from __future__ import annotations

import click

from canonry.cli.common import json_option, pass_ctx, say

__all__ = ["gc", "init", "quickstart"]


@click.command()
@click.argument("path", required=False, type=click.Path(file_okay=False))
@click.option("--bare", is_flag=True, help="Create a bare repository (when PATH is not one yet).")
@click.option("--branch", metavar="B", help="Store branch (default: main; with --prefix: the checked-out one).")
@click.option("--prefix", metavar="DIR/", default="",
              help="Keep the store under this folder of an existing code repository.")
@json_option
@pass_ctx
def init(c, path, bare, branch, prefix, as_json):
    """Make PATH (default: current directory) a canonry store."""
    from canonry.store import init_store

    store, created = init_store(path or c.path or ".", branch=branch, bare=bare, prefix=prefix)
    data: dict = {"path": store.path, "branch": store.branch, "created": created,
            "registries": [r.name for r in store.registries()]}
    if as_json:
        from canonry.output import emit_json

        return emit_json(data)
    if created:
        where = f"{store.path}/{store.storage.prefix}" if store.storage.prefix else store.path
        say(f"initialized canonry store in {where} (branch {store.branch}; "
            f"registries: {', '.join(data['registries'])})")
    else:
        say(f"{store.path} is already a canonry store (branch {store.branch}); nothing changed")


@click.command()
@json_option
@pass_ctx
def gc(c, as_json):
    """Repack every git object into one pack (small packs are also merged automatically)."""
    result = c.store().gc()
    if as_json:
        from canonry.output import emit_json

        return emit_json(result)
    say(f"packed {result['packed_objects']} loose objects; {result['packs']} pack(s) now")


@click.command()
@click.argument("directory", type=click.Path(file_okay=False))
@pass_ctx
def quickstart(c, directory):
    """Create a store in DIRECTORY and walk through log → link → alias → show → history."""
    from canonry.cli.quickstart import run

    run(directory, say)
