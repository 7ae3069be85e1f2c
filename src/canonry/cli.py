"""The `canonry` command: parse arguments, call the Python API, format the answer. No logic here.

This module holds the top-level group only. Each command lives in a cli_* module that is imported
when that command runs: `canonry --help` lists them from BUILTIN_COMMANDS without importing any.
Heavy modules (dulwich, yaml, jsonschema) are imported inside commands so `--help` stays fast.
"""
from __future__ import annotations

import importlib
import os
import sys
from gettext import gettext

import click

from .cli_common import Ctx, UserError, plugins_without_store
# importable from here as before the commands moved out (plugins may build on them)
from .cli_common import JSON_HELP, branch_option, json_option, pass_ctx  # noqa: F401
from .errors import CanonryError

# name -> (module, attribute, short help). The short help is the first sentence of the command's
# docstring, the text click would shorten for the listing: tests/test_cli_lazy.py checks that
# they agree, so a changed docstring fails a test rather than drifting from `canonry --help`.
BUILTIN_COMMANDS: dict[str, tuple[str, str, str]] = {
    "admin": ("canonry.cli_governance", "admin", "Store-wide admins (admins of every registry)."),
    "alias": ("canonry.cli_write", "alias", "Set or remove aliases (production, staging, best, …)."),
    "audit": ("canonry.cli_governance", "audit", "Who did what and when, across the store: newest first."),
    "automations": ("canonry.cli_automations", "automations",
                    "Declarative automations: configure them, fire them for a range, read their log."),
    "clone": ("canonry.cli_sharing", "clone",
              "Clone the store at URL (path, file://, http(s)://, ssh) into DIRECTORY."),
    "codeowners": ("canonry.cli_governance", "codeowners",
                   "Write a CODEOWNERS file mapping each registry's folder to who may change it."),
    "compare": ("canonry.cli_query", "compare_cmd",
                "Every linked version of a collection with its aliases and metrics, best first, with a "
                "bar chart of the chosen metric and its trend across versions."),
    "diff": ("canonry.cli_diff", "diff_cmd",
             "Describe what HEAD changes over its merge base with BASE (like `git diff BASE...HEAD`): "
             "alias moves with the metrics behind them, links, tags, settings."),
    "events": ("canonry.cli_automations", "events",
               "List the events of the commits in REV_RANGE (A..B, or one commit), oldest first."),
    "gc": ("canonry.cli_store", "gc",
           "Repack every git object into one pack (small packs are also merged automatically)."),
    "get": ("canonry.cli_read", "get", "Restore the files of a version into DIR, verifying every sha256."),
    "group": ("canonry.cli_governance", "group_cmd", "Define group NAME as EMAIL..."),
    "history": ("canonry.cli_read", "history",
                "Every change to TARGET, newest first: commit, time, actor, operation, before → after."),
    "init": ("canonry.cli_store", "init", "Make PATH (default: current directory) a canonry store."),
    "lineage": ("canonry.cli_query", "lineage_cmd",
                "The artifact versions TARGET was made from and those made from it, with the collections, "
                "links and aliases pointing at each and who produced it (git commit, command)."),
    "link": ("canonry.cli_write", "link", "Link an artifact version into a collection (created if missing)."),
    "log": ("canonry.cli_write", "log_cmd", "Log PATH (a file or directory) as a new version of artifact NAME."),
    "ls": ("canonry.cli_read", "ls",
           "List registries, the collections of a registry, or the versions of a collection."),
    "merge": ("canonry.cli_sharing", "merge",
              "Merge proposal BRANCH into the store branch: replays its operations, renumbering new links "
              "if the store branch linked meanwhile; a true conflict stops with nothing written."),
    "plugins": ("canonry.cli_automations", "plugins_cmd",
                "List plugins: where each came from, its version, its hooks, and any load error."),
    "pull": ("canonry.cli_sharing", "pull",
             "Fetch REMOTE's store branch and bring yours onto it (local work is replayed on top)."),
    "push": ("canonry.cli_sharing", "push",
             "Push the store branch (and the automation run log) to REMOTE; never forced."),
    "quickstart": ("canonry.cli_store", "quickstart",
                   "Create a store in DIRECTORY and walk through log → link → alias → show → history."),
    "registry": ("canonry.cli_registry", "registry", "Create, list, show and edit registries."),
    "search": ("canonry.cli_query", "search_cmd",
               "Find linked versions (or collections, registries) across the store."),
    "show": ("canonry.cli_read", "show",
             "Show everything known about a registry, collection, linked version or artifact version."),
    "sync": ("canonry.cli_sharing", "sync", "Pull, then push."),
    "tag": ("canonry.cli_write", "tag", "Add or remove tags on collections and linked versions."),
    "unlink": ("canonry.cli_write", "unlink", "Remove a link (and the aliases it holds)."),
    "validate": ("canonry.cli_validate", "validate_cmd",
                 "Check every commit of BASE..HEAD (or the whole store): schemas, invariants, policies."),
}


def load_builtin_command(name: str) -> click.Command:
    module, attribute, _short_help = BUILTIN_COMMANDS[name]
    return getattr(importlib.import_module(module), attribute)


def _entry_point_plugins_may_exist() -> bool:
    """Whether a distribution on sys.path may declare entry points in group `canonry`.

    `--help` asks on every run: importlib.metadata costs ~25 ms (its imports, then every
    distribution's metadata), reading the entry_points.txt files found on sys.path ~2 ms. A yes
    may be wrong (a shadowed distribution, an empty section): importlib.metadata, which loads
    the plugins, then decides. Where this scan cannot look (a zip or an egg on sys.path, a
    custom distribution finder) it says yes."""
    from importlib.machinery import PathFinder

    if any(hasattr(f, "find_distributions") and f is not PathFinder for f in sys.meta_path):
        return True
    return any(_path_entry_may_declare_canonry_entry_points(entry) for entry in sys.path)


def _path_entry_may_declare_canonry_entry_points(entry: str) -> bool:
    if not isinstance(entry, str):  # not what this scan reads: let importlib.metadata look
        return True
    root = entry or "."
    if os.path.basename(root).lower().endswith(".egg"):
        return True
    try:
        names = os.listdir(root)
    except NotADirectoryError:  # a zip file: importlib.metadata reads inside it
        return True
    except OSError:  # missing or unreadable: importlib.metadata finds nothing there either
        return False
    for name in names:
        if name.lower().endswith((".dist-info", ".egg-info")):
            try:
                with open(os.path.join(root, name, "entry_points.txt"), "rb") as f:
                    if b"[canonry]" in f.read():
                        return True
            except OSError:  # no entry points (or an .egg-info file rather than a folder)
                continue
    return False


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
        from .plugins import call

        for name, fn, argnames in plugins.impls("register_commands"):
            try:
                call(fn, argnames, cli=self)
            except Exception as e:
                click.echo(f"canonry: warning: plugin {name}: register_commands failed: {e}", err=True)

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
        # For the listing, only installed (entry point) plugins and a named --plugins-dir are
        # asked for commands, and only when there are some: opening the store and loading every
        # plugin would cost `canonry --help` more than its budget. A trusted store plugin's
        # command still runs (get_command); `canonry plugins` lists every plugin's hooks.
        params = ctx.params or {}
        if params.get("plugins_dir") or _entry_point_plugins_may_exist():
            self._load_listed_plugin_commands(params.get("plugins_dir"))
        return sorted({*BUILTIN_COMMANDS, *self.commands})

    def format_commands(self, ctx, formatter):
        """click's listing, with a built-in's short help taken from BUILTIN_COMMANDS: `--help`
        imports no command module."""
        listed = []  # (name, short help for a width)
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is None and name in BUILTIN_COMMANDS:
                # click shortens it as for the real command (its helper for that is deprecated)
                listed.append((name, click.Command(name, help=BUILTIN_COMMANDS[name][2]).get_short_help_str))
            elif command is not None and not command.hidden:
                listed.append((name, command.get_short_help_str))
        if not listed:
            return
        limit = formatter.width - 6 - max(len(name) for name, _short_help in listed)
        with formatter.section(gettext("Commands")):  # the title click gives it
            formatter.write_dl([(name, short_help(limit)) for name, short_help in listed])

    def _load_listed_plugin_commands(self, plugins_dir) -> None:
        loaded = self.__dict__.setdefault("_loaded_for", set())
        if ("listing", plugins_dir) in loaded:
            return
        loaded.add(("listing", plugins_dir))
        from . import plugins as plugin_mod
        from .plugins import call

        found = plugin_mod.load(None, plugins_dir, builtin=False)
        for name, fn, argnames in found.impls("register_commands"):
            try:
                call(fn, argnames, cli=self)
            except Exception as e:
                click.echo(f"canonry: warning: plugin {name}: register_commands failed: {e}", err=True)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CanonryError as e:
            err = UserError(str(e))
            err.exit_code = e.exit_code
            raise err from None
        except OSError as e:
            from .launcher import os_error_message

            raise UserError(os_error_message(e)) from None


@click.group(cls=CanonryGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-C", "store_path", metavar="PATH", envvar="CANONRY_STORE", is_eager=True,
              help="Store to use (default: found from the current directory upwards; env CANONRY_STORE).")
@click.option("--plugins-dir", metavar="DIR", type=click.Path(exists=True, file_okay=False), is_eager=True,
              help="Also load plugins (*.py) from DIR.")
@click.version_option(package_name="canonry", message="canonry %(version)s")
@click.pass_context
def cli(ctx, store_path, plugins_dir):
    """Canonry: an artifact registry kept as YAML in a git repository.

    Every change is a commit: history is the audit log. Addresses: REGISTRY,
    REGISTRY/COLLECTION, REGISTRY/COLLECTION:vN, REGISTRY/COLLECTION:ALIAS,
    ARTIFACT:vK, ARTIFACT:latest.
    """
    ctx.obj = Ctx(store_path, plugins_dir)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="canonry")


def __getattr__(name: str):
    # `from canonry.cli import show` still works, importing only the module that defines it
    for command, (module, attribute, _short_help) in BUILTIN_COMMANDS.items():
        if name == attribute:
            return load_builtin_command(command)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
