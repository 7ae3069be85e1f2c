"""`canonry validate`: the CI gate (issue 4). Real stores in tmp_path, commits made by canonry and
by hand with the git CLI; nothing mocked."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import git

import canonry
from canonry.review.validate import RULES, Finding, validate

HAND = ("-c", "user.name=Hand Editor", "-c", "user.email=hand@example.com")
ALIASES = "registries/model/c/aliases.yaml"
COLLECTION = "registries/model/c/collection.yaml"
LINK0 = "registries/model/c/links/v0.yaml"
LINK1 = "registries/model/c/links/v1.yaml"
AV0 = "artifacts/g/v0.yaml"


# ---- helpers -------------------------------------------------------------------------------------
@pytest.fixture
def promoted(store, make_file):
    """g:v0 (accuracy 0.95) linked as model/c:v0 [production]; g:v1 (accuracy 0.5) linked as v1."""
    v0 = store.log_artifact(str(make_file("weights 0")), name="g", type="model", metrics={"accuracy": 0.95})
    v1 = store.log_artifact(str(make_file("weights 1")), name="g", type="model", metrics={"accuracy": 0.5})
    store.link(v0.address, "model/c", aliases=["production"])
    store.link(v1.address, "model/c")
    return store


def branch(store_path, name="review"):
    git("-C", store_path, "checkout", "-q", "-b", name)


def hand_commit(store_path, message="hand edit") -> str:
    git("-C", store_path, "add", "-A")
    git("-C", store_path, *HAND, "commit", "-q", "-m", message)
    return git("-C", store_path, "rev-parse", "HEAD").strip()


def edit_yaml(store_path, rel, change):
    path = Path(store_path) / rel
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def write(store_path, rel, text):
    path = Path(store_path) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def rules(findings) -> set[str]:
    return {f.rule for f in findings}


def only(findings, rule) -> Finding:
    found = [f for f in findings if f.rule == rule]
    assert len(found) == 1, findings
    return found[0]


# ---- clean ------------------------------------------------------------------------------------------
def test_clean_store_and_clean_range_pass(promoted, store_path, cli):
    assert promoted.validate() == []
    report = promoted.validate("main~4..main")
    assert report == [] and report.checked_commits == 4
    # A proposal made by canonry on a branch, with an unlink and alias moves, is clean too.
    proposal = canonry.open(str(store_path), branch="promote")
    proposal.set_alias("model/c:v1", "staging")
    proposal.remove_alias("model/c", "staging")
    proposal.unlink("model/c:v1")
    assert promoted.validate("main..promote") == []
    for args in ((), ("main..promote",), ("main~2..main",)):
        result = cli("validate", *args)
        assert result.exit_code == 0, result
        assert result.stdout == ""
        assert "ok" in result.stderr


def test_whole_store_mode_checks_every_file(promoted, store_path, cli):
    # A hand edit on the store branch itself: only whole-store mode (or a range) sees it.
    edit_yaml(store_path, ALIASES, lambda d: d["aliases"].update(staging="v9"))
    hand_commit(store_path)
    finding = only(promoted.validate(), "alias-target")
    assert finding.commit is None and finding.path == ALIASES
    assert "staging" in finding.message and "v9" in finding.message
    result = cli("validate")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [f"store {ALIASES}: alias-target: {finding.message}"]


# ---- schemas ------------------------------------------------------------------------------------------
def test_bad_version_in_aliases_names_file_and_commit(promoted, store_path, cli):
    branch(store_path)
    edit_yaml(store_path, ALIASES, lambda d: d["aliases"].update(production="version-one"))
    sha = hand_commit(store_path, "promote by hand")
    findings = promoted.validate("main..review")
    finding = only(findings, "schema")
    assert (finding.commit, finding.path) == (sha, ALIASES)
    assert "aliases.production" in finding.message
    result = cli("validate", "main..review")
    assert result.exit_code == 1
    assert f"{sha[:10]} {ALIASES}: schema: " in result.stdout
    assert "1 finding" in result.stderr


def test_duplicate_yaml_key_in_aliases(promoted, store_path):
    branch(store_path)
    write(store_path, ALIASES, """\
        format: 1
        aliases:
          production: v0
          production: v1
        """)
    sha = hand_commit(store_path)
    finding = only(promoted.validate("main..review"), "schema")
    assert (finding.commit, finding.path) == (sha, ALIASES)
    assert "duplicate key 'production'" in finding.message


# ---- references -------------------------------------------------------------------------------------
def test_alias_pointing_at_missing_link(promoted, store_path):
    branch(store_path)
    edit_yaml(store_path, ALIASES, lambda d: d["aliases"].update(production="v7"))
    sha = hand_commit(store_path)
    finding = only(promoted.validate("main..review"), "alias-target")
    assert (finding.commit, finding.path) == (sha, ALIASES)
    assert "v7" in finding.message


def test_deleting_a_link_that_an_alias_holds(promoted, store_path):
    branch(store_path)
    (Path(store_path) / LINK0).unlink()
    hand_commit(store_path)
    assert rules(promoted.validate("main..review")) == {"alias-target"}


def test_link_to_missing_artifact_version_and_wrong_digest(promoted, store_path):
    branch(store_path)
    link = yaml.safe_load((Path(store_path) / LINK0).read_text())
    write(store_path, "registries/model/c/links/v2.yaml", yaml.safe_dump({**link, "artifact": "g:v9"}))
    write(store_path, "registries/model/c/links/v3.yaml", yaml.safe_dump({**link, "digest": "sha256:" + "0" * 64}))
    edit_yaml(store_path, COLLECTION, lambda d: d.update(next_version=4))
    sha = hand_commit(store_path)
    findings = promoted.validate("main..review")
    assert rules(findings) == {"link-target", "link-digest"}
    target, digest = only(findings, "link-target"), only(findings, "link-digest")
    assert target.path.endswith("links/v2.yaml") and "g:v9" in target.message and target.commit == sha
    assert digest.path.endswith("links/v3.yaml")


def test_link_of_another_type_and_types_not_accepted(promoted, store_path, make_file):
    ds = promoted.log_artifact(str(make_file("rows")), name="d", type="dataset")
    branch(store_path)
    write(store_path, "registries/model/c/links/v2.yaml", yaml.safe_dump(
        {"format": 1, "artifact": ds.address, "digest": ds.digest, "linked_at": "2024-01-01T00:00:00Z",
         "linked_by": "hand@example.com"}))
    edit_yaml(store_path, COLLECTION, lambda d: d.update(next_version=3))
    hand_commit(store_path)
    # A collection whose type the registry does not accept.
    write(store_path, "registries/model/tables/collection.yaml", yaml.safe_dump(
        {"format": 1, "type": "dataset", "next_version": 0, "created_at": "2024-01-01T00:00:00Z",
         "created_by": "hand@example.com"}))
    hand_commit(store_path)
    findings = promoted.validate("main..review")
    assert rules(findings) == {"collection-type", "type-accepted"}
    assert only(findings, "type-accepted").path == "registries/model/tables/collection.yaml"


# ---- history never rewritten ------------------------------------------------------------------------
def test_modified_and_deleted_artifact_version(promoted, store_path):
    branch(store_path)
    edit_yaml(store_path, AV0, lambda d: d["metrics"].update(accuracy=0.99))
    first = hand_commit(store_path, "improve the numbers")
    (Path(store_path) / "artifacts/g/v1.yaml").unlink()
    second = hand_commit(store_path, "drop a version")
    findings = promoted.validate("main..review")
    assert [(f.commit, f.path, f.rule) for f in findings if f.rule == "version-immutable"] == [
        (first, AV0, "version-immutable"), (second, "artifacts/g/v1.yaml", "version-immutable")]
    assert "metrics" in findings[0].message


def test_renumbered_link(promoted, store_path):
    v1 = yaml.safe_load((Path(store_path) / LINK1).read_text())
    branch(store_path)
    edit_yaml(store_path, LINK0, lambda d: d.update(artifact=v1["artifact"], digest=v1["digest"]))
    sha = hand_commit(store_path, "re-point v0")
    finding = next(f for f in promoted.validate("main..review") if f.rule == "link-renumbered")
    assert (finding.commit, finding.path) == (sha, LINK0)
    assert "g:v0 -> g:v1" in finding.message


def test_reused_link_number(promoted, store_path, make_file):
    promoted.unlink("model/c:v1")  # v1 is gone; its number must never come back
    v2 = promoted.log_artifact(str(make_file("weights 2")), name="g", type="model")
    branch(store_path)
    write(store_path, LINK1, yaml.safe_dump(
        {"format": 1, "artifact": v2.address, "digest": v2.digest, "linked_at": "2024-01-01T00:00:00Z",
         "linked_by": "hand@example.com"}))
    hand_commit(store_path)
    finding = only(promoted.validate("main..review"), "link-renumbered")
    assert finding.path == LINK1 and "reuses" in finding.message


def test_shrunk_types(promoted, store_path):
    branch(store_path)
    edit_yaml(store_path, "registries/dataset/registry.yaml", lambda d: d.update(types=["table"]))
    sha = hand_commit(store_path)
    finding = only(promoted.validate("main..review"), "types-shrunk")
    assert (finding.commit, finding.path) == (sha, "registries/dataset/registry.yaml")
    assert "dataset" in finding.message


def test_counters(promoted, store_path):
    branch(store_path)
    edit_yaml(store_path, COLLECTION, lambda d: d.update(next_version=1))
    hand_commit(store_path)
    assert rules(promoted.validate("main..review")) == {"counter-decreased", "counter-behind"}


# ---- layout -----------------------------------------------------------------------------------------
def test_unknown_files(promoted, store_path):
    branch(store_path)
    write(store_path, "registries/model/c/notes.txt", "remember to promote\n")
    write(store_path, "artifacts/g/v01.yaml", "format: 1\n")
    write(store_path, "README.md", "a store\n")  # outside registries/ and artifacts/: fine
    sha = hand_commit(store_path)
    findings = promoted.validate("main..review")
    assert sorted((f.path, f.rule, f.commit) for f in findings) == [
        ("artifacts/g/v01.yaml", "unknown-file", sha),
        ("registries/model/c/notes.txt", "unknown-file", sha)]


# ---- ranges: every commit, both sides of merges -------------------------------------------------------
def test_every_commit_of_the_range_including_merged_side_branches(promoted, store_path):
    branch(store_path, "side")
    edit_yaml(store_path, ALIASES, lambda d: d["aliases"].update(production="v5"))
    bad = hand_commit(store_path, "broken on a side branch")
    edit_yaml(store_path, ALIASES, lambda d: d["aliases"].update(production="v1"))
    hand_commit(store_path, "fixed again")
    git("-C", store_path, "checkout", "-q", "main")
    git("-C", store_path, "checkout", "-q", "-b", "review")
    write(store_path, "NOTES.md", "code next to the store\n")
    hand_commit(store_path, "unrelated")
    git("-C", store_path, *HAND, "merge", "-q", "--no-ff", "-m", "merge side", "side")
    report = promoted.validate("main..review")
    assert report.checked_commits == 4  # two on side, one on review, the merge
    assert [(f.commit, f.rule) for f in report] == [(bad, "alias-target")]
    # The final state is fine: the whole store, as merged, passes.
    git("-C", store_path, "checkout", "-q", "main")
    git("-C", store_path, "merge", "-q", "--ff-only", "review")
    assert promoted.validate() == []


def test_bad_range_is_a_one_line_error(promoted, cli):
    result = cli("validate", "main..no-such-branch")
    assert result.exit_code == 1
    assert "no-such-branch" in result.stderr and "Traceback" not in result.stderr


# ---- --json ---------------------------------------------------------------------------------------------
def test_json_output(promoted, store_path, cli):
    result = cli("validate", "--json")
    assert result.exit_code == 0
    # the whole store: its state at the head, and each of its 5 commits against its parent
    assert result.json() == {"ok": True, "checked_commits": 5, "findings": []}
    branch(store_path)
    edit_yaml(store_path, ALIASES, lambda d: d["aliases"].update(production="v7"))
    sha = hand_commit(store_path)
    result = cli("validate", "main..review", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["checked_commits"] == 1
    assert data["findings"] == [{"commit": sha, "path": ALIASES, "rule": "alias-target",
                                 "message": data["findings"][0]["message"]}]


# ---- policies ---------------------------------------------------------------------------------------------
POLICY = [{"name": "prod-accuracy", "action": "policy",
           "with": {"alias": "production", "metric": "accuracy", "min": 0.9}}]


def test_policy_of_the_base_refuses_a_hand_made_promotion(promoted, store_path, cli):
    promoted.set_automations(POLICY)
    branch(store_path)
    # The branch switches the policy off, then promotes a version that fails it: the policy in
    # force is the reviewed one (main's), not the branch's.
    edit_yaml(store_path, "canonry.yaml", lambda d: d.update(automations=[]))
    hand_commit(store_path, "no more policies")
    edit_yaml(store_path, ALIASES, lambda d: d["aliases"].update(production="v1"))
    sha = hand_commit(store_path, "promote v1")
    findings = promoted.validate("main..review")
    finding = only(findings, "policy")
    assert (finding.commit, finding.path) == (sha, ALIASES)
    assert "prod-accuracy" in finding.message and "0.5" in finding.message
    assert f"{sha[:10]} {ALIASES}: policy: refused by plugin policy" in cli("validate", "main..review").stdout
    # A compliant promotion passes.
    git("-C", store_path, "checkout", "-q", "main")
    branch(store_path, "ok")
    edit_yaml(store_path, ALIASES, lambda d: d["aliases"].update(best="v0"))
    hand_commit(store_path)
    assert promoted.validate("main..ok") == []


def test_policy_in_whole_store_mode(promoted, store_path):
    promoted.set_automations(POLICY)
    edit_yaml(store_path, ALIASES, lambda d: d["aliases"].update(production="v1"))
    hand_commit(store_path)  # around canonry, on the store branch: no policy ran at commit time
    finding = only(promoted.validate(), "policy")
    assert finding.commit is None and finding.path == ALIASES


PLUGIN = """\
from pathlib import Path
from canonry import hookimpl

Path({marker!r}).write_text("ran")

@hookimpl
def check_change(events):
    return "local plugin says no"
"""


def test_local_plugin_code_runs_only_when_trusted(promoted, store_path, tmp_path, cli):
    marker = tmp_path / "marker"
    promoted.add_store_admin("hand@example.com")  # trusting local plugins is a store admin's call
    branch(store_path)
    edit_yaml(store_path, "canonry.yaml", lambda d: d.update(trust_local_plugins=True))
    write(store_path, "plugins/evil.py", PLUGIN.format(marker=str(marker)))
    hand_commit(store_path, "add a plugin")
    edit_yaml(store_path, ALIASES, lambda d: d["aliases"].update(staging="v1"))
    hand_commit(store_path, "set staging")
    assert promoted.validate("main..review") == []
    assert cli("validate", "main..review").exit_code == 0
    assert cli("validate").exit_code == 0
    assert not marker.exists()
    # trust and plugin code come from the store branch, never from the branch under review
    assert promoted.validate("main..review", trust_local_plugins=True) == []
    assert not marker.exists()
    git("-C", store_path, "checkout", "-q", "main")
    git("-C", store_path, "merge", "-q", "--ff-only", "review~1")  # reviewed: the plugin is on main
    findings = promoted.validate("main..review", trust_local_plugins=True)
    assert marker.exists()
    finding = only(findings, "policy")
    assert finding.path == ALIASES and "evil" in finding.message
    assert cli("validate", "main..review", "--trust-local-plugins").exit_code == 1


# ---- monorepo: a store under a folder of a code repository ---------------------------------------------
def test_store_under_a_prefix(tmp_path, make_file):
    repo = tmp_path / "mono"
    git("init", "-q", "-b", "main", repo)
    write(repo, "src/app.py", "print('hi')\n")
    hand_commit(repo, "code")
    git("-C", repo, "config", "canonry.prefix", "registry")
    store = canonry.init(str(repo))
    assert store.storage.prefix == "registry"
    v = store.log_artifact(str(make_file("w")), name="g", type="model")
    store.link(v.address, "model/c", aliases=["production"])
    write(repo, "src/app.py", "print('bye')\n")
    write(repo, "registries/model/c/notes.txt", "outside the store: not its business\n")
    hand_commit(repo, "code again")
    assert store.validate("main~4..main") == []
    edit_yaml(repo, "registry/" + ALIASES, lambda d: d["aliases"].update(production="v3"))
    sha = hand_commit(repo, "bad promotion")
    assert [(f.commit, f.path, f.rule) for f in store.validate("main~1..main")] == [
        (sha, ALIASES, "alias-target")]


# ---- the seam for governance -------------------------------------------------------------------------------
def test_rules_can_be_extended(promoted, store_path):
    def author_rule(ctx):
        if ctx.author == "hand@example.com" and ctx.parent_view is not None:
            yield Finding(ctx.label, ALIASES, "role", f"{ctx.author} is not a member at the parent commit")

    branch(store_path)
    edit_yaml(store_path, ALIASES, lambda d: d["aliases"].update(staging="v1"))
    hand_commit(store_path)
    assert promoted.validate("main..review") == []
    assert rules(validate(promoted, "main..review", rules=[*RULES, author_rule])) == {"role"}


def test_a_commit_repairing_a_broken_file_is_still_policy_checked(promoted, store_path):
    promoted.set_automations(POLICY)
    branch(store_path)
    write(store_path, ALIASES, "format: 1\naliases:\n  production: v1\n  production: v1\n")
    broken = hand_commit(store_path, "promote v1, badly")
    write(store_path, ALIASES, "format: 1\naliases:\n  production: v1\n")
    repaired = hand_commit(store_path, "repair the file")
    findings = promoted.validate("main..review")
    assert [(f.commit, f.rule) for f in findings] == [(broken, "schema"), (repaired, "policy")]
