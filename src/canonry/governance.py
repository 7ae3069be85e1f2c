"""Who may do what: roles per registry, store-wide admins, groups, protected aliases.

| action                                                      | restricted_viewer | viewer | member | admin |
|-------------------------------------------------------------|-------------------|--------|--------|-------|
| see metadata                                                | yes               | yes    | yes    | yes   |
| download files                                              | no                | yes    | yes    | yes   |
| link/unlink, tag, set non-protected aliases, new collections| no                | no     | yes    | yes   |
| edit, rename, delete a collection (no protected alias)      | no                | no     | yes    | yes   |
| add/remove protected aliases, unlink a version holding one  | no                | no     | no     | yes   |
| edit settings (visibility, types, protected), members       | no                | no     | no     | yes   |
| rename a registry, delete an empty one                      | no                | no     | no     | yes   |

Store-wide admins (canonry.yaml `admins`) are admins of every registry; only they may delete a
registry that still holds collections (`registry delete --force`). An artifact version linked
nowhere belongs to its author: only they and the store admins may delete it or download it. In an `organization`
registry everyone holds at least its `default_role` (viewer unless the registry says member:
the core `model` and `dataset` registries of a new store do, so a team can promote at once).
Members are emails (the git author identity) or `group:NAME` with groups defined in
canonry.yaml. Metadata is readable by anyone who can read the git repository; roles govern
downloads and every change.
"""
from __future__ import annotations

from canonry.errors import CanonryError

__all__ = [
    "NEEDS",
    "RANK",
    "ROLES",
    "WHAT",
    "PermissionDenied",
    "allowed",
    "check",
    "check_member_key",
    "check_role",
    "check_store_admin",
    "check_unlinked_download",
    "groups_of",
    "is_protected",
    "role_in",
    "store_admins",
]

ROLES = ("restricted_viewer", "viewer", "member", "admin")
RANK = {r: i for i, r in enumerate(ROLES)}

# action -> minimum role
NEEDS = {
    "download": "viewer",
    "link": "member",
    "unlink": "member",
    "tag": "member",
    "alias": "member",
    "collection": "member",
    "edit-collection": "member",
    "delete-collection": "member",
    "protected-alias": "admin",
    "settings": "admin",
    "members": "admin",
    "delete-registry": "admin",
}
WHAT = {
    "download": "download files",
    "link": "link versions",
    "unlink": "unlink versions",
    "tag": "change tags",
    "alias": "set or remove aliases",
    "collection": "create collections",
    "edit-collection": "edit collections",
    "delete-collection": "rename or delete collections",
    "protected-alias": "add or remove a protected alias",
    "settings": "edit registry settings",
    "members": "manage members",
    "delete-registry": "rename or delete the registry",
}


class PermissionDenied(CanonryError):
    pass


def store_admins(store_config: dict) -> list[str]:
    return list(store_config.get("admins", []))


def groups_of(store_config: dict, actor: str) -> list[str]:
    return [name for name, people in (store_config.get("groups") or {}).items() if actor in people]


def role_in(store_config: dict, registry: dict, actor: str) -> str | None:
    """The actor's role in a registry (None: no access to a restricted registry)."""
    if actor in store_admins(store_config):
        return "admin"
    members = registry.get("members") or {}
    candidates = [members.get(actor)] + [members.get(f"group:{g}") for g in groups_of(store_config, actor)]
    if registry.get("visibility") == "organization":
        candidates.append(registry.get("default_role", "viewer"))
    held = [r for r in candidates if r in RANK]
    return max(held, key=RANK.__getitem__) if held else None


def allowed(role: str | None, action: str) -> bool:
    return role is not None and RANK[role] >= RANK[NEEDS[action]]


def check(view, registry: str, actor: str, action: str, detail: str = "") -> None:
    """Raise PermissionDenied unless `actor` may do `action` in `registry` at this view."""
    role = role_in(view.store_config(), view.registry(registry), actor)
    if allowed(role, action):
        return
    need = NEEDS[action]
    has = f"has {role}" if role else "is not a member"
    what = WHAT[action] + (f" ({detail})" if detail else "")
    raise PermissionDenied(f"{actor} may not {what} in registry {registry}: that needs role {need} "
                           f"({actor} {has})")


def check_unlinked_download(view, address: str, author: str, actor: str) -> None:
    """The bytes of an artifact version linked in no registry belong to its author and the store
    admins: no registry's roles govern them, and unlinking a version from a restricted registry
    must not make it public.

    Raises:
        PermissionDenied: naming the author and what would give access.
    """
    if actor == author or actor in store_admins(view.store_config()):
        return
    raise PermissionDenied(f"{actor} may not download {address}: it is linked in no registry, so only its "
                           f"author ({author}) and store admins may; link it into a registry where {actor} "
                           "may download files")


def check_store_admin(view, actor: str, what: str) -> None:
    admins = store_admins(view.store_config())
    if admins and actor not in admins:
        raise PermissionDenied(f"{actor} may not {what}: that needs a store admin "
                               f"(canonry.yaml admins: {', '.join(admins)})")


def is_protected(registry: dict, alias: str) -> bool:
    return alias in (registry.get("protected_aliases") or [])


def check_member_key(key: str) -> str:
    from canonry.errors import InvalidName
    from canonry.names import check_name

    if key.startswith("group:"):
        check_name(key[6:], "group name")
        return key
    if "@" not in key or any(c.isspace() for c in key) or len(key) > 254:
        raise InvalidName(f"invalid member {key!r}: use an email (the git author identity) or group:NAME")
    return key


def check_role(role: str) -> str:
    from canonry.errors import InvalidInput

    role = role.replace("-", "_")
    if role not in RANK:
        raise InvalidInput(f"invalid role {role!r}: use one of {', '.join(ROLES)}")
    return role
