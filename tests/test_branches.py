"""`--branch B` proposals: every write command takes it; B is created from the store branch on
the first write (reads fall back to the store branch until then); the store branch is never
touched; reads with --branch see the proposal; automations do not fire for proposal writes, and
do fire, once, when the proposal is merged. Real repositories, the git CLI for checks."""
from __future__ import annotations

import json

import pytest
from _remote_helpers import (
    ALICE,
    BOB,
    aliases,
    env_var,
    git,
    invoke,
    is_ancestor,
    links,
    ok,
    open_as,
    parents,
    rev,
    status,
    unique_file,
)
from conftest import assert_one_line_error

import canonry

BRANCH = "promote/mnist-v7"


@pytest.fixture
def store(tmp_path):
    """main: gemma-finetuned v0..v3 (accuracy 0.5 .. 0.8), model/mnist v0 [production];
    created by Alice (its admin)."""
    path = tmp_path / "store"
    with env_var("CANONRY_ACTOR", ALICE):
        s = canonry.init(str(path))
        s.actor  # noqa: B018 - read once, while CANONRY_ACTOR is set
    for i in range(4):
        s.log_artifact(unique_file(tmp_path, "w"), name="gemma-finetuned", type="model",
                       metrics={"accuracy": round(0.5 + 0.1 * i, 2)})
    s.link("gemma-finetuned:v0", "model/mnist", aliases=["production"])
    return path


def test_proposal_leaves_main_alone_and_starts_from_it(store):
    main_before = rev(store)
    b = open_as(store, BOB, branch=BRANCH)
    # before the first write the branch does not exist and reads show main
    assert rev(store, BRANCH) is None
    assert b.branch == BRANCH and aliases(b, "model/mnist") == {"production": "v0"}

    r = invoke("-C", store, "link", "gemma-finetuned:v3", "model/mnist", "--alias", "production",
               "--branch", BRANCH, actor=BOB)
    assert r.exit_code == 0, r
    assert r.stdout.strip() == "linked gemma-finetuned:v3 -> model/mnist:v1 [production]"
    assert rev(store) == main_before, "main moved"
    assert parents(store, BRANCH) == [main_before]
    assert git("-C", store, "log", "-1", "--format=%ae", BRANCH).strip() == "bob@example.com"
    # main's checked-out work tree is untouched by a write to another branch
    assert status(store) == ""
    assert not (store / "registries" / "model" / "mnist" / "links" / "v1.yaml").exists()
    assert git("-C", store, "symbolic-ref", "HEAD").strip() == "refs/heads/main"

    # reads: with --branch the proposal, without it main
    on_branch = ok("-C", store, "show", "model/mnist", "--json", "--branch", BRANCH).json()
    on_main = ok("-C", store, "show", "model/mnist", "--json").json()
    assert on_branch["aliases"]["production"] == "v1" and len(on_branch["links"]) == 2
    assert on_main["aliases"]["production"] == "v0" and len(on_main["links"]) == 1
    hist = ok("-C", store, "history", "model/mnist:production", "--json", "--branch", BRANCH).json()
    assert [h["after"] for h in hist] == ["v1", "v0"]
    assert ok("-C", store, "ls", "model/mnist", "--branch", BRANCH).stdout.count("gemma-finetuned:") == 2
    assert canonry.open(str(store)).resolve("model/mnist:production").version == "v0"


def test_every_write_command_takes_branch(store, tmp_path):
    main_before = rev(store)
    f = unique_file(tmp_path, "new")
    autos = tmp_path / "autos.yaml"
    autos.write_text("- {name: keep-best, on: link.created, action: auto-alias, "
                     "with: {alias: best, metric: accuracy}}\n")
    steps = [
        ("log", f, "--name", "gemma-finetuned", "--type", "model", "--metric", "accuracy=0.99"),
        ("link", "gemma-finetuned:v4", "model/mnist", "--alias", "candidate"),
        ("alias", "set", "model/mnist:v1", "staging"),
        ("alias", "rm", "model/mnist", "candidate"),
        ("tag", "add", "model/mnist:v1", "approved", "reviewed"),
        ("tag", "rm", "model/mnist:v1", "reviewed"),
        ("link", "gemma-finetuned:v1", "model/mnist"),
        ("unlink", "model/mnist:v2"),
        ("registry", "create", "experiments", "--description", "proposed", "--type", "dataset"),
        ("registry", "edit", "experiments", "--add-type", "model"),
    ]
    for step in steps:
        r = invoke("-C", store, *step, "--branch", BRANCH, actor=ALICE)
        assert r.exit_code == 0, (step, r)
    r = invoke("-C", store, "automations", "set", autos, "--branch", BRANCH, actor=ALICE)
    assert r.exit_code == 0, r
    assert rev(store) == main_before
    count = int(git("-C", store, "rev-list", "--count", f"main..{BRANCH}").strip())
    assert count == len(steps) + 1
    b = canonry.open(str(store), branch=BRANCH)
    assert aliases(b, "model/mnist") == {"production": "v0", "staging": "v1"}
    assert links(b, "model/mnist") == {"v0": "gemma-finetuned:v0", "v1": "gemma-finetuned:v4"}
    assert b.resolve("model/mnist:v1").tags == ["approved"]
    assert [r.name for r in b.registries()] == ["dataset", "experiments", "model"]
    assert b.view().store_config()["automations"][0]["name"] == "keep-best"
    m = canonry.open(str(store))
    assert [r.name for r in m.registries()] == ["dataset", "model"]
    assert m.artifact_versions("gemma-finetuned")[-1].version == "v3"
    # the events of the proposal, as CI would list them
    events = ok("-C", store, "events", f"main..{BRANCH}", "--json").json()
    assert ("link.created", "model/mnist:v1") in [(e["kind"], e["target"]) for e in events]
    assert status(store) == ""


def test_later_writes_continue_the_branch_even_when_main_moved(store):
    b = open_as(store, BOB, branch=BRANCH)
    b.link("gemma-finetuned:v1", "model/mnist")
    first = rev(store, BRANCH)
    open_as(store, ALICE).tag("model/mnist", "main-moved")
    open_as(store, BOB, branch=BRANCH).set_alias("model/mnist:v1", "staging")
    assert parents(store, BRANCH) == [first]
    assert not is_ancestor(store, "main", BRANCH)
    b = canonry.open(str(store), branch=BRANCH)
    assert b.collection("model/mnist").tags == []  # main's later tag is not on the proposal
    assert aliases(b, "model/mnist") == {"production": "v0", "staging": "v1"}


def test_bad_branch_names_are_one_line_errors(store):
    for name in ("../main", "-x", "a..b", "with space", "ends/", "x.lock"):
        r = invoke("-C", store, "link", "gemma-finetuned:v1", "model/mnist", "--branch", name, actor=BOB)
        assert_one_line_error(r)
    assert git("-C", store, "branch", "--list").split() == ["*", "main"]


def test_no_automation_fires_for_proposal_writes_and_the_merge_fires_it_once(store):
    main = open_as(store, ALICE)
    main.set_automations([{"name": "keep-best", "on": "link.created", "filter": {"registry": "model"},
                           "action": "auto-alias", "with": {"alias": "best", "metric": "accuracy"}}])
    main.link("gemma-finetuned:v1", "model/mnist")  # fires on main: best -> v1
    assert aliases(open_as(store, ALICE), "model/mnist")["best"] == "v1"
    runs_before = len(open_as(store, ALICE).automation_log())
    main_before = rev(store)

    b = open_as(store, BOB, branch=BRANCH)
    linked = b.link("gemma-finetuned:v3", "model/mnist")  # accuracy 0.8 beats v1's 0.6
    assert linked.version == "v2"
    # nothing fired: best stays where it was on the branch, no run recorded, main untouched
    on_branch = open_as(store, BOB, branch=BRANCH)
    assert aliases(on_branch, "model/mnist")["best"] == "v1"
    assert int(git("-C", store, "rev-list", "--count", f"main..{BRANCH}").strip()) == 1
    assert len(open_as(store, ALICE).automation_log()) == runs_before
    assert rev(store) == main_before

    r = invoke("-C", store, "merge", BRANCH, actor=ALICE)
    assert r.exit_code == 0 and "fast-forward" in r.stdout, r
    s = open_as(store, ALICE)
    assert aliases(s, "model/mnist")["best"] == "v2"  # fired on merge
    runs = [x for x in s.automation_log() if x["target"] == "model/mnist:v2"]
    assert len(runs) == 1 and runs[0]["status"] == "ok" and runs[0]["result"]["moved"] is True
    # running the merged range again delivers nothing more
    again = ok("-C", store, "automations", "run", f"{main_before}..main", "--json", actor=ALICE).json()
    assert [x for x in again if x["target"] == "model/mnist:v2"] == []
    assert status(store) == ""


def test_branch_through_the_api_and_a_store_branch_named_otherwise(tmp_path):
    """A store kept on branch `registry` proposes on promote/x from `registry`, not from main."""
    path = tmp_path / "s"
    with env_var("CANONRY_ACTOR", ALICE):
        s = canonry.init(str(path), branch="registry")
        s.log_artifact(unique_file(tmp_path), name="m", type="model")
    base = rev(path, "registry")
    p = open_as(path, BOB, branch="promote/x")
    assert p.storage.store_branch == "registry"
    p.link("m:v0", "model/c")
    assert parents(path, "promote/x") == [base]
    assert rev(path, "registry") == base
    merged = open_as(path, ALICE).merge("promote/x")
    assert merged.kind == "fast-forward" and rev(path, "registry") == rev(path, "promote/x")
    assert json.loads(ok("-C", path, "ls", "model", "--json").stdout)[0]["name"] == "c"
