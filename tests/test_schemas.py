"""JSON Schemas: well-formed draft 2020-12, versioned, and every file canonry writes obeys them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import git, show_file
from jsonschema import Draft202012Validator

from canonry import model as m
from canonry.errors import SchemaError
from canonry.schemas import FORMAT_VERSION, KINDS, check_record, schema_dir

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"


def _schema(kind):
    return json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text())


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_valid_draft_2020_12_with_format_version(kind):
    schema = _schema(kind)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert schema["properties"]["format"] == {"const": FORMAT_VERSION}
    assert "format" in schema["required"]
    assert schema.get("additionalProperties") is False


def test_every_kind_has_a_schema_file_and_the_package_finds_them():
    files = sorted(p.name for p in SCHEMA_DIR.glob("*.schema.json"))
    assert files == sorted(f"{k}.schema.json" for k in KINDS)
    assert (schema_dir() / "link.schema.json").is_file()


def test_every_file_written_by_canonry_validates(linked, store_path, make_file, model_dir):
    store = linked
    store.log_artifact(str(make_file("rows")), name="rows", type="dataset")
    store.log_artifact(str(model_dir), name="gemma-finetuned", type="model",
                       metadata={"nested": {"a": [1, 2]}}, metrics={"f1": 0.5},
                       inputs=["rows:v0"], description="dir")
    store.link("gemma-finetuned:v1", "model/first-collection", aliases=["staging"])
    store.tag("model/first-collection", "nlp")
    store.tag("model/first-collection:v1", "reviewed")
    store.create_registry("team", description="d", types=["model", "dataset"])
    store.link("rows:v0", "team/data")
    files = git("-C", store_path, "ls-tree", "-r", "--name-only", "main").split()
    kinds_seen = set()
    for rel in files:
        kind = m.kind_of_path(rel)
        assert kind is not None, f"unexpected file {rel}"
        record = yaml.safe_load(show_file(store_path, f"main:{rel}"))
        errors = list(Draft202012Validator(_schema(kind)).iter_errors(record))
        assert errors == [], (rel, [e.message for e in errors])
        kinds_seen.add(kind)
    assert kinds_seen == set(KINDS)


def test_validate_names_file_and_field():
    good = {"format": 1, "aliases": {"production": "v0"}}
    check_record("aliases", good, "registries/model/c/aliases.yaml")
    with pytest.raises(SchemaError) as info:
        check_record("aliases", {"format": 1, "aliases": {"production": "zero"}},
                 "registries/model/c/aliases.yaml")
    msg = str(info.value)
    assert msg.startswith("registries/model/c/aliases.yaml: field aliases.production:")
    assert "\n" not in msg
    with pytest.raises(SchemaError, match="format"):
        check_record("aliases", {"format": 2, "aliases": {}}, "x/aliases.yaml")
    with pytest.raises(SchemaError, match="mapping"):
        check_record("link", ["not", "a", "mapping"], "x/links/v0.yaml")
    with pytest.raises(SchemaError, match=r"alias name|does not match|latest"):
        check_record("aliases", {"format": 1, "aliases": {"../x": "v0"}}, "x/aliases.yaml")


def test_collection_schema_refuses_bad_fields():
    base = {"format": 1, "type": "model", "next_version": 0, "created_at": "2024-01-01T00:00:00Z",
            "created_by": "ada@example.com", "tags": []}
    check_record("collection", base, "c.yaml")
    for bad, field in [({"next_version": -1}, "next_version"), ({"type": "a/b"}, "type"),
                       ({"tags": ["x", "x"]}, "tags"), ({"created_at": "yesterday"}, "created_at"),
                       ({"colour": "blue"}, "top level")]:
        with pytest.raises(SchemaError) as info:
            check_record("collection", {**base, **bad}, "c.yaml")
        assert field in str(info.value) or "colour" in str(info.value)


def test_aliases_file_cannot_store_latest_or_versions():
    """`latest` is derived and v<digits> is reserved: a hand edit storing one is refused."""
    for alias in ("latest", "v3"):
        with pytest.raises(SchemaError):
            check_record("aliases", {"format": 1, "aliases": {alias: "v0"}},
                     "registries/model/c/aliases.yaml")
