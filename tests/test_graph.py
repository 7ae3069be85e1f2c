"""canonry.git.graph against the real git CLI: merge bases, ancestry and first-parent walks on
repositories with merges, criss-cross merges and unrelated histories, built by git itself."""
from __future__ import annotations

import itertools

import pytest
from conftest import git
from dulwich.repo import Repo

from canonry.git.graph import can_fast_forward, first_parent_chain, first_parents, merge_base
from canonry.git.storage import GitStorage


def _git(*args, check=True) -> str:
    """The git CLI, with commit ids given as bytes (as dulwich and canonry hold them)."""
    return git(*(a.decode() if isinstance(a, bytes) else a for a in args), check=check)


def _commit(path, name: str) -> bytes:
    (path / f"{name}.txt").write_text(name + "\n")
    _git("-C", path, "add", f"{name}.txt")
    _git("-C", path, "commit", "-q", "-m", name)
    return rev(path, "HEAD")


def rev(path, spec: str) -> bytes:
    return _git("-C", path, "rev-parse", spec).strip().encode()


def _merge(path, branch: str, name: str) -> bytes:
    _git("-C", path, "merge", "-q", "--no-ff", "--no-edit", "-m", name, branch)
    return rev(path, "HEAD")


@pytest.fixture(params=["clock", "one-second"])
def repo(tmp_path, request, monkeypatch):
    """main: a-b-c-M1-f-M2-h; topic: b-d-e (merged at M1), topic2: M1-g (merged at M2),
    crossA / crossB: a criss-cross pair (two merge bases), lone: an orphan branch.

    Built twice: as the clock goes, and with every commit in the same second, as scripts and CI
    make them (dulwich's own graph functions gave wrong answers on such ties)."""
    if request.param == "one-second":
        for var in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"):
            monkeypatch.setenv(var, "1700000000 +0000")
    path = tmp_path / "r"
    _git("init", "-q", "-b", "main", path)
    commits = {}
    commits["a"] = _commit(path, "a")
    commits["b"] = _commit(path, "b")
    _git("-C", path, "checkout", "-q", "-b", "topic")
    commits["d"] = _commit(path, "d")
    commits["e"] = _commit(path, "e")
    _git("-C", path, "checkout", "-q", "main")
    commits["c"] = _commit(path, "c")
    commits["M1"] = _merge(path, "topic", "M1")
    _git("-C", path, "checkout", "-q", "-b", "topic2")
    commits["g"] = _commit(path, "g")
    _git("-C", path, "checkout", "-q", "main")
    commits["f"] = _commit(path, "f")
    commits["M2"] = _merge(path, "topic2", "M2")
    commits["h"] = _commit(path, "h")
    # criss-cross: x1 and y1 each merge the other's first commit
    _git("-C", path, "checkout", "-q", "-b", "crossA", commits["h"])
    commits["x0"] = _commit(path, "x0")
    _git("-C", path, "checkout", "-q", "-b", "crossB", commits["h"])
    commits["y0"] = _commit(path, "y0")
    commits["y1"] = _merge(path, commits["x0"].decode(), "y1")
    _git("-C", path, "checkout", "-q", "crossA")
    commits["x1"] = _merge(path, commits["y0"].decode(), "x1")
    _git("-C", path, "checkout", "-q", "--orphan", "lone")
    _git("-C", path, "rm", "-q", "-rf", ".")
    commits["lone"] = _commit(path, "lone")
    _git("-C", path, "checkout", "-q", "main")
    storage = GitStorage(Repo(str(path)))
    return path, storage, commits


def test_merge_base_is_one_git_merge_base_names(repo):
    path, storage, commits = repo
    connected = [k for k in commits if k != "lone"]
    for a, b in itertools.product(connected, repeat=2):
        expected = set(_git("-C", path, "merge-base", "--all", commits[a], commits[b]).split())
        found = merge_base(storage, commits[a], commits[b])
        assert found is not None and found.decode() in expected, (a, b, expected, found)
        if len(expected) == 1:
            assert found.decode() == _git("-C", path, "merge-base", commits[a], commits[b]).strip()


def test_merge_base_of_unrelated_histories_is_none(repo):
    path, storage, commits = repo
    assert _git("-C", path, "merge-base", commits["h"], commits["lone"], check=False) == ""
    assert merge_base(storage, commits["h"], commits["lone"]) is None
    assert merge_base(storage, commits["lone"], commits["lone"]) == commits["lone"]


def test_can_fast_forward_is_git_is_ancestor(repo):
    import subprocess

    from conftest import GIT

    path, storage, commits = repo
    for a, b in itertools.product(commits, repeat=2):
        expected = subprocess.run([GIT, "-C", str(path), "merge-base", "--is-ancestor",
                                   commits[a].decode(), commits[b].decode()], capture_output=True).returncode == 0
        assert can_fast_forward(storage, commits[a], commits[b]) == expected, (a, b)


def test_first_parents_is_rev_list_first_parent(repo):
    path, storage, commits = repo
    for head in commits.values():
        expected = _git("-C", path, "rev-list", "--first-parent", head).split()
        assert [c.id.decode() for c in first_parents(storage, head)] == expected
    for base, head in itertools.product(commits, repeat=2):
        # `stop` is a commit of the first-parent line (what callers pass: a merge base on it)
        if commits[base].decode() in _git("-C", path, "rev-list", "--first-parent", commits[head]).split():
            expected = _git("-C", path, "rev-list", "--first-parent", commits[head],
                           "^" + commits[base].decode()).split()
            got = [c.id.decode() for c in first_parents(storage, commits[head], stop=commits[base])]
            assert got == expected, (base, head)
            assert [c.decode() for c in first_parent_chain(storage, commits[base], commits[head])] \
                == expected[::-1]


def test_first_parent_chain_from_the_root(repo):
    path, storage, commits = repo
    expected = _git("-C", path, "rev-list", "--reverse", "--first-parent", commits["h"]).split()
    assert [c.decode() for c in first_parent_chain(storage, None, commits["h"])] == expected
    assert first_parent_chain(storage, commits["h"], commits["h"]) == []


def test_first_parents_is_lazy_and_takes_a_loader(repo):
    _path, storage, commits = repo
    loaded = []

    def load(storage, sha):
        loaded.append(sha)
        return storage.commit(sha)

    walk = first_parents(storage, commits["h"], load=load)
    assert loaded == []  # nothing read before the caller asks
    first = next(walk)
    assert first.id == commits["h"] and loaded == [commits["h"]]
    for commit in walk:
        if commit.id == commits["M1"]:
            break
    assert loaded[-1] == commits["M1"] and commits["a"] not in loaded
    assert list(first_parents(storage, None)) == []
