"""The Python API: `canonry.open(path)` returns a Store; every write is one commit."""
from __future__ import annotations

import os
import random
import shlex
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from canonry import journal, ops
from canonry import model as m
from canonry.errors import CanonryError, Conflict, InvalidInput, NotAStore, NotFound
from canonry.files import manifest
from canonry.git.storage import DEFAULT_BRANCH, GitStorage, Identity, find_repo_path, head_commit_of, identity
from canonry.names import Address, check_branch, iso_since, parse, parse_collection, parse_link
from canonry.recordcache import RecordCache
from canonry.schemas import FORMAT_VERSION
from canonry.view import ParseCache, View

if TYPE_CHECKING:
    from dulwich.refs import Ref

    from canonry.automation.plugins import Plugins

__all__ = [
    "COMMIT_BUDGET_S",
    "DEFAULT_REGISTRIES",
    "DEFAULT_ROLES",
    "Store",
    "Transaction",
    "clone_store",
    "init_store",
    "open_store",
]

COMMIT_BUDGET_S = 30.0  # how long a write keeps redoing itself after lost races
WORKTREE_SYNC_WAIT = 5.0  # seconds a landed commit waits for the git index to update the work tree
DEFAULT_REGISTRIES = {
    "model": ("Models: the organization's trained models", ["model"]),
    "dataset": ("Datasets: the organization's training and evaluation data", ["dataset"]),
}
# Everyone may promote in the core registries, as in W&B's; custom ones default to viewer.
DEFAULT_ROLES = {
    "model": "member",
    "dataset": "member",
}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class _Operations:
    """Write operations, shared by Store (one commit each) and Transaction (one commit in all)."""

    _store: Store  # the store written to (the Store itself, or a Transaction's store)

    @property
    def actor(self) -> Identity:
        return self._store.actor

    def view(self, rev: str | bytes | None = None) -> View:
        return self._store.view(rev)

    def _run(self, op: str, **kwargs):
        raise NotImplementedError

    def create_registry(self, name: str, description: str = "", visibility: str = "restricted",
                        types=None) -> m.Registry:
        return self._run("registry.create", name=name, description=description,
                         visibility=visibility, types=types)

    def edit_registry(self, name: str, description: str | None = None, visibility: str | None = None,
                      add_types=None, types=None, record_usage: bool | None = None) -> m.Registry:
        """Change registry NAME's settings (admins). `record_usage`: True records every
        download of a version linked in it in the usage log (see Store.use), False stops."""
        return self._run("registry.edit", name=name, description=description,
                         visibility=visibility, add_types=add_types, types=types,
                         record_usage=record_usage)

    def log_artifact(self, path: str, name: str, type: str, metadata: dict | None = None,
                     metrics: dict | None = None, inputs=(), description: str = "",
                     producer: dict | None = None, offline: bool = False,
                     progress: Callable[[int], None] | None = None) -> m.ArtifactVersion:
        """Store the bytes of `path` (file or directory) and record an immutable version.

        The bytes go to the store's storage (`storage_location`), several files at a time,
        each under its sha256: content storage has already is not sent again. `offline`: keep
        them in this clone's folder for `push_storage` to upload later. `progress` is called
        with each number of bytes moved.

        Returns the new ArtifactVersion, or the newest one with `created=False` when the
        content is identical to it."""
        self._check_log(name, type, metrics)
        found = manifest.collect_files(path)
        blobs = self._store.offline_blobs if offline else self._store.blobs
        files = manifest.store_files(found, blobs, progress)
        return self._record_log(name, type, files, metadata, metrics, inputs, description, producer)

    def log_reference(self, url: str, name: str, type: str, metadata: dict | None = None,
                      metrics: dict | None = None, inputs=(), description: str = "",
                      producer: dict | None = None) -> m.ArtifactVersion:
        """Record the files at `url` (file://, http(s)://, s3://, gs://, az://) as a version
        without copying them: path, size and URL of each, with its sha256 when canonry can read
        it, else the ETag and version id the object store reports (files/references.py)."""
        from canonry.files.references import list_reference

        self._check_log(name, type, metrics)
        files = list_reference(url)
        return self._record_log(name, type, files, metadata, metrics, inputs, description, producer)

    @staticmethod
    def _check_log(name: str, type: str, metrics: dict | None) -> None:
        from canonry.names import check_name

        check_name(name, "artifact name")
        check_name(type, "artifact type")
        for key, value in (metrics or {}).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
                    or value in (float("inf"), float("-inf")):
                raise InvalidInput(f"metric {key!r} must be a finite number, got {value!r}")

    def _record_log(self, name, type, files, metadata, metrics, inputs, description, producer):
        producer = producer if producer is not None else _producer(self.actor)
        return self._run("log", name=name, type=type, files=files, digest=manifest.digest(files),
                         metadata=metadata or {}, metrics=metrics or {}, inputs=list(inputs),
                         description=description, producer=producer)

    def link(self, artifact: str, collection: str, aliases=(), description: str = "") -> m.LinkedVersion:
        """Link ARTIFACT:vK into REGISTRY/COLLECTION (created if missing). No bytes are copied."""
        addr = parse_collection(collection)
        return self._run("link", artifact=artifact, registry=addr.registry,
                         collection=addr.collection, aliases=list(aliases), description=description)

    def unlink(self, target: str) -> m.LinkedVersion:
        addr = parse_link(target)
        return self._run("unlink", registry=addr.registry, collection=addr.collection, ref=addr.ref)

    def set_alias(self, target: str, alias: str) -> m.AliasChange:
        """Point `alias` at REGISTRY/COLLECTION:vN (moving it if another version holds it)."""
        addr = parse_link(target)
        return self._run("alias.set", registry=addr.registry, collection=addr.collection,
                         ref=addr.ref, alias=alias)

    def remove_alias(self, collection: str, alias: str) -> m.AliasChange:
        addr = parse_collection(collection)
        return self._run("alias.rm", registry=addr.registry, collection=addr.collection, alias=alias)

    def set_automations(self, automations: list, registry: str | None = None) -> list:
        """Replace the declarative automations of the store, or of one registry."""
        return self._run("automations.set", automations=automations, registry=registry)

    # ---- governance ---------------------------------------------------------------------------
    def set_member(self, registry: str, member: str, role: str) -> dict:
        """Give MEMBER (an email, or group:NAME) ROLE (admin, member, viewer, restricted_viewer)."""
        return self._run("member.set", registry=registry, member=member, role=role)

    def remove_member(self, registry: str, member: str) -> dict:
        return self._run("member.set", registry=registry, member=member, role=None)

    def protect_alias(self, registry: str, alias: str) -> dict:
        """Only admins may then add or remove ALIAS (or unlink the version holding it)."""
        return self._run("registry.protect", registry=registry, alias=alias, protected=True)

    def unprotect_alias(self, registry: str, alias: str) -> dict:
        return self._run("registry.protect", registry=registry, alias=alias, protected=False)

    def add_store_admin(self, member: str) -> list:
        return self._run("store.admin", member=member, add=True)

    def remove_store_admin(self, member: str) -> list:
        return self._run("store.admin", member=member, add=False)

    def set_group(self, name: str, members: list[str]) -> dict:
        """Define group NAME (usable as member `group:NAME`); an empty list removes it."""
        return self._run("store.group", name=name, members=list(members))

    # ---- lifecycle: deleting, renaming, describing ------------------------------------------------
    def delete_registry(self, name: str, force: bool = False) -> m.Registry:
        """Delete registry NAME. An empty one: its admins may. One still holding collections only
        with `force`, by a store admin: its collections, links and aliases go (never artifact
        versions). Returns the registry as it was."""
        return self._run("registry.delete", name=name, force=force)

    def rename_registry(self, name: str, new_name: str) -> m.Registry:
        """Rename registry NAME (its collections, links and settings move along); its admins may."""
        return self._run("registry.rename", name=name, new_name=new_name)

    def create_collection(self, address: str, type: str, description: str = "",
                          metadata: dict | None = None) -> m.Collection:
        """Create REGISTRY/NAME for artifacts of `type` (a member may; `link` also creates one)."""
        addr = parse_collection(address)
        return self._run("collection.create", registry=addr.registry, name=addr.collection, type=type,
                         description=description, metadata=metadata)

    def edit_collection(self, address: str, description: str | None = None, metadata: dict | None = None,
                        remove_metadata=()) -> m.Collection:
        """Set the description of REGISTRY/NAME, set keys of its metadata, remove others."""
        addr = parse_collection(address)
        return self._run("collection.edit", registry=addr.registry, name=addr.collection,
                         description=description, metadata=metadata, remove_metadata=list(remove_metadata))

    def rename_collection(self, address: str, new_name: str) -> m.Collection:
        """Rename REGISTRY/OLD to NEW (a name, or REGISTRY/NEW in the same registry); its links and
        aliases move along. A protected alias in it makes this a registry admin's call."""
        addr = parse_collection(address)
        if "/" in new_name:
            target = parse_collection(new_name)
            if target.registry != addr.registry:
                raise InvalidInput(f"a collection is renamed within its registry: {new_name} is not in "
                                   f"registry {addr.registry}")
            new_name = target.collection
        return self._run("collection.rename", registry=addr.registry, name=addr.collection, new_name=new_name)

    def delete_collection(self, address: str) -> m.Collection:
        """Delete REGISTRY/NAME with its links and aliases (artifact versions stay). A protected
        alias in it makes this a registry admin's call. Returns the collection as it was."""
        addr = parse_collection(address)
        return self._run("collection.delete", registry=addr.registry, name=addr.collection)

    def delete_artifact_version(self, ref: str) -> m.ArtifactVersion:
        """Mark ARTIFACT:vK deleted: refused while any collection links it. Its number is never
        reused and its record stays in history; its bytes become collectable (`collect_blobs`).
        Its author or a store admin may."""
        return self._run("artifact.delete", artifact=ref)

    def edit_artifact(self, name: str, description: str | None = None) -> m.Artifact:
        """Set the description of artifact NAME (its creator or a store admin may)."""
        return self._run("artifact.edit", name=name, description=description)

    def role(self, registry: str, actor: str | None = None) -> str | None:
        """The role ACTOR (default: the acting identity) holds in REGISTRY."""
        from canonry.governance import role_in

        view = self.view()
        return role_in(view.store_config(), view.registry(registry), actor or self.actor.actor)

    def tag(self, target: str, *tags: str) -> m.TagChange:
        reg, coll, ref = _tag_target(target)
        return self._run("tag", registry=reg, collection=coll, ref=ref, add=list(tags))

    def untag(self, target: str, *tags: str) -> m.TagChange:
        reg, coll, ref = _tag_target(target)
        return self._run("tag", registry=reg, collection=coll, ref=ref, remove=list(tags))


def _iso_since(since: str | None) -> str | None:
    return iso_since(since) if since else None


def _warn(message: str) -> None:
    sys.stderr.write(f"canonry: warning: {message}\n")


def _tag_target(target: str):
    addr = parse(target)
    if addr.kind == "collection":
        return addr.registry, addr.collection, None
    if addr.kind == "link":
        return addr.registry, addr.collection, addr.ref
    raise InvalidInput(f"tags go on a collection or a linked version (REGISTRY/COLLECTION[:vN]), not {target!r}")


def _producer(actor) -> dict:
    import socket

    cwd = os.getcwd()
    git_commit = None
    try:
        head = head_commit_of(find_repo_path(cwd))
        git_commit = head.decode() if head else None
    except (CanonryError, KeyError, OSError, Exception):  # not in a repo, or a repo with no commit
        git_commit = None
    return {"git_commit": git_commit, "command": shlex.join(sys.argv), "host": socket.gethostname(),
            "actor": actor.actor, "cwd": cwd}


class Store(_Operations):
    def __init__(self, storage: GitStorage, plugins_dir: str | None = None, load_plugins: bool = True):
        self.storage = storage
        self.plugins_dir = plugins_dir
        self._load_plugins = load_plugins
        self._plugins: Plugins | None = None
        self._blobs: Any = None  # a BlobStore (files/blobs.py), opened on first use
        self._offline: Any = None
        self._location: Any = None
        self.cache = ParseCache(RecordCache(storage.git_dir))
        self.query_index = None  # the derived SQLite index (canonry.query.index.for_store), made on first use
        self._store = self
        self._actor: Identity | None = None
        # Called with each delivery that failed after a write (a run log record: receiver,
        # status, error, …); the CLI prints a warning line. The run log has them all anyway.
        self.on_failed_delivery: Callable[[dict], None] | None = None

    def close(self) -> None:
        """Write pending cache entries and close open files. Optional: a store still open at
        exit is closed then; `with canonry.open(path) as store:` closes it at the block's end."""
        if self.cache.disk is not None:
            self.cache.disk.close()
        self.storage.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- identity and views --------------------------------------------------------------------
    @property
    def actor(self):
        if self._actor is None:
            self._actor = identity(lambda: self.storage.repo)  # no Repo when CANONRY_ACTOR says
        return self._actor

    @property
    def path(self) -> str:
        return self.storage.path

    @property
    def branch(self) -> str:
        return self.storage.branch

    def view(self, rev: str | bytes | None = None) -> View:
        commit = self.storage.head() if rev is None else self._rev(rev)
        return View(self.storage, commit, self.cache)

    def _rev(self, rev) -> bytes:
        return rev if isinstance(rev, bytes) else self.storage.resolve_rev(rev)

    # ---- writing --------------------------------------------------------------------------------
    def _run(self, op: str, **kwargs):
        with self.transaction() as tx:
            result = tx._run(op, **kwargs)
        return self._bind(tx.results[0] if tx.results else result)

    @contextmanager
    def transaction(self, message: str | None = None, actor: Identity | None = None,
                    at: float | None = None):
        """Group operations into one commit: `with store.transaction(message=...) as tx: tx.link(...)`.

        If the branch moves before the commit lands, every operation is replayed on the new
        state; `tx.results` then holds the final results (e.g. renumbered links).

        `actor` and `at` (POSIX seconds) replay a change made elsewhere (importers): the
        operations run as `actor` (its roles are checked, records say `created_by: actor`,
        `created_at: at`), and the commit's author and author time are `actor` and `at`, as
        `git am` keeps a patch's author. The committer stays the acting identity, at the time
        of the commit."""
        tx = Transaction(self, message, actor=actor, at=at)
        yield tx
        tx._commit()

    def _commit_view(self, view: View, records: list[dict], message: str | None,
                     author: Identity | None = None, when: float | None = None) -> bytes | None:
        """Commit the view's pending changes on top of its base; None if the branch moved.
        `author`, `when`: the commit's author and author time when not the acting identity now."""
        if not view.pending:
            return view.commit
        from dulwich.file import FileLocked

        msg = journal.message(records, subject=message)
        new = self.storage.write_commit(view.commit, view.pending, msg, author or self.actor, when=when,
                                        committer=self.actor if author is not None else None)
        self._check_policies(view, new)
        try:
            moved = self.storage.compare_and_swap(  # the reflog's message, in git's words
                view.commit, new, f"commit{'' if view.commit else ' (initial)'}: {msg.splitlines()[0]}")
        except FileLocked as e:
            held = getattr(e, "message", None)  # a live holder outlasted the wait: not a lost race
            if held:
                raise Conflict(f"{held}; nothing was written") from None
            moved = False
        if not moved:
            return None
        new_root = self.storage.root_tree(new)
        for directory, (kind, value) in view.derived.items():
            entry = self.storage.lookup(new_root, directory)
            if entry is not None:
                self.cache.put(entry[1], kind, value)
        self._after_commit(view.commit, new, list(view.pending))
        return new

    def _after_commit(self, old: bytes | None, new: bytes, paths: list[str]) -> None:
        """Housekeeping after the ref moved. The commit has landed: nothing here may undo it."""
        from dulwich.file import FileLocked

        self.cache.flush_soon()
        # Long enough for a dead writer's index.lock to turn stale and be removed (locks.py).
        deadline = time.monotonic() + WORKTREE_SYNC_WAIT
        while True:
            try:
                self.storage.sync_worktree(old, new, paths)
                break
            except FileLocked:  # someone else is writing the index: wait briefly, try again
                if time.monotonic() > deadline:
                    # The sync's marker stays: the next canonry write finishes it (syncmarks).
                    _warn("committed, but the git index stayed locked (.git/index.lock: is a git "
                          "command running?); the next canonry write updates the work tree")
                    break
                time.sleep(random.uniform(0.005, 0.05))
            except OSError as e:
                _warn(f"committed, but could not update the work tree: {e}")
                break
        self.storage.maybe_pack()
        # Automations follow the store branch only: a proposal on a review branch fires nothing
        # until it is merged.
        if not self.storage.is_proposal_branch and self._wants_events(new):
            if self.storage.commit(new).parents[:1] == [old]:
                outcomes = self._deliver(self.events_between(old, new, paths))
            elif old is not None:  # a fast-forward over several commits: each one's events
                outcomes = self._deliver(self.events(f"{old.decode()}..{new.decode()}"))
            else:
                outcomes = []
            if self.on_failed_delivery is not None:
                for outcome in outcomes:
                    if outcome.get("status") != "ok":
                        self.on_failed_delivery(outcome)

    # ---- plugins, events, automations -------------------------------------------------------------
    @property
    def plugins(self):
        """The plugin manager (loaded once per Store; see canonry/automation/plugins.py for where plugins come from)."""
        if self._plugins is None:
            from canonry.automation import plugins
            from canonry.automation.trust import trusted_config, trusted_view

            # Trust and the store's plugin code come from the store branch head, never from the
            # branch written with --branch: a proposal cannot grant itself trust.
            trusted = trusted_view(self.storage, self.cache)
            if self._load_plugins:
                self._plugins = plugins.load(trusted, self.plugins_dir)
            else:
                self._plugins = plugins.Plugins(off="plugins are off (load_plugins=False)")
                self._plugins.required = list(trusted_config(trusted).get("required_plugins", []))
        return self._plugins

    def read_record(self, sha: bytes, path: str) -> dict:
        """The record stored in blob `sha` at store path `path`: parsed, validated, cached by blob id.

        Raises:
            SchemaError: the blob is not a valid record of the kind its path says.
        """
        from canonry.model import kind_of_path

        kind = kind_of_path(path) or "other"
        rec = self.cache.get(sha, kind)
        if rec is None:
            rec = View(self.storage, None, self.cache).parse_record(path, self.storage.blob(sha))
            self.cache.put(sha, kind, rec, persist=kind != "other")
        return rec

    def events(self, rev_range: str) -> list:
        """Events of the commits in `A..B` (or of one commit), oldest first."""
        from canonry.automation.events import commits_in_range

        return self._events_of(commits_in_range(self.storage, rev_range))

    def _events_of(self, commits: list[bytes]) -> list:
        from canonry.automation.events import events_for_commit

        return [e for commit in commits for e in events_for_commit(self.storage, commit, self.read_record)]

    def events_between(self, old: bytes | None, new: bytes, paths=None) -> list:
        from canonry.automation.events import events_for_commit

        return events_for_commit(self.storage, new, self.read_record, paths)

    def _wants_events(self, commit: bytes) -> bool:
        """Whether plugins or the settings at `commit` want events."""
        from canonry.automation.delivery import summary
        from canonry.automation.hookspecs import EVENT_HOOKS

        if self.plugins.has_impls(*set(EVENT_HOOKS.values())):
            return True
        return summary(View(self.storage, commit, self.cache))["any"]

    def fire(self, events: list) -> list[dict]:
        """Deliver events to plugins and configured automations (each at most once).

        Only events of commits on the store branch are delivered, with the automations defined
        at its head (see run_automations).

        Raises:
            InvalidInput: an event's commit is not on the store branch; nothing was delivered.
        """
        self._refuse_off_store_branch(list(dict.fromkeys(e.commit.encode() for e in events)),
                                      "events")
        return self._deliver(events)

    def run_automations(self, rev_range: str) -> list[dict]:
        """Deliver the events of the commits in `A..B` (or of one commit), each at most once.

        Automations fire for what the store branch holds, as its head defines them: every
        commit of the range must be on the store branch's first-parent line (what a proposal
        branch holds fires nothing until merged), and which automations run, with which
        parameters, is read from the store branch head, never from the commits delivered.

        Raises:
            InvalidInput: a commit of the range is not on the store branch; nothing was delivered.
        """
        from canonry.automation.events import commits_in_range

        commits = commits_in_range(self.storage, rev_range)
        self._refuse_off_store_branch(commits, rev_range)
        return self._deliver(self._events_of(commits))

    def _deliver(self, events: list) -> list[dict]:
        """Deliver events of commits on the store branch, with the automations of its head."""
        from canonry.automation.delivery import deliver
        from canonry.automation.trust import trusted_view

        if not events:
            return []
        return deliver(self, events, lambda commit_hex: self.view(commit_hex.encode()),
                       config=trusted_view(self.storage, self.cache))

    def _refuse_off_store_branch(self, commits: list[bytes], what: str) -> None:
        """Refuse (one line) when any of `commits` is not on the store branch's first-parent line."""
        from canonry.automation.events import off_first_parent_line
        from canonry.automation.trust import trusted_commit

        off = off_first_parent_line(self.storage, trusted_commit(self.storage), commits)
        if off:
            more = f" (and {len(off) - 1} more)" if len(off) > 1 else ""
            branch = self.storage.store_branch
            raise InvalidInput(f"{what}: commit {off[-1].decode()[:10]}{more} is not on the store branch "
                               f"{branch}: automations fire only for what {branch} holds; merge it first, "
                               f"then run the automations of the merge")

    def automation_log(self, target: str | None = None) -> list[dict]:
        """Recorded automation runs (newest commit first), optionally only those about `target`."""
        from canonry.automation.runlog import RunLog

        runs = [{"commit": c, **r} for c, r in RunLog(self.storage).all()]
        if target:
            runs = [r for r in runs if r.get("target") == target or
                    str(r.get("target", "")).startswith(target + ":")]
        # Newest first; within one timestamp, later lines of a note (later runs) first.
        order = sorted(range(len(runs)), key=lambda i: (runs[i].get("at", ""), i), reverse=True)
        return [runs[i] for i in order]

    def trusts_local_automations(self) -> bool:
        """Whether `command` automations may run: canonry.yaml at the store branch's head (never
        a proposal's) sets trust_local_automations: true."""
        from canonry.automation.trust import trusted_config, trusted_view

        return bool(trusted_config(trusted_view(self.storage, self.cache)).get("trust_local_automations", False))

    def policy_violations(self) -> list[dict]:
        """What the policies (check_change hooks) say of the store as it is: each alias held now
        is asked about as if it had just been set. One {target, plugin, reason} per alias a
        policy would refuse (the first that objects), [] when none would. `automations set`
        warns with it when a new policy is already broken."""
        from canonry.automation.events import Event
        from canonry.automation.plugins import first_result

        callers = self.plugins.callers("check_change")
        if not callers:
            return []
        view = self.view()
        commit = view.commit.decode() if view.commit else ""
        actor, now = self.actor.actor, _now()
        found = []
        for coll in self.collections():
            for alias, version in coll.aliases.items():
                if alias == "latest":  # follows the newest link: never set by anyone
                    continue
                target = f"{coll.address}:{alias}"
                event = Event(kind="alias.added", id=f"{commit}:0", commit=commit, actor=actor, time=now,
                              registry=coll.registry, collection=coll.address, version=version,
                              alias=alias, target=target)
                for plugin_name, caller in callers:
                    try:
                        reason = first_result(caller(events=[event], store=self, view=view))
                    except Exception as e:  # as _check_policies: a broken policy objects
                        reason = f"policy failed: {type(e).__name__}: {e}"
                    if reason:
                        found.append({"target": target, "plugin": plugin_name, "reason": reason})
                        break
        return found

    def _check_policies(self, view: View, new: bytes) -> None:
        """Refuse the commit `new` while a required plugin is not loaded, or if any check_change
        implementation objects (asked in pluggy's order, through pluggy, wrappers included)."""
        from canonry.automation.events import LazyEvents, diff_events
        from canonry.automation.plugins import first_result
        from canonry.errors import PolicyRefused

        missing = self.plugins.missing_required()
        if missing:  # the policy it would enforce cannot be asked: fail closed
            raise PolicyRefused(f"refused: {'; '.join(missing)}; nothing was written")
        callers = self.plugins.callers("check_change")
        if not callers:
            return
        actor = self.actor.actor
        events = LazyEvents(lambda: diff_events(self.storage, view.commit, new, self.read_record, actor,
                                                _now(), new.decode(), paths=list(view.pending)))
        after = View(self.storage, new, self.cache)
        for plugin_name, caller in callers:
            try:
                reason = first_result(caller(events=events, store=self, view=after))
            except Exception as e:  # a broken policy fails closed
                reason = f"policy failed: {type(e).__name__}: {e}"
            if reason:
                raise PolicyRefused(f"refused by plugin {plugin_name}: {reason}")

    # ---- sharing: branches and remotes ------------------------------------------------------------
    def merge(self, branch: str, message: str | None = None, fast_forward: bool = True):
        """Merge proposal branch BRANCH into the store branch (see canonry/sharing/merge.py)."""
        from canonry.sharing.merge import merge_branch

        check_branch(branch)
        return merge_branch(self, branch, message=message, fast_forward=fast_forward,
                            check=self._check_policies, landed=self._after_commit,
                            gate=lambda base, head: self._refuse_invalid(branch, base, head))

    def _refuse_invalid(self, branch: str, base: bytes, head: bytes) -> None:
        """Refuse to merge `branch` when `canonry validate BASE..HEAD` (what the merge would bring
        in) has findings: the same checks CI runs, with the store's trusted policies."""
        from canonry.errors import PolicyRefused
        from canonry.review.validate import validate

        report = validate(self, f"{base.decode()}..{head.decode()}", trust_local_plugins=self._load_plugins)
        if report.ok:
            return
        shown = "; ".join(" ".join(f.line().split()) for f in report[:2])
        more = f"; and {len(report) - 2} more" if len(report) > 2 else ""
        raise PolicyRefused(f"cannot merge {branch}: `canonry validate {base.decode()[:10]}..{branch}` "
                            f"reports {len(report)} finding{'s' * (len(report) != 1)}: {shown}{more}; "
                            "nothing was merged")

    def push(self, remote: str = "origin"):
        from canonry.sharing.remote import push

        return push(self, remote)

    def pull(self, remote: str = "origin", discard_local: bool = False):
        """Bring the store branch onto `remote`'s, replaying local work on it; `discard_local`:
        drop the local commits it lacks instead (kept under refs/canonry/discarded/)."""
        from canonry.sharing.remote import pull

        return pull(self, remote, discard_local=discard_local)

    def sync(self, remote: str = "origin"):
        from canonry.sharing.remote import sync

        return sync(self, remote)

    def validate(self, rev_range: str | None = None, trust_local_plugins: bool = False,
                 require_signed: bool = False):
        """Check every commit of BASE..HEAD, or the whole store: a list of findings (see canonry/review/validate.py)."""
        from canonry.review.validate import validate

        return validate(self, rev_range, trust_local_plugins=trust_local_plugins,
                        require_signed=require_signed)

    def gc(self) -> dict:
        """Pack loose objects and consolidate packs."""
        self.offline_blobs.remove_leftovers()  # of `log`s killed while copying
        if self.blobs is not self.offline_blobs:
            self.blobs.remove_leftovers()
        return self.storage.gc(full=True)

    # ---- storage of the bytes ------------------------------------------------------------------
    @property
    def storage_location(self):
        """Where this store's bytes are read and written (url, source): the user's override
        (CANONRY_STORAGE, git config canonry.storage), else canonry.yaml's `storage`, else
        <git dir>/canonry/blobs. See canonry/files/location.py."""
        if self._location is None:
            from canonry.files.location import choose_storage

            committed = self.view().store_config().get("storage")
            self._location = choose_storage(self.storage.git_dir, committed, {
                key: self.storage.config(b"canonry", key.encode()) for key in ("storage", "blobs")})
        return self._location

    @property
    def blobs(self):
        """The blob store at `storage_location` (files/blobs.py, files/objects.py)."""
        if self._blobs is None:
            from canonry.files.location import open_blob_store

            blobs = open_blob_store(self.storage_location.url)
            same = getattr(blobs, "root", None) == self.offline_blobs.root
            self._blobs = self.offline_blobs if same else blobs
        return self._blobs

    @property
    def offline_blobs(self):
        """This clone's own folder (<git dir>/canonry/blobs): the default storage, and where
        `log --offline` keeps bytes until `push_storage`."""
        if self._offline is None:
            from canonry.content import offline_folder

            self._offline = offline_folder(self.storage.git_dir)
        return self._offline

    def set_storage(self, url: str | None) -> dict:
        """Record where the store's bytes live (a folder, file://, s3://, gs://, az://) in
        canonry.yaml, for every clone; None goes back to each clone's own folder. Store admins
        only. Credentials never go in the URL."""
        from canonry.files.location import check_storage_url

        return self._run("store.storage", url=check_storage_url(url) if url else None)

    def verify_storage(self, target: str | None = None, deep: bool = True,
                       progress: Callable[[int], None] | None = None) -> list[dict]:
        """Check that storage holds every file of TARGET's version (or of every version on every
        branch), read back and hashed (`deep`), or only present. Returns the problems, each
        naming the file, its sha256 or URL, what is wrong and the versions that need it."""
        from canonry.content import verify_blobs

        if target is not None:
            version = self.resolve_version(target)
            versions = [(version.address, {"files": version.files})]
        else:
            versions = self._all_versions()
        return verify_blobs(self.blobs, versions, deep=deep, progress=progress)

    def push_storage(self, progress: Callable[[int], None] | None = None) -> dict:
        """Upload to the store's storage every blob a version on any branch needs that this
        clone's folder holds and storage lacks (logged offline, or before storage was set)."""
        from canonry.content import push_blobs

        return push_blobs(self.offline_blobs, self.blobs, self._needed_blobs(), progress)

    def collect_blobs(self, dry_run: bool = True, grace_s: float | None = None) -> dict:
        """Blobs in storage that no version on any branch needs, older than `grace_s` (an hour:
        a `log` uploads before it commits); deleted unless `dry_run`. Returns the blobs, their
        bytes, and whether they were deleted."""
        from canonry.content import GC_GRACE_S, collect_garbage

        grace = GC_GRACE_S if grace_s is None else grace_s
        needed = self._needed_blobs()
        result = collect_garbage(self.blobs, needed, dry_run=dry_run, grace_s=grace)
        if self.offline_blobs is not self.blobs:
            local = collect_garbage(self.offline_blobs, needed, dry_run=dry_run, grace_s=grace)
            result["blobs"] += local["blobs"]
            result["bytes"] += local["bytes"]
        return result

    def _branch_views(self) -> list[View]:
        """A view at the tip of every branch, local and remote-tracking, that holds a store."""
        tips = set()
        refs = self.storage.repo.refs
        for ref in refs.allkeys():
            if ref.startswith((b"refs/heads/", b"refs/remotes/", b"refs/tags/")):
                try:
                    tips.add(refs[ref])
                except KeyError:
                    continue
        views = []
        for tip in sorted(tips):
            try:
                view = self.view(tip.decode())
                view.store_config()
            except CanonryError:
                continue
            views.append(view)
        return views

    def _needed_blobs(self) -> dict[str, list[str]]:
        from canonry.content import needed_blobs

        return needed_blobs(self._branch_views())

    def _all_versions(self) -> list[tuple[str, dict]]:
        seen: dict[str, dict] = {}
        for view in self._branch_views():
            for name in view.artifact_names():
                for version in view.artifact_versions(name):
                    address = f"{name}:{version}"
                    if address not in seen or seen[address].get("deleted_at"):
                        seen[address] = view.read(m.artifact_version_file(name, version), copy_=False)
        # a version deleted on every branch needs no bytes (`artifact delete`)
        return sorted((a, rec) for a, rec in seen.items() if not rec.get("deleted_at"))

    # ---- reading --------------------------------------------------------------------------------
    def registries(self, filter: dict | None = None) -> list[m.Registry]:
        """Every registry, or those matching `filter` (MongoDB-style, see canonry/query/search.py)."""
        if filter is not None:
            from canonry.query.search import search_registries

            return search_registries(self, filter)
        view = self.view()
        return [ops.registry_record(n, view.registry(n)) for n in view.registry_names()]

    def registry(self, name: str) -> m.Registry:
        return ops.registry_record(name, self.view().registry(name))

    def collections(self, registry: str | None = None, filter: dict | None = None) -> list[m.Collection]:
        if filter is not None:
            from canonry.query.search import search_collections

            return search_collections(self, filter, registry=registry)
        view = self.view()
        regs = [registry] if registry else view.registry_names()
        out = []
        for r in regs:
            view.registry(r)
            out += [ops.collection_record(view, r, c) for c in view.collection_names(r)]
        return out

    def collection(self, address: str) -> m.Collection:
        addr = parse_collection(address)
        return ops.collection_record(self.view(), addr.registry, addr.collection)

    def versions(self, collection: str | None = None, filter: dict | None = None) -> list[m.LinkedVersion]:
        """Linked versions of one collection, or of every collection (matching `filter`, if given)."""
        if filter is not None:
            from canonry.query.search import search_versions

            return search_versions(self, filter, collection=collection)
        view = self.view()
        if collection:
            addr = parse_collection(collection)
            view.collection(addr.registry, addr.collection)
            targets = [(addr.registry, addr.collection)]
        else:
            targets = [(r, c) for r in view.registry_names() for c in view.collection_names(r)]
        out = []
        for r, c in targets:
            aliases = view.aliases(r, c)
            vs = view.link_versions(r, c)
            latest = vs[-1] if vs else None
            out += [ops.link_record(view, r, c, v, aliases=aliases, latest=latest) for v in vs]
        return self._bind(out)

    def artifacts(self) -> list[m.Artifact]:
        view = self.view()
        return [self._artifact(view, n) for n in view.artifact_names()]

    def _artifact(self, view: View, name: str) -> m.Artifact:
        rec = view.artifact(name)
        return m.Artifact(name=name, type=rec["type"], description=rec.get("description", ""),
                          versions=view.artifact_versions(name), created_at=rec["created_at"],
                          created_by=rec["created_by"])

    def artifact_versions(self, name: str) -> list[m.ArtifactVersion]:
        """Every version of artifact NAME, oldest first, each with the links pointing at it."""
        view = self.view()
        rec = view.artifact(name)
        out = [ops.artifact_version_record(name, v, view.read(m.artifact_version_file(name, v)))
               for v in view.artifact_versions(name)]
        links = self._links_by_version(view, rec["type"])
        for version in out:
            version.links = links.get(version.address, [])
        return self._bind(out)

    def artifact_version(self, ref: str) -> m.ArtifactVersion:
        addr = parse(ref)
        if addr.kind != "artifact_version":
            raise InvalidInput(f"expected ARTIFACT:vK or ARTIFACT:latest, got {ref!r}")
        return self._version_with_links(self.view(), addr)

    def _version_with_links(self, view: View, addr: Address) -> m.ArtifactVersion:
        version, rec = view.artifact_version(addr.artifact, addr.ref)
        obj = ops.artifact_version_record(addr.artifact, version, rec)
        obj.links = self._links_of(view, obj.address, obj.type)
        return self._bind(obj)

    def _bind(self, obj):
        """Let linked and artifact versions reach this store (for .download(), .metrics, …)."""
        for one in obj if isinstance(obj, list) else [obj]:
            if isinstance(one, (m.LinkedVersion, m.ArtifactVersion)):
                one.__dict__["_store"] = self
        return obj

    def resolve(self, target: str):
        """What an address names now: Registry, Collection, LinkedVersion, Artifact or ArtifactVersion."""
        view = self.view()
        addr = self.classify(view, parse(target))
        if addr.kind == "registry":
            return ops.registry_record(addr.registry, view.registry(addr.registry))
        if addr.kind == "collection":
            return ops.collection_record(view, addr.registry, addr.collection)
        if addr.kind == "link":
            view.collection(addr.registry, addr.collection)
            version = view.resolve_link_ref(addr.registry, addr.collection, addr.ref)
            return self._bind(ops.link_record(view, addr.registry, addr.collection, version))
        if addr.kind == "artifact":
            return self._artifact(view, addr.artifact)
        return self._version_with_links(view, addr)

    def classify(self, view: View, addr: Address) -> Address:
        """Settle a bare NAME at `view`: a registry if one has that name, else an artifact (NotFound:
        neither). Other addresses are returned as they are."""
        if addr.kind != "name":
            return addr
        if view.exists(m.registry_file(addr.registry)):
            return Address("registry", registry=addr.registry)
        if view.exists(m.artifact_file(addr.artifact)):
            return Address("artifact", artifact=addr.artifact)
        raise NotFound("registry or artifact", addr.registry,
                       view.registry_names() + view.artifact_names())

    def show(self, target: str) -> dict:
        """Everything known about a target, as plain data (the shape of `canonry show --json`)."""
        view = self.view()
        addr = self.classify(view, parse(target))
        obj = self.resolve(target)
        data = {"kind": addr.kind, **obj.to_dict()}
        if addr.kind == "registry":
            data["collections"] = [c.to_dict() for c in self.collections(addr.registry)]
        elif addr.kind == "collection":
            data["links"] = [v.to_dict() for v in self.versions(str(addr))]
        elif addr.kind == "link":
            name, version = obj.artifact.split(":")
            data["artifact_version"] = ops.artifact_version_record(
                name, version, view.read(m.artifact_version_file(name, version))).to_dict()
        data.pop("created", None)
        return data

    def _links_of(self, view: View, ref: str, type_: str) -> list[dict]:
        """Every linked version pointing at artifact version `ref`, with its aliases."""
        return self._links_by_version(view, type_, ref).get(ref, [])

    def _links_by_version(self, view: View, type_: str, only: str | None = None) -> dict[str, list[dict]]:
        """ARTIFACT:vK -> the linked versions pointing at it (as dicts), for every version of
        type `type_` (or only `only`): one pass over the collections of that type."""
        found: dict[str, list[dict]] = {}
        for r in view.registry_names():
            for c in view.collection_names(r):
                coll = view.read(m.collection_file(r, c), copy_=False)
                if coll["type"] != type_:
                    continue
                if only is not None:  # one lookup in the collection's cached artifact -> link map
                    v = ops.links_index(view, r, c).get(only)
                    pairs = [(v, only)] if v is not None else []
                else:
                    pairs = list(view.link_artifacts(r, c).items())
                for v, ref in pairs:
                    found.setdefault(ref, []).append(ops.link_record(view, r, c, v).to_dict())
        return found

    def download(self, target: str, to: str | None = None, force: bool = False,
                 progress: Callable[[int], None] | None = None, record: bool | None = None,
                 purpose: str | None = None) -> m.ArtifactVersion:
        """Restore the files of an artifact version (or of what a link points at) into `to`,
        verifying every sha256 (a reference: its sha256 or ETag). Files appear only once
        verified. An existing file is refused unless `force`; a symbolic link inside `to` is
        never followed. Without `to`, into the download cache (see `use`). `record`, `purpose`:
        as for `use`."""
        obj, link, registries = self._resolve_download(target)
        if to is None:
            self._cached(obj, progress)
        else:
            if not to:
                raise InvalidInput("get needs a folder to write to: '' is none (say . for this one)")
            from canonry.content import restore_files

            restore_files(self.blobs, obj.address, obj.files, to, force=force, progress=progress,
                          fallback=self._fallback())
        self._after_use(target, obj, link, registries, record, purpose)
        return obj

    def use(self, target: str, progress: Callable[[int], None] | None = None, record: bool | None = None,
            purpose: str | None = None) -> str:
        """A local folder holding the files of TARGET's version (ARTIFACT:vK or
        REGISTRY/COLLECTION:vN|ALIAS), downloaded and verified once into the download cache
        ($CANONRY_CACHE_DIR, else ~/.cache/canonry) and reused after.

        `record`: True records the use in the usage log (refs/canonry/usage: who, when, host,
        the git commit of the repository the current directory is in, `purpose`); None (the
        default) records it when a registry the version is linked in has `record_usage` on;
        False never. A use that cannot be recorded warns one line and still returns the folder."""
        obj, link, registries = self._resolve_download(target)
        folder = self._cached(obj, progress)
        self._after_use(target, obj, link, registries, record, purpose)
        return folder

    def usage(self, target: str, since: str | None = None) -> list[dict]:
        """Recorded uses of TARGET, newest first: of the artifact version a link or alias names
        (by whatever address it was used), of an artifact version, of every version of an
        artifact, or of every version linked in a collection or registry now. `since`: a date or
        time (ISO 8601). Each record: at, actor, artifact, digest, target (the address used),
        link, registry, host, cwd, git_commit, purpose, command, trigger (asked | registry)."""
        from canonry.usage import UsageLog, iso_since

        since_iso = iso_since(since)
        view = self.view()
        addr = self.classify(view, parse(target))
        refs: list[str] = []
        whole: list[str] = []  # artifacts whose every version counts
        if addr.kind == "link":
            view.collection(addr.registry, addr.collection)
            version = view.resolve_link_ref(addr.registry, addr.collection, addr.ref)
            refs.append(view.read(m.link_file(addr.registry, addr.collection, version), copy_=False)["artifact"])
        elif addr.kind == "artifact_version":
            version, _ = view.artifact_version(addr.artifact, addr.ref)
            refs.append(f"{addr.artifact}:{version}")
        elif addr.kind == "artifact":
            view.artifact(addr.artifact)
            whole.append(addr.artifact)
        else:
            if addr.kind == "registry":
                view.registry(addr.registry)
                colls = [(addr.registry, c) for c in view.collection_names(addr.registry)]
            else:
                view.collection(addr.registry, addr.collection)
                colls = [(addr.registry, addr.collection)]
            for r, c in colls:
                for v in view.link_versions(r, c):
                    refs.append(view.read(m.link_file(r, c, v), copy_=False)["artifact"])
        log = UsageLog(self.storage)
        out = [rec for name in whole for rec in log.read(name, since=since_iso)]
        for ref in dict.fromkeys(refs):
            name, _, version = ref.partition(":")
            out += log.read(name, version, since=since_iso)
        out.sort(key=lambda r: (str(r.get("at", "")), str(r.get("id", ""))), reverse=True)
        return out

    def _after_use(self, target: str, obj: m.ArtifactVersion, link: m.LinkedVersion | None,
                   registries: list[str], record: bool | None, purpose: str | None) -> None:
        """Record the use when asked, or when a registry of the version says so. Never fails
        the use: a recording that fails warns one line."""
        if record is False:
            return
        try:
            if record is None:
                view = self.view()
                if not any(view.registry(r).get("record_usage") for r in registries):
                    return
            self._record_use(target, obj, link, registries, "asked" if record else "registry", purpose)
        except Exception as e:  # the files are there: the use stands whatever the log says
            _warn(f"used {obj.address}, but could not record the use: {' '.join(str(e).split()) or type(e).__name__}")

    def _record_use(self, target, obj, link, registries, trigger, purpose) -> None:
        from canonry.usage import UsageLog, consumer_location

        when = time.time()
        rec = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)), "actor": self.actor.actor, "artifact": obj.address, "digest": obj.digest,
               "target": target, "link": link.address if link is not None else None,
               "registry": link.registry if link is not None else (registries[0] if len(registries) == 1 else None),
               "purpose": purpose or None, "command": shlex.join(sys.argv), "trigger": trigger,
               **consumer_location(self.storage.path)}
        UsageLog(self.storage).record(rec, self.actor, when)
        self.storage.maybe_pack()

    def _cached(self, obj: m.ArtifactVersion, progress) -> str:
        from canonry.content import restore_files
        from canonry.files.cache import cached_version

        return cached_version(obj.digest, obj.files, lambda folder: restore_files(
            self.blobs, obj.address, obj.files, folder, progress=progress, fallback=self._fallback()))

    def _fallback(self):
        """This clone's own folder, read before remote storage: a blob logged offline (or
        already here) is not fetched over the network."""
        return self.offline_blobs if self.offline_blobs is not self.blobs else None

    def resolve_version(self, target: str) -> m.ArtifactVersion:
        """The artifact version TARGET (ARTIFACT:vK, or REGISTRY/COLLECTION:vN|ALIAS) names,
        when the actor may download it (else PermissionDenied)."""
        return self._resolve_download(target)[0]

    def _resolve_download(self, target: str) -> tuple[m.ArtifactVersion, m.LinkedVersion | None, list[str]]:
        """(the version TARGET names, the link it was reached through or None, the registries
        whose settings apply to its use), once the actor may download it."""
        obj = self.resolve(target)
        if isinstance(obj, m.LinkedVersion):
            from canonry.governance import check

            view = self.view()
            check(view, obj.registry, self.actor.actor, "download")
            name, _, version = obj.artifact.partition(":")
            found = ops.artifact_version_record(name, version, view.read(m.artifact_version_file(name, version)))
            if found.deleted:
                raise InvalidInput(f"{ops.deleted_text(found.address, found.to_dict())}: its files are no longer kept")
            return self._bind(found), obj, [obj.registry]
        if isinstance(obj, m.ArtifactVersion):
            if obj.deleted:
                raise InvalidInput(f"{ops.deleted_text(obj.address, obj.to_dict())}: its files are no longer kept")
            return obj, None, self._check_download_of(obj)
        raise InvalidInput(f"{target} is not a version: get takes ARTIFACT:vK or REGISTRY/COLLECTION:vN|ALIAS")

    def _check_download_of(self, version: m.ArtifactVersion) -> list[str]:
        """A version linked in registries may be downloaded by who may download in one of them;
        a version linked nowhere, by its author and the store admins (docs/security.md).
        Returns the registries it is linked in."""
        from canonry.governance import PermissionDenied, check, check_unlinked_download

        view = self.view()
        registries = sorted({link["registry"] for link in version.links})
        if not registries:
            check_unlinked_download(view, version.address, version.created_by, self.actor.actor)
            return []
        denied = None
        for registry in registries:
            try:
                check(view, registry, self.actor.actor, "download")
                return registries
            except PermissionDenied as e:
                denied = denied or e
        if denied is not None:
            raise denied
        return registries

    def history(self, target: str | None = None, limit: int | None = None,
                actor: str | None = None) -> list[m.HistoryEntry]:
        """Every change to `target` (or to anything), newest first, read from commit trailers;
        `actor` keeps only the changes that email made."""
        from canonry.query.history import history

        return history(self, target, limit=limit, actor=actor)

    def audit(self, since: str | None = None, registry: str | None = None,
              actor: str | None = None) -> list[m.HistoryEntry]:
        """Who did what and when, across the store (or one registry), newest first.
        `since` is a date or time (ISO 8601: 2026-11-01 or 2026-11-01T12:00:00Z)."""
        from canonry.query.history import history

        if registry:
            self.view().registry(registry)
        return history(self, None, actor=actor, since=_iso_since(since), registry=registry)

    # ---- questions across the store (answered from the derived index, see query/index.py) -------
    def search(self, filter: dict | None = None, kind: str = "versions", tag: str | None = None,
               alias: str | None = None, type: str | None = None, registry: str | None = None,
               limit: int | None = None) -> list[dict]:
        """Linked versions (or collections, registries) matching a MongoDB-style filter and the
        shortcuts, as plain dicts with their aliases (see canonry/query/search.py for fields and operators)."""
        from canonry.query.search import search

        return search(self, filter, kind=kind, tag=tag, alias=alias, type=type, registry=registry,
                      limit=limit)

    def lineage(self, target: str, direction: str = "both", depth: int | None = None,
                usage: bool = False):
        """What TARGET's artifact version was made from and what was made from it (lineage.Lineage).
        `usage`: also give each version's consumers (its recorded uses, newest first: Node.consumers)."""
        from canonry.query.lineage import trace

        return trace(self, target, direction=direction, depth=depth, usage=usage)

    def compare(self, collection: str, metrics=None, ascending: bool = False) -> dict:
        """Every linked version of REGISTRY/COLLECTION with aliases and metrics, best first."""
        from canonry.query.compare import compare

        return compare(self, collection, metrics=metrics, ascending=ascending)

    def diff(self, rev_range: str):
        """What BASE..HEAD introduces over their merge base, in registry terms (review.Review)."""
        from canonry.review.diff import describe

        return describe(self, rev_range)


class Transaction(_Operations):
    def __init__(self, store: Store, message: str | None, actor: Identity | None = None,
                 at: float | None = None):
        self._store = store
        self.message = message
        self._author = actor  # a replayed change's author (Store.transaction), else None
        self._at = at
        self._calls: list[tuple[str, dict]] = []
        self._view = store.view()
        self._ctx = self._context()
        self._records: list[dict] = []
        self.results: list = []
        self.commit: str | None = None

    @property
    def actor(self) -> Identity:
        """Who the operations run as: the replayed author, else the store's acting identity."""
        return self._author or self._store.actor

    def _context(self) -> ops.Context:
        now = _now() if self._at is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._at))
        return ops.Context(self.actor, now)

    def view(self, rev: str | bytes | None = None) -> View:
        """The store as this transaction sees it (its pending writes included), or at `rev`."""
        return self._view if rev is None else self._store.view(rev)

    def _run(self, op: str, **kwargs):
        self._calls.append((op, kwargs))
        result, records = ops.OPS[op](self._view, self._ctx, **kwargs)
        self._records += records
        self.results.append(result)
        return result

    def _commit(self) -> None:
        store = self._store
        deadline = time.monotonic() + COMMIT_BUDGET_S
        attempt = 0
        while True:
            if not self._view.pending:
                self.commit = self._view.commit.decode() if self._view.commit else None
                return
            new = store._commit_view(self._view, self._records, self.message, self._author, self._at)
            if new is not None:
                self.commit = new.decode()
                return
            # Lost the race: re-read and redo every operation on the new state, for as long as the
            # budget lasts (a time, not a count: eight busy writers on two cores lose many races).
            attempt += 1
            if time.monotonic() > deadline and attempt >= 3:
                raise Conflict(f"branch {store.branch} kept moving: gave up after {attempt} attempts in "
                               f"{COMMIT_BUDGET_S:g} s; nothing was written")
            time.sleep(random.uniform(0, min(0.2, 0.002 * 2 ** min(attempt, 10))))
            self._view = store.view()
            self._ctx = self._context()
            self._records, self.results = [], []
            for op, kwargs in self._calls:
                result, records = ops.OPS[op](self._view, self._ctx, **kwargs)
                self._records += records
                self.results.append(result)


# ---- opening and creating stores ----------------------------------------------------------------
def open_store(path: str | None = None, branch: str | None = None, plugins_dir: str | None = None,
               load_plugins: bool = True) -> Store:
    """Open the store at `path` (or found from it upwards, like git; default: CANONRY_STORE or cwd)."""
    start = path or os.environ.get("CANONRY_STORE") or os.getcwd()
    if branch is not None:
        check_branch(branch)
    if not os.path.exists(start):
        raise NotAStore(f"not a canonry store: {start} does not exist")
    top = find_repo_path(start)
    storage = GitStorage.open(top, branch, start=start)
    head = storage.head()
    if head is None or storage.lookup(storage.root_tree(head), m.STORE_FILE) is None:
        where = f"{storage.prefix}/" if storage.prefix else ""
        raise NotAStore(f"not a canonry store: {top} has no {where}{m.STORE_FILE} on branch "
                        f"{storage.branch} (run `canonry init`)")
    return Store(storage, plugins_dir=plugins_dir, load_plugins=load_plugins)


def clone_store(url: str, directory: str, branch: str | None = None, bare: bool = False) -> Store:
    """Clone the store at `url` into `directory` and open it, with the remote's automation run
    log (see sharing/remote.py)."""
    from canonry.sharing import remote

    if branch is not None:
        check_branch(branch)
    remote.clone_repository(url, directory, branch=branch, bare=bare)
    store = open_store(directory, branch)
    remote.fetch_run_log(store, "origin")
    return store


def init_store(path: str, branch: str | None = None, bare: bool = False,
               prefix: str = "", storage: str | None = None) -> tuple[Store, bool]:
    """Make `path` a store (creating the repository if needed). Returns (store, created).

    With `prefix` ("registry/"), the store lives under that folder of an existing code
    repository, on the code's own branch (the checked-out one unless `branch` says otherwise).
    `storage`: where artifact bytes live for every clone (see Store.set_storage)."""
    if branch is not None:
        check_branch(branch)  # before anything is created: no empty repository left behind
    storage_url = None
    if storage is not None:
        from canonry.files.location import check_storage_url

        storage_url = check_storage_url(storage)
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise InvalidInput(f"cannot init {path}: it is a file")
    prefix = _check_prefix(prefix)
    os.makedirs(path, exist_ok=True)
    from dulwich.repo import Repo

    fresh = not (os.path.exists(os.path.join(path, ".git")) or _is_bare(path))
    if fresh:
        repo = Repo.init_bare(path) if bare else Repo.init(path)
        branch = branch or DEFAULT_BRANCH
        repo.refs.set_symbolic_ref(cast("Ref", b"HEAD"), cast("Ref", b"refs/heads/" + branch.encode()))
    else:
        repo = Repo(path)
        if branch is None and not prefix:
            branch = DEFAULT_BRANCH
        if branch is None and prefix:
            head = repo.refs.read_ref(cast("Ref", b"HEAD")) or b""
            if head.startswith(b"ref: refs/heads/"):
                branch = head[len(b"ref: refs/heads/"):].decode()
    config = repo.get_config()
    changed = False
    if fresh and bare:
        # dulwich writes logAllRefUpdates = true into a bare repository too; `git init --bare`
        # does not (a bare repository keeps no reflogs unless told to: see git/reflog.py).
        try:
            del config[(b"core",)][b"logallrefupdates"]
            changed = True
        except KeyError:
            pass
    if branch and (branch != DEFAULT_BRANCH or _has_config(config, b"branch")):
        config.set(b"canonry", b"branch", branch.encode())
        changed = True
    if prefix:
        config.set(b"canonry", b"prefix", prefix.encode())
        changed = True
    if changed:
        config.write_to_path()
    git_storage = GitStorage.open(path, store_branch=branch)
    head = git_storage.head()
    if head is not None and git_storage.lookup(git_storage.root_tree(head), m.STORE_FILE) is not None:
        existing = Store(git_storage)
        if storage_url is not None and storage_url != existing.view().store_config().get("storage"):
            raise InvalidInput(f"{path} is already a canonry store: set its storage with "
                               f"`canonry storage set {storage_url}`")
        return existing, False
    store = Store(git_storage)
    view = store.view()
    ctx = ops.Context(store.actor, _now())
    settings: dict = {"format": FORMAT_VERSION, "created_at": ctx.now, "created_by": ctx.actor.actor,
                      "admins": [ctx.actor.actor], "trust_local_plugins": False}
    if storage_url:
        settings["storage"] = storage_url
    view.write(m.STORE_FILE, settings)
    where = f" under {prefix}/" if prefix else ""
    records = [{"op": "init", "branch": git_storage.branch,
                "summary": f"init canonry store on {git_storage.branch}{where}"}]
    for name, (description, types) in DEFAULT_REGISTRIES.items():
        _, recs = ops.registry_create(view, ctx, name, description, "organization", types,
                                      default_role=DEFAULT_ROLES[name])
        records += recs
    if store._commit_view(view, records, None) is None:
        raise Conflict(f"branch {git_storage.branch} moved while initializing; run init again")
    return store, True


def _check_prefix(prefix: str) -> str:
    prefix = (prefix or "").strip("/")
    if not prefix:
        return ""
    from canonry.names import check_name

    for part in prefix.split("/"):
        check_name(part, "prefix folder")
    return prefix


def _is_bare(path: str) -> bool:
    return all(os.path.exists(os.path.join(path, p)) for p in ("HEAD", "objects", "refs"))


def _has_config(config, key: bytes) -> bool:
    try:
        config.get(b"canonry", key)
        return True
    except KeyError:
        return False
