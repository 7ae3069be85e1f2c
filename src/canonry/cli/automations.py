"""`canonry plugins`, `events` and `automations …`: what changes emit and who receives it."""
from __future__ import annotations

import click

from canonry.cli.common import (
    UserError,
    done,
    json_option,
    note,
    pass_ctx,
    plugins_without_store,
    read_options,
    say,
    store_options,
)
from canonry.errors import CanonryError

__all__ = [
    "automations", "automations_list", "automations_log", "automations_run", "automations_set", "events",
    "plugins_cmd",
]


@click.command("plugins")
@json_option
@pass_ctx
def plugins_cmd(c, as_json):
    """List plugins: where each came from, its version, its hooks, and any load error."""
    try:
        plugins = c.plugins()
    except CanonryError:  # outside a store: still list built-in and installed plugins
        plugins = plugins_without_store(c.plugins_dir)
    infos = [i.to_dict() for i in plugins.infos]
    if as_json:
        from canonry.output import emit_json

        return emit_json(infos)
    from canonry.output import table

    say(table([[i["name"], i["source"], i["version"] or "-",
                ", ".join(i["hooks"]) if i["loaded"] else f"NOT LOADED: {i['error']}"] for i in infos],
              ["PLUGIN", "SOURCE", "VERSION", "HOOKS"]))


@click.command()
@click.argument("rev_range", metavar="REV_RANGE")
@read_options
def events(c, rev_range, as_json):
    """List the events of the commits in REV_RANGE (A..B, or one commit), oldest first."""
    found = c.store().events(rev_range)
    if as_json:
        from canonry.output import emit_json

        return emit_json([e.to_dict() for e in found])
    from canonry.cli import render as views

    say(views.events_table(found) if found else f"no events in {rev_range}")


@click.group()
def automations():
    """Declarative automations: configure them, fire them for a range, read their log."""


@automations.command("run")
@click.argument("rev_range", metavar="REV_RANGE")
@json_option
@pass_ctx
def automations_run(c, rev_range, as_json):
    """Deliver the events of REV_RANGE to plugins and automations (each at most once).

    Only commits on the store branch are delivered, with the automations its head defines: a
    range of an unmerged branch is refused."""
    outcomes = c.store().run_automations(rev_range)
    failed = [o for o in outcomes if o["status"] != "ok"]
    if as_json:
        from canonry.output import emit_json

        emit_json(outcomes)
    else:
        from canonry.cli import render as views

        say(views.runs_table(outcomes) if outcomes else "nothing to deliver (all events already delivered)")
    if failed:
        raise UserError(f"{len(failed)} of {len(outcomes)} deliveries failed (recorded; "
                        "`automations run` again retries them)")


@automations.command("log")
@click.argument("target", required=False)
@json_option
@pass_ctx
def automations_log(c, target, as_json):
    """Recorded automation runs, newest first (kept in git notes, refs/notes/canonry-automations)."""
    runs = c.store().automation_log(target)
    if as_json:
        from canonry.output import emit_json

        return emit_json(runs)
    from canonry.cli import render as views

    say(views.runs_table(runs) if runs else "no automation runs recorded")


@automations.command("list")
@click.option("--registry", metavar="R", help="The automations of registry R (default: store-wide).")
@json_option
@pass_ctx
def automations_list(c, registry, as_json):
    """Show the configured automations."""
    store = c.store()
    view = store.view()
    autos = (view.registry(registry) if registry else view.store_config()).get("automations", [])
    if as_json:
        from canonry.output import emit_json

        return emit_json(autos)
    from canonry.output import fmt, table

    say(table([[a["name"], fmt(a.get("on", "any")), fmt(a.get("filter", {})), a["action"],
                "yes" if a.get("enabled", True) else "no"] for a in autos],
              ["NAME", "ON", "FILTER", "ACTION", "ENABLED"]) if autos else "no automations configured")


@automations.command("set")
@click.argument("file", type=click.File("r"))
@click.option("--registry", metavar="R", help="Set the automations of registry R (default: store-wide).")
@store_options
def automations_set(c, file, registry, as_json):
    """Replace the automations with the YAML list in FILE (- for stdin): one reviewed commit."""
    from canonry import yamlio

    try:
        # read one character past the bound, not the whole of a huge file (or of /dev/zero)
        autos = yamlio.load(file.read(yamlio.MAX_BYTES + 1))
    except Exception as e:
        raise UserError(f"{file.name}: not valid YAML: {(str(e) or type(e).__name__).splitlines()[0]}") from None
    if isinstance(autos, dict) and "automations" in autos:
        autos = autos["automations"]
    if autos is None:
        # an empty file is more often a mistake than a wish to drop every automation
        raise UserError(f"{file.name} holds no automations: to remove them all, give an explicit []")
    store = c.store()
    view = store.view()
    before = (view.registry(registry) if registry else view.store_config()).get("automations", [])
    result = store.set_automations(autos, registry=registry)
    # Warnings, not refusals, one line each, after the change: the plugin giving an action may
    # be loaded only where automations run (CI), not here where they are set; trust is the
    # store branch's to give; a policy the store already breaks may be the point of setting it.
    known = set(store.plugins.actions())
    if store.plugins.callers("check_change"):
        known.add("policy")  # acted on before each commit (check_change), not delivered
    unknown = sorted({str(a.get("action")) for a in result if a.get("action") not in known})
    if unknown:
        note(f"canonry: warning: no plugin loaded here gives action {', '.join(unknown)} "
             f"(known: {', '.join(sorted(known)) or 'none'}): such automations fail when they fire "
             f"unless a plugin there gives it")
    commands = [a["name"] for a in result if a.get("action") == "command" and a.get("enabled", True)]
    if commands and not store.trusts_local_automations():
        note(f"canonry: warning: command automation {', '.join(commands)} cannot run: canonry.yaml on "
             f"the store branch ({store.storage.store_branch}) does not set trust_local_automations: true")
    if any(a.get("action") == "policy" and a not in before for a in result):
        for v in store.policy_violations():
            note(f"canonry: warning: {v['target']} already breaks a policy: {v['reason']}")
    done(as_json, {"automations": result}, f"automations of {('registry ' + registry) if registry else 'the store'}: "
         f"{', '.join(a['name'] for a in result) or 'none'}")
