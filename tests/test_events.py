"""Events: computed from the diff of a commit with its (first) parent, never from the API's code
path, so canonry, a hand commit with git, a merge and a pull all produce the same events."""
from __future__ import annotations

import dataclasses
import re

import pytest
from _plugin_helpers import *

import canonry
from canonry.automation.events import KINDS, Event


def _kinds(events):
    return [e.kind for e in events]


def _one(events, kind):
    found = [e for e in events if e.kind == kind]
    assert len(found) == 1, (kind, [e.to_dict() for e in events])
    return found[0]


@pytest.fixture
def story(mkstore, tmp_path):
    """A store with one of every kind of change, each its own commit. Returns (path, commits)
    where commits maps a step name to the commit it made."""
    path = mkstore()
    s = canonry.open(str(path))
    commits = {"init": head(path)}

    def step(name, fn):
        fn()
        commits[name] = head(path)

    step("log0", lambda: s.log_artifact(artifact_file(tmp_path), name="mnist-cnn", type="model",
                                        metrics={"accuracy": 0.91}, metadata={"lr": 0.01}))
    step("link0", lambda: s.link("mnist-cnn:v0", "model/mnist", aliases=["production"]))
    step("log1", lambda: s.log_artifact(artifact_file(tmp_path), name="mnist-cnn", type="model",
                                        metrics={"accuracy": 0.95}))
    step("link1", lambda: s.link("mnist-cnn:v1", "model/mnist"))
    step("move", lambda: s.set_alias("model/mnist:v1", "production"))
    step("add_staging", lambda: s.set_alias("model/mnist:v0", "staging"))
    step("tag_link", lambda: s.tag("model/mnist:v1", "approved"))
    step("tag_coll", lambda: s.tag("model/mnist", "vision"))
    step("rm_alias", lambda: s.remove_alias("model/mnist", "staging"))
    step("unlink", lambda: s.unlink("model/mnist:v0"))
    step("registry", lambda: s.create_registry("experiments", description="scratch"))
    step("registry_edit", lambda: s.edit_registry("experiments", description="scratch space"))
    return path, commits


def test_event_kinds_of_every_change(story):
    path, c = story
    s = canonry.open(str(path))

    def ev(step):
        return s.events(c[step])

    init = ev("init")
    assert _kinds(init) == ["registry.created", "registry.created"]
    assert {e.registry for e in init} == {"model", "dataset"}

    logged = _one(ev("log0"), "artifact.logged")
    assert (logged.artifact, logged.target) == ("mnist-cnn:v0", "mnist-cnn:v0")

    linked = ev("link0")
    assert _kinds(linked) == ["collection.created", "link.created", "alias.added"]
    created = _one(linked, "collection.created")
    assert (created.registry, created.collection) == ("model", "model/mnist")
    link = _one(linked, "link.created")
    assert (link.collection, link.version, link.artifact, link.target) == \
        ("model/mnist", "v0", "mnist-cnn:v0", "model/mnist:v0")
    added = _one(linked, "alias.added")
    assert (added.alias, added.version, added.previous_version, added.artifact, added.target) == \
        ("production", "v0", None, "mnist-cnn:v0", "model/mnist:production")

    assert _kinds(ev("link1")) == ["link.created"]

    moved = _one(ev("move"), "alias.moved")
    assert (moved.alias, moved.previous_version, moved.version, moved.artifact) == \
        ("production", "v0", "v1", "mnist-cnn:v1")
    assert moved.collection == "model/mnist" and moved.registry == "model"

    assert _one(ev("add_staging"), "alias.added").version == "v0"

    tl = _one(ev("tag_link"), "tags.changed")
    assert (tl.target, tl.version, tl.tags, tl.previous_tags, tl.artifact) == \
        ("model/mnist:v1", "v1", ("approved",), (), "mnist-cnn:v1")
    tc = _one(ev("tag_coll"), "tags.changed")
    assert (tc.target, tc.version, tc.tags, tc.previous_tags) == ("model/mnist", None, ("vision",), ())

    removed = _one(ev("rm_alias"), "alias.removed")
    assert (removed.alias, removed.previous_version, removed.artifact) == ("staging", "v0", "mnist-cnn:v0")

    unlinked = _one(ev("unlink"), "link.removed")
    assert (unlinked.version, unlinked.artifact, unlinked.target) == ("v0", "mnist-cnn:v0", "model/mnist:v0")

    rc = _one(ev("registry"), "registry.created")
    assert (rc.registry, rc.target) == ("experiments", "experiments")
    ch = _one(ev("registry_edit"), "registry.changed")
    assert ch.changes == {"description": ["scratch", "scratch space"]}

    every = s.events(f"{c['init']}..{c['registry_edit']}")
    assert set(_kinds(every)) == set(KINDS) - {"collection.changed"}  # that one: next test
    for e in every:
        assert e.actor == ACTOR_EMAIL
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e.time)


def test_collection_changed_from_a_hand_edit(mkstore):
    path = mkstore()
    s = canonry.open(str(path))
    s.log_artifact(artifact_file(path.parent), name="m", type="model")
    s.link("m:v0", "model/coll")
    coll = path / "registries/model/coll/collection.yaml"
    coll.write_text(coll.read_text().replace("description: ''", "description: hand written"))
    git("-C", path, "commit", "-qam", "describe the collection")
    events = canonry.open(str(path)).events("HEAD")
    changed = _one(events, "collection.changed")
    assert changed.collection == "model/coll"
    assert changed.changes == {"description": ["", "hand written"]}
    assert changed.actor == "git-user@example.com"


def test_event_is_frozen_with_stable_ids(story):
    path, c = story
    rng = f"{c['init']}..{c['registry_edit']}"
    first = canonry.open(str(path)).events(rng)
    again = canonry.open(str(path)).events(rng)
    assert [e.id for e in first] == [e.id for e in again]
    assert [e.to_dict() for e in first] == [e.to_dict() for e in again]
    assert all(isinstance(e, Event) for e in first)
    with pytest.raises(dataclasses.FrozenInstanceError):
        first[0].kind = "link.removed"
    # ids are <commit>:<position>, positions counting from 0 within each commit
    by_commit = {}
    for e in first:
        commit, _, n = e.id.partition(":")
        assert re.fullmatch(r"[0-9a-f]{40}", commit) and commit == e.commit
        by_commit.setdefault(commit, []).append(int(n))
    assert all(ns == list(range(len(ns))) for ns in by_commit.values())
    assert len({e.id for e in first}) == len(first)
    # a fresh process computes the same ids (JSON shape of `canonry events --json`)
    out = run_canonry("-C", path, "events", rng, "--json")
    assert out.exit_code == 0, out
    assert [d["id"] for d in out.json()] == [e.id for e in first]
    assert out.json() == [e.to_dict() for e in first]


def test_events_of_a_single_commit_and_an_open_range(story):
    path, c = story
    s = canonry.open(str(path))
    assert [e.id for e in s.events(c["move"])] == [e.id for e in s.events(f"{c['link1']}..{c['move']}")]
    everything = s.events("..HEAD")
    assert everything[0].commit == c["init"]
    assert everything[-1].commit == c["registry_edit"]


def test_events_from_a_commit_made_with_the_git_cli(mkstore, tmp_path):
    path = mkstore()
    s = canonry.open(str(path))
    for _ in range(2):
        v = s.log_artifact(artifact_file(tmp_path), name="mnist-cnn", type="model")
        s.link(v.address, "model/mnist")
    s.set_alias("model/mnist:v0", "production")
    aliases = path / "registries/model/mnist/aliases.yaml"
    text = aliases.read_text()
    assert "production: v0" in text
    aliases.write_text(text.replace("production: v0", "production: v1"))
    git("-C", path, "commit", "-qam", "promote v1 by hand")

    out = invoke("-C", path, "events", "HEAD~1..HEAD", "--json")
    assert out.exit_code == 0, out
    (event,) = out.json()
    assert event["kind"] == "alias.moved"
    assert (event["alias"], event["previous_version"], event["version"]) == ("production", "v0", "v1")
    assert event["artifact"] == "mnist-cnn:v1"
    assert event["collection"] == "model/mnist"
    assert event["actor"] == "git-user@example.com"  # the git author, not CANONRY_ACTOR
    assert event["commit"] == head(path)
    assert event["id"] == f"{head(path)}:0"

    human = invoke("-C", path, "events", "HEAD~1..HEAD")
    assert human.exit_code == 0, human
    assert "alias.moved" in human.stdout and "v0 → v1" in human.stdout
    assert "model/mnist:production" in human.stdout

    # the same change made by canonry produces the same event (bar where/when/who)
    s2 = canonry.open(str(path))
    s2.set_alias("model/mnist:v0", "production")
    s2.set_alias("model/mnist:v1", "production")
    by_api = s2.events("HEAD")
    assert [event_summary(e) for e in by_api] == [event_summary(event)]


def test_hand_commit_adding_alias_and_removing_link(mkstore, tmp_path):
    path = mkstore()
    s = canonry.open(str(path))
    s.log_artifact(artifact_file(tmp_path), name="m", type="model")
    s.link("m:v0", "model/coll")
    aliases = path / "registries/model/coll/aliases.yaml"
    assert not aliases.exists()
    aliases.write_text("format: 1\naliases:\n  staging: v0\n")
    git("-C", path, "add", "-A")
    git("-C", path, "commit", "-qm", "alias by hand")
    git("-C", path, "rm", "-q", "registries/model/coll/aliases.yaml",
        "registries/model/coll/links/v0.yaml")
    git("-C", path, "commit", "-qm", "unlink by hand")
    events = canonry.open(str(path)).events("HEAD~2..HEAD")
    assert [(e.kind, e.target) for e in events] == [
        ("alias.added", "model/coll:staging"),
        ("link.removed", "model/coll:v0"),
        ("alias.removed", "model/coll:staging"),
    ]
    assert events[0].artifact == "m:v0"
    assert events[2].previous_version == "v0" and events[2].artifact == "m:v0"


def test_merge_commit_events_equal_what_the_branch_brought(mkstore, tmp_path):
    path = mkstore()
    s = canonry.open(str(path))
    s.log_artifact(artifact_file(tmp_path), name="mnist-cnn", type="model", metrics={"accuracy": 0.9})
    s.link("mnist-cnn:v0", "model/mnist", aliases=["production"])
    fork = head(path)
    git("-C", path, "branch", "feature", fork)

    feature = canonry.open(str(path), branch="feature")
    feature.log_artifact(artifact_file(tmp_path), name="mnist-cnn", type="model", metrics={"accuracy": 0.95})
    feature.link("mnist-cnn:v1", "model/mnist")
    feature.set_alias("model/mnist:v1", "production")
    feature.tag("model/mnist:v0", "approved")
    brought = feature.events(f"{fork}..{head(path, 'feature')}")
    assert head(path) == fork  # main did not move

    # main moves on meanwhile, with an unrelated change
    s.log_artifact(artifact_file(tmp_path), name="tokenizer", type="dataset")
    assert git("-C", path, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    git("-C", path, "merge", "--no-ff", "-q", "-m", "merge feature", "feature")
    merge = head(path)
    assert len(git("-C", path, "rev-list", "--parents", "-n1", merge).split()) == 3

    events = canonry.open(str(path)).events("HEAD")
    assert all(e.commit == merge for e in events)
    assert sorted(event_summary(e) for e in events) == sorted(event_summary(e) for e in brought)
    assert "artifact.logged" in _kinds(events)
    assert not any(e.artifact == "tokenizer:v0" for e in events)
    moved = _one(events, "alias.moved")
    assert (moved.previous_version, moved.version) == ("v0", "v1")
    # and the first-parent range over main shows the merge, not the feature commits one by one
    ranged = canonry.open(str(path)).events(f"{fork}..{merge}")
    main_side = git("-C", path, "rev-parse", f"{merge}^1").strip()
    assert [e.commit for e in ranged] == [main_side] + [merge] * len(events)


def test_events_after_a_pull_equal_the_events_where_they_were_made(mkstore, tmp_path):
    path = mkstore()
    s = canonry.open(str(path))
    s.log_artifact(artifact_file(tmp_path), name="m", type="model")
    s.link("m:v0", "model/coll")
    clone = tmp_path / "clone"
    git("clone", "-q", path, clone)
    before = head(path)
    c = canonry.open(str(clone))
    c.log_artifact(artifact_file(tmp_path), name="m", type="model")
    c.link("m:v1", "model/coll", aliases=["production"])
    there = c.events(f"{before}..main")
    git("-C", path, "pull", "-q", "--ff-only", clone, "main")
    here = canonry.open(str(path)).events(f"{before}..main")
    assert [e.to_dict() for e in here] == [e.to_dict() for e in there]
    assert _kinds(here) == ["artifact.logged", "link.created", "alias.added"]


def test_events_cli_errors_and_empty_range(mkstore):
    path = mkstore()
    empty = invoke("-C", path, "events", "HEAD..HEAD")
    assert empty.exit_code == 0, empty
    assert "no events" in empty.stdout
    assert invoke("-C", path, "events", "HEAD..HEAD", "--json").json() == []
    bad = invoke("-C", path, "events", "nope..HEAD")
    line = one_line_error(bad)
    assert "nope" in line
