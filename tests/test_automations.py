"""Delivering events: isolation (a failing or hanging plugin never undoes a commit or stops the
others), the run log in git notes, at-most-once delivery, policies, declarative automations
(filters, auto-alias, command)."""
from __future__ import annotations

import json
import os
import sys
import time

import pytest
from _plugin_helpers import *

import canonry
from canonry.automation.runlog import NOTES_REF
from canonry.errors import PolicyRefused

NOTES = "canonry-automations"


def _runs(path, *args):
    out = invoke("-C", path, "automations", "log", *args, "--json")
    assert out.exit_code == 0, out
    return out.json()


def _record_action_plugin(directory, log_path):
    """A plugin providing the action `record`: appends the event (and the automation's label)."""
    write_plugin(directory, "recording_action", f"""
        import json
        from canonry import hookimpl

        def record(event, params, store):
            with open({str(log_path)!r}, "a") as f:
                f.write(json.dumps({{"label": params.get("label"), **event.to_dict()}}) + "\\n")
            return {{"label": params.get("label", ""), "ignored": [1, 2]}}

        @hookimpl
        def automation_actions():
            return {{"record": record}}
    """)


def _aliases(store, collection):
    """The collection's aliases, without the computed `latest`."""
    return {k: v for k, v in store.collection(collection).aliases.items() if k != "latest"}


def _recorded(log_path):
    if not os.path.exists(log_path):
        return []
    return [json.loads(line) for line in open(log_path).read().splitlines()]


# ---- isolation: a raising plugin, a hanging plugin -------------------------------------------------
RAISING = """
    from canonry import hookimpl

    @hookimpl
    def link_created(event, store):
        raise RuntimeError("kaboom while handling " + event.target)
"""


def test_raising_plugin_others_run_commit_stays_failure_recorded(plugin_dir, mkstore, tmp_path):
    write_plugin(plugin_dir, "a_raiser", RAISING)  # sorts (and so runs) before the recorder
    rec = Hooks(plugin_dir, "z_recorder")
    path = mkstore()
    s = canonry.open(str(path), plugins_dir=str(plugin_dir))
    s.log_artifact(artifact_file(tmp_path), name="m", type="model")
    before = head(path)
    lv = s.link("m:v0", "model/coll")  # no exception reaches the caller
    after = head(path)
    assert after != before and lv.version == "v0"
    assert git("-C", path, "show", f"{after}:registries/model/coll/links/v0.yaml").startswith("format: 1")
    assert git("-C", path, "status", "--porcelain") == ""
    assert [c["kind"] for c in rec.calls()][-2:] == ["collection.created", "link.created"]

    runs = [r for r in s.automation_log() if r["commit"] == after]
    failed = [r for r in runs if r["receiver"] == "plugin:a_raiser"]
    assert len(failed) == 1
    assert failed[0]["status"] == "error"
    assert failed[0]["event"] == f"{after}:1" and failed[0]["kind"] == "link.created"
    assert "RuntimeError" in failed[0]["error"] and "kaboom while handling model/coll:v0" in failed[0]["error"]
    assert isinstance(failed[0]["duration_ms"], (int, float))
    ok = {(r["receiver"], r["kind"]) for r in runs if r["status"] == "ok"}
    assert ("plugin:z_recorder", "link.created") in ok and ("plugin:z_recorder", "collection.created") in ok

    # the CLI shows the same record, and git itself can read the note
    cli_runs = [r for r in _runs(path, "model/coll:v0") if r["receiver"] == "plugin:a_raiser"]
    assert cli_runs == failed
    note = git("-C", path, "notes", "--ref", NOTES, "show", after)
    lines = [json.loads(line) for line in note.splitlines()]
    assert {(r["receiver"], r["event"], r["status"]) for r in lines} == \
        {(r["receiver"], r["event"], r["status"]) for r in runs}
    human = invoke("-C", path, "automations", "log")
    assert "plugin:a_raiser" in human.stdout and "error" in human.stdout


def test_raising_plugin_through_the_cli_keeps_the_commit(plugin_dir, mkstore, tmp_path):
    write_plugin(plugin_dir, "a_raiser", RAISING)
    path = mkstore()
    canonry.open(str(path)).log_artifact(artifact_file(tmp_path), name="m", type="model")
    out = invoke("-C", path, "--plugins-dir", plugin_dir, "link", "m:v0", "model/coll")
    assert out.exit_code == 0, out
    assert "linked m:v0 -> model/coll:v0" in out.stdout
    assert [r["status"] for r in _runs(path) if r["receiver"] == "plugin:a_raiser"] == ["error"]
    # `automations run` reports the failure (exit 1) and retries it: failures are not "delivered"
    again = invoke("-C", path, "--plugins-dir", plugin_dir, "automations", "run", "HEAD")
    assert again.exit_code == 1, again
    assert "1 of 1 deliveries failed" in again.stderr
    assert [r["status"] for r in _runs(path) if r["receiver"] == "plugin:a_raiser"] == ["error", "error"]


def test_hanging_plugin_times_out(plugin_dir, mkstore, tmp_path, monkeypatch):
    release = tmp_path / "release"
    write_plugin(plugin_dir, "a_hang", f"""
        import os, time
        from canonry import hookimpl

        @hookimpl
        def link_created(event):
            t0 = time.time()
            while not os.path.exists({str(release)!r}) and time.time() - t0 < 20:
                time.sleep(0.02)
    """)
    rec = Hooks(plugin_dir, "z_recorder")
    monkeypatch.setenv("CANONRY_HOOK_TIMEOUT", "0.3")
    path = mkstore()
    s = canonry.open(str(path), plugins_dir=str(plugin_dir))
    s.log_artifact(artifact_file(tmp_path), name="m", type="model")
    try:
        t0 = time.monotonic()
        s.link("m:v0", "model/coll")
        elapsed = time.monotonic() - t0
    finally:
        release.write_text("go")
    assert elapsed < 5
    link_commit = head(path)
    runs = [r for r in s.automation_log() if r["commit"] == link_commit]
    hung = [r for r in runs if r["receiver"] == "plugin:a_hang"]
    assert [r["status"] for r in hung] == ["timeout"]
    assert hung[0]["duration_ms"] >= 250
    assert "0.3" in hung[0]["error"]
    assert "link.created" in [c["kind"] for c in rec.calls()]
    assert any(r["receiver"] == "plugin:z_recorder" and r["status"] == "ok" for r in runs)
    cli = [r for r in _runs(path) if r["receiver"] == "plugin:a_hang"]
    assert [r["status"] for r in cli] == ["timeout"]


# ---- at-most-once delivery ----------------------------------------------------------------------
def test_replaying_a_range_twice_delivers_once(plugin_dir, mkstore, tmp_path):
    rec = Hooks(plugin_dir, "recorder")
    path = mkstore()
    s = canonry.open(str(path))  # no plugins dir: nothing is delivered at commit time
    base = head(path)
    s.log_artifact(artifact_file(tmp_path), name="m", type="model")
    s.link("m:v0", "model/coll", aliases=["staging"])
    s.log_artifact(artifact_file(tmp_path), name="m", type="model")
    s.link("m:v1", "model/coll")
    s.set_alias("model/coll:v1", "staging")
    tip = head(path)
    assert rec.calls() == []
    rng = f"{base}..{tip}"
    expected = [e.id for e in s.events(rng)]
    assert len(expected) == 7

    first = invoke("-C", path, "--plugins-dir", plugin_dir, "automations", "run", rng)
    assert first.exit_code == 0, first
    assert "plugin:recorder" in first.stdout and "alias.moved" in first.stdout
    assert [c["id"] for c in rec.calls()] == expected
    hooks = {c["kind"]: c["hook"] for c in rec.calls()}
    assert hooks == {"artifact.logged": "artifact_logged", "collection.created": "collection_changed",
                     "link.created": "link_created", "alias.added": "alias_added",
                     "alias.moved": "alias_moved"}

    second = invoke("-C", path, "--plugins-dir", plugin_dir, "automations", "run", rng)
    assert second.exit_code == 0, second
    assert "nothing to deliver" in second.stdout
    assert [c["id"] for c in rec.calls()] == expected  # once per event, no more

    # overlapping ranges and the API behave the same
    assert canonry.open(str(path), plugins_dir=str(plugin_dir)).run_automations(f"{base}..{tip}") == []
    assert [c["id"] for c in rec.calls()] == expected
    runs = _runs(path)
    assert sorted(r["event"] for r in runs) == sorted(expected)
    assert all(r["status"] == "ok" and r["receiver"] == "plugin:recorder" for r in runs)


def test_events_delivered_at_commit_time_are_not_redelivered(plugin_dir, mkstore, tmp_path):
    rec = Hooks(plugin_dir, "recorder")
    path = mkstore()
    s = canonry.open(str(path), plugins_dir=str(plugin_dir))
    base = head(path)
    s.log_artifact(artifact_file(tmp_path), name="m", type="model")
    s.link("m:v0", "model/coll", aliases=["production"])
    calls = [c["id"] for c in rec.calls()]
    assert calls == [e.id for e in s.events(f"{base}..HEAD")]
    out = invoke("-C", path, "--plugins-dir", plugin_dir, "automations", "run", f"{base}..HEAD", "--json")
    assert out.exit_code == 0 and out.json() == []
    assert [c["id"] for c in rec.calls()] == calls


def test_a_failed_delivery_is_retried_by_the_next_run_then_delivered_once(plugin_dir, mkstore, tmp_path):
    flag = tmp_path / "healthy"
    write_plugin(plugin_dir, "flaky", f"""
        import os
        from canonry import hookimpl

        @hookimpl
        def alias_added(event):
            if not os.path.exists({str(flag)!r}):
                raise ConnectionError("downstream is down")
            open({str(flag)!r}, "a").write(event.id + "\\n")
    """)
    path = mkstore()
    s = canonry.open(str(path))
    s.log_artifact(artifact_file(tmp_path), name="m", type="model")
    s.link("m:v0", "model/coll", aliases=["production"])
    event_id = next(e.id for e in s.events("HEAD") if e.kind == "alias.added")
    first = invoke("-C", path, "--plugins-dir", plugin_dir, "automations", "run", "HEAD~1..HEAD")
    assert first.exit_code == 1 and "deliveries failed" in first.stderr
    flag.write_text("")
    second = invoke("-C", path, "--plugins-dir", plugin_dir, "automations", "run", "HEAD~1..HEAD", "--json")
    assert second.exit_code == 0, second
    assert [(r["event"], r["status"]) for r in second.json()] == [(event_id, "ok")]
    third = invoke("-C", path, "--plugins-dir", plugin_dir, "automations", "run", "HEAD~1..HEAD")
    assert "nothing to deliver" in third.stdout
    assert flag.read_text().split() == [event_id]
    assert sorted(r["status"] for r in _runs(path)) == ["error", "ok"]


def test_automation_log_is_newest_first_within_one_second(plugin_dir, mkstore, tmp_path):
    """`automations log` promises newest first; runs recorded within the same second (the
    resolution of the `at` field) must still come newest first."""
    flag = tmp_path / "healthy"
    write_plugin(plugin_dir, "flaky", f"""
        import os
        from canonry import hookimpl

        @hookimpl
        def alias_added(event):
            if not os.path.exists({str(flag)!r}):
                raise ConnectionError("downstream is down")
    """)
    path = mkstore()
    s = canonry.open(str(path))
    s.log_artifact(artifact_file(tmp_path), name="m", type="model")
    s.link("m:v0", "model/coll", aliases=["production"])
    time.sleep(1.02 - time.time() % 1)  # start of a second: both runs below land in it
    invoke("-C", path, "--plugins-dir", plugin_dir, "automations", "run", "HEAD")
    flag.write_text("")
    invoke("-C", path, "--plugins-dir", plugin_dir, "automations", "run", "HEAD")
    runs = _runs(path)
    assert runs[0]["at"] >= runs[1]["at"]
    assert [r["status"] for r in runs] == ["ok", "error"]  # newest first


# ---- policies --------------------------------------------------------------------------------------
FREEZE = """
    from canonry import hookimpl

    @hookimpl
    def check_change(events, store, view):
        for e in events:
            if e.alias == "production" and e.kind in ("alias.added", "alias.moved"):
                # the view is the store as it would be after the change
                assert view.aliases(e.registry, e.collection.split("/")[1])["production"] == e.version
                return f"production is frozen this week ({e.collection}:{e.version})"
        return None
"""


def _two_versions(path, tmp_path, accuracies=(0.95, 0.97), tags=()):
    s = canonry.open(str(path))
    for acc in accuracies:
        v = s.log_artifact(artifact_file(tmp_path), name="mnist-cnn", type="model", metrics={"accuracy": acc})
        s.link(v.address, "model/mnist")
    for t in tags:
        s.tag(t, "approved")
    return s


def test_policy_plugin_refuses_a_change_through_the_api(plugin_dir, mkstore, tmp_path):
    write_plugin(plugin_dir, "freeze", FREEZE)
    rec = Hooks(plugin_dir, "recorder")
    path = mkstore()
    _two_versions(path, tmp_path)
    s = canonry.open(str(path), plugins_dir=str(plugin_dir))
    before = head(path)
    with pytest.raises(PolicyRefused) as info:
        s.set_alias("model/mnist:v1", "production")
    assert str(info.value) == "refused by plugin freeze: production is frozen this week (model/mnist:v1)"
    assert head(path) == before
    assert git("-C", path, "status", "--porcelain") == ""
    assert not (path / "registries/model/mnist/aliases.yaml").exists()
    assert "production" not in _aliases(s, "model/mnist")
    assert rec.calls() == []  # nothing committed, so no event delivered
    with pytest.raises(PolicyRefused), s.transaction("promote and tag") as tx:
        tx.tag("model/mnist:v1", "approved")
        tx.set_alias("model/mnist:v1", "production")
    assert head(path) == before
    # other changes pass
    s.set_alias("model/mnist:v1", "staging")
    assert head(path) != before


def test_policy_plugin_refusal_on_the_cli(plugin_dir, mkstore, tmp_path):
    write_plugin(plugin_dir, "freeze", FREEZE)
    path = mkstore()
    _two_versions(path, tmp_path)
    before = head(path)
    out = invoke("-C", path, "--plugins-dir", plugin_dir, "alias", "set", "model/mnist:v1", "production")
    line = one_line_error(out)
    assert line == "canonry: error: refused by plugin freeze: production is frozen this week (model/mnist:v1)"
    assert out.stdout == ""
    assert head(path) == before
    out = invoke("-C", path, "--plugins-dir", plugin_dir, "link", "mnist-cnn:v0", "model/other",
                 "--alias", "production")
    assert "refused by plugin freeze" in one_line_error(out)
    assert head(path) == before
    # as a real process too
    proc = run_canonry("-C", path, "--plugins-dir", plugin_dir, "alias", "set", "model/mnist:v0", "production")
    assert "refused by plugin freeze: production is frozen" in one_line_error(proc)
    assert head(path) == before


def test_a_policy_plugin_that_crashes_fails_closed(plugin_dir, mkstore, tmp_path):
    write_plugin(plugin_dir, "buggy_policy", """
        from canonry import hookimpl

        @hookimpl
        def check_change(events):
            raise KeyError("oops")
    """)
    path = mkstore()
    _two_versions(path, tmp_path)
    before = head(path)
    out = invoke("-C", path, "--plugins-dir", plugin_dir, "alias", "set", "model/mnist:v1", "staging")
    line = one_line_error(out)
    assert "refused by plugin buggy_policy" in line and "policy failed" in line and "oops" in line
    assert head(path) == before


POLICIES = [
    {"name": "production-needs-accuracy", "action": "policy",
     "with": {"alias": "production", "metric": "accuracy", "min": 0.9}},
    {"name": "production-only-approved", "action": "policy", "filter": {"registry": "model"},
     "with": {"alias": "production", "tag": "approved"}},
]


def test_builtin_policy_metric_threshold(mkstore, tmp_path):
    path = mkstore()
    s = _two_versions(path, tmp_path, accuracies=(0.85, 0.93))
    s.set_automations(POLICIES[:1])
    before = head(path)
    with pytest.raises(PolicyRefused) as info:
        s.set_alias("model/mnist:v0", "production")
    msg = str(info.value)
    assert msg.startswith("refused by plugin policy: production-needs-accuracy:")
    assert "accuracy ≥ 0.9" in msg and "0.85" in msg and "model/mnist:v0" in msg
    assert head(path) == before
    # linking with the alias is refused as well
    with pytest.raises(PolicyRefused):
        s.link("mnist-cnn:v0", "model/other", aliases=["production"])
    assert head(path) == before
    # a version that meets the bar is allowed; other aliases are not concerned
    s.set_alias("model/mnist:v1", "production")
    s.set_alias("model/mnist:v0", "staging")
    assert _aliases(s, "model/mnist") == {"production": "v1", "staging": "v0"}
    # moving production back to the weak version: refused on the CLI, one line
    out = invoke("-C", path, "alias", "set", "model/mnist:v0", "production")
    line = one_line_error(out)
    assert "refused by plugin policy: production-needs-accuracy" in line
    assert _aliases(s, "model/mnist")["production"] == "v1"


def test_builtin_policy_missing_metric_is_refused(mkstore, tmp_path):
    path = mkstore()
    s = canonry.open(str(path))
    s.log_artifact(artifact_file(tmp_path), name="m", type="model")  # no metrics
    s.link("m:v0", "model/coll")
    s.set_automations(POLICIES[:1])
    with pytest.raises(PolicyRefused, match="requires metric accuracy"):
        s.set_alias("model/coll:v0", "production")


def test_builtin_policy_tag_required(mkstore, tmp_path):
    path = mkstore()
    s = _two_versions(path, tmp_path, accuracies=(0.95, 0.96))
    s.set_automations(POLICIES)
    before = head(path)
    out = invoke("-C", path, "alias", "set", "model/mnist:v1", "production")
    line = one_line_error(out)
    assert "refused by plugin policy: production-only-approved" in line
    assert "approved" in line
    assert head(path) == before
    s.tag("model/mnist:v1", "approved")
    ok = invoke("-C", path, "alias", "set", "model/mnist:v1", "production")
    assert ok.exit_code == 0, ok
    assert _aliases(s, "model/mnist") == {"production": "v1"}
    # policies act before the commit only: they are never delivered as automations
    assert not [r for r in s.automation_log() if "policy" in r["receiver"]]


def test_registry_level_policy_only_applies_to_its_registry(mkstore, tmp_path):
    path = mkstore()
    s = canonry.open(str(path))
    s.log_artifact(artifact_file(tmp_path), name="data", type="dataset", metrics={"accuracy": 0.1})
    s.link("data:v0", "dataset/train")
    s.log_artifact(artifact_file(tmp_path), name="m", type="model", metrics={"accuracy": 0.1})
    s.link("m:v0", "model/coll")
    s.set_automations(POLICIES[:1], registry="model")
    s.set_alias("dataset/train:v0", "production")  # another registry: allowed
    with pytest.raises(PolicyRefused):
        s.set_alias("model/coll:v0", "production")


def test_policy_automations_cannot_be_bypassed_by_a_hand_commit_but_are_reported(mkstore, tmp_path):
    """A hand commit with git does not go through canonry: the policy cannot refuse it (git made
    it), but the event it produces is the same, so an automation can still react to it."""
    path = mkstore()
    s = _two_versions(path, tmp_path, accuracies=(0.5, 0.6))
    s.set_automations(POLICIES[:1])
    aliases = path / "registries/model/mnist/aliases.yaml"
    aliases.write_text("format: 1\naliases:\n  production: v0\n")
    git("-C", path, "add", "-A")
    git("-C", path, "commit", "-qm", "by hand")
    (event,) = canonry.open(str(path)).events("HEAD")
    assert (event.kind, event.alias, event.version) == ("alias.added", "production", "v0")


# ---- declarative automations: configuration, filters, actions -----------------------------------------
FILTERED = [
    {"name": "prod-moves", "on": ["alias.added", "alias.moved"],
     "filter": {"registry": "model", "alias": "^prod"}, "action": "record", "with": {"label": "prod"}},
    {"name": "mnist-links", "on": "link.created", "filter": {"collection": "mnist*"},
     "action": "record", "with": {"label": "mnist"}},
    {"name": "approved-only", "on": "tags.changed", "filter": {"tag": "approved"},
     "action": "record", "with": {"label": "approved"}},
    {"name": "switched-off", "action": "record", "enabled": False, "with": {"label": "never"}},
]

DOCUMENTED_YAML = """\
automations:
  - name: prod-moves
    on: [alias.added, alias.moved]
    filter: {registry: model, alias: "^prod"}
    action: record
    with: {label: prod}
  - name: mnist-links
    on: link.created
    filter: {collection: "mnist*"}
    action: record
    with: {label: mnist}
  - name: approved-only
    on: tags.changed
    filter: {tag: approved}
    action: record
    with: {label: approved}
  - name: switched-off
    action: record
    enabled: false
    with: {label: never}
"""


def test_automations_set_from_a_yaml_file_as_documented(mkstore, tmp_path):
    """docs/plugins.md writes `on: [alias.added, alias.moved]`: `automations set FILE` must
    accept that (YAML 1.1 would read a bare `on` key as the boolean true)."""
    path = mkstore()
    config = tmp_path / "automations.yaml"
    config.write_text(DOCUMENTED_YAML)
    out = invoke("-C", path, "automations", "set", config)
    assert out.exit_code == 0, out
    assert "prod-moves, mnist-links, approved-only, switched-off" in out.stdout
    assert invoke("-C", path, "automations", "list", "--json").json() == FILTERED


def test_automations_set_from_yaml_with_quoted_keys_and_stdin(mkstore, tmp_path):
    path = mkstore()
    quoted = DOCUMENTED_YAML.replace(" on:", " 'on':")
    out = invoke("-C", path, "automations", "set", "-", input=quoted)
    assert out.exit_code == 0, out
    assert invoke("-C", path, "automations", "list", "--json").json() == FILTERED
    assert "'on':" in (path / "canonry.yaml").read_text()
    # setting the same list again changes nothing (no new commit); an empty list clears them
    before = head(path)
    assert invoke("-C", path, "automations", "set", "-", input=quoted).exit_code == 0
    assert head(path) == before
    assert invoke("-C", path, "automations", "set", "-", input="[]\n").exit_code == 0
    assert invoke("-C", path, "automations", "list", "--json").json() == []
    bad = invoke("-C", path, "automations", "set", "-", input="- {name: x, action: y}\n- {name: x, action: z}\n")
    assert "unique" in one_line_error(bad)


def test_automations_set_list_and_filters(plugin_dir, mkstore, tmp_path):
    log = tmp_path / "actions.jsonl"
    _record_action_plugin(plugin_dir, log)
    path = mkstore()
    s = canonry.open(str(path))
    s.log_artifact(artifact_file(tmp_path), name="mnist-cnn", type="model")
    s.log_artifact(artifact_file(tmp_path), name="words", type="dataset")
    s.set_automations(FILTERED)
    listed = invoke("-C", path, "automations", "list", "--json").json()
    assert [a["name"] for a in listed] == ["prod-moves", "mnist-links", "approved-only", "switched-off"]
    human = invoke("-C", path, "automations", "list")
    assert "prod-moves" in human.stdout and "record" in human.stdout
    # the configuration is a reviewed change in the store, like any other
    assert "prod-moves" in git("-C", path, "show", "HEAD:canonry.yaml")

    s = canonry.open(str(path), plugins_dir=str(plugin_dir))
    s.link("mnist-cnn:v0", "model/mnist-small", aliases=["production", "staging"])  # prod + mnist
    s.link("mnist-cnn:v0", "model/other", aliases=["prod-eu"])  # prod only (regex ^prod)
    s.link("words:v0", "dataset/mnist-text", aliases=["production"])  # mnist only: not registry model
    s.tag("model/other:v0", "reviewed")  # not approved: nothing
    s.tag("model/other:v0", "approved")  # approved
    got = sorted((r["label"], r["kind"], r["target"]) for r in _recorded(log))
    assert got == sorted([
        ("prod", "alias.added", "model/mnist-small:production"),
        ("mnist", "link.created", "model/mnist-small:v0"),
        ("prod", "alias.added", "model/other:prod-eu"),
        ("mnist", "link.created", "dataset/mnist-text:v0"),
        ("approved", "tags.changed", "model/other:v0"),
    ])
    runs = s.automation_log()
    assert {r["receiver"] for r in runs} == {"automation:prod-moves", "automation:mnist-links",
                                            "automation:approved-only"}
    assert all(r["status"] == "ok" for r in runs)
    # what the action returned is recorded (scalars only)
    assert {r["result"]["label"] for r in runs} == {"prod", "mnist", "approved"}
    assert all("ignored" not in r["result"] for r in runs)
    # automations log TARGET filters by address
    about = _runs(path, "model/other")
    assert {r["target"] for r in about} == {"model/other:prod-eu", "model/other:v0"}


def test_registry_automations_apply_to_their_registry_only(plugin_dir, mkstore, tmp_path):
    log = tmp_path / "actions.jsonl"
    _record_action_plugin(plugin_dir, log)
    path = mkstore()
    s = canonry.open(str(path), plugins_dir=str(plugin_dir))
    s.set_automations([{"name": "dataset-links", "on": "link.created", "action": "record",
                        "with": {"label": "ds"}}], registry="dataset")
    listed = invoke("-C", path, "automations", "list", "--registry", "dataset", "--json").json()
    assert [a["name"] for a in listed] == ["dataset-links"]
    s.log_artifact(artifact_file(tmp_path), name="words", type="dataset")
    s.log_artifact(artifact_file(tmp_path), name="m", type="model")
    s.link("words:v0", "dataset/text")
    s.link("m:v0", "model/coll")
    assert [(r["label"], r["target"]) for r in _recorded(log)] == [("ds", "dataset/text:v0")]


def test_an_action_nobody_provides_is_recorded_as_an_error(mkstore, tmp_path):
    path = mkstore()
    s = canonry.open(str(path))
    s.set_automations([{"name": "notify", "on": "link.created", "action": "carrier-pigeon"}])
    s.log_artifact(artifact_file(tmp_path), name="m", type="model")
    s.link("m:v0", "model/coll")
    (run,) = s.automation_log()
    assert run["receiver"] == "automation:notify" and run["status"] == "error"
    assert "carrier-pigeon" in run["error"]
    assert head(path) == run["commit"]


def test_a_failing_automation_does_not_stop_the_others(plugin_dir, mkstore, tmp_path):
    log = tmp_path / "actions.jsonl"
    _record_action_plugin(plugin_dir, log)
    path = mkstore()
    s = canonry.open(str(path), plugins_dir=str(plugin_dir))
    s.set_automations([
        {"name": "first-broken", "on": "link.created", "action": "webhook", "with": {}},  # no url
        {"name": "second-ok", "on": "link.created", "action": "record", "with": {"label": "ok"}},
    ])
    s.log_artifact(artifact_file(tmp_path), name="m", type="model")
    s.link("m:v0", "model/coll")
    runs = {r["receiver"]: r for r in s.automation_log()}
    assert runs["automation:first-broken"]["status"] == "error"
    assert "url" in runs["automation:first-broken"]["error"]
    assert runs["automation:second-ok"]["status"] == "ok"
    assert [r["label"] for r in _recorded(log)] == ["ok"]


def test_run_log_notes_are_readable_and_travel_with_the_repository(plugin_dir, mkstore, tmp_path):
    rec = Hooks(plugin_dir, "recorder")
    path = mkstore()
    s = canonry.open(str(path), plugins_dir=str(plugin_dir))
    s.log_artifact(artifact_file(tmp_path), name="m", type="model")
    s.link("m:v0", "model/coll")
    assert len(rec.calls()) == 3
    annotated = git("-C", path, "notes", "--ref", NOTES, "list").split()
    assert len(annotated) == 4  # two notes, each "note-blob annotated-commit"
    assert set(annotated[1::2]) == {head(path), git("-C", path, "rev-parse", "HEAD~1").strip()}
    # the notes ref is a normal ref: push it and the history of runs comes along
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", remote)
    git("-C", path, "push", "-q", remote, "main", f"{NOTES_REF.decode()}")
    clone = tmp_path / "clone"
    git("clone", "-q", remote, clone)
    git("-C", clone, "fetch", "-q", "origin", f"{NOTES_REF.decode()}:{NOTES_REF.decode()}")
    theirs = invoke("-C", clone, "automations", "log", "--json")
    assert theirs.json() == _runs(path)
    # and the clone does not deliver them again
    again = invoke("-C", clone, "--plugins-dir", plugin_dir, "automations", "run", "HEAD~2..main")
    assert "nothing to deliver" in again.stdout
    assert len(rec.calls()) == 3


# ---- auto-alias -------------------------------------------------------------------------------------
def test_auto_alias_moves_best_only_when_the_metric_beats_the_holder(mkstore, tmp_path):
    path = mkstore()
    s = canonry.open(str(path))
    s.set_automations([{"name": "keep-best", "on": "link.created",
                        "filter": {"registry": "model", "collection": "mnist*"},
                        "action": "auto-alias", "with": {"alias": "best", "metric": "accuracy"}}])

    def link(acc, coll="model/mnist"):
        v = s.log_artifact(artifact_file(tmp_path), name="mnist-cnn", type="model",
                           metrics={"accuracy": acc} if acc is not None else {})
        return s.link(v.address, coll)

    link(0.80)
    assert _aliases(s, "model/mnist") == {"best": "v0"}  # nobody held it
    link(0.75)
    assert _aliases(s, "model/mnist") == {"best": "v0"}  # worse: stays
    link(0.80)
    assert _aliases(s, "model/mnist") == {"best": "v0"}  # equal: stays
    before = head(path)
    link(0.91)
    assert _aliases(s, "model/mnist") == {"best": "v3"}  # better: moves
    # the move is a commit of its own, whose event says where best came from
    assert git("-C", path, "rev-parse", "HEAD~1").strip() != before
    (moved,) = s.events("HEAD")
    assert (moved.kind, moved.alias, moved.previous_version, moved.version) == ("alias.moved", "best", "v0", "v3")
    link(None)  # no metric: nothing
    assert _aliases(s, "model/mnist") == {"best": "v3"}
    link(0.99, coll="model/resnet")  # not matched by the filter
    assert _aliases(s, "model/resnet") == {}

    runs = [r for r in s.automation_log() if r["receiver"] == "automation:keep-best"]
    assert all(r["status"] == "ok" for r in runs)
    assert sorted(r["result"]["moved"] for r in runs) == [False, False, False, True, True]


def test_auto_alias_min_mode(mkstore, tmp_path):
    path = mkstore()
    s = canonry.open(str(path))
    s.set_automations([{"name": "lowest-loss", "on": "link.created", "action": "auto-alias",
                        "with": {"alias": "best", "metric": "loss", "mode": "min"}}])
    for loss in (0.5, 0.7, 0.2):
        v = s.log_artifact(artifact_file(tmp_path), name="m", type="model", metrics={"loss": loss})
        s.link(v.address, "model/coll")
    assert _aliases(s, "model/coll") == {"best": "v2"}


# ---- command action -----------------------------------------------------------------------------------
def _command_automation(tmp_path):
    script = tmp_path / "hook_script.py"
    out = tmp_path / "command-out.jsonl"
    script.write_text(
        "import json, os, sys\n"
        "event = json.load(sys.stdin)\n"
        "env = {k: v for k, v in os.environ.items() if k.startswith('CANONRY_EVENT_') or k == 'CANONRY_STORE'}\n"
        "with open(sys.argv[1], 'a') as f:\n"
        "    f.write(json.dumps({'stdin': event, 'env': env, 'argv': sys.argv[2:]}) + '\\n')\n")
    return [{"name": "evaluate", "on": "alias.moved", "action": "command",
             "with": {"command": [sys.executable, str(script), str(out), "--fast"], "timeout": 30}}], out


def test_command_action_refused_unless_the_store_trusts_local_automations(mkstore, tmp_path):
    path = mkstore()
    s = _two_versions(path, tmp_path)
    autos, out = _command_automation(tmp_path)
    s.set_automations(autos)
    s.set_alias("model/mnist:v0", "production")
    s.set_alias("model/mnist:v1", "production")
    assert not out.exists()
    (run,) = s.automation_log()
    assert run["receiver"] == "automation:evaluate" and run["status"] == "error"
    assert "PermissionError" in run["error"] and "trust_local_automations" in run["error"]


def test_command_action_runs_with_the_event_on_stdin_and_in_the_environment(mkstore, tmp_path):
    path = mkstore()
    s = _two_versions(path, tmp_path)
    autos, out = _command_automation(tmp_path)
    s.set_automations(autos)
    cfg = path / "canonry.yaml"
    cfg.write_text(cfg.read_text() + "trust_local_automations: true\n")
    git("-C", path, "commit", "-qam", "trust local automations")
    s = canonry.open(str(path))
    s.set_alias("model/mnist:v0", "production")
    assert not out.exists()  # alias.added: not configured
    s.set_alias("model/mnist:v1", "production")
    (got,) = [json.loads(line) for line in out.read_text().splitlines()]
    (event,) = s.events("HEAD")
    assert got["stdin"] == event.to_dict()
    assert got["argv"] == ["--fast"]
    env = got["env"]
    assert env["CANONRY_EVENT_KIND"] == "alias.moved"
    assert env["CANONRY_EVENT_ID"] == event.id
    assert env["CANONRY_EVENT_ALIAS"] == "production"
    assert env["CANONRY_EVENT_VERSION"] == "v1"
    assert env["CANONRY_EVENT_PREVIOUS_VERSION"] == "v0"
    assert env["CANONRY_EVENT_COLLECTION"] == "model/mnist"
    assert env["CANONRY_EVENT_ARTIFACT"] == "mnist-cnn:v1"
    assert env["CANONRY_EVENT_COMMIT"] == head(path)
    assert env["CANONRY_EVENT_ACTOR"] == ACTOR_EMAIL
    assert env["CANONRY_EVENT_TARGET"] == "model/mnist:production"
    assert os.path.samefile(env["CANONRY_STORE"], path)
    (run,) = [r for r in s.automation_log() if r["status"] == "ok"]
    assert run["receiver"] == "automation:evaluate" and run["result"] == {"exit_code": 0}


def test_command_action_failure_is_recorded(mkstore, tmp_path):
    path = mkstore()
    s = _two_versions(path, tmp_path)
    s.set_automations([{"name": "fails", "on": "alias.added", "action": "command",
                        "with": {"command": [sys.executable, "-c",
                                             "import sys; print('model check failed', file=sys.stderr); sys.exit(3)"]}}])
    cfg = path / "canonry.yaml"
    cfg.write_text(cfg.read_text() + "trust_local_automations: true\n")
    git("-C", path, "commit", "-qam", "trust local automations")
    s = canonry.open(str(path))
    s.set_alias("model/mnist:v0", "production")
    (run,) = s.automation_log()
    assert run["status"] == "error"
    assert "exited with 3" in run["error"] and "model check failed" in run["error"]
    assert _aliases(s, "model/mnist") == {"production": "v0"}
