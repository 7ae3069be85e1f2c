"""Operations: each reads a View, writes to it, and returns (result, [op records]).

An op record is the machine form of what happened; it goes into the commit's trailers so that
history and replays need no diffing. No records means nothing changed (no commit).
Operations must be deterministic given (view, context, arguments): on a lost race they are
simply run again on the new state.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from canonry import model as m
from canonry.errors import InvalidInput, InvalidName, NotFound, TypeNotAccepted
from canonry.git.storage import Identity
from canonry.governance import check as check_role_for
from canonry.governance import check_store_admin, is_protected
from canonry.names import LATEST, check_alias, check_name, parse_artifact_version
from canonry.schemas import FORMAT_VERSION
from canonry.view import View

__all__ = [
    "OPS",
    "VISIBILITIES",
    "Context",
    "accepts",
    "alias_remove",
    "alias_set",
    "artifact_delete",
    "artifact_edit",
    "artifact_version_record",
    "automations_set",
    "collection_create",
    "collection_delete",
    "collection_edit",
    "collection_record",
    "collection_rename",
    "deleted_text",
    "group_set",
    "link",
    "link_record",
    "links_index",
    "links_to",
    "log",
    "member_set",
    "protect",
    "registry_create",
    "registry_delete",
    "registry_edit",
    "registry_record",
    "registry_rename",
    "store_admin",
    "store_storage",
    "tag",
    "unlink",
]

VISIBILITIES = ("restricted", "organization")


class Context(NamedTuple):
    actor: Identity
    now: str  # ISO 8601, UTC


# ---- conversions: stored dicts -> typed records -------------------------------------------------
def registry_record(name: str, rec: dict) -> m.Registry:
    return m.Registry(name=name, description=rec.get("description", ""), visibility=rec["visibility"],
                      types=rec["types"], protected_aliases=list(rec.get("protected_aliases", [])),
                      members=dict(rec.get("members", {})), created_at=rec["created_at"],
                      created_by=rec["created_by"], record_usage=bool(rec.get("record_usage", False)))


def collection_record(view: View, registry: str, name: str, rec: dict | None = None) -> m.Collection:
    rec = rec or view.collection(registry, name)
    versions = view.link_versions(registry, name)
    aliases = view.aliases(registry, name)
    if versions:
        aliases[LATEST] = versions[-1]
    return m.Collection(registry=registry, name=name, type=rec["type"],
                        description=rec.get("description", ""), tags=list(rec.get("tags", [])),
                        aliases=aliases, versions=len(versions), next_version=rec["next_version"],
                        created_at=rec["created_at"], created_by=rec["created_by"],
                        metadata=dict(rec.get("metadata", {})))


def link_record(view: View, registry: str, collection: str, version: str, rec: dict | None = None,
                aliases: dict | None = None, latest: str | None = None) -> m.LinkedVersion:
    rec = rec or view.link(registry, collection, version)
    if aliases is None:
        aliases = view.aliases(registry, collection)
    if latest is None:
        versions = view.link_versions(registry, collection)
        latest = versions[-1] if versions else None
    names = sorted(a for a, v in aliases.items() if v == version)
    if latest == version:
        names.append(LATEST)
    return m.LinkedVersion(registry=registry, collection=collection, version=version,
                           artifact=rec["artifact"], digest=rec["digest"], aliases=names,
                           tags=list(rec.get("tags", [])), description=rec.get("description", ""),
                           linked_at=rec["linked_at"], linked_by=rec["linked_by"])


def artifact_version_record(name: str, version: str, rec: dict) -> m.ArtifactVersion:
    return m.ArtifactVersion(artifact=name, version=version, type=rec["type"], digest=rec["digest"],
                             size=rec["size"], files=list(rec["files"]),
                             metadata=dict(rec.get("metadata", {})), metrics=dict(rec.get("metrics", {})),
                             inputs=list(rec.get("inputs", [])), producer=dict(rec.get("producer", {})),
                             description=rec.get("description", ""), created_at=rec["created_at"],
                             created_by=rec["created_by"], deleted_at=rec.get("deleted_at"),
                             deleted_by=rec.get("deleted_by"))


# ---- registries ---------------------------------------------------------------------------------
def _check_types(types) -> list[str] | str:
    if types in (None, "all", ["all"], ("all",)):
        return "all"
    types = list(dict.fromkeys(types))
    if "all" in types:
        raise InvalidInput("artifact types: 'all' cannot be combined with named types")
    for t in types:
        check_name(t, "artifact type")
    return types


def registry_create(view: View, ctx: Context, name: str, description: str = "",
                    visibility: str = "restricted", types=None, default_role: str | None = None):
    check_name(name, "registry name")
    if visibility not in VISIBILITIES:
        raise InvalidInput(f"invalid visibility {visibility!r}: use restricted or organization")
    if view.exists(m.registry_file(name)):
        raise InvalidInput(f"registry {name!r} already exists")
    rec = {"format": FORMAT_VERSION, "description": description or "", "visibility": visibility,
           "types": _check_types(types), "members": {ctx.actor.actor: "admin"},
           "protected_aliases": [], "created_at": ctx.now, "created_by": ctx.actor.actor}
    if default_role:
        rec["default_role"] = default_role
    view.write(m.registry_file(name), rec)
    return registry_record(name, rec), [{
        "op": "registry.create", "registry": name, "after": {k: rec[k] for k in ("visibility", "types")},
        "summary": f"create registry {name}"}]


def registry_edit(view: View, ctx: Context, name: str, description: str | None = None,
                  visibility: str | None = None, add_types=None, types=None,
                  record_usage: bool | None = None):
    rec = view.registry(name)
    check_role_for(view, name, ctx.actor.actor, "settings")
    changes: dict = {}
    if description is not None and description != rec.get("description", ""):
        changes["description"] = [rec.get("description", ""), description]
        rec["description"] = description
    if visibility is not None and visibility != rec["visibility"]:
        if visibility not in VISIBILITIES:
            raise InvalidInput(f"invalid visibility {visibility!r}: use restricted or organization")
        changes["visibility"] = [rec["visibility"], visibility]
        rec["visibility"] = visibility
    new_types = rec["types"]
    if types is not None:
        new_types = _check_types(types)
    if add_types:
        added = _check_types(add_types)
        if added == "all":
            new_types = "all"
        elif new_types != "all":
            new_types = list(dict.fromkeys([*new_types, *added]))
    if new_types != rec["types"]:
        if rec["types"] == "all":
            raise InvalidInput(f"registry {name} accepts all types; narrowing it to {new_types} would "
                               "remove accepted types, which is never allowed")
        if new_types != "all":
            removed = [t for t in rec["types"] if t not in new_types]
            if removed:
                raise InvalidInput(f"cannot remove accepted type(s) {', '.join(removed)} from registry "
                                   f"{name}: accepted types can grow but never shrink")
        changes["types"] = [rec["types"], new_types]
        rec["types"] = new_types
    if record_usage is not None and bool(record_usage) != bool(rec.get("record_usage", False)):
        # before as stored (None when never set): a replay compares it with the other side's
        changes["record_usage"] = [rec.get("record_usage"), bool(record_usage)]
        rec["record_usage"] = bool(record_usage)
    if not changes:
        return registry_record(name, rec), []
    view.write(m.registry_file(name), rec)
    return registry_record(name, rec), [{
        "op": "registry.edit", "registry": name, "changes": changes,
        "summary": f"edit registry {name}: " + ", ".join(sorted(changes))}]


# ---- artifact versions --------------------------------------------------------------------------
MAX_KEY = 256  # characters in a metadata or metric key


def _check_fields(what: str, fields: dict | None, numeric: bool = False) -> None:
    """Metadata and metrics: a mapping of keys that print on one line (no newline to forge a
    line of `show` or of a review), and for metrics finite numbers a float can hold."""
    import math
    import sys

    if fields is None:
        return
    if not isinstance(fields, dict):
        raise InvalidInput(f"{what} is a mapping of KEY to value, not {type(fields).__name__}")
    for key, value in fields.items():
        if not isinstance(key, str) or not key or len(key) > MAX_KEY \
                or any(ord(c) < 32 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF for c in key):
            raise InvalidInput(f"{what} key {key!r}: a key is 1 to {MAX_KEY} characters, none a "
                               "control character (newline, tab)")
        if numeric and (isinstance(value, bool) or not isinstance(value, (int, float))
                        or abs(value) > sys.float_info.max
                        or (isinstance(value, float) and not math.isfinite(value))):
            raise InvalidInput(f"metric {key}: {value!r} is not a finite number")


def log(view: View, ctx: Context, name: str, type: str, files: list[dict], digest: str,
        metadata: dict | None = None, metrics: dict | None = None, inputs=(), description: str = "",
        producer: dict | None = None):
    check_name(name, "artifact name")
    check_name(type, "artifact type")
    _check_fields("metadata", metadata)
    _check_fields("metrics", metrics, numeric=True)
    resolved_inputs = []
    for ref in inputs:
        addr = parse_artifact_version(ref)
        version = view.resolve_artifact_ref(addr.artifact, addr.ref)
        resolved_inputs.append(f"{addr.artifact}:{version}")
    art = view.read(m.artifact_file(name))
    versions = view.artifact_versions(name) if art else []
    if art is not None:
        if art["type"] != type:
            raise TypeNotAccepted(f"artifact {name} has type {art['type']!r}, not {type!r}: "
                                  "an artifact keeps one type")
        if versions:
            newest = versions[-1]
            rec = view.read(m.artifact_version_file(name, newest))
            if rec["digest"] == digest and not rec.get("deleted_at"):
                result = artifact_version_record(name, newest, rec)
                result.created = False
                return result, []
    else:
        view.write(m.artifact_file(name), {"format": FORMAT_VERSION, "type": type,
                                           "description": "", "created_at": ctx.now,
                                           "created_by": ctx.actor.actor})
    version = f"v{int(versions[-1][1:]) + 1}" if versions else "v0"
    rec = {"format": FORMAT_VERSION, "type": type, "digest": digest,
           "size": sum(f["size"] for f in files), "files": files, "metadata": metadata or {},
           "metrics": metrics or {}, "inputs": resolved_inputs, "producer": producer or {},
           "description": description or "", "created_at": ctx.now, "created_by": ctx.actor.actor}
    view.write(m.artifact_version_file(name, version), rec)
    return artifact_version_record(name, version, rec), [{
        "op": "log", "artifact": f"{name}:{version}", "type": type, "digest": digest,
        "inputs": resolved_inputs, "summary": f"log {name}:{version} ({type}, {len(files)} file"
        f"{'s' if len(files) != 1 else ''}, {digest[7:19]})"}]


# ---- links --------------------------------------------------------------------------------------
def link(view: View, ctx: Context, artifact: str, registry: str, collection: str, aliases=(),
         description: str = ""):
    addr = parse_artifact_version(artifact)
    version, av = view.artifact_version(addr.artifact, addr.ref)
    ref = f"{addr.artifact}:{version}"
    if av.get("deleted_at"):
        raise InvalidInput(f"cannot link {ref}: {deleted_text(ref, av)}")
    for a in aliases:
        check_alias(a)
    reg = view.registry(registry)
    protected = [a for a in aliases if is_protected(reg, a)]
    if protected:  # name the role the whole operation needs
        check_role_for(view, registry, ctx.actor.actor, "protected-alias", ", ".join(protected))
    check_role_for(view, registry, ctx.actor.actor, "link")
    check_name(collection, "collection name")
    if collection == "registry.yaml":  # it would collide with the registry's own settings file
        raise InvalidName("invalid collection name 'registry.yaml': reserved for registry settings")
    coll = view.read(m.collection_file(registry, collection))
    created_collection = coll is None
    if coll is not None and coll["type"] != av["type"]:
        raise TypeNotAccepted(f"collection {registry}/{collection} holds type {coll['type']!r}; "
                              f"{ref} is of type {av['type']!r}")
    if not accepts(reg, av["type"]):
        raise TypeNotAccepted(_not_accepted(registry, reg, av["type"], ref))
    if coll is None:
        coll = {"format": FORMAT_VERSION, "type": av["type"], "description": "", "tags": [],
                "next_version": 0, "created_at": ctx.now, "created_by": ctx.actor.actor}
    where = f"{registry}/{collection}"
    index = links_index(view, registry, collection)
    # This transaction's own map (derived by an earlier link in it) may grow in place; one from
    # the cache is shared and is copied.
    owned = view.derived.get(m.links_dir(registry, collection), (None, None))[1] is index
    existing = index.get(ref)
    if existing is not None:
        # Already linked: no new link. Aliases asked for are applied to the existing link.
        alias_records = _move_aliases(view, registry, collection, existing, aliases)
        result = link_record(view, registry, collection, existing)
        result.created = False
        return result, alias_records
    number = coll["next_version"]
    new_version = f"v{number}"
    coll["next_version"] = number + 1
    view.write(m.collection_file(registry, collection), coll)
    view.write(m.link_file(registry, collection, new_version), {
        "format": FORMAT_VERSION, "artifact": ref, "digest": av["digest"],
        "description": description or "", "tags": [], "linked_at": ctx.now,
        "linked_by": ctx.actor.actor})
    summary = f"link {ref} -> {where} as {new_version}"
    if aliases:
        summary += " [" + " ".join(f"+{a}" for a in aliases) + "]"
    record: dict[str, Any] = {"op": "link", "artifact": ref, "collection": where, "version": new_version,
              "aliases": list(aliases), "summary": summary}
    if created_collection:
        record["collection_created"] = True
    records = [record, *_move_aliases(view, registry, collection, new_version, aliases)]
    # The next link op on this collection, in any process, finds the map under the new tree.
    if owned:
        index[ref] = new_version
    else:
        index = {**index, ref: new_version}
    view.derive(m.links_dir(registry, collection), "links-index", index)
    # Link numbers only grow: the new link is the latest.
    return link_record(view, registry, collection, new_version, latest=new_version), records


def _move_aliases(view: View, registry: str, collection: str, version: str, aliases) -> list[dict]:
    aliases = list(dict.fromkeys(aliases))
    current = view.aliases(registry, collection, broken_ok=aliases)  # moving a broken alias fixes it
    records = []
    where = f"{registry}/{collection}"
    for a in aliases:
        before = current.get(a)
        if before == version:
            continue
        current[a] = version
        records.append(_alias_record(where, a, before, version))
    if records:
        _write_aliases(view, registry, collection, current)
    return records


def _alias_record(where: str, alias: str, before: str | None, after: str) -> dict:
    if before:
        summary = f"move alias {alias} of {where} from {before} to {after}"
    else:
        summary = f"set alias {alias} on {where}:{after}"
    return {"op": "alias.set", "collection": where, "alias": alias, "before": before,
            "after": after, "summary": summary}


def accepts(registry: dict, artifact_type: str) -> bool:
    """Whether a registry record (registry.yaml) accepts artifacts of `artifact_type`."""
    return registry["types"] == "all" or artifact_type in registry["types"]


def _not_accepted(registry: str, reg: dict, type_: str, ref: str) -> str:
    return (f"registry {registry} does not accept type {type_!r} (of {ref}); it accepts: "
            f"{', '.join(reg['types'])}")


def links_index(view: View, registry: str, collection: str) -> dict[str, str]:
    """artifact version -> its link in the collection. Kept in the record cache per links tree
    id (content-addressed, so never stale): a link op need not read every link."""
    links = m.links_dir(registry, collection)
    pending = view.pending_under(links)
    derived = view.derived.get(links)
    if pending and derived is not None and derived[0] == "links-index":
        # An earlier link of this transaction left the map: no re-reading the collection's links.
        return derived[1]  # type: ignore[return-value]
    entry = None if pending else view.storage.lookup(view.root, links)
    index = view.cache.get(entry[1], "links-index") if entry else None
    if index is None:
        index = {}
        for v, artifact in view.link_artifacts(registry, collection).items():
            index.setdefault(artifact, v)
        if entry:
            view.cache.put(entry[1], "links-index", index)
    return index


def _write_aliases(view: View, registry: str, collection: str, aliases: dict) -> None:
    ordered = dict(sorted(aliases.items()))
    view.write(m.aliases_file(registry, collection), {"format": FORMAT_VERSION, "aliases": ordered})


def unlink(view: View, ctx: Context, registry: str, collection: str, ref: str):
    view.collection(registry, collection)
    version = view.resolve_link_ref(registry, collection, ref)
    result = link_record(view, registry, collection, version)
    aliases = view.aliases(registry, collection)
    removed = sorted(a for a, v in aliases.items() if v == version)
    held = [a for a in removed if is_protected(view.registry(registry), a)]
    if held:  # name the role the whole operation needs
        check_role_for(view, registry, ctx.actor.actor, "protected-alias",
                       f"unlinking {registry}/{collection}:{version} removes {', '.join(held)}")
    check_role_for(view, registry, ctx.actor.actor, "unlink")
    if removed:
        _write_aliases(view, registry, collection, {a: v for a, v in aliases.items() if v != version})
    view.delete(m.link_file(registry, collection, version))
    where = f"{registry}/{collection}"
    summary = f"unlink {where}:{version} ({result.artifact})"
    if removed:
        summary += " [" + " ".join(f"-{a}" for a in removed) + "]"
    return result, [{"op": "unlink", "collection": where, "version": version,
                     "artifact": result.artifact, "aliases": removed, "summary": summary}] + [
        {"op": "alias.rm", "collection": where, "alias": a, "before": version, "after": None,
         "summary": f"remove alias {a} from {where}:{version}"} for a in removed]


# ---- aliases ------------------------------------------------------------------------------------
def alias_set(view: View, ctx: Context, registry: str, collection: str, ref: str, alias: str):
    check_alias(alias)
    view.collection(registry, collection)
    check_role_for(view, registry, ctx.actor.actor,
                   "protected-alias" if is_protected(view.registry(registry), alias) else "alias", alias)
    version = view.resolve_link_ref(registry, collection, ref)
    aliases = view.aliases(registry, collection, broken_ok=(alias,))
    before = aliases.get(alias)
    where = f"{registry}/{collection}"
    change = m.AliasChange(collection=where, alias=alias, before=before, after=version)
    if before == version:
        return change, []
    return change, _move_aliases(view, registry, collection, version, [alias])


def alias_remove(view: View, ctx: Context, registry: str, collection: str, alias: str):
    check_alias(alias)
    view.collection(registry, collection)
    check_role_for(view, registry, ctx.actor.actor,
                   "protected-alias" if is_protected(view.registry(registry), alias) else "alias", alias)
    aliases = view.aliases(registry, collection, broken_ok=(alias,))  # removing a broken alias fixes it
    where = f"{registry}/{collection}"
    if alias not in aliases:
        raise NotFound("alias", alias, list(aliases), where=where)
    before = aliases.pop(alias)
    _write_aliases(view, registry, collection, aliases)
    return m.AliasChange(collection=where, alias=alias, before=before, after=None), [{
        "op": "alias.rm", "collection": where, "alias": alias, "before": before, "after": None,
        "summary": f"remove alias {alias} from {where}:{before}"}]


# ---- tags ---------------------------------------------------------------------------------------
def tag(view: View, ctx: Context, registry: str, collection: str, ref: str | None, add=(), remove=()):
    """Add/remove tags on a collection (ref None) or on one linked version."""
    for t in list(add) + list(remove):
        check_name(t, "tag")
    coll = view.collection(registry, collection)
    check_role_for(view, registry, ctx.actor.actor, "tag")
    if ref is None:
        path, rec, target = m.collection_file(registry, collection), coll, f"{registry}/{collection}"
    else:
        version = view.resolve_link_ref(registry, collection, ref)
        path, rec = m.link_file(registry, collection, version), view.link(registry, collection, version)
        target = f"{registry}/{collection}:{version}"
    before = list(rec.get("tags", []))
    after = [t for t in before if t not in remove] + [t for t in dict.fromkeys(add) if t not in before]
    change = m.TagChange(target=target, before=before, after=after)
    if after == before:
        return change, []
    rec["tags"] = after
    view.write(path, rec)
    op = "tag.add" if add else "tag.rm"
    words = " ".join([f"+{t}" for t in add if t not in before] + [f"-{t}" for t in remove if t in before])
    return change, [{"op": op, "target": target, "collection": f"{registry}/{collection}",
                     "before": before, "after": after, "summary": f"tag {target} {words}"}]


def automations_set(view: View, ctx: Context, automations: list, registry: str | None = None):
    """Replace the automations of the store (registry None) or of one registry."""
    if not isinstance(automations, list):
        raise InvalidInput("automations must be a list of {name, on, filter, action, with}")
    names = [a.get("name") for a in automations if isinstance(a, dict)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInput(f"automation names must be unique; repeated: {', '.join(map(str, dupes))}")
    for a in automations:
        pattern = (a.get("filter") or {}).get("alias") if isinstance(a, dict) else None
        if pattern is not None:
            import re

            try:
                re.compile(pattern)
            except (re.error, TypeError) as e:
                raise InvalidInput(f"automation {a.get('name')}: filter.alias is not a valid regex: {e}") from None
    if registry is None:
        check_store_admin(view, ctx.actor.actor, "change the store's automations")
        path, rec, where = m.STORE_FILE, view.store_config(), "the store"
    else:
        check_role_for(view, registry, ctx.actor.actor, "settings")
        path, rec, where = m.registry_file(registry), view.registry(registry), f"registry {registry}"
    before = rec.get("automations", [])
    if before == automations:
        return automations, []
    rec["automations"] = automations
    view.write(path, rec)
    record = {"op": "automations.set", "names": names,
              "summary": f"set automations of {where}: {', '.join(map(str, names)) or 'none'}"}
    if registry:
        record["registry"] = registry
    return automations, [record]


# ---- governance: members, protected aliases, store admins and groups ---------------------------------
def member_set(view: View, ctx: Context, registry: str, member: str, role: str | None):
    """Give `member` (an email or group:NAME) `role` in a registry; role None removes them."""
    from canonry.governance import check_member_key, check_role

    check_member_key(member)
    rec = view.registry(registry)
    check_role_for(view, registry, ctx.actor.actor, "members")
    members = dict(rec.get("members") or {})
    before = members.get(member)
    if role is None:
        if before is None:
            raise NotFound("member", member, list(members), where=f"registry {registry}")
        del members[member]
        summary = f"remove member {member} from registry {registry}"
    else:
        role = check_role(role)
        if before == role:
            return {"registry": registry, "member": member, "before": before, "after": role}, []
        members[member] = role
        summary = f"{'change' if before else 'add'} member {member} of registry {registry}: {role}"
    if before == "admin" and "admin" not in members.values() and not view.store_config().get("admins"):
        raise InvalidInput(f"cannot {'remove' if role is None else 'demote'} {member}: registry "
                           f"{registry} would have no admin left")
    rec["members"] = dict(sorted(members.items()))
    view.write(m.registry_file(registry), rec)
    return {"registry": registry, "member": member, "before": before, "after": role}, [{
        "op": "member.set" if role else "member.rm", "registry": registry, "member": member,
        "before": before, "after": role, "summary": summary}]


def protect(view: View, ctx: Context, registry: str, alias: str, protected: bool = True):
    check_alias(alias)
    rec = view.registry(registry)
    check_role_for(view, registry, ctx.actor.actor, "settings")
    current = list(rec.get("protected_aliases") or [])
    if (alias in current) == protected:
        return {"registry": registry, "protected_aliases": current, "changed": False}, []
    after = sorted([*current, alias]) if protected else [a for a in current if a != alias]
    rec["protected_aliases"] = after
    view.write(m.registry_file(registry), rec)
    verb = "protect" if protected else "unprotect"
    return {"registry": registry, "protected_aliases": after, "changed": True}, [{
        "op": f"registry.{verb}", "registry": registry, "alias": alias,
        "changes": {"protected_aliases": [current, after]},
        "summary": f"{verb} alias {alias} in registry {registry}"}]


def store_admin(view: View, ctx: Context, member: str, add: bool = True):
    from canonry.governance import check_member_key

    check_member_key(member)
    config = view.store_config()
    admins = list(config.get("admins", []))
    check_store_admin(view, ctx.actor.actor, "change the store admins")
    if (member in admins) == add:
        return admins, []
    admins = [*admins, member] if add else [a for a in admins if a != member]
    if not admins:
        raise InvalidInput("cannot remove the last store admin")
    config["admins"] = admins
    view.write(m.STORE_FILE, config)
    return admins, [{"op": "store.admin", "member": member, "added": add,
                     "summary": f"{'add' if add else 'remove'} store admin {member}"}]


def group_set(view: View, ctx: Context, name: str, members: list[str]):
    from canonry.governance import check_member_key

    check_name(name, "group name")
    for p in members:
        check_member_key(p)
    config = view.store_config()
    check_store_admin(view, ctx.actor.actor, "change groups")
    groups = dict(config.get("groups") or {})
    if groups.get(name) == list(members):
        return groups, []
    if members:
        groups[name] = list(dict.fromkeys(members))
    elif name in groups:
        del groups[name]
    else:
        return groups, []
    config["groups"] = groups
    view.write(m.STORE_FILE, config)
    return groups, [{"op": "store.group", "group": name, "members": list(members),
                     "summary": f"set group {name}: {', '.join(members) or 'removed'}"}]


def store_storage(view: View, ctx: Context, url: str | None):
    """Where the store's artifact bytes live, for every clone (url checked by the caller:
    files/location.py); None: each clone's own folder."""
    config = view.store_config()
    check_store_admin(view, ctx.actor.actor, "set the store's storage")
    before = config.get("storage")
    if before == url:
        return {"storage": url, "changed": False}, []
    if url:
        config["storage"] = url
    else:
        config.pop("storage", None)
    view.write(m.STORE_FILE, config)
    return {"storage": url, "changed": True}, [{
        "op": "store.storage", "storage": url, "changes": {"storage": [before, url]},
        "summary": f"set storage to {url}" if url else "unset storage (each clone keeps its own bytes)"}]


# ---- lifecycle: create, edit, rename and delete registries, collections, artifact versions ------
def deleted_text(ref: str, rec: dict) -> str:
    """How a deleted artifact version is told in messages: who deleted it, and when."""
    return f"{ref} was deleted by {rec.get('deleted_by')} at {rec.get('deleted_at')}"


def _files_under(view: View, path: str) -> list[str]:
    """Every file below directory `path`, pending writes included, in path order."""
    import stat

    found: set[str] = set()

    def walk(tree_path: str) -> None:
        for name, mode, _sha in view.storage.listdir(view.root, tree_path):
            child = f"{tree_path}/{name}"
            if stat.S_ISDIR(mode):
                walk(child)
            else:
                found.add(child)

    if view.root is not None and view.storage.lookup(view.root, path) is not None:
        walk(path)
    for p, data in view.pending.items():
        if p.startswith(path + "/"):
            if data is None:
                found.discard(p)
            else:
                found.add(p)
    return sorted(found)


def _move_tree(view: View, old: str, new: str) -> None:
    """Move every file below directory `old` to the same place below `new`."""
    for path in _files_under(view, old):
        rec = view.read(path)
        if rec is not None:
            view.write(new + path[len(old):], rec)
        view.delete(path)


def _delete_tree(view: View, path: str) -> None:
    for p in _files_under(view, path):
        view.delete(p)


def _check_collection_name(name: str) -> None:
    check_name(name, "collection name")
    if name == "registry.yaml":  # it would collide with the registry's own settings file
        raise InvalidName("invalid collection name 'registry.yaml': reserved for registry settings")


def _stored_aliases(view: View, registry: str, collection: str) -> dict[str, str]:
    """alias -> vN as aliases.yaml holds them (a broken alias included: it goes too)."""
    rec = view.read(m.aliases_file(registry, collection))
    return dict(rec["aliases"]) if rec else {}


def registry_delete(view: View, ctx: Context, name: str, force: bool = False):
    """Delete registry NAME: an empty one by its admins; one still holding collections only with
    `force`, by a store admin, which removes its collections and links (never artifact versions)."""
    rec = view.registry(name)
    collections = view.collection_names(name)
    check_role_for(view, name, ctx.actor.actor, "delete-registry")
    if collections and not force:
        shown = ", ".join(f"{name}/{c}" for c in collections[:5]) + (", …" if len(collections) > 5 else "")
        raise InvalidInput(f"registry {name} is not empty ({len(collections)} collection"
                           f"{'s' * (len(collections) != 1)}: {shown}): delete them first, or use --force "
                           "(a store admin; removes its collections and links, never artifact versions)")
    if collections:
        check_store_admin(view, ctx.actor.actor, f"delete registry {name}, which holds collections")
    links = sum(len(view.link_versions(name, c)) for c in collections)
    _delete_tree(view, m.registry_dir(name))
    summary = f"delete registry {name}"
    if collections:
        summary += (f" with {len(collections)} collection{'s' * (len(collections) != 1)} and "
                    f"{links} link{'s' * (links != 1)}")
    result = registry_record(name, rec)
    return result, [{"op": "registry.delete", "registry": name, "collections": collections,
                     "links": links, "force": bool(collections), "summary": summary}]


def registry_rename(view: View, ctx: Context, name: str, new_name: str):
    rec = view.registry(name)
    check_name(new_name, "registry name")
    check_role_for(view, name, ctx.actor.actor, "delete-registry")
    if new_name == name:
        return registry_record(name, rec), []
    if view.exists(m.registry_file(new_name)):
        raise InvalidInput(f"registry {new_name!r} already exists")
    _move_tree(view, m.registry_dir(name), m.registry_dir(new_name))
    return registry_record(new_name, rec), [{
        "op": "registry.rename", "registry": name, "to": new_name,
        "summary": f"rename registry {name} to {new_name}"}]


def collection_create(view: View, ctx: Context, registry: str, name: str, type: str,
                      description: str = "", metadata: dict | None = None):
    reg = view.registry(registry)
    _check_collection_name(name)
    check_name(type, "artifact type")
    _check_fields("metadata", metadata)
    _check_metadata_values(metadata)
    check_role_for(view, registry, ctx.actor.actor, "collection")
    if view.exists(m.collection_file(registry, name)):
        raise InvalidInput(f"collection {registry}/{name} already exists")
    if not accepts(reg, type):
        raise TypeNotAccepted(f"registry {registry} does not accept type {type!r}; it accepts: "
                              f"{', '.join(reg['types'])}")
    rec: dict[str, Any] = {"format": FORMAT_VERSION, "type": type, "description": description or "",
                           "tags": []}
    if metadata:
        rec["metadata"] = dict(metadata)
    rec.update({"next_version": 0, "created_at": ctx.now, "created_by": ctx.actor.actor})
    view.write(m.collection_file(registry, name), rec)
    where = f"{registry}/{name}"
    return collection_record(view, registry, name, rec), [{
        "op": "collection.create", "collection": where, "type": type,
        "summary": f"create collection {where} ({type})"}]


def _check_metadata_values(metadata: dict | None) -> None:
    for key, value in (metadata or {}).items():
        if not isinstance(value, (str, int, float, bool)) or (isinstance(value, float) and value != value):
            raise InvalidInput(f"collection metadata {key}: {value!r} is not a string, number or boolean")


def collection_edit(view: View, ctx: Context, registry: str, name: str, description: str | None = None,
                    metadata: dict | None = None, remove_metadata=()):
    """Set the description, set metadata keys, remove metadata keys of a collection."""
    rec = view.collection(registry, name)
    _check_fields("metadata", metadata)
    _check_metadata_values(metadata)
    check_role_for(view, registry, ctx.actor.actor, "edit-collection")
    changes: dict[str, list] = {}
    if description is not None and description != rec.get("description", ""):
        changes["description"] = [rec.get("description", ""), description]
        rec["description"] = description
    before = dict(rec.get("metadata", {}))
    after = {k: v for k, v in before.items() if k not in set(remove_metadata)}
    missing = [k for k in remove_metadata if k not in before]
    if missing:
        raise NotFound("metadata key", missing[0], list(before), where=f"collection {registry}/{name}")
    after.update(metadata or {})
    if after != before:
        changes["metadata"] = [before, after]
        if after:
            rec["metadata"] = after
        else:
            rec.pop("metadata", None)
    if not changes:
        return collection_record(view, registry, name, rec), []
    view.write(m.collection_file(registry, name), rec)
    where = f"{registry}/{name}"
    return collection_record(view, registry, name, rec), [{
        "op": "collection.edit", "collection": where, "changes": changes,
        "summary": f"edit collection {where}: " + ", ".join(sorted(changes))}]


def _check_protected_collection(view: View, ctx: Context, registry: str, name: str, what: str) -> None:
    reg = view.registry(registry)
    held = sorted(a for a in _stored_aliases(view, registry, name) if is_protected(reg, a))
    if held:
        check_role_for(view, registry, ctx.actor.actor, "protected-alias",
                       f"{what} {registry}/{name} takes protected alias{'es' * (len(held) > 1)} "
                       f"{', '.join(held)} with it")
    check_role_for(view, registry, ctx.actor.actor, "delete-collection")


def collection_rename(view: View, ctx: Context, registry: str, name: str, new_name: str):
    view.collection(registry, name)
    _check_collection_name(new_name)
    _check_protected_collection(view, ctx, registry, name, "renaming")
    if new_name == name:
        return collection_record(view, registry, name), []
    if view.exists(m.collection_file(registry, new_name)) or view.names(m.collection_dir(registry, new_name)):
        raise InvalidInput(f"collection {registry}/{new_name} already exists")
    _move_tree(view, m.collection_dir(registry, name), m.collection_dir(registry, new_name))
    where, to = f"{registry}/{name}", f"{registry}/{new_name}"
    return collection_record(view, registry, new_name), [{
        "op": "collection.rename", "collection": where, "to": to,
        "summary": f"rename collection {where} to {to}"}]


def collection_delete(view: View, ctx: Context, registry: str, name: str):
    """Delete a collection with its links and aliases (artifact versions stay); a protected alias
    in it makes this a registry admin's call."""
    rec = view.collection(registry, name)
    _check_protected_collection(view, ctx, registry, name, "deleting")
    links = view.link_versions(registry, name)
    aliases = _stored_aliases(view, registry, name)
    result = m.Collection(registry=registry, name=name, type=rec["type"],
                          description=rec.get("description", ""), tags=list(rec.get("tags", [])),
                          aliases=aliases, versions=len(links), next_version=rec["next_version"],
                          created_at=rec["created_at"], created_by=rec["created_by"],
                          metadata=dict(rec.get("metadata", {})))
    _delete_tree(view, m.collection_dir(registry, name))
    where = f"{registry}/{name}"
    summary = f"delete collection {where} ({len(links)} link{'s' * (len(links) != 1)}"
    summary += (", aliases " + ", ".join(sorted(aliases)) + ")") if aliases else ")"
    return result, [{"op": "collection.delete", "collection": where, "links": len(links),
                     "aliases": dict(sorted(aliases.items())), "summary": summary}]


def links_to(view: View, ref: str) -> list[str]:
    """Every link (REGISTRY/COLLECTION:vN) pointing at artifact version `ref`."""
    found = []
    for r in view.registry_names():
        for c in view.collection_names(r):
            found += [f"{r}/{c}:{v}" for v, a in view.link_artifacts(r, c).items() if a == ref]
    return found


def artifact_delete(view: View, ctx: Context, artifact: str):
    """Mark ARTIFACT:vK deleted: refused while a collection links it. Its record stays (its number
    is never reused, its history stays readable); its bytes become collectable (`gc --blobs`).
    Its author or a store admin may."""
    addr = parse_artifact_version(artifact)
    version, rec = view.artifact_version(addr.artifact, addr.ref)
    ref = f"{addr.artifact}:{version}"
    if rec.get("deleted_at"):
        raise InvalidInput(f"{deleted_text(ref, rec)}: nothing to do")
    if ctx.actor.actor != rec["created_by"]:
        check_store_admin(view, ctx.actor.actor, f"delete {ref}, logged by {rec['created_by']}")
    linked = links_to(view, ref)
    if linked:
        shown = ", ".join(linked[:5]) + (", …" if len(linked) > 5 else "")
        raise InvalidInput(f"cannot delete {ref}: it is linked in {shown}; unlink it first")
    rec["deleted_at"], rec["deleted_by"] = ctx.now, ctx.actor.actor
    view.write(m.artifact_version_file(addr.artifact, version), rec)
    return artifact_version_record(addr.artifact, version, rec), [{
        "op": "artifact.delete", "artifact": ref, "digest": rec["digest"],
        "summary": f"delete {ref} ({rec['digest'][7:19]})"}]


def artifact_edit(view: View, ctx: Context, name: str, description: str | None = None):
    """Set an artifact's description: its creator or a store admin may."""
    rec = view.artifact(name)
    if ctx.actor.actor != rec["created_by"]:
        check_store_admin(view, ctx.actor.actor, f"edit artifact {name}, created by {rec['created_by']}")
    changes = {}
    if description is not None and description != rec.get("description", ""):
        changes["description"] = [rec.get("description", ""), description]
        rec["description"] = description
    result = m.Artifact(name=name, type=rec["type"], description=rec.get("description", ""),
                        versions=view.artifact_versions(name), created_at=rec["created_at"],
                        created_by=rec["created_by"])
    if not changes:
        return result, []
    view.write(m.artifact_file(name), rec)
    return result, [{"op": "artifact.edit", "artifact": name, "changes": changes,
                     "summary": f"edit artifact {name}: " + ", ".join(sorted(changes))}]


OPS: dict[str, Callable[..., tuple[Any, list[dict]]]] = {
    "member.set": member_set,
    "registry.protect": protect,
    "store.admin": store_admin,
    "store.group": group_set,
    "store.storage": store_storage,
    "automations.set": automations_set,
    "registry.create": registry_create,
    "registry.edit": registry_edit,
    "log": log,
    "link": link,
    "unlink": unlink,
    "alias.set": alias_set,
    "alias.rm": alias_remove,
    "tag": tag,
    "registry.delete": registry_delete,
    "registry.rename": registry_rename,
    "collection.create": collection_create,
    "collection.edit": collection_edit,
    "collection.rename": collection_rename,
    "collection.delete": collection_delete,
    "artifact.delete": artifact_delete,
    "artifact.edit": artifact_edit,
}
