"""`canonry log`, `link`, `unlink`, `alias …` and `tag …`: recording versions and naming them."""
from __future__ import annotations

import click

from canonry.cli.common import done, store_options

__all__ = ["alias", "alias_rm", "alias_set", "link", "log_cmd", "tag", "tag_add", "tag_rm", "unlink"]


# A plain decimal number, ASCII only: float() also takes 1_000, full-width digits, inf and nan.
_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"


def _key_values(values, what: str, numeric: bool = False) -> dict:
    import json
    import math
    import re

    out = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint=f"--{what}")
        if numeric:
            value = float(raw) if re.fullmatch(_NUMBER, raw) else math.nan
            if not math.isfinite(value):
                raise click.BadParameter(f"{key}={raw!r}: not a number", param_hint=f"--{what}") from None
            out[key] = int(raw) if re.fullmatch(r"[+-]?[0-9]+", raw) else value
        else:
            try:
                value = json.loads(raw)  # numbers, booleans, lists stay typed
            except (ValueError, RecursionError):
                value = raw
            # inf/nan (1e999, NaN) have no JSON or YAML 1.2 form every reader takes: kept as text
            out[key] = raw if isinstance(value, float) and not math.isfinite(value) else value
    return out


@click.command("log")
@click.argument("path", type=click.Path(), required=False)
@click.option("--reference", metavar="URL",
              help="Record the files at URL (file://, https://, s3://, gs://, az://) without copying them.")
@click.option("--name", "-n", required=True, help="Artifact name.")
@click.option("--type", "-t", "type_", required=True, help="Artifact type (model, dataset, …).")
@click.option("--metadata", "-m", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
@click.option("--metric", multiple=True, metavar="KEY=NUMBER", help="Repeatable.")
@click.option("--input", "inputs", multiple=True, metavar="ARTIFACT:vK",
              help="An artifact version this one was made from (lineage; repeatable).")
@click.option("--description", "-d", default="")
@click.option("--offline", is_flag=True,
              help="Keep the bytes in this clone until `canonry storage push` (storage out of reach).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@store_options
def log_cmd(c, path, reference, name, type_, metadata, metric, inputs, description, offline, quiet, as_json):
    """Log PATH (a file or directory) as a new version of artifact NAME.

    The bytes go to the store's storage (`canonry storage show`), each file under its sha256:
    content already there is not sent again. With --reference URL instead of PATH, the files
    stay where they are: their sizes and digests are recorded (sha256 when canonry can read
    them, else the ETag the object store reports) and `get` checks them against the source."""
    if bool(path) == bool(reference):
        raise click.UsageError("give PATH, or --reference URL (not both)")
    if reference and offline:
        raise click.UsageError("--offline keeps copied bytes; a --reference copies none")
    store = c.store()
    fields = dict(name=name, type=type_, metadata=_key_values(metadata, "metadata"),
                  metrics=_key_values(metric, "metric", numeric=True), inputs=inputs, description=description)
    if reference:
        v = store.log_reference(reference, **fields)
        path = reference
    else:
        from canonry.cli.progress import byte_progress
        from canonry.files.manifest import collect_files, total_size

        with byte_progress("uploading", total_size(collect_files(path)), quiet or as_json) as progress:
            v = store.log_artifact(path, offline=offline, progress=progress, **fields)
    from canonry.output import human_size

    if v.created:
        text = f"logged {v.address} ({v.type}, {len(v.files)} file{'s' * (len(v.files) != 1)}, " \
               f"{human_size(v.size)}, {v.digest[:19]})"
    else:
        text = f"{path} is identical to {v.address} (same digest): no new version made"
    done(as_json, v.to_dict(), text)


# ---- links and aliases ---------------------------------------------------------------------------
@click.command()
@click.argument("artifact", metavar="ARTIFACT:vK")
@click.argument("collection", metavar="REGISTRY/COLLECTION")
@click.option("--alias", "-a", "aliases", multiple=True, metavar="A", help="Alias to set (repeatable).")
@click.option("--description", "-d", default="")
@store_options
def link(c, artifact, collection, aliases, description, as_json):
    """Link an artifact version into a collection (created if missing). No bytes are copied."""
    lv = c.store().link(artifact, collection, aliases=aliases, description=description)
    if lv.created:
        text = f"linked {lv.artifact} -> {lv.address}"
    else:
        text = f"{lv.artifact} is already linked as {lv.address}: no new link"
    shown = [a for a in lv.aliases if a != "latest"]
    if shown:
        text += f" [{', '.join(shown)}]"
    done(as_json, lv.to_dict(), text)


@click.command()
@click.argument("target", metavar="REGISTRY/COLLECTION:vN")
@store_options
def unlink(c, target, as_json):
    """Remove a link (and the aliases it holds). The artifact version itself stays."""
    lv = c.store().unlink(target)
    gone = [a for a in lv.aliases if a != "latest"]
    text = f"unlinked {lv.address} ({lv.artifact})" + (f"; removed aliases {', '.join(gone)}" if gone else "")
    done(as_json, lv.to_dict(), text)


@click.group()
def alias():
    """Set or remove aliases (production, staging, best, …)."""


@alias.command("set")
@click.argument("target", metavar="REGISTRY/COLLECTION:vN")
@click.argument("name", metavar="ALIAS")
@store_options
def alias_set(c, target, name, as_json):
    """Point ALIAS at a linked version, moving it if another version holds it."""
    ch = c.store().set_alias(target, name)
    if not ch.changed:
        text = f"{ch.alias} already points at {ch.collection}:{ch.after}: nothing changed"
    elif ch.before:
        text = f"moved {ch.alias} in {ch.collection}: {ch.before} -> {ch.after}"
    else:
        text = f"set {ch.alias} -> {ch.collection}:{ch.after}"
    done(as_json, {**ch.to_dict(), "changed": ch.changed}, text)


@alias.command("rm")
@click.argument("collection", metavar="REGISTRY/COLLECTION")
@click.argument("name", metavar="ALIAS")
@store_options
def alias_rm(c, collection, name, as_json):
    """Remove ALIAS from a collection."""
    ch = c.store().remove_alias(collection, name)
    done(as_json, {**ch.to_dict(), "changed": True},
         f"removed {ch.alias} from {ch.collection} (was on {ch.before})")


@click.group()
def tag():
    """Add or remove tags on collections and linked versions."""


@tag.command("add")
@click.argument("target", metavar="TARGET")
@click.argument("tags", nargs=-1, required=True)
@store_options
def tag_add(c, target, tags, as_json):
    """Add TAGS to REGISTRY/COLLECTION or REGISTRY/COLLECTION:vN."""
    _tag_done(as_json, c.store().tag(target, *tags))


@tag.command("rm")
@click.argument("target", metavar="TARGET")
@click.argument("tags", nargs=-1, required=True)
@store_options
def tag_rm(c, target, tags, as_json):
    """Remove TAGS from REGISTRY/COLLECTION or REGISTRY/COLLECTION:vN."""
    _tag_done(as_json, c.store().untag(target, *tags))


def _tag_done(as_json, ch):
    from canonry.output import fmt

    text = (f"tags of {ch.target}: {fmt(ch.after)}" if ch.changed
            else f"tags of {ch.target} unchanged: {fmt(ch.after)}")
    done(as_json, {**ch.to_dict(), "changed": ch.changed}, text)
