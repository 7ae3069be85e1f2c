"""Every hook specification has its own section in docs/plugins.md: an undocumented hook fails."""
from __future__ import annotations

import re
from pathlib import Path

import pluggy

import canonry.automation.hookspecs

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def _hookspec_names() -> set[str]:
    pm = pluggy.PluginManager("canonry")
    pm.add_hookspecs(canonry.automation.hookspecs)
    names = {name for name, caller in pm.hook.__dict__.items()
             if not name.startswith("_") and getattr(caller, "spec", None) is not None}
    # cross-check against the marker pluggy leaves on each spec function
    marked = {name for name, obj in vars(canonry.automation.hookspecs).items()
              if callable(obj) and hasattr(obj, "canonry_spec")}
    assert names == marked, (names, marked)
    return names


def test_hookspecs_are_found():
    names = _hookspec_names()
    assert {"link_created", "link_removed", "alias_added", "alias_moved", "alias_removed",
            "artifact_logged", "tags_changed", "collection_changed", "registry_changed",
            "check_change", "register_commands"} <= names


def test_every_hook_has_a_section_in_docs_plugins_md():
    assert DOCS.is_file(), f"{DOCS} is missing"
    headings = [line for line in DOCS.read_text(encoding="utf-8").splitlines()
                if re.match(r"^#{1,6}\s", line)]
    documented = {name for line in headings for name in re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)", line)}
    missing = sorted(_hookspec_names() - documented)
    assert not missing, f"hooks without a section (a heading naming them in backticks) in {DOCS}: {missing}"


def test_every_hook_section_has_a_signature_and_an_example():
    """Each hook's section shows its signature and an example plugin (a code block using
    @hookimpl and defining the hook)."""
    assert DOCS.is_file(), f"{DOCS} is missing"
    text = DOCS.read_text(encoding="utf-8")
    sections = re.split(r"(?m)^(?=#{1,6}\s)", text)
    problems = []
    for name in sorted(_hookspec_names()):
        body = "".join(s for s in sections if re.match(rf"^#{{1,6}}\s.*`{name}\b", s))
        if not body:
            problems.append(f"{name}: no section")
            continue
        if not re.search(rf"{name}\(", body):
            problems.append(f"{name}: no signature")
        if "```" not in body or "hookimpl" not in body or not re.search(rf"def {name}\(", body):
            problems.append(f"{name}: no example plugin")
    assert not problems, problems
