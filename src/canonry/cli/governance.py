"""`canonry admin`, `group`, `audit` and `codeowners`: who may change the store, and who did."""
from __future__ import annotations

import os

import click

from canonry.cli.common import check_since, done, json_option, pass_ctx, read_options, say

__all__ = ["admin", "admin_add", "admin_rm", "audit", "codeowners", "group_cmd"]


@click.group()
def admin():
    """Store-wide admins (admins of every registry)."""


@admin.command("add")
@click.argument("member", metavar="EMAIL")
@json_option
@pass_ctx
def admin_add(c, member, as_json):
    """Make EMAIL a store admin."""
    admins = c.store().add_store_admin(member)
    done(as_json, {"admins": admins}, f"store admins: {', '.join(admins)}")


@admin.command("rm")
@click.argument("member", metavar="EMAIL")
@json_option
@pass_ctx
def admin_rm(c, member, as_json):
    """Remove EMAIL from the store admins."""
    admins = c.store().remove_store_admin(member)
    done(as_json, {"admins": admins}, f"store admins: {', '.join(admins)}")


@click.command("group")
@click.argument("name")
@click.argument("members", nargs=-1, metavar="EMAIL...")
@json_option
@pass_ctx
def group_cmd(c, name, members, as_json):
    """Define group NAME as EMAIL... (usable as member group:NAME); no emails removes it."""
    groups = c.store().set_group(name, list(members))
    done(as_json, {"groups": groups}, f"group {name}: {', '.join(groups.get(name, [])) or 'removed'}")


@click.command()
@click.option("--since", metavar="DATE", callback=check_since, help="Only changes at or after DATE (2026-11-01 or ISO time).")
@click.option("--registry", "registry_name", metavar="R", help="Only changes in registry R.")
@click.option("--actor", metavar="EMAIL", help="Only changes made by EMAIL.")
@read_options
def audit(c, since, registry_name, actor, as_json):
    """Who did what and when, across the store: newest first."""
    entries = c.store().audit(since=since, registry=registry_name, actor=actor)
    if as_json:
        from canonry.output import emit_json

        return emit_json([e.to_dict() for e in entries])
    from canonry.cli import render as views

    say(views.history_table(entries) if entries else "no changes recorded")


@click.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write to this file (default: print). GitHub reads .github/CODEOWNERS.")
@pass_ctx
def codeowners(c, output):
    """Write a CODEOWNERS file mapping each registry's folder to who may change it."""
    from canonry.review.codeowners import render

    store = c.store()
    text = render(store.view(), store.storage.prefix)
    if output:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
        say(f"wrote {output}")
    else:
        click.echo(text, nl=False)
