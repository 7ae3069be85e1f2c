"""Holes in the gate (issue 14, part A): merge commits and the whole history are checked for
roles, a merge that leaves an alias on a removed link is reported and answered by every read with
one line, and manifest paths are checked once, by one rule, in `log`, `validate` and `get`.

Real stores in tmp_path; commits made by canonry and by hand with the git CLI; nothing mocked."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from conftest import assert_one_line_error, git, head_of

import canonry
from canonry.errors import IntegrityError, InvalidInput
from canonry.files.manifest import MAX_DEPTH, manifest_problems, path_problem

ALIASES = "registries/model/c/aliases.yaml"
REGISTRY = "registries/model/registry.yaml"
ADMIN = "ada@example.com"  # CANONRY_ACTOR of the tests: the store admin
VIEWER = "viewer@example.com"
MEMBER = "member@example.com"


# ---- helpers -------------------------------------------------------------------------------------
def edit_yaml(store_path, rel, change):
    path = Path(store_path) / rel
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def commit_as(store_path, email, message, *flags) -> str:
    git("-C", store_path, "add", "-A")
    git("-C", store_path, "-c", "user.name=Hand", "-c", f"user.email={email}", "commit", "-q", *flags,
        "-m", message)
    return git("-C", store_path, "rev-parse", "HEAD").strip()


def found(report) -> list[tuple[str | None, str, str]]:
    return [(f.commit, f.path, f.rule) for f in report]


@pytest.fixture
def guarded(store, store_path, make_file):
    """g:v0 and g:v1 linked as model/c:v0 [production] and v1; `model` is restricted (members
    only) and its `production` protected; VIEWER is a viewer and MEMBER a member of it."""
    v0 = store.log_artifact(str(make_file("weights 0")), name="g", type="model")
    v1 = store.log_artifact(str(make_file("weights 1")), name="g", type="model")
    store.link(v0.address, "model/c", aliases=["production"])
    store.link(v1.address, "model/c")
    store.edit_registry("model", visibility="restricted")
    store.protect_alias("model", "production")
    store.set_member("model", VIEWER, "viewer")
    store.set_member("model", MEMBER, "member")
    return store


# ---- manifest paths: one rule for log, validate and get ------------------------------------------
BAD_PATHS = {
    "../x": "'..'",
    "a/../../x": "'..'",
    "/etc/passwd": "absolute",
    "C:/x": "absolute",
    "a//b": "empty",
    "a/": "empty",
    ".": "'.'",
    "./a": "'.'",
    "..": "'..'",
    "a\x00b": "control",
    "a\nb": "control",
    "a\\..\\x": "backslash",
    "/".join(["d"] * 2000): "levels deep",
    "x" * 300: "longer than",
    "d/" * 40 + "x" * 1000: "longer than",
}


def _short(value) -> str:
    return repr(value) if len(repr(value)) < 24 else f"{repr(value)[:12]}…({len(value)})"


@pytest.mark.parametrize("path", sorted(BAD_PATHS), ids=_short)
def test_the_manifest_path_rule(path):
    why = path_problem(path)
    assert why is not None and BAD_PATHS[path] in why


def test_the_manifest_path_rule_accepts_ordinary_paths_and_refuses_clashes():
    for ok in ("model.bin", "sub/tokenizer.txt", "a.b/c-d_e/ü.txt", ".hidden/x", "a..b", "/".join("d" * MAX_DEPTH)):
        assert path_problem(ok) is None, ok
    assert manifest_problems(["a", "b/c"]) == []
    assert [why for _, why in manifest_problems(["a", "a"])] == ["it appears twice"]
    assert manifest_problems(["a", "a/b"]) == [("a", "it is a file, and also the folder of a/b")]


def _hand_version(store_path, files: list[dict]) -> str:
    """artifacts/g/v2.yaml written and committed by hand, with `files` as its manifest."""
    v0 = yaml.safe_load((Path(store_path) / "artifacts/g/v0.yaml").read_text())
    v0["files"] = files
    (Path(store_path) / "artifacts/g/v2.yaml").write_text(yaml.safe_dump(v0, sort_keys=False))
    return commit_as(store_path, ADMIN, "a hand-made version")


@pytest.mark.parametrize("bad", ["../x", "/abs/x", "a//b", ".", "..", "a\x00b", "a\\b",
                                 "/".join(["d"] * 2000)], ids=_short)
def test_validate_reports_an_unsafe_manifest_path_and_get_writes_nothing(guarded, store_path, cli, tmp_path, bad):
    good = yaml.safe_load((Path(store_path) / "artifacts/g/v0.yaml").read_text())["files"][0]
    # a sound file first: before the fix, `get` wrote it and only then refused the bad one
    commit = _hand_version(store_path, [good, {**good, "path": bad}])
    report = guarded.validate()
    assert ("manifest" in {f.rule for f in report}), report
    report = guarded.validate("main~1..main")
    assert found(report) == [(commit, "artifacts/g/v2.yaml", "manifest")]
    assert "g:v2 lists file" in report[0].message
    out = tmp_path / "deep" / "out"
    r = cli("get", "g:v2", "--to", out)
    assert_one_line_error(r, 1, contains=("refusing unsafe manifest path",))
    assert not (tmp_path / "deep").exists()  # nothing written, no folder made, no partial file
    with pytest.raises(IntegrityError):
        canonry.open(str(store_path)).download("g:v2", str(out))


@pytest.mark.parametrize("files", [["a", "a"], ["a", "a/b"]])
def test_duplicate_and_clashing_manifest_paths(guarded, store_path, cli, tmp_path, files):
    good = yaml.safe_load((Path(store_path) / "artifacts/g/v0.yaml").read_text())["files"][0]
    commit = _hand_version(store_path, [{**good, "path": p} for p in files])
    assert found(guarded.validate("main~1..main")) == [(commit, "artifacts/g/v2.yaml", "manifest")]
    r = cli("get", "g:v2", "--to", tmp_path / "out")
    assert_one_line_error(r, 1, contains=("refusing unsafe manifest path",))
    assert not (tmp_path / "out").exists()


def test_get_checks_every_blob_and_the_destination_before_writing(guarded, store_path, tmp_path):
    good = yaml.safe_load((Path(store_path) / "artifacts/g/v0.yaml").read_text())["files"][0]
    _hand_version(store_path, [good, {**good, "path": "b", "sha256": "0" * 64}])
    store = canonry.open(str(store_path))
    with pytest.raises(IntegrityError, match="not in storage"):
        store.download("g:v2", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    # something in the way at the destination: refused before the first file is written
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "sub").write_text("a file where a folder must go")
    v = store.log_artifact(str(_tree(tmp_path / "tree", {"a.txt": "a", "sub/b.txt": "b"})), name="t", type="model")
    with pytest.raises(InvalidInput, match="is not a folder"):
        store.download(v.address, str(tmp_path / "dest"))
    assert sorted(os.listdir(tmp_path / "dest")) == ["sub"]
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(InvalidInput, match="is not a folder"):
        store.download(v.address, str(tmp_path / "a-file"))
    store.download(v.address, str(tmp_path / "fresh"))
    assert (tmp_path / "fresh" / "sub" / "b.txt").read_text() == "b"


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_log_refuses_a_file_name_that_cannot_be_a_manifest_path(store, store_path, tmp_path, cli):
    tree = _tree(tmp_path / "weird", {"ok.txt": "fine", "a\\b.txt": "a backslash in a name"})
    head = head_of(store_path)
    r = cli("log", tree, "--name", "w", "--type", "model")
    assert_one_line_error(r, 1, contains=("backslash",))
    assert head_of(store_path) == head


# ---- a forge merge that leaves an alias on a removed link ----------------------------------------
@pytest.fixture
def broken_merge(store, store_path, make_file, cli):
    """Each side valid, the merge not: p/d sets alias foo on model/mnist:v1 while main unlinks
    v1; `git merge --no-ff p/d` leaves foo -> v1 with no link v1. Returns the merge commit."""
    for n in range(3):
        v = store.log_artifact(str(make_file(f"mnist {n}")), name="mnist", type="model")
        store.link(v.address, "model/mnist")
    assert cli("alias", "set", "model/mnist:v1", "foo", "--branch", "p/d").exit_code == 0
    assert cli("unlink", "model/mnist:v1").exit_code == 0
    git("-C", store_path, "-c", "user.name=Forge", "-c", f"user.email={ADMIN}", "merge", "-q", "--no-ff",
        "-m", "Merge pull request: p/d", "p/d")
    return git("-C", store_path, "rev-parse", "HEAD").strip()


BROKEN = "alias foo of model/mnist points at v1, which is not linked"


def test_validate_reports_the_broken_merge_at_the_merge_commit(broken_merge, store_path, cli):
    report = canonry.open(str(store_path)).validate("main~1..main")
    assert found(report) == [(broken_merge, "registries/model/mnist/aliases.yaml", "alias-target")]
    assert BROKEN in report[0].message
    assert "alias-target" in cli("validate").stdout  # and the state as it stands


@pytest.mark.parametrize("args", [
    ("show", "model/mnist:foo"), ("show", "model/mnist:foo", "--json"), ("show", "model/mnist:v2"),
    ("show", "model/mnist"), ("show", "model"), ("show", "mnist:v2"), ("ls", "model/mnist"), ("ls", "model"),
    ("get", "model/mnist:foo", "--to", "out"), ("get", "model/mnist:latest", "--to", "out"),
    ("lineage", "model/mnist:foo"), ("tag", "add", "model/mnist:foo", "x"),
    ("alias", "set", "model/mnist:foo", "bar"), ("unlink", "model/mnist:v2"),
], ids=" ".join)
def test_every_read_of_the_broken_collection_is_one_clear_line(broken_merge, store_path, cli, args):
    head = head_of(store_path)
    r = cli(*args)
    line = assert_one_line_error(r, 1, contains=(BROKEN, "`canonry alias rm model/mnist foo`"))
    assert "Error" not in line and "NoneType" not in line
    assert head_of(store_path) == head
    assert not Path("out").exists()


def test_the_broken_state_through_the_python_api_and_the_fixes(broken_merge, store_path, cli):
    from canonry.errors import BrokenState

    store = canonry.open(str(store_path))
    for read in (lambda: store.resolve("model/mnist:foo"), lambda: store.show("model/mnist:foo"),
                 lambda: store.versions("model/mnist"), lambda: store.collection("model/mnist")):
        with pytest.raises(BrokenState, match=BROKEN):
            read()
    # other collections read as before; so does the history of the broken one
    assert store.collections("dataset") == []
    assert [e.op for e in store.history("model/mnist:foo")] == ["alias.set"]
    # the two fixes the message names both work: moving the alias, or removing it
    assert cli("alias", "set", "model/mnist:v2", "foo", "--branch", "fix").exit_code == 0
    assert canonry.open(str(store_path), branch="fix").resolve("model/mnist:foo").version == "v2"
    r = cli("alias", "rm", "model/mnist", "foo")
    assert r.exit_code == 0, r
    assert store.resolve("model/mnist:latest").version == "v2"
    assert cli("show", "model/mnist:v2").exit_code == 0
    assert cli("validate", "main~1..main").exit_code == 0


# ---- merge commits are judged on their own changes -----------------------------------------------
def set_alias(name, version):
    return lambda d: d["aliases"].update({name: version})


def _side_branch_with_a_tag(store_path, email=MEMBER) -> str:
    """Branch `side` off main with one legitimate commit (a member tags the collection)."""
    git("-C", store_path, "checkout", "-q", "-b", "side")
    edit_yaml(store_path, "registries/model/c/collection.yaml", lambda d: d["tags"].append("reviewed"))
    commit = commit_as(store_path, email, "tag c")
    git("-C", store_path, "checkout", "-q", "main")
    return commit


def _merge_as(store_path, email, branch, edit=None) -> str:
    """`git merge --no-ff --no-commit BRANCH`, then `edit()` in the work tree, committed by EMAIL."""
    git("-C", store_path, "-c", "user.name=Hand", "-c", f"user.email={email}", "merge", "-q", "--no-ff",
        "--no-commit", branch, check=False)
    if edit is not None:
        edit()
    return commit_as(store_path, email, f"merge {branch}")


def test_a_viewers_merge_commit_moving_a_protected_alias_is_reported(guarded, store_path, cli):
    base = head_of(store_path)
    _side_branch_with_a_tag(store_path)
    git("-C", store_path, "checkout", "-q", "-b", "h")
    merge = _merge_as(store_path, VIEWER, "side", lambda: edit_yaml(store_path, ALIASES, set_alias("production", "v1")))
    assert len(git("-C", store_path, "rev-list", "--parents", "-1", merge).split()) == 3  # a merge
    report = guarded.validate(f"{base}..h")
    assert found(report) == [(merge, ALIASES, "role")]
    message = report[0].message
    assert f"{VIEWER} may not add or remove a protected alias" in message
    assert f"at parent {base[:10]} of the merge" in message  # judged once, though own against both parents
    r = cli("validate", "main..h")
    assert r.exit_code == 1 and r.stdout.startswith(f"{merge[:10]} {ALIASES}: role: ")


def test_a_merge_of_two_legitimate_sides_is_clean(guarded, store_path, monkeypatch):
    """Both sides changed aliases.yaml (git merges the text): what the merge brings in from
    each side is that side's change, made and judged there, not the merger's."""
    edit_yaml(store_path, ALIASES, lambda d: d["aliases"].update(q1="v0", q2="v0", q3="v0", staging="v0"))
    commit_as(store_path, MEMBER, "room between the lines: git merges the two edits as text")
    base = head_of(store_path)
    git("-C", store_path, "checkout", "-q", "-b", "side")
    edit_yaml(store_path, ALIASES, set_alias("staging", "v1"))
    commit_as(store_path, MEMBER, "stage v1")
    git("-C", store_path, "checkout", "-q", "main")
    edit_yaml(store_path, ALIASES, set_alias("production", "v1"))
    edit_yaml(store_path, REGISTRY, lambda d: d.update(description="promoted by the admin"))
    commit_as(store_path, ADMIN, "promote v1")
    merge = _merge_as(store_path, MEMBER, "side")  # a member may not move production: it came from main
    aliases = yaml.safe_load(git("-C", store_path, "show", f"{merge}:{ALIASES}"))["aliases"]
    assert aliases == {"production": "v1", "q1": "v0", "q2": "v0", "q3": "v0", "staging": "v1"}
    assert guarded.validate(f"{base}..main") == []
    assert guarded.validate(f"{merge}~1..{merge}") == []


def test_a_merge_that_takes_back_an_old_value_is_the_mergers_own_change(guarded, store_path):
    """Main moved production (an admin); a member merges an older side branch and resolves
    aliases.yaml to the side's copy: production goes back to v0. No side of history made that
    change: it is the merger's, and needs the admin role."""
    base = head_of(store_path)
    _side_branch_with_a_tag(store_path)
    edit_yaml(store_path, ALIASES, set_alias("production", "v1"))
    commit_as(store_path, ADMIN, "promote v1")
    merge = _merge_as(store_path, MEMBER, "side",
                      lambda: git("-C", store_path, "checkout", "side", "--", ALIASES))
    report = guarded.validate(f"{base}..main")
    assert found(report) == [(merge, ALIASES, "role")]
    assert "alias.moved model/c:production" in report[0].message


def test_a_change_made_on_the_side_is_reported_at_its_commit_not_at_the_merge(guarded, store_path):
    base = head_of(store_path)
    git("-C", store_path, "checkout", "-q", "-b", "side")
    edit_yaml(store_path, ALIASES, set_alias("production", "v1"))
    sneaky = commit_as(store_path, VIEWER, "promote v1")
    git("-C", store_path, "checkout", "-q", "main")
    _merge_as(store_path, ADMIN, "side")
    assert found(guarded.validate(f"{base}..main")) == [(sneaky, ALIASES, "role")]


def test_a_merge_commit_granting_roles_or_dropping_a_registry(guarded, store_path):
    base = head_of(store_path)
    _side_branch_with_a_tag(store_path)
    guarded.create_registry("extra")

    def grant_and_drop():
        edit_yaml(store_path, "canonry.yaml", lambda d: d["admins"].append(MEMBER))
        git("-C", store_path, "rm", "-q", "registries/extra/registry.yaml")

    merge = _merge_as(store_path, MEMBER, "side", grant_and_drop)
    assert sorted(found(guarded.validate(f"{base}..main"))) == sorted([
        (merge, "canonry.yaml", "role"), (merge, "registries/extra/registry.yaml", "role")])


def test_an_admins_merge_resolving_a_conflict_a_third_way_is_clean(guarded, store_path):
    base = head_of(store_path)
    git("-C", store_path, "checkout", "-q", "-b", "side")
    edit_yaml(store_path, ALIASES, set_alias("staging", "v0"))
    commit_as(store_path, MEMBER, "stage v0")
    git("-C", store_path, "checkout", "-q", "main")
    edit_yaml(store_path, ALIASES, set_alias("staging", "v1"))
    commit_as(store_path, MEMBER, "stage v1")
    def resolve():  # the conflict on staging settled for the side, and production moved as well
        (Path(store_path) / ALIASES).write_text("format: 1\naliases:\n  production: v1\n  staging: v0\n")

    merge = _merge_as(store_path, ADMIN, "side", resolve)
    assert guarded.validate(f"{base}..main") == []
    # the same merge by a member: staging came from the side (allowed anyway), production is the
    # member's own move of a protected alias
    git("-C", store_path, "reset", "-q", "--hard", f"{merge}~1")
    merge = _merge_as(store_path, MEMBER, "side", resolve)
    assert found(guarded.validate(f"{base}..main")) == [(merge, ALIASES, "role")]


# ---- whole-store validate checks the history, not only the final state ----------------------------
def test_whole_store_validate_reports_a_hand_commit_without_the_role(guarded, store_path, cli):
    edit_yaml(store_path, ALIASES, set_alias("production", "v1"))
    sneaky = commit_as(store_path, VIEWER, "promote v1 around canonry")
    report = guarded.validate()
    assert found(report) == [(sneaky, ALIASES, "role")]
    assert report.checked_commits == int(git("-C", store_path, "rev-list", "--count", "main"))
    r = cli("validate")
    assert r.exit_code == 1
    assert r.stdout.startswith(f"{sneaky[:10]} {ALIASES}: role: {VIEWER} may not add or remove a protected alias")
    assert r.stderr == f"validate: 1 finding in the whole store at {sneaky[:10]}\n"
    # put back by the admin: the state is fine again, the change by the viewer is still in history
    edit_yaml(store_path, ALIASES, set_alias("production", "v0"))
    commit_as(store_path, ADMIN, "undo")
    assert found(guarded.validate()) == [(sneaky, ALIASES, "role")]


def test_whole_store_validate_judges_merged_in_commits_and_merges(guarded, store_path):
    git("-C", store_path, "checkout", "-q", "-b", "side")
    edit_yaml(store_path, "registries/model/c/collection.yaml", lambda d: d["tags"].append("hot"))
    tagged = commit_as(store_path, VIEWER, "a viewer tags c on a side branch")
    git("-C", store_path, "checkout", "-q", "main")
    merge = _merge_as(store_path, VIEWER, "side", lambda: edit_yaml(store_path, ALIASES, set_alias("x", "v1")))
    assert found(guarded.validate()) == [(tagged, "registries/model/c/collection.yaml", "role"),
                                         (merge, ALIASES, "role")]


def test_whole_store_validate_of_a_clean_history_made_by_canonry(guarded, store_path, monkeypatch):
    monkeypatch.setenv("CANONRY_ACTOR", f"M <{MEMBER}>")
    canonry.open(str(store_path)).set_alias("model/c:v1", "staging")
    report = guarded.validate()
    assert report == [] and report.checked_commits == 10
