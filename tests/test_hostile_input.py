"""Hostile input: every bad input ends in one line, exit 1 (2 for usage), nothing written.

Never a traceback, a hang, unbounded memory or a write outside the store. The cases are those of
issue 15; the hypothesis tests at the end throw generated names, filters and YAML at the same
paths, with a modest number of examples and a deadline so they stay a few seconds in CI.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _plugin_helpers import invoke, one_line_error
from conftest import git, head_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import canonry
from canonry import yamlio
from canonry.errors import CanonryError

# 40 examples in CI; CANONRY_HOSTILE_EXAMPLES=2000 for a full-size run (derandomized unless set)
_FULL = int(os.environ.get("CANONRY_HOSTILE_EXAMPLES", "0"))
HYPO = settings(max_examples=_FULL or 40, deadline=2000, derandomize=not _FULL,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _alias_bomb(levels: int = 9) -> str:
    text = 'metadata:\n  a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]\n'
    for i in range(1, levels + 1):
        text += f"  a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]\n"
    return text


@pytest.fixture(scope="module")
def _base(tmp_path_factory):
    """A work-tree store with b:v0 linked as model/c:v0 [production], built once."""
    root = tmp_path_factory.mktemp("hostile")
    f = root / "m.txt"
    f.write_bytes(b"hi\n")
    os.environ.setdefault("CANONRY_ACTOR", "Ada Lovelace <ada@example.com>")
    with canonry.init(str(root / "store")) as s:
        s.log_artifact(str(f), name="b", type="model")
        s.link("b:v0", "model/c", aliases=["production"])
    return root / "store"


@pytest.fixture
def base(_base, tmp_path):
    import shutil

    dest = tmp_path / "store"
    shutil.copytree(_base, dest, symlinks=True, ignore=shutil.ignore_patterns("records-v*.sqlite*"))
    return dest


def hand_commit(store: Path, path: str, text: str | bytes) -> str:
    """Commit `text` as `path` with the git CLI, as a user with push access could."""
    p = store / path
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    git("-C", store, "add", path)
    git("-C", store, "commit", "-q", "-m", "hand edit")
    return head_of(store)


# ---- 1. YAML: anchors, aliases, nesting, size ----------------------------------------------------
def test_an_alias_bomb_in_a_store_file_is_refused_by_every_reader_quickly(base):
    text = (base / "artifacts/b/v0.yaml").read_text().replace("metadata: {}\n", _alias_bomb())
    hand_commit(base, "artifacts/b/v0.yaml", text)
    started = time.monotonic()
    for args in (["show", "b:v0"], ["history", "b"], ["search", "--json"], ["validate"],
                 ["events", "HEAD~1..HEAD"], ["diff", "HEAD~1"]):
        r = invoke("-C", base, *args)
        assert "Traceback" not in r.stderr and not isinstance(r.exception, MemoryError), (args, r)
        if r.exit_code != 0:
            assert r.exit_code == 1, (args, r)
    assert time.monotonic() - started < 60
    line = one_line_error(invoke("-C", base, "show", "b:v0"))
    assert "anchor or alias" in line and "artifacts/b/v0.yaml" in line


def test_a_single_anchor_is_refused_before_it_is_expanded():
    with pytest.raises(ValueError, match="anchor or alias"):
        yamlio.load(b"a: &x [1]\nb: *x\n")
    with pytest.raises(ValueError, match="anchor or alias"):
        yamlio.load(b"a: &x 1\n")


@pytest.mark.parametrize("data", [b"[" * 100_000 + b"]" * 100_000, b"- " * 100_000 + b"1",
                                  b"a: " + b"{x: " * 50_000 + b"1" + b"}" * 50_000],
                         ids=["flow-lists", "block-lists", "flow-maps"])
def test_deep_nesting_is_refused_without_recursing(data):
    # the old code crashed the interpreter (the C composer recurses): run it in a child
    code = ("import sys; from canonry import yamlio\n"
            "try:\n    yamlio.load(sys.stdin.buffer.read())\nexcept ValueError as e:\n    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert b"nested more than" in proc.stdout


def test_an_oversized_file_is_refused_before_parsing():
    with pytest.raises(ValueError, match="more than the"):
        yamlio.load(b"a: '" + b"x" * (yamlio.MAX_BYTES + 1) + b"'\n")


def test_automations_set_refuses_a_bomb_and_an_empty_file(base, tmp_path):
    before = head_of(base)
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("- name: x\n  action: webhook\n  with:\n" + _alias_bomb().replace("metadata:", "    m:")
                    .replace("\n  a", "\n      a"))
    assert "anchor or alias" in one_line_error(invoke("-C", base, "automations", "set", bomb))
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert "explicit []" in one_line_error(invoke("-C", base, "automations", "set", empty))
    assert head_of(base) == before


def test_automations_set_warns_of_an_action_no_plugin_gives(base, tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text("- name: x\n  action: no-such-action\n")
    r = invoke("-C", base, "automations", "set", f)
    assert r.exit_code == 0, r
    assert "no-such-action" in r.stderr and len(r.stderr.strip().splitlines()) == 1


# ---- 2. search filters and limits ------------------------------------------------------------------
@pytest.mark.parametrize("flt", ["[]", "null", "3", '"x"', "[" * 60_000, '{"$not":' * 5000 + "{}" + "}" * 5000,
                                 json.dumps({"name": {"$in": ["x"] * 20_000}}),
                                 json.dumps({"$and": [{"name": "x"}] * 2000})],
                         ids=["list", "null", "number", "string", "deep-list", "deep-not", "huge-in", "huge-and"])
def test_search_refuses_a_filter_that_is_not_a_bounded_mapping(base, flt):
    r = invoke("-C", base, "search", "--filter", flt)
    assert r.exit_code == 2 and "Traceback" not in r.stderr + r.stdout, r  # a usage error
    (line,) = [x for x in r.stderr.splitlines() if x.strip()]
    assert "filter" in line


def test_search_limit_is_bounded(base):
    r = invoke("-C", base, "search", "--limit", "99999999999999999999999")
    assert r.exit_code == 2 and "Traceback" not in r.stderr, r
    with pytest.raises(CanonryError, match="limit"):
        canonry.open(str(base)).search(None, limit=10**30)


# ---- 3. branch names: git's rules, before anything is created -------------------------------------
@pytest.mark.parametrize("branch", ["../x", "a..b", "-x", ".hidden", "a/.b", "x.lock", "a/", "a//b", "a b",
                                    "a@{1}", "HEAD", ""])
def test_init_refuses_a_branch_git_refuses_and_creates_nothing(tmp_path, branch):
    target = tmp_path / "x"
    r = invoke("init", target, "--store-branch", branch)
    assert "invalid branch name" in one_line_error(r)
    assert not target.exists()


def test_every_command_taking_a_branch_checks_it(base):
    before = head_of(base)
    assert "invalid branch name" in one_line_error(invoke("-C", base, "merge", "../x"))
    assert "invalid branch name" in one_line_error(invoke("-C", base, "show", "b", "--branch", "a/.b"))
    with pytest.raises(CanonryError, match="invalid branch name"):
        canonry.open(str(base), branch=".hidden")
    assert head_of(base) == before and git("-C", base, "for-each-ref", "--format=%(refname)").split() == [
        "refs/heads/main"]


_REF_CHARS = st.sampled_from([*"ab/.-@{}~^:?*[\\ _lockHED", "\x01", "\x7f", "é"])


@HYPO
@given(name=st.text(_REF_CHARS, min_size=1, max_size=12))
def test_branch_names_follow_git_check_ref_format(name):
    """canonry accepts exactly what `git check-ref-format refs/heads/NAME` accepts, minus a
    leading "-" (an option to git), "HEAD" and "@" (git reads both as HEAD)."""
    from canonry.names import branch_problem

    proc = subprocess.run(["git", "check-ref-format", f"refs/heads/{name}"], capture_output=True)
    git_ok = proc.returncode == 0
    ours = branch_problem(name) is None
    if name.startswith("-") or name in ("HEAD", "@"):
        assert not ours
    else:
        assert ours == git_ok, (name, branch_problem(name))


# ---- 4. log: names that are not UTF-8, symbolic links ---------------------------------------------
def test_log_refuses_a_file_name_that_is_not_utf8_naming_it_escaped(base, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "ok.txt").write_text("x")
    with open(os.path.join(os.fsencode(d), b"bad\xff.txt"), "wb") as f:
        f.write(b"x")
    before = head_of(base)
    line = one_line_error(invoke("-C", base, "log", d, "--name", "dd", "--type", "model"))
    assert "bad\\xff.txt" in line and "UTF-8" in line
    assert head_of(base) == before


@pytest.mark.parametrize("target", ["/etc/hostname", "/etc"], ids=["file", "folder"])
def test_log_refuses_a_symbolic_link_inside_the_folder(base, tmp_path, target):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "ok.txt").write_text("x")
    (d / "sub" / "link").symlink_to(target)
    before = head_of(base)
    line = one_line_error(invoke("-C", base, "log", d, "--name", "dd", "--type", "model"))
    assert "symbolic link" in line and "sub/link" in line
    assert head_of(base) == before


# ---- 5. integers: bounded in the schemas and in file names ----------------------------------------
def test_a_huge_next_version_is_a_schema_finding_not_an_overflow(base):
    text = (base / "registries/model/c/collection.yaml").read_text()
    hand_commit(base, "registries/model/c/collection.yaml",
                text.replace("next_version: 1\n", "next_version: 1000000000000000000000000000000\n"))
    assert "maximum" in "\n".join(invoke("-C", base, "validate").stdout.splitlines())
    for args in (["search"], ["history", "model/c"], ["show", "model/c"], ["compare", "model/c"]):
        r = invoke("-C", base, *args)
        assert r.exit_code in (0, 1) and not isinstance(r.exception, OverflowError), (args, r)
        if r.exit_code:
            one_line_error(r)


def test_a_link_file_numbered_past_sqlite_integers_is_not_indexed(base):
    link = (base / "registries/model/c/links/v0.yaml").read_text()
    hand_commit(base, "registries/model/c/links/v99999999999999999999999.yaml", link)
    for args in (["search"], ["history", "model/c"], ["compare", "model/c"]):
        r = invoke("-C", base, *args)
        assert r.exit_code == 0, (args, r)


# ---- 6. metrics, metadata keys, reserved aliases -----------------------------------------------------
@pytest.mark.parametrize("value", ["1_000", "１０", "inf", "nan", "1e999", "0x10", " 1"])
def test_a_metric_is_a_plain_finite_number(base, tmp_path, value):
    f = tmp_path / "f.txt"
    f.write_text("new")
    before = head_of(base)
    r = invoke("-C", base, "log", f, "--name", "n", "--type", "model", "--metric", f"acc={value}")
    assert r.exit_code == 2 and "not a number" in r.stderr and "Traceback" not in r.stderr, r
    assert head_of(base) == before


@pytest.mark.parametrize("option", ["--metric", "--metadata"])
def test_metric_and_metadata_keys_hold_no_newline(base, tmp_path, option):
    f = tmp_path / "f.txt"
    f.write_text("new")
    before = head_of(base)
    line = one_line_error(invoke("-C", base, "log", f, "--name", "n", "--type", "model", option, "a\nb=1"))
    assert "control character" in line
    assert head_of(base) == before


def test_reserved_aliases_are_compared_case_insensitively(base):
    before = head_of(base)
    for alias in ("LATEST", "Latest"):
        assert "reserved" in one_line_error(invoke("-C", base, "alias", "set", "model/c:v0", alias))
    assert head_of(base) == before
    hand_commit(base, "registries/model/c/aliases.yaml", "format: 1\naliases:\n  production: v0\n  LATEST: v0\n")
    assert "LATEST" in invoke("-C", base, "validate").stdout


# ---- 7. get --to: no overwrite without --force, no symbolic link followed, no empty target ----------
def test_get_refuses_to_overwrite_unless_forced(base, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "m.txt").write_text("mine")
    assert "--force" in one_line_error(invoke("-C", base, "get", "b:v0", "--to", out))
    assert (out / "m.txt").read_text() == "mine"
    r = invoke("-C", base, "get", "b:v0", "--to", out, "--force")
    assert r.exit_code == 0, r
    assert (out / "m.txt").read_text() == "hi\n"


@pytest.mark.parametrize("where", ["m.txt.canonry-partial", "m.txt"])
def test_get_never_writes_through_a_planted_symbolic_link(base, tmp_path, where):
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.write_text("keep")
    (out / where).symlink_to(outside)
    for extra in ([], ["--force"]):
        assert "symbolic link" in one_line_error(invoke("-C", base, "get", "b:v0", "--to", out, *extra))
    assert outside.read_text() == "keep"


def test_get_never_follows_a_linked_folder_inside_the_target(base, tmp_path):
    # a manifest path sub/m.txt under a planted link out/sub -> elsewhere
    f = tmp_path / "d" / "sub" / "m.txt"
    f.parent.mkdir(parents=True)
    f.write_text("x")
    with canonry.open(str(base)) as s:
        s.log_artifact(str(tmp_path / "d"), name="nested", type="model")
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "sub").symlink_to(elsewhere)
    assert "symbolic link" in one_line_error(invoke("-C", base, "get", "nested:v0", "--to", out))
    assert list(elsewhere.iterdir()) == []


def test_blob_copy_unlinks_a_planted_temporary_link_instead_of_following_it(base, tmp_path):
    s = canonry.open(str(base))
    sha = s.artifact_version("b:v0").files[0]["sha256"]
    outside = tmp_path / "outside"
    outside.write_text("keep")
    dest = tmp_path / "m.txt"
    os.symlink(outside, str(dest) + ".canonry-partial")
    s.blobs.copy_to(sha, str(dest))
    assert outside.read_text() == "keep" and dest.read_text() == "hi\n"


def test_get_refuses_an_empty_target(base, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "''" in one_line_error(invoke("-C", base, "get", "b:v0", "--to", ""))
    assert not (tmp_path / "m.txt").exists()


# ---- 8. generated input: a CanonryError or success, never another exception, never a write --------
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"])
                | st.sampled_from(":/@.-_vV0123456789 \n\t$[]{}*&!"), max_size=40) \
    | st.sampled_from(["latest", "LATEST", "..", "v99999999999999999999", "model/c:v0", "b:latest",
                       "model/c:LATEST", "b:v99999999999999999999", "model/c:v01", "model//c"])


def _json(max_leaves: int = 20):
    scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
               | st.floats(allow_nan=True, allow_infinity=True) | _TEXT)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(_TEXT | st.sampled_from(["$not", "$and", "$or", "$in", "$regex",
                                                                  "$gt", "name", "metrics.acc", "tags"]),
                                          inner, max_size=4), max_leaves=max_leaves)


@pytest.fixture(scope="module")
def hostile_store(_base, tmp_path_factory):
    """One copy of the base store shared by the generated cases (each checks it is unchanged or
    only grew by a successful operation)."""
    import shutil

    dest = tmp_path_factory.mktemp("gen") / "store"
    shutil.copytree(_base, dest, symlinks=True)
    return dest


@HYPO
@given(text=_TEXT)
def test_generated_addresses_and_names(hostile_store, text):
    s = canonry.open(str(hostile_store))
    before = head_of(hostile_store)
    for call in (lambda: s.show(text), lambda: s.history(text),
                 lambda: s.set_alias("model/c:v0", text) if text else None):
        try:
            call()
        except CanonryError as e:
            assert "\n" not in str(e).strip() or "\n" in text, str(e)
            assert head_of(hostile_store) == before


@HYPO
@given(flt=_json() | st.sampled_from([{"$not": {"$not": {"name": "c"}}}, {"$and": []}, {"name": {"$in": []}}]))
def test_generated_filters(hostile_store, flt):
    from canonry.query.search import search

    s = canonry.open(str(hostile_store))
    for kind in ("versions", "collections", "registries"):
        try:
            assert isinstance(search(s, flt, kind=kind), list)
        except CanonryError:
            pass


@HYPO
@given(metadata=st.dictionaries(_TEXT, _json(6), max_size=3),
       metrics=st.dictionaries(_TEXT, st.integers(min_value=-(10**400), max_value=10**400)
                               | st.floats() | st.booleans() | _TEXT, max_size=3))
def test_generated_metadata_and_metrics(hostile_store, tmp_path_factory, metadata, metrics):
    f = tmp_path_factory.mktemp("f") / "f.txt"
    f.write_text(repr((metadata, metrics)))
    s = canonry.open(str(hostile_store))
    before = head_of(hostile_store)
    try:
        v = s.log_artifact(str(f), name="gen", type="model", metadata=metadata, metrics=metrics)
    except CanonryError:
        assert head_of(hostile_store) == before
        return
    # what was written reads back: show, search and history of it work
    assert s.show(v.address)
    assert isinstance(s.search({"type": "model"}), list)
    assert s.history("gen") is not None


_YAML_PIECES = st.sampled_from([
    "metadata: {a: &x [1, 2]}\n", "metadata: {b: *x}\n", "metadata: " + "[" * 70 + "]" * 70 + "\n",
    "metadata: {big: " + "9" * 40 + "}\n", "size: " + "9" * 40 + "\n", "size: 99999999999999999999999\n",
    "metadata: {a: 1, a: 2}\n", "unknown_field: 1\n", "metadata: {'a\\nb': 1}\n", "format: 2\n",
    "metadata: {long: '" + "x" * 10_000 + "'}\n", "files: !!python/object:os.system x\n", "- list\n",
    "metrics: {m: .nan}\n", "metrics: {m: 1e999}\n", "metrics: {m: " + "9" * 400 + "}\n", "\t\x00\n",
])


@HYPO
@given(pieces=st.lists(_YAML_PIECES, max_size=4), junk=st.binary(max_size=8))
def test_generated_store_files(hostile_store, pieces, junk):
    """Hand-written version records: a dict or a one-line SchemaError from the reader, quickly."""
    s = canonry.open(str(hostile_store))
    good = (hostile_store / "artifacts/b/v0.yaml").read_text()
    data = (good + "".join(pieces)).encode() + junk
    view = s.view()
    for path in ("artifacts/b/v0.yaml", "registries/model/c/collection.yaml", "canonry.yaml"):
        try:
            assert isinstance(view.parse_record(path, data), dict)
        except CanonryError as e:
            assert "\n" not in str(e), str(e)
