"""Nothing lost under concurrency, measured from outside (issue 15, "The suite"): N processes × M
mixed link/alias/unlink/tag operations on one store, for a bare store and a work-tree store, and
two clones pushing to one remote. Every acknowledged operation is in exactly one commit, aliases
are sound at every commit, fsck --strict, validate and git status are clean.

tests/test_concurrency.py holds the narrower races (threads, one collection, lock hand-offs); the
same checks at full size are stress/concurrency.py. Sizes are CI-sized; bounds are time budgets."""
from __future__ import annotations

import json

import pytest
from _reliability_helpers import (
    check_aliases_at_every_commit,
    check_clones,
    check_store,
    git,
    prepare_store,
    run_clones,
    run_workers,
)

import canonry

WORKERS, OPS = 4, 15
ROUNDS = 10


@pytest.mark.parametrize("layout", ["bare", "worktree"])
def test_processes_on_one_store_lose_nothing(tmp_path, layout):
    run = prepare_store(tmp_path, WORKERS, OPS, bare=layout == "bare")
    run_workers(run, timeout=120)
    figures = check_store(run)
    assert figures["acknowledged"] == WORKERS * OPS
    # most calls change something: a run where nothing landed would prove nothing
    assert figures["landed"] >= WORKERS * OPS // 2
    assert figures["walked"] == figures["commits"]


def test_two_clones_pushing_to_one_remote_lose_no_acknowledged_push(tmp_path):
    run = run_clones(tmp_path, ROUNDS, timeout=120)
    figures = check_clones(run)
    # every round ends in an acknowledged push or a conflict on `production`, nothing else
    assert figures["pushes acknowledged"] + sum(len(r["dropped"]) for r in run.results.values()) == 2 * ROUNDS
    assert figures["pushes acknowledged"] >= ROUNDS


def test_the_check_notices_a_lost_or_doubled_operation(tmp_path):
    """The checks are not vacuous: an acknowledgement with no commit, or one commit claimed
    twice, fails them."""
    run = run_workers(prepare_store(tmp_path, 2, 4, bare=True), timeout=120)
    check_store(run)
    acks = run.results["w0"]["acks"]
    lost = json.loads(json.dumps(acks))
    lost.append({"op": "link", "artifact": "w0:v99", "collection": "model/shared", "version": "v99",
                 "aliases": [], "created": True})
    run.results["w0"]["acks"] = lost
    with pytest.raises(AssertionError, match="w0"):
        check_store(run)
    change = next(a for a in acks if a["op"] == "link")  # a link always makes a commit
    run.results["w0"]["acks"] = [*acks, change]
    with pytest.raises(AssertionError, match="w0"):
        check_store(run)


def test_the_walk_notices_an_alias_naming_no_link_in_an_old_commit(tmp_path):
    """An unsound commit deep in the history fails the walk even when the head is sound again."""
    run = prepare_store(tmp_path, 1, 2, bare=False)
    with canonry.open(str(run.path)) as store:
        store.link("w0:v0", "model/shared", aliases=["champion"])
    aliases = run.path / "registries/model/shared/aliases.yaml"
    good = aliases.read_text()
    assert check_aliases_at_every_commit(run.path) == 3  # init, prepare, link
    for text in (good.replace("champion: v0", "champion: v7"), good):  # broken, then mended by hand
        aliases.write_text(text)
        git("-C", run.path, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qam", "hand edit")
    with pytest.raises(AssertionError, match="champion names v7"):
        check_aliases_at_every_commit(run.path)
