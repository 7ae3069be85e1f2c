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

from dataclasses import asdict, dataclass, field
from typing import Any

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


class Record:
    # Every record class has a docstring: without one, @dataclass builds it from
    # inspect.signature, a cost paid at import by every command.
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
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

    def accepts(self, artifact_type: str) -> bool:
        return self.types == "all" or artifact_type in self.types


@dataclass
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

    @property
    def address(self) -> str:
        return f"{self.registry}/{self.name}"


@dataclass
class LinkedVersion(Record):
    """A link: version vN of a collection, pointing at an artifact version."""

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


@dataclass
class FileEntry(Record):
    """One file of an artifact version."""

    path: str
    size: int
    sha256: str


@dataclass
class ArtifactVersion(Record):
    """An immutable version of an artifact: its files, metadata, metrics, lineage."""

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
    links: list[dict] = field(default_factory=list)  # filled by show: where it is linked

    @property
    def address(self) -> str:
        return f"{self.artifact}:{self.version}"


@dataclass
class Artifact(Record):
    """An artifact: a name and type, and its versions."""

    name: str
    type: str
    description: str
    versions: list[str]
    created_at: str
    created_by: str


@dataclass
class AliasChange(Record):
    """What an alias set or rm did."""

    collection: str  # REGISTRY/COLLECTION
    alias: str
    before: str | None  # vN that held it, or None
    after: str | None  # vN that holds it now, or None when removed

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass
class TagChange(Record):
    """What a tag add or rm did."""

    target: str
    before: list[str]
    after: list[str]

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass
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
