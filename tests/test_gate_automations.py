"""Which code runs and which events are delivered (issue 14): automations fire only for commits on
the store branch, with the store branch's definitions; a write to a proposal branch fires
nothing; `python -m canonry` run inside a checkout imports nothing from it. Real repositories,
real HTTP servers on 127.0.0.1, real processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml
from _plugin_helpers import *
from _remote_helpers import ALICE, BOB, env_var, open_as, rev, unique_file
from _remote_helpers import invoke as run
from conftest import assert_one_line_error

import canonry
from canonry.errors import InvalidInput

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


# ---- automations fire only for the store branch, with its definitions ----------------------------------

DEPLOY_SECRET = "whsec-deploy-4f1c-not-in-the-repo"


def _deploy(url: str) -> dict:
    return {"name": "deploy", "on": ["alias.added", "alias.moved"], "filter": {"alias": "^production$"},
            "action": "webhook", "with": {"url": url, "secret_env": "DEPLOY_HOOK_SECRET", "timeout": 5,
                                          "retries": 0}}


@pytest.fixture
def deployment(tmp_path, monkeypatch, webhook_server):
    """(store path, the deployment's receiver, the attacker's receiver): main, made by Alice,
    with gemma-finetuned v0 and v1 linked in model/mnist (production on v0) and a signed deploy
    webhook to the deployment's receiver; the signing secret is in the environment."""
    monkeypatch.setenv("DEPLOY_HOOK_SECRET", DEPLOY_SECRET)
    legit, attacker = webhook_server(secret=DEPLOY_SECRET), webhook_server(secret=DEPLOY_SECRET)
    path = tmp_path / "store"
    with env_var("CANONRY_ACTOR", ALICE):
        s = canonry.init(str(path))
    for _ in range(2):
        s.log_artifact(unique_file(tmp_path), name="gemma-finetuned", type="model")
    s.link("gemma-finetuned:v0", "model/mnist", aliases=["production"])
    s.link("gemma-finetuned:v1", "model/mnist")
    s.set_automations([_deploy(legit.url)])
    legit.requests.clear()
    return path, legit, attacker


def _hand_commit_automations(path, branch: str, automations: list, author=("Bob Builder", "bob@example.com")):
    """On `branch` (made from main if missing), a git commit replacing canonry.yaml's automations."""
    exists = git("-C", path, "rev-parse", "--verify", "-q", f"refs/heads/{branch}", check=False).strip()
    git("-C", path, "checkout", "-q", *([] if exists else ["-b"]), branch)
    config = yaml.safe_load((path / "canonry.yaml").read_text())
    config["automations"] = automations
    (path / "canonry.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git("-C", path, "-c", f"user.name={author[0]}", "-c", f"user.email={author[1]}",
        "commit", "-q", "-am", "automations")
    git("-C", path, "checkout", "-q", "main")


def _evilhook(path, attacker) -> None:
    """Branch evilhook: its canonry.yaml sends deploys to the attacker (by hand), then Bob moves
    production there with canonry (`alias set --branch evilhook`)."""
    _hand_commit_automations(path, "evilhook", [_deploy(attacker.url)])
    r = run("-C", path, "alias", "set", "model/mnist:v1", "production", "--branch", "evilhook", actor=BOB)
    assert r.exit_code == 0, r


def test_a_write_to_a_proposal_branch_fires_nothing(deployment):
    """A proposal is not the registry (W&B fires on the registry): neither the store branch's
    webhook nor the branch's own fires for a write with --branch."""
    path, legit, attacker = deployment
    _evilhook(path, attacker)
    assert legit.requests == [] and attacker.requests == []
    assert canonry.open(str(path)).automation_log() == []


def test_automations_run_refuses_a_range_off_the_store_branch(deployment):
    path, legit, attacker = deployment
    _evilhook(path, attacker)
    before = rev(path, "refs/notes/canonry-automations")
    r = run("-C", path, "automations", "run", "main..evilhook", actor=ALICE)
    line = assert_one_line_error(r)
    tip = rev(path, "evilhook")
    assert f"main..evilhook: commit {tip[:10]} (and 1 more) is not on the store branch main" in line, line
    assert attacker.requests == [] and legit.requests == []
    assert rev(path, "refs/notes/canonry-automations") == before  # nothing recorded either
    # one commit of the branch named alone, by id: the same
    line = assert_one_line_error(run("-C", path, "automations", "run", tip, actor=ALICE))
    assert "not on the store branch main" in line
    assert attacker.requests == []


def test_automations_run_and_fire_refuse_from_python(deployment):
    path, legit, attacker = deployment
    _evilhook(path, attacker)
    for store in (open_as(path, ALICE), open_as(path, BOB, branch="evilhook")):
        with pytest.raises(InvalidInput, match="not on the store branch main"):
            store.run_automations("main..evilhook")
        with pytest.raises(InvalidInput, match="not on the store branch main"):
            store.fire(store.events("main..evilhook"))
    assert attacker.requests == [] and legit.requests == []


def test_a_side_branch_commit_brought_in_by_a_git_merge_is_delivered_only_as_the_merge(deployment):
    """Reachable is not enough: a commit a merge brought in from a side branch never was a state
    of the store branch. Its change is delivered as the merge's event, with main's definitions."""
    path, legit, attacker = deployment
    _evilhook(path, attacker)
    before = rev(path)
    # Alice merges the alias move with git, keeping main's canonry.yaml (the attacker's hook stays out)
    git("-C", path, "merge", "-q", "--no-ff", "--no-commit", "evilhook")
    git("-C", path, "checkout", "main", "--", "canonry.yaml")
    git("-C", path, "-c", "user.name=Alice Archer", "-c", "user.email=alice@example.com",
        "commit", "-q", "-m", "merge evilhook by hand")
    assert attacker.url not in (path / "canonry.yaml").read_text()
    tip = rev(path, "evilhook")
    line = assert_one_line_error(run("-C", path, "automations", "run", f"{before}..{tip}", actor=ALICE))
    assert "not on the store branch main" in line
    assert attacker.requests == []
    # the merge itself is on main: its events go to the receiver main's head defines
    r = run("-C", path, "automations", "run", f"{before}..main", "--json", actor=ALICE)
    assert r.exit_code == 0, r
    assert [(o["receiver"], o["kind"], o["status"]) for o in r.json()] == \
        [("automation:deploy", "alias.moved", "ok")]
    assert attacker.requests == [] and len(legit.requests) == 1 and legit.requests[0]["signature_valid"]


def test_definitions_come_from_the_store_branch_head_not_the_commit(deployment, monkeypatch, webhook_server):
    """An event delivered late (the secret was missing) goes where main's head now says, not
    where the commit's own canonry.yaml said: a receiver removed from main stays removed."""
    path, old_receiver, _attacker = deployment
    monkeypatch.delenv("DEPLOY_HOOK_SECRET")
    s = open_as(path, ALICE)
    s.set_alias("model/mnist:v1", "production")
    moved = rev(path)
    assert [r["status"] for r in s.automation_log()] == ["error"]  # not delivered: no secret
    new_receiver = webhook_server(secret=DEPLOY_SECRET)
    s.set_automations([_deploy(new_receiver.url)])
    monkeypatch.setenv("DEPLOY_HOOK_SECRET", DEPLOY_SECRET)
    r = run("-C", path, "automations", "run", moved, "--json", actor=ALICE)
    assert r.exit_code == 0, r
    assert old_receiver.requests == []
    assert [json.loads(q["body"])["commit"] for q in new_receiver.requests] == [moved]
    # an automation switched off on main does not fire for old events either
    s.set_automations([])
    s2 = open_as(path, ALICE)
    s2.set_alias("model/mnist:v0", "production")
    assert len(new_receiver.requests) == 1
