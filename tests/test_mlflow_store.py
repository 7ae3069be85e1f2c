"""MLflow's own client on a canonry store (canonry/interop/mlflow_store.py), in process, on real
stores in tmp_path: `mlflow.set_registry_uri("canonry:///…")` and MLflow code as it is written."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed (the `test` extra installs mlflow-skinny)")

from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from canonry.errors import InvalidInput  # noqa: E402
from canonry.interop.mlflow_store import (  # noqa: E402
    CanonryRegistryStore,
    link_version,
    mlflow_version,
    parse_uri,
)
from tests.conftest import commit_count, git, head_of  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _canonry_scheme(tmp_path, monkeypatch):
    """MLflow finds the store through canonry's entry point when canonry is installed (CI's
    `pip install -e .[test]`); run from a source tree (PYTHONPATH=src) it is registered here.
    MlflowClient() opens a tracking store too: a folder (mlflow-skinny has no SQL backend), which
    MLflow 3.x allows only when told."""
    from importlib.metadata import entry_points

    from mlflow.tracking._model_registry import utils

    if not any(ep.name == "canonry" for ep in entry_points(group="mlflow.model_registry_store")):
        utils._get_store_registry().register("canonry", CanonryRegistryStore)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    yield
    mlflow.set_registry_uri("")


@pytest.fixture
def uri(store, store_path):
    u = f"canonry://{store_path}"
    mlflow.set_registry_uri(u)
    return u


def pyfunc():
    """mlflow.pyfunc, which needs pandas (mlflow-skinny alone does not bring it)."""
    return pytest.importorskip("mlflow.pyfunc", reason="mlflow.pyfunc needs pandas (the test extra installs it)")


def add_n(n: int):
    """A tiny PythonModel: adds n to each input."""
    class AddN(pyfunc().PythonModel):
        def predict(self, context, model_input, params=None):
            return [x + n for x in model_input]

    return AddN()


def saved_model(tmp_path, n: int) -> str:
    """A real MLflow model folder (MLmodel, the pickled model, its environment files)."""
    path = tmp_path / f"add{n}"
    pyfunc().save_model(str(path), python_model=add_n(n))
    return str(path)


def model_folder(tmp_path, n: int) -> str:
    """A folder of files to register: the registry keeps any files; only loading needs a real model."""
    path = tmp_path / f"weights{n}"
    path.mkdir()
    (path / "weights.bin").write_text(f"weights {n}\n")
    (path / "config.json").write_text(json.dumps({"n": n}))
    return str(path)


def ops_of_head(store_path) -> list[str]:
    trailers = git("-C", store_path, "log", "-1", "--format=%(trailers:key=Canonry-Op,valueonly)")
    return [json.loads(t)["op"] for t in trailers.splitlines() if t.strip()]


def code_of(call) -> str:
    with pytest.raises(MlflowException) as info:
        call()
    return info.value.error_code


# ---- the round trip -------------------------------------------------------------------------------
def test_pyfunc_round_trip_through_canonry(uri, store, store_path, tmp_path):
    client = MlflowClient()
    folder = saved_model(tmp_path, 10)
    before = commit_count(store_path)
    rm = client.create_registered_model("adder", tags={"team": "risk"}, description="adds ten")
    assert commit_count(store_path) == before + 1 and ops_of_head(store_path) == ["collection.create"]

    mv = client.create_model_version("adder", source=folder, run_id="r123", tags={"stage": "candidate"},
                                     description="first")
    # the files logged and linked: one commit, both operations in its trailers
    assert commit_count(store_path) == before + 2 and ops_of_head(store_path) == ["log", "link"]
    assert git("-C", store_path, "log", "-1", "--format=%s").strip() == "register a new version of model/adder (MLflow)"
    assert (mv.name, mv.version, mv.run_id, mv.description, mv.status) == ("adder", "1", "r123", "first", "READY")
    assert mv.tags == {"stage": "candidate"} and mv.source == folder

    client.set_registered_model_alias("adder", "champion", "1")
    assert ops_of_head(store_path) == ["alias.set"]
    model = pyfunc().load_model("models:/adder@champion")
    assert list(model.predict([1, 2])) == [11, 12]

    # the same state, read through canonry
    link = store.resolve("model/adder:champion")
    assert link.version == "v0" and link.description == "first"
    assert {f["path"] for f in link.files} >= {"MLmodel", "python_model.pkl"}
    assert link.metadata["mlflow"] == {"source": folder, "run_id": "r123", "tags": {"stage": "candidate"}}
    coll = store.collection("model/adder")
    assert (coll.description, coll.metadata, rm.tags) == ("adds ten", {"team": "risk"}, {"team": "risk"})


def test_register_model_numbers_versions_from_one(uri, store, tmp_path):
    first = mlflow.register_model(saved_model(tmp_path, 1), "adder")
    second = mlflow.register_model(saved_model(tmp_path, 2), "adder")  # the model exists: a new version
    assert (first.version, second.version) == ("1", "2")
    assert [v.version for v in store.versions("model/adder")] == ["v0", "v1"]
    client = MlflowClient()
    assert [mv.version for mv in client.get_latest_versions("adder")] == ["2"]
    assert client.get_latest_versions("adder", stages=["Production"]) == []
    assert client.get_model_version("adder", "1").source.endswith("add1")
    assert list(pyfunc().load_model("models:/adder/1").predict([0])) == [1]
    assert list(pyfunc().load_model("models:/adder/latest").predict([0])) == [2]
    assert (link_version("2"), mlflow_version("v1")) == ("v1", "2")


def test_log_model_and_runs_uri_register_into_canonry(uri, store):
    """MLflow's usual flow: log a model in a run (tracking stays MLflow's), register it in the same
    call, or later from its runs:/ URI (fetched through MLflow, then copied into canonry's storage)."""
    with mlflow.start_run() as run:
        where = {"name": "m"} if int(mlflow.__version__.split(".")[0]) >= 3 else {"artifact_path": "m"}
        info = pyfunc().log_model(python_model=add_n(5), registered_model_name="adder", **where)
    assert str(getattr(info, "registered_model_version", 1)) == "1"  # MLflow 3 says; 2.x does not
    assert [mv.version for mv in MlflowClient().search_model_versions("name = 'adder'")] == ["1"]
    later = mlflow.register_model(f"runs:/{run.info.run_id}/m", "adder-copy")
    assert later.version == "1"
    for name in ("adder", "adder-copy"):
        assert list(pyfunc().load_model(f"models:/{name}/1").predict([1])) == [6]
        assert {f["path"] for f in store.resolve(f"model/{name}:v0").files} >= {"MLmodel", "python_model.pkl"}


def test_file_uri_source_and_identical_content(uri, store, tmp_path):
    client = MlflowClient()
    client.create_registered_model("adder")
    folder = model_folder(tmp_path, 3)
    mv = client.create_model_version("adder", source=Path(folder).as_uri())
    assert mv.version == "1"
    # canonry keeps one version of identical content: registering it again gives that version
    assert client.create_model_version("adder", source=folder).version == "1"
    assert len(store.versions("model/adder")) == 1


# ---- aliases, tags, descriptions -----------------------------------------------------------------
def test_aliases(uri, store, tmp_path):
    client = MlflowClient()
    client.create_registered_model("adder")
    for n in (1, 2):
        client.create_model_version("adder", source=model_folder(tmp_path, n))
    client.set_registered_model_alias("adder", "champion", "1")
    client.set_registered_model_alias("adder", "champion", "2")  # an alias moves
    client.set_registered_model_alias("adder", "challenger", "1")
    assert client.get_model_version_by_alias("adder", "champion").version == "2"
    assert client.get_registered_model("adder").aliases == {"champion": "2", "challenger": "1"}
    assert store.collection("model/adder").aliases == {"champion": "v1", "challenger": "v0", "latest": "v1"}
    assert client.get_model_version("adder", "1").aliases == ["challenger"]
    client.delete_registered_model_alias("adder", "champion")
    assert code_of(lambda: client.get_model_version_by_alias("adder", "champion")) == "RESOURCE_DOES_NOT_EXIST"
    assert ops_of_head(store.path) == ["alias.rm"]


def test_tags_and_descriptions_of_registered_models(uri, store, store_path):
    client = MlflowClient()
    client.create_registered_model("adder")
    client.set_registered_model_tag("adder", "team", "risk")
    client.set_registered_model_tag("adder", "mlflow.owner", "ada")
    client.update_registered_model("adder", description="adds numbers")
    assert ops_of_head(store_path) == ["collection.edit"]
    rm = client.get_registered_model("adder")
    assert (rm.tags, rm.description) == ({"team": "risk", "mlflow.owner": "ada"}, "adds numbers")
    client.delete_registered_model_tag("adder", "team")
    head = head_of(store_path)
    client.delete_registered_model_tag("adder", "team")  # gone already: nothing to commit
    assert head_of(store_path) == head
    assert store.collection("model/adder").metadata == {"mlflow.owner": "ada"}


def test_rename_and_delete(uri, store, tmp_path):
    client = MlflowClient()
    client.create_registered_model("adder")
    client.create_model_version("adder", source=model_folder(tmp_path, 1))
    client.create_model_version("adder", source=model_folder(tmp_path, 2))
    client.delete_model_version("adder", "1")
    assert [mv.version for mv in client.search_model_versions("name = 'adder'")] == ["2"]
    client.rename_registered_model("adder", "summer")
    assert store.collection("model/summer").versions == 1
    client.delete_registered_model("summer")
    assert code_of(lambda: client.get_registered_model("summer")) == "RESOURCE_DOES_NOT_EXIST"


# ---- search ---------------------------------------------------------------------------------------
def test_search_maps_mlflow_filters(uri, store, tmp_path):
    client = MlflowClient()
    for name, team in (("fraud-a", "risk"), ("fraud-b", "ops"), ("churn", "risk")):
        client.create_registered_model(name, tags={"team": team})
    client.create_model_version("fraud-a", source=model_folder(tmp_path, 1), run_id="run1", tags={"data": "v5"})
    client.create_model_version("fraud-a", source=model_folder(tmp_path, 2), run_id="run2", tags={"data": "v6"})
    client.create_model_version("churn", source=model_folder(tmp_path, 3), run_id="run1")

    names = lambda found: [rm.name for rm in found]  # noqa: E731
    assert names(client.search_registered_models()) == ["churn", "fraud-a", "fraud-b"]
    assert names(client.search_registered_models("name LIKE 'fraud%'")) == ["fraud-a", "fraud-b"]
    assert names(client.search_registered_models("name ILIKE 'FRAUD-_'")) == ["fraud-a", "fraud-b"]
    assert names(client.search_registered_models("tags.team = 'risk'")) == ["churn", "fraud-a"]
    assert names(client.search_registered_models("name != 'churn' AND tags.team = 'risk'")) == ["fraud-a"]
    assert names(client.search_registered_models(order_by=["name DESC"])) == ["fraud-b", "fraud-a", "churn"]
    page = client.search_registered_models(max_results=2)
    assert names(page) == ["churn", "fraud-a"] and page.token
    assert names(client.search_registered_models(max_results=2, page_token=page.token)) == ["fraud-b"]

    versions = lambda found: [(mv.name, mv.version) for mv in found]  # noqa: E731
    assert versions(client.search_model_versions("name = 'fraud-a'")) == [("fraud-a", "2"), ("fraud-a", "1")]
    assert versions(client.search_model_versions("run_id = 'run1'")) == [("churn", "1"), ("fraud-a", "1")]
    assert versions(client.search_model_versions("tags.data = 'v6'")) == [("fraud-a", "2")]
    assert versions(client.search_model_versions("name = 'fraud-a' AND version_number > 1")) == [("fraud-a", "2")]
    assert versions(client.search_model_versions("run_id IN ('run2', 'run3')")) == [("fraud-a", "2")]
    assert versions(client.search_model_versions("name LIKE 'fraud%'", order_by=["version_number ASC"])) \
        == [("fraud-a", "1"), ("fraud-a", "2")]
    assert code_of(lambda: client.search_model_versions("name = 'x'", order_by=["size"])) == "INVALID_PARAMETER_VALUE"


# ---- refusals -------------------------------------------------------------------------------------
def test_protected_alias_is_permission_denied(uri, store, store_path, tmp_path, monkeypatch):
    client = MlflowClient()
    client.create_registered_model("adder")
    client.create_model_version("adder", source=model_folder(tmp_path, 1))
    store.protect_alias("model", "production")
    monkeypatch.setenv("CANONRY_ACTOR", "Bob <bob@example.com>")  # a member of `model`, not an admin
    bob = MlflowClient(registry_uri=f"{uri}?branch=main")  # a URI of its own: MLflow caches stores by URI
    head = head_of(store_path)
    assert code_of(lambda: bob.set_registered_model_alias("adder", "production", "1")) == "PERMISSION_DENIED"
    assert head_of(store_path) == head
    bob.set_registered_model_alias("adder", "staging", "1")  # an ordinary alias: a member may
    assert git("-C", store_path, "log", "-1", "--format=%ae").strip() == "bob@example.com"
    client.set_registered_model_alias("adder", "production", "1")  # Ada created the store: an admin


def test_policy_refusal_and_roles_are_permission_denied(uri, store, store_path, tmp_path, monkeypatch):
    store.create_registry("secure", types=["model"])  # restricted: only its members
    MlflowClient(registry_uri=f"{uri}?registry=secure").create_registered_model("adder")
    monkeypatch.setenv("CANONRY_ACTOR", "Eve <eve@example.com>")
    eve = MlflowClient(registry_uri=f"{uri}?registry=secure&branch=main")
    head = head_of(store_path)
    assert code_of(lambda: eve.create_registered_model("mine")) == "PERMISSION_DENIED"
    assert code_of(lambda: eve.create_model_version("adder", source=model_folder(tmp_path, 1))) == "PERMISSION_DENIED"
    assert head_of(store_path) == head


def test_errors_become_mlflow_error_codes(uri, store, tmp_path):
    client = MlflowClient()
    assert code_of(lambda: client.get_registered_model("nope")) == "RESOURCE_DOES_NOT_EXIST"
    assert code_of(lambda: client.create_model_version("nope", source=str(tmp_path))) == "RESOURCE_DOES_NOT_EXIST"
    assert code_of(lambda: client.create_registered_model("two words")) == "INVALID_PARAMETER_VALUE"
    client.create_registered_model("adder")
    assert code_of(lambda: client.create_registered_model("adder")) == "RESOURCE_ALREADY_EXISTS"
    assert code_of(lambda: client.create_model_version("adder", source=str(tmp_path / "missing"))) \
        == "INVALID_PARAMETER_VALUE"
    client.create_model_version("adder", source=model_folder(tmp_path, 1))
    assert code_of(lambda: client.get_model_version("adder", "2")) == "RESOURCE_DOES_NOT_EXIST"
    assert code_of(lambda: client.get_model_version("adder", "0")) == "INVALID_PARAMETER_VALUE"
    # stages are refused, pointing at aliases; a version's tags and note are fixed when it is made
    with pytest.raises(MlflowException, match="set_registered_model_alias"):
        client.transition_model_version_stage("adder", "1", "Production")
    assert code_of(lambda: client.set_model_version_tag("adder", "1", "k", "v")) == "INVALID_PARAMETER_VALUE"
    assert code_of(lambda: client.update_model_version("adder", "1", "new")) == "INVALID_PARAMETER_VALUE"


# ---- the URI and the entry point ------------------------------------------------------------------
def test_registry_uri_forms(store, store_path):
    assert parse_uri(f"canonry://{store_path}") == (str(store_path), "model", None)
    assert parse_uri(f"canonry://{store_path}?registry=dataset&branch=dev") == (str(store_path), "dataset", "dev")
    assert parse_uri("canonry:rel/store") == ("rel/store", "model", None)
    with pytest.raises(InvalidInput, match="on this machine"):
        parse_uri("canonry://git.example.com/store")
    with pytest.raises(InvalidInput, match="unknown parameter 'regsitry'"):
        parse_uri(f"canonry://{store_path}?regsitry=model")
    for bad, code in ((f"canonry://{store_path}?registry=nope", "RESOURCE_DOES_NOT_EXIST"),
                      (f"canonry://{store_path.parent / 'elsewhere'}", "RESOURCE_DOES_NOT_EXIST"),
                      ("canonry://host/x", "INVALID_PARAMETER_VALUE")):
        with pytest.raises(MlflowException) as info:
            CanonryRegistryStore(bad)
        assert info.value.error_code == code


def test_entry_point_is_declared():
    text = (ROOT / "pyproject.toml").read_text()
    section = re.search(r'\[project\.entry-points\."mlflow\.model_registry_store"\]\n(.*?)\n', text)
    assert section and section.group(1) == 'canonry = "canonry.interop.mlflow_store:CanonryRegistryStore"'
