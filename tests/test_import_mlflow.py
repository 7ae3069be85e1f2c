"""`canonry import mlflow`: a real MLflow registry (SQLite tracking store, files on disk, the
real MlflowClient) brought into a real store; twice adds nothing; --dry-run changes nothing."""
from __future__ import annotations

import http.server
import sqlite3
import threading
from functools import partial

import pytest
import yaml
from conftest import ACTOR_EMAIL, commit_count, git, head_of, show_file

pytest.importorskip("mlflow", reason="mlflow is not installed (pip install mlflow-skinny): the MLflow importer is "
                                     "tested against the real client only")

from mlflow.tracking import MlflowClient

CAROL = "carol@example.com"


@pytest.fixture
def tracking(tmp_path):
    """A real MLflow registry: model 'churn model' with three versions from three runs (the third
    with the same files as the first), alias champion on version 2, tags and descriptions; and
    an empty model 'empty'. MLflow's SQLite store records no user for a version (a server with
    authentication does): the versions get CAROL in its own table, as such a server leaves it."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("churn", artifact_location=(tmp_path / "mlartifacts").as_uri())
    client.create_registered_model("churn model", tags={"team": "ml"}, description="predicts churn")
    client.create_registered_model("empty")
    for i, weights in enumerate(["w-a", "w-b", "w-a"]):
        run = client.create_run(exp, run_name=f"run{i}")
        client.log_metric(run.info.run_id, "auc", 0.8 + i / 100)
        client.log_param(run.info.run_id, "lr", str(i))
        src = tmp_path / f"src{i}"
        (src / "sub").mkdir(parents=True)
        (src / "model.pkl").write_text(weights)
        (src / "sub" / "conf.json").write_text("{}")
        client.log_artifacts(run.info.run_id, str(src), "model")
        client.set_terminated(run.info.run_id)
        client.create_model_version("churn model", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id,
                                    description=f"version {i + 1}", tags={"stage_note": f"n{i}"})
    client.set_registered_model_alias("churn model", "champion", "2")
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        db.execute("UPDATE model_versions SET user_id = ?", (CAROL,))
    return uri, client


def _import(cli, uri, *args):
    return cli("import", "mlflow", "--tracking-uri", uri, *args)


def test_models_become_collections_versions_links_in_order(store, store_path, cli, tracking, tmp_path):
    uri, client = tracking
    result = _import(cli, uri)
    assert result.exit_code == 0, result
    coll = store.collection("model/churn-model")
    assert coll.description == "predicts churn"
    assert coll.metadata == {"mlflow.name": "churn model", "team": "ml"}
    assert store.collection("model/empty").versions == 0
    links = store.versions("model/churn-model")
    assert [v.version for v in links] == ["v0", "v1", "v2"]
    numbers = [store.artifact_version(v.artifact).metadata["mlflow"]["version"] for v in links]
    assert numbers == [1, 2, 3]
    # version 3 has version 1's files, but is its own version with its own run
    third = store.artifact_version(links[2].artifact)
    assert third.digest == store.artifact_version(links[0].artifact).digest
    assert third.metrics == {"auc": pytest.approx(0.82)}
    mv = client.get_model_version("churn model", "3")
    assert third.metadata["mlflow"]["run_id"] == mv.run_id
    assert third.metadata["mlflow"]["params"] == {"lr": "2"}
    assert third.metadata["mlflow"]["tags"] == {"stage_note": "n2"}
    assert links[2].description == "version 3"
    assert coll.aliases["champion"] == "v1"
    # the files were copied into the store's storage: get restores them
    out = tmp_path / "out"
    assert cli("get", "model/churn-model:champion", "--to", out).exit_code == 0
    assert (out / "model.pkl").read_text() == "w-b"
    assert (out / "sub" / "conf.json").read_text() == "{}"
    assert store.validate().ok


def test_original_users_and_times_are_kept(store, store_path, cli, tracking):
    uri, client = tracking
    assert _import(cli, uri).exit_code == 0
    mv = client.get_model_version("churn model", "2")
    import time
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mv.creation_timestamp // 1000))
    link = store.versions("model/churn-model")[1]
    av = store.artifact_version(link.artifact)
    assert (av.created_by, av.created_at) == (CAROL, when)
    assert (link.linked_by, link.linked_at) == (CAROL, when)
    rm = client.get_registered_model("churn model")
    made = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(rm.creation_timestamp // 1000))
    assert store.collection("model/churn-model").created_at == made
    # the commit: authored by the MLflow user at the version's time, committed by whoever imported
    log = git("-C", store_path, "log", "--format=%ae|%at|%ce|%s", "main").splitlines()
    version_2 = next(line for line in log if line.endswith("import MLflow churn model version 2"))
    assert version_2.split("|")[:3] == [CAROL, str(mv.creation_timestamp // 1000), ACTOR_EMAIL]
    history = store.history("model/churn-model:v1")
    assert history[-1].actor == CAROL and history[-1].time == when


def test_twice_adds_nothing(store, store_path, cli, tracking):
    uri, _ = tracking
    assert _import(cli, uri).exit_code == 0
    head = head_of(store_path)
    again = _import(cli, uri)
    assert again.exit_code == 0, again
    assert head_of(store_path) == head
    assert again.stdout == ""
    assert "imported 0 collections, 0 versions, 0 aliases" in again.stderr


def test_new_versions_and_a_moved_alias_are_brought_in_on_the_next_run(store, cli, tracking, tmp_path):
    uri, client = tracking
    assert _import(cli, uri).exit_code == 0
    run = client.create_run(client.get_experiment_by_name("churn").experiment_id)
    (tmp_path / "src4").mkdir()
    (tmp_path / "src4" / "model.pkl").write_text("w-d")
    client.log_artifacts(run.info.run_id, str(tmp_path / "src4"), "model")
    client.create_model_version("churn model", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("churn model", "champion", "4")
    client.update_registered_model("churn model", description="predicts churn better")
    result = _import(cli, uri, "--dry-run")
    assert result.stdout.splitlines() == [
        "update collection model/churn-model: description",
        f"log churn-model (copy {tmp_path}/mlartifacts/{run.info.run_id}/artifacts/model) and link -> "
        "model/churn-model (MLflow churn model version 4)",
        "set alias champion on model/churn-model -> MLflow version 4"]
    assert _import(cli, uri).exit_code == 0
    coll = store.collection("model/churn-model")
    assert (coll.aliases["champion"], coll.description) == ("v3", "predicts churn better")


def test_dry_run_prints_one_line_per_action_and_changes_nothing(store, store_path, cli, tracking):
    uri, _ = tracking
    head = head_of(store_path)
    result = _import(cli, uri, "--dry-run")
    assert result.exit_code == 0, result
    lines = result.stdout.splitlines()
    assert lines[0] == "create collection model/churn-model (MLflow registered model 'churn model')"
    assert [line.split(" (")[0] for line in lines[1:4]] == ["log churn-model"] * 3
    assert lines[4:] == ["set alias champion on model/churn-model -> MLflow version 2",
                         "create collection model/empty (MLflow registered model 'empty')"]
    assert "would import 2 collections, 3 versions, 1 alias" in result.stderr
    assert head_of(store_path) == head


def test_json_summary(store, cli, tracking):
    uri, _ = tracking
    data = _import(cli, uri, "--json").json()
    assert (data["collections"], data["versions"], data["aliases"], data["dry_run"]) == (2, 3, 1, False)
    assert len(data["actions"]) == 6


@pytest.fixture
def http_file(tmp_path):
    """A file served over http by a real server on loopback: an artifact URI canonry does not copy."""
    root = tmp_path / "served"
    root.mkdir()
    (root / "model.bin").write_bytes(b"remote weights")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/model.bin"
    server.shutdown()


def test_files_not_on_a_local_path_are_recorded_as_references(store, cli, tmp_path, http_file):
    uri = f"sqlite:///{tmp_path}/remote.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("remote")
    client.create_model_version("remote", http_file)
    result = _import(cli, uri)
    assert result.exit_code == 0, result
    av = store.artifact_version(store.versions("model/remote")[0].artifact)
    assert [(f["path"], f["ref"]) for f in av.files] == [("model.bin", http_file)]
    assert _import(cli, uri).stdout == ""  # and found again the next time


def test_missing_files_are_skipped_with_the_reason(store, cli, tmp_path):
    uri = f"sqlite:///{tmp_path}/gone.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("gone")
    client.create_model_version("gone", (tmp_path / "nowhere").as_uri())
    result = _import(cli, uri)
    assert result.exit_code == 0, result
    assert "skipped MLflow gone version 1: its files at" in result.stderr
    assert store.collection("model/gone").versions == 0


def test_authors_without_the_role_refuse_the_import_before_anything_is_written(store, store_path, cli, tracking):
    uri, _ = tracking
    store.create_registry("private", types=["model"])  # restricted: carol is not a member
    head = head_of(store_path)
    result = _import(cli, uri, "--registry", "private")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"canonry: error: {CAROL} may not link versions in registry private")
    assert len(result.stderr.splitlines()) == 1
    assert head_of(store_path) == head
    store.set_member("private", CAROL, "member")
    assert _import(cli, uri, "--registry", "private").exit_code == 0
    assert store.validate().ok


def test_bad_tracking_uri_and_registry_are_one_line_errors(store, store_path, cli, tracking):
    uri, _ = tracking
    head = head_of(store_path)
    for args, exit_code in (((uri, "--registry", "nope"), 1), (("bogus://x",), 1)):
        result = _import(cli, *args)
        assert result.exit_code == exit_code, result
        assert result.stderr.startswith("canonry: error: ") and len(result.stderr.splitlines()) == 1
    assert head_of(store_path) == head
    assert commit_count(store_path) == 1
    assert yaml.safe_load(show_file(store_path, "main:canonry.yaml"))["format"] == 1


def test_a_version_with_the_same_files_as_the_one_before_is_kept_as_that_version(store, store_path, cli, tmp_path):
    uri = f"sqlite:///{tmp_path}/twice.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    src = tmp_path / "twice"
    src.mkdir()
    (src / "model.pkl").write_text("same")
    client.create_registered_model("twice")
    client.create_model_version("twice", src.as_uri())
    client.create_model_version("twice", src.as_uri())
    client.set_registered_model_alias("twice", "best", "2")
    result = _import(cli, uri)
    assert result.exit_code == 0, result
    assert "skipped MLflow twice version 2: the same files as MLflow version 1" in result.stderr
    coll = store.collection("model/twice")
    assert (coll.versions, coll.aliases["best"]) == (1, "v0")
    head = head_of(store_path)
    again = _import(cli, uri)
    assert (again.stdout, head_of(store_path)) == ("", head)
