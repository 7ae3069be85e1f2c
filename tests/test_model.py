"""model.Record: the value records the API returns (not dataclasses: see Record's docstring)."""
import pytest

from canonry import model as m


class FileEntry(m.Record):
    """A small record of three fields, to test Record itself."""

    path: str
    size: int
    sha256: str


def _link(**overrides):
    fields = dict(registry="model", collection="c", version="v0", artifact="a:v0", digest="sha256:x",
                  aliases=["production"], tags=[], description="", linked_at="t", linked_by="me")
    return m.LinkedVersion(**{**fields, **overrides})


def test_fields_by_keyword_or_position_with_defaults():
    lv = _link()
    assert lv.created is True  # the default
    assert m.LinkedVersion._fields[-1] == "created"
    positional = m.LinkedVersion(*[getattr(lv, name) for name in m.LinkedVersion._fields[:-1]])
    assert positional == lv
    assert m.AliasChange("model/c", "production", None, "v1").changed


def test_bad_fields_are_type_errors_naming_the_field():
    with pytest.raises(TypeError, match="missing field 'digest'"):
        m.LinkedVersion(registry="model", collection="c", version="v0", artifact="a:v0")
    with pytest.raises(TypeError, match="no field 'colour'"):
        _link(colour="red")
    with pytest.raises(TypeError, match="field 'path' twice"):
        FileEntry("a", path="b", size=1, sha256="x")
    with pytest.raises(TypeError, match="takes 3 fields, got 4"):
        FileEntry("a", 1, "x", "extra")


def test_a_fresh_default_container_per_record():
    args = dict(artifact="a", version="v0", type="model", digest="d", size=1, files=[], metadata={},
                metrics={}, inputs=[], producer={}, description="", created_at="t", created_by="me")
    first, second = m.ArtifactVersion(**args), m.ArtifactVersion(**args)
    first.links.append({"address": "model/c:v0"})
    assert second.links == []


def test_equality_repr_and_hash_as_a_mutable_dataclass():
    assert _link() == _link() and _link() != _link(version="v1")
    assert _link() != FileEntry("a", 1, "x")
    assert repr(FileEntry("a", 1, "x")) == "FileEntry(path='a', size=1, sha256='x')"
    with pytest.raises(TypeError):
        hash(_link())


def test_to_dict_copies_containers():
    lv = _link(tags=["vision"])
    d = lv.to_dict()
    assert d["aliases"] == ["production"] and d["created"] is True
    assert list(d) == list(m.LinkedVersion._fields)
    d["tags"].append("changed")
    assert lv.tags == ["vision"]
