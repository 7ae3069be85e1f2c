"""Names and addresses: what is accepted, what is refused, and how addresses parse."""
from __future__ import annotations

import pytest

from canonry.errors import CanonryError, InvalidAddress, InvalidName, ReservedAlias
from canonry.names import (
    check_alias,
    check_name,
    is_version,
    parse,
    parse_artifact_version,
    parse_collection,
    parse_link,
)


@pytest.mark.parametrize("name", ["a", "model", "gemma-finetuned", "A9", "x.y_z-1", "0abc",
                                  "a" * 128, "v1.2", "my.model.v2"])
def test_valid_names_are_accepted(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "a/b", "..", "a..b", "../x", ".hidden", "-dash", "_under",
                                  "a" * 129, "sp ace", "colon:x", "back\\slash", "tab\t",
                                  "ünïcode", "new\nline"])
def test_invalid_names_are_refused_with_one_line(name):
    with pytest.raises(InvalidName) as info:
        check_name(name, "collection name")
    message = str(info.value)
    assert "\n" not in message
    assert "collection name" in message
    assert isinstance(info.value, CanonryError) and info.value.exit_code == 1


def test_name_regex_boundary_is_128_characters():
    check_name("b" * 128)
    with pytest.raises(InvalidName):
        check_name("b" * 129)


@pytest.mark.parametrize("alias", ["production", "staging", "best", "champion", "prod-2024",
                                   "V1", "v1a", "version3", "vx"])
def test_ordinary_aliases_are_accepted(alias):
    assert check_alias(alias) == alias


@pytest.mark.parametrize("alias", ["latest", "v0", "v1", "v3", "v10", "v007"])
def test_latest_and_version_aliases_are_reserved(alias):
    with pytest.raises(ReservedAlias) as info:
        check_alias(alias)
    assert "reserved" in str(info.value)


def test_invalid_alias_name_is_an_invalid_name():
    with pytest.raises(InvalidName):
        check_alias("a/b")


@pytest.mark.parametrize("text,kind,fields", [
    ("model", "name", {"registry": "model", "artifact": "model"}),
    ("model/first-collection", "collection", {"registry": "model", "collection": "first-collection"}),
    ("model/first-collection:v3", "link", {"registry": "model", "collection": "first-collection",
                                           "ref": "v3"}),
    ("model/first-collection:production", "link", {"ref": "production"}),
    ("model/first-collection:latest", "link", {"ref": "latest"}),
    ("gemma-finetuned:v0", "artifact_version", {"artifact": "gemma-finetuned", "ref": "v0"}),
    ("gemma-finetuned:latest", "artifact_version", {"artifact": "gemma-finetuned", "ref": "latest"}),
])
def test_addresses_parse(text, kind, fields):
    addr = parse(text)
    assert addr.kind == kind
    for key, value in fields.items():
        assert getattr(addr, key) == value
    if kind != "name":
        assert str(addr) == text


@pytest.mark.parametrize("text", ["", "a/b/c", "model/", "/coll", "model/coll:", "art:",
                                  "art:production", "art:v01", "model/../x", "model/.x",
                                  "model/c:../v1", "a:b:c", "model/c:a/b"])
def test_invalid_addresses_are_refused(text):
    with pytest.raises((InvalidAddress, InvalidName)) as info:
        parse(text)
    assert "\n" not in str(info.value)


def test_typed_parsers_refuse_the_wrong_kind():
    assert parse_collection("model/c").collection == "c"
    assert parse_link("model/c:v2").ref == "v2"
    assert parse_artifact_version("art:latest").ref == "latest"
    with pytest.raises(InvalidAddress, match="REGISTRY/COLLECTION"):
        parse_collection("model/c:v1")
    with pytest.raises(InvalidAddress):
        parse_link("model/c")
    with pytest.raises(InvalidAddress, match="ARTIFACT:vK"):
        parse_artifact_version("model/c:v1")


def test_version_recognition():
    assert is_version("v0") and is_version("v12")
    assert not is_version("v01") and not is_version("v") and not is_version("x1")


@pytest.mark.parametrize("name", ["abc\n", "model\n"])
def test_name_with_trailing_newline_is_refused(name):
    # `$` in a Python regex also matches just before a final newline: the check must not.
    with pytest.raises(InvalidName):
        check_name(name)


def test_alias_with_trailing_newline_is_refused():
    with pytest.raises(InvalidName):
        check_alias("production\n")
