"""`canonry merge` runs the gate (issue 14): what a merge would bring in (MERGE-BASE..BRANCH)
must pass the checks `canonry validate` runs; a finding refuses the merge naming it, with the
store branch unchanged and no automation fired. The same from the CLI and from Python, for a
fast-forward and for a merge commit. Real repositories, the git CLI, a real HTTP server."""
from __future__ import annotations

import json

import pytest
from _plugin_helpers import WebhookServer
from _remote_helpers import ALICE, BOB, env_var, git, invoke, ok, open_as, rev, status, unique_file
from conftest import assert_one_line_error

import canonry
from canonry.errors import PolicyRefused

EVIL = "evil"


@pytest.fixture
def server():
    s = WebhookServer()
    yield s
    s.close()


@pytest.fixture
def store(tmp_path, server):
    """main, made by Alice (store admin): gemma-finetuned v0 (accuracy 0.95) and v1 (0.6), both
    linked in model/mnist, v0 holding the protected alias production; a policy (production needs
    accuracy >= 0.9) and a deploy webhook on production moves. Bob is a member of model."""
    path = tmp_path / "store"
    with env_var("CANONRY_ACTOR", ALICE):
        s = canonry.init(str(path))
    s.log_artifact(unique_file(tmp_path), name="gemma-finetuned", type="model", metrics={"accuracy": 0.95})
    s.log_artifact(unique_file(tmp_path), name="gemma-finetuned", type="model", metrics={"accuracy": 0.6})
    s.link("gemma-finetuned:v0", "model/mnist", aliases=["production"])
    s.link("gemma-finetuned:v1", "model/mnist")
    s.protect_alias("model", "production")
    s.set_member("model", "bob@example.com", "member")
    s.set_automations([
        {"name": "production-needs-accuracy", "action": "policy",
         "with": {"alias": "production", "metric": "accuracy", "min": 0.9}},
        {"name": "deploy", "on": ["alias.added", "alias.moved"], "filter": {"alias": "^production$"},
         "action": "webhook", "with": {"url": server.url, "timeout": 5, "retries": 0}},
    ])
    server.requests.clear()
    return path


def _bob_moves_production_by_hand(path, branch: str = EVIL) -> str:
    """On `branch` (made from main), Bob commits with git a move of production to v1: he is no
    admin (production is protected) and v1 fails the accuracy policy."""
    git("-C", path, "checkout", "-q", "-b", branch)
    aliases = path / "registries" / "model" / "mnist" / "aliases.yaml"
    text = aliases.read_text()
    assert "production: v0" in text, text
    aliases.write_text(text.replace("production: v0", "production: v1"))
    git("-C", path, "-c", "user.name=Bob Builder", "-c", "user.email=bob@example.com",
        "commit", "-q", "-am", "promote v1 to production")
    git("-C", path, "checkout", "-q", "main")
    return rev(path, branch)


def _findings(path, rng):
    out = invoke("-C", path, "validate", rng)
    assert out.exit_code == 1, out
    return [line for line in out.stdout.splitlines() if line.strip()]


def test_merge_refuses_a_fast_forward_that_validate_rejects(store, server):
    _bob_moves_production_by_hand(store)
    findings = _findings(store, f"main..{EVIL}")
    assert any(": role: " in f for f in findings) and any(": policy: " in f for f in findings), findings
    before, branch_before = rev(store), rev(store, EVIL)

    r = invoke("-C", store, "merge", EVIL, actor=ALICE)
    line = assert_one_line_error(r)
    assert f"cannot merge {EVIL}" in line and f"..{EVIL}` reports {len(findings)} finding" in line, line
    assert findings[0] in line, line  # the first finding, word for word
    assert "nothing was merged" in line
    assert rev(store) == before and rev(store, EVIL) == branch_before
    assert server.requests == []  # the deploy webhook did not fire
    assert status(store) == ""
    assert open_as(store, ALICE).collection("model/mnist").aliases["production"] == "v0"


def test_merge_refuses_from_python_too(store, server):
    _bob_moves_production_by_hand(store)
    before = rev(store)
    with pytest.raises(PolicyRefused) as refused:
        open_as(store, ALICE).merge(EVIL)
    message = str(refused.value)
    assert "\n" not in message and "role" in message and "finding" in message, message
    assert rev(store) == before and server.requests == []
    assert open_as(store, ALICE).automation_log() == []


def _forged_commit(path) -> str:
    """On EVIL, a commit whose trailers say "tag model/mnist:v1" (Bob made it with canonry) and
    that Bob then amended by hand to move production too: replay would re-apply the tag only,
    and bring the hand commit into main's history."""
    open_as(path, BOB, branch=EVIL).tag("model/mnist:v1", "looks-good")
    git("-C", path, "checkout", "-q", EVIL)
    aliases = path / "registries" / "model" / "mnist" / "aliases.yaml"
    aliases.write_text(aliases.read_text().replace("production: v0", "production: v1"))
    git("-C", path, "-c", "user.name=Bob Builder", "-c", "user.email=bob@example.com",
        "commit", "-q", "-a", "--amend", "--no-edit")
    git("-C", path, "checkout", "-q", "main")
    assert "Canonry-Op" in git("-C", path, "log", "-1", "--format=%B", EVIL)
    return rev(path, EVIL)


@pytest.mark.parametrize("how", ["--no-ff", "main moved"])
def test_merge_commit_path_refuses_what_validate_rejects(store, server, how):
    """No fast-forward: the branch's operations are replayed as one merge commit whose second
    parent is the branch head. A commit validate rejects must not enter main's history that way."""
    _forged_commit(store)
    args = ["--no-ff"] if how == "--no-ff" else []
    if how == "main moved":
        open_as(store, ALICE).tag("model/mnist", "main-moved")
    assert any(": role: " in f for f in _findings(store, f"main..{EVIL}"))
    before = rev(store)
    line = assert_one_line_error(invoke("-C", store, "merge", EVIL, *args, actor=ALICE))
    assert "cannot merge evil" in line and "role" in line, line
    assert rev(store) == before and server.requests == []
    assert git("-C", store, "merge-base", "--is-ancestor", EVIL, "main", check=False) == ""
    assert git("-C", store, "rev-list", f"main..{EVIL}").strip()  # still not merged


def test_a_hand_commit_that_cannot_be_replayed_is_still_named_as_such(store, server):
    """Main moved (no fast-forward) and the branch holds a plain git commit: the message stays
    the one that says why it cannot be replayed (test_merge.py), and nothing lands."""
    _bob_moves_production_by_hand(store)
    open_as(store, ALICE).tag("model/mnist", "main-moved")
    before = rev(store)
    line = assert_one_line_error(invoke("-C", store, "merge", EVIL, actor=ALICE))
    assert "not made by canonry" in line, line
    assert rev(store) == before and server.requests == []


def test_merge_refuses_a_commit_that_breaks_an_invariant(store, server):
    """Not only roles and policies: every check of validate (here a link re-pointed)."""
    git("-C", store, "checkout", "-q", "-b", EVIL)
    link = store / "registries" / "model" / "mnist" / "links" / "v1.yaml"
    link.write_text(link.read_text().replace("gemma-finetuned:v1", "gemma-finetuned:v0"))
    git("-C", store, "-c", "user.name=Alice Archer", "-c", "user.email=alice@example.com",
        "commit", "-q", "-am", "re-point v1")
    git("-C", store, "checkout", "-q", "main")
    before = rev(store)
    line = assert_one_line_error(invoke("-C", store, "merge", EVIL, actor=ALICE))
    assert "link" in line and "cannot merge evil" in line, line
    assert rev(store) == before


def test_a_clean_branch_still_merges_and_fires_once(store, server, tmp_path):
    """The gate lets through what validate passes: Alice (admin) proposes v0 -> v2 on a branch
    (accuracy 0.97), the merge fast-forwards and the webhook fires once."""
    s = open_as(store, ALICE)
    s.log_artifact(unique_file(tmp_path), name="gemma-finetuned", type="model", metrics={"accuracy": 0.97})
    proposal = open_as(store, ALICE, branch="promote/v2")
    proposal.link("gemma-finetuned:v2", "model/mnist", aliases=["production"])
    assert server.requests == []  # a proposal fires nothing
    assert invoke("-C", store, "validate", "main..promote/v2").exit_code == 0
    r = ok("-C", store, "merge", "promote/v2", actor=ALICE)
    assert "fast-forward" in r.stdout
    assert rev(store) == rev(store, "promote/v2")
    assert [json.loads(req["body"])["version"] for req in server.requests] == ["v2"]


def test_merge_gate_counts_and_names_several_findings(store, server, tmp_path):
    """Several commits with findings: the line names the first two and how many in all."""
    _bob_moves_production_by_hand(store)
    git("-C", store, "checkout", "-q", EVIL)
    aliases = store / "registries" / "model" / "mnist" / "aliases.yaml"
    aliases.write_text(aliases.read_text().replace("production: v1", "production: v0"))
    git("-C", store, "-c", "user.name=Bob Builder", "-c", "user.email=bob@example.com",
        "commit", "-q", "-am", "and back")
    git("-C", store, "checkout", "-q", "main")
    findings = _findings(store, f"main..{EVIL}")
    assert len(findings) >= 3, findings
    line = assert_one_line_error(invoke("-C", store, "merge", EVIL, actor=ALICE))
    assert f"reports {len(findings)} findings: {findings[0]}; {findings[1]}; and {len(findings) - 2} more" in line, line


@pytest.mark.parametrize("main_trusts", [False, True])
def test_the_merge_gate_runs_no_code_from_the_branch(store, server, tmp_path, main_trusts):
    """The gate checks the branch with the store's trusted policies: the branch's own
    plugins/*.py (and its own trust switch) are never imported, whether or not main trusts
    local plugins. (Once an admin's change that trusts them is merged, they are main's.)"""
    marker = tmp_path / "imported"
    if main_trusts:
        git("-C", store, "checkout", "-q", "main")
        config = store / "canonry.yaml"
        config.write_text(config.read_text().replace("trust_local_plugins: false", "trust_local_plugins: true"))
        git("-C", store, "-c", "user.name=Alice Archer", "-c", "user.email=alice@example.com",
            "commit", "-q", "-am", "trust local plugins")
    git("-C", store, "checkout", "-q", "-b", EVIL)
    config = store / "canonry.yaml"
    config.write_text(config.read_text().replace("trust_local_plugins: false", "trust_local_plugins: true"))
    (store / "plugins").mkdir()
    (store / "plugins" / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from canonry import hookimpl\n\n@hookimpl\ndef check_change(events):\n    return None\n")
    aliases = store / "registries" / "model" / "mnist" / "aliases.yaml"
    aliases.write_text(aliases.read_text().replace("production: v0", "production: v1"))
    git("-C", store, "add", "-A")
    git("-C", store, "-c", "user.name=Bob Builder", "-c", "user.email=bob@example.com",
        "commit", "-q", "-m", "trust my own plugin, and promote v1")
    git("-C", store, "checkout", "-q", "main")
    before = rev(store)
    line = assert_one_line_error(invoke("-C", store, "merge", EVIL, actor=ALICE))
    assert "cannot merge evil" in line and "role" in line, line
    assert not marker.exists(), "merge imported the branch's plugins/evil.py"
    assert rev(store) == before


def test_plugin_code_on_a_branch_needs_a_store_admin(store):
    """main trusts local plugins; Bob, a member but no store admin, adds plugins/evil.py with git.
    validate reports it and merge refuses, so the code never reaches the trusted side."""
    cfg = store / "canonry.yaml"
    assert "trust_local_plugins: false" in cfg.read_text()
    cfg.write_text(cfg.read_text().replace("trust_local_plugins: false", "trust_local_plugins: true"))
    git("-C", store, "-c", "user.name=Alice Archer", "-c", "user.email=alice@example.com", "commit", "-q", "-am", "trust plugins")
    git("-C", store, "checkout", "-q", "-b", EVIL)
    (store / "plugins").mkdir()
    marker = store.parent / "evil-ran"
    (store / "plugins" / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    git("-C", store, "add", "plugins/evil.py")
    git("-C", store, "-c", "user.name=Bob Builder", "-c", "user.email=bob@example.com",
        "commit", "-q", "-m", "a helpful plugin")
    git("-C", store, "checkout", "-q", "main")
    findings = _findings(store, f"main..{EVIL}")
    assert any("plugins/evil.py: role: bob@example.com changed the store's plugin code" in f for f in findings), \
        findings
    before = rev(store)
    assert_one_line_error(invoke("-C", store, "merge", EVIL, actor=ALICE), contains=("cannot merge",))
    assert rev(store) == before and not marker.exists()
    # the same plugin, committed by the store admin: no finding
    git("-C", store, "checkout", "-q", "-b", "by-alice")
    (store / "plugins").mkdir(exist_ok=True)
    (store / "plugins" / "fine.py").write_text("VALUE = 1\n")
    git("-C", store, "add", "plugins/fine.py")
    git("-C", store, "-c", "user.name=Alice Archer", "-c", "user.email=alice@example.com", "commit", "-q", "-m", "a plugin")
    git("-C", store, "checkout", "-q", "main")
    assert invoke("-C", store, "validate", "main..by-alice").exit_code == 0
