"""`canonry use` and `canonry usage`: use a version (recording who used it, from where) and
list the recorded uses (the usage log, refs/canonry/usage)."""
from __future__ import annotations

import click

from canonry.cli.common import done, read_options, say

__all__ = ["usage_cmd", "use"]


@click.command()
@click.argument("target")
@click.option("--purpose", "-p", metavar="TEXT", default=None,
              help="Why it is used (recorded with the use: a job, a run, a service).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@read_options
def use(c, target, purpose, quiet, as_json):
    """Print a local folder holding TARGET's files and record the use (who, when, from where, why).

    The files are downloaded once into the cache and verified, as `get` without --to does. The
    record holds the actor, the time, the host, the git commit of the repository the current
    directory is in, and --purpose. The usage log is its own ref (refs/canonry/usage), pushed and pulled with
    the store; `canonry usage TARGET` lists it. A use that cannot be recorded warns and still
    prints the folder."""
    from canonry.cli.progress import byte_progress

    store = c.store()
    version = store.resolve_version(target)
    with byte_progress("downloading", version.size, quiet or as_json) as progress:
        where = store.use(target, progress=progress, record=True, purpose=purpose)
    done(as_json, {"artifact": version.address, "digest": version.digest, "to": where,
                   "files": [f["path"] for f in version.files]}, where)


@click.command("usage")
@click.argument("target")
@click.option("--since", metavar="DATE", default=None,
              help="Only uses at or after DATE (2026-11-01, or 2026-11-01T12:00:00Z).")
@read_options
def usage_cmd(c, target, since, as_json):
    """Recorded uses of TARGET, newest first: who, when, which version, through which address,
    from which host and git commit, and why.

    TARGET: REGISTRY/COLLECTION:vN|ALIAS (uses of the version it names, whatever address they
    went through), ARTIFACT:vK, ARTIFACT (every version), REGISTRY/COLLECTION or REGISTRY (every
    version linked there now). Uses are recorded by `canonry use`, `canonry.use(...,
    record=True)`, and by every download from a registry with `registry edit --record-usage`."""
    from canonry.errors import InvalidInput
    from canonry.usage import iso_since

    try:
        iso_since(since)
    except InvalidInput as e:
        raise click.BadParameter(str(e).removeprefix("invalid --since "), param_hint="--since") from None
    records = c.store().usage(target, since=since)
    if as_json:
        from canonry.output import emit_json

        return emit_json(records)
    if not records:
        return say(f"no recorded uses of {target}" + (f" since {since}" if since else ""))
    from canonry.output import table

    rows = [[r.get("at", ""), r.get("actor", ""), r.get("artifact", ""),
             r.get("target", "") if r.get("target") != r.get("artifact") else "",
             r.get("host", ""), str(r.get("git_commit") or "")[:10], r.get("purpose") or ""]
            for r in records]
    say(table(rows, ["AT", "ACTOR", "VERSION", "VIA", "HOST", "COMMIT", "PURPOSE"]))
