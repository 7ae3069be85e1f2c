"""What every `canonry` command module shares: the context object, the common options, output.

Imports only click: every command and `canonry --help` import this module, so anything heavier
would be paid by all of them (the store and its modules are imported when first used).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

from canonry.cli.messages import error_line

if TYPE_CHECKING:
    from canonry.store import Store

__all__ = [
    "JSON_HELP",
    "Ctx",
    "UserError",
    "branch_option",
    "done",
    "json_option",
    "note",
    "pass_ctx",
    "plugins_without_store",
    "say",
    "store_options",
    "warn_failed_delivery",
]

JSON_HELP = "Print data only, as JSON (shapes in docs/json.md)."


class Ctx:
    def __init__(self, path: str | None, plugins_dir: str | None = None):
        self.path = path
        self.plugins_dir = plugins_dir
        self.branch = None
        self._store: Store | None = None

    def store(self):
        if self._store is None:
            from canonry.store import open_store

            self._store = open_store(self.path, self.branch, plugins_dir=self.plugins_dir)
            self._store.on_failed_delivery = warn_failed_delivery
        return self._store

    def plugins(self):
        return self.store().plugins


def warn_failed_delivery(outcome: dict) -> None:
    """One line on stderr for an automation or plugin that failed after a write (the write
    stands, and so does the exit code)."""
    kind, _, name = str(outcome.get("receiver", "")).partition(":")
    error = " ".join(str(outcome.get("error") or outcome.get("status")).split())
    click.echo(f"canonry: warning: {kind or 'receiver'} {name} failed: {error}; "
               "see `canonry automations log`", err=True)


def plugins_without_store(plugins_dir):
    from canonry.automation import plugins

    return plugins.load(None, plugins_dir)


pass_ctx = click.make_pass_decorator(Ctx)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help=JSON_HELP)(f)


def _set_branch(ctx, param, value):
    if value:
        from canonry.names import check_branch

        ctx.find_object(Ctx).branch = check_branch(value)
    return value


def branch_option(f):
    """`--branch B`: work on branch B (created from the store branch on the first write)."""
    return click.option("--branch", "-b", metavar="B", expose_value=False, callback=_set_branch,
                        help="Work on branch B instead of the store branch (created from it on "
                             "the first write: a proposal to review).")(f)


def store_options(f):
    """What a command on the store takes: `--json`, `--branch B`, and the context (`c`)."""
    return json_option(branch_option(pass_ctx(f)))


def say(message: str) -> None:
    click.echo(message, err=False)


def note(message: str) -> None:
    click.echo(message, err=True)


def done(as_json: bool, data: dict, text: str) -> None:
    """What a command did: `data` with --json, else one human line (or a few)."""
    if as_json:
        from canonry.output import emit_json

        emit_json(data)
    else:
        say(text)


class UserError(click.ClickException):
    """A domain error, shown as one line: `canonry: error: …`."""

    def show(self, file=None) -> None:
        click.echo(error_line(self.format_message()), err=True)
