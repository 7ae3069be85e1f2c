"""Typed records of the registry, and where each one lives in the store tree.

Layout (one change touches few small files; a promotion is a one-line diff of aliases.yaml):

    canonry.yaml
    registries/<registry>/registry.yaml
    registries/<registry>/<collection>/collection.yaml
    registries/<registry>/<collection>/aliases.yaml
    registries/<registry>/<collection>/links/v<N>.yaml
    artifacts/<artifact>/artifact.yaml
    artifacts/<artifact>/v<K>.yaml
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

__all__ = [
    "ARTIFACTS",
    "REGISTRIES",
    "STORE_FILE",
    "AliasChange",
    "Artifact",
    "ArtifactVersion",
    "Collection",
    "Default",
    "HistoryEntry",
    "LinkedVersion",
    "Record",
    "Registry",
    "TagChange",
    "aliases_file",
    "artifact_dir",
    "artifact_file",
    "artifact_version_file",
    "collection_dir",
    "collection_file",
    "fresh",
    "kind_of_path",
    "link_file",
    "links_dir",
    "registry_dir",
    "registry_file",
]

if TYPE_CHECKING:  # type checkers see records as dataclasses; at run time nothing is imported
    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**_kwargs):
        return lambda cls: cls

STORE_FILE = "canonry.yaml"
REGISTRIES = "registries"
ARTIFACTS = "artifacts"


def registry_dir(registry: str) -> str:
    return f"{REGISTRIES}/{registry}"


def registry_file(registry: str) -> str:
    return f"{REGISTRIES}/{registry}/registry.yaml"


def collection_dir(registry: str, collection: str) -> str:
    return f"{REGISTRIES}/{registry}/{collection}"


def collection_file(registry: str, collection: str) -> str:
    return f"{collection_dir(registry, collection)}/collection.yaml"


def aliases_file(registry: str, collection: str) -> str:
    return f"{collection_dir(registry, collection)}/aliases.yaml"


def links_dir(registry: str, collection: str) -> str:
    return f"{collection_dir(registry, collection)}/links"


def link_file(registry: str, collection: str, version: str) -> str:
    return f"{links_dir(registry, collection)}/{version}.yaml"


def artifact_dir(artifact: str) -> str:
    return f"{ARTIFACTS}/{artifact}"


def artifact_file(artifact: str) -> str:
    return f"{ARTIFACTS}/{artifact}/artifact.yaml"


def artifact_version_file(artifact: str, version: str) -> str:
    return f"{ARTIFACTS}/{artifact}/{version}.yaml"


def kind_of_path(path: str) -> str | None:
    """Which schema governs a store path (None: not a canonry file)."""
    parts = path.split("/")
    if path == STORE_FILE:
        return "store"
    if parts[0] == REGISTRIES:
        if len(parts) == 3 and parts[2] == "registry.yaml":
            return "registry"
        if len(parts) == 4 and parts[3] == "collection.yaml":
            return "collection"
        if len(parts) == 4 and parts[3] == "aliases.yaml":
            return "aliases"
        if len(parts) == 5 and parts[3] == "links" and parts[4].endswith(".yaml"):
            return "link"
    if parts[0] == ARTIFACTS and len(parts) == 3:
        return "artifact" if parts[2] == "artifact.yaml" else "artifact_version"
    return None


_T = TypeVar("_T")


class Default:
    """A field default made fresh for each record (a list, a dict), not shared."""

    def __init__(self, factory: Callable[[], Any]):
        self.factory = factory

    def __call__(self):
        return self.factory()


def fresh(*, factory: Callable[[], _T]) -> _T:
    """A record field's default, made by `factory` for each record: `links: list = fresh(factory=list)`.
    Typed as what the factory makes, so type checkers treat it as dataclasses.field(default_factory=…)."""
    return Default(factory)  # type: ignore[return-value]


@dataclass_transform(field_specifiers=(fresh,))
class Record:
    """A value record: its fields are its class's annotated attributes, in order; a field's
    class attribute, if any, is its default (`fresh(factory=list)` for a fresh list each time).
    Records take fields by position or keyword, compare equal field by field, and
    `to_dict()` copies them out (containers copied, as dataclasses.asdict does).

    Why not @dataclass: importing dataclasses (it imports inspect) and generating the
    methods of these classes is paid at the start of every command (docs/performance.md)."""

    _fields: tuple[str, ...] = ()
    _field_set: frozenset[str] = frozenset()
    _field_defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = [name for name in cls.__dict__.get("__annotations__", {}) if name not in cls._fields]  # noqa: RUF063 - inspect is costly to import
        cls._fields = cls._fields + tuple(own)
        cls._field_set = frozenset(cls._fields)
        cls._field_defaults = {**cls._field_defaults, **{n: cls.__dict__[n] for n in own if n in cls.__dict__}}
        for name in own:  # the default lives in _field_defaults; an instance always sets its field
            if name in cls.__dict__:
                delattr(cls, name)

    def __init__(self, *args, **kwargs):
        if args:
            if len(args) > len(self._fields):
                raise TypeError(f"{type(self).__name__}() takes {len(self._fields)} fields, got {len(args)}")
            for name, value in zip(self._fields, args):
                if name in kwargs:
                    raise TypeError(f"{type(self).__name__}() got field {name!r} twice")
                kwargs[name] = value
        if len(kwargs) < len(self._fields):
            for name, default in self._field_defaults.items():
                if name not in kwargs:
                    kwargs[name] = default() if isinstance(default, Default) else default
        if len(kwargs) != len(self._fields) or not kwargs.keys() <= self._field_set:
            unknown = sorted(kwargs.keys() - self._field_set)
            if unknown:
                raise TypeError(f"{type(self).__name__}() has no field {unknown[0]!r}")
            missing = [name for name in self._fields if name not in kwargs]
            raise TypeError(f"{type(self).__name__}() missing field {missing[0]!r}")
        self.__dict__.update(kwargs)

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self._fields)

    __hash__ = None  # mutable, as a dataclass without frozen=True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self._fields)})"

    def to_dict(self) -> dict[str, Any]:
        return {name: _copied(getattr(self, name)) for name in self._fields}


def _copied(value):
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_copied(v) for v in value)
    return value


class Registry(Record):
    """A registry: the types it accepts and who may do what in it (registry.yaml)."""

    name: str
    description: str
    visibility: str
    types: Any  # "all" or a list of type names
    protected_aliases: list[str]
    members: dict[str, str]
    created_at: str
    created_by: str
    record_usage: bool = False  # every download of its versions goes to the usage log


class Collection(Record):
    """A collection of linked versions of one artifact type, with its aliases."""

    registry: str
    name: str
    type: str
    description: str
    tags: list[str]
    aliases: dict[str, str]  # alias -> vN, plus "latest" when there is a link
    versions: int  # links present now
    next_version: int
    created_at: str
    created_by: str
    metadata: dict = fresh(factory=dict)  # KEY: value, set with `collection edit --metadata`

    @property
    def address(self) -> str:
        return f"{self.registry}/{self.name}"


class _FromStore:
    """What a linked or artifact version read from a Store can do with it: download its files,
    read its artifact version's fields. The Store is kept outside the fields (`_store`), so
    `to_dict()`, equality and pickling see the record only."""

    def _store_of(self):
        store = self.__dict__.get("_store")
        if store is None:
            from canonry.errors import InvalidInput

            raise InvalidInput(f"{self.address}: this record was not read from a store; "  # type: ignore[attr-defined]
                               "get one from store.resolve(...)")
        return store

    def __getstate__(self):
        return {name: value for name, value in self.__dict__.items() if not name.startswith("_")}

    def download(self, dest: str | None = None, force: bool = False, progress=None,
                 record: bool | None = None, purpose: str | None = None) -> str:
        """The files of this version, verified: into `dest` (a folder; an existing file is
        refused unless `force`), or without `dest` into the download cache, as `store.use`.
        Returns the folder. `record`, `purpose`: as for `store.use`."""
        import os

        store = self._store_of()
        if dest is None:
            return store.use(self.address, progress=progress, record=record, purpose=purpose)  # type: ignore[attr-defined]
        store.download(self.address, dest, force=force, progress=progress, record=record,  # type: ignore[attr-defined]
                       purpose=purpose)
        return os.path.abspath(dest)


class LinkedVersion(_FromStore, Record):
    """A link: version vN of a collection, pointing at an artifact version.

    Read from a store (`store.resolve("model/mnist:production")`), it also gives the fields of
    the artifact version it points at (`files`, `metadata`, `metrics`, `artifact_version`, read
    on first use) and `download(dest=None)`."""

    registry: str
    collection: str
    version: str
    artifact: str  # ARTIFACT:vK
    digest: str
    aliases: list[str]
    tags: list[str]
    description: str
    linked_at: str
    linked_by: str
    created: bool = True  # False when a link call found it already linked

    @property
    def address(self) -> str:
        return f"{self.registry}/{self.collection}:{self.version}"

    @property
    def artifact_version(self) -> ArtifactVersion:
        """The artifact version this link points at (read once from the store)."""
        found = self.__dict__.get("_artifact_version")
        if found is None:
            found = self.__dict__["_artifact_version"] = self._store_of().artifact_version(self.artifact)
        return found

    @property
    def files(self) -> list[dict]:
        """The files of the artifact version: path, size, sha256 (or url) of each."""
        return self.artifact_version.files

    @property
    def metadata(self) -> dict:
        return self.artifact_version.metadata

    @property
    def metrics(self) -> dict:
        return self.artifact_version.metrics


class ArtifactVersion(_FromStore, Record):
    """An immutable version of an artifact: its files, metadata, metrics, lineage, and the
    links pointing at it (`links`: filled when read from a store). Read from a store, it can
    `download(dest=None)`."""

    artifact: str
    version: str
    type: str
    digest: str
    size: int
    files: list[dict]
    metadata: dict
    metrics: dict
    inputs: list[str]
    producer: dict
    description: str
    created_at: str
    created_by: str
    created: bool = True  # False when logging found identical content in the newest version
    links: list[dict] = fresh(factory=list)  # where it is linked (filled when read from a store)
    deleted_at: str | None = None  # set by `artifact delete`: the version stays, its bytes may go
    deleted_by: str | None = None

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def address(self) -> str:
        return f"{self.artifact}:{self.version}"


class Artifact(Record):
    """An artifact: a name and type, and its versions."""

    name: str
    type: str
    description: str
    versions: list[str]
    created_at: str
    created_by: str


class AliasChange(Record):
    """What an alias set or rm did."""

    collection: str  # REGISTRY/COLLECTION
    alias: str
    before: str | None  # vN that held it, or None
    after: str | None  # vN that holds it now, or None when removed

    @property
    def changed(self) -> bool:
        return self.before != self.after


class TagChange(Record):
    """What a tag add or rm did."""

    target: str
    before: list[str]
    after: list[str]

    @property
    def changed(self) -> bool:
        return self.before != self.after


class HistoryEntry(Record):
    """One change to a target, as `history` lists it."""

    commit: str
    time: str
    actor: str
    op: str
    target: str
    before: Any
    after: Any
    summary: str
