"""A store under a folder of an existing code repository (`canonry init --prefix registry/`), on
the code's own branch (`trunk` here): the store's files live under registry/, the code and its
commits are untouched, the work tree stays clean, and a `git clone` of the repository works with
canonry from its root, from inside registry/ and from another folder. Real repositories only."""
from __future__ import annotations

import pytest
from _remote_helpers import (
    ALICE,
    BOB,
    HAND,
    aliases,
    fsck,
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

import canonry

CODE = {"src/app.py": "print('serving')\n", "README.md": "# the product\n"}


def _code_repo(path):
    git("init", "-q", "-b", "trunk", path)
    for rel, text in CODE.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    git("-C", path, "add", "-A")
    git("-C", path, *HAND, "commit", "-q", "-m", "the code")
    return rev(path, "trunk")


@pytest.fixture
def mono(tmp_path):
    """A code repository on trunk with one commit, then `canonry init --prefix registry/` in it
    (by Alice). Returns (path, the code commit)."""
    path = tmp_path / "product"
    code_commit = _code_repo(path)
    r = invoke("init", "--prefix", "registry/", cwd=path, actor=ALICE)
    assert r.exit_code == 0, r
    assert r.stdout.startswith(f"initialized canonry store in {path}/registry (branch trunk;"), r.stdout
    return path, code_commit


def test_init_with_prefix_keeps_the_store_under_the_folder_on_the_code_branch(mono, tmp_path):
    path, code_commit = mono
    assert git("-C", path, "config", "canonry.prefix").strip() == "registry"
    assert git("-C", path, "config", "canonry.branch").strip() == "trunk"
    assert rev(path, "main") is None  # no other branch was made
    assert parents(path, "trunk") == [code_commit]
    s = open_as(path, ALICE)
    s.log_artifact(unique_file(tmp_path), name="ranker", type="model", metrics={"ndcg": 0.7})
    ok("-C", path, "link", "ranker:v0", "model/ranking", "--alias", "production", actor=ALICE)
    ok("-C", path, "tag", "add", "model/ranking", "search", actor=ALICE)

    # every file of the store is under registry/, the code's files are exactly as committed
    files = git("-C", path, "ls-tree", "-r", "--name-only", "trunk").split()
    assert set(files) - {f for f in files if f.startswith("registry/")} == set(CODE)
    assert "registry/canonry.yaml" in files
    assert "registry/registries/model/ranking/aliases.yaml" in files
    for rel, text in CODE.items():
        assert git("-C", path, "show", f"trunk:{rel}") == text
        assert git("-C", path, "rev-parse", f"trunk:{rel}") == git("-C", path, "rev-parse", f"{code_commit}:{rel}")
    # the code's history is untouched: its commit is the root, every later commit is canonry's
    assert is_ancestor(path, code_commit, "trunk")
    assert git("-C", path, "rev-list", "--max-parents=0", "trunk").strip() == code_commit
    changed = git("-C", path, "log", "--format=", "--name-only", f"{code_commit}..trunk").split()
    assert changed and all(f.startswith("registry/") for f in changed)
    # the checked-out work tree follows, and is clean
    assert status(path) == ""
    assert (path / "registry" / "registries" / "model" / "ranking" / "links" / "v0.yaml").exists()
    assert git("-C", path, "symbolic-ref", "HEAD").strip() == "refs/heads/trunk"
    assert aliases(canonry.open(str(path / "src")), "model/ranking") == {"production": "v0"}
    assert fsck(path).returncode == 0


def test_code_work_in_progress_survives_canonry_writes(mono, tmp_path):
    path, _code_commit = mono
    (path / "src" / "app.py").write_text("print('staged change')\n")
    git("-C", path, "add", "src/app.py")
    (path / "README.md").write_text("# unstaged change\n")
    (path / "notes.txt").write_text("untracked\n")
    before = status(path)
    open_as(path, ALICE).log_artifact(unique_file(tmp_path), name="ranker", type="model")
    open_as(path, ALICE).link("ranker:v0", "model/ranking")
    # the same staged / modified / untracked state as before, and none of it was committed
    assert status(path) == before
    assert git("-C", path, "show", "trunk:src/app.py") == CODE["src/app.py"]
    assert (path / "src" / "app.py").read_text() == "print('staged change')\n"
    assert (path / "README.md").read_text() == "# unstaged change\n"
    # the developer's own commit then carries only the code change, on top of canonry's
    git("-C", path, *HAND, "commit", "-q", "-m", "code change")
    assert git("-C", path, "show", "--name-only", "--format=", "trunk").split() == ["src/app.py"]
    assert links(canonry.open(str(path)), "model/ranking") == {"v0": "ranker:v0"}


def test_code_commits_made_between_canonry_writes_are_kept(mono, tmp_path):
    path, _ = mono
    open_as(path, ALICE).log_artifact(unique_file(tmp_path), name="ranker", type="model")
    (path / "src" / "feature.py").write_text("x = 1\n")
    git("-C", path, "add", "src/feature.py")
    git("-C", path, *HAND, "commit", "-q", "-m", "feature")
    feature = rev(path, "trunk")
    open_as(path, ALICE).link("ranker:v0", "model/ranking")
    assert parents(path, "trunk") == [feature]
    assert git("-C", path, "show", "trunk:src/feature.py") == "x = 1\n"
    assert status(path) == ""


def test_a_git_clone_works_from_the_root_inside_registry_and_elsewhere(mono, tmp_path):
    path, code_commit = mono
    open_as(path, ALICE).log_artifact(unique_file(tmp_path), name="ranker", type="model")
    open_as(path, ALICE).link("ranker:v0", "model/ranking", aliases=["production"])
    remote = tmp_path / "product.git"
    git("clone", "-q", "--bare", path, remote)
    clone = tmp_path / "clone"
    git("clone", "-q", remote, clone)
    assert git("-C", clone, "config", "--get", "canonry.prefix", check=False) == ""  # not copied

    for where in (clone, clone / "registry", clone / "registry" / "registries", clone / "src"):
        r = invoke("show", "model/ranking:production", "--json", cwd=where, actor=BOB)
        assert r.exit_code == 0, (where, r)
        assert r.json()["artifact"] == "ranker:v0"
        r = invoke("-C", where, "ls", "model", "--json", actor=BOB)
        assert r.exit_code == 0 and [c["name"] for c in r.json()] == ["ranking"], (where, r)

    # writes from inside registry/ land under registry/ on trunk, the clone stays clean
    ok("alias", "set", "model/ranking:v0", "staging", cwd=clone / "registry", actor=BOB)
    ok("tag", "add", "model/ranking", "from-clone", cwd=clone / "src", actor=BOB)
    assert status(clone) == ""
    assert git("-C", clone, "show", "--name-only", "--format=", "trunk").split() == \
        ["registry/registries/model/ranking/collection.yaml"]
    assert not (clone / "registries").exists() and not (clone / "src" / "registries").exists()
    # and canonry push / pull carry it through the code's remote
    pushed = ok("-C", clone, "push", actor=BOB)
    assert "pushed trunk" in pushed.stdout
    assert rev(remote, "trunk") == rev(clone, "trunk")
    git("-C", path, "remote", "add", "origin", remote)
    pulled = ok("-C", path, "pull", actor=ALICE)
    assert "fast-forward" in pulled.stdout
    assert aliases(canonry.open(str(path)), "model/ranking") == {"production": "v0", "staging": "v0"}
    assert status(path) == ""
    assert is_ancestor(remote, code_commit, "trunk")


def test_proposal_review_and_merge_inside_a_monorepo(mono, tmp_path):
    path, _code_commit = mono
    s = open_as(path, ALICE)
    s.log_artifact(unique_file(tmp_path), name="ranker", type="model", metrics={"ndcg": 0.7})
    s.log_artifact(unique_file(tmp_path), name="ranker", type="model", metrics={"ndcg": 0.75})
    s.link("ranker:v0", "model/ranking", aliases=["production"])
    trunk = rev(path, "trunk")
    ok("-C", path, "link", "ranker:v1", "model/ranking", "--alias", "production", "--branch", "promote/r1",
       actor=BOB)
    assert rev(path, "trunk") == trunk
    diff = ok("-C", path, "diff", "trunk..promote/r1", actor=BOB)
    assert "model/ranking: production v0 → v1 (ranker:v1, ndcg 0.7 → 0.75)" in diff.stdout, diff.stdout
    ok("-C", path, "validate", "trunk..promote/r1", actor=BOB)
    merged = ok("-C", path, "merge", "promote/r1", actor=ALICE)
    assert "fast-forward" in merged.stdout
    assert aliases(canonry.open(str(path)), "model/ranking") == {"production": "v1"}
    assert git("-C", path, "show", "trunk:src/app.py") == CODE["src/app.py"]
    assert status(path) == ""


def test_canonry_clone_of_a_store_on_the_code_branch(mono, tmp_path):
    """`canonry clone URL DIR` without --store-branch checks out the remote's HEAD (here trunk), as
    its help says, and works with the store found under registry/."""
    path, _ = mono
    remote = tmp_path / "product.git"
    git("clone", "-q", "--bare", path, remote)
    assert git("-C", remote, "symbolic-ref", "HEAD").strip() == "refs/heads/trunk"
    r = invoke("clone", remote, tmp_path / "cc", actor=BOB)
    assert r.exit_code == 0, r
    assert "(branch trunk)" in r.stdout
    assert ok("-C", tmp_path / "cc", "ls", "--json").json()[0]["name"] == "dataset"


def test_canonry_clone_with_branch_of_a_monorepo(mono, tmp_path):
    path, _ = mono
    open_as(path, ALICE).log_artifact(unique_file(tmp_path), name="ranker", type="model")
    remote = tmp_path / "product.git"
    git("clone", "-q", "--bare", path, remote)
    r = invoke("clone", "--store-branch", "trunk", remote, tmp_path / "cc", actor=BOB)
    assert r.exit_code == 0, r
    cc = tmp_path / "cc"
    ok("-C", cc, "link", "ranker:v0", "model/ranking", actor=BOB)
    assert status(cc) == ""
    assert "registry/registries/model/ranking/links/v0.yaml" in \
        git("-C", cc, "ls-tree", "-r", "--name-only", "trunk").split()
    assert "pushed trunk" in ok("-C", cc, "push", actor=BOB).stdout
    assert rev(remote, "trunk") == rev(cc, "trunk")
