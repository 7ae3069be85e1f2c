"""Whether any installed distribution may declare plugins in entry-point group `canonry`, found
without importlib.metadata.

Why: importlib.metadata is costly (its imports, then every distribution's metadata), paid by
`--help` and by every command that loads plugins; reading the entry_points.txt files found on
sys.path costs a tenth of that, and most installs declare no canonry plugin at all (figures in
docs/performance.md).
"""
from __future__ import annotations

import os
import sys

__all__ = ["entry_point_plugins_may_exist"]


def entry_point_plugins_may_exist() -> bool:
    """Whether a distribution on sys.path may declare entry points in group `canonry`. A yes
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
