"""Shared fixtures: real git repositories in tmp_path, a deterministic identity, a CLI runner.

No mocks: every test talks to a real repository through dulwich, the real `git` CLI or a
real subprocess.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import canonry
from canonry.cli.app import cli as canonry_cli

ACTOR_NAME = "Ada Lovelace"
ACTOR_EMAIL = "ada@example.com"
ACTOR = f"{ACTOR_NAME} <{ACTOR_EMAIL}>"

GIT = shutil.which("git")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory):
    """Deterministic identity, a private git config, no store leaking in from the environment,
    and a working directory that is not inside any git repository."""
    monkeypatch.setenv("CANONRY_ACTOR", ACTOR)
    home = tmp_path_factory.mktemp("gitcfg")
    cfg = home / "gitconfig"
    cfg.write_text(
        "[user]\n\tname = Git User\n\temail = git-user@example.com\n"
        "[init]\n\tdefaultBranch = main\n"
        "[advice]\n\tdetachedHead = false\n"
        "[protocol \"file\"]\n\tallow = always\n"
    )
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(cfg))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("CANONRY_STORE", "CANONRY_BRANCH", "CANONRY_BLOBS", "CANONRY_STORAGE", "GIT_DIR",
                "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    # downloads without --to go to a cache of the test's own, never the user's ~/.cache
    monkeypatch.setenv("CANONRY_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    cwd = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(cwd)


# ---- git helpers -----------------------------------------------------------------------------
def git(*args, cwd=None, check=True, input=None) -> str:
    """Run the real git CLI and return its stdout."""
    proc = subprocess.run([GIT, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def git_status(path) -> str:
    """`git status --porcelain` of a non-bare repository (empty string: clean)."""
    return git("-C", path, "status", "--porcelain", "--untracked-files=all")


def head_of(path, branch: str = "main") -> str | None:
    """The commit the store branch points at, read with the git CLI (None if unborn)."""
    proc = subprocess.run([GIT, "-C", str(path), "rev-parse", "--verify", "-q",
                           f"refs/heads/{branch}"], capture_output=True, text=True)
    return proc.stdout.strip() or None


def commit_count(path, branch: str = "main") -> int:
    return int(git("-C", path, "rev-list", "--count", f"refs/heads/{branch}").strip())


def show_file(path, rev_path: str) -> str:
    """`git show REV:PATH` through the git CLI."""
    return git("-C", path, "show", rev_path)


def fsck(path) -> subprocess.CompletedProcess:
    return subprocess.run([GIT, "-C", str(path), "fsck", "--strict", "--no-dangling", "--full"],
                          capture_output=True, text=True)


# ---- fixtures ----------------------------------------------------------------------------------
@pytest.fixture
def store_path(tmp_path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_path):
    """A fresh non-bare store on branch main."""
    return canonry.init(str(store_path))


@pytest.fixture
def model_file(tmp_path) -> Path:
    p = tmp_path / "inputs" / "my_model.txt"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"weights: 0.1 0.2 0.3\n")
    return p


@pytest.fixture
def make_file(tmp_path):
    """make_file(name, content) -> Path of a new file with that content."""
    counter = {"n": 0}

    def make(content: bytes | str, name: str | None = None) -> Path:
        counter["n"] += 1
        p = tmp_path / "files" / (name or f"file{counter['n']}.bin")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
        return p

    return make


def write_checkpoint(d: Path) -> Path:
    """A small model directory: three files, one in a subfolder. Always the same bytes."""
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text('{"layers": 2}\n')
    (d / "weights.bin").write_bytes(bytes(range(256)) * 4)
    (d / "sub" / "tokenizer.txt").write_text("a b c\n")
    return d


@pytest.fixture
def model_dir(tmp_path) -> Path:
    return write_checkpoint(tmp_path / "inputs" / "checkpoint")


@pytest.fixture(scope="session")
def _templates(tmp_path_factory):
    return {"root": tmp_path_factory.mktemp("templates"), "paths": {}}


@pytest.fixture
def from_template(_templates, store_path):
    """from_template(name, build) -> Store at store_path: a copy of a store that
    build(store, workdir) filled once per session. Saves rebuilding the same store for every
    test that only reads it or checks one failure against it."""

    def make(name: str, build) -> canonry.store.Store:
        paths = _templates["paths"]
        if name not in paths:
            work = _templates["root"] / name
            work.mkdir()
            with canonry.init(str(work / "store")) as built:
                build(built, work)
            # closed: the packs its last merge replaced are deleted (by a background thread
            # until then), so copying the folder sees no file vanish mid-copy
            paths[name] = work / "store"
        if store_path.exists():
            shutil.rmtree(store_path)
        # the on-disk record cache is left behind: each copy starts cold, as a fresh clone would
        shutil.copytree(paths[name], store_path, symlinks=True,
                        ignore=shutil.ignore_patterns("records-v*.sqlite*"))
        return canonry.open(str(store_path))

    return make


@pytest.fixture
def linked(store, model_file):
    """A store with gemma-finetuned:v0 linked as model/first-collection:v0 [production]."""
    v = store.log_artifact(str(model_file), name="gemma-finetuned", type="model")
    store.link(v.address, "model/first-collection", aliases=["production"])
    return store


class CliResult:
    """What a CLI call did: exit code, stdout and stderr kept apart."""

    def __init__(self, result):
        self.raw = result
        self.exit_code = result.exit_code
        self.stdout = result.stdout
        self.stderr = result.stderr
        self.exception = result.exception

    def json(self):
        return json.loads(self.stdout)

    def __repr__(self):
        return (f"CliResult(exit={self.exit_code}, stdout={self.stdout!r}, stderr={self.stderr!r}, "
                f"exception={self.exception!r})")


@pytest.fixture
def run_cli():
    """run_cli(*args) -> CliResult: the canonry CLI through click's CliRunner (no -C added)."""
    runner = CliRunner()

    def run(*args, input=None) -> CliResult:
        return CliResult(runner.invoke(canonry_cli, [str(a) for a in args], input=input,
                                       catch_exceptions=True))

    return run


@pytest.fixture
def cli(store, store_path, run_cli):
    """cli(*args) -> CliResult: runs `canonry -C <store> ARGS` through CliRunner."""

    def run(*args, input=None) -> CliResult:
        return run_cli("-C", store_path, *args, input=input)

    return run


def canonry_command() -> list[str]:
    """How to start canonry as a real process: the console script, else the interpreter."""
    script = Path(sys.executable).with_name("canonry")
    if script.exists():
        return [str(script)]
    found = shutil.which("canonry")
    if found:
        return [found]
    return [sys.executable, "-c", "from canonry.cli.app import main; main()"]


def run_process(args, cwd=None, env=None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(canonry_command() + [str(a) for a in args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=60)


def assert_one_line_error(result, exit_code: int = 1, contains: tuple[str, ...] = ()):
    """A failure: the exit code, exactly one line on stderr, no traceback, nothing on stdout."""
    code = result.returncode if isinstance(result, subprocess.CompletedProcess) else result.exit_code
    assert code == exit_code, result
    exc = getattr(result, "exception", None)
    assert exc is None or isinstance(exc, SystemExit), f"uncaught {exc!r}"
    err = result.stderr
    assert "Traceback" not in err and "Traceback" not in result.stdout, result
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    for text in contains:
        assert text in err, f"{text!r} not in {err!r}"
    return lines[0]
