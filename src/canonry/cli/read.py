"""`canonry show`, `ls`, `history` and `get`: reading the store."""
from __future__ import annotations

import os

import click

from canonry.cli.common import done, read_options, say

__all__ = ["get", "history", "ls", "print_registries", "show", "show_target", "types_text"]


@click.command()
@click.argument("target")
@read_options
def show(c, target, as_json):
    """Show everything known about a registry, collection, linked version or artifact version."""
    show_target(c.store(), target, as_json)


def show_target(store, target, as_json):  # also `registry show`
    data = store.show(target)
    if as_json:
        from canonry.output import emit_json

        return emit_json(data)
    from canonry.cli import render as views

    say(views.render_show(data))


@click.command()
@click.argument("target", required=False, metavar="[REGISTRY[/COLLECTION]]")
@read_options
def ls(c, target, as_json):
    """List registries, the collections of a registry, or the versions of a collection."""
    store = c.store()
    if not target:
        return print_registries(store, as_json)
    from canonry.names import parse

    addr = parse(target)
    from canonry.cli import render as views
    from canonry.output import emit_json

    if addr.kind == "name":
        from canonry.names import check_name

        colls = store.collections(check_name(addr.registry, "registry name"))
        if as_json:
            return emit_json([x.to_dict() for x in colls])
        return say(views.collections_table(colls))
    if addr.kind == "collection":
        versions = store.versions(target)
        if as_json:
            return emit_json([v.to_dict() for v in versions])
        return say(views.versions_table(versions))
    raise click.BadParameter(f"{target!r}: expected REGISTRY or REGISTRY/COLLECTION", param_hint="TARGET")


@click.command()
@click.argument("target")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many entries.")
@click.option("--actor", metavar="EMAIL", help="Only the changes made by EMAIL.")
@read_options
def history(c, target, limit, actor, as_json):
    """Every change to TARGET, newest first: commit, time, actor, operation, before → after."""
    entries = c.store().history(target, limit=limit, actor=actor)
    if as_json:
        from canonry.output import emit_json

        return emit_json([e.to_dict() for e in entries])
    from canonry.cli import render as views

    say(views.history_table(entries) if entries else f"no changes recorded for {target}")


@click.command()
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
@click.option("--to", "dest", type=click.Path(file_okay=False),
              help="Directory to write to (default: the download cache; its folder is printed). "
                   "With several targets, each goes into DIR/ARTIFACT-vK/.")
@click.option("--force", is_flag=True, help="Overwrite files that exist in DIR.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@read_options
def get(c, targets, dest, force, quiet, as_json):
    """Restore the files of a version into DIR, verifying every sha256. A file already in DIR is
    refused unless --force; a symbolic link inside DIR is never followed. Without --to, the
    files go to the download cache once (~/.cache/canonry, or $CANONRY_CACHE_DIR) and its
    folder is printed.

    Several targets: with --to, each version goes into its own folder DIR/ARTIFACT-vK/ (a
    version named twice, once); without, one cache folder is printed per target, in order.
    Every target is resolved (and access checked) before anything is downloaded. --json: one
    object for one target, a list for several."""
    from canonry.cli.progress import byte_progress

    store = c.store()
    versions = [store.resolve_version(target) for target in targets]
    several = len(targets) > 1
    results, lines = [], []
    done_to: dict[str, str] = {}
    for target, version in zip(targets, versions):
        sub = None if dest is None else (
            os.path.join(dest, f"{version.artifact}-{version.version}") if several else dest)
        key = f"{version.address}\0{sub}"
        if key in done_to:
            where = done_to[key]
        else:
            with byte_progress(f"downloading {version.address}" if several else "downloading",
                               version.size, quiet or as_json) as progress:
                if sub is None:
                    where = store.use(target, progress=progress)
                else:
                    store.download(target, sub, force=force, progress=progress)
                    where = os.path.abspath(sub)
            done_to[key] = where
        n = len(version.files)
        results.append({"artifact": version.address, "digest": version.digest, "to": where,
                        "files": [f["path"] for f in version.files]})
        lines.append(where if dest is None else
                     f"restored {version.address} ({n} file{'s' * (n != 1)}, digests verified) into {sub}")
    if as_json and several:
        from canonry.output import emit_json

        return emit_json(results)
    done(as_json, results[0], "\n".join(lines))


# ---- shared with `registry list` and `registry create` -------------------------------------------
def types_text(types) -> str:
    return types if types == "all" else ", ".join(types)


def print_registries(store, as_json):
    regs = store.registries()
    if as_json:
        from canonry.output import emit_json

        return emit_json([r.to_dict() for r in regs])
    from canonry.output import table

    counts: dict[str, int] = {}
    for coll in store.collections():
        counts[coll.registry] = counts.get(coll.registry, 0) + 1
    say(table([[r.name, r.visibility, types_text(r.types), counts.get(r.name, 0), r.description]
               for r in regs], ["REGISTRY", "VISIBILITY", "TYPES", "COLLECTIONS", "DESCRIPTION"]))
