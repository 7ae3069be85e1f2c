"""The promotion flow of the issue, end to end against a bare remote, with the commands the CI
files of docs/ci run, as real processes:

    propose on a branch (`canonry link … --branch promote/x --alias production`)
    → push the branch (git push) → CI: `canonry validate` and `canonry diff --format markdown`
    → `canonry merge promote/x` in a clone, `canonry push`
    → CI after the merge: `canonry automations run OLD..NEW` delivers the webhook exactly once,
      and running it again delivers nothing.

And a hand-edited invalid commit on a branch, caught by validate with file and commit named.
The webhook receiver is a real HTTP server on 127.0.0.1 that checks the signature."""
from __future__ import annotations

import json

import pytest
from _plugin_helpers import WebhookServer
from _remote_helpers import (
    ALICE,
    BOB,
    CAROL,
    NOTES_REF,
    aliases,
    env_var,
    fsck,
    git,
    hand_commit,
    invoke,
    is_ancestor,
    ok,
    parents,
    rev,
    run_process,
    status,
    unique_file,
)

import canonry

SECRET_ENV = "DEPLOY_SECRET"
SECRET = "whsec-ci-flow-9f2c-never-in-the-repo"
BRANCH = "promote/x"


def _deploy(url):
    return [{"name": "deploy-on-production", "on": ["alias.added", "alias.moved"],
             "filter": {"registry": "model", "alias": "^production$"}, "action": "webhook",
             "with": {"url": url, "secret_env": SECRET_ENV, "timeout": 5, "retries": 0}}]


@pytest.fixture
def team(tmp_path, monkeypatch):
    """A bare remote holding a store made by Alice: gemma-finetuned v0 (accuracy 0.91), v1
    (0.94), v2 (0.97); model/mnist v0 [production]; the deploy webhook configured (its secret is
    named, never stored). Returns (remote, server)."""
    monkeypatch.delenv(SECRET_ENV, raising=False)
    server = WebhookServer(secret=SECRET)
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", "-b", "main", remote)
    seed = tmp_path / "seed"
    with env_var("CANONRY_ACTOR", ALICE):
        s = canonry.init(str(seed))
        for acc in (0.91, 0.94, 0.97):
            s.log_artifact(unique_file(tmp_path, "ckpt"), name="gemma-finetuned", type="model",
                           metrics={"accuracy": acc})
        s.link("gemma-finetuned:v0", "model/mnist", aliases=["production"])
        autos = tmp_path / "automations.yaml"
        autos.write_text(json.dumps(_deploy(server.url)))  # JSON is YAML
        ok("-C", seed, "automations", "set", autos, actor=ALICE)
        git("-C", seed, "remote", "add", "origin", remote)
        ok("-C", seed, "push", actor=ALICE)
    assert server.requests == []
    yield remote, server
    server.close()


def _ci(args, cwd, secret: bool = False):
    """A CI step: canonry as a real process, the secret in its environment only when given."""
    env = {SECRET_ENV: SECRET} if secret else {}
    p = run_process(*args, cwd=cwd, actor=CAROL, env=env)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def _ci_clone(remote, path, notes: bool = False):
    git("clone", "-q", remote, path)
    if notes:  # "Fetch the automation run log"
        git("-C", path, "fetch", "-q", "origin", f"+{NOTES_REF}:{NOTES_REF}", check=False)
    return path


@pytest.mark.parametrize("variant", ["secret-in-ci-only", "main-moved-and-secret-everywhere"])
def test_propose_review_merge_and_deliver_once(team, tmp_path, monkeypatch, variant):
    remote, server = team
    moved = variant.startswith("main-moved")

    # 1. Alice proposes on a branch and pushes it with git (canonry push pushes the store branch)
    alice = tmp_path / "alice"
    ok("clone", remote, alice, actor=ALICE)
    r = ok("-C", alice, "link", "gemma-finetuned:v1", "model/mnist", "--branch", BRANCH,
           "--alias", "production", actor=ALICE)
    assert r.stdout.strip() == "linked gemma-finetuned:v1 -> model/mnist:v1 [production]"
    assert rev(alice) == rev(remote)  # main untouched
    git("-C", alice, "push", "-q", "origin", BRANCH)
    assert rev(remote, BRANCH) == rev(alice, BRANCH)
    assert server.requests == []  # a proposal fires nothing

    if moved:  # meanwhile somebody links into the same collection on main
        bob = tmp_path / "bob"
        ok("clone", remote, bob, actor=BOB)
        ok("-C", bob, "link", "gemma-finetuned:v2", "model/mnist", actor=BOB)
        ok("-C", bob, "push", actor=BOB)
    main_before_review = rev(remote)

    # 2. CI on the pull request: validate and diff (as the remote has them; local branches too)
    pr = _ci_clone(remote, tmp_path / "ci-pr")
    v = _ci(["validate", f"origin/main..origin/{BRANCH}"], pr)
    assert v.returncode == 0, v.stdout + v.stderr
    assert v.stdout == "" and v.stderr.startswith("validate: ok: checked 1 commit of ")
    git("-C", pr, "branch", BRANCH, f"origin/{BRANCH}")
    assert _ci(["validate", f"main..{BRANCH}", "--json"], pr).returncode == 0
    d = _ci(["diff", f"origin/main..origin/{BRANCH}", "--format", "markdown"], pr)
    assert d.returncode == 0, d.stderr
    assert d.stdout.startswith(f"### Registry changes (`origin/main..origin/{BRANCH}`)")
    assert "- `production` v0 → v1 (`gemma-finetuned:v1`, accuracy 0.91 → 0.94)" in d.stdout, d.stdout
    assert "alice@example.com" in d.stdout and SECRET not in d.stdout
    assert server.requests == []

    # 3. the merge, in a maintainer's clone, then canonry push
    if moved:
        monkeypatch.setenv(SECRET_ENV, SECRET)  # the maintainer's machine has the secret too
    maint = tmp_path / "maintainer"
    ok("clone", remote, maint, actor=BOB)
    git("-C", maint, "branch", BRANCH, f"origin/{BRANCH}")
    merged = ok("-C", maint, "merge", BRANCH, actor=BOB)
    assert ("(merge, " if moved else "(fast-forward, ") in merged.stdout, merged.stdout
    pushed = ok("-C", maint, "push", actor=BOB)
    assert "pushed main" in pushed.stdout
    old, new = main_before_review, rev(remote)
    assert is_ancestor(remote, old, new) and is_ancestor(remote, rev(remote, BRANCH), new)
    if moved:
        assert parents(remote, new) == [old, rev(remote, BRANCH)]
        assert len(server.requests) == 1  # delivered by the merge itself, where the secret was
    else:
        assert server.requests == []  # no secret on the maintainer's machine: recorded as failed
    s = canonry.open(str(maint))
    production = "v2" if moved else "v1"
    assert aliases(s, "model/mnist")["production"] == production
    assert s.resolve("model/mnist:production").artifact == "gemma-finetuned:v1"
    assert status(maint) == ""
    monkeypatch.delenv(SECRET_ENV, raising=False)

    # 4. CI after the push to main: automations run OLD..NEW, notes fetched before, pushed after
    outputs = []
    for n in range(2):  # the job, then the same job re-run
        job = _ci_clone(remote, tmp_path / f"ci-main-{n}", notes=True)
        run = _ci(["automations", "run", f"{old}..{new}"], job, secret=True)
        assert run.returncode == 0, run.stdout + run.stderr
        outputs.append(run.stdout)
        git("-C", job, "push", "-q", "origin", NOTES_REF)
    assert len(server.requests) == 1, [r["body"] for r in server.requests]
    if not moved:
        assert "deploy-on-production" in outputs[0] and "ok" in outputs[0]
    assert outputs[1].strip() == "nothing to deliver (all events already delivered)"
    req = server.requests[0]
    assert req["signature_valid"] and req["headers"]["x-canonry-event"] == "alias.moved"
    body = json.loads(req["body"])
    assert (body["collection"], body["alias"], body["previous_version"], body["version"]) == \
        ("model/mnist", "production", "v0", production)
    assert body["artifact"] == "gemma-finetuned:v1" and body["metrics"] == {"accuracy": 0.94}
    assert SECRET not in req["body"].decode()
    # the run log on the remote says it was delivered; the secret is nowhere in the repository
    log = canonry.open(str(_ci_clone(remote, tmp_path / "audit", notes=True))).automation_log()
    assert [x["status"] for x in log if x["receiver"] == "automation:deploy-on-production"
            and x["status"] == "ok"] == ["ok"]
    everything = git("-C", remote, "log", "--all", "-p", "--format=%B")
    assert SECRET not in everything
    assert fsck(remote).returncode == 0


def test_a_hand_edited_invalid_commit_on_a_branch_is_caught_by_validate(team, tmp_path):
    remote, server = team
    dev = tmp_path / "dev"
    git("clone", "-q", remote, dev)
    git("-C", dev, "checkout", "-q", "-b", "promote/bad")
    ok("-C", dev, "tag", "add", "model/mnist", "fine", "--branch", "promote/bad", actor=BOB)
    git("-C", dev, "reset", "-q", "--hard", "promote/bad")
    aliases_file = "registries/model/mnist/aliases.yaml"
    text = (dev / aliases_file).read_text()
    assert "production: v0" in text
    (dev / aliases_file).write_text(text.replace("production: v0", "production: v7"))  # no such link
    version_file = "artifacts/gemma-finetuned/v0.yaml"
    text = (dev / version_file).read_text()
    assert "0.91" in text
    (dev / version_file).write_text(text.replace("0.91", "0.99"))  # a logged version rewritten
    bad = hand_commit(dev, "promote by hand")
    git("-C", dev, "push", "-q", "origin", "promote/bad")

    ci = _ci_clone(remote, tmp_path / "ci")
    v = _ci(["validate", "origin/main..origin/promote/bad"], ci)
    assert v.returncode == 1, v.stdout + v.stderr
    lines = v.stdout.splitlines()
    assert any(line.startswith(f"{bad[:10]} {aliases_file}: alias-target:") for line in lines), lines
    assert any(line.startswith(f"{bad[:10]} {version_file}: version-immutable:") for line in lines), lines
    assert "finding" in v.stderr
    data = json.loads(_ci(["validate", "origin/main..origin/promote/bad", "--json"], ci).stdout)
    assert data["ok"] is False and data["checked_commits"] == 2
    found = {(f["commit"], f["path"], f["rule"]) for f in data["findings"]}
    assert (bad, aliases_file, "alias-target") in found
    assert (bad, version_file, "version-immutable") in found
    # the canonry-made commit before it is clean: every finding names the bad commit
    assert {f["commit"] for f in data["findings"]} == {bad}
    # the review comment shows the edit for what it is
    d = _ci(["diff", "origin/main..origin/promote/bad", "--format", "markdown"], ci)
    assert d.returncode == 0 and "edited after it was logged" in d.stdout, d.stdout
    # and canonry merge refuses to replay it (main has not moved: it would fast-forward, so no-ff)
    git("-C", ci, "branch", "promote/bad", "origin/promote/bad")
    r = invoke("-C", ci, "merge", "promote/bad", "--no-ff", actor=BOB)
    assert r.exit_code == 1 and "not made by canonry" in r.stderr, r
    assert rev(ci) == rev(remote)
    assert server.requests == []
