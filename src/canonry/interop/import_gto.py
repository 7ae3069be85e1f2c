"""`canonry import gto PATH`: a GTO registry (git tags in the repository at PATH) replayed into
canonry, one commit per tag, in GTO's own order, each authored by the tag's tagger at its date.

GTO's tags (https://dvc.org/doc/gto): `NAME@vX.Y.Z` registers a version at the tagged commit,
`NAME@vX.Y.Z!` deregisters it, `NAME#STAGE#N` (or `NAME#STAGE`) assigns a stage to the version
at the tagged commit, `NAME#STAGE!#N` unassigns it, `NAME@deprecated` deprecates the artifact.
They become: a link in REGISTRY/NAME (its artifact version holding the artifact's files at that
commit when git has them, and `gto-version.json`, the registration itself), an unlink, alias
STAGE set and removed, tag `deprecated` on the collection. The semver, commit, tag and message
are kept as metadata `gto` of the artifact version; artifacts.yaml gives type, path and
description.

A second run adds nothing: a tag already replayed left a commit whose subject names it
(`import GTO tag TAG`), and a tag older than the newest one replayed is not replayed again.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

from canonry.errors import CanonryError, InvalidInput, NotFound
from canonry.git.storage import Identity
from canonry.interop.importing import Plan, canonry_name, iso, person
from canonry.names import check_alias
from canonry.ops import accepts

__all__ = ["STUB_FILE", "SUBJECT", "GtoEvent", "plan_gto", "read_events"]

SUBJECT = "import GTO tag "  # + the tag name: the subject of the commit replaying a tag
STUB_FILE = "gto-version.json"
DEFAULT_TYPE = "model"

# GTO's tag grammar (gto/constants.py), written out: an artifact name (a folder prefix joined by
# `=`), then a stage or a version with an optional `!` (cancel), or @deprecated / @created, then
# an optional `#counter`.
_NAME = r"[a-zA-Z0-9](?:[a-zA-Z0-9-/_]*[a-zA-Z0-9])?"
_SEMVER = (r"(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?")
_TAG = re.compile(rf"^(?P<artifact>(?:[a-zA-Z0-9-_./]+=)?{_NAME})(?:(?:#(?P<stage>{_NAME})|@(?P<version>v{_SEMVER}))"
                  rf"(?P<cancel>!?)|@(?P<special>deprecated|created))(?:#(?P<counter>[0-9]+))?$")
# GTO's order of events of the same second (gto/base.py: each event's priority)
_PRIORITY = {"created": 1, "deprecate": 2, "register": 3, "deregister": 4, "assign": 5, "unassign": 6}


@dataclass
class GtoEvent:
    """One GTO tag, read from the repository."""

    tag: str
    action: str  # register, deregister, assign, unassign, deprecate, created
    name: str  # GTO's artifact name (`folder:name` for an artifact declared in a folder)
    version: str | None
    stage: str | None
    counter: int
    commit: str
    time: int  # the tagger's date, POSIX seconds
    tagger: Identity
    message: str

    @property
    def key(self) -> tuple:
        return (self.time, _PRIORITY[self.action], self.counter, self.tag)


@dataclass
class _Artifact:
    """What the plan knows of one GTO artifact as it replays its tags."""

    name: str
    address: str
    type: str
    exists: bool  # its collection is in the store (or made earlier in the plan)
    registered: dict[str, str] = field(default_factory=dict)  # version -> commit, in effect
    stages: dict[str, str] = field(default_factory=dict)  # stage -> version


def read_events(path: str) -> tuple[list[GtoEvent], list[tuple[str, str]]]:
    """The GTO tags of the repository at `path`, in GTO's order; and the tags left out, with why."""
    from dulwich.objects import Commit, Tag
    from dulwich.repo import NotGitRepository, Repo

    try:
        repo = Repo(path)
    except (NotGitRepository, OSError):
        raise InvalidInput(f"not a git repository: {path}") from None
    events: list[GtoEvent] = []
    skipped: list[tuple[str, str]] = []
    with repo:
        for ref, sha in sorted(repo.refs.as_dict(cast("Any", b"refs/tags")).items()):
            name = ref.decode("utf-8", "replace")
            match = _TAG.match(name)
            if match is None:
                continue  # not a GTO tag
            obj = repo[sha]
            if not isinstance(obj, Tag):
                skipped.append((f"tag {name}", "a lightweight tag: GTO makes annotated tags, with a tagger and date"))
                continue
            target: Any = obj
            while isinstance(target, Tag):
                target = repo[target.object[1]]
            if not isinstance(target, Commit):
                skipped.append((f"tag {name}", "does not point at a commit"))
                continue
            if match["special"] == "created":
                skipped.append((f"tag {name}", "an artifact creation tag: canonry makes the collection "
                                               "with its first version"))
                continue
            if match["special"] == "deprecated":
                action = "deprecate"
            elif match["version"]:
                action = "deregister" if match["cancel"] else "register"
            else:
                action = "unassign" if match["cancel"] else "assign"
            tagger = obj.tagger.decode("utf-8", "replace")
            events.append(GtoEvent(
                tag=name, action=action, name=match["artifact"].replace("=", ":"), version=match["version"],
                stage=match["stage"], counter=int(match["counter"] or 0), commit=target.id.decode(),
                time=obj.tag_time, tagger=person(tagger, Identity(tagger, tagger)),
                message=obj.message.decode("utf-8", "replace").strip()))
    events.sort(key=lambda e: e.key)
    return events, skipped


def _declared(repo_path: str, commit: str, name: str) -> dict:
    """artifacts.yaml's entry for `name` at `commit` ({} when none): type, path, description."""
    import yaml
    from dulwich.object_store import tree_lookup_path
    from dulwich.repo import Repo

    folder, _, short = name.rpartition(":")
    index = f"{folder}/artifacts.yaml" if folder else "artifacts.yaml"
    with Repo(repo_path) as repo:
        try:
            _, sha = tree_lookup_path(repo.__getitem__, _tree_of(repo, commit), index.encode())
            data = yaml.safe_load(cast("Any", repo[sha]).data) or {}
        except (KeyError, yaml.YAMLError):
            return {}
    entry = data.get(short) if isinstance(data, dict) else None
    return entry if isinstance(entry, dict) else {}


def _tree_of(repo, commit: str) -> Any:
    return cast("Any", repo[commit.encode()]).tree


def _imported_tags(store) -> set[str]:
    """Tags replayed into the store branch before: the subjects of its first-parent commits."""
    from canonry.git.graph import first_parents

    done = set()
    for commit in first_parents(store.storage, store.storage.head()):
        subject = commit.message.decode("utf-8", "replace").split("\n", 1)[0]
        if subject.startswith(SUBJECT):
            done.add(subject[len(SUBJECT):].strip())
    return done


def plan_gto(store, repo_path: str, registry: str | None = None) -> Plan:
    """The plan that replays the GTO tags of the repository at `repo_path` (in `registry`, or
    in the registry named after each artifact's type when there is one, else `model`)."""
    repo_path = os.path.abspath(repo_path)
    events, skipped = read_events(repo_path)
    plan = Plan(skipped=list(skipped))
    view = store.view()
    if registry is not None:
        view.registry(registry)  # NotFound: one line
    done = _imported_tags(store)
    last = max((e.key for e in events if e.tag in done), default=None)
    artifacts: dict[str, _Artifact | None] = {}
    taken: dict[str, str] = {}
    for event in events:
        what = f"tag {event.tag}"
        if event.name not in artifacts:
            artifacts[event.name] = _artifact(store, plan, repo_path, event, registry, taken)
        art = artifacts[event.name]
        if art is None:
            plan.skip(what, "its artifact is skipped (above)")
            continue
        late = event.tag not in done and last is not None and event.key <= last
        acts = _plan_event(store, plan, repo_path, registry, art, event,
                           replay=event.tag not in done and not late)
        if late and acts:
            plan.skip(what, "older than the newest tag imported before (tagged since with an older date)")
    return plan


def _artifact(store, plan: Plan, repo_path: str, event: GtoEvent, registry: str | None,
              taken: dict[str, str]) -> _Artifact | None:
    declared = _declared(repo_path, event.commit, event.name)
    type_ = str(declared.get("type") or DEFAULT_TYPE)
    view = store.view()
    what = f"GTO artifact {event.name}"
    try:
        name = canonry_name(event.name.replace(":", "-").replace("/", "-"))
        type_ = canonry_name(type_)
    except CanonryError as e:
        plan.skip(what, str(e))
        return None
    if taken.setdefault(name, event.name) != event.name:
        plan.skip(what, f"its canonry name {name} is taken by {taken[name]}")
        return None
    reg = registry
    if reg is None:
        try:
            view.registry(type_)
            reg = type_
        except NotFound:
            reg = "model"
    if not accepts(view.registry(reg), type_):
        plan.skip(what, f"registry {reg} does not accept type {type_!r} (choose one that does with --registry)")
        return None
    address = f"{reg}/{name}"
    try:
        coll = store.collection(address)
    except NotFound:
        coll = None
    if coll is not None and coll.type != type_:
        plan.skip(what, f"collection {address} holds type {coll.type!r}, not {type_!r}")
        return None
    return _Artifact(name=name, address=address, type=type_, exists=coll is not None)


def _plan_event(store, plan: Plan, repo_path: str, registry, art: _Artifact, event: GtoEvent,
                replay: bool) -> bool:
    """Follow `event` in the plan's picture of GTO's state, and add what replays it (`replay`).
    Returns whether the event changes anything."""
    reg = art.address.split("/")[0]
    actor = event.tagger.actor
    what = f"tag {event.tag}"
    if event.action == "register":
        art.registered[event.version] = event.commit
        if replay:
            plan.need(reg, actor, "link")
            if not art.exists:
                plan.need(reg, actor, "collection")
            plan.add(f"{event.tag}: link a new version of {art.address} (GTO {event.name} {event.version} at "
                     f"{event.commit[:7]}, by {actor}, {iso(event.time)})",
                     "version" if art.exists else "collection+version",
                     partial(_register, store, repo_path, art.address, art.type, event, event.version,
                             not art.exists))
        art.exists = True
    elif event.action == "deregister":
        if event.version not in art.registered:
            plan.skip(what, f"{event.name} {event.version} is not registered then: nothing to change")
            return False
        art.registered.pop(event.version, None)
        art.stages = {s: v for s, v in art.stages.items() if v != event.version}
        if replay:
            plan.need(reg, actor, "unlink")
            plan.add(f"{event.tag}: unlink {art.address} (GTO {event.name} {event.version})", "unlink",
                     partial(_deregister, store, art.address, event))
    elif event.action in ("assign", "unassign"):
        try:
            check_alias(event.stage)
        except CanonryError as e:
            plan.skip(what, f"stage {event.stage}: {e}")
            return False
        version = next((v for v, c in reversed(art.registered.items()) if c == event.commit), None)
        implicit = version is None
        if implicit:  # a stage on a commit no version was registered at: GTO names it by the commit
            version = event.commit
            art.registered[version] = event.commit
        protected = event.stage in store.registry(reg).protected_aliases
        if event.action == "assign":
            art.stages[event.stage] = version
            if replay:
                plan.need(reg, actor, "protected-alias" if protected else "alias")
                if implicit:
                    plan.need(reg, actor, "link")
                    if not art.exists:
                        plan.need(reg, actor, "collection")
                plan.add(f"{event.tag}: set alias {event.stage} on {art.address} (GTO {event.name} "
                         f"{version[:7] if implicit else version}{', a new version' if implicit else ''}, "
                         f"by {actor}, {iso(event.time)})",
                         "alias" if art.exists and not implicit else
                         ("alias+version" if art.exists else "collection+version+alias"),
                         partial(_assign, store, repo_path, art.address, art.type, event, version, implicit,
                                 not art.exists))
            art.exists = True
        else:
            if art.stages.get(event.stage) != version:
                plan.skip(what, f"stage {event.stage} is not on {event.name} {version} then (GTO unassigns it "
                                "from an older version): nothing to change")
                return False
            del art.stages[event.stage]
            if replay:
                plan.need(reg, actor, "protected-alias" if protected else "alias")
                plan.add(f"{event.tag}: remove alias {event.stage} from {art.address} (GTO {event.name} "
                         f"{version}, by {actor}, {iso(event.time)})", "alias", partial(_unassign, store, art.address, event, version))
    elif event.action == "deprecate" and replay:
        plan.need(reg, actor, "tag")
        plan.add(f"{event.tag}: tag {art.address} deprecated", "tag", partial(_deprecate, store, art.address, event))
    return True


def _transaction(store, event: GtoEvent):
    return store.transaction(actor=event.tagger, at=event.time, message=SUBJECT + event.tag)


def _files(repo_path: str, event: GtoEvent, version: str, into: str) -> dict:
    """Write into `into` the artifact's files at the event's commit (when git holds them) and
    the registration record; return the metadata `gto` of the version."""
    from dulwich.object_store import tree_lookup_path
    from dulwich.objects import Blob, Tree
    from dulwich.repo import Repo

    declared = _declared(repo_path, event.commit, event.name)
    folder = event.name.rpartition(":")[0]
    path = str(declared.get("path") or "")
    full = "/".join(p for p in (folder, path) if p).strip("/")
    found = False
    if full and not declared.get("virtual") and ".." not in full.split("/"):
        with Repo(repo_path) as repo:
            try:
                _, sha = tree_lookup_path(repo.__getitem__, _tree_of(repo, event.commit), full.encode())
                obj = repo[sha]
            except KeyError:
                obj = None
            if isinstance(obj, Blob):
                _write(os.path.join(into, os.path.basename(full)), obj.data)
                found = True
            elif isinstance(obj, Tree):
                base = os.path.join(into, os.path.basename(full))
                for entry in repo.object_store.iter_tree_contents(obj.id):
                    blob = repo[entry.sha]
                    if isinstance(blob, Blob):
                        _write(os.path.join(base, *entry.path.decode().split("/")), blob.data)
                        found = True
    meta: dict[str, Any] = {"name": event.name, "version": version, "commit": event.commit, "tag": event.tag,
                            "path": path or None, "message": event.message or None,
                            "files_in_git": found}
    for key in ("labels", "custom", "virtual"):
        if declared.get(key) is not None:
            meta[key] = declared[key]
    meta = {k: v for k, v in meta.items() if v is not None}
    _write(os.path.join(into, STUB_FILE), (json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n").encode())
    return json.loads(json.dumps(meta, default=str))


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _log_version(tx, repo_path: str, address: str, type_: str, event: GtoEvent, version: str, create: bool):
    name = address.split("/", 1)[1]
    declared = _declared(repo_path, event.commit, event.name)
    description = str(declared.get("description") or "")
    if create and not _collection_exists(tx, address):
        tx.create_collection(address, type_, description=description)
    with tempfile.TemporaryDirectory(prefix="canonry-gto-") as tmp:
        meta = _files(repo_path, event, version, tmp)
        av = tx.log_artifact(tmp, name, type_, metadata={"gto": meta}, description=description,
                             producer={"actor": event.tagger.actor, "git_commit": event.commit,
                                       "command": f"gto tag {event.tag}"})
    return tx.link(av.address, address, description=event.message)


def _collection_exists(tx, address: str) -> bool:
    from canonry import model as m

    reg, _, name = address.partition("/")
    return tx.view().read(m.collection_file(reg, name)) is not None


def _register(store, repo_path, address, type_, event: GtoEvent, version: str, create: bool) -> None:
    with _transaction(store, event) as tx:
        _log_version(tx, repo_path, address, type_, event, version, create)


def _link_of(store, address: str, event: GtoEvent, version: str) -> str | None:
    """The link (vN) of `address` whose artifact version is GTO version `version` (newest first)."""
    name = address.split("/", 1)[1]
    by_artifact = {}
    for link in store.versions(address):
        by_artifact[link.artifact] = link.version
    for av in reversed(store.artifact_versions(name)):
        meta = av.metadata.get("gto") if isinstance(av.metadata, dict) else None
        if isinstance(meta, dict) and meta.get("name") == event.name and meta.get("version") == version \
                and av.address in by_artifact:
            return by_artifact[av.address]
    return None


def _deregister(store, address: str, event: GtoEvent) -> None:
    link = _link_of(store, address, event, event.version)
    if link is None:
        return
    with _transaction(store, event) as tx:
        tx.unlink(f"{address}:{link}")


def _assign(store, repo_path, address, type_, event: GtoEvent, version: str, implicit: bool, create: bool) -> None:
    link = None if implicit else _link_of(store, address, event, version)
    with _transaction(store, event) as tx:
        if link is None:
            link = _log_version(tx, repo_path, address, type_, event, version, create).version
        tx.set_alias(f"{address}:{link}", event.stage)


def _unassign(store, address: str, event: GtoEvent, version: str) -> None:
    link = _link_of(store, address, event, version)
    if link is None or store.collection(address).aliases.get(event.stage) != link:
        return
    with _transaction(store, event) as tx:
        tx.remove_alias(address, event.stage)


def _deprecate(store, address: str, event: GtoEvent) -> None:
    with _transaction(store, event) as tx:
        tx.tag(address, "deprecated")
