"""Replaying operations from commit trailers onto another state of the store.

Used when histories diverge: a push that lost a race, a pull onto local unpublished work,
`canonry merge BRANCH`. Each Canonry-Op record is re-applied through the normal operations,
so every invariant holds on the result. New links and artifact versions may get other numbers
than they had on their own line (link v3 there may become v5 here); later records of the same
line are rewritten through that mapping. Where both lines changed one thing differently — both
moved `production`, or the link an alias pointed at was unlinked meanwhile — replay stops with
a MergeConflict and nothing is written.
"""
from __future__ import annotations

from canonry import model as m
from canonry import ops
from canonry.automation.events import commit_actor_time
from canonry.errors import MergeConflict
from canonry.git.storage import Identity
from canonry.names import version_number
from canonry.view import View

__all__ = ["Replayer", "author_identity"]


def author_identity(commit) -> Identity:
    """Who authored a commit, as an Identity (a replayed operation keeps its author)."""
    author = commit.author.decode("utf-8", "replace")
    if "<" in author:
        name, _, email = author[:-1].partition("<")
        return Identity(name.strip(), email.strip())
    return Identity(author, author)


class Replayer:
    def __init__(self, target: View, base: View, what: str):
        self.target = target  # where records are re-applied (pending writes accumulate here)
        self.base = base  # the common ancestor's state
        self.what = what  # for messages: "branch promote/x", "your unpublished commits"
        self.artifact_map: dict[str, str] = {}  # NAME:vK on the source line -> NAME:vJ here
        self.link_map: dict[str, str] = {}  # REG/COLL:vN on the source line -> vM here
        self._renames: list[tuple[str, str, str]] | None = None
        self.renames()  # now: `target` moves on as a rebase replays commits onto it

    # ---- entry point ---------------------------------------------------------------------------
    def replay(self, storage, commit_id: bytes, records: list[dict]) -> list[dict]:
        commit = storage.commit(commit_id)
        _actor, when = commit_actor_time(commit)
        ctx = ops.Context(author_identity(commit), when)
        source = View(storage, commit_id, self.target.cache)
        out: list[dict] = []
        for rec in records:
            handler = getattr(self, "_" + rec["op"].replace(".", "_"), None)
            if handler is None:
                raise MergeConflict(f"cannot replay {rec['op']} of commit {commit_id.decode()[:10]}")
            out += handler(rec, ctx, source, commit_id.decode()[:10])
        return _fold_link_aliases(out)

    # ---- helpers -------------------------------------------------------------------------------
    def _art(self, ref: str) -> str:
        return self.artifact_map.get(ref, ref)

    def _map_link(self, coll: str, version: str | None) -> str | None:
        if version is None:
            return None
        return self.link_map.get(f"{coll}:{version}", version)

    def renames(self) -> list[tuple[str, str, str]]:
        """Renames made on the target's line since the base, oldest first: ("registry", OLD, NEW)
        and ("collection", REG/OLD, REG/NEW). A record of the source line written before a
        rename there names things as they were: it is replayed under their names here."""
        if self._renames is None:
            from canonry import journal
            from canonry.git.graph import first_parent_chain

            found: list[tuple[str, str, str]] = []
            storage = self.target.storage
            if self.target.commit is not None and self.base.commit is not None:
                for commit_id in first_parent_chain(storage, self.base.commit, self.target.commit):
                    for rec in journal.records(storage.commit(commit_id).message):
                        if rec.get("op") in ("registry.rename", "collection.rename") and rec.get("to"):
                            kind = rec["op"].split(".")[0]
                            found.append((kind, rec[kind], rec["to"]))
            self._renames = found
        return self._renames

    def _reg(self, name: str) -> str:
        """Registry NAME of the source line, as it is called here."""
        for kind, old, new in self.renames():
            if kind == "registry" and name == old:
                name = new
        return name

    def _coll(self, where: str) -> str:
        """Collection REG/NAME of the source line, as it is called here."""
        reg, _, name = where.partition("/")
        for kind, old, new in self.renames():
            if kind == "registry" and reg == old:
                reg = new
            elif kind == "collection" and f"{reg}/{name}" == old:
                name = new.partition("/")[2]
        return f"{reg}/{name}"

    def _conflict(self, sha: str, text: str):
        raise MergeConflict(f"conflict replaying {self.what} (commit {sha}): {text}")

    # ---- records -------------------------------------------------------------------------------
    def _init(self, rec, ctx, source, sha):
        self._conflict(sha, "it initializes a store: the two histories are unrelated")

    def _registry_create(self, rec, ctx, source, sha):
        name = rec["registry"]
        wanted = source.read(m.registry_file(name))
        here = self.target.read(m.registry_file(name))
        if here is not None:
            if here == wanted:
                return []
            self._conflict(sha, f"registry {name} was created on both sides with different settings")
        self.target.write(m.registry_file(name), wanted)
        return [rec]

    def _registry_edit(self, rec, ctx, source, sha):
        name = self._reg(rec["registry"])
        here = self.target.registry(name)
        applied = {}
        for field, (before, after) in rec["changes"].items():
            current = here.get(field)
            if field == "types":
                merged: str | list[str]
                if after == "all" or current == "all":
                    merged = "all"
                else:
                    merged = list(dict.fromkeys(list(current) + list(after)))  # types only grow
                if merged != current:
                    applied[field] = [current, merged]
                    here[field] = merged
            elif current == after:
                continue
            elif current == before:
                applied[field] = [current, after]
                here[field] = after
            else:
                self._conflict(sha, f"registry {name}: {field} was changed on both sides "
                                    f"({before!r} -> {current!r} here, -> {after!r} there)")
        if not applied:
            return []
        self.target.write(m.registry_file(name), here)
        return [{**rec, "registry": name, "changes": applied}]

    def _log(self, rec, ctx, source, sha):
        name, version = rec["artifact"].split(":")
        original = source.read(m.artifact_version_file(name, version))
        art = source.read(m.artifact_file(name))
        here_art = self.target.read(m.artifact_file(name))
        if here_art is not None and here_art["type"] != art["type"]:
            self._conflict(sha, f"artifact {name} has type {here_art['type']} here and {art['type']} there")
        versions = self.target.artifact_versions(name) if here_art else []
        for v in reversed(versions):  # the same content logged on both sides: one version
            if self.target.read(m.artifact_version_file(name, v), copy_=False)["digest"] == original["digest"] \
                    and v == versions[-1]:
                self.artifact_map[rec["artifact"]] = f"{name}:{v}"
                return []
        if here_art is None:
            self.target.write(m.artifact_file(name), art)
        new_version = f"v{version_number(versions[-1]) + 1}" if versions else "v0"
        record = dict(original)
        record["inputs"] = [self._art(i) for i in original.get("inputs", [])]
        self.target.write(m.artifact_version_file(name, new_version), record)
        new_ref = f"{name}:{new_version}"
        self.artifact_map[rec["artifact"]] = new_ref
        out = dict(rec, artifact=new_ref, inputs=record["inputs"])
        if new_ref != rec["artifact"]:
            out["summary"] = rec["summary"].replace(rec["artifact"], new_ref, 1)
            out["replayed_from"] = rec["artifact"]
        return [out]

    def _link(self, rec, ctx, source, sha):
        coll = rec["collection"]
        src_reg, src_name = coll.split("/")
        reg, name = self._coll(coll).split("/")
        artifact = self._art(rec["artifact"])
        try:
            result, records = ops.link(self.target, ctx, artifact, reg, name, aliases=[])
        except Exception as e:
            self._conflict(sha, f"link {artifact} -> {coll}: {e}")
        self.link_map[f"{coll}:{rec['version']}"] = result.version
        # Keep the link's own fields (time, actor, description) from the source line.
        original = source.read(m.link_file(src_reg, src_name, rec["version"]))
        if result.created and original is not None:
            linked = self.target.read(m.link_file(reg, name, result.version))
            linked.update({k: original[k] for k in ("linked_at", "linked_by", "description", "tags")
                           if k in original})
            self.target.write(m.link_file(reg, name, result.version), linked)
        for r in records:
            if rec["version"] != result.version:
                r["replayed_from"] = f"{coll}:{rec['version']}"
        return records

    def _unlink(self, rec, ctx, source, sha):
        coll = rec["collection"]
        reg, name = self._coll(coll).split("/")
        version = self._map_link(coll, rec["version"])
        if self.target.link(reg, name, version) is None:
            if version in self.base.link_versions(reg, name):
                return []  # unlinked on both sides
            self._conflict(sha, f"unlink {coll}:{version}: no such link here")
        _, records = ops.unlink(self.target, ctx, reg, name, version)
        return records

    def _alias_set(self, rec, ctx, source, sha):
        coll = rec["collection"]
        reg, name = self._coll(coll).split("/")
        after = self._map_link(coll, rec["after"])
        before = self._map_link(coll, rec.get("before"))
        current = self.target.aliases(reg, name).get(rec["alias"])
        if current == after:
            return []
        if current != before:
            held = current or "nobody"
            self._conflict(sha, f"{coll}: both sides moved {rec['alias']} — here it is on {held}, "
                                f"there it moves {before or 'nowhere'} -> {after}")
        if self.target.link(reg, name, after) is None:
            self._conflict(sha, f"{coll}: {rec['alias']} -> {after}, but {coll}:{after} was unlinked here")
        _, records = ops.alias_set(self.target, ctx, reg, name, after, rec["alias"])
        return records

    def _alias_rm(self, rec, ctx, source, sha):
        coll = rec["collection"]
        reg, name = self._coll(coll).split("/")
        before = self._map_link(coll, rec.get("before"))
        current = self.target.aliases(reg, name).get(rec["alias"])
        if current is None:
            return []
        if current != before:
            self._conflict(sha, f"{coll}: {rec['alias']} was moved here to {current} and removed there")
        _, records = ops.alias_remove(self.target, ctx, reg, name, rec["alias"])
        return records

    def _tag(self, rec, ctx, source, sha):
        coll = rec["collection"]
        reg, name = self._coll(coll).split("/")
        target = rec["target"]
        ref = None
        if ":" in target:
            ref = self._map_link(coll, target.split(":", 1)[1])
        added = [t for t in rec["after"] if t not in rec["before"]]
        removed = [t for t in rec["before"] if t not in rec["after"]]
        out = []
        try:
            if added:
                out += ops.tag(self.target, ctx, reg, name, ref, add=added)[1]
            if removed:
                out += ops.tag(self.target, ctx, reg, name, ref, remove=removed)[1]
        except Exception as e:
            self._conflict(sha, f"tag {target}: {e}")
        return out

    _tag_add = _tag
    _tag_rm = _tag

    def _automations_set(self, rec, ctx, source, sha):
        registry = rec.get("registry")
        if registry:
            wanted = source.registry(registry).get("automations", [])
            base = self.base.registry(registry).get("automations", []) \
                if self.base.exists(m.registry_file(registry)) else []
            registry = self._reg(registry)
            here = self.target.registry(registry).get("automations", [])
        else:
            wanted = source.store_config().get("automations", [])
            here = self.target.store_config().get("automations", [])
            base = self.base.store_config().get("automations", []) if self.base.commit else []
        if here == wanted:
            return []
        if here != base:
            self._conflict(sha, "automations were changed on both sides")
        _, records = ops.automations_set(self.target, ctx, wanted, registry)
        return records

    # ---- lifecycle ------------------------------------------------------------------------------
    def _registry_delete(self, rec, ctx, source, sha):
        name = self._reg(rec["registry"])
        if not self.target.exists(m.registry_file(name)):
            return []  # deleted (or renamed away) here too
        extra = [c for c in self.target.collection_names(name)
                 if not self.base.exists(m.collection_file(rec["registry"], c))]
        if extra:
            self._conflict(sha, f"registry {name} was deleted there, but collection"
                                f"{'s' * (len(extra) > 1)} {', '.join(f'{name}/{c}' for c in extra)} "
                                "were added to it here")
        try:
            return ops.registry_delete(self.target, ctx, name, force=bool(rec.get("force")))[1]
        except Exception as e:
            self._conflict(sha, f"delete registry {name}: {e}")

    def _registry_rename(self, rec, ctx, source, sha):
        name, to = self._reg(rec["registry"]), rec["to"]
        if name == to:
            return []  # renamed the same way here
        try:
            return ops.registry_rename(self.target, ctx, name, to)[1]
        except Exception as e:
            self._conflict(sha, f"rename registry {name} to {to}: {e}")

    def _collection_create(self, rec, ctx, source, sha):
        reg, name = rec["collection"].split("/")
        wanted = source.read(m.collection_file(reg, name))
        here_reg, here_name = self._coll(rec["collection"]).split("/")
        here = self.target.read(m.collection_file(here_reg, here_name))
        if here is not None:
            if wanted is not None and here["type"] == wanted["type"]:
                return []  # created on both sides (or by a link here)
            self._conflict(sha, f"collection {here_reg}/{here_name} was created on both sides with "
                                "different types")
        try:
            return ops.collection_create(self.target, ctx, here_reg, here_name, rec["type"],
                                         description=(wanted or {}).get("description", ""),
                                         metadata=(wanted or {}).get("metadata"))[1]
        except Exception as e:
            self._conflict(sha, f"create collection {here_reg}/{here_name}: {e}")

    def _collection_edit(self, rec, ctx, source, sha):
        reg, name = self._coll(rec["collection"]).split("/")
        try:
            here = self.target.collection(reg, name)
        except Exception as e:
            self._conflict(sha, f"edit collection {reg}/{name}: {e}")
        kwargs: dict = {}
        for field, (before, after) in rec["changes"].items():
            current = here.get(field, {} if field == "metadata" else "")
            if current == after:
                continue
            if field == "metadata":  # key by key: both sides may set different keys
                base_keys = before or {}
                for key in set(after) | set(base_keys):
                    if after.get(key) != base_keys.get(key) and current.get(key, base_keys.get(key)) \
                            != base_keys.get(key) and current.get(key) != after.get(key):
                        self._conflict(sha, f"collection {reg}/{name}: metadata {key} was changed on both sides")
                kwargs["metadata"] = {k: v for k, v in after.items() if base_keys.get(k) != v}
                kwargs["remove_metadata"] = [k for k in base_keys if k not in after and k in current]
            elif current != before:
                self._conflict(sha, f"collection {reg}/{name}: {field} was changed on both sides "
                                    f"({before!r} -> {current!r} here, -> {after!r} there)")
            else:
                kwargs[field] = after
        if not kwargs:
            return []
        return ops.collection_edit(self.target, ctx, reg, name, **kwargs)[1]

    def _collection_rename(self, rec, ctx, source, sha):
        where = self._coll(rec["collection"])
        reg, name = where.split("/")
        new_name = rec["to"].split("/")[1]
        if name == new_name:
            return []
        try:
            records = ops.collection_rename(self.target, ctx, reg, name, new_name)[1]
        except Exception as e:
            self._conflict(sha, f"rename collection {where} to {reg}/{new_name}: {e}")
        # later records of the source line name it by its new name, links included
        for key in [k for k in self.link_map if k.startswith(rec["collection"] + ":")]:
            self.link_map[rec["to"] + key[len(rec["collection"]):]] = self.link_map[key]
        return records

    def _collection_delete(self, rec, ctx, source, sha):
        reg, name = self._coll(rec["collection"]).split("/")
        if not self.target.exists(m.collection_file(reg, name)):
            return []  # deleted here too
        base_links = set(self.base.link_versions(*rec["collection"].split("/")))
        added = [v for v in self.target.link_versions(reg, name) if v not in base_links]
        if added:
            self._conflict(sha, f"collection {reg}/{name} was deleted there, but {', '.join(added)} "
                                "were linked into it here")
        try:
            return ops.collection_delete(self.target, ctx, reg, name)[1]
        except Exception as e:
            self._conflict(sha, f"delete collection {reg}/{name}: {e}")

    def _artifact_delete(self, rec, ctx, source, sha):
        ref = self._art(rec["artifact"])
        name, version = ref.split(":")
        here = self.target.read(m.artifact_version_file(name, version))
        if here is None:
            self._conflict(sha, f"delete {ref}: no such version here")
        if here.get("deleted_at"):
            return []  # deleted on both sides
        try:
            return ops.artifact_delete(self.target, ctx, ref)[1]
        except Exception as e:
            self._conflict(sha, f"delete {ref}: {e}")

    def _artifact_edit(self, rec, ctx, source, sha):
        name = rec["artifact"]
        before, after = rec["changes"]["description"]
        current = self.target.artifact(name).get("description", "")
        if current == after:
            return []
        if current != before:
            self._conflict(sha, f"artifact {name}: description was changed on both sides")
        return ops.artifact_edit(self.target, ctx, name, description=after)[1]

    def _store_storage(self, rec, ctx, source, sha):
        before, after = rec["changes"]["storage"]
        here = self.target.store_config().get("storage")
        if here == after:
            return []
        if here != before:
            self._conflict(sha, "the store's storage was set on both sides")
        _, records = ops.store_storage(self.target, ctx, after)
        return records


def _fold_link_aliases(records: list[dict]) -> list[dict]:
    """Re-attach `[+alias]` to a replayed link's sentence when its aliases follow it."""
    for i, rec in enumerate(records):
        if rec.get("op") != "link" or "[+" in rec.get("summary", ""):
            continue
        aliases = [r["alias"] for r in records[i + 1:] if r.get("op") == "alias.set"
                   and r.get("collection") == rec["collection"] and r.get("after") == rec["version"]]
        if aliases:
            rec["aliases"] = aliases
            rec["summary"] += " [" + " ".join(f"+{a}" for a in aliases) + "]"
    return records
