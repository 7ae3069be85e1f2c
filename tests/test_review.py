"""`canonry diff BASE..HEAD`: a promotion told in registry terms (text, markdown, JSON), the
merge-base behaviour, CLI errors, and the CI files of docs/ci (valid YAML, and the flow they
describe run end to end against a bare remote). Real git repositories, no mocks."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from _plugin_helpers import WebhookServer
from conftest import ACTOR_EMAIL, assert_one_line_error, git, head_of, run_process

import canonry
from canonry.review.diff import Review, describe, render_markdown, render_text

DOCS_CI = Path(__file__).resolve().parent.parent / "docs" / "ci"
BRANCH = "promote/mnist"
MOVE_LINE = "model/mnist: production v0 → v1 (gemma-finetuned:v1, accuracy 0.91 → 0.94)"


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture
def mnist(store_path, make_file):
    """main: gemma-finetuned v0 (accuracy 0.91) linked as model/mnist:v0 [production], v1
    (accuracy 0.94) linked as v1. Returns (path, main store, open_branch(name) -> Store)."""
    s = canonry.init(str(store_path))
    s.log_artifact(str(make_file("w0")), name="gemma-finetuned", type="model", metrics={"accuracy": 0.91})
    s.log_artifact(str(make_file("w1")), name="gemma-finetuned", type="model", metrics={"accuracy": 0.94})
    s.link("gemma-finetuned:v0", "model/mnist", aliases=["production"])
    s.link("gemma-finetuned:v1", "model/mnist")

    def branch(name=BRANCH):
        return canonry.open(str(store_path), branch=name)

    return store_path, s, branch


@pytest.fixture
def promoted(mnist):
    """mnist plus, on promote/mnist, production moved v0 -> v1."""
    path, s, branch = mnist
    branch().set_alias("model/mnist:v1", "production")
    return path, s, branch


# ---- the alias move ----------------------------------------------------------------------------
def test_alias_move_text(promoted):
    _path, s, _ = promoted
    review = s.diff(f"main..{BRANCH}")
    assert isinstance(review, Review) and len(review) == 1
    text = render_text(review)
    assert _lines(text)[0] == MOVE_LINE
    assert _lines(text)[-1] == f"by Ada Lovelace <{ACTOR_EMAIL}> in 1 commit"


def test_alias_move_markdown(promoted):
    _path, s, _ = promoted
    md = render_markdown(s.diff(f"main..{BRANCH}"))
    lines = md.splitlines()
    assert lines[0] == f"### Registry changes (`main..{BRANCH}`)"
    assert "**model/mnist**" in lines
    assert "- `production` v0 → v1 (`gemma-finetuned:v1`, accuracy 0.91 → 0.94)" in lines
    footer = lines[-1]
    assert footer.startswith("<sub>") and footer.endswith("</sub>")
    assert f"Ada Lovelace ({ACTOR_EMAIL})" in footer.replace("\\", "") and "1 commit" in footer
    assert "<ada" not in md  # an email in angle brackets would be swallowed as HTML


def test_alias_move_json(promoted):
    _path, s, _ = promoted
    [change] = s.diff(f"main..{BRANCH}").to_list()
    assert change["kind"] == "alias.moved"
    assert change["collection"] == "model/mnist" and change["alias"] == "production"
    assert (change["from"], change["to"]) == ("v0", "v1")
    assert change["artifact"] == "gemma-finetuned:v1"
    assert change["previous_artifact"] == "gemma-finetuned:v0"
    assert change["metrics"] == {"accuracy": [0.91, 0.94]}
    assert change["text"] == MOVE_LINE


def test_alias_move_through_the_cli(promoted, cli):
    r = cli("diff", f"main..{BRANCH}")
    assert r.exit_code == 0, r
    assert MOVE_LINE in r.stdout.splitlines() and r.stderr == ""
    md = cli("diff", f"main..{BRANCH}", "--format", "markdown")
    assert md.exit_code == 0 and md.stdout.startswith("### Registry changes")
    for args in (("--format", "json"), ("--json",)):
        j = cli("diff", f"main..{BRANCH}", *args)
        assert j.exit_code == 0, j
        assert [c["kind"] for c in j.json()] == ["alias.moved"]


def test_metrics_of_either_side_are_shown(mnist, make_file):
    """Old metrics read at the merge base, new at the head; a metric only one side has shows
    '-' for the other."""
    _path, s, branch = mnist
    s.log_artifact(str(make_file("w2")), name="gemma-finetuned", type="model",
                   metrics={"accuracy": 0.97, "f1": 0.8})
    b = branch()
    b.link("gemma-finetuned:v2", "model/mnist")
    b.set_alias("model/mnist:v2", "production")
    review = s.diff(f"main..{BRANCH}")
    moved = next(c for c in review if c.kind == "alias.moved")
    assert moved.metrics == {"accuracy": [0.91, 0.97], "f1": [None, 0.8]}
    assert ("model/mnist: production v0 → v2 (gemma-finetuned:v2, accuracy 0.91 → 0.97, f1 - → 0.8)"
            in render_text(review).splitlines())


def test_net_change_over_several_commits(mnist, make_file):
    """Moving production twice on the branch reads as one move from the base to the head."""
    _path, s, branch = mnist
    s.log_artifact(str(make_file("w2")), name="gemma-finetuned", type="model", metrics={"accuracy": 0.99})
    b = branch()
    b.set_alias("model/mnist:v1", "production")
    b.link("gemma-finetuned:v2", "model/mnist")
    b.set_alias("model/mnist:v2", "production")
    review = s.diff(f"main..{BRANCH}")
    moves = [c for c in review if c.kind.startswith("alias.")]
    assert [(c.kind, c.from_, c.to) for c in moves] == [("alias.moved", "v0", "v2")]
    assert review.commits == 3


# ---- every kind of change ----------------------------------------------------------------------
def test_alias_added_and_removed(mnist):
    _path, s, branch = mnist
    s.set_alias("model/mnist:v1", "staging")
    b = branch()
    b.remove_alias("model/mnist", "staging")
    b.set_alias("model/mnist:v1", "candidate")
    lines = render_text(s.diff(f"main..{BRANCH}")).splitlines()
    assert "model/mnist: +candidate → v1 (gemma-finetuned:v1, accuracy 0.94)" in lines
    assert "model/mnist: -staging (was v1, gemma-finetuned:v1)" in lines
    data = {c["kind"]: c for c in s.diff(f"main..{BRANCH}").to_list()}
    assert data["alias.added"]["to"] == "v1" and data["alias.added"]["metrics"] == {"accuracy": [None, 0.94]}
    assert data["alias.removed"]["from"] == "v1" and data["alias.removed"]["to"] is None
    assert data["alias.removed"]["previous_artifact"] == "gemma-finetuned:v1"


def test_links_added_and_removed(mnist, make_file):
    _path, s, branch = mnist
    b = branch()
    b.log_artifact(str(make_file("w2")), name="gemma-finetuned", type="model", metrics={"accuracy": 0.95})
    b.link("gemma-finetuned:v2", "model/mnist")
    b.unlink("model/mnist:v0")  # it held production: that alias goes too
    review = s.diff(f"main..{BRANCH}")
    text = render_text(review)
    lines = text.splitlines()
    assert "model/mnist: + v2 gemma-finetuned:v2 (accuracy 0.95)" in lines
    assert "model/mnist: - v0 gemma-finetuned:v0" in lines
    assert "model/mnist: -production (was v0, gemma-finetuned:v0)" in lines
    assert "artifacts: + gemma-finetuned:v2 (model, accuracy 0.95)" in lines
    # promotions first inside the collection, artifact versions after the collections
    assert lines.index("model/mnist: -production (was v0, gemma-finetuned:v0)") < \
        lines.index("model/mnist: + v2 gemma-finetuned:v2 (accuracy 0.95)")
    assert lines.index("artifacts: + gemma-finetuned:v2 (model, accuracy 0.95)") > \
        lines.index("model/mnist: - v0 gemma-finetuned:v0")
    md = render_markdown(review).splitlines()
    # "- + v2" would render as a nested list: the marker is escaped
    assert "- \\+ v2 `gemma-finetuned:v2` (accuracy 0.95)" in md
    assert "- \\- v0 `gemma-finetuned:v0`" in md
    assert "**artifact versions**" in md
    data = review.to_list()
    created = next(c for c in data if c["kind"] == "link.created")
    removed = next(c for c in data if c["kind"] == "link.removed")
    assert (created["to"], created["artifact"]) == ("v2", "gemma-finetuned:v2")
    assert (removed["from"], removed["previous_artifact"]) == ("v0", "gemma-finetuned:v0")


def test_tags_on_collections_and_linked_versions(mnist):
    _path, s, branch = mnist
    s.tag("model/mnist", "old", "vision")
    b = branch()
    b.tag("model/mnist", "mnist")
    b.untag("model/mnist", "old")
    b.tag("model/mnist:v1", "approved")
    review = s.diff(f"main..{BRANCH}")
    lines = render_text(review).splitlines()
    assert "model/mnist: tags +mnist -old" in lines
    assert "model/mnist: v1 tags +approved" in lines
    coll, link = [c for c in review.to_list() if c["kind"] == "tags.changed"]
    assert coll["version"] is None and coll["tags_added"] == ["mnist"] and coll["tags_removed"] == ["old"]
    assert coll["tags"] == ["vision", "mnist"]
    assert link["version"] == "v1" and link["tags_added"] == ["approved"]
    assert "- v1 tags +`approved`" in render_markdown(review).splitlines()


def test_registry_settings_and_new_things(mnist, make_file):
    _path, s, branch = mnist
    b = branch()
    b.edit_registry("model", visibility="restricted", add_types=["checkpoint"])
    b.create_registry("eval", types=["eval-report"])
    b.log_artifact(str(make_file("r")), name="mnist-eval", type="eval-report", metrics={"top1": 0.9})
    b.link("mnist-eval:v0", "eval/mnist")
    review = s.diff(f"main..{BRANCH}")
    lines = render_text(review).splitlines()
    assert "registry model: visibility organization → restricted; types +checkpoint" in lines
    assert "registry eval: new registry (restricted; types: eval-report)" in lines
    assert "eval/mnist: new collection (eval-report)" in lines
    assert "eval/mnist: + v0 mnist-eval:v0 (top1 0.9)" in lines
    edit = next(c for c in review.to_list() if c["kind"] == "registry.changed")
    assert edit["registry"] == "model"
    assert edit["changes"] == {"visibility": ["organization", "restricted"],
                               "types": [["model"], ["model", "checkpoint"]]}
    md = render_markdown(review).splitlines()
    assert "**registry model**" in md and "**eval/mnist**" in md


def test_store_settings_are_shown(mnist):
    _path, s, branch = mnist
    branch().set_automations([{"name": "keep-best", "on": "link.created", "action": "auto-alias",
                               "with": {"alias": "best", "metric": "accuracy"}}])
    review = s.diff(f"main..{BRANCH}")
    assert render_text(review).splitlines()[0] == "store: automations +keep-best"
    assert review.to_list()[0]["kind"] == "store.changed"


def test_hand_edits_read_like_canonry_ones(mnist):
    """A promotion committed with git (an edited aliases.yaml) and a tampered artifact version."""
    path, s, _ = mnist
    git("-C", path, "checkout", "-q", "-b", "hand")
    aliases = path / "registries" / "model" / "mnist" / "aliases.yaml"
    aliases.write_text(aliases.read_text().replace("production: v0", "production: v1"))
    version = path / "artifacts" / "gemma-finetuned" / "v0.yaml"
    version.write_text(version.read_text().replace("accuracy: 0.91", "accuracy: 0.99"))
    git("-C", path, "commit", "-q", "-am", "promote by hand")
    lines = render_text(s.diff("main..hand")).splitlines()
    assert MOVE_LINE in lines  # old metrics read at the merge base: 0.91, not the tampered 0.99
    assert any(line.startswith("artifacts: ! gemma-finetuned:v0 edited after it was logged (metrics)")
               for line in lines), lines
    assert lines[-1] == "by Git User <git-user@example.com> in 1 commit"


def test_diff_across_a_git_merge(promoted):
    """After the branch is merged (a real git merge), diffing main's old head to its new head
    tells what the merge brought."""
    path, s, _ = promoted
    before = head_of(path)
    git("-C", path, "merge", "-q", "--no-ff", "-m", "merge promote/mnist", BRANCH)
    assert MOVE_LINE in render_text(s.diff(f"{before}..main")).splitlines()


# ---- the merge base --------------------------------------------------------------------------------
def test_changes_made_on_main_after_branching_are_not_in_the_diff(promoted, make_file):
    path, s, _branch = promoted
    fork_point = head_of(path)
    s.tag("model/mnist", "main-only")
    s.set_alias("model/mnist:v0", "staging")
    s.log_artifact(str(make_file("late")), name="other", type="model")
    for spec in (f"main..{BRANCH}", f"main...{BRANCH}", f"{fork_point}..{BRANCH}", f"..{BRANCH}"):
        review = s.diff(spec)
        assert [c.kind for c in review] == ["alias.moved"], spec
        assert review.merge_base == fork_point
    # the other way round: what main has that the branch does not
    kinds = sorted(c.kind for c in s.diff(f"{BRANCH}..main"))
    assert kinds == ["alias.added", "artifact.logged", "tags.changed"]


def test_branch_authors_only(promoted, monkeypatch):
    path, s, branch = promoted
    monkeypatch.setenv("CANONRY_ACTOR", "Grace Hopper <grace@example.com>")
    branch().tag("model/mnist:v1", "approved")
    canonry.open(str(path)).tag("model/mnist", "not-in-the-branch")  # someone on main: not listed
    review = s.diff(f"main..{BRANCH}")
    assert review.authors == [f"Ada Lovelace <{ACTOR_EMAIL}>", "Grace Hopper <grace@example.com>"]
    assert review.commits == 2
    assert render_text(review).splitlines()[-1] == \
        f"by Ada Lovelace <{ACTOR_EMAIL}>, Grace Hopper <grace@example.com> in 2 commits"


# ---- nothing to say --------------------------------------------------------------------------------
def test_empty_diff(mnist, cli):
    _path, _s, branch = mnist
    b = branch()
    b.set_alias("model/mnist:v1", "staging")  # two commits that cancel out: no net change
    b.remove_alias("model/mnist", "staging")
    assert len(b.history("model/mnist:staging")) == 2
    for spec in ("main..main", f"main..{BRANCH}", f"{BRANCH}..main"):
        r = cli("diff", spec)
        assert r.exit_code == 0, r
        assert r.stdout.strip() == f"no registry changes in {spec}"
    md = cli("diff", "main..main", "--format", "markdown")
    assert md.exit_code == 0 and "no registry changes" in md.stdout
    j = cli("diff", "main..main", "--json")
    assert j.exit_code == 0 and j.json() == []


def test_branch_behind_main_has_nothing_to_propose(promoted):
    path, s, _branch = promoted
    git("-C", path, "branch", "old", "main~1")
    assert len(s.diff("main..old")) == 0


# ---- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, text", [
    ("main", "expected a range BASE..HEAD"),
    ("..", "expected a range BASE..HEAD"),
    ("main..no-such-branch", "unknown revision 'no-such-branch'"),
    ("nope..main", "unknown revision 'nope'"),
])
def test_bad_ranges_are_one_line_errors(promoted, cli, spec, text):
    assert_one_line_error(cli("diff", spec), 1, contains=(text,))


def test_unrelated_histories(promoted, cli):
    empty_tree = git("-C", promoted[0], "hash-object", "-t", "tree", "/dev/null").strip()
    orphan = git("-C", promoted[0], "commit-tree", empty_tree, "-m", "unrelated").strip()
    git("-C", promoted[0], "branch", "unrelated", orphan)
    assert_one_line_error(cli("diff", "main..unrelated"), 1, contains=("no common history",))


def test_not_a_store_and_bad_format(tmp_path, run_cli, promoted):
    assert_one_line_error(run_cli("-C", tmp_path, "diff", "main..x"), 1, contains=("not a canonry store",))
    r = run_cli("-C", promoted[0], "diff", f"main..{BRANCH}", "--format", "html")
    assert r.exit_code == 2 and "html" in r.stderr


def test_diff_as_a_real_process(promoted):
    r = run_process(["-C", promoted[0], "diff", f"main..{BRANCH}", "--format", "markdown"])
    assert r.returncode == 0, r.stderr
    assert "- `production` v0 → v1 (`gemma-finetuned:v1`, accuracy 0.91 → 0.94)" in r.stdout.splitlines()
    bad = run_process(["-C", promoted[0], "diff", "main..nope"])
    assert_one_line_error(bad, 1, contains=("unknown revision 'nope'",))


def test_describe_function(promoted):
    review = describe(promoted[1], f"main..{BRANCH}")
    assert review.range == f"main..{BRANCH}" and review.head == head_of(promoted[0], BRANCH)
    assert review[0].kind == "alias.moved"


# ---- docs/ci ---------------------------------------------------------------------------------------
def _ci_text(name: str) -> str:
    return (DOCS_CI / name).read_text()


def test_ci_files_are_valid_yaml_and_run_the_review_commands():
    gh_text, gl_text = _ci_text("github-actions.yml"), _ci_text("gitlab-ci.yml")
    gh, gl = yaml.safe_load(gh_text), yaml.safe_load(gl_text)
    for text in (gh_text, gl_text):
        for command in ("canonry validate", "canonry diff", "--format markdown", "automations run",
                        "refs/notes/canonry-automations", "DEPLOY_SECRET"):
            assert command in text, command
    # GitHub: YAML 1.1 reads the `on` key as True
    triggers = gh.get("on", gh.get(True))
    assert set(triggers) == {"pull_request", "push"}
    review_steps = gh["jobs"]["review"]["steps"]
    assert review_steps[0]["uses"].startswith("actions/checkout") and review_steps[0]["with"]["fetch-depth"] == 0
    assert any("setup-python" in step.get("uses", "") for step in review_steps)
    runs = "\n".join(step.get("run", "") for step in review_steps)
    assert 'canonry validate "origin/${{ github.base_ref }}..HEAD"' in runs
    assert "pip install" in runs and "--format markdown" in runs
    assert any("github-script" in step.get("uses", "") for step in review_steps)
    auto = "\n".join(step.get("run", "") for step in gh["jobs"]["automations"]["steps"])
    assert 'canonry automations run "$BEFORE..${{ github.sha }}"' in auto
    assert "${{ github.event.before }}" in auto
    assert "git push origin refs/notes/canonry-automations" in auto
    # GitLab: merge-request pipelines with the diff base, a main-branch job for automations
    review_job, auto_job = gl["canonry-review"], gl["canonry-automations"]
    assert "merge_request_event" in review_job["rules"][0]["if"]
    assert any("CI_MERGE_REQUEST_DIFF_BASE_SHA" in line and "canonry diff" in line
               for line in review_job["script"])
    assert "CI_DEFAULT_BRANCH" in auto_job["rules"][0]["if"]
    assert "canonry automations run" in "\n".join(auto_job["script"])
    assert gl["variables"]["GIT_DEPTH"] == "0"


def test_ci_readme_covers_secrets_and_trust():
    text = _ci_text("README.md")
    for needle in ("github-actions.yml", "gitlab-ci.yml", "secret_env", "DEPLOY_SECRET",
                   "does not run repository-local plugin code", "canonry validate BASE..HEAD"):
        assert needle in text, needle


def test_ci_flow_end_to_end_against_a_bare_remote(tmp_path, make_file, monkeypatch):
    """What the CI files do, step by step: propose on a branch, push it to a bare remote, clone
    it as a pull-request job does (detached HEAD, only origin/main), diff (and validate), merge,
    push, then run the automations from a fresh clone twice, fetching and pushing the run log
    as the main-branch job does: the webhook fires once."""
    secret = "whsec-ci-flow-not-in-the-repo"
    monkeypatch.setenv("DEPLOY_SECRET", secret)
    server = WebhookServer(secret=secret)
    try:
        remote = tmp_path / "remote.git"
        git("init", "-q", "--bare", "-b", "main", remote)
        laptop = tmp_path / "laptop"
        s = canonry.init(str(laptop))
        s.log_artifact(str(make_file("a")), name="gemma-finetuned", type="model", metrics={"accuracy": 0.91})
        s.log_artifact(str(make_file("b")), name="gemma-finetuned", type="model", metrics={"accuracy": 0.94})
        s.link("gemma-finetuned:v0", "model/mnist", aliases=["production"])
        s.link("gemma-finetuned:v1", "model/mnist")
        s.set_automations([{"name": "deploy", "on": ["alias.added", "alias.moved"],
                            "filter": {"alias": "^production$"}, "action": "webhook",
                            "with": {"url": server.url, "secret_env": "DEPLOY_SECRET",
                                     "timeout": 5, "retries": 0}}])
        git("-C", laptop, "remote", "add", "origin", remote)
        git("-C", laptop, "push", "-q", "origin", "main")
        canonry.open(str(laptop), branch=BRANCH).set_alias("model/mnist:v1", "production")
        git("-C", laptop, "push", "-q", "origin", BRANCH)
        assert server.requests == []  # a proposal fires nothing

        # the pull-request job
        pr = tmp_path / "pr-job"
        git("clone", "-q", remote, pr)
        git("-C", pr, "checkout", "-q", "--detach", f"origin/{BRANCH}")
        git("-C", pr, "branch", "-q", "-D", "main")
        git("-C", pr, "branch", "--force", "main", "origin/main")  # "Make the store branch a local branch"
        diff = run_process(["diff", "origin/main..HEAD", "--format", "markdown"], cwd=pr)
        assert diff.returncode == 0, diff.stderr
        assert "- `production` v0 → v1 (`gemma-finetuned:v1`, accuracy 0.91 → 0.94)" in diff.stdout
        validate = run_process(["validate", "origin/main..HEAD"], cwd=pr)
        assert validate.returncode == 0, validate.stdout + validate.stderr

        # merge (as the forge does: a merge commit on main), push
        before = git("-C", laptop, "rev-parse", "main").strip()
        git("-C", laptop, "merge", "-q", "--no-ff", "-m", "Merge promote/mnist", BRANCH)
        git("-C", laptop, "push", "-q", "origin", "main")
        after = git("-C", laptop, "rev-parse", "main").strip()
        assert server.requests == []  # git merged, not canonry: nothing fired yet

        # the main-branch job, twice (say, re-run), each from a fresh clone
        for n in range(2):
            job = tmp_path / f"main-job-{n}"
            git("clone", "-q", remote, job)
            git("-C", job, "fetch", "-q", "origin",
                "+refs/notes/canonry-automations:refs/notes/canonry-automations", check=False)
            run = run_process(["automations", "run", f"{before}..{after}"], cwd=job)
            assert run.returncode == 0, run.stdout + run.stderr
            git("-C", job, "push", "-q", "origin", "refs/notes/canonry-automations")
        assert len(server.requests) == 1, server.requests
        assert server.requests[0]["signature_valid"]
        body = json.loads(server.requests[0]["body"])
        assert secret not in json.dumps(body)
        assert "refs/notes/canonry-automations" in git("-C", remote, "show-ref")
    finally:
        server.close()


def test_markdown_escapes_free_text(mnist):
    _path, s, branch = mnist
    branch().edit_registry("model", description="the *best* <b>models</b>")
    review = s.diff(f"main..{BRANCH}")
    md = render_markdown(review)
    assert '→ "the \\*best\\* \\<b\\>models\\</b\\>"' in md and "<b>" not in md
    assert '→ "the *best* <b>models</b>"' in render_text(review)
