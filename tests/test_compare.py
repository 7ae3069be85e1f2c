"""`canonry compare`: every linked version with aliases and metrics, sorted by the chosen metric,
with a bar chart and a sparkline of it."""
from __future__ import annotations

import pytest
from conftest import assert_one_line_error

from canonry.query.compare import bar, sparkline


def _candidates(s, work):
    for i, (acc, loss) in enumerate([(0.81, 0.40), (0.93, 0.21), (0.88, 0.30), (None, 0.5)]):
        p = work / "files" / f"m{i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(str(i))
        metrics = {"loss": loss} if acc is None else {"accuracy": acc, "loss": loss}
        v = s.log_artifact(str(p), name="clf", type="model", metrics=metrics)
        s.link(v.address, "model/clf")
    s.set_alias("model/clf:v1", "production")
    s.set_alias("model/clf:v2", "staging")


@pytest.fixture
def candidates(from_template):
    return from_template("compare-candidates", _candidates)


def test_sorted_by_the_chosen_metric_best_first(candidates):
    r = candidates.compare("model/clf", metrics=["accuracy"])
    assert [v["version"] for v in r["versions"]] == ["v1", "v2", "v0", "v3"]  # v3 has no accuracy: last
    assert r["best"] == "model/clf:v1" and r["sort"] == "accuracy"
    assert r["versions"][0]["aliases"] == ["production"] and r["versions"][3]["aliases"] == ["latest"]
    assert r["trend"]["versions"] == ["v0", "v1", "v2", "v3"]
    assert r["trend"]["values"] == [0.81, 0.93, 0.88, None]


def test_ascending_for_losses(candidates):
    r = candidates.compare("model/clf", metrics=["loss", "accuracy"], ascending=True)
    assert [v["version"] for v in r["versions"]] == ["v1", "v2", "v0", "v3"]
    assert r["metrics"] == ["loss", "accuracy"] and r["best"] == "model/clf:v1"


def test_without_a_metric_all_metrics_by_version(candidates):
    r = candidates.compare("model/clf")
    assert [v["version"] for v in r["versions"]] == ["v0", "v1", "v2", "v3"]
    assert r["metrics"] == ["accuracy", "loss"] and r["sort"] is None and r["best"] is None


def test_chart_helpers():
    assert bar(None, 0, 1) == ""
    lengths = [len(bar(x, 0.8, 0.9, width=20)) for x in (0.8, 0.85, 0.9)]
    assert lengths[0] < lengths[1] < lengths[2] == 20
    assert bar(0.8, 0.8, 0.9)  # the lowest still shows a sliver
    assert sparkline([1, 2, 3, None, 2]) == "▁▅█ ▅"
    assert sparkline([5, 5]) == "▅▅" and sparkline([]) == "" and sparkline([None]) == ""


def test_cli_compare_text_with_chart(candidates, cli):
    r = cli("compare", "model/clf", "--metric", "accuracy")
    assert r.exit_code == 0, r
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["VERSION", "ARTIFACT", "ALIASES", "ACCURACY"]
    assert lines[1].startswith("v1") and "production" in lines[1] and "0.93" in lines[1]
    bars = [line.count("█") for line in lines[1:4]]
    assert bars[0] > bars[1] > bars[2]
    assert "accuracy by version (v0…v3):" in r.stdout and "best model/clf:v1" in r.stdout


def test_cli_compare_json_shape(candidates, cli):
    data = cli("compare", "model/clf", "--metric", "loss", "--asc", "--json").json()
    assert set(data) == {"collection", "metrics", "sort", "ascending", "versions", "best", "trend"}
    assert data["collection"] == "model/clf" and data["ascending"] is True
    v = data["versions"][0]
    assert set(v) == {"version", "address", "artifact", "aliases", "tags", "metrics", "created_at", "linked_at",
                      "linked_by"}  # linked_by: the web catalog shows who linked each version
    assert set(data["trend"]) == {"metric", "versions", "values", "sparkline"}


def test_compare_empty_collection(store, cli, make_file):
    v = store.log_artifact(str(make_file("x")), name="m", type="model")
    store.link(v.address, "model/c")
    store.unlink("model/c:v0")
    r = cli("compare", "model/c")
    assert r.exit_code == 0 and "has no linked versions" in r.stdout


@pytest.mark.parametrize("args, words", [
    (["model/nope"], ["model/nope"]),
    (["model/clf", "--metric", "f1"], ["f1", "accuracy, loss"]),
    (["model"], ["REGISTRY/COLLECTION"]),
])
def test_cli_compare_errors(candidates, cli, args, words):
    assert_one_line_error(cli("compare", *args), 1, contains=tuple(words))
