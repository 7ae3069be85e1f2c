"""Failures through the CLI: exit code 1 (2 for usage), one line on stderr, no traceback,
and the store branch exactly where it was."""
from __future__ import annotations

import os

import pytest
from conftest import assert_one_line_error, git, head_of

import canonry


def _build_ready(store, work):
    weights = work / "my_model.txt"
    weights.write_bytes(b"weights: 0.1 0.2 0.3\n")
    rows = work / "rows.csv"
    rows.write_text("rows")
    store.log_artifact(str(weights), name="gemma-finetuned", type="model")
    store.log_artifact(str(rows), name="train-set", type="dataset")
    store.link("gemma-finetuned:v0", "model/first-collection", aliases=["production"])


@pytest.fixture
def ready(from_template):
    """gemma-finetuned:v0 linked as model/first-collection:v0 [production]; a dataset logged."""
    return from_template("ready", _build_ready)


ERROR_CASES = [
    # (args, expected fragments of the one line)
    (["show", "modle"], ["unknown registry or artifact 'modle'", "did you mean 'model'"]),
    (["show", "modle/first-collection"], ["unknown registry 'modle'", "did you mean 'model'"]),
    (["show", "model/first-colection"], ["unknown collection", "did you mean 'model/first-collection'"]),
    (["show", "model/first-collection:v7"], ["unknown version 'v7'", "model/first-collection"]),
    (["show", "model/first-collection:v1"], ["unknown version 'v1'", "did you mean 'v0'"]),
    (["show", "model/first-collection:prodution"], ["unknown alias 'prodution'",
                                                   "did you mean 'production'"]),
    (["show", "gemma-finetuned:v3"], ["unknown version 'v3'"]),
    (["show", "gemma-finetune:v0"], ["unknown artifact", "did you mean 'gemma-finetuned'"]),
    (["ls", "modle"], ["unknown registry 'modle'", "did you mean 'model'"]),
    (["ls", "model/nope"], ["unknown collection 'model/nope'"]),
    (["history", "model/nope"], ["unknown collection 'model/nope'"]),
    (["history", "gemma-finetuned:v4"], ["unknown version 'v4'"]),
    (["link", "gemma-finetuned:v9", "model/first-collection"], ["unknown version 'v9'"]),
    (["link", "gemma-finetuned:v0", "modle/first-collection"], ["did you mean 'model'"]),
    (["link", "train-set:v0", "model/new-collection"], ["does not accept type 'dataset'"]),
    (["link", "train-set:v0", "model/first-collection"], ["holds type 'model'"]),
    (["link", "gemma-finetuned:v0", "model/a/b"], ["invalid address"]),
    (["link", "gemma-finetuned:v0", "model/..", "-a", "x"], ["invalid address"]),
    (["link", "gemma-finetuned:v0", "model/.hidden"], ["invalid address"]),
    (["link", "gemma-finetuned:v0", "model/" + "c" * 129], ["invalid address"]),
    (["link", "gemma-finetuned:v0", "model/new", "-a", "latest"], ["reserved"]),
    (["alias", "set", "model/first-collection:v0", "latest"], ["reserved"]),
    (["alias", "set", "model/first-collection:v0", "v3"], ["reserved", "v<digits>"]),
    (["alias", "set", "model/first-collection:v5", "best"], ["unknown version 'v5'"]),
    (["alias", "set", "model/first-collection:v0", "a/b"], ["invalid alias"]),
    (["alias", "rm", "model/first-collection", "prodution"], ["unknown alias 'prodution'",
                                                             "did you mean 'production'"]),
    (["unlink", "model/first-collection:v3"], ["unknown version 'v3'"]),
    (["unlink", "model/first-collection"], ["REGISTRY/COLLECTION:vN"]),
    (["tag", "add", "gemma-finetuned:v0", "x"], ["tags go on a collection"]),
    (["tag", "add", "model/first-collection", "bad..tag"], ["invalid tag"]),
    (["log", "{missing}", "-n", "x", "-t", "model"], ["no such file"]),
    (["log", "{model}", "-n", "a/b", "-t", "model"], ["invalid artifact name 'a/b'"]),
    (["log", "{model}", "-n", "..", "-t", "model"], ["invalid artifact name"]),
    (["log", "{model}", "-n", ".dot", "-t", "model"], ["invalid artifact name"]),
    (["log", "{model}", "-n", "x" * 129, "-t", "model"], ["invalid artifact name"]),
    (["log", "{model}", "-n", "gemma-finetuned", "-t", "dataset"], ["keeps one type"]),
    (["log", "{model}", "-n", "new", "-t", "model", "--input", "train-sett:v0"],
     ["unknown artifact 'train-sett'", "did you mean 'train-set'"]),
    (["registry", "create", "model"], ["already exists"]),
    (["registry", "create", "a..b"], ["invalid registry name"]),
    (["registry", "show", "modle"], ["unknown registry", "did you mean 'model'"]),
    (["registry", "edit", "nope", "-d", "x"], ["unknown registry 'nope'"]),
    (["get", "model/first-collection", "--to", "{out}"], ["not a version"]),
]


@pytest.mark.parametrize("args,fragments", ERROR_CASES,
                         ids=[" ".join(a)[:60] for a, _ in ERROR_CASES])
def test_cli_error_is_one_line_and_changes_nothing(ready, cli, store_path, tmp_path, model_file,
                                                   args, fragments):
    subst = {"{missing}": str(tmp_path / "missing.bin"), "{model}": str(model_file),
             "{out}": str(tmp_path / "out")}
    args = [subst.get(a, a) for a in args]
    head = head_of(store_path)
    refs_before = git("-C", store_path, "for-each-ref")
    result = cli(*args)
    line = assert_one_line_error(result, 1, contains=tuple(fragments))
    assert line.startswith("canonry: error: ")
    assert result.stdout == ""
    assert head_of(store_path) == head
    assert git("-C", store_path, "for-each-ref") == refs_before


def test_not_a_store(run_cli, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    r = run_cli("-C", plain, "ls")
    assert_one_line_error(r, 1, contains=("not a canonry store",))
    git("init", "-q", tmp_path / "repo")
    r = run_cli("-C", tmp_path / "repo", "show", "model")
    assert_one_line_error(r, 1, contains=("not a canonry store", "canonry init"))
    r = run_cli("-C", tmp_path / "does-not-exist", "ls")
    assert_one_line_error(r, 1, contains=("does not exist",))


def test_not_a_store_from_cwd(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run_cli("registry", "list")
    assert_one_line_error(r, 1, contains=("not a canonry store",))


def test_init_on_a_file_is_refused(run_cli, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = run_cli("init", f)
    assert r.exit_code in (1, 2)
    assert "Traceback" not in r.stderr
    assert f.read_text() == "x"


def test_unreadable_input_file(cli, store, store_path, tmp_path):
    head = head_of(store_path)
    if os.geteuid() == 0:
        # root reads any file whatever its mode: a FIFO is an input that cannot be logged
        f = tmp_path / "pipe"
        os.mkfifo(f)
        r = cli("log", f, "-n", "x", "-t", "model")
        assert_one_line_error(r, 1, contains=("not a regular file",))
    else:
        f = tmp_path / "secret.bin"
        f.write_bytes(b"x")
        f.chmod(0)
        r = cli("log", f, "-n", "x", "-t", "model")
        assert_one_line_error(r, 1, contains=("cannot read",))
    assert head_of(store_path) == head


def test_directory_with_only_a_dangling_symlink(cli, store, store_path, tmp_path):
    d = tmp_path / "links-only"
    d.mkdir()
    (d / "x").symlink_to(tmp_path / "dangling-target")
    head = head_of(store_path)
    r = cli("log", d, "-n", "x", "-t", "model")
    assert_one_line_error(r, 1, contains=("no files",))
    assert head_of(store_path) == head


def test_usage_error_missing_required_option_exits_2(cli, store_path, model_file):
    head = head_of(store_path)
    r = cli("log", model_file, "--type", "model")
    assert r.exit_code == 2, r
    assert "Traceback" not in r.stderr
    assert "--name" in r.stderr
    assert head_of(store_path) == head


def test_usage_error_is_a_single_line(cli, model_file):
    r = cli("log", model_file, "--type", "model")
    assert_one_line_error(r, 2, contains=("--name",))


def test_bad_metric_value_is_a_usage_error(cli, store_path, model_file):
    head = head_of(store_path)
    r = cli("log", model_file, "-n", "g", "-t", "model", "--metric", "accuracy=high")
    assert r.exit_code == 2, r
    assert "not a number" in r.stderr and "Traceback" not in r.stderr
    r = cli("log", model_file, "-n", "g", "-t", "model", "--metadata", "novalue")
    assert r.exit_code == 2 and "KEY=VALUE" in r.stderr
    assert head_of(store_path) == head


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_metric_is_refused(cli, store_path, model_file, value):
    head = head_of(store_path)
    r = cli("log", model_file, "-n", "g", "-t", "model", "--metric", f"loss={value}")
    assert r.exit_code in (1, 2), r
    assert isinstance(r.exception, SystemExit), r  # a clean exit, not an uncaught exception
    assert "Traceback" not in r.stderr and value in r.stderr
    assert head_of(store_path) == head


# ---- hand-edited YAML in the store ---------------------------------------------------------
def _commit_edit(store_path, rel: str, text: str):
    (store_path / rel).write_text(text)
    git("-C", store_path, "add", rel)
    git("-C", store_path, "commit", "-q", "-m", f"hand edit {rel}")
    return head_of(store_path)


def test_invalid_collection_yaml_is_reported_with_file_and_field(ready, cli, store_path):
    rel = "registries/model/first-collection/collection.yaml"
    text = (store_path / rel).read_text().replace("next_version: 1", "next_version: lots")
    assert "lots" in text
    head = _commit_edit(store_path, rel, text)
    r = cli("show", "model/first-collection")
    line = assert_one_line_error(r, 1, contains=(rel, "next_version"))
    assert "lots" in line
    # writes touching it fail the same way and change nothing
    r = cli("link", "gemma-finetuned:v0", "model/first-collection")
    assert_one_line_error(r, 1, contains=(rel,))
    assert head_of(store_path) == head


def test_invalid_aliases_yaml_is_reported(ready, cli, store_path):
    rel = "registries/model/first-collection/aliases.yaml"
    head = _commit_edit(store_path, rel, "format: 1\naliases:\n  production: v0\n  best: seven\n")
    r = cli("show", "model/first-collection")
    assert_one_line_error(r, 1, contains=(rel, "aliases.best"))
    r = cli("alias", "set", "model/first-collection:v0", "staging")
    assert_one_line_error(r, 1, contains=(rel,))
    assert head_of(store_path) == head


def test_unparseable_yaml_is_reported(ready, cli, store_path):
    rel = "registries/model/first-collection/links/v0.yaml"
    head = _commit_edit(store_path, rel, "artifact: [unclosed\n")
    r = cli("show", "model/first-collection:v0")
    assert_one_line_error(r, 1, contains=(rel, "not valid YAML"))
    assert head_of(store_path) == head


def test_yaml_with_unknown_field_is_reported(ready, cli, store_path):
    rel = "registries/model/registry.yaml"
    text = (store_path / rel).read_text() + "colour: blue\n"
    _commit_edit(store_path, rel, text)
    r = cli("show", "model")
    assert_one_line_error(r, 1, contains=(rel, "colour"))


def test_yaml_that_is_not_a_mapping_is_reported(ready, cli, store_path):
    rel = "artifacts/gemma-finetuned/v0.yaml"
    _commit_edit(store_path, rel, "- just\n- a list\n")
    r = cli("show", "gemma-finetuned:v0", "--json")
    assert_one_line_error(r, 1, contains=(rel, "mapping"))
    assert r.stdout == ""


def test_valid_hand_edit_is_accepted(ready, cli, store_path):
    """A hand edit that validates (a promotion done in a pull request) is simply read."""
    rel = "registries/model/first-collection/aliases.yaml"
    _commit_edit(store_path, rel, "format: 1\naliases:\n  production: v0\n  champion: v0\n")
    r = cli("show", "model/first-collection", "--json")
    assert r.exit_code == 0, r
    assert r.json()["aliases"]["champion"] == "v0"
    store = canonry.open(str(store_path))
    assert store.resolve("model/first-collection:champion").version == "v0"


def test_hand_edited_manifest_cannot_write_outside_the_target(ready, cli, store_path, tmp_path):
    rel = "artifacts/gemma-finetuned/v0.yaml"
    import yaml

    rec = yaml.safe_load((store_path / rel).read_text())
    rec["files"][0]["path"] = "../escaped.txt"
    _commit_edit(store_path, rel, yaml.safe_dump(rec, sort_keys=False))
    out = tmp_path / "deep" / "out"
    r = cli("get", "gemma-finetuned:v0", "--to", out)
    assert_one_line_error(r, 1, contains=("../escaped.txt",))
    assert not (tmp_path / "deep" / "escaped.txt").exists()


def test_alias_rm_latest_is_refused(ready, cli, store_path):
    head = head_of(store_path)
    r = cli("alias", "rm", "model/first-collection", "latest")
    assert_one_line_error(r, 1, contains=("reserved",))
    assert head_of(store_path) == head
