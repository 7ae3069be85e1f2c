"""The compiled fast path of record validation never accepts what jsonschema (the reference)
refuses: checked on every file of a real store and on random mutations of them."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import canonry
from canonry import model as m
from canonry import schemas
from canonry.errors import SchemaError

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False), st.text(max_size=8),
    st.sampled_from(["", "..", "a/b", "v1", "sha256:" + "0" * 64, "2026-01-01T00:00:00Z", "x:v0", "all"]),
    st.lists(st.text(max_size=4), max_size=3), st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2))


@pytest.fixture(scope="module")
def real_records(tmp_path_factory):
    """kind -> records of a store that used every kind of file."""
    root = tmp_path_factory.mktemp("fastpath")
    (root / "m.bin").write_bytes(b"weights")
    store = canonry.init(str(root / "s"))
    store.log_artifact(str(root / "m.bin"), name="gem", type="model", metadata={"lr": 0.1},
                       metrics={"acc": 0.9})
    store.link("gem:v0", "model/first", aliases=["production"])
    store.tag("model/first", "nlp")
    view = store.view()
    paths = [m.STORE_FILE, m.registry_file("model"), m.collection_file("model", "first"),
             m.aliases_file("model", "first"), m.link_file("model", "first", "v0"),
             m.artifact_file("gem"), m.artifact_version_file("gem", "v0")]
    return {m.kind_of_path(p): view.read(p) for p in paths}


def _reference_accepts(kind: str, record) -> bool:
    return not list(schemas._validator(kind).iter_errors(record))


def _fast_accepts(kind: str, record) -> bool:
    try:
        schemas._fast_check(kind)(record)
        return True
    except Exception:
        return False


def test_fast_path_is_compiled_for_every_kind_and_accepts_real_records(real_records):
    assert set(real_records) == set(schemas.KINDS)
    for kind, record in real_records.items():
        assert schemas._fast_check(kind) is not None, kind
        assert _fast_accepts(kind, record) and _reference_accepts(kind, record), kind


def test_a_refused_record_still_gets_the_reference_message(real_records):
    bad = dict(real_records["link"], digest="md5:123")
    with pytest.raises(SchemaError, match=r"^x\.yaml: field digest: "):
        schemas.check_record("link", bad, "x.yaml")


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_fast_path_never_accepts_what_the_reference_refuses(real_records, data):
    kind = data.draw(st.sampled_from(sorted(real_records)))
    record = dict(real_records[kind])
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["set", "drop", "add", "nest"]))
        key = data.draw(st.sampled_from(sorted(record) or ["format"]))
        if action == "set":
            record[key] = data.draw(VALUES)
        elif action == "drop":
            record.pop(key, None)
        elif action == "add":
            record[data.draw(st.text(max_size=6))] = data.draw(VALUES)
        elif isinstance(record.get(key), dict):
            inner = dict(record[key])
            inner[data.draw(st.text(max_size=6))] = data.draw(VALUES)
            record[key] = inner
    if _fast_accepts(kind, record):
        assert _reference_accepts(kind, record), (kind, record)
