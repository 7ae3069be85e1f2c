"""Search: the filter language against a brute-force evaluation (`matches` of _query_helpers over
documents built from the store itself, not from the index) on random stores, with hypothesis; malformed
filters; the Store API and the `canonry search` command."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from _query_helpers import build_random_store, lookup, matches, reference_documents, vocabulary
from conftest import assert_one_line_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import canonry
from canonry.query.search import KINDS, FilterError, parse

SEEDS = (1, 2)

FIELDS = {
    "registries": ["name", "description", "visibility", "type", "types", "created_at", "updated_at",
                   "created_by"],
    "collections": ["name", "registry", "collection", "type", "description", "tags", "tag", "aliases", "alias",
                    "created_at", "updated_at", "created_by"],
    "versions": ["name", "registry", "collection", "version", "artifact", "type", "description", "note",
                 "digest", "tags", "tag", "aliases", "alias", "inputs", "created_at", "linked_at", "updated_at",
                 "created_by", "linked_by", "metadata.x", "metadata.y", "metadata.z", "metadata.n",
                 "metadata.x.y", "metadata.z.n", "metadata.y.x.z", "metadata.a", "metrics.acc", "metrics.loss",
                 "metrics.f1", "metrics.nope"],
}
TIME_FIELDS = {"created_at", "updated_at", "linked_at"}


def _random_store(from_template, seed: int):
    return from_template(f"search-random-{seed}", lambda s, work: build_random_store(s, work, seed, n_ops=35))


@pytest.fixture(params=SEEDS)
def random_store(request, from_template):
    return _random_store(from_template, request.param)


# ---- the reference documents are what search returns ---------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_index_documents_equal_documents_read_from_the_store(random_store, kind):
    assert random_store.search(None, kind=kind) == reference_documents(random_store, kind)


def test_filtered_api_equals_unfiltered_api_for_an_empty_filter(random_store):
    s = random_store
    assert [v.to_dict() for v in s.versions(filter={})] == [v.to_dict() for v in s.versions()]
    assert [c.to_dict() for c in s.collections(filter={})] == [c.to_dict() for c in s.collections()]
    assert [r.to_dict() for r in s.registries(filter={})] == [r.to_dict() for r in s.registries()]
    coll = s.collections()[0].address
    assert [v.to_dict() for v in s.versions(coll, filter={})] == [v.to_dict() for v in s.versions(coll)]
    reg = s.registries()[0].name
    assert [c.to_dict() for c in s.collections(reg, filter={})] == [c.to_dict() for c in s.collections(reg)]


# ---- hypothesis: the SQL translation against the reference evaluator -------------------------------------
def _scalars_at(doc, field):
    name = {"tag": "tags", "alias": "aliases", "types": "type"}.get(field, field)
    return lookup(doc, name)[1]


def field_values(docs, kind) -> dict:
    """For each field, the values it holds in these documents (what makes a filter selective)."""
    out = {}
    for field in FIELDS[kind]:
        vals = []
        for d in docs:
            for v in _scalars_at(d, field):
                if v not in vals and not (isinstance(v, float) and v != v):
                    vals.append(v)
        if field in TIME_FIELDS:
            vals += [v[:10] for v in vals if isinstance(v, str)]  # dates: normalized by the filter
        out[field] = vals
    return out


def _values(words, known):
    today = dt.date.today().isoformat()
    dates = ["2020-01-01", today, today + "T00:00:00Z", "2999-12-31T23:59", "2020-01-01T00:00:00+02:00"]
    anything = st.one_of(st.sampled_from(words), st.text(alphabet="abvy01-:_ ", max_size=3),
                         st.integers(-4, 4), st.sampled_from([0.5, 0.9, 0.95, -1.25, 1e10, 2.0, 3]),
                         st.booleans(), st.none(), st.sampled_from(dates))
    if not known:
        return anything
    return st.one_of(st.sampled_from(known), st.sampled_from(known), st.sampled_from(known), anything)


REGEXES = ["^a", "a$", "v[0-9]+", ".", "prod|stag", "^$", "-", "(?i)VISION", "^[a-m]", "1", "T1", "^2"]


def _op_expr(values):
    non_null = values.filter(lambda v: v is not None)
    ops = st.one_of(
        values,  # plain value: $eq
        st.builds(lambda v: {"$eq": v}, values),
        st.builds(lambda v: {"$ne": v}, values),
        st.builds(lambda op, v: {op: v}, st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), non_null),
        st.builds(lambda a, b: {"$gt": a, "$lte": b}, non_null, non_null),
        st.builds(lambda vs: {"$in": vs}, st.lists(values, max_size=3)),
        st.builds(lambda vs: {"$nin": vs}, st.lists(values, max_size=3)),
        st.builds(lambda r: {"$regex": r}, st.sampled_from(REGEXES)),
        st.builds(lambda r: {"$regex": r, "$options": "i"}, st.sampled_from(REGEXES)),
        st.builds(lambda s: {"$contains": s}, st.sampled_from(["a", "vis", "-", "", "o", "1", ":v", "T"])),
        st.builds(lambda b: {"$exists": b}, st.booleans()),
    )
    return st.one_of(ops, st.builds(lambda e: {"$not": e}, ops.filter(lambda e: isinstance(e, dict))))


def filters(kind: str, words, known: dict):
    def leaf_for(field):
        return _op_expr(_values(words, known.get(field, []))).map(lambda e: {field: e})

    leaf = st.one_of([leaf_for(f) for f in FIELDS[kind]])
    return st.recursive(
        leaf,
        lambda children: st.one_of(
            st.builds(lambda xs: {"$and": xs}, st.lists(children, min_size=1, max_size=3)),
            st.builds(lambda xs: {"$or": xs}, st.lists(children, min_size=1, max_size=3)),
            st.builds(lambda x: {"$not": x}, children),
            st.builds(lambda a, b: {**a, **b}, children, children),
        ),
        max_leaves=5)


def _check(store, kind, docs, flt):
    try:
        parse(flt, kind)
    except FilterError:
        with pytest.raises(FilterError):
            store.search(flt, kind=kind)
        return False
    expected = [d["address"] for d in docs if matches(flt, d, kind)]
    got = [d["address"] for d in store.search(flt, kind=kind)]
    assert got == expected, f"filter {json.dumps(flt)}"
    return 0 < len(got) < len(docs)  # a filter that tells items apart


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", KINDS)
def test_filters_match_the_brute_force_evaluation(from_template, seed, kind):
    store = _random_store(from_template, seed)
    docs = reference_documents(store, kind)
    words = vocabulary(store)
    checked = []

    # derandomize: the selectivity floor below is a statement about a fixed sample, not a coin toss
    @settings(max_examples=300 if kind == "versions" else 120, deadline=None, database=None,
              derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(filters(kind, words, field_values(docs, kind)))
    def run(flt):
        checked.append(_check(store, kind, docs, flt))

    run()
    # The generator is not degenerate: a fair share of filters were valid and told documents
    # apart (registries are few, and times differ from run to run: ~1 in 6 to 1 in 8 here).
    assert sum(checked) >= len(checked) // 10, f"{sum(checked)} of {len(checked)} selective"


# ---- semantics, spelled out ------------------------------------------------------------------------------
DOC = {"name": "clf", "tags": ["vision", "nlp"], "aliases": [], "metadata": {"x": 1, "s": "abc", "b": True,
       "none": None, "l": [1, "a", None], "d": {"y": 2.5}}, "metrics": {"acc": 0.9}}


@pytest.mark.parametrize("flt, expected", [
    ({"tags": "vision"}, True),
    ({"tags": {"$ne": "vision"}}, False),
    ({"tags": {"$nin": ["x", "y"]}}, True),
    ({"tags": {"$in": ["x", "nlp"]}}, True),
    ({"aliases": {"$exists": True}}, True),
    ({"metadata.x": 1.0}, True),
    ({"metadata.x": "1"}, False),  # a string never equals a number
    ({"metadata.x": True}, False),  # nor a boolean
    ({"metadata.b": True}, True),
    ({"metadata.x": {"$gt": 0, "$lt": 2}}, True),
    ({"metadata.s": {"$gt": 0}}, False),
    ({"metadata.none": None}, True),
    ({"metadata.missing": None}, True),
    ({"metadata.none": {"$exists": True}}, True),
    ({"metadata.missing": {"$exists": False}}, True),
    ({"metadata.l": "a"}, True),
    ({"metadata.l": None}, True),
    ({"metadata.d.y": {"$gte": 2.5}}, True),
    ({"metadata.d": {"$exists": True}}, True),
    ({"metadata.s": {"$regex": "^A", "$options": "i"}}, True),
    ({"metadata.s": {"$contains": "bc"}}, True),
    ({"name": {"$not": {"$regex": "^c"}}}, False),
    ({"$or": [{"name": "x"}, {"metrics.acc": {"$gte": 0.9}}]}, True),
    ({"$and": [{"name": "clf"}, {"$not": {"tags": "nlp"}}]}, False),
])
def test_operator_semantics(flt, expected):
    assert matches(flt, DOC) is expected


def test_time_filters_take_dates(random_store):
    today = dt.date.today().isoformat()
    everything = random_store.search(None)
    logged = [d for d in everything if "created_at" in d]  # a dangling link has no logged version
    assert len(logged) < len(everything)
    assert random_store.search({"created_at": {"$gte": "2020-01-01"}}) == logged
    assert random_store.search({"updated_at": {"$lt": "2020-01-01T00:00"}}) == []
    assert random_store.search({"linked_at": {"$lte": today + "T23:59:59+00:00"}}) == everything


# ---- malformed filters -------------------------------------------------------------------------------------
@pytest.mark.parametrize("flt, words", [
    ({"name": {"$like": "x"}}, ["$like", "name"]),
    ({"$nor": []}, ["$nor"]),
    ({"bogus": 1}, ["bogus", "fields:"]),
    ({"metrics": {"$gt": 1}}, ["metrics", "metrics.accuracy"]),
    ({"metrics.": 1}, ["metrics."]),
    ({"name": {"$in": "x"}}, ["$in", "list"]),
    ({"name": {"$regex": "("}}, ["$regex", "("]),
    ({"name": {"$regex": "a", "$options": "q"}}, ["$options"]),
    ({"name": {"$options": "i"}}, ["$options", "$regex"]),
    ({"name": {"$exists": "yes"}}, ["$exists"]),
    ({"name": {"$gt": None}}, ["$gt", "null"]),
    ({"name": {"$gt": [1]}}, ["$gt"]),
    ({"name": {"$contains": 1}}, ["$contains"]),
    ({"name": {"a": 1}}, ["name"]),
    ({"name": {"$eq": 1, "a": 1}}, ["name", "mix"]),
    ({"name": ["a", "b"]}, ["$in"]),
    ({"$and": {}}, ["$and", "list"]),
    ({"$or": []}, ["$or"]),
    ({"$and": [1]}, ["$and"]),
    ({"$not": 1}, ["$not"]),
    ({"$regex": "a"}, ["$regex", "field"]),
    ({"name": {"$and": [{"a": 1}]}}, ["$and"]),
    ({"created_at": {"$gt": "yesterday"}}, ["created_at", "yesterday"]),
    ({"created_at": {"$gt": 5}}, ["created_at"]),
    ({"name": {"$not": "x"}}, ["$not"]),
    ([], ["JSON object"]),
])
def test_malformed_filters_are_clear_errors(store, flt, words):
    with pytest.raises(FilterError) as e:
        store.versions(filter=flt)
    text = str(e.value)
    assert "\n" not in text
    for w in words:
        assert w in text, text


def test_fields_are_checked_per_kind(store):
    with pytest.raises(FilterError, match=r"unknown field 'metrics\.acc' for collections"):
        store.collections(filter={"metrics.acc": 1})
    with pytest.raises(FilterError, match="unknown field 'tags' for registries"):
        store.registries(filter={"tags": "x"})


def test_unknown_scope_is_not_found(store):
    from canonry.errors import NotFound

    with pytest.raises(NotFound):
        store.versions("model/nope", filter={})
    with pytest.raises(NotFound):
        store.collections("nope", filter={})


# ---- the API on a store made for the purpose -------------------------------------------------------------
@pytest.fixture
def catalog(store, make_file):
    s = store
    data = s.log_artifact(str(make_file("d")), name="imagenet", type="dataset", metadata={"source": "s3"})
    for i, (acc, base) in enumerate([(0.81, "resnet"), (0.93, "vit"), (0.88, "vit")]):
        v = s.log_artifact(str(make_file(f"m{i}")), name="classifier", type="model", inputs=[data.address],
                           metadata={"base": base, "epochs": 10 * (i + 1)}, metrics={"accuracy": acc})
        s.link(v.address, "model/vision-clf")
    s.set_alias("model/vision-clf:v1", "production")
    s.tag("model/vision-clf:v1", "vision", "champion-run")
    s.tag("model/vision-clf", "team-cv")
    s.link(data.address, "dataset/imagenet", aliases=["golden"])
    return s


def test_versions_filter_by_metric_tag_alias_and_metadata(catalog):
    s = catalog
    assert [v.address for v in s.versions(filter={"metrics.accuracy": {"$gt": 0.85}})] == \
        ["model/vision-clf:v1", "model/vision-clf:v2"]
    prod = s.versions(filter={"alias": "production"})
    assert [v.address for v in prod] == ["model/vision-clf:v1"] and prod[0].aliases == ["production"]
    assert [v.address for v in s.versions(filter={"tag": "vision"})] == ["model/vision-clf:v1"]
    assert [v.address for v in s.versions(filter={"metadata.base": "vit", "alias": "latest"})] == \
        ["model/vision-clf:v2"]
    assert [v.address for v in s.versions(filter={"inputs": "imagenet:v0"})] == \
        [f"model/vision-clf:v{i}" for i in range(3)]
    assert [v.address for v in s.versions("dataset/imagenet", filter={"type": "dataset"})] == \
        ["dataset/imagenet:v0"]
    assert [c.address for c in s.collections(filter={"tag": "team-cv"})] == ["model/vision-clf"]
    assert [c.address for c in s.collections(filter={"alias": "golden"})] == ["dataset/imagenet"]
    assert [r.name for r in s.registries(filter={"name": {"$regex": "^mod"}})] == ["model"]
    assert [r.name for r in s.registries(filter={"type": "dataset"})] == ["dataset"]


def test_every_version_result_carries_its_aliases(catalog):
    for d in catalog.search({"type": "model"}):
        assert "aliases" in d
    assert [d["aliases"] for d in catalog.search({"type": "model"})] == [[], ["production"], ["latest"]]


def test_search_follows_new_commits_and_hand_edits(catalog, store_path):
    from conftest import git

    s = catalog
    assert s.versions(filter={"tag": "retrain"}) == []
    s.tag("model/vision-clf:v0", "retrain")
    assert [v.address for v in s.versions(filter={"tag": "retrain"})] == ["model/vision-clf:v0"]
    path = store_path / "registries/model/vision-clf/collection.yaml"
    path.write_text(path.read_text().replace("description: ''", "description: hand written"))
    git("-C", store_path, "commit", "-qam", "describe by hand")
    assert [c.address for c in s.collections(filter={"description": {"$contains": "hand"}})] == ["model/vision-clf"]


# ---- the command ---------------------------------------------------------------------------------------------
def test_cli_search_json_shape(catalog, cli):
    r = cli("search", "--tag", "vision", "--json")
    assert r.exit_code == 0, r
    data = r.json()
    assert [d["address"] for d in data] == ["model/vision-clf:v1"]
    d = data[0]
    for key in ("kind", "address", "registry", "collection", "name", "version", "artifact", "type", "tags",
                "aliases", "metadata", "metrics", "inputs", "created_at", "linked_at", "updated_at"):
        assert key in d, key
    assert d["aliases"] == ["production"] and d["metrics"] == {"accuracy": 0.93}


def test_cli_search_shortcuts_combine(catalog, cli):
    flt = json.dumps({"metrics.accuracy": {"$gte": 0.85}})
    r = cli("search", "--filter", flt, "--alias", "latest", "--type", "model", "--registry", "model", "--json")
    assert [d["address"] for d in r.json()] == ["model/vision-clf:v2"]
    assert cli("search", "--registry", "dataset", "--json").json()[0]["address"] == "dataset/imagenet:v0"
    colls = cli("search", "--kind", "collections", "--tag", "team-cv", "--json").json()
    assert [c["address"] for c in colls] == ["model/vision-clf"] and "latest" in colls[0]["aliases"]
    regs = cli("search", "--kind", "registries", "--filter", '{"visibility": "organization"}', "--json").json()
    assert [x["name"] for x in regs] == ["dataset", "model"]
    limited = cli("search", "--type", "model", "--limit", "2", "--json").json()
    assert len(limited) == 2


def test_cli_search_table_and_no_results(catalog, cli):
    r = cli("search", "--alias", "production")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["VERSION", "ARTIFACT", "TYPE", "ALIASES", "TAGS", "METRICS"]
    assert "model/vision-clf:v1" in lines[1] and "production" in lines[1] and "accuracy=0.93" in lines[1]
    none = cli("search", "--tag", "nothing-has-this")
    assert none.exit_code == 0 and none.stdout == "" and "no versions match" in none.stderr


@pytest.mark.parametrize("args, words", [
    (["--filter", "{bad json"], ["--filter", "JSON"]),
    (["--filter", '{"name": {"$like": "x"}}'], ["$like"]),
    (["--filter", '{"nope": 1}'], ["nope"]),
    (["--filter", '{"metrics.acc": {"$in": 3}}'], ["$in"]),
    (["--kind", "registries", "--tag", "x"], ["registries"]),
])
def test_cli_malformed_filter_is_one_line_error(catalog, cli, args, words):
    assert_one_line_error(cli("search", *args), 2, contains=tuple(words))  # a usage error


def test_search_in_a_fresh_process(catalog, store_path):
    from conftest import run_process

    r = run_process(["-C", store_path, "search", "--filter", '{"metrics.accuracy": {"$lt": 0.9}}', "--json"])
    assert r.returncode == 0, r.stderr
    assert [d["address"] for d in json.loads(r.stdout)] == ["model/vision-clf:v0", "model/vision-clf:v2"]
    bad = run_process(["-C", store_path, "search", "--filter", '{"name": {"$foo": 1}}'])
    assert_one_line_error(bad, 2, contains=("$foo",))  # a bad filter is a usage error


def test_open_store_api_search_matches_reference(catalog):
    s = canonry.open(catalog.path)
    assert s.search(None) == reference_documents(s, "versions")


def test_search_in_an_unknown_registry_is_not_found(catalog, cli):
    assert_one_line_error(cli("search", "--registry", "nope"), 1, contains=("nope",))


@pytest.mark.parametrize("kind", KINDS)
def test_cli_json_is_the_api_result(random_store, store_path, run_cli, kind):
    """`search --json` texts come from sqlite for versions: the same data as Store.search."""
    r = run_cli("-C", store_path, "search", "--kind", kind, "--json")
    assert r.exit_code == 0, r
    assert r.json() == random_store.search(None, kind=kind)
    flt = json.dumps({"$or": [{"tag": "vision"}, {"metadata.x": {"$exists": True}}]}) if kind == "versions" \
        else json.dumps({"name": {"$regex": "a"}})
    r = run_cli("-C", store_path, "search", "--kind", kind, "--filter", flt, "--json")
    assert r.json() == random_store.search(json.loads(flt), kind=kind)
