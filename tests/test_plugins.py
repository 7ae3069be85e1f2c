"""Plugin loading: built-ins, entry points, the store's own plugins/ (only when trusted),
--plugins-dir; CANONRY_PLUGINS filters; broken plugins are reported and skipped."""
from __future__ import annotations

import json
import os
import sys

import pytest
from _plugin_helpers import *

import canonry

BUILTINS = {"webhook", "command", "policy", "auto_alias"}


def _by_name(infos):
    return {i["name"]: i for i in infos}


@pytest.fixture
def broken_dir(plugin_dir, tmp_path):
    """A plugins folder with three broken plugins and two good ones."""
    write_plugin(plugin_dir, "syntax_error", """
        from canonry import hookimpl
        def link_created(event:
    """)
    write_plugin(plugin_dir, "raises_on_import", """
        raise RuntimeError("cannot start: no GPU here")
    """)
    write_plugin(plugin_dir, "misspelled", """
        from canonry import hookimpl

        @hookimpl
        def link_creatd(event, store):
            pass
    """)
    marker = tmp_path / "good-calls.txt"
    write_plugin(plugin_dir, "good", f"""
        from canonry import hookimpl
        __version__ = "3.1"

        @hookimpl
        def link_created(event):          # a subset of the arguments is fine
            with open({str(marker)!r}, "a") as f:
                f.write(event.id + "\\n")
    """)
    Hooks(plugin_dir, "recorder")
    return plugin_dir


def test_broken_plugins_are_reported_and_the_rest_load(broken_dir, mkstore, tmp_path):
    path = mkstore()
    out = invoke("-C", path, "--plugins-dir", broken_dir, "plugins", "--json")
    assert out.exit_code == 0, out
    infos = _by_name(out.json())
    assert set(infos) >= BUILTINS
    for name in BUILTINS | {"good", "recorder"}:
        assert infos[name]["loaded"] is True and infos[name]["error"] is None, infos[name]
    for name in ("syntax_error", "raises_on_import", "misspelled"):
        assert infos[name]["loaded"] is False, infos[name]
        assert infos[name]["error"], infos[name]
        assert infos[name]["source"] == "dir"
        assert infos[name]["location"] == str(broken_dir / f"{name}.py")
    assert "SyntaxError" in infos["syntax_error"]["error"]
    assert "no GPU here" in infos["raises_on_import"]["error"]
    assert "link_creatd" in infos["misspelled"]["error"]
    assert infos["good"]["hooks"] == ["link_created"]
    assert infos["good"]["version"] == "3.1"
    assert infos["good"]["source"] == "dir"
    assert infos["recorder"]["version"] == "2.5"
    assert set(infos["recorder"]["hooks"]) == set(Hooks.HOOK_NAMES)
    assert infos["webhook"]["source"] == "builtin" and infos["webhook"]["hooks"] == ["automation_actions"]
    assert infos["policy"]["hooks"] == ["check_change"]
    # stdout is pure JSON; the skipped plugins are warned about on stderr
    for name in ("syntax_error", "raises_on_import", "misspelled"):
        assert name in out.stderr

    human = invoke("-C", path, "--plugins-dir", broken_dir, "plugins")
    assert human.exit_code == 0, human
    lines = {line.split()[0]: line for line in human.stdout.splitlines()[1:] if line.strip()}
    assert "NOT LOADED" in lines["misspelled"]
    assert "3.1" in lines["good"] and "link_created" in lines["good"]


def test_loaded_plugins_still_receive_events_next_to_broken_ones(broken_dir, mkstore, tmp_path):
    path = mkstore()
    s = canonry.open(str(path), plugins_dir=str(broken_dir))
    s.log_artifact(artifact_file(tmp_path), name="m", type="model")
    s.link("m:v0", "model/coll")
    calls = (tmp_path / "good-calls.txt").read_text().split()
    assert calls == [f"{head(path)}:1"]  # collection.created is :0, link.created :1
    recorded = (broken_dir / "recorder.calls.jsonl").read_text().splitlines()
    assert [json.loads(line)["kind"] for line in recorded] == \
        ["artifact.logged", "collection.created", "link.created"]


def test_plugins_listed_outside_a_store(broken_dir, tmp_path):
    out = invoke("--plugins-dir", broken_dir, "plugins", "--json")
    assert out.exit_code == 0, out
    infos = _by_name(out.json())
    assert BUILTINS | {"good"} <= {n for n, i in infos.items() if i["loaded"]}
    assert infos["misspelled"]["loaded"] is False


def test_plugins_dir_must_exist(mkstore, tmp_path):
    out = invoke("-C", mkstore(), "--plugins-dir", tmp_path / "nope", "plugins")
    assert out.exit_code == 2
    assert "nope" in out.stderr


def test_canonry_plugins_blocks_and_allows_by_name(broken_dir, mkstore, monkeypatch):
    path = mkstore()
    monkeypatch.setenv("CANONRY_PLUGINS", "-webhook")
    names = set(_by_name(invoke("-C", path, "--plugins-dir", broken_dir, "plugins", "--json").json()))
    assert "webhook" not in names
    assert {"command", "policy", "auto_alias", "good", "recorder"} <= names

    monkeypatch.setenv("CANONRY_PLUGINS", "webhook,good")
    names = set(_by_name(invoke("-C", path, "--plugins-dir", broken_dir, "plugins", "--json").json()))
    assert names == {"webhook", "good"}

    monkeypatch.setenv("CANONRY_PLUGINS", "-raises_on_import,-syntax_error,-misspelled")
    out = invoke("-C", path, "--plugins-dir", broken_dir, "plugins", "--json")
    assert all(i["loaded"] for i in out.json()), out
    assert "warning" not in out.stderr

    # a blocked plugin's code does not even run
    monkeypatch.setenv("CANONRY_PLUGINS", "-good,-recorder")
    s = canonry.open(str(path), plugins_dir=str(broken_dir))
    assert s.plugins.pm.get_plugin("good") is None
    s.log_artifact(artifact_file(path.parent), name="m", type="model")
    s.link("m:v0", "model/coll")
    assert not (path.parent / "good-calls.txt").exists()


def test_a_plugin_named_like_a_builtin_is_reported(plugin_dir, mkstore):
    write_plugin(plugin_dir, "webhook", """
        from canonry import hookimpl

        @hookimpl
        def link_created(event):
            pass
    """)
    out = invoke("-C", mkstore(), "--plugins-dir", plugin_dir, "plugins", "--json")
    hooks = [i for i in out.json() if i["name"] == "webhook"]
    assert [i["source"] for i in hooks] == ["builtin", "dir"]
    assert hooks[0]["loaded"] and not hooks[1]["loaded"]
    assert "already loaded" in hooks[1]["error"]


# ---- the store's own plugins/ folder ------------------------------------------------------------
LOCAL_PLUGIN = """
    from canonry import hookimpl
    __version__ = "0.0.1"
    open({marker!r}, "a").write("imported\\n")

    @hookimpl
    def link_created(event):
        open({marker!r}, "a").write("link " + event.target + "\\n")
"""


def _set_trust(path, value: bool, message="trust local plugins"):
    cfg = path / "canonry.yaml"
    text = cfg.read_text()
    old = f"trust_local_plugins: {str(not value).lower()}"
    assert old in text, text
    cfg.write_text(text.replace(old, f"trust_local_plugins: {str(value).lower()}"))
    git("-C", path, "commit", "-qam", message)


def _names(path, *extra):
    out = invoke("-C", path, *extra, "plugins", "--json")
    assert out.exit_code == 0, out
    return _by_name(out.json())


def test_store_plugins_load_only_when_trusted(mkstore, tmp_path):
    path = mkstore()
    marker = tmp_path / "local-plugin.log"
    write_plugin(path / "plugins", "local_hook", LOCAL_PLUGIN.format(marker=str(marker)))
    git("-C", path, "add", "plugins")
    git("-C", path, "commit", "-qm", "add a store plugin")

    # not trusted (the default written by init): never loaded, its code never runs
    assert "local_hook" not in _names(path)
    s = canonry.open(str(path))
    s.log_artifact(artifact_file(tmp_path), name="m", type="model")
    s.link("m:v0", "model/coll")
    assert not marker.exists()

    # trusting it in the work tree only (not committed) changes nothing: config comes from the branch
    cfg = path / "canonry.yaml"
    cfg.write_text(cfg.read_text().replace("trust_local_plugins: false", "trust_local_plugins: true"))
    assert "local_hook" not in _names(path)
    assert not marker.exists()
    git("-C", path, "checkout", "--", "canonry.yaml")

    _set_trust(path, True)
    info = _names(path)["local_hook"]
    assert info["loaded"] and info["source"] == "store" and info["hooks"] == ["link_created"]
    assert info["version"] == "0.0.1"
    assert info["location"] == "<store>/plugins/local_hook.py"
    marker.unlink()
    s = canonry.open(str(path))
    s.link("m:v0", "model/other")
    assert marker.read_text().splitlines() == ["imported", "link model/other:v0"]

    # and withdrawn again
    _set_trust(path, False, "stop trusting")
    marker.unlink()
    assert "local_hook" not in _names(path)
    assert not marker.exists()


def test_store_plugins_only_from_the_store_branch(mkstore, tmp_path):
    """A plugin in the work tree but not committed, or committed on a branch under review that
    also flips the trust switch, does not run when the store branch is used."""
    path = mkstore()
    marker = tmp_path / "review-plugin.log"
    git("-C", path, "checkout", "-qb", "review")
    write_plugin(path / "plugins", "sneaky", LOCAL_PLUGIN.format(marker=str(marker)))
    git("-C", path, "add", "plugins")
    git("-C", path, "commit", "-qm", "add plugin")
    _set_trust(path, True, "trust it (under review)")
    git("-C", path, "checkout", "-q", "main")
    assert not (path / "plugins").exists()

    assert "sneaky" not in _names(path)
    s = canonry.open(str(path))
    s.log_artifact(artifact_file(tmp_path), name="m", type="model")
    s.link("m:v0", "model/coll")
    assert not marker.exists()

    # an untracked plugins/ folder in the work tree of a trusted store is not loaded either
    _set_trust(path, True)
    write_plugin(path / "plugins", "untracked", LOCAL_PLUGIN.format(marker=str(marker)))
    assert "untracked" not in _names(path)
    assert not marker.exists()
    # ... but the user can pass it explicitly
    info = _names(path, "--plugins-dir", path / "plugins")["untracked"]
    assert info["loaded"] and info["source"] == "dir"


def test_broken_store_plugin_is_reported(mkstore, tmp_path):
    path = mkstore()
    write_plugin(path / "plugins", "bad_local", "import no_such_module_here\n")
    write_plugin(path / "plugins", "_private", "raise SystemExit('never imported')\n")
    git("-C", path, "add", "plugins")
    git("-C", path, "commit", "-qm", "plugins")
    _set_trust(path, True)
    infos = _names(path)
    assert infos["bad_local"]["loaded"] is False
    assert "no_such_module_here" in infos["bad_local"]["error"]
    assert "_private" not in infos
    assert {n for n, i in infos.items() if i["loaded"]} >= BUILTINS


# ---- entry points (a real distribution's metadata on sys.path) -------------------------------------
def _site_with_entry_points(tmp_path, modules: dict, extra_entries: str = "") -> dict:
    """A folder holding a real (uninstalled-by-pip, but real) distribution: canonry_extra 4.2,
    whose entry points in group `canonry` name the given modules. Returns the env to use it."""
    site = tmp_path / "site"
    dist = site / "canonry_extra-4.2.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: canonry-extra\nVersion: 4.2\n")
    entries = "".join(f"{name} = canonry_extra_{name}\n" for name in modules)
    (dist / "entry_points.txt").write_text("[canonry]\n" + entries + extra_entries)
    for name, code in modules.items():
        write_plugin(site, f"canonry_extra_{name}", code)
    return {"PYTHONPATH": os.pathsep.join([str(site), *sys.path])}


def test_entry_point_plugins(tmp_path, mkstore):
    env = _site_with_entry_points(
        tmp_path, {"extra": "from canonry import hookimpl\n\n@hookimpl\ndef alias_added(event):\n    pass\n"},
        "missing = canonry_no_such_module\n")
    out = run_canonry("-C", mkstore(), "plugins", "--json", env=env)
    assert out.exit_code == 0, out
    infos = _by_name(out.json())
    assert infos["extra"]["loaded"] and infos["extra"]["source"] == "entrypoint"
    assert infos["extra"]["version"] == "4.2"
    assert infos["extra"]["hooks"] == ["alias_added"]
    assert infos["missing"]["loaded"] is False and "canonry_no_such_module" in infos["missing"]["error"]
    blocked = run_canonry("-C", mkstore("store2"), "plugins", "--json",
                          env={**env, "CANONRY_PLUGINS": "-extra,-missing"})
    assert not {"extra", "missing"} & set(_by_name(blocked.json()))


# ---- register_commands ----------------------------------------------------------------------------
COMMANDS_PLUGIN = """
    import click
    from canonry import hookimpl

    @hookimpl
    def register_commands(cli):
        @cli.command("hello")
        @click.option("--name", default="world")
        def hello(name):
            '''Say hello (added by a plugin).'''
            click.echo(f"hello {name} from a plugin")

        @cli.command("count-artifacts")
        @click.pass_obj
        def count(ctx):
            '''How many artifacts the store has.'''
            click.echo(str(len(ctx.store().artifacts())))
"""


def test_register_commands_from_an_entry_point(tmp_path, mkstore):
    env = _site_with_entry_points(tmp_path, {"greeter": COMMANDS_PLUGIN})
    path = mkstore()
    s = canonry.open(str(path))
    s.log_artifact(artifact_file(tmp_path), name="a", type="model")
    s.log_artifact(artifact_file(tmp_path), name="b", type="dataset")

    out = run_canonry("hello", "--name", "Ada", env=env)
    assert out.exit_code == 0, out
    assert out.stdout == "hello Ada from a plugin\n"
    out = run_canonry("-C", path, "count-artifacts", env=env)
    assert out.exit_code == 0, out
    assert out.stdout.strip() == "2"
    helped = run_canonry("--help", env=env)
    assert helped.exit_code == 0 and "hello" in helped.stdout and "count-artifacts" in helped.stdout
    # without the plugin the command does not exist; built-ins still work
    missing = run_canonry("-C", path, "hello")
    assert missing.exit_code == 2 and "hello" in missing.stderr
    assert run_canonry("-C", path, "ls", env=env).exit_code == 0


def test_a_write_without_entry_point_plugins_does_not_import_importlib_metadata(tmp_path, mkstore):
    """importlib.metadata costs a fresh command ~25 ms: loading plugins skips it when no
    entry_points.txt on sys.path names group canonry; with one, the plugin loads (above)."""
    import subprocess

    # Asked in a fresh process, as the write below runs: this one may have imported a package
    # (mlflow brings importlib_metadata) that put a distribution finder on sys.meta_path.
    asked = subprocess.run([sys.executable, "-c", "from canonry.automation.entrypoints import "
                            "entry_point_plugins_may_exist as f; print(f())"],
                           capture_output=True, text=True, timeout=60)
    if asked.stdout.strip() != "False":
        pytest.skip("a distribution on this sys.path declares canonry entry points")
    path = mkstore()
    canonry.open(str(path)).log_artifact(artifact_file(tmp_path), name="a", type="model")
    code = ("import sys\nfrom canonry.cli.launcher import main\n"
            "try:\n    main(['-C', sys.argv[1], 'link', 'a:v0', 'model/c', '--alias', 'production'])\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print('importlib.metadata' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines() == ["linked a:v0 -> model/c:v0 [production]", "False"]


def test_help_lists_entry_point_commands_only_while_installed(tmp_path):
    """`--help` finds entry points by reading entry_points.txt (not importlib.metadata): an
    uninstall must drop the commands, and the scan may over-report but never miss one."""
    import importlib.metadata
    import shutil

    from canonry.automation.entrypoints import entry_point_plugins_may_exist as _entry_point_plugins_may_exist

    assert _entry_point_plugins_may_exist() or not importlib.metadata.entry_points(group="canonry")
    env = _site_with_entry_points(tmp_path, {"greeter": COMMANDS_PLUGIN})
    assert "count-artifacts" in run_canonry("--help", env=env).stdout
    shutil.rmtree(tmp_path / "site" / "canonry_extra-4.2.dist-info")
    helped = run_canonry("--help", env=env)
    assert helped.exit_code == 0 and "count-artifacts" not in helped.stdout


def test_a_failing_register_commands_does_not_break_the_cli(tmp_path, mkstore):
    env = _site_with_entry_points(tmp_path, {"greeter": COMMANDS_PLUGIN, "bad_commands": """
        from canonry import hookimpl

        @hookimpl
        def register_commands(cli):
            raise ValueError("broken command plugin")
    """})
    out = run_canonry("-C", mkstore(), "hello", env=env)
    assert out.exit_code == 0, out
    assert "hello world" in out.stdout
    assert "broken command plugin" in out.stderr


def test_register_commands_from_plugins_dir(plugin_dir, mkstore):
    """`canonry --plugins-dir DIR CMD`: the plugin's command must be found."""
    write_plugin(plugin_dir, "greeter", COMMANDS_PLUGIN)
    listed = _by_name(json.loads(run_canonry("--plugins-dir", plugin_dir, "plugins", "--json").stdout))
    assert listed["greeter"]["loaded"] and listed["greeter"]["hooks"] == ["register_commands"]
    out = run_canonry("--plugins-dir", plugin_dir, "hello", "--name", "Ada")
    assert out.exit_code == 0, out
    assert out.stdout == "hello Ada from a plugin\n"


def test_register_commands_from_plugins_dir_with_a_store(plugin_dir, mkstore, tmp_path):
    write_plugin(plugin_dir, "greeter", COMMANDS_PLUGIN)
    path = mkstore()
    canonry.open(str(path)).log_artifact(artifact_file(tmp_path), name="a", type="model")
    out = run_canonry("-C", path, "--plugins-dir", plugin_dir, "count-artifacts")
    assert out.exit_code == 0, out
    assert out.stdout.strip() == "1"


def test_register_commands_listed_in_help_with_plugins_dir(plugin_dir):
    write_plugin(plugin_dir, "greeter", COMMANDS_PLUGIN)
    helped = run_canonry("--plugins-dir", plugin_dir, "--help")
    assert helped.exit_code == 0, helped
    assert "hello" in helped.stdout and "count-artifacts" in helped.stdout


def test_register_commands_from_a_trusted_store_plugin(mkstore):
    path = mkstore()
    write_plugin(path / "plugins", "greeter", COMMANDS_PLUGIN)
    git("-C", path, "add", "plugins")
    git("-C", path, "commit", "-qm", "command plugin")
    assert run_canonry("-C", path, "hello").exit_code == 2  # not trusted
    _set_trust(path, True)
    out = run_canonry("-C", path, "hello")
    assert out.exit_code == 0, out
    assert out.stdout == "hello world from a plugin\n"
