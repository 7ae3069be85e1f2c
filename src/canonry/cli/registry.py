"""`canonry registry …`: registries, their settings, members and protected aliases."""
from __future__ import annotations

import click

from canonry.cli.common import done, read_options, say, store_options
from canonry.cli.read import print_registries, show_target, types_text

__all__ = [
    "member_add", "member_list", "member_rm", "registry", "registry_create", "registry_delete",
    "registry_edit", "registry_list", "registry_member", "registry_protect", "registry_rename",
    "registry_show", "registry_unprotect",
]


@click.group()
def registry():
    """Create, list, show, edit, rename and delete registries."""


@registry.command("create")
@click.argument("name")
@click.option("--description", "-d", default="", help="What the registry is for.")
@click.option("--visibility", type=click.Choice(["restricted", "organization"]), default="restricted",
              show_default=True)
@click.option("--type", "types", multiple=True, metavar="T",
              help="Accepted artifact type (repeatable; default: all types).")
@store_options
def registry_create(c, name, description, visibility, types, as_json):
    """Create registry NAME."""
    reg = c.store().create_registry(name, description, visibility, list(types) or None)
    done(as_json, reg.to_dict(), f"created registry {reg.name} ({reg.visibility}; "
                                 f"types: {types_text(reg.types)})")


@registry.command("list")
@read_options
def registry_list(c, as_json):
    """List registries."""
    print_registries(c.store(), as_json)


@registry.command("show")
@click.argument("name")
@read_options
def registry_show(c, name, as_json):
    """Show registry NAME and its collections."""
    from canonry.names import check_name

    check_name(name, "registry name")
    show_target(c.store(), name, as_json)


@registry.command("edit")
@click.argument("name")
@click.option("--description", "-d", default=None)
@click.option("--visibility", type=click.Choice(["restricted", "organization"]), default=None)
@click.option("--add-type", "add_types", multiple=True, metavar="T",
              help="Accept another artifact type (repeatable; 'all' accepts every type).")
@click.option("--record-usage/--no-record-usage", "record_usage", default=None,
              help="Record every download of a version linked here in the usage log (`canonry usage`).")
@store_options
def registry_edit(c, name, description, visibility, add_types, record_usage, as_json):
    """Edit registry settings. Accepted types can be added, never removed."""
    store = c.store()
    before = store.registry(name)
    reg = store.edit_registry(name, description=description, visibility=visibility,
                              add_types=list(add_types) or None, record_usage=record_usage)
    changed = reg.to_dict() != before.to_dict()
    done(as_json, {**reg.to_dict(), "changed": changed},
         f"edited registry {name}" if changed else f"registry {name}: nothing to change")


@registry.command("rename")
@click.argument("name", metavar="OLD")
@click.argument("new_name", metavar="NEW")
@store_options
def registry_rename(c, name, new_name, as_json):
    """Rename registry OLD to NEW; its collections, links and settings move along (admins)."""
    reg = c.store().rename_registry(name, new_name)
    done(as_json, reg.to_dict(), f"renamed registry {name} to {reg.name}" if reg.name != name
         else f"registry {name}: nothing to change")


@registry.command("delete")
@click.argument("name")
@click.option("--force", is_flag=True,
              help="Also remove its collections, links and aliases (a store admin; artifact versions stay).")
@store_options
def registry_delete(c, name, force, as_json):
    """Delete registry NAME: an empty one (its admins), or with --force one holding collections."""
    store = c.store()
    collections = len(store.view().collection_names(name)) if force else 0
    reg = store.delete_registry(name, force=force)
    text = f"deleted registry {reg.name}"
    if collections:
        text += f" and its {collections} collection{'s' * (collections != 1)}"
    done(as_json, {**reg.to_dict(), "deleted": True}, text)


@registry.group("member")
def registry_member():
    """Manage the members of a registry and their roles."""


@registry_member.command("add")
@click.argument("registry_name", metavar="REGISTRY")
@click.argument("member", metavar="USER")
@click.option("--role", required=True, type=click.Choice(["admin", "member", "viewer", "restricted_viewer", "restricted-viewer"]))
@store_options
def member_add(c, registry_name, member, role, as_json):
    """Give USER (an email, or group:NAME) ROLE in REGISTRY (changes the role if USER has one)."""
    r = c.store().set_member(registry_name, member, role)
    text = (f"{member} is {r['after']} in registry {registry_name}" if r["before"] != r["after"]
            else f"{member} already is {r['after']} in registry {registry_name}: nothing changed")
    done(as_json, r, text)


@registry_member.command("rm")
@click.argument("registry_name", metavar="REGISTRY")
@click.argument("member", metavar="USER")
@store_options
def member_rm(c, registry_name, member, as_json):
    """Remove USER from REGISTRY."""
    r = c.store().remove_member(registry_name, member)
    done(as_json, r, f"removed {member} ({r['before']}) from registry {registry_name}")


@registry_member.command("list")
@click.argument("registry_name", metavar="REGISTRY")
@read_options
def member_list(c, registry_name, as_json):
    """List the members of REGISTRY with their roles."""
    store = c.store()
    reg = store.registry(registry_name)
    config = store.view().store_config()
    rows = [{"member": k, "role": v, "source": "registry"} for k, v in sorted(reg.members.items())]
    rows += [{"member": a, "role": "admin", "source": "store admin"} for a in config.get("admins", [])]
    if reg.visibility == "organization":
        rows.append({"member": "everyone", "role": store.view().registry(registry_name).get("default_role", "viewer"),
                     "source": "organization visibility"})
    if as_json:
        from canonry.output import emit_json

        return emit_json(rows)
    from canonry.output import table

    say(table([[r["member"], r["role"], r["source"]] for r in rows], ["MEMBER", "ROLE", "FROM"]))


@registry.command("protect")
@click.argument("registry_name", metavar="REGISTRY")
@click.argument("alias_name", metavar="ALIAS")
@store_options
def registry_protect(c, registry_name, alias_name, as_json):
    """Protect ALIAS in REGISTRY: only admins may then add or remove it."""
    r = c.store().protect_alias(registry_name, alias_name)
    done(as_json, r, f"protected aliases of {registry_name}: {', '.join(r['protected_aliases'])}"
         if r["changed"] else f"{alias_name} already is protected in {registry_name}")


@registry.command("unprotect")
@click.argument("registry_name", metavar="REGISTRY")
@click.argument("alias_name", metavar="ALIAS")
@store_options
def registry_unprotect(c, registry_name, alias_name, as_json):
    """Stop protecting ALIAS in REGISTRY."""
    r = c.store().unprotect_alias(registry_name, alias_name)
    done(as_json, r, f"protected aliases of {registry_name}: {', '.join(r['protected_aliases']) or 'none'}"
         if r["changed"] else f"{alias_name} is not protected in {registry_name}")
