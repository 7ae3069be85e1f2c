"""Issue 14, the holes in trust and plugins: a proposal branch cannot grant itself trust, hooks
are called through pluggy (order, wrappers), required plugins refuse writes while not loaded,
failed deliveries are warned about at the command, auto-alias compares with every version,
and `--help` lists a trusted store plugin's commands."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _plugin_helpers import *

import canonry
from canonry.errors import PolicyRefused

HAND = ("-c", "user.name=Ada Lovelace", "-c", f"user.email={ACTOR_EMAIL}")  # a store admin


def _hand_commit(path, message="hand edit"):
    git("-C", path, "add", "-A")
    git("-C", path, *HAND, "commit", "-q", "-m", message)


def _edit_config(path, change):
    cfg = Path(path) / "canonry.yaml"
    data = yaml.safe_load(cfg.read_text())
    change(data)
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))


def _linked_store(mkstore, tmp_path, *metrics):
    path = mkstore()
    s = canonry.open(str(path))
    for value in metrics or (None,):
        v = s.log_artifact(artifact_file(tmp_path), name="m", type="model",
                           metrics={"accuracy": value} if value is not None else {})
        s.link(v.address, "model/coll")
    return path, s


def _aliases(store, collection):
    return {k: v for k, v in store.collection(collection).aliases.items() if k != "latest"}


# ---- 1. a proposal branch cannot grant itself trust ------------------------------------------------
EVIL = """
    from canonry import hookimpl
    open({marker!r}, "a").write("imported\\n")

    @hookimpl
    def check_change(events):
        open({marker!r}, "a").write("asked\\n")
"""


def _evil_branch(path, marker):
    """Branch `evil` trusts local plugins (and automations) and brings plugins/evil.py."""
    git("-C", path, "checkout", "-q", "-b", "evil")
    write_plugin(Path(path) / "plugins", "evil", EVIL.format(marker=str(marker)))
    _edit_config(path, lambda d: d.update(trust_local_plugins=True, trust_local_automations=True))
    _hand_commit(path, "trust myself")
    git("-C", path, "checkout", "-q", "main")


@pytest.mark.parametrize("args", [
    ["tag", "add", "model/coll", "x"],
    ["link", "m:v0", "model/other"],
    ["alias", "set", "model/coll:v0", "staging"],
])
def test_a_proposal_branch_cannot_grant_itself_trust(mkstore, tmp_path, args):
    path, _s = _linked_store(mkstore, tmp_path)
    marker = tmp_path / "evil-ran"
    _evil_branch(path, marker)
    before = head(path, "evil")
    out = run_canonry("-C", path, *args, "--branch", "evil")
    assert out.exit_code == 0, out
    assert head(path, "evil") != before  # the write still works, on the branch
    assert not marker.exists()
    # the Python API and validate (even trusting local plugins) do not run it either
    canonry.open(str(path), branch="evil").tag("model/coll", "y")
    assert canonry.open(str(path)).validate("main..evil", trust_local_plugins=True) is not None
    assert not marker.exists()


def test_trust_and_plugins_come_from_the_store_branch(mkstore, tmp_path):
    """Once main trusts and holds the plugin (merged after review), it runs, on every branch."""
    path, _s = _linked_store(mkstore, tmp_path)
    marker = tmp_path / "evil-ran"
    _evil_branch(path, marker)
    git("-C", path, "merge", "-q", "--ff-only", "evil")
    out = run_canonry("-C", path, "tag", "add", "model/coll", "x", "--branch", "proposal")
    assert out.exit_code == 0, out
    assert marker.read_text().splitlines() == ["imported", "asked"]


def test_a_proposal_branch_cannot_turn_on_command_automations(mkstore, tmp_path):
    path, s = _linked_store(mkstore, tmp_path)
    done = tmp_path / "command-ran"
    s.set_automations([{"name": "run-it", "on": "alias.added", "action": "command",
                        "with": {"command": [sys.executable, "-c", f"open({str(done)!r}, 'w')"]}}])
    s.set_alias("model/coll:v0", "production")  # refused: main does not trust local automations
    assert not done.exists()
    _evil_branch(path, tmp_path / "unused")
    # delivering main's events again from a store opened on the branch that trusts itself
    canonry.open(str(path), branch="evil").run_automations("HEAD~1..main")
    assert not done.exists()
    (run,) = [r for r in s.automation_log() if r["receiver"] == "automation:run-it"][:1]
    assert run["status"] == "error" and "trust_local_automations" in run["error"]


# ---- 2. hooks called through pluggy: order, wrappers -----------------------------------------------
def _order_plugin(directory, name, marker, opts="", refuse=False):
    write_plugin(directory, name, f"""
        from canonry import hookimpl

        @hookimpl({opts})
        def link_created(event):
            open({str(marker)!r}, "a").write({name!r} + "\\n")

        @hookimpl({opts})
        def check_change(events):
            return {"'refused by ' + " + repr(name) if refuse else "None"}
    """)


def test_hooks_run_in_pluggys_order(mkstore, plugin_dir, tmp_path):
    marker = tmp_path / "order"
    _order_plugin(plugin_dir, "early", marker, "tryfirst=True")  # loaded in name order
    _order_plugin(plugin_dir, "late", marker, "trylast=True")
    _order_plugin(plugin_dir, "middle", marker)
    path = mkstore()
    s = canonry.open(str(path), plugins_dir=str(plugin_dir))
    s.log_artifact(artifact_file(tmp_path), name="m", type="model")
    s.link("m:v0", "model/coll")
    assert marker.read_text().splitlines() == ["early", "middle", "late"]


def test_check_change_asks_tryfirst_first(mkstore, plugin_dir, tmp_path):
    marker = tmp_path / "unused"
    _order_plugin(plugin_dir, "a_plain", marker, refuse=True)
    _order_plugin(plugin_dir, "z_first", marker, "tryfirst=True", refuse=True)
    path = mkstore()
    s = canonry.open(str(path), plugins_dir=str(plugin_dir))
    with pytest.raises(PolicyRefused, match="refused by plugin z_first: refused by z_first"):
        s.log_artifact(artifact_file(tmp_path), name="m", type="model")


WRAPPERS = """
    from canonry import hookimpl

    @hookimpl(hookwrapper=True)
    def check_change(events):
        outcome = yield                       # old style: sees the outcome, changes nothing

    @hookimpl(wrapper=True)
    def link_created(event):
        result = yield
        open({marker!r}, "a").write("wrapped " + event.target + "\\n")
        return result
"""

FORGIVING = """
    from canonry import hookimpl

    @hookimpl(wrapper=True)
    def check_change(events):
        result = yield
        return [r for r in result if "forgivable" not in r]
"""

REFUSING = """
    from canonry import hookimpl

    @hookimpl
    def check_change(events):
        return "forgivable refusal"
"""


def test_wrappers_are_wrappers(mkstore, plugin_dir, tmp_path):
    """A wrapper is run by pluggy around each implementation: its generator is never taken for
    a refusal, and what it returns is the answer."""
    marker = tmp_path / "wrapped"
    write_plugin(plugin_dir, "wrappers", WRAPPERS.format(marker=str(marker)))
    Hooks(plugin_dir, "recorder")
    path = mkstore()
    s = canonry.open(str(path), plugins_dir=str(plugin_dir))
    s.log_artifact(artifact_file(tmp_path), name="m", type="model")  # not refused by a generator
    s.link("m:v0", "model/coll")
    assert marker.read_text().splitlines() == ["wrapped model/coll:v0"]
    assert [r["status"] for r in s.automation_log()] == ["ok"] * len(s.automation_log())

    write_plugin(plugin_dir, "refusing", REFUSING)
    with pytest.raises(PolicyRefused, match="forgivable refusal"):
        canonry.open(str(path), plugins_dir=str(plugin_dir)).tag("model/coll", "x")
    write_plugin(plugin_dir, "forgiving", FORGIVING)
    canonry.open(str(path), plugins_dir=str(plugin_dir)).tag("model/coll", "x")  # the wrapper forgave
    # validate asks the same way
    git("-C", path, "checkout", "-q", "-b", "review")
    coll = path / "registries/model/coll/collection.yaml"
    coll.write_text(coll.read_text().replace("- x", "- y"))
    _hand_commit(path)
    assert canonry.open(str(path), plugins_dir=str(plugin_dir)).validate("main..review") == []
    (plugin_dir / "forgiving.py").unlink()
    (finding,) = canonry.open(str(path), plugins_dir=str(plugin_dir)).validate("main..review")
    assert finding.rule == "policy" and "refused by plugin refusing: forgivable refusal" in finding.message


def test_a_hook_implemented_under_another_name_is_reported(mkstore, plugin_dir):
    write_plugin(plugin_dir, "renamed", """
        from canonry import hookimpl

        @hookimpl(specname="link_created")
        def on_link(event):
            pass
    """)
    out = invoke("-C", mkstore(), "--plugins-dir", plugin_dir, "plugins", "--json")
    (info,) = [i for i in out.json() if i["name"] == "renamed"]
    assert not info["loaded"] and "name the function link_created" in info["error"]


# ---- 3. required plugins ---------------------------------------------------------------------------
STRICT = """
    from canonry import hookimpl

    @hookimpl
    def check_change(events):
        for e in events:
            if e.alias == "production":
                return "production is frozen"

    @hookimpl
    def check_chnage(events):   # misspelled: the module does not load
        pass
"""


def _strict_store(mkstore, tmp_path, required=("strict",)):
    path, _s = _linked_store(mkstore, tmp_path, 0.9, 0.8)
    write_plugin(path / "plugins", "strict", STRICT)
    _edit_config(path, lambda d: d.update(trust_local_plugins=True, required_plugins=list(required)))
    _hand_commit(path, "require the strict policy")
    return path


def test_a_write_is_refused_while_a_required_plugin_does_not_load(mkstore, tmp_path):
    path = _strict_store(mkstore, tmp_path)
    before = head(path)
    out = run_canonry("-C", path, "alias", "set", "model/coll:v1", "production")
    line = one_line_error(out)
    assert "required plugin 'strict' is not loaded" in line and "check_chnage" in line, line
    assert head(path) == before
    # on a proposal branch too, and through the Python API
    out = run_canonry("-C", path, "tag", "add", "model/coll", "x", "--branch", "p")
    assert "required plugin 'strict'" in one_line_error(out)
    with pytest.raises(PolicyRefused, match="required plugin 'strict'"):
        canonry.open(str(path)).tag("model/coll", "x")
    with pytest.raises(PolicyRefused, match="plugins are off"):
        canonry.open(str(path), load_plugins=False).tag("model/coll", "x")
    assert head(path) == before and head(path, "p") is None
    # validate says so too
    out = run_canonry("-C", path, "validate")
    assert out.exit_code == 1 and "required-plugin" in out.stdout and "strict" in out.stdout, out

    # fixed: the policy loads and does its job
    write_plugin(path / "plugins", "strict", STRICT.split("    @hookimpl\n    def check_chnage")[0])
    _hand_commit(path, "fix the policy")
    out = run_canonry("-C", path, "alias", "set", "model/coll:v1", "production")
    assert "refused by plugin strict: production is frozen" in one_line_error(out)
    assert run_canonry("-C", path, "alias", "set", "model/coll:v1", "staging").exit_code == 0
    out = run_canonry("-C", path, "validate", "--trust-local-plugins")
    assert out.exit_code == 0, out
    # validate without --trust-local-plugins cannot vouch for it
    out = run_canonry("-C", path, "validate")
    assert out.exit_code == 1 and "--trust-local-plugins" in out.stdout, out
    # blocking it by name does not switch it off
    out = run_canonry("-C", path, "alias", "set", "model/coll:v0", "staging",
                      env={"CANONRY_PLUGINS": "-strict"})
    assert "CANONRY_PLUGINS" in one_line_error(out)


def test_a_missing_required_plugin_refuses_writes(mkstore, tmp_path):
    path, _s = _linked_store(mkstore, tmp_path)
    _edit_config(path, lambda d: d.update(required_plugins=["nowhere"]))
    _hand_commit(path, "require a plugin nobody installed")
    out = invoke("-C", path, "tag", "add", "model/coll", "x")
    assert "required plugin 'nowhere' is not loaded: no plugin of that name was found" in one_line_error(out)
    # a proposal branch cannot drop the requirement for itself
    git("-C", path, "checkout", "-q", "-b", "loose")
    _edit_config(path, lambda d: d.pop("required_plugins"))
    _hand_commit(path, "no requirements here")
    git("-C", path, "checkout", "-q", "main")
    assert "nowhere" in one_line_error(invoke("-C", path, "tag", "add", "model/coll", "x", "--branch", "loose"))


# ---- 4. failures are visible at the command --------------------------------------------------------
def test_failed_deliveries_are_warned_about(mkstore, tmp_path, plugin_dir, webhook_server):
    server = webhook_server()
    server.plan = [500] * 10
    write_plugin(plugin_dir, "raiser", """
        from canonry import hookimpl

        @hookimpl
        def alias_added(event):
            raise RuntimeError("plugin broke")
    """)
    path, s = _linked_store(mkstore, tmp_path)
    s.set_automations([{"name": "deploy", "on": "alias.added", "action": "webhook",
                        "with": {"url": server.url, "retries": 0}}])
    out = invoke("-C", path, "--plugins-dir", plugin_dir, "alias", "set", "model/coll:v0", "production")
    assert out.exit_code == 0, out
    assert out.stdout == "set production -> model/coll:v0\n"
    lines = out.stderr.splitlines()
    assert sorted(lines) == [
        "canonry: warning: automation deploy failed: " + next(
            r["error"] for r in s.automation_log() if r["receiver"] == "automation:deploy")
        + "; see `canonry automations log`",
        "canonry: warning: plugin raiser failed: RuntimeError: plugin broke; see `canonry automations log`",
    ], out
    # a write whose deliveries succeed says nothing more
    server.plan = []
    out = invoke("-C", path, "alias", "set", "model/coll:v0", "staging")
    assert out.exit_code == 0 and out.stderr == "", out


# ---- 5. auto-alias compares with every linked version ----------------------------------------------
def test_auto_alias_best_compares_with_every_linked_version(mkstore, tmp_path):
    _path, s = _linked_store(mkstore, tmp_path, 0.89)  # v0, linked before the automation
    s.set_automations([{"name": "keep-best", "on": "link.created", "action": "auto-alias",
                        "with": {"alias": "best", "metric": "accuracy"}}])

    def link(acc):
        v = s.log_artifact(artifact_file(tmp_path), name="m", type="model", metrics={"accuracy": acc})
        return s.link(v.address, "model/coll").version

    link(0.85)
    assert _aliases(s, "model/coll") == {}  # v0 (0.89) is better: nobody gets best
    (run,) = [r for r in s.automation_log() if r["receiver"] == "automation:keep-best"]
    assert run["result"] == {"moved": False, "why": "accuracy 0.85 does not beat v0's 0.89"}
    assert link(0.95) == "v2"
    assert _aliases(s, "model/coll") == {"best": "v2"}
    s.remove_alias("model/coll", "best")
    link(0.90)  # beats v0 and v1, not v2: no holder, still no best
    assert _aliases(s, "model/coll") == {}


# ---- 6. `--help` lists a trusted store plugin's commands -------------------------------------------
COMMAND = """
    import click
    from canonry import hookimpl

    @hookimpl
    def register_commands(cli):
        @cli.command("hello")
        def hello():
            '''Say hello (a store plugin).'''
            click.echo("hello")
"""


def test_help_lists_a_trusted_store_plugins_commands(mkstore):
    path = mkstore()
    write_plugin(path / "plugins", "greeter", COMMAND)
    _hand_commit(path, "a command plugin")
    for args, cwd in ((["--help"], path), (["-C", path, "--help"], None)):
        assert "hello" not in run_canonry(*args, cwd=cwd).stdout  # not trusted
    _edit_config(path, lambda d: d.update(trust_local_plugins=True))
    _hand_commit(path, "trust it")
    for args, cwd in ((["--help"], path), (["-C", path, "--help"], None)):
        out = run_canonry(*args, cwd=cwd)
        assert out.exit_code == 0, out
        assert "  hello " in out.stdout and "Say hello (a store plugin)." in out.stdout, out


def test_help_in_a_store_that_does_not_trust_stays_without_click(mkstore):
    path = mkstore()
    write_plugin(path / "plugins", "greeter", COMMAND)
    _hand_commit(path, "a command plugin, not trusted")
    code = ("import sys\nfrom canonry.cli.launcher import main\n"
            "try:\n    main(['--help'])\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print('click' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "False"
