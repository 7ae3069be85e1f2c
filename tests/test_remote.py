"""Sharing a store through git remotes: clone, push, pull, sync over a path, file:// and smart
HTTP; concurrent pushes from two clones; a push that lost a race (replay, renumbering, clean
refusal); pulls onto local work; the automation run log (git notes) travelling with pushes.

Real parts only: bare repositories made with `git init --bare`, clones in tmp_path, smart-HTTP
servers on 127.0.0.1 (dulwich's WSGI git app, and `git http-backend` for the concurrent case), the
git CLI for every check of history (`merge-base --is-ancestor`, `fsck --strict`), canonry as a
real process where concurrency is real."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from _plugin_helpers import WebhookServer
from _remote_helpers import (  # noqa: F401
    ALICE,
    BOB,
    NOTES_REF,
    aliases,
    free_port,
    fsck,
    git,
    git_http,
    git_http_backend,
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
    world,
)
from conftest import assert_one_line_error

import canonry
from canonry.errors import MergeConflict

SECRET = "s3cret-Pa55word"


# ---- clone, push, pull: the round trip ---------------------------------------------------------
def test_clone_link_push_and_pull_in_another_clone(world, tmp_path):
    w = world()
    a = w.clone("alice")  # a path
    b = w.clone("bob", url=f"file://{w.remote}")  # a file:// URL
    assert status(a) == "" and status(b) == ""
    assert rev(a) == rev(b) == w.base

    ok("-C", a, "link", "gemma-finetuned:v1", "model/mnist", "--alias", "staging", actor=ALICE)
    pushed = ok("-C", a, "push", actor=ALICE)
    assert "pushed main" in pushed.stdout and "replayed" not in pushed.stdout
    assert rev(w.remote) == rev(a) != w.base
    assert is_ancestor(w.remote, w.base, "main")

    pulled = ok("-C", b, "pull", actor=BOB)
    assert "fast-forward" in pulled.stdout, pulled
    assert rev(b) == rev(w.remote)
    # the work tree follows: nothing to commit, the new files are there
    assert status(b) == ""
    assert (b / "registries" / "model" / "mnist" / "links" / "v1.yaml").exists()
    s = canonry.open(str(b))
    assert aliases(s, "model/mnist") == {"production": "v0", "staging": "v1"}
    assert git("-C", b, "log", "-1", "--format=%ae").strip() == "alice@example.com"

    again = ok("-C", b, "pull", actor=BOB)
    assert "up to date" in again.stdout
    assert ok("-C", a, "push", actor=ALICE).stdout.startswith("main: up to date")
    assert fsck(w.remote).returncode == 0, fsck(w.remote).stdout


def test_pull_fast_forward_says_which_range_to_run_automations_on(world):
    w = world()
    a, b = w.clone("alice"), w.clone("bob")
    before = rev(b)
    open_as(a, ALICE).link("gemma-finetuned:v2", "model/mnist")
    open_as(a, ALICE).set_alias("model/mnist:v1", "production")
    open_as(a, ALICE).push()

    pulled = invoke("-C", b, "pull", actor=BOB)
    assert pulled.exit_code == 0, pulled
    after = rev(b)
    assert after == rev(w.remote) and status(b) == ""
    hint = [line for line in pulled.stdout.splitlines() if "automations run" in line]
    assert len(hint) == 1, pulled.stdout
    spec = hint[0].split("automations run", 1)[1].strip()
    old, new = spec.split("..")
    assert before.startswith(old) and after.startswith(new), (spec, before, after)
    # the command it names runs and sees the events of the pulled commits
    events = ok("-C", b, "events", spec, "--json", actor=BOB).json()
    kinds = [(e["kind"], e["target"]) for e in events]
    assert ("link.created", "model/mnist:v1") in kinds
    assert ("alias.moved", "model/mnist:production") in kinds
    assert ok("-C", b, "automations", "run", spec, actor=BOB).exit_code == 0


def test_pull_onto_local_unpublished_commits_replays_them(world):
    w = world()
    a, b = w.clone("alice"), w.clone("bob")
    open_as(b, BOB).tag("model/mnist", "reviewed")  # local, unpublished
    local = rev(b)
    open_as(a, ALICE).link("gemma-finetuned:v1", "model/mnist", aliases=["staging"])
    open_as(a, ALICE).push()
    remote_head = rev(w.remote)

    pulled = invoke("-C", b, "pull", actor=BOB)
    assert pulled.exit_code == 0, pulled
    assert "rebased" in pulled.stdout and "replayed 1 local commit" in pulled.stdout, pulled.stdout
    # Bob's commit now sits on the remote's head, with Bob as its author; nothing lost
    assert parents(b, "main") == [remote_head]
    assert git("-C", b, "log", "-1", "--format=%ae %s").strip() == "bob@example.com tag model/mnist +reviewed"
    assert not is_ancestor(b, local, "main")
    s = canonry.open(str(b))
    assert s.collection("model/mnist").tags == ["reviewed"]
    assert aliases(s, "model/mnist") == {"production": "v0", "staging": "v1"}
    assert status(b) == ""
    # and it pushes as a fast-forward of the remote
    pushed = open_as(b, BOB).push()
    assert pushed.action == "pushed" and pushed.replayed == 0
    assert is_ancestor(w.remote, remote_head, "main")


def test_pull_after_a_replay_names_a_range_that_runs(world):
    """The hint printed by a pull that replayed local commits must be a range canonry accepts."""
    w = world()
    a, b = w.clone("alice"), w.clone("bob")
    open_as(b, BOB).tag("model/mnist", "local")
    open_as(a, ALICE).link("gemma-finetuned:v1", "model/mnist")
    open_as(a, ALICE).push()
    pulled = invoke("-C", b, "pull", actor=BOB)
    assert pulled.exit_code == 0 and "rebased" in pulled.stdout, pulled
    hint = [line for line in pulled.stdout.splitlines() if "automations run" in line]
    assert hint, pulled.stdout
    spec = hint[0].split("automations run", 1)[1].strip()
    ran = invoke("-C", b, "events", spec, actor=BOB)
    assert ran.exit_code == 0, (spec, ran)
    assert "model/mnist:v1" in ran.stdout  # what came from the remote is in that range


def test_sync_pulls_then_pushes(world):
    w = world()
    a, b = w.clone("alice"), w.clone("bob")
    open_as(a, ALICE).link("gemma-finetuned:v1", "model/mnist")
    open_as(a, ALICE).push()
    open_as(b, BOB).link("gemma-finetuned:v2", "model/other")
    r = invoke("-C", b, "sync", actor=BOB)
    assert r.exit_code == 0, r
    assert "synced main (pushed)" in r.stdout and "replayed 1" in r.stdout
    assert rev(b) == rev(w.remote)
    s = canonry.open(str(b))
    assert links(s, "model/mnist") == {"v0": "gemma-finetuned:v0", "v1": "gemma-finetuned:v1"}
    assert links(s, "model/other") == {"v0": "gemma-finetuned:v2"}


def test_push_json_and_named_remote_tracking_ref(world):
    w = world()
    a = w.clone("alice")
    open_as(a, ALICE).tag("model/mnist", "x")
    data = ok("-C", a, "push", "--json", actor=ALICE).json()
    assert data["action"] == "pushed" and data["branch"] == "main"
    assert data["new"] == rev(w.remote) and data["old"] == w.base and data["replayed"] == 0
    # like `git push`, a push brings the remote-tracking ref along: git status is not "ahead"
    assert rev(a, "refs/remotes/origin/main") == rev(w.remote)
    assert "ahead" not in git("-C", a, "status", "-sb").splitlines()[0]


# ---- concurrency: two clones pushing to one bare remote ------------------------------------------
DRIVER = r"""
import json, os, sys
import canonry
path, name, rounds, per_round, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
s = canonry.open(path)
for r in range(rounds):
    for k in range(per_round):
        op = f"{name}-r{r}-k{k}"
        f = os.path.join(files, op + ".bin")
        with open(f, "w") as fh:
            fh.write(f"{op}\n")
        v = s.log_artifact(f, name="shared-weights", type="model")
        lv = s.link(v.address, "model/shared")
        s.set_alias(lv.address, f"{name}-last")
        s.tag(lv.address, op)
        print(json.dumps({"op": op, "digest": v.digest}), flush=True)
    res = s.push()
    print(json.dumps({"push": res.to_dict()}), flush=True)
"""


def _check_shared_collection(w, expected: dict[str, str], last: dict[str, str]):
    """Every operation landed exactly once on the remote: one link per logged digest, its tag on
    it, each clone's `<name>-last` alias on its last link; the history validates."""
    s, path = w.remote_store()
    by_version = {}
    for lv in s.versions("model/shared"):
        by_version[lv.version] = (s.artifact_version(lv.artifact).digest, lv.tags)
    digests = [d for d, _ in by_version.values()]
    assert sorted(digests) == sorted(expected.values()), "a link was lost or doubled"
    assert len(set(digests)) == len(digests)
    for op, digest in expected.items():
        tagged = [v for v, (d, tags) in by_version.items() if op in tags]
        assert len(tagged) == 1, (op, tagged)
        assert by_version[tagged[0]][0] == digest, f"tag {op} is on another link than its own"
    versions = s.artifact_versions("shared-weights")
    assert sorted(v.digest for v in versions) == sorted(expected.values())
    al = aliases(s, "model/shared")
    for name, digest in last.items():
        assert by_version[al[f"{name}-last"]][0] == digest, (name, al)
    # history tells each link once
    hist = [h for h in s.history("model/shared") if h.op == "link"]
    assert len(hist) == len(expected)
    report = s.validate(f"{w.base}..main")
    assert report.ok, [f.line() for f in report]
    return s, path


def test_two_clones_pushing_concurrently_lose_nothing(world, tmp_path):
    """Two processes, two clones, one bare remote: each does several log/link/alias/tag
    operations, then pushes, several times over, at the same time."""
    w = world()
    a, b = w.clone("alice"), w.clone("bob")
    files = tmp_path / "driver-files"
    files.mkdir()
    rounds, per_round = 4, 2
    procs = {}
    for name, path, actor in (("a", a, ALICE), ("b", b, BOB)):
        env = dict(os.environ, CANONRY_ACTOR=actor)
        procs[name] = subprocess.Popen([sys.executable, "-c", DRIVER, str(path), name, str(rounds),
                                        str(per_round), str(files)], env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
    outputs = {}
    for name, p in procs.items():
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, f"{name}: {err}"
        outputs[name] = [json.loads(line) for line in out.splitlines()]

    expected, last, pushed = {}, {}, {}
    for name, lines in outputs.items():
        ops = [x for x in lines if "op" in x]
        assert len(ops) == rounds * per_round
        expected.update({x["op"]: x["digest"] for x in ops})
        last[name] = ops[-1]["digest"]
        pushed[name] = [x["push"] for x in lines if "push" in x]
        assert all(p["action"] == "pushed" for p in pushed[name]), pushed[name]
    # somebody lost at least one race and replayed (else the test proved nothing about races)
    assert sum(p["replayed"] for ps in pushed.values() for p in ps) > 0, pushed

    head = rev(w.remote)
    # never forced: every commit either side ever pushed is in the remote's history
    for name, ps in pushed.items():
        for p in ps:
            assert is_ancestor(w.remote, p["new"], head), (name, p)
            if p["old"]:
                assert is_ancestor(w.remote, p["old"], p["new"]), (name, p)
    assert is_ancestor(w.remote, w.base, head)
    check = fsck(w.remote)
    assert check.returncode == 0, check.stdout + check.stderr

    _check_shared_collection(w, expected, last)
    # authors kept through replays: each actor authored 4 commits per operation
    authors = git("-C", w.remote, "log", "--format=%ae", f"{w.base}..main").split()
    assert authors.count("alice@example.com") == authors.count("bob@example.com") == rounds * per_round * 4


def test_push_that_landed_is_reported_even_if_someone_built_on_it_at_once(world, git_http_backend,
                                                                        tmp_path):
    """A push lands, and before the pusher looks, another writer (here a post-receive hook, as
    a bot would) moves the branch on top of it: the push must be reported as pushed, not
    mistaken for a lost race and then for "up-to-date" (a flake seen in CI)."""
    w = world()
    hook = w.remote / "hooks" / "post-receive"
    hook.write_text("#!/bin/sh\n"
                    "unset GIT_QUARANTINE_PATH\n"
                    "head=$(git rev-parse refs/heads/main)\n"
                    "c=$(git commit-tree -p $head -m 'bot: built on the push' $head^{tree})\n"
                    "git update-ref refs/heads/main $c $head\n")
    hook.chmod(0o755)
    server = git_http_backend(tmp_path)
    a = w.clone("alice-bot", url=server.url("remote.git"))
    s = open_as(a, ALICE)
    v = s.log_artifact(unique_file(tmp_path, "bot-race"), name="shared-weights", type="model")
    mine = s.link(v.address, "model/shared")
    before = rev(w.remote)
    res = s.push().to_dict()
    head = rev(w.remote)
    assert res["action"] == "pushed", res
    assert res["old"] == before and res["new"] != head
    assert is_ancestor(w.remote, res["new"], head)
    assert git("-C", w.remote, "log", "-1", "--format=%s", head).strip() == "bot: built on the push"
    # the clone came along to the bot's commit, and the link is there
    assert rev(a) == head
    assert s.resolve(mine.address).artifact == v.address


def test_concurrent_pushes_over_http(world, git_http_backend, tmp_path):
    """The same race through a smart-HTTP server (git http-backend: real git decides each ref
    update as a compare-and-swap); the loser fetches, replays and pushes again.

    (dulwich's own WSGI server is not used here: its receive-pack ignores a failed
    compare-and-swap and answers `ok`, so a lost race there looks like a successful push.)"""
    w = world()
    server = git_http_backend(tmp_path)
    url = server.url("remote.git")
    paths = {"a": w.clone("alice-http", url=url), "b": w.clone("bob-http", url=url)}
    stores = {"a": open_as(paths["a"], ALICE), "b": open_as(paths["b"], BOB)}
    rounds = 3
    expected, last, pushed, errors = {}, {}, {"a": [], "b": []}, []
    barrier = threading.Barrier(2)
    lock = threading.Lock()

    def work(name):
        s = stores[name]
        try:
            for r in range(rounds):
                op = f"{name}-r{r}"
                v = s.log_artifact(unique_file(tmp_path, op), name="shared-weights", type="model")
                lv = s.link(v.address, "model/shared")
                s.set_alias(lv.address, f"{name}-last")
                s.tag(lv.address, op)
                with lock:
                    expected[op] = v.digest
                    last[name] = v.digest
                barrier.wait(timeout=60)  # push at the same moment
                pushed[name].append(s.push().to_dict())
        except Exception as e:  # pragma: no cover - reported below
            errors.append(f"{name}: {type(e).__name__}: {e}")
            barrier.abort()

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    head = rev(w.remote)
    for ps in pushed.values():
        assert len(ps) == rounds and all(p["action"] == "pushed" for p in ps), ps
        for p in ps:
            assert is_ancestor(w.remote, p["new"], head)
    assert fsck(w.remote).returncode == 0
    _check_shared_collection(w, expected, last)


# ---- smart HTTP -----------------------------------------------------------------------------------
def test_push_and_pull_over_http_never_print_credentials(world, git_http, tmp_path):
    w = world()
    server = git_http(tmp_path)
    secret_url = server.url("remote.git", userinfo=f"alice:{SECRET}")
    outputs = []

    r = invoke("clone", secret_url, tmp_path / "alice-http", actor=ALICE)
    outputs.append(r.output)
    assert r.exit_code == 0, r
    assert f"cloned http://127.0.0.1:{server.port}/remote.git" in r.stdout
    a = tmp_path / "alice-http"
    r = invoke("clone", server.url("remote.git"), tmp_path / "bob-http", actor=BOB)
    assert r.exit_code == 0, r
    b = tmp_path / "bob-http"
    # the git CLI speaks to the same server
    git("clone", "-q", server.url("remote.git"), tmp_path / "git-http")
    assert rev(tmp_path / "git-http") == w.base

    for args in (("link", "gemma-finetuned:v3", "model/mnist", "--alias", "staging"), ("push",),
                 ("push", "--json"), ("pull",), ("sync",)):
        r = invoke("-C", a, *args, actor=ALICE)
        assert r.exit_code == 0, r
        outputs.append(r.output)
    assert rev(w.remote) == rev(a) != w.base
    assert any(auth for _, path, auth in server.requests if path.endswith("git-receive-pack")), \
        "the credentials of the URL were not used: the test would prove nothing"

    r = invoke("-C", b, "pull", actor=BOB)
    assert r.exit_code == 0 and "fast-forward" in r.stdout, r
    assert rev(b) == rev(w.remote) and status(b) == ""
    assert aliases(canonry.open(str(b)), "model/mnist") == {"production": "v0", "staging": "v1"}
    # and back: Bob pushes over HTTP, Alice pulls
    open_as(b, BOB).tag("model/mnist:v1", "approved")
    assert ok("-C", b, "push", actor=BOB).exit_code == 0
    r = invoke("-C", a, "pull", actor=ALICE)
    outputs.append(r.output)
    assert r.exit_code == 0 and rev(a) == rev(w.remote), r
    assert canonry.open(str(a)).resolve("model/mnist:v1").tags == ["approved"]

    for text in outputs:
        assert SECRET not in text and "alice:" not in text, text
    assert server.errors == []
    assert fsck(w.remote).returncode == 0


def test_credentials_not_printed_when_the_remote_is_unreachable(world, tmp_path):
    w = world()
    a = w.clone("alice")
    port = free_port()
    dead = f"http://alice:{SECRET}@127.0.0.1:{port}/remote.git"
    git("-C", a, "remote", "add", "dead", dead)
    for args in (("clone", dead, tmp_path / "nowhere"), ("-C", a, "push", "dead"), ("-C", a, "pull", "dead"),
                 ("-C", a, "sync", "dead"), ("-C", a, "push", dead)):
        r = invoke(*args, actor=ALICE)
        line = assert_one_line_error(r)
        assert SECRET not in r.output and "alice:" not in r.output, r
        assert f"127.0.0.1:{port}/remote.git" in line, line
    assert not (tmp_path / "nowhere").exists() or not os.listdir(tmp_path / "nowhere")


def test_a_url_python_cannot_parse_is_still_a_one_line_error(world):
    """safe_url must not crash on a URL urlsplit rejects (port out of range)."""
    w = world()
    a = w.clone("alice")
    bad = f"http://alice:{SECRET}@127.0.0.1:99999/remote.git"
    r = invoke("-C", a, "push", bad, actor=ALICE)
    assert_one_line_error(r)
    assert SECRET not in r.output


def test_unknown_remote_name_is_a_one_line_error(world):
    w = world()
    a = w.clone("alice")
    r = invoke("-C", a, "push", "upstream", actor=ALICE)
    assert "upstream" in assert_one_line_error(r)


# ---- a push that lost a race -----------------------------------------------------------------------
def test_lost_race_renumbers_the_link_and_moves_the_alias_with_it(world):
    w = world()
    a, b = w.clone("alice"), w.clone("bob")
    # Bob links into model/mnist first and publishes: his link is v1 on the remote
    ok("-C", b, "link", "gemma-finetuned:v1", "model/mnist", actor=BOB)
    ok("-C", b, "push", actor=BOB)
    bobs = rev(w.remote)
    # Alice, not knowing, links another version as v1 locally and moves production onto it
    linked = ok("-C", a, "link", "gemma-finetuned:v2", "model/mnist", "--alias", "production", actor=ALICE)
    assert "model/mnist:v1" in linked.stdout
    mine = rev(a)

    r = invoke("-C", a, "push", actor=ALICE)
    assert r.exit_code == 0, r
    assert "replayed 1 local commit" in r.stdout, r.stdout
    head = rev(w.remote)
    assert rev(a) == head and parents(w.remote, head) == [bobs]  # on top of Bob's: no force
    assert is_ancestor(a, bobs, head) and not is_ancestor(a, mine, head)
    s = canonry.open(str(a))
    assert links(s, "model/mnist") == {"v0": "gemma-finetuned:v0", "v1": "gemma-finetuned:v1",
                                       "v2": "gemma-finetuned:v2"}
    assert aliases(s, "model/mnist") == {"production": "v2"}
    msg = git("-C", w.remote, "log", "-1", "--format=%an <%ae>%n%B", head)
    assert msg.startswith(ALICE)
    assert "as v2" in msg and '"replayed_from":"model/mnist:v1"' in msg
    assert status(a) == ""
    assert (a / "registries" / "model" / "mnist" / "links" / "v2.yaml").exists()
    hist = [(h.op, h.target) for h in s.history("model/mnist")]
    assert hist.count(("link", "model/mnist:v2")) == 1 and ("link", "model/mnist:v1") in hist
    assert fsck(w.remote).returncode == 0


def _diverge_on_production(w):
    """Alice and Bob both hold model/mnist v0 [production], v1, v2 (published)."""
    a, b = w.clone("alice"), w.clone("bob")
    sa = open_as(a, ALICE)
    sa.link("gemma-finetuned:v1", "model/mnist")
    sa.link("gemma-finetuned:v2", "model/mnist")
    sa.push()
    open_as(b, BOB).pull()
    return a, b


def test_replay_of_an_alias_on_a_version_unlinked_meanwhile_stops_cleanly(world):
    w = world()
    a, b = _diverge_on_production(w)
    ok("-C", b, "unlink", "model/mnist:v1", actor=BOB)
    ok("-C", b, "push", actor=BOB)
    remote_before = rev(w.remote)
    ok("-C", a, "alias", "set", "model/mnist:v1", "staging", actor=ALICE)
    local_before = rev(a)

    r = invoke("-C", a, "push", actor=ALICE)
    line = assert_one_line_error(r)
    assert "model/mnist" in line and "v1" in line and "unlinked" in line, line
    assert rev(a) == local_before, "the local branch moved"
    assert rev(w.remote) == remote_before, "the remote moved"
    assert status(a) == ""
    assert aliases(canonry.open(str(a)), "model/mnist")["staging"] == "v1"
    # the API says the same with a MergeConflict
    with pytest.raises(MergeConflict):
        open_as(a, ALICE).push()
    assert rev(a) == local_before and rev(w.remote) == remote_before
    assert fsck(w.remote).returncode == 0 and fsck(a).returncode == 0


def test_replay_when_both_moved_production_differently_stops_cleanly(world):
    w = world()
    a, b = _diverge_on_production(w)
    ok("-C", b, "alias", "set", "model/mnist:v2", "production", actor=BOB)
    ok("-C", b, "push", actor=BOB)
    remote_before = rev(w.remote)
    ok("-C", a, "tag", "add", "model/mnist", "ok-to-go", actor=ALICE)  # replayable on its own
    ok("-C", a, "alias", "set", "model/mnist:v1", "production", actor=ALICE)
    local_before = rev(a)

    r = invoke("-C", a, "push", actor=ALICE)
    line = assert_one_line_error(r)
    assert "production" in line and "both" in line, line
    assert rev(a) == local_before and rev(w.remote) == remote_before
    # a pull stops the same way, also leaving everything as it was
    r = invoke("-C", a, "pull", actor=ALICE)
    assert "production" in assert_one_line_error(r)
    assert rev(a) == local_before and status(a) == ""
    assert aliases(canonry.open(str(a)), "model/mnist")["production"] == "v1"


def test_both_moving_production_to_the_same_version_is_no_conflict(world):
    w = world()
    a, b = _diverge_on_production(w)
    open_as(b, BOB).set_alias("model/mnist:v2", "production")
    open_as(b, BOB).push()
    open_as(a, ALICE).set_alias("model/mnist:v2", "production")
    r = invoke("-C", a, "push", actor=ALICE)
    assert r.exit_code == 0, r
    assert aliases(canonry.open(str(a)), "model/mnist")["production"] == "v2"
    assert rev(a) == rev(w.remote)


def test_a_local_commit_made_by_hand_is_not_replayed_and_nothing_changes(world):
    w = world()
    a, b = w.clone("alice"), w.clone("bob")
    open_as(b, BOB).link("gemma-finetuned:v1", "model/mnist")
    open_as(b, BOB).push()
    remote_before = rev(w.remote)
    (a / "NOTES.md").write_text("hand-written\n")
    local_before = hand_commit(a, "add notes by hand")
    r = invoke("-C", a, "push", actor=ALICE)
    line = assert_one_line_error(r)
    assert local_before[:10] in line and "not made by canonry" in line, line
    assert rev(a) == local_before and rev(w.remote) == remote_before


def test_hand_made_commits_on_the_remote_are_kept_by_a_replayed_push(world):
    w = world()
    a, b = w.clone("alice"), w.git_clone("bob-git")
    (b / "README.md").write_text("the registry of the team\n")
    theirs = hand_commit(b, "readme")
    git("-C", b, "push", "-q", "origin", "main")
    open_as(a, ALICE).link("gemma-finetuned:v1", "model/mnist")
    assert open_as(a, ALICE).push().replayed == 1
    assert is_ancestor(w.remote, theirs, "main")
    clone = w.git_clone("check")
    assert (clone / "README.md").read_text() == "the registry of the team\n"
    assert (clone / "registries" / "model" / "mnist" / "links" / "v1.yaml").exists()


def test_a_replayed_canonry_merge_keeps_the_branch_as_second_parent(world):
    """`canonry merge` records [store head, branch head]; when the following push lost a race,
    the replayed merge must still have the branch as a parent (else the proposal no longer
    shows as merged, on the forge or for `git branch --merged`)."""
    w = world()
    a, b = w.clone("alice"), w.clone("bob")
    open_as(a, ALICE, branch="promote/x").link("gemma-finetuned:v3", "model/mnist", aliases=["production"])
    open_as(a, ALICE).link("gemma-finetuned:v1", "model/other")  # main moved: a real merge commit
    merged = open_as(a, ALICE).merge("promote/x")
    assert merged.kind == "merge" and len(parents(a, "main")) == 2
    open_as(b, BOB).tag("model/mnist", "meanwhile")
    open_as(b, BOB).push()

    pushed = open_as(a, ALICE).push()
    assert pushed.action == "pushed"
    assert is_ancestor(a, "promote/x", "main"), "promote/x is no longer merged into main"
    assert subject(w.remote, "main") == "merge promote/x into main"


def test_automations_that_ran_on_a_local_commit_are_not_run_again_after_its_replay(world, tmp_path):
    """An automation fired for a local write; the push then lost a race and replayed that
    commit under a new id. Running the automations of the pushed range (the CI job after a
    push) must not deliver that event a second time."""
    server = WebhookServer()
    try:
        hook = {"name": "notify", "on": ["link.created"], "action": "webhook",
                "with": {"url": server.url, "timeout": 5, "retries": 0}}
        w = world(automations=[hook])
        a, b = w.clone("alice"), w.clone("bob")
        open_as(b, BOB).link("gemma-finetuned:v1", "model/shared")
        open_as(b, BOB).push()
        open_as(a, ALICE).link("gemma-finetuned:v2", "model/shared")
        assert open_as(a, ALICE).push().replayed == 1
        assert len(server.requests) == 2  # each link delivered once, when it was made

        ci, _ci_path = w.remote_store()
        delivered = ci.run_automations(f"{w.base}..main")
        assert delivered == [], [(d["target"], d["status"]) for d in delivered]
        assert len(server.requests) == 2
    finally:
        server.close()


# ---- the automation run log travels with pushes ---------------------------------------------------------
def test_run_log_notes_are_pushed_and_merged_when_both_sides_have_runs(world):
    keep_best = {"name": "keep-best", "on": "link.created", "filter": {"registry": "model"},
                 "action": "auto-alias", "with": {"alias": "best", "metric": "accuracy"}}
    w = world(automations=[keep_best])
    a, b = w.clone("alice"), w.clone("bob")
    remote_notes_before = rev(w.remote, NOTES_REF)

    open_as(a, ALICE).link("gemma-finetuned:v3", "model/mnist")  # auto-alias moves best: one run
    open_as(b, BOB).link("gemma-finetuned:v4", "model/other")  # another run, on Bob's side
    a_notes, b_notes = rev(a, NOTES_REF), rev(b, NOTES_REF)
    assert a_notes and b_notes and a_notes != b_notes

    assert open_as(a, ALICE).push().action == "pushed"
    assert rev(w.remote, NOTES_REF) == a_notes
    if remote_notes_before:
        assert is_ancestor(w.remote, remote_notes_before, a_notes)
    assert open_as(b, BOB).push().action == "pushed"
    merged = rev(w.remote, NOTES_REF)
    # merged, not overwritten: both sides' note histories are in the remote's
    assert is_ancestor(w.remote, a_notes, merged) and is_ancestor(w.remote, b_notes, merged)
    assert git("-C", w.remote, "notes", "--ref", "canonry-automations", "list").strip()

    ci, _ = w.remote_store()
    targets = {r["target"] for r in ci.automation_log() if r["receiver"] == "automation:keep-best"}
    assert {"model/mnist:v1", "model/other:v0"} <= targets, targets
    # Alice pulls: her log now holds Bob's run too
    open_as(a, ALICE).pull()
    assert rev(a, NOTES_REF) == merged
    mine = {r["target"] for r in open_as(a, ALICE).automation_log()}
    assert "model/other:v0" in mine
    assert fsck(w.remote).returncode == 0


def test_fetch_while_the_remote_keeps_moving_never_crashes(world):
    """A fetch must act on remote heads whose objects it has: if the remote's branch moves
    during the fetch, a pull sees the older head or fetches again, never a commit it does not
    have (a KeyError in _integrate: a traceback on the CLI). Giving up cleanly ("the remote kept
    moving") is tolerated under this deliberately frantic mover; crashing is not."""
    from canonry.errors import CanonryError

    w = world()
    a = w.clone("alice")
    stop = threading.Event()
    moved = []

    def keep_moving():  # another client advancing main on the remote, as fast as git can
        tree = git("-C", w.remote, "rev-parse", "main^{tree}").strip()
        while not stop.is_set():
            head = git("-C", w.remote, "rev-parse", "main").strip()
            new = git("-C", w.remote, *("-c", "user.name=t", "-c", "user.email=t@x"), "commit-tree",
                      tree, "-p", head, "-m", f"move {len(moved)}").strip()
            if subprocess.run(["git", "-C", str(w.remote), "update-ref", "refs/heads/main", new, head],
                              capture_output=True).returncode == 0:
                moved.append(new)
            # frantic bursts, with a rest after each: a pull that starts then can finish, so the test
            # does not depend on how fast a busy machine runs the puller against the mover
            stop.wait(0.2 if len(moved) % 10 == 0 else 0.002)

    mover = threading.Thread(target=keep_moving, daemon=True)
    mover.start()
    crashes, gave_up, pulled = [], [], 0
    try:
        s = open_as(a, ALICE)
        deadline = time.monotonic() + 20
        attempts = 0
        while (attempts < 20 or len(moved) < 12 or pulled == 0) and time.monotonic() < deadline:
            attempts += 1
            try:
                if s.pull().action == "fast-forward":
                    pulled += 1
            except CanonryError as e:
                gave_up.append(str(e))
            except Exception as e:
                crashes.append(f"{type(e).__name__}: {e}")
    finally:
        stop.set()
        mover.join(30)
    assert len(moved) > 10, "the remote did not move: the test proved nothing"
    assert crashes == [], crashes[:3]
    assert all("kept moving" in g for g in gave_up), gave_up[:3]
    assert pulled > 0
    assert is_ancestor(a, w.base, "main") and status(a) == ""
    assert fsck(a).returncode == 0


def test_clone_into_a_non_empty_directory_is_refused(world, tmp_path):
    w = world()
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine\n")
    r = invoke("clone", w.url, target, actor=ALICE)
    assert "not empty" in assert_one_line_error(r)
    assert os.listdir(target) == ["keep.txt"]


def test_push_to_a_remote_with_unrelated_history_changes_nothing(world, tmp_path):
    w = world()
    a = w.clone("alice")
    other = tmp_path / "other.git"
    git("init", "-q", "--bare", "-b", "main", other)
    stranger = tmp_path / "stranger"
    alien = canonry.init(str(stranger))
    git("-C", stranger, "remote", "add", "origin", other)
    alien.push()
    theirs = rev(other)
    open_as(a, ALICE).tag("model/mnist", "x")
    mine = rev(a)
    r = invoke("-C", a, "push", other, actor=ALICE)
    assert "no history" in assert_one_line_error(r) or "unrelated" in r.stderr
    assert rev(a) == mine and rev(other) == theirs


def test_push_meeting_the_remote_ref_lock_of_a_concurrent_push_retries(world):
    """While another client's push holds the remote's refs/heads/main.lock for a moment, a push
    is a lost race like any other: retried, not a failure. (git itself retries a held ref lock
    for core.filesRefLockTimeout, 100 ms by default; the lock here is held for 50 ms.)"""
    w = world()
    a = w.clone("alice")
    open_as(a, ALICE).tag("model/mnist", "x")
    lock = w.remote / "refs" / "heads" / "main.lock"
    lock.write_text(w.base + "\n")
    releaser = threading.Timer(0.05, lock.unlink)
    releaser.start()
    try:
        r = invoke("-C", a, "push", actor=ALICE)
    finally:
        releaser.join()
    assert r.exit_code == 0, r
    assert "main.lock" not in r.output
    assert rev(w.remote) == rev(a)


def test_relative_remote_urls_resolve_from_the_repository_as_git_does(world, tmp_path):
    """`canonry clone remote.git DIR` from the directory holding remote.git, and a remote added
    as `../remote.git`: push and pull work from any current directory, like git."""
    w = world()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = invoke("clone", "remote.git", "alice", cwd=tmp_path, actor=ALICE)  # relative URL
    assert r.exit_code == 0, r
    a = tmp_path / "alice"
    git("-C", a, "remote", "add", "up", "../remote.git")
    open_as(a, ALICE).tag("model/mnist", "relative")
    for remote in ("origin", "up"):
        r = invoke("-C", a, "push", remote, cwd=elsewhere, actor=ALICE)
        assert r.exit_code == 0, (remote, r)
    assert rev(w.remote) == rev(a)
    b = w.clone("bob")
    git("-C", b, "remote", "add", "up", "../remote.git")
    r = invoke("pull", "up", cwd=b / "registries", actor=BOB)
    assert r.exit_code == 0 and rev(b) == rev(w.remote), r
    # and the git CLI agrees on where `up` is, even from a subfolder
    assert git("-C", b / "registries", "ls-remote", "up", "refs/heads/main").split()[0] == rev(w.remote)


def test_run_log_lines_for_the_same_commit_from_both_sides_are_united(world, tmp_path):
    """Two clones both ran the automations of the same pushed commit (neither had the other's
    run log yet): after both push, the remote's note for that commit holds both runs."""
    server = WebhookServer()
    try:
        hook = {"name": "notify", "on": ["link.created"], "action": "webhook",
                "with": {"url": server.url, "timeout": 5, "retries": 0}}
        w = world(automations=[hook])
        seed = open_as(w.seed_path, ALICE)
        seed.link("gemma-finetuned:v1", "model/mnist")  # delivered by the seed: one run
        seed.push()
        target = rev(w.remote)
        a, b = w.clone("alice"), w.clone("bob")
        for path in (a, b):  # each loses the run log, then delivers again by hand (a retry, say)
            git("-C", path, "update-ref", "-d", NOTES_REF)
            runs = ok("-C", path, "automations", "run", target, "--json", actor=ALICE).json()
            assert [(r["target"], r["status"]) for r in runs] == [("model/mnist:v1", "ok")]
        a_notes, b_notes = rev(a, NOTES_REF), rev(b, NOTES_REF)
        assert a_notes != b_notes
        open_as(a, ALICE).push()
        open_as(b, BOB).push()
        note = git("-C", w.remote, "notes", "--ref", "canonry-automations", "show", target)
        lines = [json.loads(x) for x in note.splitlines()]
        assert len(lines) == 3, lines  # the seed's run, Alice's and Bob's
        assert len({x["at"] for x in lines}) == 3
        assert all(x["event"] == f"{target}:0" for x in lines)
        assert is_ancestor(w.remote, a_notes, NOTES_REF) and is_ancestor(w.remote, b_notes, NOTES_REF)
    finally:
        server.close()
