"""`canonry init`, `quickstart` and `gc`: making a store and keeping it packed."""
from __future__ import annotations

import click

from canonry.cli.common import json_option, pass_ctx, pick_store_branch, say, store_branch_options

__all__ = ["gc", "init", "quickstart"]


@click.command()
@click.argument("path", required=False, type=click.Path(file_okay=False))
@click.option("--bare", is_flag=True, help="Create a bare repository (when PATH is not one yet).")
@store_branch_options("Store branch (default: main; with --prefix: the checked-out one).")
@click.option("--prefix", metavar="DIR/", default="",
              help="Keep the store under this folder of an existing code repository.")
@click.option("--storage", "storage_url", metavar="URL",
              help="Where artifact bytes live, for every clone: a folder, s3://, gs://, az:// "
                   "(default: each clone's <git dir>/canonry/blobs).")
@json_option
@pass_ctx
def init(c, path, bare, store_branch, old_store_branch, prefix, storage_url, as_json):
    """Make PATH (default: current directory) a canonry store."""
    from canonry.store import init_store

    branch = pick_store_branch(store_branch, old_store_branch)
    store, created = init_store(path or c.path or ".", branch=branch, bare=bare, prefix=prefix,
                                storage=storage_url)
    data: dict = {"path": store.path, "branch": store.branch, "created": created,
                  "registries": [r.name for r in store.registries()],
                  "storage": store.storage_location.url}
    if as_json:
        from canonry.output import emit_json

        return emit_json(data)
    if created:
        where = f"{store.path}/{store.storage.prefix}" if store.storage.prefix else store.path
        say(f"initialized canonry store in {where} (branch {store.branch}; "
            f"registries: {', '.join(data['registries'])}; storage: {data['storage']})")
    else:
        say(f"{store.path} is already a canonry store (branch {store.branch}); nothing changed")


@click.command()
@click.option("--blobs", is_flag=True,
              help="Instead: delete the blobs in storage that no version on any branch needs.")
@click.option("--dry-run", is_flag=True, help="With --blobs: list them, delete nothing.")
@json_option
@pass_ctx
def gc(c, blobs, dry_run, as_json):
    """Repack every git object into one pack (small packs are also merged automatically)."""
    if dry_run and not blobs:
        raise click.UsageError("--dry-run goes with --blobs")
    if blobs:
        return _gc_blobs(c.store(), dry_run, as_json)
    result = c.store().gc()
    if as_json:
        from canonry.output import emit_json

        return emit_json(result)
    say(f"packed {result['packed_objects']} loose objects; {result['packs']} pack(s) now")


def _gc_blobs(store, dry_run: bool, as_json: bool) -> None:
    from canonry.output import human_size

    result = store.collect_blobs(dry_run=dry_run)
    if as_json:
        from canonry.output import emit_json

        return emit_json(result)
    for blob in result["blobs"]:
        say(f"{'would delete' if dry_run else 'deleted'} {blob['sha256']} ({human_size(blob['size'])})")
    verb = "would free" if dry_run else "freed"
    say(f"{len(result['blobs'])} blob(s) no version needs; {verb} {human_size(result['bytes'])} "
        f"in {store.storage_location.url}")


@click.command()
@click.argument("directory", type=click.Path(file_okay=False))
@pass_ctx
def quickstart(c, directory):
    """Create a store in DIRECTORY and walk through log → link → alias → show → history."""
    from canonry.cli.quickstart import run

    run(directory, say)
