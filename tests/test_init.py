"""`canonry init` / canonry.init: new directories, existing repositories, bare ones, branches."""
from __future__ import annotations

import os

import pytest
import yaml
from conftest import ACTOR_EMAIL, commit_count, git, git_status, head_of, show_file

import canonry
from canonry.errors import NotAStore


def _tree(path, rev="main"):
    return sorted(git("-C", path, "ls-tree", "-r", "--name-only", rev).split())


def test_init_new_directory_creates_store_with_default_registries(tmp_path):
    path = tmp_path / "new" / "store"
    store = canonry.init(str(path))
    assert (path / ".git").is_dir()
    assert store.branch == "main"
    assert sorted(r.name for r in store.registries()) == ["dataset", "model"]
    model = store.registry("model")
    assert model.types == ["model"]
    assert store.registry("dataset").types == ["dataset"]
    assert model.created_by == ACTOR_EMAIL
    assert _tree(path) == ["canonry.yaml", "registries/dataset/registry.yaml",
                           "registries/model/registry.yaml"]
    config = yaml.safe_load(show_file(path, "main:canonry.yaml"))
    assert config["format"] == 1
    assert commit_count(path) == 1
    # the checked-out branch is the store branch, and the work tree matches it
    assert git_status(path) == ""


def test_init_cli_reports_creation(run_cli, tmp_path):
    path = tmp_path / "s"
    result = run_cli("init", path)
    assert result.exit_code == 0, result
    assert "initialized canonry store" in result.stdout
    assert "model" in result.stdout and "dataset" in result.stdout
    assert head_of(path) is not None


def test_init_existing_empty_git_repo_on_main(tmp_path):
    path = tmp_path / "repo"
    git("init", "-q", "-b", "main", path)
    store = canonry.init(str(path))
    assert store.branch == "main"
    assert "canonry.yaml" in _tree(path)
    # HEAD was the unborn main: the work tree now shows the store files, with nothing pending
    assert (path / "canonry.yaml").is_file()
    assert git_status(path) == ""


def test_init_existing_repo_with_other_checked_out_branch_leaves_worktree_alone(tmp_path):
    path = tmp_path / "repo"
    git("init", "-q", "-b", "master", path)
    (path / "README.md").write_text("my project\n")
    git("-C", path, "add", "README.md")
    git("-C", path, "commit", "-q", "-m", "first")
    before_master = head_of(path, "master")
    store = canonry.init(str(path))
    assert store.branch == "main"
    assert head_of(path, "master") == before_master
    assert not (path / "canonry.yaml").exists()
    assert git_status(path) == ""
    assert "canonry.yaml" in _tree(path, "main")


def test_init_existing_repo_with_commits_on_main_keeps_them(tmp_path):
    path = tmp_path / "repo"
    git("init", "-q", "-b", "main", path)
    (path / "README.md").write_text("hello\n")
    git("-C", path, "add", "README.md")
    git("-C", path, "commit", "-q", "-m", "readme")
    first = head_of(path)
    canonry.init(str(path))
    assert git("-C", path, "rev-parse", "main~1").strip() == first
    assert "README.md" in _tree(path) and "canonry.yaml" in _tree(path)
    assert git_status(path) == ""


def test_init_bare_repository_made_by_git(tmp_path):
    path = tmp_path / "bare.git"
    git("init", "-q", "--bare", path)
    store = canonry.init(str(path))
    assert store.storage.is_bare
    assert "canonry.yaml" in _tree(path)
    reopened = canonry.open(str(path))
    assert sorted(r.name for r in reopened.registries()) == ["dataset", "model"]


def test_init_bare_flag_creates_bare_repository(run_cli, tmp_path):
    path = tmp_path / "b"
    result = run_cli("init", "--bare", path)
    assert result.exit_code == 0, result
    assert (path / "HEAD").is_file() and not (path / ".git").exists()
    assert git("-C", path, "rev-parse", "--is-bare-repository").strip() == "true"
    assert canonry.open(str(path)).registry("model").name == "model"


def test_reinit_says_already_a_store_and_changes_nothing(run_cli, store, store_path):
    head = head_of(store_path)
    config_before = (store_path / ".git" / "config").read_text()
    result = run_cli("init", store_path)
    assert result.exit_code == 0, result
    assert "already a canonry store" in result.stdout
    assert "nothing changed" in result.stdout
    assert head_of(store_path) == head
    assert (store_path / ".git" / "config").read_text() == config_before
    again = run_cli("init", store_path, "--json")
    assert again.json()["created"] is False
    assert head_of(store_path) == head


def test_reinit_via_api_returns_existing_store(store, store_path):
    head = head_of(store_path)
    again = canonry.init(str(store_path))
    assert again.branch == "main"
    assert head_of(store_path) == head


def test_init_with_other_branch(run_cli, tmp_path):
    path = tmp_path / "s"
    result = run_cli("init", path, "--store-branch", "registry", "--json")
    assert result.exit_code == 0, result
    data = result.json()
    assert data["branch"] == "registry" and data["created"] is True
    assert sorted(data["registries"]) == ["dataset", "model"]
    assert head_of(path, "registry") is not None
    assert head_of(path, "main") is None
    # later opens find the branch without being told
    store = canonry.open(str(path))
    assert store.branch == "registry"
    assert run_cli("-C", path, "show", "model").exit_code == 0
    assert git_status(path) == ""


def test_init_other_branch_in_existing_repo_keeps_main(tmp_path):
    path = tmp_path / "repo"
    git("init", "-q", "-b", "main", path)
    (path / "code.py").write_text("print(1)\n")
    git("-C", path, "add", ".")
    git("-C", path, "commit", "-q", "-m", "code")
    main_head = head_of(path)
    store = canonry.init(str(path), branch="canonry")
    assert store.branch == "canonry"
    assert head_of(path, "main") == main_head
    assert "canonry.yaml" in _tree(path, "canonry")
    assert "canonry.yaml" not in _tree(path, "main")
    assert canonry.open(str(path)).branch == "canonry"
    assert git_status(path) == ""


def test_open_finds_store_from_subdirectory(store, store_path):
    sub = store_path / "registries" / "model"
    assert sub.is_dir()
    found = canonry.open(str(sub))
    assert os.path.realpath(found.path) == os.path.realpath(str(store_path))


def test_open_non_store_repository_is_refused(tmp_path):
    path = tmp_path / "plain"
    git("init", "-q", path)
    with pytest.raises(NotAStore, match="not a canonry store"):
        canonry.open(str(path))


def test_open_plain_directory_is_refused(tmp_path):
    with pytest.raises(NotAStore):
        canonry.open(str(tmp_path))
    with pytest.raises(NotAStore):
        canonry.open(str(tmp_path / "missing"))
