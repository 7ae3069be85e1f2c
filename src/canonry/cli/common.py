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
    "check_since",
    "done",
    "json_option",
    "note",
    "pass_ctx",
    "pick_store_branch",
    "plugins_without_store",
    "read_options",
    "say",
    "store_branch_options",
    "store_options",
    "warn_failed_delivery",
]

JSON_HELP = "Print data only, as JSON (shapes in docs/json.md)."


class Ctx:
    def __init__(self, path: str | None, plugins_dir: str | None = None):
        self.path = path
        self.plugins_dir = plugins_dir
        self.branch = None
        self.branch_must_exist = False  # a read command's --branch: reading a missing one is an error
        self._store: Store | None = None

    def store(self):
        if self._store is None:
            from canonry.store import open_store

            store = open_store(self.path, self.branch, plugins_dir=self.plugins_dir)
            if self.branch_must_exist and store.storage.is_proposal_branch and not store.storage.branch_exists():
                raise UserError(f"no branch {self.branch}")
            self._store = store
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


def _set_read_branch(ctx, param, value):
    if value:
        ctx.find_object(Ctx).branch_must_exist = True
    return _set_branch(ctx, param, value)


def branch_option(f, read: bool = False):
    """`--branch B`: work on branch B (created from the store branch on the first write). With
    `read`, for commands that only read: a branch that does not exist is an error, not the
    store branch's state."""
    if read:
        return click.option("--branch", "-b", metavar="B", expose_value=False, callback=_set_read_branch,
                            help="Read branch B (a proposal) instead of the store branch; B must exist.")(f)
    return click.option("--branch", "-b", metavar="B", expose_value=False, callback=_set_branch,
                        help="Work on branch B instead of the store branch (created from it on "
                             "the first write: a proposal to review).")(f)


def store_options(f):
    """What a command on the store takes: `--json`, `--branch B`, and the context (`c`)."""
    return json_option(branch_option(pass_ctx(f)))


def read_options(f):
    """store_options for a command that only reads: `--branch B` must name a branch that exists."""
    return json_option(branch_option(pass_ctx(f), read=True))


def _deprecated_branch(ctx, param, value):
    if value is not None:
        note(f"canonry: warning: `{ctx.command_path} --branch` is now --store-branch "
             "(--branch names a proposal branch everywhere else)")
    return value


def store_branch_options(help_text: str):
    """`--store-branch B` (for init and clone), with the old spelling `--branch` still taken
    (hidden, with a warning): everywhere else --branch means a proposal branch."""
    def decorate(f):
        f = click.option("--branch", "old_store_branch", metavar="B", hidden=True, callback=_deprecated_branch,
                         help="Deprecated: --store-branch.")(f)
        return click.option("--store-branch", "store_branch", metavar="B", help=help_text)(f)
    return decorate


def pick_store_branch(store_branch: str | None, old_store_branch: str | None) -> str | None:
    """--store-branch, or the deprecated --branch given instead (both, differing: a usage error)."""
    if store_branch is not None and old_store_branch is not None and store_branch != old_store_branch:
        raise click.UsageError("give --store-branch only (--branch is its old spelling)")
    return store_branch if store_branch is not None else old_store_branch


def check_since(ctx, param, value):
    """Callback of a `--since DATE` option: a date or time that cannot be read is a usage error
    (exit 2), found before the store is opened."""
    if value:
        from canonry.errors import InvalidInput
        from canonry.names import iso_since

        try:
            iso_since(value)
        except InvalidInput:
            raise click.BadParameter(f"{value!r}: use a date like 2026-11-01 or 2026-11-01T12:00:00Z") from None
    return value


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
