"""Which code runs and which events are delivered (issue 14): automations fire only for commits on
the store branch, with the store branch's definitions; a write to a proposal branch fires
nothing; `python -m canonry` run inside a checkout imports nothing from it. Real repositories,
real HTTP servers on 127.0.0.1, real processes."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from _plugin_helpers import *

# ---- `python -m canonry` imports nothing from the current directory ---------------------------------


def _evil_checkout(where, marker) -> None:
    """A folder holding a fake distribution that declares a canonry entry point whose module,
    in the same folder, writes `marker` when imported."""
    info = where / "evil_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evil-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[canonry]\nevil = evil_plugin\n")
    (where / "evil_plugin.py").write_text(textwrap.dedent(f"""
        open({str(marker)!r}, "w").write("imported")
        from canonry import hookimpl

        @hookimpl
        def alias_added(event):
            pass
    """))


def _console_script() -> list[str]:
    import shutil
    import sysconfig

    script = os.path.join(sysconfig.get_path("scripts"), "canonry")
    return [script] if os.path.exists(script) else [shutil.which("canonry") or "canonry"]


@pytest.mark.parametrize("how", ["python -m canonry", "console script"])
@pytest.mark.parametrize("args", [["plugins"], ["--help"], ["plugins", "--json"]])
def test_python_m_canonry_does_not_import_the_current_directory(tmp_path, how, args):
    checkout = tmp_path / "checkout"
    marker = tmp_path / "MARKER"
    _evil_checkout(checkout, marker)
    command = [sys.executable, "-m", "canonry"] if how == "python -m canonry" else _console_script()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    proc = subprocess.run([*command, *args], cwd=checkout, capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists(), f"{how} imported evil_plugin from its current directory"
    assert "evil" not in proc.stdout + proc.stderr
    assert "webhook" in proc.stdout or args == ["--help"]


def test_python_m_canonry_still_runs_from_a_source_folder(tmp_path):
    """Run from the folder canonry itself is imported from (a source tree not installed): that
    folder stays on the path."""
    import canonry

    src = os.path.dirname(os.path.dirname(os.path.abspath(canonry.__file__)))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    proc = subprocess.run([sys.executable, "-m", "canonry", "--help"], cwd=src, capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0 and proc.stdout.startswith("Usage: canonry"), proc.stderr
