"""`canonry import …`: bring another registry's history into the store (canonry/interop)."""
from __future__ import annotations

import sys

import click

from canonry.cli.common import JSON_HELP, pass_ctx, say

__all__ = ["import_cmd", "import_gto", "import_mlflow"]

_DRY_RUN_HELP = "Print what the import would do, one line per change, and change nothing."


@click.group("import")
def import_cmd():
    """Import a registry kept elsewhere (MLflow, GTO), keeping its authors, times and order.

    Each import is idempotent: what the store already holds is left alone, so running it twice
    adds nothing. See docs/import.md for what maps to what."""


def _run(plan, dry_run: bool, as_json: bool, quiet: bool) -> None:
    from contextlib import nullcontext

    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(line)
        if not as_json:
            say(line)

    bar = None
    if not (dry_run or quiet or as_json) and sys.stderr.isatty() and plan.actions:
        from tqdm import tqdm

        bar = tqdm(total=len(plan.actions), unit="change", desc="importing", file=sys.stderr, leave=False)
    with bar if bar is not None else nullcontext():
        summary = plan.run(dry_run=dry_run, echo=echo, progress=bar.update if bar is not None else None)
    if as_json:
        from canonry.output import emit_json

        emit_json({**summary.as_dict(), "actions": lines})
    else:
        click.echo(summary.text(), err=True)


def _options(f):
    f = click.option("--quiet", "-q", is_flag=True, help="No progress bar.")(f)
    f = click.option("--json", "as_json", is_flag=True, help=JSON_HELP)(f)
    return click.option("--dry-run", is_flag=True, help=_DRY_RUN_HELP)(f)


@import_cmd.command("mlflow")
@click.option("--tracking-uri", required=True, metavar="URI",
              help="The MLflow tracking (and registry) URI: sqlite:///mlflow.db, http://host:5000, a folder…")
@click.option("--registry", default="model", show_default=True, help="The canonry registry to import into.")
@_options
@pass_ctx
def import_mlflow(c, tracking_uri, registry, dry_run, as_json, quiet):
    """Import MLflow's registered models: each becomes a collection, its versions links in order.

    Files are copied into the store's storage when MLflow's artifact URI is a local path or
    file://, and recorded as references otherwise. Each version is a commit by its MLflow user at
    its creation time; the run's metrics and params, the run id, stage and tags are kept."""
    from canonry.interop.import_mlflow import plan_mlflow
    from canonry.interop.importing import check_roles

    store = c.store()
    plan = plan_mlflow(store, tracking_uri, registry=registry)
    check_roles(store, plan)
    _run(plan, dry_run, as_json, quiet)


@import_cmd.command("gto")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--registry", default=None,
              help="The canonry registry to import into (default: the one named after each artifact's "
                   "type when it exists, else model).")
@_options
@pass_ctx
def import_gto(c, path, registry, dry_run, as_json, quiet):
    """Replay the GTO registry in the git repository at PATH: one commit per tag, in GTO's order.

    Registrations become links (semver kept as metadata), stage assignments aliases, deprecations
    the tag `deprecated`; each commit is authored by the tag's tagger at its date, so `canonry
    history` tells the story `gto history` does."""
    from canonry.interop.import_gto import plan_gto
    from canonry.interop.importing import check_roles

    store = c.store()
    plan = plan_gto(store, path, registry=registry)
    check_roles(store, plan)
    _run(plan, dry_run, as_json, quiet)
