"""The `canonry` command: parse arguments, call the Python API, format the answer. No logic here.

This module holds the top-level group only. Each command lives in a cli_* module that is imported
when that command runs: `canonry --help` lists them from BUILTIN_COMMANDS (help.py) without
importing any, and the console script (launcher.py) prints it without importing click at all.
Heavy modules (dulwich, yaml, jsonschema) are imported inside commands so `--help` stays fast.
"""
from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from gettext import gettext

import click

from canonry.automation.entrypoints import entry_point_plugins_may_exist
from canonry.cli.common import Ctx, UserError, plugins_without_store
from canonry.cli.help import (
    BUILTIN_COMMANDS,
    GROUP_HELP,
    MAX_CONTENT_WIDTH,
    PLUGINS_DIR_OPTION_HELP,
    STORE_OPTION_HELP,
    short_help,
)
from canonry.cli.messages import os_error_message
from canonry.errors import CanonryError

__all__ = ["CanonryGroup", "cli", "load_builtin_command", "main"]

def load_builtin_command(name: str) -> click.Command:
    module, attribute, _short_help = BUILTIN_COMMANDS[name]
    return getattr(importlib.import_module(module), attribute)


class CanonryGroup(click.Group):
    """Turns domain errors into one-line messages, whether run from main() or a CliRunner.

    Built-in commands are imported only when run (BUILTIN_COMMANDS says from where). Commands
    that plugins add (hook register_commands) are looked up only when a name is not a built-in
    command, or when the full list is asked for, so built-ins start fast."""

    def _load_plugin_commands(self, ctx) -> None:
        # Runs before the group callback made ctx.obj: take -C/--plugins-dir from the parsed params.
        params = ctx.params if ctx is not None else {}
        key = (params.get("store_path"), params.get("plugins_dir"))
        loaded = self.__dict__.setdefault("_loaded_for", set())
        if key in loaded:
            return
        loaded.add(key)
        obj = Ctx(*key)
        try:
            plugins = obj.plugins()
        except CanonryError:
            plugins = plugins_without_store(obj.plugins_dir)
        self._register_commands(plugins)

    def _register_commands(self, plugins) -> None:
        """Each plugin's register_commands, in pluggy's order, each failure a warning. A name
        two plugins add goes to the one called first (tryfirst, else the later loaded), as
        automation actions do."""
        for name, caller in plugins.callers("register_commands"):
            before = dict(self.commands)
            try:
                caller(cli=self)
            except Exception as e:
                click.echo(f"canonry: warning: plugin {name}: register_commands failed: {e}", err=True)
            self.commands.update({n: c for n, c in before.items() if self.commands.get(n) is not c})

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:  # one line, exit 2: what is wrong and where help is
            where = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            message = " ".join(e.format_message().split())  # click lists choices on lines
            click.echo(f"canonry: error: {message}{where}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("canonry: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def get_command(self, ctx, cmd_name):
        # self.commands first: a command a plugin added under a built-in's name replaces it, as
        # add_command would have replaced an imported built-in
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in BUILTIN_COMMANDS:
            command = load_builtin_command(cmd_name)
        if command is None:
            self._load_plugin_commands(ctx)
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx):
        # Plugins are asked for commands only when some may add one: loading every plugin would
        # cost `canonry --help` more than its budget. A store whose trusted tree has plugins/*.py
        # and trusts them (a cheap look: automation/trust.py) loads every plugin, as a command
        # would; else only installed (entry point) plugins and a named --plugins-dir.
        params = ctx.params or {}
        from canonry.automation.trust import store_plugins_may_exist

        if store_plugins_may_exist(params.get("store_path")):
            self._load_plugin_commands(ctx)
        elif params.get("plugins_dir") or entry_point_plugins_may_exist():
            self._load_listed_plugin_commands(params.get("plugins_dir"))
        return sorted({*BUILTIN_COMMANDS, *self.commands})

    def format_commands(self, ctx, formatter):
        """click's listing, with a built-in's short help taken from BUILTIN_COMMANDS: `--help`
        imports no command module."""
        listed: list[tuple[str, Callable[[int], str]]] = []  # (name, short help for a width)
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is None and name in BUILTIN_COMMANDS:
                # shortened as click would (the launcher's --help uses the same function)
                listed.append((name, functools.partial(short_help, BUILTIN_COMMANDS[name][2])))
            elif command is not None and not command.hidden:
                listed.append((name, command.get_short_help_str))
        if not listed:
            return
        limit = formatter.width - 6 - max(len(name) for name, _shorten in listed)
        with formatter.section(gettext("Commands")):  # the title click gives it
            formatter.write_dl([(name, shorten(limit)) for name, shorten in listed])

    def _load_listed_plugin_commands(self, plugins_dir) -> None:
        loaded = self.__dict__.setdefault("_loaded_for", set())
        if ("listing", plugins_dir) in loaded:
            return
        loaded.add(("listing", plugins_dir))
        from canonry.automation import plugins as plugin_mod

        self._register_commands(plugin_mod.load(None, plugins_dir, builtin=False))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CanonryError as e:
            err = UserError(str(e))
            # click >= 8.5 types exit_code as a ClassVar; an instance still carries its own
            setattr(err, "exit_code", e.exit_code)  # noqa: B010
            raise err from None
        except OSError as e:
            raise UserError(os_error_message(e)) from None


@click.group(cls=CanonryGroup, help=GROUP_HELP,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": MAX_CONTENT_WIDTH})
@click.option("-C", "store_path", metavar="PATH", envvar="CANONRY_STORE", is_eager=True, help=STORE_OPTION_HELP)
@click.option("--plugins-dir", metavar="DIR", type=click.Path(exists=True, file_okay=False), is_eager=True,
              help=PLUGINS_DIR_OPTION_HELP)
@click.version_option(package_name="canonry", message="canonry %(version)s")
@click.pass_context
def cli(ctx, store_path, plugins_dir):
    # the help text is GROUP_HELP (help.py): the launcher prints `--help` without click
    ctx.obj = Ctx(store_path, plugins_dir)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="canonry")
