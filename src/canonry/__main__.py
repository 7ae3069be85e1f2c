"""`python -m canonry`: the console script, with the console script's import path.

`python -m` puts the current directory first on sys.path (as '' or its full path); the console
script does not. Left there, a checkout's `*.dist-info/entry_points.txt` or a module named like
an installed one would be found and imported by the plugin scan: running `python -m canonry`
inside a repository under review would run that repository's code. So that entry is dropped
before anything else is imported, unless canonry itself was imported from it (running from a
source folder that is not installed).
"""
from __future__ import annotations

import os
import sys

__all__ = []  # run as a script, never imported for its names


def _drop_current_directory(path: list[str], here: str) -> None:
    """Remove the entry `python -m` put first in `path` for the current directory, unless it is
    `here` (the folder canonry was imported from)."""
    if not path or path[0] not in ("", os.curdir, os.getcwd()):
        return  # -P / PYTHONSAFEPATH, or an embedding that put nothing there
    if os.path.realpath(path[0] or os.curdir) == os.path.realpath(here):
        return
    del path[0]


_drop_current_directory(sys.path, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from canonry.cli.launcher import main  # noqa: E402  (after the import path is fixed)

main()
