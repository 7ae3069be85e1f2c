"""`canonry validate`: the CI gate. Check every commit of BASE..HEAD, or the whole store.

Range mode checks each commit reachable from HEAD and not from BASE (both sides of merges).
Per commit, only what the commit touched is checked, plus the few records those files
reference, so validating a long branch of a big store stays fast.

Whole-store mode (no range) checks two things. The state at the head, as the diff from an
empty tree: every file is "touched", so every file is parsed and every reference followed
(findings name no commit). And the history: every commit reachable from the head (first
parents and merged-in sides alike) against its parent, as a range from the root would, but by
the rules that judge a change rather than a state (HISTORY_RULES: rule_history, rule_roles).
So a change made without the role, or a logged version rewritten, is found however the state
looks today; a state that was broken for a while and repaired since is not a finding of the
store as it stands (the range that brought it in was the time to catch it).

A merge commit is judged like any commit, on what it does itself:
- its state: the files it changes against its first parent are checked like any commit's, so
  two valid sides that merge into an invalid state (an alias kept by one side on a link the
  other side removed) are an `alias-target` finding at the merge;
- policies see its events against the first parent: what the merge brings into the branch;
- roles (rule_roles, MergeSides): against EACH parent, under the rules in force at that
  parent, the merger's own changes need the merger's role. A change against a parent is the
  merger's own when its value (an alias, a link, a tag list, a settings field, a removed
  registry or collection) is in no parent (a conflict resolved a third way, an edit slipped
  into the merge), or is another parent's value that no side of history made (taking an old
  value back over a parent's change). A value brought in unchanged from a parent whose side
  changed it was made by commits on that side: judged at those commits when they are in the
  range, and part of BASE (already accepted) when they are not.

Rules (each finding carries one of these ids):

    schema             a store file is not valid YAML (duplicate keys included) or not valid
                       against its JSON Schema
    unknown-file       a file under registries/ or artifacts/ that is not part of the layout
    layout             canonry.yaml missing; a file whose parent record is missing (a link or
                       aliases.yaml without collection.yaml, a collection without registry.yaml,
                       a version without artifact.yaml)
    alias-target       an alias names a link that does not exist in its collection
    alias-name         an alias uses a reserved name (`latest`, `v<digits>`)
    link-target        a link names an artifact version that does not exist
    link-digest        a link's digest differs from the artifact version's
    collection-type    a link's artifact type is not the collection's type; a collection's type changed
    type-accepted      the registry does not accept the collection's type
    artifact-type      a version's type is not its artifact's type; an artifact's type changed
    input-target       a version's inputs name an artifact version that does not exist
    manifest           a version's manifest lists a path `get` must not write: absolute, with an
                       empty, `.` or `..` segment, a backslash or a control character, too long or
                       too deep, twice, or both a file and a folder (files/manifest.py has the rule)
    version-immutable  a logged artifact version was modified or deleted
    link-renumbered    an existing link was re-pointed (artifact or digest changed), or a new
                       link reuses a number the collection had already issued
    types-shrunk       a registry's accepted types lost a type
    counter-decreased  a collection's next_version went down
    counter-behind     a collection's next_version is not above every present link number
    role               the author lacked, at the parent commit, the role a change needs (a
                       registry role; a store admin for canonry.yaml and for the store's plugins/)
    policy             a check_change implementation (policy plugin) refused the commit
    unsigned           (--require-signed) a commit has no signature that `git verify-commit` accepts
    signer             (--require-signed) a commit is validly signed, but with a key that is not
                       its author's (see signature_findings)
    required-plugin    a plugin the store's canonry.yaml lists in `required_plugins` is not
                       loaded (so its policy was not asked); reported once, for the store

Policies: plugins are loaded from the built-in folder, installed entry points and an explicit
`--plugins-dir` only. The store's own plugins/*.py are loaded only with
`trust_local_plugins=True`, and then from the store branch head (never from the branch under
review), if its canonry.yaml trusts them; `required_plugins` is read there too.
The policies in force are the reviewed ones: in range mode the policy plugins see the commit's
state, except that the `automations` of canonry.yaml and of every registry.yaml are read from
BASE (a branch can neither switch a policy off nor add one for its own commits). With a single
revision (no `..`), that commit's parent configures the policies; in whole-store mode, the head
itself, and the events are those that would build the whole head state from nothing.

Extending: RULES is the list of checks run for each commit. A rule is `rule(ctx)` taking a
CommitCheck and yielding Findings (or calling `ctx.add`). Governance adds its rule
("the author held the needed role at the parent commit") by appending to RULES: the context
already carries the author, the parent commit and a View of it (`ctx.parent_view`). A rule
that judges changes, and so should also run over the whole history, goes in HISTORY_RULES too.
"""
from __future__ import annotations

import copy
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from canonry import model as m
from canonry.errors import CanonryError, SchemaError
from canonry.files.manifest import manifest_problems
from canonry.names import LATEST, NAME_RE, VERSION_RE
from canonry.ops import accepts
from canonry.view import View

__all__ = [
    "HISTORY_RULES",
    "RULES",
    "Change",
    "CommitCheck",
    "Finding",
    "Loader",
    "MergeSides",
    "PolicyView",
    "Report",
    "layout_kind",
    "load_policy_plugins",
    "rule_artifacts",
    "rule_collections",
    "rule_files",
    "rule_history",
    "rule_links",
    "rule_parents",
    "rule_policies",
    "rule_roles",
    "signature_findings",
    "validate",
]

if TYPE_CHECKING:
    from canonry.automation.plugins import Plugins

_VERSION_FILE = re.compile(r"^v(0|[1-9][0-9]*)\.yaml$")
_RESERVED_ALIAS = re.compile(r"^v[0-9]+$")
_INVALID = object()  # a record that could not be parsed or validated (reported by the schema rule)


@dataclass(frozen=True)
class Finding:
    """One problem: which commit (None in whole-store mode), which store file, which rule, why."""

    commit: str | None
    path: str
    rule: str
    message: str

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        where = self.commit[:10] if self.commit else "store"
        return f"{where} {self.path}: {self.rule}: {self.message}"


class Report(list):
    """The findings (a list of Finding), plus what was checked."""

    def __init__(self, findings=(), checked_commits: int = 0, head: str | None = None,
                 rev_range: str | None = None):
        super().__init__(findings)
        self.checked_commits = checked_commits
        self.head = head
        self.rev_range = rev_range

    @property
    def ok(self) -> bool:
        return not self

    def to_dict(self) -> dict:
        return {"ok": self.ok, "checked_commits": self.checked_commits,
                "findings": [f.to_dict() for f in self]}


@dataclass
class Change:
    """One file changed by the commit: (mode, sha) before and after, None when absent."""

    path: str
    old: tuple[int, bytes] | None
    new: tuple[int, bytes] | None

    @property
    def added(self) -> bool:
        return self.old is None and self.new is not None

    @property
    def deleted(self) -> bool:
        return self.new is None


class Loader:
    """Parses and validates records by blob id; remembers failures so each is parsed once."""

    def __init__(self, store):
        self.store = store
        self._errors: dict[tuple[bytes, str], str] = {}

    def load(self, sha: bytes, path: str, kind: str):
        """The record, or _INVALID (see error())."""
        key = (sha, kind)
        if key in self._errors:
            return _INVALID
        try:
            return self.store.read_record(sha, path)
        except SchemaError as e:
            self._errors[key] = _strip_path(str(e), path)
        except Exception as e:  # an unreadable blob, a decoding error: never an exception out of validate
            self._errors[key] = f"cannot read: {type(e).__name__}: {' '.join(str(e).split())}"
        return _INVALID

    def error(self, sha: bytes, kind: str) -> str | None:
        return self._errors.get((sha, kind))

    def read_or_none(self, sha: bytes, path: str):
        """For events.diff_events: a record, or None for a broken or unknown file (as if absent:
        a commit that repairs a broken file then shows everything the file holds as added)."""
        kind = layout_kind(path)
        rec = self.load(sha, path, kind) if kind else None
        return None if rec is _INVALID else rec


@dataclass
class CommitCheck:
    """Everything a rule needs about one commit (or about the whole store)."""

    store: Any  # the Store: the facade above this layer, so not imported here
    loader: Loader
    commit: bytes | None  # the commit whose state is checked
    parent: bytes | None  # what it is compared with (None: a root commit, or whole-store mode)
    label: str | None  # commit hex named by findings; None in whole-store mode
    changes: list[Change]
    policy_config: bytes | None  # commit whose automations (policies) are in force
    plugins: Plugins | None  # with the check_change implementations to run
    whole: bool = False
    findings: list[Finding] = field(default_factory=list)
    _seen: set = field(default_factory=set, repr=False)

    def __post_init__(self):
        self.storage = self.store.storage
        self.new_root = self.storage.root_tree(self.commit)
        self.old_root = self.storage.root_tree(self.parent)
        self._view = self._parent_view = None
        self.by_path = {c.path: c for c in self.changes}

    # ---- who and when --------------------------------------------------------------------------
    @property
    def commit_object(self):
        return self.storage.commit(self.commit) if self.commit is not None else None

    @property
    def author(self) -> str:
        """The author's email (how canonry names actors)."""
        from canonry.automation.events import commit_actor_time

        return commit_actor_time(self.commit_object)[0]

    # ---- state ---------------------------------------------------------------------------------
    @property
    def view(self) -> View:
        if self._view is None:
            self._view = View(self.storage, self.commit, self.store.cache)
        return self._view

    @property
    def parent_view(self) -> View | None:
        """The store at the parent commit: the rules in force when the commit was made."""
        if self.parent is None:
            return None
        if self._parent_view is None:
            self._parent_view = View(self.storage, self.parent, self.store.cache)
        return self._parent_view

    def entry(self, path: str, old: bool = False) -> tuple[int, bytes] | None:
        return self.storage.lookup(self.old_root if old else self.new_root, path)

    def exists(self, path: str, old: bool = False) -> bool:
        return self.entry(path, old) is not None

    def record(self, path: str, old: bool = False):
        """The parsed record at the commit (or its parent): None when absent, _INVALID when broken."""
        entry = self.entry(path, old)
        if entry is None or not stat.S_ISREG(entry[0]):
            return None
        return self.loader.load(entry[1], path, layout_kind(path) or "other")

    def names(self, path: str) -> list[str]:
        return [n for n, _, _ in self.storage.listdir(self.new_root, path)]

    def add(self, path: str, rule: str, message: str) -> None:
        self.report(Finding(self.label, path, rule, message))

    def report(self, finding: Finding) -> None:
        if finding not in self._seen:
            self._seen.add(finding)
            self.findings.append(finding)

    # ---- what the commit touched -------------------------------------------------------------
    def touched(self, kind: str) -> list[Change]:
        return [c for c in self.changes if layout_kind(c.path) == kind]

    def touched_collections(self) -> list[tuple[str, str]]:
        out: dict = {}
        for c in self.changes:
            parts = c.path.split("/")
            if parts[0] == m.REGISTRIES and len(parts) >= 4 and layout_kind(c.path) is not None:
                out[(parts[1], parts[2])] = None
        return list(out)


# ---- the layout ---------------------------------------------------------------------------------
def _name_ok(name: str) -> bool:
    return bool(NAME_RE.fullmatch(name)) and ".." not in name


def layout_kind(path: str) -> str | None:
    """The schema kind of a store path, stricter than model.kind_of_path: names must be valid
    and version files must be v<N>.yaml. None: not a canonry file (an unknown file when it is
    under registries/ or artifacts/)."""
    parts = path.split("/")
    if path == m.STORE_FILE:
        return "store"
    if parts[0] == m.REGISTRIES:
        if len(parts) == 3 and parts[2] == "registry.yaml" and _name_ok(parts[1]):
            return "registry"
        if len(parts) in (4, 5) and _name_ok(parts[1]) and _name_ok(parts[2]):
            if len(parts) == 4 and parts[3] in ("collection.yaml", "aliases.yaml"):
                return parts[3][:-5]
            if len(parts) == 5 and parts[3] == "links" and _VERSION_FILE.match(parts[4]):
                return "link"
        return None
    if parts[0] == m.ARTIFACTS and len(parts) == 3 and _name_ok(parts[1]):
        if parts[2] == "artifact.yaml":
            return "artifact"
        if _VERSION_FILE.match(parts[2]):
            return "artifact_version"
    return None


def _in_layout_area(path: str) -> bool:
    return path.split("/")[0] in (m.REGISTRIES, m.ARTIFACTS)


def _strip_path(message: str, path: str) -> str:
    return message[len(path) + 2:] if message.startswith(path + ": ") else message


def _ok(rec) -> bool:
    return rec is not None and rec is not _INVALID


def _num(version: str) -> int:
    return int(version[1:])


# ---- rules --------------------------------------------------------------------------------------
def rule_files(ctx: CommitCheck) -> None:
    """schema, unknown-file, layout (canonry.yaml present)."""
    for c in ctx.changes:
        if c.deleted:
            if c.path == m.STORE_FILE:
                ctx.add(c.path, "layout", "canonry.yaml was deleted: the store has no settings")
            continue
        kind = layout_kind(c.path)
        mode = c.new[0]
        if _in_layout_area(c.path) and not stat.S_ISREG(mode):
            what = "a symlink" if stat.S_ISLNK(mode) else "a submodule" if mode == 0o160000 else "not a file"
            ctx.add(c.path, "unknown-file", f"{what}: the store layout holds regular files only")
            continue
        if kind is None:
            if _in_layout_area(c.path):
                ctx.add(c.path, "unknown-file", "not part of the store layout " + _expected(c.path))
            continue
        if ctx.loader.load(c.new[1], c.path, kind) is _INVALID:
            ctx.add(c.path, "schema", ctx.loader.error(c.new[1], kind) or "invalid")
    if ctx.whole and not ctx.exists(m.STORE_FILE):
        ctx.add(m.STORE_FILE, "layout", "canonry.yaml is missing: the store has no settings")


def _expected(path: str) -> str:
    parts = path.split("/")
    if parts[0] == m.ARTIFACTS:
        return "(expected artifacts/<artifact>/artifact.yaml or artifacts/<artifact>/v<K>.yaml)"
    return ("(expected registries/<registry>/registry.yaml, .../<collection>/collection.yaml, "
            ".../<collection>/aliases.yaml or .../<collection>/links/v<N>.yaml)")


def rule_parents(ctx: CommitCheck) -> None:
    """layout: every record's parent record exists; a deleted parent record leaves nothing behind."""
    for c in ctx.changes:
        kind = layout_kind(c.path)
        parts = c.path.split("/")
        if not c.deleted:
            need = None
            if kind == "collection":
                need = m.registry_file(parts[1])
            elif kind in ("aliases", "link"):
                need = m.collection_file(parts[1], parts[2])
            elif kind == "artifact_version":
                need = m.artifact_file(parts[1])
            if need and not ctx.exists(need):
                ctx.add(c.path, "layout", f"{need} is missing")
        elif kind in ("registry", "collection", "artifact"):
            folder = c.path.rsplit("/", 1)[0]
            left = ctx.names(folder)
            if left:
                ctx.add(c.path, "layout", f"deleted, but {folder}/ still holds {', '.join(sorted(left)[:3])}"
                        + (" …" if len(left) > 3 else ""))


def rule_history(ctx: CommitCheck) -> None:
    """What may never change once committed: versions, links, types, counters."""
    for c in ctx.changes:
        if c.old is None:
            continue
        kind = layout_kind(c.path)
        if kind is None:
            continue
        before = ctx.loader.load(c.old[1], c.path, kind) if stat.S_ISREG(c.old[0]) else None
        after = ctx.loader.load(c.new[1], c.path, kind) if c.new and stat.S_ISREG(c.new[0]) else None
        parts = c.path.split("/")
        if kind == "artifact_version":
            ref = f"{parts[1]}:{parts[2][:-5]}"
            if c.deleted:
                ctx.add(c.path, "version-immutable", f"logged artifact version {ref} was deleted")
            elif _marked_deleted(before, after):
                pass  # `artifact delete`: the record stays, marked (rule_links, rule_roles judge it)
            elif _ok(before) and _ok(after) and before != after:
                fields = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
                ctx.add(c.path, "version-immutable",
                        f"logged artifact version {ref} was modified ({', '.join(fields)})")
            elif (before is _INVALID or after is _INVALID) and c.old[1] != c.new[1]:
                ctx.add(c.path, "version-immutable", f"logged artifact version {ref} was modified")
        if not (_ok(before) and _ok(after)):
            continue
        if kind == "link":
            where = f"{parts[1]}/{parts[2]}:{parts[4][:-5]}"
            for key in ("artifact", "digest"):
                if before.get(key) != after.get(key):
                    ctx.add(c.path, "link-renumbered",
                            f"existing link {where} was re-pointed: {key} {before.get(key)} -> {after.get(key)}")
        elif kind == "collection":
            where = f"{parts[1]}/{parts[2]}"
            if before["type"] != after["type"]:
                ctx.add(c.path, "collection-type",
                        f"collection {where} changed type {before['type']!r} -> {after['type']!r}")
            if after["next_version"] < before["next_version"]:
                ctx.add(c.path, "counter-decreased", f"next_version of {where} went down: "
                        f"{before['next_version']} -> {after['next_version']}")
        elif kind == "registry":
            old, new = before["types"], after["types"]
            if old == "all" and new != "all":
                ctx.add(c.path, "types-shrunk", f"registry {parts[1]} accepted all types; now only "
                        f"{', '.join(new)}")
            elif old != "all" and new != "all" and (lost := [t for t in old if t not in new]):
                ctx.add(c.path, "types-shrunk", f"registry {parts[1]} no longer accepts {', '.join(lost)}")
        elif kind == "artifact" and before["type"] != after["type"]:
            ctx.add(c.path, "artifact-type",
                    f"artifact {parts[1]} changed type {before['type']!r} -> {after['type']!r}")


def _marked_deleted(before, after) -> bool:
    """Whether an artifact version record changed only by being marked deleted."""
    if not (_ok(before) and _ok(after)) or before.get("deleted_at") or not after.get("deleted_at"):
        return False
    return {k: v for k, v in after.items() if k not in _DELETE_MARK} == before


_DELETE_MARK = ("deleted_at", "deleted_by")


def rule_links(ctx: CommitCheck) -> None:
    """link-target, link-digest, collection-type, link-renumbered (a reused number)."""
    for c in ctx.touched("link"):
        if c.deleted:
            continue
        link = ctx.record(c.path)
        if not _ok(link):
            continue
        parts = c.path.split("/")
        reg, coll, version = parts[1], parts[2], parts[4][:-5]
        where = f"{reg}/{coll}:{version}"
        if c.added and ctx.parent is not None:
            before = ctx.record(m.collection_file(reg, coll), old=True)
            if _ok(before) and _num(version) < before["next_version"]:
                ctx.add(c.path, "link-renumbered",
                        f"new link {where} reuses a number already issued (next_version was "
                        f"{before['next_version']}): link numbers are never reused")
        name, _, av_version = link["artifact"].partition(":")
        av_path = m.artifact_version_file(name, av_version)
        av = ctx.record(av_path)
        if av is None:
            ctx.add(c.path, "link-target", f"{where} points at {link['artifact']}, which does not exist")
            continue
        if av is _INVALID:
            continue
        if av.get("deleted_at"):
            ctx.add(c.path, "link-target", f"{where} points at {link['artifact']}, which was deleted "
                    f"(by {av.get('deleted_by')} at {av['deleted_at']})")
            continue
        if av["digest"] != link["digest"]:
            ctx.add(c.path, "link-digest", f"{where} records digest {link['digest'][:19]}… but "
                    f"{link['artifact']} has {av['digest'][:19]}…")
        collection = ctx.record(m.collection_file(reg, coll))
        if _ok(collection) and collection["type"] != av["type"]:
            ctx.add(c.path, "collection-type", f"{where} links {link['artifact']} of type {av['type']!r} "
                    f"into a collection of type {collection['type']!r}")


def rule_collections(ctx: CommitCheck) -> None:
    """Per collection the commit touched: alias-target, alias-name, counter-behind, type-accepted."""
    for reg, coll in ctx.touched_collections():
        where = f"{reg}/{coll}"
        collection = ctx.record(m.collection_file(reg, coll))
        links = {n[:-5] for n in ctx.names(m.links_dir(reg, coll)) if _VERSION_FILE.match(n)}
        aliases_path = m.aliases_file(reg, coll)
        aliases = ctx.record(aliases_path)
        if _ok(aliases):
            for alias, version in aliases["aliases"].items():
                if alias == LATEST or _RESERVED_ALIAS.fullmatch(alias):
                    ctx.add(aliases_path, "alias-name", f"alias {alias!r} of {where} is reserved "
                            "(`latest` follows the newest link; v<digits> names a version)")
                if VERSION_RE.fullmatch(version) and version not in links:
                    ctx.add(aliases_path, "alias-target",
                            f"alias {alias} of {where} points at {version}, which is not linked")
        if not _ok(collection):
            continue
        path = m.collection_file(reg, coll)
        above = [v for v in links if _num(v) >= collection["next_version"]]
        if above:
            top = max(above, key=_num)
            ctx.add(path, "counter-behind", f"next_version of {where} is {collection['next_version']} "
                    f"but link {top} exists: numbers would be issued twice")
        _check_accepted(ctx, reg, coll, collection)
    for c in ctx.touched("registry"):
        if c.deleted:
            continue
        reg = c.path.split("/")[1]
        for coll in ctx.names(m.registry_dir(reg)):
            collection = ctx.record(m.collection_file(reg, coll))
            if _ok(collection):
                _check_accepted(ctx, reg, coll, collection)


def _check_accepted(ctx: CommitCheck, reg: str, coll: str, collection: dict) -> None:
    registry = ctx.record(m.registry_file(reg))
    if not _ok(registry):
        return
    if not accepts(registry, collection["type"]):
        ctx.add(m.collection_file(reg, coll), "type-accepted",
                f"registry {reg} does not accept type {collection['type']!r} of collection {reg}/{coll} "
                f"(it accepts: {', '.join(registry['types'])})")


def rule_artifacts(ctx: CommitCheck) -> None:
    """artifact-type, input-target and manifest for the artifact versions the commit added."""
    deleted = [c for c in ctx.touched("artifact_version") if c.old is not None and not c.deleted
               and _marked_deleted(ctx.record(c.path, old=True), ctx.record(c.path))]
    if deleted:  # rare: one look over every link of the state
        from canonry.ops import links_to

        state = ctx.view
        for c in deleted:
            parts = c.path.split("/")
            ref = f"{parts[1]}:{parts[2][:-5]}"
            try:
                linked = links_to(state, ref)
            except CanonryError:
                continue  # a broken file on the way has its own finding
            if linked:
                ctx.add(c.path, "link-target", f"{ref} was deleted while {', '.join(linked[:5])} "
                        f"{'link' if len(linked) > 1 else 'links'} it")
    for c in ctx.touched("artifact_version"):
        if c.deleted or c.old is not None:
            continue  # modifications are version-immutable findings already
        rec = ctx.record(c.path)
        if not _ok(rec):
            continue
        name = c.path.split("/")[1]
        ref = f"{name}:{c.path.split('/')[2][:-5]}"
        artifact = ctx.record(m.artifact_file(name))
        if _ok(artifact) and artifact["type"] != rec["type"]:
            ctx.add(c.path, "artifact-type", f"{ref} has type {rec['type']!r} but artifact {name} "
                    f"is of type {artifact['type']!r}")
        for inp in rec.get("inputs", []):
            iname, _, iversion = inp.partition(":")
            if not ctx.exists(m.artifact_version_file(iname, iversion)):
                ctx.add(c.path, "input-target", f"{ref} lists input {inp}, which does not exist")
        for path, why in manifest_problems(entry.get("path") for entry in rec["files"]):
            shown = path if not isinstance(path, str) or len(path) <= 80 else path[:77] + "..."
            ctx.add(c.path, "manifest", f"{ref} lists file {shown!r}, which `get` would not write: {why}")


def rule_policies(ctx: CommitCheck) -> Iterator[Finding]:
    """policy: each check_change implementation, with the commit's events."""
    from canonry.automation.events import commit_actor_time, diff_events

    callers = ctx.plugins.callers("check_change") if ctx.plugins is not None else []
    if not callers or not ctx.changes:
        return
    actor, when = commit_actor_time(ctx.commit_object)
    try:
        events = diff_events(ctx.storage, ctx.parent, ctx.commit, ctx.loader.read_or_none,
                             actor, when, ctx.commit.decode())
    except (TypeError, KeyError):  # an alias on a broken link file: its own finding says why
        yield Finding(ctx.label, m.STORE_FILE, "policy", "policies not evaluated for this commit: "
                      "its events cannot be told while a file it touches is broken")
        return
    if not events:
        return
    view = PolicyView(ctx.storage, ctx.commit, ctx.store.cache, ctx.policy_config)
    for plugin_name, caller in callers:  # pluggy's order, wrappers included
        reason = _ask(caller, events, ctx.store, view)
        if not reason:
            continue
        path = _event_path(events[0])
        if len(events) > 1:  # which event did it refuse? Ask about each alone to name its file.
            for event in events:
                if _ask(caller, [event], ctx.store, view):
                    path = _event_path(event)
                    break
        yield Finding(ctx.label, path, "policy", f"refused by plugin {plugin_name}: {' '.join(str(reason).split())}")


def _ask(caller, events, store, view):
    from canonry.automation.plugins import first_result

    try:
        return first_result(caller(events=events, store=store, view=view))
    except Exception as e:  # a broken policy fails closed, as at commit time
        return f"policy failed: {type(e).__name__}: {e}"


def _event_path(event) -> str:
    if event.collection:
        reg, coll = event.collection.split("/", 1)
        if event.kind.startswith("alias."):
            return m.aliases_file(reg, coll)
        if event.version:
            return m.link_file(reg, coll, event.version)
        return m.collection_file(reg, coll)
    if event.kind == "artifact.logged" and event.artifact:
        name, _, version = event.artifact.partition(":")
        return m.artifact_version_file(name, version)
    if event.registry:
        return m.registry_file(event.registry)
    return m.STORE_FILE


def rule_roles(ctx: CommitCheck) -> Iterator[Finding]:
    """role: the author held the role each change needs under the rules in force at the parent
    commit, so nobody grants themselves a role and uses it in one change. A merge commit is
    judged on its own changes, against each parent under that parent's rules (see
    `MergeSides`); what it brings in unchanged from a parent was judged at the commits that made
    it."""
    if ctx.whole or ctx.parent is None or ctx.commit is None:
        return
    parents = ctx.commit_object.parents
    if len(parents) == 1:
        if ctx.changes:
            for _key, finding in _role_findings(ctx, ctx.parent, ctx.parent_view, None):
                yield finding
        return
    sides = MergeSides(ctx, parents)
    reported: set = set()
    for parent in dict.fromkeys(parents):
        before = View(ctx.storage, parent, ctx.store.cache)
        for key, finding in _role_findings(ctx, parent, before, sides):
            if key not in reported:  # a change that is the merger's own against both parents: once
                reported.add(key)
                yield finding


def _role_findings(ctx: CommitCheck, parent: bytes, before: View,
                   sides: MergeSides | None) -> Iterator[tuple[tuple, Finding]]:
    """(key, finding) for each change of ctx.commit against `parent` that its author lacked the
    role for at `parent`. With `sides` (a merge), only the merger's own changes count."""
    from canonry import governance as g
    from canonry.automation.events import diff_events

    try:
        config = before.store_config()
    except CanonryError:
        return  # a broken canonry.yaml at the parent has its own finding
    actor = ctx.author
    at = "at the parent commit" if sides is None else f"at parent {parent.decode()[:10]} of the merge"
    if sides is None:
        changes = ctx.changes
    else:
        changes = _changes(ctx.storage, ctx.storage.root_tree(parent), ctx.new_root)
    changed = {c.path for c in changes}
    if (m.STORE_FILE in changed and config.get("admins") and actor not in config["admins"]
            and (sides is None or sides.own_settings(parent))):
        yield ("settings",), Finding(ctx.label, m.STORE_FILE, "role",
                                     f"{actor} changed the store settings but is not a store admin {at}")
    # The store's plugins/ folder is code that runs once trusted: changing it is a store admin's
    # call, like the trust switch itself in canonry.yaml.
    code = sorted(p for p in changed if p.split("/", 1)[0] == "plugins"
                  and (sides is None or sides.own(parent, p, None)))
    if code and config.get("admins") and actor not in config["admins"]:
        yield ("plugins",), Finding(ctx.label, code[0], "role",
                                    f"{actor} changed the store's plugin code ({', '.join(code[:3])}"
                                    f"{', …' if len(code) > 3 else ''}) but is not a store admin {at}")
    admins = config.get("admins") or []
    for change in changes:  # removals make no event, yet need a role too
        kind = layout_kind(change.path)
        if kind == "artifact_version" and not change.deleted and change.old is not None \
                and (sides is None or sides.own(parent, change.path, None)):
            old_rec = ctx.loader.load(change.old[1], change.path, kind)
            new_rec = ctx.record(change.path)
            if _marked_deleted(old_rec, new_rec) and actor != old_rec["created_by"] \
                    and admins and actor not in admins:
                ref = "{}:{}".format(*change.path[:-5].split("/")[1:])
                yield ("deleted", change.path), Finding(
                    ctx.label, change.path, "role",
                    f"{actor} may not delete {ref}: only its author ({old_rec['created_by']}) and store "
                    f"admins may ({actor} is neither {at})")
            continue
        if not change.deleted or kind not in ("registry", "collection"):
            continue
        if sides is not None and not sides.own(parent, change.path, None):
            continue
        parts = change.path.split("/")
        registry = parts[1]
        try:
            reg_rec = before.registry(registry)
            role = g.role_in(config, reg_rec, actor)
        except CanonryError:
            continue
        has = f"{actor} {'has ' + role if role else 'is not a member'} {at}"
        if kind == "registry":
            held = before.collection_names(registry)
            if held and not _renamed_registry(ctx, registry) and admins and actor not in admins:
                yield ("removed", change.path), Finding(
                    ctx.label, change.path, "role",
                    f"{actor} may not delete registry {registry}, which holds {len(held)} collection"
                    f"{'s' * (len(held) != 1)}: that needs a store admin ({actor} is not one {at})")
                continue
            action = "delete-registry"
        else:
            stored = before.read(m.aliases_file(registry, parts[2])) or {}
            held = [a for a in stored.get("aliases", {}) if g.is_protected(reg_rec, a)]
            action = "protected-alias" if held else "delete-collection"
        if not g.allowed(role, action):
            what = f"remove {change.path}" + (f" (holding protected {', '.join(held)})"
                                              if kind == "collection" and held else "")
            yield ("removed", change.path), Finding(
                ctx.label, change.path, "role",
                f"{actor} may not {what} in registry {registry}: that needs role {g.NEEDS[action]} ({has})")
    try:  # the changed paths are known: no second tree diff
        events = diff_events(ctx.storage, parent, ctx.commit, ctx.loader.read_or_none, actor, "",
                             ctx.commit.decode(), paths=[c.path for c in changes])
    except (TypeError, KeyError):
        return
    for whole_event in events:
        event = whole_event if sides is None else sides.own_event(parent, whole_event)
        if event is None:
            continue
        action = _action_of(event, before)
        if action is None or not event.registry:
            continue
        path = _event_path(event)
        if not before.exists(m.registry_file(event.registry)):
            continue  # a registry created by this very commit: its creator is its admin
        try:
            role = g.role_in(config, before.registry(event.registry), actor)
        except CanonryError:
            continue
        if not g.allowed(role, action):
            has = f"has {role}" if role else "is not a member"
            yield (event.kind, event.target), Finding(
                ctx.label, path, "role",
                f"{actor} may not {g.WHAT[action]} in registry {event.registry} "
                f"({event.kind} {event.target}): that needs role {g.NEEDS[action]} and "
                f"{actor} {has} {at}")


def _renamed_registry(ctx: CommitCheck, registry: str) -> bool:
    """Whether the commit moved registry `registry` to another name: a registry.yaml added by the
    commit holds the same record (same creation) as the one it removed."""
    old = ctx.record(m.registry_file(registry), old=True)
    if not _ok(old):
        return False
    for c in ctx.touched("registry"):
        if c.added and _ok(new := ctx.record(c.path)) and \
                (new["created_at"], new["created_by"]) == (old["created_at"], old["created_by"]):
            return True
    return False


class MergeSides:
    """Which changes of a merge commit are the merger's own.

    A merge M of parents P1…Pn changes, against a parent P, each thing (an alias, a link, a
    field of a settings file) whose value in M differs from its value in P. That change was
    brought in from another parent Q when M has Q's value and Q's side of history made it (Q's
    value differs from the merge base's): those commits are judged on their own. Otherwise it
    is the merger's: a value present in no parent (a conflict resolved a third way, a hand edit
    slipped into the merge), or a parent's value that no side of history changed — undoing P's
    change by taking the old value back.
    """

    def __init__(self, ctx: CommitCheck, parents: list[bytes]):
        from canonry.git.graph import merge_base

        self.ctx = ctx
        storage = ctx.storage
        self.roots = {p: storage.root_tree(p) for p in parents}
        base: bytes | None = parents[0]
        for other in parents[1:]:  # an octopus: the common base of them all
            base = merge_base(storage, base, other) if base is not None else None
        self.base_root = storage.root_tree(base) if base is not None else None

    def value(self, root, path: str, key: tuple | None):
        """What `path` holds at `root`: the file entry (key None), an alias's version (key
        ("alias", NAME)) or a top-level field (key ("field", NAME)); None when absent."""
        if root is None:
            return None
        entry = self.ctx.storage.lookup(root, path)
        if entry is None or key is None:
            return entry
        rec = self.ctx.loader.load(entry[1], path, layout_kind(path) or "other") \
            if stat.S_ISREG(entry[0]) else _INVALID
        if not isinstance(rec, dict):
            return ("unreadable", entry[1])
        kind, name = key
        if kind == "alias":
            aliases = rec.get("aliases")
            return aliases.get(name) if isinstance(aliases, dict) else None
        return rec.get(name)

    def own(self, parent: bytes, path: str, key: tuple | None) -> bool:
        """Whether the merge's change of (path, key) against `parent` is the merger's own."""
        mine = self.value(self.ctx.new_root, path, key)
        for other, root in self.roots.items():
            if other == parent:
                continue
            theirs = self.value(root, path, key)
            if theirs == mine and theirs != self.value(self.base_root, path, key):
                return False  # brought in from `other`, whose side of history made the change
        return True

    def own_settings(self, parent: bytes) -> bool:
        """Whether the merger changed a field of canonry.yaml against `parent` themselves."""
        mine = self.value(self.ctx.new_root, m.STORE_FILE, None)
        before = self.value(self.roots[parent], m.STORE_FILE, None)
        if mine is None or before is None:
            return self.own(parent, m.STORE_FILE, None)
        new = self.ctx.loader.load(mine[1], m.STORE_FILE, "store")
        old = self.ctx.loader.load(before[1], m.STORE_FILE, "store")
        if not (_ok(new) and _ok(old)):
            return self.own(parent, m.STORE_FILE, None)
        return any(self.own(parent, m.STORE_FILE, ("field", k))
                   for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k))

    def own_event(self, parent: bytes, event):
        """`event` (of the merge against `parent`) if it is the merger's own change, narrowed to
        the settings the merger changed; None when it was all brought in."""
        import dataclasses

        kind = event.kind
        if not event.collection and not event.registry:
            return event  # nothing that needs a role
        reg, _, coll = (event.collection or "").partition("/")
        if kind.startswith("alias."):
            subject: tuple = (m.aliases_file(reg, coll), ("alias", event.alias))
        elif kind in ("link.created", "link.removed"):
            subject = (m.link_file(reg, coll, event.version), None)
        elif kind == "tags.changed":
            path = m.link_file(reg, coll, event.version) if event.version else m.collection_file(reg, coll)
            subject = (path, ("field", "tags"))
        elif kind == "collection.created":
            subject = (m.collection_file(reg, coll), None)
        elif kind in ("collection.changed", "registry.changed"):
            path = m.collection_file(reg, coll) if kind == "collection.changed" else m.registry_file(event.registry)
            fields = {k: v for k, v in event.changes.items() if self.own(parent, path, ("field", k))}
            return dataclasses.replace(event, changes=fields) if fields else None
        else:
            return event
        return event if self.own(parent, *subject) else None


def _action_of(event, before: View) -> str | None:
    from canonry import governance as g

    kind = event.kind
    if kind in ("artifact.logged", "registry.created"):
        return None
    if kind.startswith("alias."):
        try:
            protected = g.is_protected(before.registry(event.registry), event.alias)
        except CanonryError:
            protected = False
        return "protected-alias" if protected else "alias"
    if kind == "link.removed":
        return "unlink"
    if kind == "registry.changed":
        return "members" if set(event.changes) <= {"members"} else "settings"
    return {"link.created": "link", "tags.changed": "tag", "collection.created": "collection",
            "collection.changed": "collection"}.get(kind)


# The checks run for every commit, in order.
RULES: list[Callable[[CommitCheck], Iterable[Finding] | None]] = [
    rule_files, rule_parents, rule_history, rule_links, rule_collections, rule_artifacts, rule_policies,
    rule_roles,
]
# Those of RULES that judge a change (who made it, what it did to what was already there) rather
# than a state: whole-store mode runs them on every commit of the history.
HISTORY_RULES: list[Callable[[CommitCheck], Iterable[Finding] | None]] = [rule_history, rule_roles]


def signature_findings(storage, commits: list[bytes]) -> list[Finding]:
    """unsigned: commits without a valid signature, verified as git verifies them
    (`git verify-commit`: gpg, or ssh with gpg.ssh.allowedSignersFile).
    signer: a valid signature made with a key that is not the author's. A signature proves who
    made a commit only if the key belongs to the commit's author (the identity roles are
    checked against): for ssh, the allowed-signers file must give the key to a principal that
    matches the author's email (`ssh-keygen -Y verify -I AUTHOR`, as git itself verifies); for
    gpg, one of the key's user ids (not revoked) must carry the author's email."""
    import shutil
    import subprocess

    from canonry.errors import InvalidInput

    git = shutil.which("git")
    if git is None:
        raise InvalidInput("--require-signed verifies signatures with the git CLI, which is not installed")
    out = []
    for commit in commits:
        done = subprocess.run([git, "--git-dir", storage.git_dir, "verify-commit", commit.decode()],
                              capture_output=True, text=True)
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["no signature"])[-1][:160]
            out.append(Finding(commit.decode(), "(signature)", "unsigned",
                               f"commit has no valid signature (git verify-commit: {why})"))
            continue
        problem = _signer_problem(git, storage, commit)
        if problem:
            out.append(Finding(commit.decode(), "(signature)", "signer", problem))
    return out


def _signer_problem(git: str, storage, commit_id: bytes) -> str | None:
    """Why the (valid) signature of a commit is not its author's, or None when it is."""
    import subprocess

    from canonry.automation.events import commit_actor_time

    commit = storage.commit(commit_id)
    author = commit_actor_time(commit)[0]
    signature = commit.gpgsig or b""
    # who git says signed it: the principal (ssh) or user id (gpg), and the key's fingerprint
    shown = subprocess.run([git, "--git-dir", storage.git_dir, "log", "-1", "--format=%GS%x00%GK%x00%GP",
                            commit_id.decode()], capture_output=True, text=True).stdout.strip()
    signer, _, rest = shown.partition("\0")
    key, _, primary = rest.partition("\0")
    if signature.startswith(b"-----BEGIN SSH SIGNATURE-----"):
        if _ssh_key_is_authors(git, storage, commit, signature, author):
            return None
        return (f"signed with the key of {signer or 'someone else'} ({key}), which the allowed signers "
                f"file does not give to the author {author}")
    if signature.startswith(b"-----BEGIN PGP SIGNATURE-----"):
        if _gpg_key_is_authors(git, storage, primary or key, author):
            return None
        return (f"signed with the gpg key {primary or key} of {signer or 'someone else'}, none of whose "
                f"user ids is the author {author}")
    return f"signed with an x509 or unknown kind of key ({key or 'unknown'}): cannot tell that it is the author's"


def _ssh_key_is_authors(git: str, storage, commit, signature: bytes, author: str) -> bool:
    import os
    import subprocess
    import tempfile
    import time

    allowed = subprocess.run([git, "--git-dir", storage.git_dir, "config", "--path", "--get",
                              "gpg.ssh.allowedSignersFile"], capture_output=True, text=True).stdout.strip()
    if not allowed:
        return False
    # the key's validity is judged at the commit's time, as git judges it
    when = time.strftime("%Y%m%d%H%M%S", time.localtime(commit.commit_time))
    with tempfile.TemporaryDirectory(prefix="canonry-sig-") as tmp:
        sig = os.path.join(tmp, "commit.sig")
        with open(sig, "wb") as f:
            f.write(signature)
        done = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", allowed, "-I", author, "-n", "git",
                               "-s", sig, f"-Overify-time={when}"],
                              input=commit.raw_without_sig(), capture_output=True)
    return done.returncode == 0


def _gpg_key_is_authors(git: str, storage, fingerprint: str, author: str) -> bool:
    import subprocess

    if not fingerprint:
        return False
    program = subprocess.run([git, "--git-dir", storage.git_dir, "config", "--get", "gpg.program"],
                             capture_output=True, text=True).stdout.strip() or "gpg"
    listed = subprocess.run([program, "--batch", "--with-colons", "--list-keys", fingerprint],
                            capture_output=True, text=True).stdout
    wanted = f"<{author.lower()}>"
    for line in listed.splitlines():
        fields = line.split(":")
        if (fields[0] == "uid" and len(fields) > 9 and fields[1] not in ("r", "e", "i")  # not revoked
                and (wanted in fields[9].lower() or fields[9].lower() == author.lower())):
            return True
    return False


# ---- the policies in force -----------------------------------------------------------------------
class PolicyView(View):
    """The store at a commit, but with the automations (hence policies) of canonry.yaml and of
    every registry.yaml as they are at `config_commit`: the reviewed configuration."""

    def __init__(self, storage, commit, cache, config_commit):
        super().__init__(storage, commit, cache)
        self.config_commit = config_commit
        self._config_view = View(storage, config_commit, cache) if config_commit != commit else None

    def read(self, path: str, copy_: bool = True):
        rec = super().read(path, copy_=copy_)
        if self._config_view is None or rec is None or layout_kind(path) not in ("store", "registry"):
            return rec
        rec = dict(rec)  # never change a cached record
        base = self._config_view.read(path, copy_=False)
        if base is not None and "automations" in base:
            rec["automations"] = copy.deepcopy(base["automations"])
        else:
            rec.pop("automations", None)
        return rec


# ---- running --------------------------------------------------------------------------------------
def _changes(storage, old_root, new_root) -> list[Change]:
    """The files that differ between two trees. Read through the storage's own object reader
    and tree cache, not dulwich's object store: whole-store validate diffs every commit of the
    history, and most of its time went to looking objects up pack by pack."""
    out: list[Change] = []
    _diff_trees(storage, old_root, new_root, "", out)
    return sorted(out, key=lambda c: c.path.encode())  # the order of git's (and dulwich's) tree diff


def _diff_trees(storage, old: bytes | None, new: bytes | None, prefix: str, out: list[Change]) -> None:
    if old == new:
        return
    before = storage.tree(old) if old else {}
    after = storage.tree(new) if new else {}
    for name in set(before) | set(after):  # a Tree iterates its names, unsorted (cheap)
        o = tuple(before[name]) if name in before else None
        n = tuple(after[name]) if name in after else None
        if o == n:
            continue
        path = prefix + name.decode("utf-8", "replace")
        o_dir = o is not None and stat.S_ISDIR(o[0])
        n_dir = n is not None and stat.S_ISDIR(n[0])
        if o_dir or n_dir:
            _diff_trees(storage, o[1] if o_dir else None, n[1] if n_dir else None, path + "/", out)
        o_file = o if o is not None and not o_dir else None
        n_file = n if n is not None and not n_dir else None
        if o_file != n_file:
            out.append(Change(path, o_file, n_file))


def _commits(storage, rev_range: str) -> tuple[list[bytes], bytes | None, bytes]:
    """(commits oldest first, base, head) of BASE..HEAD; a single REV is just that commit."""
    from dulwich.walk import ORDER_TOPO, Walker

    if ".." not in rev_range:
        head = storage.resolve_rev(rev_range)
        return [head], None, head
    if "..." in rev_range:
        from canonry.errors import InvalidInput

        raise InvalidInput(f"{rev_range}: use BASE..HEAD (two dots)")
    base_rev, _, head_rev = rev_range.partition("..")
    base = storage.resolve_rev(base_rev) if base_rev else None
    head = storage.resolve_rev(head_rev) if head_rev else storage.head()
    if head is None:
        from canonry.errors import NotFound

        raise NotFound("revision", storage.branch)
    walker = Walker(storage.repo.object_store, [head], exclude=[base] if base else None,
                    order=ORDER_TOPO, reverse=True)
    return [entry.commit.id for entry in walker], base, head


def load_policy_plugins(store, head: bytes | None = None, trust_local_plugins: bool = False):
    """Built-in and installed plugins (and an explicit --plugins-dir); the store's own plugins
    only when trusted both here and by canonry.yaml. Those, the trust switch and the required
    plugins come from the store branch head (automation/trust.py), never from `head`, the
    commit under review: a branch cannot grant itself trust."""
    from canonry.automation import plugins
    from canonry.automation.trust import trusted_view

    del head  # kept for callers: where the range ends has no say in what runs
    return plugins.load(trusted_view(store.storage, store.cache), store.plugins_dir, builtin=True,
                        entry_points=True, local=trust_local_plugins,
                        local_skipped="it is in the store's plugins/ folder, which validate loads "
                                      "only with --trust-local-plugins")


def validate(store, rev_range: str | None = None, trust_local_plugins: bool = False,
             rules=None, require_signed: bool = False) -> Report:
    """Check every commit of `rev_range` (BASE..HEAD) or, when None, the whole store at its head.

    Returns a Report: a list of Finding (empty when all is well) with `checked_commits`."""
    storage = store.storage
    loader = Loader(store)
    rules = RULES if rules is None else rules
    if rev_range:
        commits, base, head = _commits(storage, rev_range)
    else:
        head = storage.head()
        if head is None:
            from canonry.errors import NotAStore

            raise NotAStore(f"not a canonry store: branch {storage.branch} has no commits")
        commits, base = [head], None
    plugins = load_policy_plugins(store, head, trust_local_plugins)
    report = Report(head=head.decode(), rev_range=rev_range)
    # A required policy that is not loaded cannot vouch for any commit.
    report += [Finding(None, m.STORE_FILE, "required-plugin", problem) for problem in plugins.missing_required()]
    for commit in commits:
        if rev_range:
            parents = storage.commit(commit).parents
            parent = parents[0] if parents else None
            config = base if base is not None else parent
            label = commit.decode()
        else:
            parent, config, label = None, commit, None
        ctx = CommitCheck(store=store, loader=loader, commit=commit, parent=parent, label=label,
                          changes=_changes(storage, storage.root_tree(parent), storage.root_tree(commit)),
                          policy_config=config if config is not None else commit, plugins=plugins,
                          whole=not rev_range)
        report += _run_rules(ctx, rules)
    if not rev_range:
        # The head's state is checked above; now every change that built it, each commit against
        # its first parent (a merge also against its others: rule_roles), by the rules that judge
        # a change rather than a state.
        commits = _history(storage, head)
        history_rules = [rule for rule in rules if rule in HISTORY_RULES]
        for commit in commits:
            parents = storage.commit(commit).parents
            parent = parents[0] if parents else None
            ctx = CommitCheck(store=store, loader=loader, commit=commit, parent=parent, label=commit.decode(),
                              changes=_changes(storage, storage.root_tree(parent), storage.root_tree(commit)),
                              policy_config=parent if parent is not None else commit, plugins=plugins)
            report += _run_rules(ctx, history_rules)
    if require_signed:
        report += signature_findings(storage, commits)
    report.checked_commits = len(commits)
    return report


def _run_rules(ctx: CommitCheck, rules) -> list[Finding]:
    for rule in rules:
        try:
            for finding in rule(ctx) or ():  # a rule yields findings or calls ctx.add
                ctx.report(finding)
        except CanonryError as e:  # a rule tripping over a broken record: report, go on
            ctx.add(m.STORE_FILE, getattr(rule, "__name__", "rule").replace("rule_", ""),
                    f"could not check: {e}")
    return ctx.findings


def _history(storage, head: bytes) -> list[bytes]:
    """Every commit reachable from `head` (first parents and merged-in sides), each after its
    parents. A depth-first walk through the storage's commit cache (dulwich's Walker reads each
    commit through its own object store, which took most of the time on a long history)."""
    order: list[bytes] = []
    seen: set[bytes] = set()
    stack: list[tuple[bytes, bool]] = [(head, False)]
    while stack:
        commit, parents_done = stack.pop()
        if parents_done:
            order.append(commit)
            continue
        if commit in seen:
            continue
        seen.add(commit)
        stack.append((commit, True))
        stack += [(p, False) for p in reversed(storage.commit(commit).parents) if p not in seen]
    return order
