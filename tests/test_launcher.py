"""The console script's click-free `show` and `--help` (launcher.py, cli_help.py) answer exactly
as the click CLI does: same stdout, stderr and exit code, in real processes; anything else goes
to click."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from canonry.cli.help import BUILTIN_COMMANDS, short_help
from canonry.cli.launcher import _show_command

# what the console script itself is made of: any other canonry.cli module is a command (or click's group)
LAUNCHER_MODULES = "('canonry.cli.launcher', 'canonry.cli.messages')"
LAUNCHER = "import sys; from canonry.cli.launcher import main; main()"
CLICK = "import sys; from canonry.cli.app import main; main()"


def _run(code: str, args: list[str], cwd, env=None) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env=env)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def promoted(store, store_path, model_file):
    v = store.log_artifact(str(model_file), name="gemma-finetuned", type="model",
                           metrics={"accuracy": 0.9})
    store.link(v.address, "model/first-collection", aliases=["production"])
    store.tag("model/first-collection", "vision")
    return store_path


@pytest.mark.parametrize("args", [
    ["show", "model/first-collection:production"],
    ["show", "model/first-collection:production", "--json"],
    ["show", "--json", "model/first-collection:v0"],
    ["show", "model/first-collection"],
    ["show", "model"],
    ["show", "gemma-finetuned"],
    ["show", "gemma-finetuned:v0", "--json"],
    ["show", "gemma-finetuned:latest"],
    # errors: one line, same words, same exit code
    ["show", "model/first-colection:production"],
    ["show", "model/first-collection:staging"],
    ["show", "model/first-collection:v7"],
    ["show", "no/such/thing"],
    ["show", "../etc"],
    ["show", "nosuch"],
])
def test_show_answers_like_click(promoted, tmp_path, args):
    for cli_args in (["-C", str(promoted), *args], args):
        cwd = tmp_path if cli_args[0] == "-C" else promoted
        fast = _run(LAUNCHER, cli_args, cwd)
        slow = _run(CLICK, cli_args, cwd)
        assert fast == slow, cli_args
        assert fast[0] in (0, 1)
        if fast[0]:
            assert fast[2].startswith("canonry: error: ") and fast[2].count("\n") == 1


def test_show_outside_a_store_and_with_a_missing_path(promoted, tmp_path):
    for args in (["show", "model"], ["-C", str(tmp_path / "missing"), "show", "model"]):
        fast = _run(LAUNCHER, args, tmp_path)
        assert fast == _run(CLICK, args, tmp_path)
        assert fast[0] == 1 and "not a canonry store" in fast[2]
    env = dict(os.environ, CANONRY_STORE=str(promoted))
    fast = _run(LAUNCHER, ["show", "model/first-collection:production", "--json"], tmp_path, env)
    assert fast == _run(CLICK, ["show", "model/first-collection:production", "--json"], tmp_path, env)
    assert fast[0] == 0 and '"kind": "link"' in fast[1]


def test_show_imports_neither_click_nor_dulwich_objects(promoted):
    """A fresh `show` reads raw objects (gitread) and hashes nothing: dulwich.objects (with
    dataclasses and inspect) and hashlib (OpenSSL) would cost it ~15 ms; canonry's own records
    are not dataclasses either (~20 ms)."""
    code = ("import sys\nfrom canonry.cli.launcher import main\n"
            "try:\n    main(['-C', sys.argv[1], 'show', 'model/first-collection:production'])\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print(sorted(m for m in sys.modules if m in ('click', 'dulwich.objects', 'dulwich.repo', 'hashlib',"
            " 'dataclasses', 'inspect')"
            " or m.startswith('canonry.cli.') and m not in " + LAUNCHER_MODULES + "))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(promoted)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "['canonry.cli.render']"


@pytest.mark.parametrize("args, expected", [
    (["show", "model/c:production"], (None, "model/c:production", False)),
    (["-C", "p", "show", "x", "--json"], ("p", "x", True)),
    (["-C", "p", "show", "--json", "x"], ("p", "x", True)),
    # anything else is click's: options, help, usage errors, other commands
    (["show"], None),
    (["show", "a", "b"], None),
    (["show", "x", "--json", "--json"], None),
    (["show", "--help"], None),
    (["show", "x", "--branch", "b"], None),
    (["show", "-b", "b", "x"], None),
    (["-C", "show", "x"], None),
    (["-C", "-x", "show", "x"], None),
    (["--plugins-dir", "d", "show", "x"], None),
    (["ls"], None),
    (["--help"], None),  # taken before, by the help shape
    ([], None),
])
def test_only_the_plain_show_shape_is_taken(args, expected):
    assert _show_command(args) == expected


def test_other_commands_and_usage_errors_go_to_click(promoted, tmp_path):
    for args in (["-C", str(promoted), "ls"], ["-C", str(promoted), "show"],
                 ["-C", str(promoted), "show", "a", "b"], [], ["--help", "x"], ["-C", str(promoted), "--help"],
                 ["-C", str(promoted), "show", "--help"]):
        fast = _run(LAUNCHER, args, tmp_path)
        assert fast == _run(CLICK, args, tmp_path), args
    code, _, err = _run(LAUNCHER, ["-C", str(promoted), "show"], tmp_path)
    assert code == 2 and "Missing argument" in err


def test_the_console_script_and_python_m_use_the_launcher(promoted, tmp_path):
    import shutil
    import sysconfig

    script = os.path.join(sysconfig.get_path("scripts"), "canonry")
    if not os.path.exists(script):
        script = shutil.which("canonry")
    assert script, "the canonry console script is not installed"
    with open(script, encoding="utf-8", errors="replace") as f:
        text = f.read()
    if "pyenv" not in text:  # a pyenv shim only execs the real script
        assert "canonry.cli.launcher" in text
    args = ["-C", str(promoted), "show", "model/first-collection:production"]
    via_m = subprocess.run([sys.executable, "-m", "canonry", *args], capture_output=True, text=True,
                           timeout=60)
    assert via_m.returncode == 0 and via_m.stdout == _run(CLICK, args, tmp_path)[1]


# ---- `canonry --help` ---------------------------------------------------------------------------
@pytest.mark.parametrize("columns", ["", "50", "66", "80", "100", "101", "160"])
@pytest.mark.parametrize("option", ["--help", "-h"])
def test_help_answers_like_click(tmp_path, columns, option):
    env = dict(os.environ, COLUMNS=columns)  # "" is no terminal: 80 columns
    fast = _run(LAUNCHER, [option], tmp_path, env)
    assert fast == _run(CLICK, [option], tmp_path, env)
    assert fast[0] == 0 and fast[1].startswith("Usage: canonry [OPTIONS] COMMAND [ARGS]...")


def test_help_does_not_import_click(tmp_path):
    code = ("import sys\nfrom canonry.cli.launcher import main\n"
            "try:\n    main(['--help'])\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print(sorted(m for m in sys.modules if m == 'click' or m.startswith('canonry.cli.') and m not in " + LAUNCHER_MODULES + "))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "['canonry.cli.help']"


@pytest.mark.parametrize("text", [
    *(short for _module, _attribute, short in BUILTIN_COMMANDS.values()),
    "Pull, then push.", "Define group NAME as EMAIL...", "One. Two.", "word " * 30, "x" * 60,
    "First paragraph without a full stop\n\nSecond paragraph.", "",
])
def test_short_help_is_shortened_as_click_would(text):
    import click

    for limit in range(1, 100):
        assert short_help(text, limit) == click.Command("c", help=text).get_short_help_str(limit), limit
