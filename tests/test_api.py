"""The Python API: log, link, unlink, aliases, tags, addresses, reads and transactions."""
from __future__ import annotations

import hashlib
import json
import os
import socket

import pytest
import yaml
from conftest import ACTOR_EMAIL, commit_count, git, head_of, show_file

import canonry
from canonry import model as m
from canonry.errors import (
    CanonryError,
    IntegrityError,
    InvalidAddress,
    InvalidInput,
    InvalidName,
    NotFound,
    ReservedAlias,
    TypeNotAccepted,
)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob_files(store) -> list[str]:
    root = store.blobs.root
    out = []
    for top, _, files in os.walk(root):
        out += [os.path.join(top, f) for f in files if not f.startswith(".")]
    return out


def aliases_at(store_path, rev: str, collection: str = "model/first-collection") -> dict:
    reg, coll = collection.split("/")
    proc = git("-C", store_path, "show", f"{rev}:registries/{reg}/{coll}/aliases.yaml", check=False)
    return (yaml.safe_load(proc) or {}).get("aliases", {}) if proc else {}


# ---- log ---------------------------------------------------------------------------------------
def test_log_file_records_manifest_and_digest(store, store_path, model_file):
    data = model_file.read_bytes()
    v = store.log_artifact(str(model_file), name="gemma-finetuned", type="model")
    assert v.created is True
    assert v.address == "gemma-finetuned:v0"
    assert v.type == "model"
    assert v.files == [{"path": "my_model.txt", "size": len(data), "sha256": sha256(data)}]
    assert v.size == len(data)
    line = f"my_model.txt\t{len(data)}\t{sha256(data)}\n".encode()
    assert v.digest == "sha256:" + sha256(line)
    assert v.created_by == ACTOR_EMAIL
    # the record is in git, readable by the git CLI
    rec = yaml.safe_load(show_file(store_path, "main:artifacts/gemma-finetuned/v0.yaml"))
    assert rec["digest"] == v.digest and rec["files"] == v.files
    art = yaml.safe_load(show_file(store_path, "main:artifacts/gemma-finetuned/artifact.yaml"))
    assert art["type"] == "model"


def test_log_directory_records_every_file(store, model_dir):
    v = store.log_artifact(str(model_dir), name="ckpt", type="model")
    paths = [f["path"] for f in v.files]
    assert paths == ["config.json", "sub/tokenizer.txt", "weights.bin"]
    for entry in v.files:
        content = (model_dir / entry["path"]).read_bytes()
        assert entry["size"] == len(content)
        assert entry["sha256"] == sha256(content)
    assert v.size == sum(f["size"] for f in v.files)


def test_log_numbers_versions_in_order(store, make_file):
    a = store.log_artifact(str(make_file("one")), name="art", type="model")
    b = store.log_artifact(str(make_file("two")), name="art", type="model")
    c = store.log_artifact(str(make_file("three")), name="art", type="model")
    assert [a.version, b.version, c.version] == ["v0", "v1", "v2"]
    assert store.resolve("art").versions == ["v0", "v1", "v2"]
    assert store.resolve("art:latest").version == "v2"
    assert store.resolve("art:v1").digest == b.digest


def test_log_identical_content_makes_no_new_version(store, store_path, model_file, run_cli):
    first = store.log_artifact(str(model_file), name="gem", type="model")
    head = head_of(store_path)
    again = store.log_artifact(str(model_file), name="gem", type="model",
                               metadata={"note": "same bytes"})
    assert again.created is False
    assert again.address == "gem:v0" and again.digest == first.digest
    assert head_of(store_path) == head
    assert store.resolve("gem").versions == ["v0"]
    # the CLI tells the user
    result = run_cli("-C", store_path, "log", model_file, "--name", "gem", "--type", "model")
    assert result.exit_code == 0, result
    assert "identical to gem:v0" in result.stdout and "no new version" in result.stdout
    assert head_of(store_path) == head


def test_log_same_content_as_older_version_is_a_new_version(store, make_file):
    store.log_artifact(str(make_file("A")), name="art", type="model")
    store.log_artifact(str(make_file("B")), name="art", type="model")
    back = store.log_artifact(str(make_file("A")), name="art", type="model")
    assert back.created and back.version == "v2"


def test_log_metadata_metrics_inputs_description(store, make_file):
    data = store.log_artifact(str(make_file("rows")), name="train-set", type="dataset")
    v = store.log_artifact(str(make_file("model")), name="gem", type="model",
                           metadata={"base": "gemma", "epochs": 3, "tags": ["a", "b"]},
                           metrics={"accuracy": 0.91, "loss": 1},
                           inputs=["train-set:latest"], description="first try")
    assert v.metadata == {"base": "gemma", "epochs": 3, "tags": ["a", "b"]}
    assert v.metrics == {"accuracy": 0.91, "loss": 1}
    assert v.inputs == [data.address] == ["train-set:v0"]  # latest is pinned to a version
    assert v.description == "first try"
    shown = store.show("gem:v0")
    assert shown["inputs"] == ["train-set:v0"] and shown["metrics"]["accuracy"] == 0.91


def test_log_unknown_input_is_refused(store, store_path, make_file):
    store.log_artifact(str(make_file("rows")), name="train-set", type="dataset")
    head = head_of(store_path)
    with pytest.raises(NotFound, match="train-sett"):
        store.log_artifact(str(make_file("m")), name="gem", type="model", inputs=["train-sett:v0"])
    with pytest.raises(NotFound, match="v7"):
        store.log_artifact(str(make_file("m")), name="gem", type="model", inputs=["train-set:v7"])
    with pytest.raises(InvalidAddress):
        store.log_artifact(str(make_file("m")), name="gem", type="model", inputs=["model/c:v0"])
    assert head_of(store_path) == head
    with pytest.raises(NotFound):
        store.resolve("gem")


def test_log_non_numeric_metric_is_refused(store, make_file):
    with pytest.raises(InvalidInput, match="metric"):
        store.log_artifact(str(make_file("x")), name="gem", type="model", metrics={"acc": "high"})
    with pytest.raises(InvalidInput):
        store.log_artifact(str(make_file("x")), name="gem", type="model", metrics={"ok": True})


def test_log_records_producer(store, tmp_path, make_file, monkeypatch):
    project = tmp_path / "project"
    git("init", "-q", "-b", "main", project)
    (project / "train.py").write_text("print('train')\n")
    git("-C", project, "add", ".")
    git("-C", project, "commit", "-q", "-m", "training code")
    project_head = head_of(project)
    monkeypatch.chdir(project)
    v = store.log_artifact(str(make_file("weights")), name="gem", type="model")
    p = v.producer
    assert p["git_commit"] == project_head
    assert p["host"] == socket.gethostname()
    assert p["actor"] == ACTOR_EMAIL
    assert isinstance(p["command"], str) and p["command"]
    assert os.path.realpath(p["cwd"]) == os.path.realpath(str(project))


def test_log_producer_outside_a_repository_has_no_commit(store, make_file):
    v = store.log_artifact(str(make_file("weights")), name="gem", type="model")
    assert v.producer["git_commit"] is None
    assert v.producer["host"] == socket.gethostname()


def test_log_deduplicates_bytes_in_blob_storage(store, make_file, tmp_path):
    payload = b"x" * 5000
    store.log_artifact(str(make_file(payload)), name="a", type="model")
    store.log_artifact(str(make_file(payload)), name="b", type="model")
    d = tmp_path / "dir"
    d.mkdir()
    (d / "same.bin").write_bytes(payload)
    (d / "other.bin").write_bytes(b"other")
    store.log_artifact(str(d), name="c", type="model")
    files = blob_files(store)
    assert len(files) == 2
    names = {os.path.basename(os.path.dirname(f)) + os.path.basename(f) for f in files}
    assert names == {sha256(payload), sha256(b"other")}
    # blob storage lives inside the git directory and is never committed
    assert os.path.commonpath([store.blobs.root, store.storage.git_dir]) == store.storage.git_dir
    tree = git("-C", store.path, "ls-tree", "-r", "--name-only", "main")
    assert sha256(payload) not in tree


def test_log_missing_path_is_refused(store, store_path, tmp_path):
    head = head_of(store_path)
    with pytest.raises(InvalidInput, match="no such file"):
        store.log_artifact(str(tmp_path / "nope.bin"), name="gem", type="model")
    assert head_of(store_path) == head


def test_log_empty_directory_is_refused(store, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="no files"):
        store.log_artifact(str(tmp_path / "empty"), name="gem", type="model")


def test_log_type_change_of_existing_artifact_is_refused(store, store_path, make_file):
    store.log_artifact(str(make_file("a")), name="gem", type="model")
    head = head_of(store_path)
    with pytest.raises(TypeNotAccepted, match="keeps one type"):
        store.log_artifact(str(make_file("b")), name="gem", type="dataset")
    assert head_of(store_path) == head
    assert store.resolve("gem").type == "model"


@pytest.mark.parametrize("bad", ["a/b", "..", "a..b", ".hidden", "x" * 129])
def test_log_invalid_artifact_name_is_refused(store, store_path, make_file, bad):
    head = head_of(store_path)
    with pytest.raises(InvalidName):
        store.log_artifact(str(make_file("a")), name=bad, type="model")
    assert head_of(store_path) == head


def test_log_artifact_name_with_trailing_newline_is_refused(store, store_path, make_file):
    head = head_of(store_path)
    with pytest.raises(InvalidName):
        store.log_artifact(str(make_file("a")), name="gem\n", type="model")
    assert head_of(store_path) == head


# ---- link --------------------------------------------------------------------------------------
def test_link_creates_collection_with_artifact_type(store, store_path, model_file):
    v = store.log_artifact(str(model_file), name="gemma-finetuned", type="model")
    lv = store.link(v.address, "model/first-collection")
    assert lv.created and lv.address == "model/first-collection:v0"
    assert lv.artifact == "gemma-finetuned:v0" and lv.digest == v.digest
    assert lv.linked_by == ACTOR_EMAIL
    coll = store.collection("model/first-collection")
    assert coll.type == "model" and coll.versions == 1
    link_rec = yaml.safe_load(show_file(store_path,
                                        "main:registries/model/first-collection/links/v0.yaml"))
    assert link_rec["artifact"] == "gemma-finetuned:v0"
    # no bytes are copied: blob storage holds one file
    assert len(blob_files(store)) == 1


def test_link_numbers_per_collection(store, make_file):
    vs = [store.log_artifact(str(make_file(f"c{i}")), name="gem", type="model") for i in range(3)]
    assert [store.link(v.address, "model/a").version for v in vs] == ["v0", "v1", "v2"]
    # another collection numbers from v0 independently; one artifact version can be in many
    assert store.link("gem:v2", "model/b").version == "v0"
    assert store.link("gem:v0", "model/b").version == "v1"
    assert [lv.artifact for lv in store.versions("model/a")] == ["gem:v0", "gem:v1", "gem:v2"]


def test_link_same_version_again_changes_nothing(store, store_path, model_file, run_cli):
    store.log_artifact(str(model_file), name="gem", type="model")
    store.link("gem:v0", "model/c")
    head = head_of(store_path)
    again = store.link("gem:v0", "model/c")
    assert again.created is False and again.version == "v0"
    assert head_of(store_path) == head
    assert len(store.versions("model/c")) == 1
    result = run_cli("-C", store_path, "link", "gem:v0", "model/c")
    assert result.exit_code == 0, result
    assert "already linked" in result.stdout and "no new link" in result.stdout
    assert head_of(store_path) == head


def test_link_existing_with_alias_moves_alias_only(store, store_path, model_file):
    store.log_artifact(str(model_file), name="gem", type="model")
    store.link("gem:v0", "model/c")
    again = store.link("gem:v0", "model/c", aliases=["production"])
    assert again.created is False
    assert "production" in again.aliases
    assert len(store.versions("model/c")) == 1
    assert store.collection("model/c").next_version == 1


def test_link_refused_when_registry_does_not_accept_type(store, store_path, make_file):
    store.log_artifact(str(make_file("rows")), name="rows", type="dataset")
    head = head_of(store_path)
    with pytest.raises(TypeNotAccepted, match="does not accept type 'dataset'"):
        store.link("rows:v0", "model/c")
    assert head_of(store_path) == head
    assert store.collections("model") == []


def test_link_refused_when_collection_has_other_type(store, store_path, make_file):
    store.create_registry("misc", types=None)  # accepts all types
    store.log_artifact(str(make_file("m")), name="gem", type="model")
    store.log_artifact(str(make_file("d")), name="rows", type="dataset")
    store.link("gem:v0", "misc/things")
    head = head_of(store_path)
    with pytest.raises(TypeNotAccepted, match="holds type 'model'"):
        store.link("rows:v0", "misc/things")
    assert head_of(store_path) == head
    assert store.link("rows:v0", "misc/tables").version == "v0"


def test_link_with_aliases_and_latest(store, store_path, make_file):
    store.log_artifact(str(make_file("a")), name="gem", type="model")
    lv = store.link("gem:v0", "model/c", aliases=["production", "best"])
    assert sorted(lv.aliases) == ["best", "latest", "production"]
    store.log_artifact(str(make_file("b")), name="gem", type="model")
    lv1 = store.link("gem:v1", "model/c", aliases=["staging"])
    assert sorted(lv1.aliases) == ["latest", "staging"]
    coll = store.collection("model/c")
    assert coll.aliases == {"best": "v0", "production": "v0", "staging": "v1", "latest": "v1"}
    assert store.resolve("model/c:latest").version == "v1"
    assert store.resolve("model/c:production").version == "v0"
    # `latest` is derived, never stored
    stored = aliases_at(store_path, "main", "model/c")
    assert "latest" not in stored and stored == {"best": "v0", "production": "v0", "staging": "v1"}


def test_link_commit_subject_reads_like_a_sentence(store, store_path, model_file):
    store.log_artifact(str(model_file), name="gemma-finetuned", type="model")
    store.link("gemma-finetuned:v0", "model/first-collection", aliases=["production"])
    subject = git("-C", store_path, "log", "-1", "--format=%s").strip()
    assert subject == "link gemma-finetuned:v0 -> model/first-collection as v0 [+production]"


def test_link_latest_artifact_address(store, make_file):
    store.log_artifact(str(make_file("a")), name="gem", type="model")
    store.log_artifact(str(make_file("b")), name="gem", type="model")
    assert store.link("gem:latest", "model/c").artifact == "gem:v1"


def test_link_refuses_unknown_artifact_registry_and_reserved_alias(store, store_path, model_file):
    store.log_artifact(str(model_file), name="gemma", type="model")
    head = head_of(store_path)
    with pytest.raises(NotFound, match="did you mean 'gemma'"):
        store.link("gemmma:v0", "model/c")
    with pytest.raises(NotFound, match="v5"):
        store.link("gemma:v5", "model/c")
    with pytest.raises(NotFound, match="did you mean 'model'"):
        store.link("gemma:v0", "modle/c")
    with pytest.raises(ReservedAlias):
        store.link("gemma:v0", "model/c", aliases=["latest"])
    with pytest.raises(ReservedAlias):
        store.link("gemma:v0", "model/c", aliases=["v3"])
    with pytest.raises((InvalidAddress, InvalidName)):
        store.link("gemma:v0", "model/a..b")
    assert head_of(store_path) == head


def test_unlink_removes_link_and_its_aliases(store, store_path, make_file):
    for c in "ab":
        store.log_artifact(str(make_file(c)), name="gem", type="model")
    store.link("gem:v0", "model/c", aliases=["production"])
    store.link("gem:v1", "model/c", aliases=["staging", "best"])
    gone = store.unlink("model/c:staging")
    assert gone.version == "v1" and gone.artifact == "gem:v1"
    assert [lv.version for lv in store.versions("model/c")] == ["v0"]
    assert store.collection("model/c").aliases == {"production": "v0", "latest": "v0"}
    assert aliases_at(store_path, "main", "model/c") == {"production": "v0"}
    assert git("-C", store_path, "ls-tree", "--name-only", "main",
               "registries/model/c/links/").split() == ["registries/model/c/links/v0.yaml"]
    # the artifact version itself stays
    assert store.resolve("gem:v1").version == "v1"
    with pytest.raises(NotFound):
        store.resolve("model/c:best")


def test_link_numbers_are_never_reused_after_unlink(store, make_file):
    for c in "abc":
        store.log_artifact(str(make_file(c)), name="gem", type="model")
    store.link("gem:v0", "model/c")
    store.link("gem:v1", "model/c")
    store.unlink("model/c:v1")
    assert store.link("gem:v2", "model/c").version == "v2"
    store.unlink("model/c:v0")
    store.unlink("model/c:v2")
    assert store.versions("model/c") == []
    # linking a previously unlinked artifact version again gets a fresh number
    assert store.link("gem:v0", "model/c").version == "v3"
    assert store.collection("model/c").next_version == 4


def test_latest_follows_newest_link_after_unlink(store, make_file):
    for c in "ab":
        store.log_artifact(str(make_file(c)), name="gem", type="model")
    store.link("gem:v1", "model/c")
    store.link("gem:v0", "model/c")
    assert store.resolve("model/c:latest").artifact == "gem:v0"  # newest link, not newest artifact
    store.unlink("model/c:latest")
    assert store.resolve("model/c:latest").version == "v0"
    store.unlink("model/c:v0")
    with pytest.raises(NotFound, match="no links"):
        store.resolve("model/c:latest")


# ---- aliases -----------------------------------------------------------------------------------
@pytest.fixture
def three_links(store, make_file):
    for c in "abc":
        store.log_artifact(str(make_file(c)), name="gem", type="model")
        store.link(f"gem:{store.resolve('gem:latest').version}", "model/first-collection")
    return store


def test_alias_set_and_move_reports_before_and_after(three_links, store_path):
    store = three_links
    ch = store.set_alias("model/first-collection:v0", "production")
    assert (ch.alias, ch.before, ch.after, ch.changed) == ("production", None, "v0", True)
    ch = store.set_alias("model/first-collection:v2", "production")
    assert (ch.before, ch.after, ch.changed) == ("v0", "v2", True)
    head = head_of(store_path)
    ch = store.set_alias("model/first-collection:v2", "production")
    assert ch.changed is False and head_of(store_path) == head
    assert store.resolve("model/first-collection:production").version == "v2"
    # setting through an alias address works too
    ch = store.set_alias("model/first-collection:production", "champion")
    assert ch.after == "v2"


def test_alias_is_unique_in_every_commit(three_links, store_path):
    store = three_links
    for target in ["v0", "v1", "v2", "v0", "v1"]:
        store.set_alias(f"model/first-collection:{target}", "production")
        store.set_alias(f"model/first-collection:{target}", "staging")
    store.remove_alias("model/first-collection", "staging")
    revs = git("-C", store_path, "rev-list", "main").split()
    seen = 0
    for rev in revs:
        text = git("-C", store_path, "show", f"{rev}:registries/model/first-collection/aliases.yaml",
                   check=False)
        if not text:
            continue
        seen += 1
        raw_keys = [line.split(":")[0].strip() for line in text.splitlines()
                    if line.startswith("  ") and ":" in line]
        assert len(raw_keys) == len(set(raw_keys)), (rev, text)  # one entry per alias
        aliases = yaml.safe_load(text)["aliases"]
        assert "latest" not in aliases
        assert all(v in ("v0", "v1", "v2") for v in aliases.values())
    assert seen >= 10
    assert store.collection("model/first-collection").aliases == {"production": "v1", "latest": "v2"}


def test_reserved_aliases_are_refused(three_links, store_path):
    head = head_of(store_path)
    for alias in ("latest", "v3", "v0"):
        with pytest.raises(ReservedAlias):
            three_links.set_alias("model/first-collection:v1", alias)
    with pytest.raises(InvalidName):
        three_links.set_alias("model/first-collection:v1", "bad/alias")
    assert head_of(store_path) == head


def test_alias_rm(three_links, store_path):
    store = three_links
    store.set_alias("model/first-collection:v1", "production")
    ch = store.remove_alias("model/first-collection", "production")
    assert (ch.before, ch.after) == ("v1", None)
    assert "production" not in store.collection("model/first-collection").aliases
    assert aliases_at(store_path, "main") == {}


def test_alias_rm_unknown_suggests_close_names(three_links, store_path):
    store = three_links
    store.set_alias("model/first-collection:v1", "production")
    head = head_of(store_path)
    with pytest.raises(NotFound) as info:
        store.remove_alias("model/first-collection", "productoin")
    assert "did you mean 'production'" in str(info.value)
    assert head_of(store_path) == head


def test_alias_set_on_unknown_version_suggests(three_links):
    with pytest.raises(NotFound, match="unknown version 'v9'"):
        three_links.set_alias("model/first-collection:v9", "production")
    with pytest.raises(NotFound, match="did you mean 'model/first-collection'"):
        three_links.set_alias("model/first-colection:v1", "production")


# ---- tags --------------------------------------------------------------------------------------
def test_tags_on_collections_and_versions(linked, store_path):
    store = linked
    ch = store.tag("model/first-collection", "nlp", "gemma")
    assert ch.after == ["nlp", "gemma"] and ch.changed
    head = head_of(store_path)
    again = store.tag("model/first-collection", "nlp")
    assert again.changed is False and head_of(store_path) == head  # idempotent
    assert store.collection("model/first-collection").tags == ["nlp", "gemma"]
    ch = store.untag("model/first-collection", "nlp")
    assert ch.after == ["gemma"]
    assert store.untag("model/first-collection", "nlp").changed is False
    vch = store.tag("model/first-collection:production", "reviewed")
    assert vch.target == "model/first-collection:v0" and vch.after == ["reviewed"]
    assert store.resolve("model/first-collection:v0").tags == ["reviewed"]
    store.untag("model/first-collection:v0", "reviewed")
    assert store.resolve("model/first-collection:v0").tags == []


def test_tags_refused_on_artifacts_and_bad_names(linked):
    with pytest.raises(InvalidInput):
        linked.tag("gemma-finetuned:v0", "x")
    with pytest.raises(InvalidName):
        linked.tag("model/first-collection", "bad tag")


# ---- addresses and reads -----------------------------------------------------------------------
def test_resolve_every_address_kind(linked):
    store = linked
    assert isinstance(store.resolve("model"), m.Registry)
    assert isinstance(store.resolve("model/first-collection"), m.Collection)
    assert store.resolve("model/first-collection:v0").artifact == "gemma-finetuned:v0"
    assert store.resolve("model/first-collection:production").version == "v0"
    assert store.resolve("model/first-collection:latest").version == "v0"
    assert isinstance(store.resolve("gemma-finetuned"), m.Artifact)
    assert store.resolve("gemma-finetuned:v0").type == "model"
    assert store.resolve("gemma-finetuned:latest").version == "v0"


def test_resolve_unknown_names_suggest(linked):
    with pytest.raises(NotFound, match="did you mean 'gemma-finetuned'"):
        linked.resolve("gemma-finetune")
    with pytest.raises(NotFound, match="did you mean 'production'"):
        linked.resolve("model/first-collection:prodution")
    with pytest.raises(NotFound, match="did you mean 'model/first-collection'"):
        linked.resolve("model/first-colection")
    with pytest.raises(NotFound, match="registry"):
        linked.resolve("nope/first-collection")


def test_show_registry_collection_link(linked):
    store = linked
    reg = store.show("model")
    assert reg["kind"] == "registry" and reg["name"] == "model"
    assert [c["name"] for c in reg["collections"]] == ["first-collection"]
    coll = store.show("model/first-collection")
    assert coll["kind"] == "collection"
    assert coll["aliases"] == {"production": "v0", "latest": "v0"}
    assert [lv["version"] for lv in coll["links"]] == ["v0"]
    link = store.show("model/first-collection:production")
    assert link["kind"] == "link" and link["version"] == "v0"
    assert link["artifact_version"]["digest"] == link["digest"]
    assert link["artifact_version"]["files"][0]["path"] == "my_model.txt"


def test_show_artifact_version_lists_links_and_aliases(linked, make_file):
    store = linked
    store.create_registry("team", types=["model"])
    store.link("gemma-finetuned:v0", "team/candidates", aliases=["best"])
    data = store.show("gemma-finetuned:v0")
    assert data["kind"] == "artifact_version"
    where = {(x["registry"], x["collection"], x["version"]): x["aliases"] for x in data["links"]}
    assert where == {("model", "first-collection", "v0"): ["production", "latest"],
                     ("team", "candidates", "v0"): ["best", "latest"]}
    art = store.show("gemma-finetuned")
    assert art["kind"] == "artifact" and art["versions"] == ["v0"]


def test_listing_functions(linked, make_file):
    store = linked
    store.log_artifact(str(make_file("rows")), name="rows", type="dataset")
    store.link("rows:v0", "dataset/train")
    assert [r.name for r in store.registries()] == ["dataset", "model"]
    assert sorted(c.address for c in store.collections()) == ["dataset/train",
                                                              "model/first-collection"]
    assert [c.address for c in store.collections("model")] == ["model/first-collection"]
    assert sorted(v.address for v in store.versions()) == ["dataset/train:v0",
                                                           "model/first-collection:v0"]
    assert sorted(a.name for a in store.artifacts()) == ["gemma-finetuned", "rows"]
    with pytest.raises(NotFound):
        store.collections("nope")


def test_history_of_collection_alias_and_artifact(linked, store_path, make_file):
    store = linked
    store.log_artifact(str(make_file("v1 weights")), name="gemma-finetuned", type="model")
    store.link("gemma-finetuned:v1", "model/first-collection")
    store.set_alias("model/first-collection:v1", "production")
    entries = store.history("model/first-collection")
    ops = [(e.op, e.target, e.before, e.after) for e in entries]
    assert ops[0] == ("alias.set", "model/first-collection:production", "v0", "v1")
    assert ("link", "model/first-collection:v1", None, "gemma-finetuned:v1") in ops
    assert ("link", "model/first-collection:v0", None, "gemma-finetuned:v0") in ops
    assert all(e.actor == ACTOR_EMAIL for e in entries)
    assert all(len(e.commit) == 40 for e in entries)
    alias_hist = store.history("model/first-collection:production")
    assert [(e.before, e.after) for e in alias_hist] == [("v0", "v1"), (None, "v0")]
    art_hist = store.history("gemma-finetuned")
    assert [e.after for e in art_hist if e.op == "log"] == ["gemma-finetuned:v1",
                                                            "gemma-finetuned:v0"]
    limited = store.history("model/first-collection", limit=1)
    assert len(limited) == 1 and limited[0].op == "alias.set"


def test_history_records_other_actor(linked, monkeypatch):
    monkeypatch.setenv("CANONRY_ACTOR", "Bob <bob@example.com>")
    bob_store = canonry.open(linked.path)
    bob_store.set_alias("model/first-collection:v0", "staging")
    entries = bob_store.history("model/first-collection")
    assert entries[0].actor == "bob@example.com"
    assert entries[-1].actor == ACTOR_EMAIL


def test_download_restores_files_and_verifies(store, model_dir, tmp_path):
    store.log_artifact(str(model_dir), name="ckpt", type="model")
    store.link("ckpt:v0", "model/c", aliases=["production"])
    out = tmp_path / "out"
    v = store.download("model/c:production", str(out))
    assert v.address == "ckpt:v0"
    for rel in ("config.json", "weights.bin", "sub/tokenizer.txt"):
        assert (out / rel).read_bytes() == (model_dir / rel).read_bytes()
    out2 = tmp_path / "out2"
    store.download("ckpt:latest", str(out2))
    assert (out2 / "weights.bin").read_bytes() == (model_dir / "weights.bin").read_bytes()
    with pytest.raises(InvalidInput):
        store.download("model/c", str(tmp_path / "out3"))


def test_download_detects_corrupt_blob(store, model_file, tmp_path):
    v = store.log_artifact(str(model_file), name="gem", type="model")
    blob = store.blobs.path(v.files[0]["sha256"])
    os.chmod(blob, 0o644)
    with open(blob, "wb") as f:
        f.write(b"tampered")
    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match="corrupt"):
        store.download("gem:v0", str(out))
    assert not (out / "my_model.txt").exists()  # files appear only once verified
    os.unlink(blob)
    with pytest.raises(IntegrityError, match="not in storage"):
        store.download("gem:v0", str(out))


# ---- transactions ------------------------------------------------------------------------------
def test_transaction_groups_operations_into_one_commit(store, store_path, make_file):
    for c in "abc":
        store.log_artifact(str(make_file(c)), name="gem", type="model")
    before = commit_count(store_path)
    with store.transaction(message="promote the gem series") as tx:
        tx.link("gem:v0", "model/c")
        tx.link("gem:v1", "model/c", aliases=["staging"])
        tx.link("gem:v2", "model/c")
        tx.set_alias("model/c:v2", "production")
        tx.tag("model/c", "curated")
    assert commit_count(store_path) == before + 1
    assert tx.commit == head_of(store_path)
    assert [r.version for r in tx.results[:3]] == ["v0", "v1", "v2"]
    assert store.collection("model/c").aliases == {"production": "v2", "staging": "v1",
                                                   "latest": "v2"}
    msg = git("-C", store_path, "log", "-1", "--format=%B")
    assert msg.splitlines()[0] == "promote the gem series"
    trailers = git("-C", store_path, "log", "-1", "--format=%(trailers:key=Canonry-Op,valueonly)")
    ops = [json.loads(t)["op"] for t in trailers.splitlines() if t.strip()]
    assert ops == ["link", "link", "alias.set", "link", "alias.set", "tag.add"]


def test_transaction_reads_its_own_writes(store, make_file):
    store.log_artifact(str(make_file("a")), name="gem", type="model")
    with store.transaction() as tx:
        tx.link("gem:v0", "model/c")
        ch = tx.set_alias("model/c:v0", "production")  # the collection exists only in tx
        assert ch.after == "v0"
    assert store.resolve("model/c:production").version == "v0"


def test_transaction_exception_writes_nothing(store, store_path, make_file):
    store.log_artifact(str(make_file("a")), name="gem", type="model")
    head = head_of(store_path)
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.link("gem:v0", "model/c", aliases=["production"])
        raise RuntimeError("changed my mind")
    assert head_of(store_path) == head
    with pytest.raises(NotFound):
        store.collection("model/c")
    # a failing operation inside the block aborts the whole transaction too
    with pytest.raises(ReservedAlias), store.transaction() as tx:
        tx.link("gem:v0", "model/c")
        tx.set_alias("model/c:v0", "latest")
    assert head_of(store_path) == head


def test_empty_transaction_makes_no_commit(store, store_path):
    head = head_of(store_path)
    with store.transaction(message="nothing") as tx:
        pass
    assert head_of(store_path) == head
    assert tx.commit == head


# ---- registries --------------------------------------------------------------------------------
def test_registry_create_and_edit(store, store_path):
    reg = store.create_registry("team", description="Team models", types=["model"])
    assert reg.types == ["model"] and reg.visibility == "restricted"
    reg = store.edit_registry("team", add_types=["dataset"], visibility="organization")
    assert reg.types == ["model", "dataset"] and reg.visibility == "organization"
    head = head_of(store_path)
    with pytest.raises(InvalidInput, match="never shrink"):
        store.edit_registry("team", types=["dataset"])
    assert head_of(store_path) == head
    reg = store.edit_registry("team", add_types=["all"])
    assert reg.types == "all"
    with pytest.raises(InvalidInput):
        store.edit_registry("team", types=["model"])
    with pytest.raises(InvalidInput, match="already exists"):
        store.create_registry("team")
    with pytest.raises(InvalidInput, match="visibility"):
        store.create_registry("other", visibility="public")


def test_registry_all_types_accepts_anything(store, make_file):
    store.create_registry("misc")
    store.log_artifact(str(make_file("x")), name="thing", type="prompt")
    assert store.link("thing:v0", "misc/prompts").version == "v0"
    with pytest.raises(TypeNotAccepted):
        store.link("thing:v0", "model/prompts")


def test_errors_are_canonry_errors(store):
    with pytest.raises(CanonryError):
        store.resolve("model/none")


def test_collection_named_like_a_store_file_cannot_break_the_registry(store, store_path,
                                                                      model_file):
    """`registry.yaml` is a valid name by the regex, but as a collection it would turn the
    registry's own registry.yaml into a directory. It must be refused, the store untouched."""
    store.log_artifact(str(model_file), name="gem", type="model")
    head = head_of(store_path)
    with pytest.raises(CanonryError):
        store.link("gem:v0", "model/registry.yaml")
    assert head_of(store_path) == head
    assert [r.name for r in canonry.open(str(store_path)).registries()] == ["dataset", "model"]


def test_history_of_removed_alias_and_unlinked_version(store, make_file):
    for c in "ab":
        store.log_artifact(str(make_file(c)), name="gem", type="model")
    store.link("gem:v0", "model/c", aliases=["production"])
    store.link("gem:v1", "model/c")
    store.set_alias("model/c:v1", "production")
    store.remove_alias("model/c", "production")
    store.unlink("model/c:v0")
    alias_hist = store.history("model/c:production")
    assert [(e.op, e.before, e.after) for e in alias_hist] == [
        ("alias.rm", "v1", None), ("alias.set", "v0", "v1"), ("alias.set", None, "v0")]
    link_hist = store.history("model/c:v0")
    assert next((e.op, e.before, e.after) for e in link_hist) == ("unlink", "gem:v0", None)
    ops = [e.op for e in link_hist]
    assert ops.count("link") == 1 and ops.count("unlink") == 1
    assert ("alias.set", None, "v0") in [(e.op, e.before, e.after) for e in link_hist]


def test_transaction_message_is_one_line_subject(store, store_path, make_file):
    store.log_artifact(str(make_file("a")), name="gem", type="model")
    with store.transaction(message="promote\nfor the   release") as tx:
        tx.link("gem:v0", "model/c")
    assert git("-C", store_path, "log", "-1", "--format=%s").strip() == "promote for the release"
    body = git("-C", store_path, "log", "-1", "--format=%b")
    assert "- link gem:v0 -> model/c as v0" in body


def test_unicode_description_and_metadata_round_trip(store, store_path, make_file):
    v = store.log_artifact(str(make_file("a")), name="gem", type="model",
                           description="modèle fine-tuné 🚀", metadata={"note": "日本語"})
    again = canonry.open(str(store_path)).resolve(v.address)
    assert again.description == "modèle fine-tuné 🚀" and again.metadata == {"note": "日本語"}
    assert fsck_ok(store_path)


def fsck_ok(path) -> bool:
    from conftest import fsck

    return fsck(path).returncode == 0


def test_blob_storage_location_is_configurable(store_path, tmp_path, make_file, monkeypatch):
    canonry.init(str(store_path))
    shared = tmp_path / "shared-blobs"
    git("-C", store_path, "config", "canonry.blobs", str(shared))
    store = canonry.open(str(store_path))
    v = store.log_artifact(str(make_file(b"payload")), name="gem", type="model")
    assert (shared / v.files[0]["sha256"][:2] / v.files[0]["sha256"][2:]).is_file()
    env_dir = tmp_path / "env-blobs"
    monkeypatch.setenv("CANONRY_BLOBS", str(env_dir))
    store2 = canonry.open(str(store_path))
    v2 = store2.log_artifact(str(make_file(b"other payload")), name="gem", type="model")
    assert (env_dir / v2.files[0]["sha256"][:2] / v2.files[0]["sha256"][2:]).is_file()


# ---- closing ----------------------------------------------------------------------------------
def test_a_script_that_never_closes_its_store_exits_quietly(store, store_path, model_file):
    """dulwich objects collected during interpreter shutdown used to print
    "Exception ignored in … __del__" tracebacks after a perfectly fine script."""
    import subprocess
    import sys

    script = ("import canonry, sys\n"
              "s = canonry.open(sys.argv[1])\n"
              "v = s.log_artifact(sys.argv[2], name='quiet', type='model')\n"
              "s.link(v.address, 'model/quiet', aliases=['production'])\n"
              "print(s.resolve('model/quiet:production').artifact)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(store_path), str(model_file)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "quiet:v0"
    assert proc.stderr == ""


def test_store_as_context_manager_closes_and_stays_usable(store, store_path, model_file):
    with canonry.open(str(store_path)) as s:
        v = s.log_artifact(str(model_file), name="ctx", type="model")
    # closed: open packs released, pending cache entries written; reading again reopens
    assert s.storage.repo.object_store._pack_cache == {}
    assert s.resolve(v.address).digest == v.digest
    s.close()
    s.close()  # closing twice is harmless


def test_transaction_as_another_author_at_another_time(store, store_path, make_file):
    """Store.transaction(actor=, at=) replays a change made elsewhere (importers): records and
    the commit's author say who and when; the committer is the acting identity."""
    from canonry.git.storage import Identity

    bea = Identity("Bea", "bea@example.com")
    with store.transaction(actor=bea, at=1700000000) as tx:
        v = tx.log_artifact(str(make_file("m.txt", "x")), name="m", type="model")
        tx.link(v.address, "model/m")
    link = store.versions("model/m")[0]
    av = store.artifact_version("m:v0")
    assert (av.created_by, av.created_at) == ("bea@example.com", "2023-11-14T22:13:20Z")
    assert (link.linked_by, link.linked_at) == ("bea@example.com", "2023-11-14T22:13:20Z")
    assert av.producer["actor"] == "bea@example.com"
    assert git("-C", store_path, "log", "-1", "--format=%an <%ae> %at|%ce", "main").strip() == \
        f"Bea <bea@example.com> 1700000000|{ACTOR_EMAIL}"
    assert store.history("model/m:v0")[0].actor == "bea@example.com"
    assert store.validate().ok
