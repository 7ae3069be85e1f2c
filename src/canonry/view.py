"""The view: the store as it is at one commit, with pending writes layered on top.

Operations read and write through a View; the View validates every record against its schema
on the way in and out, so an invalid hand edit is reported with its file and field, and an
operation can never write an invalid file. Parsed records are cached by blob id: a git blob
never changes, so the cache can never be stale.
"""
from __future__ import annotations

import re
import stat
from collections.abc import Collection
from typing import Any

from canonry import model as m
from canonry.errors import BrokenState, InvalidInput, NotFound, SchemaError
from canonry.git.storage import GitStorage
from canonry.names import LATEST, is_version, version_number
from canonry.schemas import check_record

__all__ = ["ParseCache", "View"]

_VERSION_FILE = re.compile(r"^v(0|[1-9][0-9]{0,15})\.yaml$")  # at most 16 digits: fits sqlite


def _clone(value):
    """Deep copy of a record (dicts, lists and scalars only): several times faster than
    copy.deepcopy."""
    if type(value) is dict:
        return {k: _clone(v) for k, v in value.items()}
    if type(value) is list:
        return [_clone(v) for v in value]
    return value


_VERSIONS_MEMO: dict[bytes, list[str]] = {}  # tree id -> sorted vN names (tree ids never go stale)


def _sorted_versions(names: list[str]) -> list[str]:
    return sorted((n[:-5] for n in names if _VERSION_FILE.match(n)), key=version_number)


class ParseCache:
    """Records by (blob id, kind): in memory, backed by the on-disk RecordCache when given."""

    def __init__(self, disk=None, limit: int = 200_000):
        self._data: dict[tuple[bytes, str], Any] = {}
        self._limit = limit
        self.disk = disk

    def get(self, sha: bytes, kind: str):
        rec = self._data.get((sha, kind))
        if rec is None and self.disk is not None:
            rec = self.disk.get(sha, kind)
            if rec is not None:
                self._remember(sha, kind, rec)
        return rec

    def get_field_many(self, shas: list[bytes], kind: str, field: str) -> dict[bytes, Any]:
        """`field` of the cached records among `shas` (memory first, then one disk query)."""
        found = {sha: rec[field] for sha in shas if (rec := self._data.get((sha, kind))) is not None}
        missing = [sha for sha in shas if sha not in found]
        if missing and self.disk is not None:
            found.update(self.disk.get_field_many(missing, kind, field))
        return found

    def put(self, sha: bytes, kind: str, value, persist: bool = True) -> None:
        self._remember(sha, kind, value)
        if persist and self.disk is not None:
            self.disk.put(sha, kind, value)

    def _remember(self, sha: bytes, kind: str, value) -> None:
        if len(self._data) >= self._limit:
            self._data.clear()
        self._data[(sha, kind)] = value

    def flush(self) -> None:
        if self.disk is not None:
            self.disk.flush()

    def flush_soon(self) -> None:
        if self.disk is not None:
            self.disk.flush_soon()


class View:
    def __init__(self, storage: GitStorage, commit: bytes | None, cache: ParseCache):
        self.storage = storage
        self.commit = commit
        self.root = storage.root_tree(commit)
        self.cache = cache
        self.pending: dict[str, bytes | None] = {}  # change it through write() and delete() only
        # directory -> {child name: how many pending writes (not deletes) at or below it}: every
        # directory above a pending path has its entry, so asking about one directory never
        # scans all pending paths (a transaction of 100,000 links stays linear).
        self._pending_dirs: dict[str, dict[str, int]] = {}
        self._pending_records: dict[str, dict | None] = {}
        self.derived: dict[str, tuple[str, object]] = {}  # see derive()

    # ---- raw files ---------------------------------------------------------------------------
    def read(self, path: str, copy_: bool = True) -> dict | None:
        if path in self._pending_records:
            rec = self._pending_records[path]
        else:
            entry = self.storage.lookup(self.root, path)
            if entry is None:
                return None
            kind = m.kind_of_path(path) or "other"
            rec = self.cache.get(entry[1], kind)
            if rec is None:
                rec = self.parse_record(path, self.storage.blob(entry[1]))
                self.cache.put(entry[1], kind, rec, persist=kind != "other")
        return _clone(rec) if copy_ and rec is not None else rec

    def parse_record(self, path: str, data: bytes) -> dict:
        from canonry import yamlio  # only on a cache miss: most reads never parse YAML

        try:
            rec = yamlio.load(data)
        except Exception as e:  # yaml.YAMLError and decoding errors alike
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise SchemaError(f"{path}: not valid YAML: {first}") from None
        kind = m.kind_of_path(path)
        if kind:
            check_record(kind, rec, path)
        return rec

    def write(self, path: str, record: dict) -> None:
        kind = m.kind_of_path(path)
        if kind:
            check_record(kind, record, path)
        from canonry import yamlio

        data = yamlio.dump(record)
        if len(data) > yamlio.MAX_BYTES:  # written, it could never be read back
            raise InvalidInput(f"{path} would be {len(data)} bytes, more than the {yamlio.MAX_BYTES} "
                               f"canonry reads (a folder of fewer files, or pack it into one)")
        self._underived(path)
        self._set_pending(path, data)
        self._pending_records[path] = _clone(record)
        if kind:
            # What we write is valid by construction: later reads of this blob skip validation.
            from dulwich.objects import Blob

            self.cache.put(Blob.from_string(data).id, kind, _clone(record))

    def derive(self, directory: str, kind: str, value) -> None:
        """Cache `value` as `kind` under the tree id `directory` will have once the pending
        writes are committed (the committer puts it; see Store._commit_view)."""
        self.derived[directory] = (kind, value)

    def _underived(self, path: str) -> None:
        """A write below a directory makes what was derived for it stale."""
        if not self.derived:
            return
        cut = path.rfind("/")
        while cut > 0:  # each directory above `path`: a few lookups, not a scan of all derived
            self.derived.pop(path[:cut], None)
            cut = path.rfind("/", 0, cut)

    def delete(self, path: str) -> None:
        self._underived(path)
        self._set_pending(path, None)
        self._pending_records[path] = None

    def _set_pending(self, path: str, data: bytes | None) -> None:
        step = (data is not None) - (self.pending.get(path) is not None)  # writes at or below: +1/0/-1
        self.pending[path] = data
        child_end = len(path)
        cut = path.rfind("/")
        while True:
            directory, child = (path[:cut], path[cut + 1:child_end]) if cut >= 0 else ("", path[:child_end])
            children = self._pending_dirs.setdefault(directory, {})
            children[child] = children.get(child, 0) + step
            if cut < 0:
                break
            child_end = cut
            cut = path.rfind("/", 0, cut)

    def pending_under(self, directory: str) -> bool:
        """Whether a pending write or delete lies below `directory`."""
        return directory in self._pending_dirs

    def exists(self, path: str) -> bool:
        if path in self.pending:
            return self.pending[path] is not None
        return self.storage.lookup(self.root, path) is not None

    def names(self, path: str) -> list[str]:
        """Names directly inside directory `path`, pending writes included."""
        names = set(self.storage.names(self.root, path))
        prefix = path + "/"
        for child, writes in self._pending_dirs.get(path, {}).items():
            if writes > 0:  # something is written at or below it
                names.add(child)
            elif prefix + child in self.pending and self.pending[prefix + child] is None:
                names.discard(child)  # a file deleted (a folder whose files are all deleted stays listed)
        return sorted(names)

    # ---- typed access ------------------------------------------------------------------------
    def store_config(self) -> dict:
        rec = self.read(m.STORE_FILE)
        if rec is None:
            raise SchemaError(f"{m.STORE_FILE} is missing on the store branch")
        return rec

    def registry_names(self) -> list[str]:
        return [n for n in self.names(m.REGISTRIES) if self.exists(m.registry_file(n))]

    def registry(self, name: str) -> dict:
        rec = self.read(m.registry_file(name))
        if rec is None:
            raise NotFound("registry", name, self.registry_names())
        return rec

    def collection_names(self, registry: str) -> list[str]:
        return [n for n in self.names(m.registry_dir(registry))
                if n != "registry.yaml" and self.exists(m.collection_file(registry, n))]

    def collection(self, registry: str, name: str) -> dict:
        self.registry(registry)
        rec = self.read(m.collection_file(registry, name))
        if rec is None:
            raise NotFound("collection", f"{registry}/{name}",
                           [f"{registry}/{c}" for c in self.collection_names(registry)])
        return rec

    def aliases(self, registry: str, collection: str, broken_ok: Collection[str] = ()) -> dict[str, str]:
        """alias -> vN. Every read of a collection's aliases comes here, so this is where an alias
        on a link that is gone (each side of a merge valid, the merge not) becomes one clear
        BrokenState naming the alias and the fix, rather than a crash further on. `broken_ok`:
        the aliases an operation is about to move or remove (the fix itself)."""
        rec = self.read(m.aliases_file(registry, collection))
        if not rec:
            return {}
        aliases = dict(rec["aliases"])
        # one lookup per alias (a handful), not a listing of the links (thousands)
        dangling = [(a, v) for a, v in aliases.items()
                    if a not in broken_ok and not self.exists(m.link_file(registry, collection, v))]
        if dangling:
            alias, version = dangling[0]
            where = f"{registry}/{collection}"
            more = f" (and {len(dangling) - 1} more alias{'es' * (len(dangling) > 2)})" if len(dangling) > 1 else ""
            raise BrokenState(f"alias {alias} of {where} points at {version}, which is not linked{more}: "
                              f"fix {m.aliases_file(registry, collection)} or run "
                              f"`canonry alias rm {where} {alias}`")
        return aliases

    def link_versions(self, registry: str, collection: str) -> list[str]:
        """vN names of present links, in link order."""
        return self._versions_in(m.links_dir(registry, collection))

    def _versions_in(self, path: str) -> list[str]:
        """vN names of the vN.yaml files in directory `path`, in number order. Remembered per
        tree id (a tree never changes) unless pending writes touch the directory."""
        if self.pending_under(path):
            return _sorted_versions(self.names(path))
        entry = self.storage.lookup(self.root, path)
        if entry is None:
            return []
        versions = _VERSIONS_MEMO.get(entry[1])
        if versions is None:
            if len(_VERSIONS_MEMO) > 20_000:
                _VERSIONS_MEMO.clear()
            versions = _VERSIONS_MEMO[entry[1]] = _sorted_versions(self.names(path))
        return list(versions)

    def link_artifacts(self, registry: str, collection: str) -> dict[str, str]:
        """vN -> linked artifact version of every link, in link order. Reads the record cache in
        one query (a first look at a collection of hundreds of links would otherwise cost one
        query and one JSON decoding per link)."""
        versions = self.link_versions(registry, collection)
        entry = self.storage.lookup(self.root, m.links_dir(registry, collection))
        tree = self.storage.tree(entry[1]) if entry and stat.S_ISDIR(entry[0]) else None
        blob_of = {}
        for v in versions:
            name = f"{v}.yaml".encode()
            if tree is not None and name in tree and m.link_file(registry, collection, v) not in self.pending:
                blob_of[v] = tree[name][1]
        cached = self.cache.get_field_many(list(blob_of.values()), "link", "artifact")
        out = {}
        for v in versions:
            artifact = cached.get(blob_of.get(v))
            out[v] = artifact if isinstance(artifact, str) else \
                self.read(m.link_file(registry, collection, v), copy_=False)["artifact"]
        return out

    def link(self, registry: str, collection: str, version: str) -> dict | None:
        return self.read(m.link_file(registry, collection, version))

    def resolve_link_ref(self, registry: str, collection: str, ref: str) -> str:
        """vN for a version, alias or `latest` within a collection."""
        versions = self.link_versions(registry, collection)
        where = f"{registry}/{collection}"
        if ref == LATEST:
            if not versions:
                raise NotFound("version", LATEST, where=f"{where} (it has no links)")
            return versions[-1]
        if is_version(ref):
            if ref not in versions:
                raise NotFound("version", ref, versions, where=where)
            return ref
        aliases = self.aliases(registry, collection)
        if ref not in aliases:
            raise NotFound("alias", ref, [*list(aliases), LATEST], where=where)
        return aliases[ref]

    def artifact_names(self) -> list[str]:
        return self.names(m.ARTIFACTS)

    def artifact(self, name: str) -> dict:
        rec = self.read(m.artifact_file(name))
        if rec is None:
            raise NotFound("artifact", name, self.artifact_names())
        return rec

    def artifact_versions(self, name: str) -> list[str]:
        return self._versions_in(m.artifact_dir(name))

    def resolve_artifact_ref(self, name: str, ref: str) -> str:
        self.artifact(name)
        versions = self.artifact_versions(name)
        if ref == LATEST:  # the newest version not deleted (`artifact delete`)
            for version in reversed(versions):
                rec = self.read(m.artifact_version_file(name, version), copy_=False)
                if rec is None or not rec.get("deleted_at"):
                    return version
            raise NotFound("version", LATEST, where=f"artifact {name} (it has no versions"
                           f"{' left: every one was deleted' if versions else ''})")
        if ref not in versions:
            raise NotFound("version", ref, versions, where=f"artifact {name}")
        return ref

    def artifact_version(self, name: str, ref: str) -> tuple[str, dict]:
        version = self.resolve_artifact_ref(name, ref)
        return version, self.read(m.artifact_version_file(name, version))
