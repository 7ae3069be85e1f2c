"""`canonry import gto`: GTO's git tags, made by the real `gto` CLI in a real git repository,
replayed as canonry commits in GTO's order, by the taggers, at their dates; so `canonry history`
tells what `gto history` tells. Twice adds nothing; --dry-run changes nothing."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from conftest import ACTOR_EMAIL, git, head_of

pytest.importorskip("gto", reason="gto is not installed (pip install gto): the GTO importer is tested against "
                                  "tags made by the real gto CLI only")

ALICE = ("Alice", "alice@example.com")
BOB = ("Bob", "bob@example.com")
GTO = str(Path(sys.executable).with_name("gto")) if Path(sys.executable).with_name("gto").exists() \
    else shutil.which("gto")


def gto(repo, *args, who=ALICE) -> str:
    """Run the real gto CLI in `repo`; `who` tags (GTO takes the tagger from git's committer)."""
    env = {**os.environ, "GIT_COMMITTER_NAME": who[0], "GIT_COMMITTER_EMAIL": who[1]}
    proc = subprocess.run([GTO, *args], cwd=repo, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


ARTIFACTS = """\
nn:
  type: model
  path: models/nn.pkl
  description: a neural network
data:
  type: dataset
  path: data
  description: the training set
virt:
  type: model
  description: a model GTO knows only by name
"""


@pytest.fixture
def gto_repo(_gto_template, tmp_path):
    """A copy of the repository _gto_template built (a test may add tags to its own)."""
    repo = tmp_path / "project"
    shutil.copytree(_gto_template, repo, symlinks=True)
    return repo


@pytest.fixture(scope="module")
def _gto_template(tmp_path_factory):
    """A repository whose registry GTO's own CLI built: nn registered twice (by Alice, then Bob),
    promoted to prod, then staging, its first version deregistered; data in a folder; virt
    registered with no files in git, then deprecated. Built once: gto starts slowly."""
    with pytest.MonkeyPatch.context() as mp:  # the per-test isolation (conftest) is not in force yet
        home = tmp_path_factory.mktemp("gto-home")
        (home / "gitconfig").write_text("[init]\n\tdefaultBranch = main\n")
        mp.setenv("GIT_CONFIG_GLOBAL", str(home / "gitconfig"))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        return _build_gto_repo(tmp_path_factory.mktemp("gto") / "project")


def _build_gto_repo(repo: Path) -> Path:
    (repo / "models").mkdir(parents=True)
    (repo / "data").mkdir()
    git("init", "-q", repo)
    git("-C", repo, "config", "user.name", "Dev")
    git("-C", repo, "config", "user.email", "dev@example.com")
    (repo / "artifacts.yaml").write_text(ARTIFACTS)
    (repo / "models" / "nn.pkl").write_text("weights 1")
    (repo / "data" / "train.csv").write_text("a,b\n1,2\n")
    git("-C", repo, "add", "-A")
    git("-C", repo, "commit", "-qm", "first model")
    gto(repo, "register", "nn", "--version", "v0.0.1")
    gto(repo, "assign", "nn", "--version", "v0.0.1", "--stage", "prod")
    gto(repo, "register", "data", "--version", "v1.0.0")
    gto(repo, "register", "virt", "--version", "v0.0.1")
    (repo / "models" / "nn.pkl").write_text("weights 2")
    git("-C", repo, "commit", "-qam", "better model")
    gto(repo, "register", "nn", "--bump-minor", who=BOB)
    gto(repo, "assign", "nn", "--version", "v0.1.0", "--stage", "prod", who=BOB)
    gto(repo, "assign", "nn", "--version", "v0.0.1", "--stage", "staging")
    # GTO orders the tags of one second by kind (a deregistration before an assignment), not as
    # they were made: the deregistration goes into the next second, as a person's would.
    _next_second()
    gto(repo, "deprecate", "nn", "v0.0.1")
    gto(repo, "deprecate", "virt")
    return repo


def _next_second() -> None:
    """Wait for the clock's next second (tag dates are whole seconds; gto takes no date)."""
    start = int(time.time())
    while int(time.time()) == start:
        time.sleep(0.05)


def _import(cli, repo, *args):
    return cli("import", "gto", repo, *args)


def _story_of_canonry(store, address: str) -> list[tuple]:
    """canonry history of a collection, oldest first, one event per commit, in GTO's words."""
    commits: dict[str, list] = {}
    for h in reversed(store.history(address)):
        commits.setdefault(h.commit, []).append(h)
    story = []
    linked = {}  # vN -> its artifact version (a link removed since included)
    for entries in commits.values():
        ops = {h.op: h for h in entries}
        first = entries[0]
        if "unlink" in ops:
            av = store.artifact_version(ops["unlink"].before)
            story.append(("deregistration", av.metadata["gto"]["version"], None))
        elif "link" in ops:
            av = store.artifact_version(ops["link"].after)
            linked[ops["link"].target.rsplit(":", 1)[1]] = ops["link"].after
            story.append(("registration", av.metadata["gto"]["version"], None))
        elif "alias.set" in ops:
            h = ops["alias.set"]
            story.append(("assignment", store.artifact_version(linked[h.after]).metadata["gto"]["version"],
                          h.target.rsplit(":", 1)[1]))
        elif "tag.add" in ops:
            story.append(("deprecation", None, None))
        else:
            continue
        story[-1] = (*story[-1], first.actor, first.time)
    return story


def _story_of_gto(repo, artifact: str) -> list[tuple]:
    events = json.loads(gto(repo, "history", artifact, "--json", "--ascending"))
    return [(e["event"], e.get("version"), e.get("stage"), e["author_email"],
             datetime.fromisoformat(e["timestamp"]).strftime("%Y-%m-%dT%H:%M:%SZ")) for e in events]


def test_history_tells_the_story_gto_history_tells(store, store_path, cli, gto_repo):
    result = _import(cli, gto_repo)
    assert result.exit_code == 0, result
    for gto_name, address in (("nn", "model/nn"), ("data", "dataset/data"), ("virt", "model/virt")):
        assert _story_of_canonry(store, address) == _story_of_gto(gto_repo, gto_name), gto_name
    assert store.validate().ok


def test_versions_aliases_and_what_is_kept(store, store_path, cli, gto_repo, tmp_path):
    assert _import(cli, gto_repo).exit_code == 0
    coll = store.collection("model/nn")
    assert (coll.type, coll.description) == ("model", "a neural network")
    assert coll.aliases == {"prod": "v1", "latest": "v1"}  # staging went with v0.0.1's deregistration
    assert [v.version for v in store.versions("model/nn")] == ["v1"]
    av = store.artifact_version(store.versions("model/nn")[0].artifact)
    meta = av.metadata["gto"]
    assert (meta["version"], meta["tag"], meta["path"]) == ("v0.1.0", "nn@v0.1.0", "models/nn.pkl")
    assert meta["commit"] == git("-C", gto_repo, "rev-parse", "HEAD").strip()
    assert (av.created_by, av.description) == (BOB[1], "a neural network")
    out = tmp_path / "out"
    assert cli("get", "model/nn:prod", "--to", out).exit_code == 0
    assert (out / "nn.pkl").read_text() == "weights 2"
    assert json.loads((out / "gto-version.json").read_text())["version"] == "v0.1.0"
    # the deregistered version stays in the artifact's line, with the files it had
    first = store.artifact_version("nn:v0")
    assert first.metadata["gto"]["version"] == "v0.0.1"
    data = store.versions("dataset/data")[0]
    assert sorted(f["path"] for f in store.artifact_version(data.artifact).files) == \
        ["data/train.csv", "gto-version.json"]
    virt = store.collection("model/virt")
    assert "deprecated" in virt.tags
    assert [f["path"] for f in store.artifact_version("virt:v0").files] == ["gto-version.json"]
    # each commit: authored by the tagger at the tag's date, committed by whoever imported
    tags = {line.split("|")[0]: line.split("|")[1:] for line in git(
        "-C", gto_repo, "for-each-ref", "refs/tags", "--format=%(refname:short)|%(taggeremail:trim)|"
        "%(taggerdate:unix)").splitlines()}
    log = git("-C", store_path, "log", "--format=%s|%ae|%at|%ce", "main").splitlines()
    replayed = {line.split("|")[0].removeprefix("import GTO tag "): line.split("|")[1:] for line in log
                if line.startswith("import GTO tag ")}
    assert set(replayed) == set(tags)
    for tag, (email, when) in tags.items():
        assert replayed[tag] == [email, when, ACTOR_EMAIL], tag


def test_twice_adds_nothing_and_new_tags_come_in_next_time(store, store_path, cli, gto_repo):
    assert _import(cli, gto_repo).exit_code == 0
    head = head_of(store_path)
    again = _import(cli, gto_repo)
    assert again.exit_code == 0, again
    assert (again.stdout, head_of(store_path)) == ("", head)
    assert "imported 0 collections, 0 versions, 0 aliases, 0 other changes" in again.stderr
    gto(gto_repo, "assign", "nn", "--version", "v0.1.0", "--stage", "staging", who=BOB)
    third = _import(cli, gto_repo)
    assert third.stdout.startswith("nn#staging#")
    assert len(third.stdout.splitlines()) == 1
    assert store.collection("model/nn").aliases["staging"] == "v1"


def test_dry_run_prints_one_line_per_tag_and_changes_nothing(store, store_path, cli, gto_repo):
    head = head_of(store_path)
    result = _import(cli, gto_repo, "--dry-run")
    assert result.exit_code == 0, result
    lines = result.stdout.splitlines()
    tags = git("-C", gto_repo, "tag", "-l").split()
    assert sorted(line.split(": ", 1)[0] for line in lines) == sorted(tags)
    assert lines[0].startswith("nn@v0.0.1: link a new version of model/nn (GTO nn v0.0.1 at ")
    assert "would import 3 collections, 4 versions" in result.stderr
    assert head_of(store_path) == head
    assert _import(cli, gto_repo).stdout.splitlines() == lines  # and the import does just that


def test_taggers_without_the_role_refuse_the_import_before_anything_is_written(store, store_path, cli, gto_repo):
    store.create_registry("private", types="all")
    store.set_member("private", ALICE[1], "member")
    head = head_of(store_path)
    result = _import(cli, gto_repo, "--registry", "private")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"canonry: error: {BOB[1]} may not ")
    assert "in registry private" in result.stderr and len(result.stderr.splitlines()) == 1
    assert head_of(store_path) == head


def test_not_a_repository_is_a_one_line_error(store, store_path, cli, tmp_path):
    result = _import(cli, tmp_path / "nowhere")
    assert result.exit_code == 1
    assert result.stderr == f"canonry: error: not a git repository: {tmp_path / 'nowhere'}\n"
