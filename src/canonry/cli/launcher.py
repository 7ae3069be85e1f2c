"""The `canonry` console script: answers `canonry [-C PATH] show TARGET [--json]` and
`canonry --help` without click, hands every other command line to the click CLI (app.py).

Why: `show` is what scripts and deploy jobs call, often in loops, and a fresh process has a
tight budget for it, as has `--help` (docs/performance.md). Importing click (and what it
imports: inspect, uuid, platform, datetime, gettext, locale) would spend a fifth of it before
any work. Only the exact
shapes below are taken here; anything else (another option, a second target, `--help` when a
plugin may add commands) goes to click, which prints the same output and the same one-line
errors for these shapes (tests/test_launcher.py compares the two).
"""
from __future__ import annotations

import sys

from canonry.cli.messages import fail, os_error_message

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if args in (["--help"], ["-h"]):
        from canonry.automation.entrypoints import entry_point_plugins_may_exist
        from canonry.automation.trust import store_plugins_may_exist
        from canonry.cli.help import top_level_help

        # else click lists the commands plugins add (installed ones, or the store's trusted ones)
        if not entry_point_plugins_may_exist() and not store_plugins_may_exist(None):
            sys.stdout.write(top_level_help())
            sys.stdout.flush()
            sys.exit(0)
    parsed = _show_command(args)
    if parsed is None:
        from canonry.cli.app import main as click_main

        return click_main(args)
    path, target, as_json = parsed
    sys.exit(_show(path, target, as_json))


def _show_command(args: list[str]) -> tuple[str | None, str, bool] | None:
    """(store path, target, --json) when `args` is `[-C PATH] show TARGET [--json]`, else None."""
    path = None
    if len(args) >= 2 and args[0] == "-C" and args[1] and not args[1].startswith("-"):
        path, args = args[1], args[2:]
    if not args or args[0] != "show":
        return None
    rest = args[1:]
    as_json = rest.count("--json") == 1
    if as_json:
        rest.remove("--json")
    if len(rest) != 1 or not rest[0] or rest[0].startswith("-"):
        return None
    return path, rest[0], as_json


def _show(path: str | None, target: str, as_json: bool) -> int:
    from canonry.errors import CanonryError

    try:
        from canonry.store import open_store

        data = open_store(path).show(target)
    except CanonryError as e:
        return fail(str(e), e.exit_code)
    except OSError as e:
        return fail(os_error_message(e), 1)
    if as_json:
        from canonry.output import emit_json

        emit_json(data)
    else:
        from canonry.cli.render import render_show

        sys.stdout.write(render_show(data) + "\n")
    sys.stdout.flush()
    return 0
