"""`canonry lineage`, `canonry compare` and `canonry search`: questions asked of the whole store
(answered from the derived index; see canonry/query/). Parsing and formatting only."""
from __future__ import annotations

import functools

import click

from canonry.cli.common import branch_option

__all__ = ["compare_cmd", "lineage_cmd", "render_results", "search_cmd"]


def _store(c):
    if c is not None:
        return c.store()
    from canonry.store import open_store  # invoked on its own rather than through the canonry group

    return open_store()


def _emit_json(data) -> None:
    from canonry.output import emit_json

    emit_json(data)


def _emit_json_texts(texts: list[str]) -> None:
    """A JSON array with one item per line (items already JSON text). The same data as
    emit_json, laid out for long results: its indenting encoder is pure Python (slow for
    thousands of versions), these come encoded from sqlite."""
    click.echo("[\n  " + ",\n  ".join(texts) + "\n]" if texts else "[]")


@click.command("lineage")
@click.argument("target", metavar="TARGET")
@click.option("--upstream", is_flag=True, help="Only what TARGET was made from.")
@click.option("--downstream", is_flag=True, help="Only what was made from TARGET.")
@click.option("--depth", type=click.IntRange(min=0), default=None, metavar="N",
              help="Follow at most N steps each way (default: all).")
@click.option("--format", "-f", "format_", type=click.Choice(["tree", "json", "mermaid", "dot", "svg"]),
              default="tree", show_default=True,
              help="svg: a picture (graphviz `dot` if installed, else a built-in layout).")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write to this file instead of printing.")
@click.option("--usage", is_flag=True,
              help="Also show consumers: the recorded uses of each version (`canonry usage`).")
@functools.partial(branch_option, read=True)
@click.pass_obj
def lineage_cmd(c, target, upstream, downstream, depth, format_, as_json, output, usage):
    """The artifact versions TARGET was made from and those made from it, with the collections,
    links and aliases pointing at each and who produced it (git commit, command).

    TARGET: ARTIFACT:vK, ARTIFACT (its newest version) or REGISTRY/COLLECTION:vN|ALIAS. With
    --usage, the consumers too: the tree lists TARGET's recorded uses (who, when, host, git
    commit, purpose) and counts each version's; JSON gives every node's `consumers`."""
    from canonry.query.lineage import render

    if upstream and downstream:
        raise click.BadParameter("give --upstream or --downstream, not both (neither: both ways)",
                                 param_hint="--upstream/--downstream")
    direction = "upstream" if upstream else "downstream" if downstream else "both"
    result = _store(c).lineage(target, direction=direction, depth=depth, usage=usage)
    text = render(result, "json" if as_json else format_)
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
        click.echo(f"wrote {output} ({len(result.nodes)} version{'s' * (len(result.nodes) != 1)}, "
                   f"{len(result.edges)} edge{'s' * (len(result.edges) != 1)})", err=True)
    else:
        click.echo(text, nl=False)


@click.command("compare")
@click.argument("collection", metavar="REGISTRY/COLLECTION")
@click.option("--metric", "metrics", multiple=True, metavar="M",
              help="Metric to show (repeatable); the first one sorts and is charted. Default: all, by version.")
@click.option("--ascending", "--asc", is_flag=True, help="Lowest first (for losses and errors).")
@click.option("--json", "as_json", is_flag=True, help="Print data only, as JSON.")
@functools.partial(branch_option, read=True)
@click.pass_obj
def compare_cmd(c, collection, metrics, ascending, as_json):
    """Every linked version of a collection with its aliases and metrics, best first, with a
    bar chart of the chosen metric and its trend across versions."""
    result = _store(c).compare(collection, metrics=list(metrics), ascending=ascending)
    if as_json:
        return _emit_json(result)
    from canonry.query.compare import render_text

    click.echo(render_text(result), nl=False)


@click.command("search")
@click.option("--filter", "filter_json", metavar="JSON",
              help='A MongoDB-style filter, e.g. \'{"metrics.accuracy": {"$gt": 0.9}}\'.')
@click.option("--tag", metavar="T", help="Only items tagged T.")
@click.option("--alias", metavar="A", help="Only items holding alias A (versions) or having it (collections).")
@click.option("--type", "type_", metavar="T", help="Only artifacts of type T.")
@click.option("--registry", metavar="R", help="Only inside registry R.")
@click.option("--kind", type=click.Choice(["versions", "collections", "registries"]), default="versions",
              show_default=True, help="What to search.")
@click.option("--limit", type=click.IntRange(min=1, max=2**63 - 1), default=None, metavar="N",
              help="At most N results.")
@click.option("--json", "as_json", is_flag=True, help="Print the matching items as JSON (aliases included).")
@functools.partial(branch_option, read=True)
@click.pass_obj
def search_cmd(c, filter_json, tag, alias, type_, registry, kind, limit, as_json):
    """Find linked versions (or collections, registries) across the store.

    Filter fields: name, description, tags, aliases, type, metadata.KEY, metrics.KEY,
    created_at, updated_at (and more: see `canonry.query.search`). Operators: $eq $ne $gt $gte $lt
    $lte $in $nin $and $or $not $regex $exists $contains."""
    import json

    from canonry.query.search import FilterError, search

    # A filter that cannot be read, or asks what cannot be asked, is a usage error (exit 2).
    filter_ = None
    if filter_json:
        try:
            filter_ = json.loads(filter_json)
        except ValueError as e:
            raise click.BadParameter(f"not valid JSON: {e}", param_hint="--filter") from None
        except RecursionError:  # '[[[[…' deeper than Python's stack
            raise click.BadParameter("nests too deeply", param_hint="--filter") from None
        if not isinstance(filter_, dict):  # `null` and `[]` would otherwise match everything
            raise click.BadParameter(f"a JSON object like {{\"tag\": \"vision\"}}, not {filter_json.strip()[:40]}",
                                     param_hint="--filter")
    store = _store(c)
    try:
        if as_json:
            return _emit_json_texts(search(store, filter_, kind=kind, tag=tag, alias=alias, type=type_,
                                           registry=registry, limit=limit, as_json=True))
        results = store.search(filter_, kind=kind, tag=tag, alias=alias, type=type_, registry=registry, limit=limit)
    except FilterError as e:
        raise click.UsageError(str(e)) from None
    if not results:
        click.echo(f"no {kind} match", err=True)
        return
    click.echo(render_results(kind, results))


def render_results(kind: str, results: list[dict]) -> str:
    from canonry.output import fmt, table

    if kind == "versions":
        rows = [[d["address"], d["artifact"], d.get("type", "-"), fmt(d["aliases"]), fmt(d["tags"]),
                 _metrics(d.get("metrics", {}))] for d in results]
        return table(rows, ["VERSION", "ARTIFACT", "TYPE", "ALIASES", "TAGS", "METRICS"])
    if kind == "collections":
        rows = [[d["address"], d.get("type", "-"), d["versions"], fmt(d["aliases"]), fmt(d["tags"]),
                 d.get("updated_at", "")] for d in results]
        return table(rows, ["COLLECTION", "TYPE", "VERSIONS", "ALIASES", "TAGS", "UPDATED"])
    rows = [[d["name"], d.get("visibility", ""), fmt(d["type"]), d.get("description", ""), d.get("updated_at", "")]
            for d in results]
    return table(rows, ["REGISTRY", "VISIBILITY", "TYPES", "DESCRIPTION", "UPDATED"])


def _metrics(metrics: dict, limit: int = 3) -> str:
    from canonry.output import fmt

    items = list(metrics.items())
    text = ", ".join(f"{k}={fmt(v)}" for k, v in items[:limit])
    return text + (f", +{len(items) - limit}" if len(items) > limit else "") if items else "-"
