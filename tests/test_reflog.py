"""Reflogs: canonry's ref moves are logged as git logs its own (core.logAllRefUpdates), and
`git reflog` reads them."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys

from conftest import ACTOR, git

import canonry
from canonry.git import reflog

FORMAT = "--format=%gd|%H|%gs|%gn <%ge>"  # %gd with --date=raw: main@{TIME +ZONE}


def entries(path, ref: str = "main") -> list[dict]:
    """`git reflog REF`, newest first: selector, new id, message, identity, time."""
    out = git("-C", path, "reflog", "show", "--date=raw", FORMAT, ref)
    rows = []
    for text in out.splitlines():
        sel, new, message, who = text.split("|")
        when = sel.partition("@{")[2].rstrip("}")
        rows.append({"sel": sel, "new": new, "message": message, "who": who, "when": when})
    return rows


def raw_lines(log_path) -> list[list[str]]:
    with open(log_path, "rb") as f:
        return [line.decode().split("\t")[0].split(" ")[:2] for line in f.read().splitlines()]


def test_commits_in_a_store_with_a_work_tree_are_in_git_reflog(tmp_path, model_file):
    path = tmp_path / "s"
    store = canonry.init(str(path))
    store.log_artifact(str(model_file), name="gem", type="model")
    store.link("gem:v0", "model/c", aliases=["production"])
    store.set_alias("model/c:v0", "staging")
    rows = entries(path)
    commits = git("-C", path, "log", "--format=%H|%s|%cn <%ce>|%ct").splitlines()
    assert len(rows) == len(commits) >= 4
    for row, commit in zip(rows, commits, strict=True):  # each move, as git would have logged it
        sha, subject, committer, when = commit.split("|")
        assert row["new"] == sha and row["who"] == committer == ACTOR
        assert row["message"] in (f"commit: {subject}", f"commit (initial): {subject}")
        assert row["when"].split()[0] == when
    assert rows[0]["message"] == "commit: set alias staging on model/c:v0"
    assert rows[-1]["message"].startswith("commit (initial): ")
    # old -> new chain, the first from nothing
    chain = raw_lines(path / ".git" / "logs" / "refs" / "heads" / "main")
    assert chain[0][0] == "0" * 40
    assert all(prev[1] == cur[0] for prev, cur in itertools.pairwise(chain))
    # HEAD names main: its log has the same lines, and `git reflog` (HEAD's) lists them
    assert raw_lines(path / ".git" / "logs" / "HEAD") == chain
    assert git("-C", path, "rev-parse", "HEAD@{1}").strip() == commits[1].split("|")[0]
    assert git("-C", path, "status", "--porcelain") == ""


def test_a_bare_store_logs_only_when_git_is_told_to(tmp_path, model_file):
    path = tmp_path / "s.git"
    store = canonry.init(str(path), bare=True)
    store.log_artifact(str(model_file), name="gem", type="model")
    assert not (path / "logs" / "refs" / "heads" / "main").exists()  # git's default for bare
    git("-C", path, "config", "core.logAllRefUpdates", "true")
    store.link("gem:v0", "model/c")
    rows = entries(path)
    assert [r["message"] for r in rows] == ["commit: link gem:v0 -> model/c as v0"]
    git("-C", path, "config", "core.logAllRefUpdates", "false")
    store.set_alias("model/c:v0", "production")  # a log that exists is appended to, as git does
    assert len(entries(path)) == 2
    os.unlink(path / "logs" / "refs" / "heads" / "main")
    store.set_alias("model/c:v0", "staging")
    assert not (path / "logs" / "refs" / "heads" / "main").exists()


def test_git_and_canonry_append_to_one_log(tmp_path, model_file):
    path = tmp_path / "s"
    store = canonry.init(str(path))
    store.log_artifact(str(model_file), name="gem", type="model")
    git("-C", path, "commit", "-q", "--allow-empty", "-m", "by hand")
    store.link("gem:v0", "model/c")
    messages = [r["message"] for r in entries(path)]
    assert messages[:2] == ["commit: link gem:v0 -> model/c as v0", "commit: by hand"]
    assert git("-C", path, "fsck", "--no-progress") == ""


WRITER = r"""
import sys, canonry
store = canonry.open(sys.argv[1])
for j in range(int(sys.argv[3])):
    store.set_alias(f"model/c:v{j % 2}", f"a-{sys.argv[2]}")
"""


def test_concurrent_writers_leave_one_whole_line_per_commit(tmp_path, model_file):
    path = tmp_path / "s"
    store = canonry.init(str(path))
    store.log_artifact(str(model_file), name="gem", type="model")
    model_file.write_text("other weights")
    store.log_artifact(str(model_file), name="gem", type="model")
    store.link("gem:v0", "model/c")
    store.link("gem:v1", "model/c")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w), "6"], env=os.environ)
             for w in range(3)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    commits = git("-C", path, "rev-list", "main").split()
    rows = entries(path)
    assert [r["new"] for r in rows] == commits  # one line per commit, in the order they landed
    chain = raw_lines(path / ".git" / "logs" / "refs" / "heads" / "main")
    assert all(prev[1] == cur[0] for prev, cur in itertools.pairwise(chain))


def test_fast_forward_merge_and_remote_tracking_refs_are_logged(tmp_path, model_file):
    origin = tmp_path / "origin"
    store = canonry.init(str(origin))
    store.log_artifact(str(model_file), name="gem", type="model")
    store.link("gem:v0", "model/c", )
    proposal = canonry.open(str(origin), branch="proposal")
    proposal.set_alias("model/c:v0", "production")
    store.merge("proposal")
    assert entries(origin)[0]["message"] == "merge proposal: Fast-forward"
    assert entries(origin)[0]["who"] == ACTOR
    clone = tmp_path / "clone"
    git("clone", "-q", origin, clone)
    store.set_alias("model/c:v0", "staging")
    canonry.open(str(clone)).pull("origin")
    main_log = entries(clone)
    assert main_log[0]["message"] == "pull: Fast-forward"
    tracking = entries(clone, "origin/main")
    assert tracking[0]["message"] == "fetch origin: fast-forward"
    assert tracking[0]["new"] == git("-C", origin, "rev-parse", "main").strip()


def test_line_is_gits_format():
    old, new = b"1" * 40, b"2" * 40
    assert reflog.line(None, new, b"A <a@x>", 5, -5400, "commit:  two\nlines") == (
        b"0" * 40 + b" " + new + b" A <a@x> 5 -0130\tcommit: two lines\n")
    assert reflog.line(old, new, b"A <a@x>", 5, 3600, "m").endswith(b" 5 +0100\tm\n")
