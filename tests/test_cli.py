"""The `canonry` command through click's CliRunner, and through real processes."""
from __future__ import annotations

import json
import os

import pytest
import yaml
from conftest import (
    ACTOR_EMAIL,
    assert_one_line_error,
    commit_count,
    git,
    git_status,
    head_of,
    run_process,
    show_file,
    write_checkpoint,
)

import canonry


def _build_populated(store, work):
    rows = work / "rows.csv"
    rows.write_text("rows\n")
    weights = work / "my_model.txt"
    weights.write_text("weights v0\n")
    store.log_artifact(str(rows), name="train-set", type="dataset")
    store.log_artifact(str(weights), name="gemma-finetuned", type="model",
                       metadata={"base": "gemma"}, metrics={"accuracy": 0.91},
                       inputs=["train-set:v0"])
    store.log_artifact(str(write_checkpoint(work / "checkpoint")), name="gemma-finetuned",
                       type="model")
    store.link("gemma-finetuned:v0", "model/first-collection", aliases=["production"])
    store.link("gemma-finetuned:v1", "model/first-collection", aliases=["staging"])
    store.link("train-set:v0", "dataset/train")
    store.tag("model/first-collection", "nlp")


@pytest.fixture
def populated(from_template):
    """model/first-collection with v0 [production] and v1 [staging] (v1 is the checkpoint
    directory), dataset/train, and a tag. Built once through the API and copied (the CLI's
    own writes are tested below)."""
    return from_template("populated", _build_populated)


# ---- write commands: human output ------------------------------------------------------------
def test_log_file_prints_what_it_did(cli, model_file, store_path):
    r = cli("log", model_file, "--name", "gemma-finetuned", "--type", "model",
            "-m", "epochs=3", "-m", "base=gemma", "--metric", "accuracy=0.91", "--metric", "steps=100",
            "-d", "first")
    assert r.exit_code == 0, r
    assert r.stdout.startswith("logged gemma-finetuned:v0 (model, 1 file,")
    assert r.stderr == ""
    rec = yaml.safe_load(show_file(store_path, "main:artifacts/gemma-finetuned/v0.yaml"))
    assert rec["metadata"] == {"epochs": 3, "base": "gemma"}  # numbers stay typed
    assert rec["metrics"] == {"accuracy": 0.91, "steps": 100}
    assert isinstance(rec["metrics"]["steps"], int)
    assert rec["description"] == "first"
    assert rec["producer"]["actor"] == ACTOR_EMAIL


def test_log_directory_cli(cli, model_dir):
    r = cli("log", model_dir, "--name", "ckpt", "--type", "model", "--json")
    assert r.exit_code == 0, r
    data = r.json()
    assert data["version"] == "v0" and data["created"] is True
    assert [f["path"] for f in data["files"]] == ["config.json", "sub/tokenizer.txt", "weights.bin"]
    assert data["digest"].startswith("sha256:")


def test_log_identical_json_says_not_created(cli, model_file, store_path):
    cli("log", model_file, "--name", "gem", "--type", "model")
    head = head_of(store_path)
    r = cli("log", model_file, "--name", "gem", "--type", "model", "--json")
    assert r.exit_code == 0, r
    assert r.json()["created"] is False and r.json()["version"] == "v0"
    assert head_of(store_path) == head


def test_link_alias_unlink_tag_flow(cli, store_path, model_file, make_file):
    cli("log", model_file, "--name", "gemma-finetuned", "--type", "model")
    cli("log", make_file("second"), "--name", "gemma-finetuned", "--type", "model")
    r = cli("link", "gemma-finetuned:v0", "model/first-collection", "--alias", "production")
    assert r.exit_code == 0, r
    assert r.stdout.strip() == "linked gemma-finetuned:v0 -> model/first-collection:v0 [production]"
    r = cli("link", "gemma-finetuned:v1", "model/first-collection")
    assert r.stdout.strip() == "linked gemma-finetuned:v1 -> model/first-collection:v1"
    r = cli("alias", "set", "model/first-collection:v1", "production")
    assert r.exit_code == 0, r
    assert r.stdout.strip() == "moved production in model/first-collection: v0 -> v1"
    r = cli("alias", "set", "model/first-collection:v1", "production")
    assert "nothing changed" in r.stdout
    r = cli("alias", "set", "model/first-collection:v0", "staging")
    assert r.stdout.strip() == "set staging -> model/first-collection:v0"
    r = cli("alias", "rm", "model/first-collection", "staging")
    assert r.stdout.strip() == "removed staging from model/first-collection (was on v0)"
    r = cli("tag", "add", "model/first-collection:v1", "reviewed", "gpu")
    assert r.exit_code == 0 and "reviewed, gpu" in r.stdout
    r = cli("tag", "add", "model/first-collection:v1", "gpu")
    assert "unchanged" in r.stdout
    r = cli("tag", "rm", "model/first-collection:v1", "gpu")
    assert r.stdout.strip() == "tags of model/first-collection:v1: reviewed"
    r = cli("unlink", "model/first-collection:v1")
    assert r.exit_code == 0, r
    assert r.stdout.strip() == ("unlinked model/first-collection:v1 (gemma-finetuned:v1); "
                                "removed aliases production")
    store = canonry.open(str(store_path))
    assert store.collection("model/first-collection").aliases == {"latest": "v0"}


def test_write_commands_json_return_data(cli, model_file):
    cli("log", model_file, "--name", "gem", "--type", "model")
    lv = cli("link", "gem:v0", "model/c", "-a", "production", "--json")
    assert lv.exit_code == 0, lv
    data = lv.json()
    assert data["version"] == "v0" and data["artifact"] == "gem:v0" and data["created"] is True
    assert sorted(data["aliases"]) == ["latest", "production"]
    again = cli("link", "gem:v0", "model/c", "--json").json()
    assert again["created"] is False
    ch = cli("alias", "set", "model/c:v0", "best", "--json").json()
    assert ch == {"collection": "model/c", "alias": "best", "before": None, "after": "v0",
                  "changed": True}
    rm = cli("alias", "rm", "model/c", "best", "--json").json()
    assert rm["before"] == "v0" and rm["after"] is None
    tag = cli("tag", "add", "model/c", "x", "--json").json()
    assert tag["target"] == "model/c" and tag["after"] == ["x"] and tag["changed"] is True
    reg = cli("registry", "create", "team", "--type", "model", "--json").json()
    assert reg["name"] == "team" and reg["types"] == ["model"]
    edited = cli("registry", "edit", "team", "--add-type", "dataset", "--json").json()
    assert edited["types"] == ["model", "dataset"] and edited["changed"] is True
    un = cli("unlink", "model/c:v0", "--json").json()
    assert un["version"] == "v0" and un["artifact"] == "gem:v0"
    gc = cli("gc", "--json").json()
    assert "packed_objects" in gc and "packs" in gc


def test_registry_commands(cli, store_path):
    r = cli("registry", "create", "team", "-d", "Team models", "--visibility", "organization",
            "--type", "model", "--type", "prompt")
    assert r.exit_code == 0, r
    assert "created registry team" in r.stdout and "model, prompt" in r.stdout
    listing = cli("registry", "list")
    assert listing.exit_code == 0
    names = [line.split()[0] for line in listing.stdout.splitlines()[1:]]
    assert names == ["dataset", "model", "team"]
    shown = cli("registry", "show", "team")
    assert "Team models" in shown.stdout and "organization" in shown.stdout
    r = cli("registry", "edit", "team", "--add-type", "dataset")
    assert "edited registry team" in r.stdout
    head = head_of(store_path)
    r = cli("registry", "edit", "team", "--add-type", "dataset")
    assert "nothing to change" in r.stdout and head_of(store_path) == head


# ---- reads: --json -----------------------------------------------------------------------------
READ_COMMANDS = [
    ("show", "model"),
    ("show", "model/first-collection"),
    ("show", "model/first-collection:v0"),
    ("show", "model/first-collection:production"),
    ("show", "model/first-collection:latest"),
    ("show", "gemma-finetuned"),
    ("show", "gemma-finetuned:v0"),
    ("show", "gemma-finetuned:latest"),
    ("ls",),
    ("ls", "model"),
    ("ls", "model/first-collection"),
    ("history", "model/first-collection"),
    ("history", "model/first-collection:production"),
    ("history", "gemma-finetuned:v0"),
    ("history", "model"),
    ("registry", "list"),
    ("registry", "show", "model"),
]


@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda a: " ".join(a))
def test_read_commands_json_is_data_only(populated, cli, store_path, args):
    head = head_of(store_path)
    r = cli(*args, "--json")
    assert r.exit_code == 0, r
    assert r.stderr == ""
    data = json.loads(r.stdout)
    assert isinstance(data, (dict, list)) and data
    human = cli(*args)
    assert human.exit_code == 0, human
    assert human.stdout.strip() and not human.stdout.lstrip().startswith(("{", "["))
    assert head_of(store_path) == head  # reading writes nothing


def test_show_json_shapes(populated, cli):
    coll = cli("show", "model/first-collection", "--json").json()
    assert coll["kind"] == "collection" and coll["type"] == "model" and coll["tags"] == ["nlp"]
    assert coll["aliases"] == {"production": "v0", "staging": "v1", "latest": "v1"}
    assert [(x["version"], x["artifact"]) for x in coll["links"]] == [
        ("v0", "gemma-finetuned:v0"), ("v1", "gemma-finetuned:v1")]
    av = cli("show", "gemma-finetuned:v0", "--json").json()
    assert av["kind"] == "artifact_version" and av["inputs"] == ["train-set:v0"]
    assert av["metadata"] == {"base": "gemma"} and av["metrics"] == {"accuracy": 0.91}
    assert [(x["collection"], x["aliases"]) for x in av["links"]] == [("first-collection",
                                                                      ["production"])]
    link = cli("show", "model/first-collection:staging", "--json").json()
    assert link["kind"] == "link" and link["version"] == "v1"
    assert link["artifact_version"]["artifact"] == "gemma-finetuned"
    reg = cli("show", "dataset", "--json").json()
    assert reg["kind"] == "registry" and [c["name"] for c in reg["collections"]] == ["train"]


def test_ls_json_shapes(populated, cli):
    regs = cli("ls", "--json").json()
    assert [r["name"] for r in regs] == ["dataset", "model"]
    colls = cli("ls", "model", "--json").json()
    assert [c["name"] for c in colls] == ["first-collection"]
    versions = cli("ls", "model/first-collection", "--json").json()
    assert [v["version"] for v in versions] == ["v0", "v1"]
    assert versions[1]["aliases"] == ["staging", "latest"]


def test_history_json_has_ops_before_after_actor(populated, cli):
    cli("alias", "set", "model/first-collection:v1", "production")
    entries = cli("history", "model/first-collection:production", "--json").json()
    assert [(e["op"], e["before"], e["after"]) for e in entries] == [
        ("alias.set", "v0", "v1"), ("alias.set", None, "v0")]
    for e in entries:
        assert e["actor"] == ACTOR_EMAIL
        assert len(e["commit"]) == 40 and e["time"].endswith("Z")
    limited = cli("history", "model/first-collection", "--limit", "1", "--json").json()
    assert len(limited) == 1


def test_history_human_output_shows_before_arrow_after(populated, cli):
    cli("alias", "set", "model/first-collection:v1", "production")
    r = cli("history", "model/first-collection:production")
    assert r.exit_code == 0, r
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["TIME", "ACTOR", "OPERATION"]
    assert "v0 → v1" in lines[1] and ACTOR_EMAIL in lines[1] and "alias.set" in lines[1]


def test_human_tables_are_aligned(populated, cli):
    r = cli("ls", "model/first-collection")
    lines = r.stdout.splitlines()
    header = lines[0]
    columns = ["VERSION", "ARTIFACT", "ALIASES", "TAGS", "LINKED AT", "LINKED BY"]
    starts = [header.index(c) for c in columns]
    assert starts == sorted(starts)
    for line in lines[1:]:
        for start in starts[1:]:
            assert line[start - 2:start] == "  " and line[start] != " ", (line, start)


def test_show_artifact_version_human_lists_links(populated, cli):
    r = cli("show", "gemma-finetuned:v0")
    assert r.exit_code == 0, r
    assert "model/first-collection:v0" in r.stdout and "production" in r.stdout
    assert "LINKED AS" in r.stdout
    r = cli("show", "train-set:v0")
    assert "dataset/train:v0" in r.stdout


# ---- get ---------------------------------------------------------------------------------------
def test_get_restores_and_verifies(populated, cli, tmp_path, model_dir):
    out = tmp_path / "restored"
    r = cli("get", "model/first-collection:staging", "--to", out)
    assert r.exit_code == 0, r
    assert "digests verified" in r.stdout
    for rel in ("config.json", "weights.bin", "sub/tokenizer.txt"):
        assert (out / rel).read_bytes() == (model_dir / rel).read_bytes()
    r = cli("get", "gemma-finetuned:v0", "--to", tmp_path / "v0", "--json")
    data = r.json()
    assert data["artifact"] == "gemma-finetuned:v0" and data["files"] == ["my_model.txt"]
    assert (tmp_path / "v0" / "my_model.txt").read_text() == "weights v0\n"


def test_get_corrupt_blob_exits_1(populated, cli, tmp_path, store_path):
    store = canonry.open(str(store_path))
    v = store.resolve("gemma-finetuned:v0")
    blob = store.blobs.path(v.files[0]["sha256"])
    os.chmod(blob, 0o644)
    with open(blob, "ab") as f:
        f.write(b"bit rot")
    r = cli("get", "gemma-finetuned:v0", "--to", tmp_path / "out")
    line = assert_one_line_error(r, 1, contains=("corrupt",))
    assert line.startswith("canonry: error:")
    assert not (tmp_path / "out" / "my_model.txt").exists()


# ---- finding the store -------------------------------------------------------------------------
def test_store_found_from_cwd_upwards(run_cli, store, store_path, monkeypatch):
    monkeypatch.chdir(store_path / "registries" / "model")
    r = run_cli("ls", "--json")
    assert r.exit_code == 0, r
    assert [x["name"] for x in r.json()] == ["dataset", "model"]


def test_store_from_environment(run_cli, store, store_path, monkeypatch):
    monkeypatch.setenv("CANONRY_STORE", str(store_path))
    r = run_cli("show", "model", "--json")
    assert r.exit_code == 0, r
    assert r.json()["name"] == "model"


# ---- quickstart --------------------------------------------------------------------------------
def test_quickstart_creates_store(run_cli, tmp_path):
    d = tmp_path / "qs"
    r = run_cli("quickstart", d)
    assert r.exit_code == 0, r
    assert "first-collection" in r.stdout
    assert "gemma-finetuned" in r.stdout
    store = canonry.open(str(d))
    lv = store.resolve("model/first-collection:latest")
    assert lv.artifact == "gemma-finetuned:v0"
    assert len([a for a in lv.aliases if a != "latest"]) >= 1
    assert commit_count(d) == 3  # init, log, link
    assert git_status(d) == ""


def test_quickstart_refuses_non_empty_dir(run_cli, tmp_path):
    d = tmp_path / "full"
    d.mkdir()
    (d / "keep.txt").write_text("mine")
    r = run_cli("quickstart", d)
    assert_one_line_error(r, 1, contains=("not empty",))
    assert sorted(os.listdir(d)) == ["keep.txt"]


# ---- real processes ----------------------------------------------------------------------------
def test_real_process_end_to_end(tmp_path, model_file):
    path = tmp_path / "store"
    r = run_process(["init", path])
    assert r.returncode == 0, r.stderr
    r = run_process(["-C", path, "log", model_file, "--name", "gemma-finetuned", "--type", "model"])
    assert r.returncode == 0, r.stderr
    r = run_process(["-C", path, "link", "gemma-finetuned:v0", "model/first-collection",
                     "--alias", "production"])
    assert r.returncode == 0, r.stderr
    r = run_process(["-C", path, "show", "model/first-collection:production", "--json"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["artifact"] == "gemma-finetuned:v0"
    assert r.stderr == ""
    # a second fresh process reads the records the first one cached: same answer
    again = run_process(["-C", path, "show", "model/first-collection:production", "--json"])
    assert json.loads(again.stdout) == json.loads(r.stdout)
    r = run_process(["show", "model/first-collection:nope"], cwd=path)
    assert_one_line_error(r, 1, contains=("unknown alias 'nope'",))
    r = run_process(["--help"])
    assert r.returncode == 0 and "Usage" in r.stdout
    r = run_process(["--version"])
    assert r.returncode == 0 and r.stdout.startswith("canonry ")
    author = git("-C", path, "log", "-1", "--format=%an <%ae>").strip()
    assert author == "Ada Lovelace <ada@example.com>"
    assert git_status(path) == ""
