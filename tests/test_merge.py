"""`canonry merge BRANCH`: fast-forward when the store branch has not moved; otherwise the
branch's operations are replayed onto the store branch as one merge commit [store head, branch
head], renumbering links; a true conflict stops with one line and nothing written; a commit made
by hand cannot be replayed; merging twice does nothing. Automations fire for what the merge
brought, once. Real repositories, the git CLI for every check of history."""
from __future__ import annotations

import pytest
from _plugin_helpers import WebhookServer
from _remote_helpers import (
    ALICE,
    BOB,
    aliases,
    env_var,
    fsck,
    git,
    hand_commit,
    invoke,
    is_ancestor,
    links,
    ok,
    open_as,
    parents,
    rev,
    status,
    subject,
    unique_file,
)
from conftest import assert_one_line_error

import canonry
from canonry.errors import MergeConflict

BRANCH = "promote/mnist"


@pytest.fixture
def store(tmp_path):
    """main: gemma-finetuned v0..v5 (accuracy 0.5 .. 1.0); model/mnist v0 = gemma-finetuned:v0
    [production]. Returns the store's path."""
    path = tmp_path / "store"
    with env_var("CANONRY_ACTOR", ALICE):  # Alice creates the store: she is its admin
        s = canonry.init(str(path))
        assert s.actor.email == "alice@example.com"
    for i in range(6):
        s.log_artifact(unique_file(tmp_path, "w"), name="gemma-finetuned", type="model",
                       metrics={"accuracy": round(0.5 + 0.1 * i, 2)})
    s.link("gemma-finetuned:v0", "model/mnist", aliases=["production"])
    return path


def main_of(path):
    return open_as(path, ALICE)


def branch_of(path, name=BRANCH):
    return open_as(path, BOB, branch=name)


# ---- fast-forward ------------------------------------------------------------------------------
def test_fast_forward_when_main_has_not_moved(store):
    b = branch_of(store)
    b.link("gemma-finetuned:v1", "model/mnist", aliases=["production"])
    b.tag("model/mnist:v1", "approved")
    head = rev(store, BRANCH)
    before = rev(store)

    r = invoke("-C", store, "merge", BRANCH, actor=ALICE)
    assert r.exit_code == 0, r
    assert r.stdout.startswith(f"merged {BRANCH} into main (fast-forward, ")
    assert "link gemma-finetuned:v1 -> model/mnist as v1" in r.stdout
    assert rev(store) == head and is_ancestor(store, before, "main")
    s = main_of(store)
    assert aliases(s, "model/mnist") == {"production": "v1"}
    assert s.resolve("model/mnist:v1").tags == ["approved"]
    assert status(store) == ""
    assert (store / "registries" / "model" / "mnist" / "links" / "v1.yaml").exists()


def test_no_ff_makes_a_merge_commit_even_when_a_fast_forward_was_possible(store):
    branch_of(store).link("gemma-finetuned:v1", "model/mnist")
    before, head = rev(store), rev(store, BRANCH)
    data = ok("-C", store, "merge", BRANCH, "--no-ff", "--message", "Promote mnist v1", "--json", actor=ALICE).json()
    assert data["kind"] == "merge" and data["old"] == before and data["new"] == rev(store)
    assert data["operations"] == ["link gemma-finetuned:v1 -> model/mnist as v1"]
    assert parents(store, "main") == [before, head]
    assert subject(store) == "Promote mnist v1"
    assert links(main_of(store), "model/mnist") == {"v0": "gemma-finetuned:v0", "v1": "gemma-finetuned:v1"}
    assert status(store) == ""


# ---- replay: main moved meanwhile ------------------------------------------------------------------
def test_replay_renumbers_the_branch_link_and_its_alias_follows(store):
    b = branch_of(store)
    b.link("gemma-finetuned:v2", "model/mnist", aliases=["production"])  # v1 on the branch
    assert links(b, "model/mnist")["v1"] == "gemma-finetuned:v2"
    main_of(store).link("gemma-finetuned:v1", "model/mnist")  # main took v1 meanwhile
    main_before, branch_head = rev(store), rev(store, BRANCH)

    r = invoke("-C", store, "merge", BRANCH, actor=ALICE)
    assert r.exit_code == 0, r
    assert f"merged {BRANCH} into main (merge, 2 operation(s))" in r.stdout
    assert "as v2" in r.stdout
    merge = rev(store)
    # one merge commit, parents [store head, branch head]
    assert parents(store, merge) == [main_before, branch_head]
    assert git("-C", store, "rev-list", "--count", f"{main_before}..main", "--first-parent").strip() == "1"
    assert subject(store) == f"merge {BRANCH} into main"
    s = main_of(store)
    assert links(s, "model/mnist") == {"v0": "gemma-finetuned:v0", "v1": "gemma-finetuned:v1",
                                       "v2": "gemma-finetuned:v2"}
    assert aliases(s, "model/mnist") == {"production": "v2"}
    # the branch itself is left as it was
    assert rev(store, BRANCH) == branch_head
    assert links(branch_of(store), "model/mnist")["v1"] == "gemma-finetuned:v2"

    # history shows the merged operations once, on the merge commit (not again from the branch)
    hist = s.history("model/mnist")
    ops = [(h.op, h.target, h.after) for h in hist]
    assert ops.count(("link", "model/mnist:v2", "gemma-finetuned:v2")) == 1
    assert [h.commit for h in hist if h.target == "model/mnist:v2"] == [merge]
    moves = [h for h in hist if h.op == "alias.set" and h.after == "v2"]
    assert len(moves) == 1 and moves[0].before == "v0"
    assert not any(h.target == "model/mnist:v1" and h.after == "gemma-finetuned:v2" for h in hist)
    # the merged state is valid, commit by commit, and git agrees with the store
    report = s.validate(f"{main_before}..main")
    assert report.ok, [f.line() for f in report]
    assert status(store) == "" and fsck(store).returncode == 0
    assert is_ancestor(store, BRANCH, "main")


def test_same_link_made_on_both_sides_merges_into_one(store):
    branch_of(store).link("gemma-finetuned:v3", "model/mnist", aliases=["staging"])
    main_of(store).link("gemma-finetuned:v3", "model/mnist")
    main_of(store).tag("model/mnist", "main-moved")
    r = ok("-C", store, "merge", BRANCH, actor=ALICE)
    assert "merge" in r.stdout
    s = main_of(store)
    assert links(s, "model/mnist") == {"v0": "gemma-finetuned:v0", "v1": "gemma-finetuned:v3"}
    assert aliases(s, "model/mnist") == {"production": "v0", "staging": "v1"}


def test_both_sides_moving_production_to_the_same_link_is_no_conflict(store):
    main_of(store).link("gemma-finetuned:v1", "model/mnist")
    branch_of(store).set_alias("model/mnist:v1", "production")
    main_of(store).set_alias("model/mnist:v1", "production")
    main_of(store).tag("model/mnist", "x")
    ok("-C", store, "merge", BRANCH, actor=ALICE)
    assert aliases(main_of(store), "model/mnist") == {"production": "v1"}


def test_two_proposals_from_the_same_base_both_land_and_the_second_production_move_conflicts(store):
    """The issue's concurrent promotions: two branches made from the same main both link into
    model/mnist; one also moves production, then the other tries to as well."""
    base = rev(store)
    branch_of(store, "promote/a").link("gemma-finetuned:v1", "model/mnist", aliases=["production"])
    branch_of(store, "promote/b").link("gemma-finetuned:v2", "model/mnist", aliases=["staging"])
    branch_of(store, "promote/c").link("gemma-finetuned:v3", "model/mnist", aliases=["production"])
    for b in ("promote/a", "promote/b", "promote/c"):
        assert links(branch_of(store, b), "model/mnist")["v1"]  # each made its link v1

    assert main_of(store).merge("promote/a").kind == "fast-forward"
    second = main_of(store).merge("promote/b")
    assert second.kind == "merge"
    s = main_of(store)
    assert links(s, "model/mnist") == {"v0": "gemma-finetuned:v0", "v1": "gemma-finetuned:v1",
                                       "v2": "gemma-finetuned:v2"}
    assert aliases(s, "model/mnist") == {"production": "v1", "staging": "v2"}
    before = rev(store)
    r = invoke("-C", store, "merge", "promote/c", actor=ALICE)
    line = assert_one_line_error(r)
    assert "production" in line and "promote/c" in line
    assert rev(store) == before
    report = main_of(store).validate(f"{base}..main")
    assert report.ok, [f.line() for f in report]
    assert is_ancestor(store, "promote/a", "main") and is_ancestor(store, "promote/b", "main")
    assert not is_ancestor(store, "promote/c", "main")


# ---- conflicts and refusals --------------------------------------------------------------------------
def test_true_conflict_both_moved_production(store):
    s = main_of(store)
    s.link("gemma-finetuned:v1", "model/mnist")
    s.link("gemma-finetuned:v2", "model/mnist")
    branch_of(store).set_alias("model/mnist:v1", "production")
    main_of(store).set_alias("model/mnist:v2", "production")
    main_before, branch_before = rev(store), rev(store, BRANCH)

    r = invoke("-C", store, "merge", BRANCH, actor=ALICE)
    line = assert_one_line_error(r)
    assert "production" in line and "both sides moved" in line and BRANCH in line, line
    assert rev(store) == main_before and rev(store, BRANCH) == branch_before
    assert aliases(main_of(store), "model/mnist")["production"] == "v2"
    assert status(store) == ""
    with pytest.raises(MergeConflict):
        main_of(store).merge(BRANCH)
    assert rev(store) == main_before
    # nothing half-written: no dangling merge in the reflog of main, fsck clean
    assert fsck(store).returncode == 0


def test_alias_on_a_link_unlinked_on_main_meanwhile_is_a_conflict(store):
    main_of(store).link("gemma-finetuned:v1", "model/mnist")
    branch_of(store).set_alias("model/mnist:v1", "staging")
    main_of(store).unlink("model/mnist:v1")
    before = rev(store)
    r = invoke("-C", store, "merge", BRANCH, actor=ALICE)
    line = assert_one_line_error(r)
    assert "model/mnist" in line and "unlinked" in line, line
    assert rev(store) == before


def test_a_commit_made_by_hand_on_the_branch_is_refused_clearly(store):
    branch_of(store).link("gemma-finetuned:v1", "model/mnist")
    main_of(store).tag("model/mnist", "main-moved")  # so no fast-forward is possible
    git("-C", store, "checkout", "-q", BRANCH)
    (store / "registries" / "model" / "mnist" / "aliases.yaml").write_text("production: v1\n")
    hand = hand_commit(store, "move production by hand")
    git("-C", store, "checkout", "-q", "main")
    before, branch_before = rev(store), rev(store, BRANCH)

    r = invoke("-C", store, "merge", BRANCH, actor=ALICE)
    line = assert_one_line_error(r)
    assert hand[:10] in line and "not made by canonry" in line and "move production by hand" in line, line
    assert "git" in line and "canonry validate" in line
    assert rev(store) == before and rev(store, BRANCH) == branch_before
    assert status(store) == ""


def test_merging_an_already_merged_branch_says_up_to_date(store):
    branch_of(store).link("gemma-finetuned:v2", "model/mnist")
    main_of(store).link("gemma-finetuned:v1", "model/mnist")
    ok("-C", store, "merge", BRANCH, actor=ALICE)
    merged = rev(store)
    r = ok("-C", store, "merge", BRANCH, actor=ALICE)
    assert r.stdout.strip() == f"{BRANCH} is already merged into main: nothing to do"
    assert rev(store) == merged
    # a branch made from main and never written to is "merged" too
    git("-C", store, "branch", "promote/empty", "main")
    r = ok("-C", store, "merge", "promote/empty", "--json", actor=ALICE)
    assert r.json()["kind"] == "up-to-date" and rev(store) == merged


def test_merge_errors_are_one_line(store):
    assert "promote/none" in assert_one_line_error(invoke("-C", store, "merge", "promote/none"))
    assert_one_line_error(invoke("-C", store, "merge", "main"))


# ---- automations fire for what the merge brought, once ------------------------------------------------
def _recorder(server):
    return {"name": "notify", "on": ["link.created", "alias.moved", "alias.added"], "action": "webhook",
            "with": {"url": server.url, "timeout": 5, "retries": 0}}


def _delivered(server) -> list[tuple[str, str]]:
    import json

    return sorted((json.loads(r["body"])["kind"], json.loads(r["body"])["target"]) for r in server.requests)


@pytest.mark.parametrize("main_moved", [False, True], ids=["fast-forward", "merge-commit"])
def test_merge_fires_the_automations_of_every_merged_operation_once(store, main_moved):
    server = WebhookServer()
    try:
        main_of(store).set_automations([_recorder(server)])
        b = branch_of(store)
        b.link("gemma-finetuned:v3", "model/mnist")  # two commits on the branch
        b.link("gemma-finetuned:v4", "model/mnist", aliases=["production"])
        assert server.requests == []  # proposals fire nothing
        if main_moved:
            main_of(store).tag("model/mnist", "meanwhile")
        before = rev(store)
        server.requests.clear()

        result = main_of(store).merge(BRANCH)
        assert result.kind == ("merge" if main_moved else "fast-forward")
        expected = [("alias.moved", "model/mnist:production"), ("link.created", "model/mnist:v1"),
                    ("link.created", "model/mnist:v2")]
        assert _delivered(server) == expected
        # and the range of the merge has nothing left to deliver
        again = main_of(store).run_automations(f"{before}..main")
        assert again == [], [(o["kind"], o["target"]) for o in again]
        assert _delivered(server) == expected
    finally:
        server.close()
