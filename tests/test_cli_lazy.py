"""Built-in commands are imported only when run: `canonry --help` lists them from a table in
canonry.cli.app (BUILTIN_COMMANDS) and must read exactly as if every command had been imported."""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap

import click
import pytest
from conftest import run_process

from canonry.cli.app import BUILTIN_COMMANDS, load_builtin_command

COMMAND_MODULES = sorted({module for module, _attribute, _short_help in BUILTIN_COMMANDS.values()})

# Runs canonry in a fresh interpreter, then prints which command modules it imported.
RUN_AND_LIST_MODULES = """
import json, sys
from canonry.cli.app import BUILTIN_COMMANDS, main
try:
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print("IMPORTED " + json.dumps({"code": code, "modules": sorted(
    {module for module, _, _ in BUILTIN_COMMANDS.values()} & set(sys.modules))}))
"""

# The listing click's own Group.format_commands makes: it imports every command.
FULL_GROUP_LISTING = """
import sys
import click
from canonry.cli.app import cli
ctx = cli.make_context("canonry", sys.argv[1:], resilient_parsing=True)
formatter = ctx.make_formatter()
click.Group.format_commands(cli, ctx, formatter)
print(formatter.getvalue(), end="")
"""


def _python(code: str, *args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def _imported_command_modules(*args) -> list[str]:
    done = _python(RUN_AND_LIST_MODULES, *args)
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("IMPORTED "), done
    result = json.loads(last[len("IMPORTED "):])
    assert result["code"] in (0, None), done
    return result["modules"]


def _commands_section(help_text: str) -> str:
    return help_text[help_text.index("Commands:\n"):]


# ---- the table agrees with the commands -----------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BUILTIN_COMMANDS))
def test_table_short_help_is_the_commands_own(name):
    command = load_builtin_command(name)
    short_help = BUILTIN_COMMANDS[name][2]
    assert command.name == name
    assert short_help == command.get_short_help_str(limit=10**6), \
        f"BUILTIN_COMMANDS[{name!r}]: update its short help to the first sentence of the docstring"
    # every width the listing may have (the name column and the terminal decide the limit)
    for limit in range(10, 200):
        listed = click.Command(name, help=short_help).get_short_help_str(limit)
        assert listed == command.get_short_help_str(limit), limit


def test_every_command_a_module_defines_is_reachable_from_the_table():
    """A command added to a cli_* module but not to BUILTIN_COMMANDS would exist but never run."""
    reachable = set()

    def walk(command):
        reachable.add(id(command))
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    for name in BUILTIN_COMMANDS:
        walk(load_builtin_command(name))
    for module in COMMAND_MODULES:
        defined = {name for name, obj in vars(importlib.import_module(module)).items()
                   if isinstance(obj, click.Command) and id(obj) not in reachable}
        assert not defined, f"{module}: {sorted(defined)} not in BUILTIN_COMMANDS (nor in a group of it)"


# ---- `canonry --help` -----------------------------------------------------------------------------
@pytest.mark.parametrize("columns", [50, 80, 200])
def test_help_lists_what_the_full_group_would(columns):
    env = {"COLUMNS": str(columns)}
    helped = run_process(["--help"], env=env)
    assert helped.returncode == 0, helped.stderr
    full = _python(FULL_GROUP_LISTING, env=env)
    assert full.returncode == 0, full.stderr
    assert _commands_section(helped.stdout) == full.stdout
    names = [line.split()[0] for line in full.stdout.splitlines()[1:] if line[2] != " "]  # not wrapped
    assert names == sorted(BUILTIN_COMMANDS)


def test_help_lists_a_plugins_command_as_the_full_group_would(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "greeter.py").write_text(textwrap.dedent('''
        import click
        from canonry import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command("hello")
            def hello():
                """Say hello (added by a plugin). More than the listing shows."""
                click.echo("hello")
    '''))
    helped = run_process(["--plugins-dir", plugins, "--help"])
    assert helped.returncode == 0, helped.stderr
    full = _python(FULL_GROUP_LISTING, "--plugins-dir", plugins)
    assert full.returncode == 0, full.stderr
    assert _commands_section(helped.stdout) == full.stdout
    assert "  hello " in full.stdout and "Say hello (added by a plugin)." in full.stdout


# ---- what a fresh process imports ---------------------------------------------------------------
def test_help_imports_no_command_module():
    assert _imported_command_modules("--help") == []


def test_show_imports_only_the_read_commands(linked, store_path):
    assert _imported_command_modules("-C", store_path, "show", "model/first-collection:production") \
        == ["canonry.cli.read"]
    assert _imported_command_modules("show", "--help") == ["canonry.cli.read"]


@pytest.mark.parametrize("args, modules", [
    (["ls"], ["canonry.cli.read"]),
    (["registry", "list"], ["canonry.cli.read", "canonry.cli.registry"]),  # shares the registries table
    (["alias", "set", "--help"], ["canonry.cli.write"]),
    (["validate"], ["canonry.cli.validate"]),
    (["search", "--tag", "nlp"], ["canonry.cli.query"]),
])
def test_a_command_imports_only_its_own_module(linked, store_path, args, modules):
    assert _imported_command_modules("-C", store_path, *args) == modules
