"""`canonry collection …`: create, edit, rename and delete collections."""
from __future__ import annotations

import click

from canonry.cli.common import done, store_options

__all__ = ["collection", "collection_create", "collection_delete", "collection_edit", "collection_rename"]


def _metadata(values) -> dict:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--metadata")
        out[key] = value
    return out


@click.group()
def collection():
    """Create, edit, rename and delete collections."""


@collection.command("create")
@click.argument("address", metavar="REGISTRY/NAME")
@click.option("--type", "-t", "type_", required=True, help="Artifact type its versions must have.")
@click.option("--description", "-d", default="", help="What the collection is for.")
@click.option("--metadata", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
@store_options
def collection_create(c, address, type_, description, metadata, as_json):
    """Create collection REGISTRY/NAME for artifacts of type T (members; `link` also creates one)."""
    coll = c.store().create_collection(address, type_, description, _metadata(metadata) or None)
    done(as_json, coll.to_dict(), f"created collection {coll.address} ({coll.type})")


@collection.command("edit")
@click.argument("address", metavar="REGISTRY/NAME")
@click.option("--description", "-d", default=None, help="New description.")
@click.option("--metadata", multiple=True, metavar="KEY=VALUE", help="Set a metadata key (repeatable).")
@click.option("--rm-metadata", "rm_metadata", multiple=True, metavar="KEY", help="Remove a metadata key (repeatable).")
@store_options
def collection_edit(c, address, description, metadata, rm_metadata, as_json):
    """Set the description or metadata of collection REGISTRY/NAME (members)."""
    store = c.store()
    before = store.collection(address)
    coll = store.edit_collection(address, description=description, metadata=_metadata(metadata) or None,
                                 remove_metadata=rm_metadata)
    changed = coll.to_dict() != before.to_dict()
    done(as_json, {**coll.to_dict(), "changed": changed},
         f"edited collection {coll.address}" if changed else f"collection {coll.address}: nothing to change")


@collection.command("rename")
@click.argument("address", metavar="REGISTRY/OLD")
@click.argument("new_name", metavar="NEW")
@store_options
def collection_rename(c, address, new_name, as_json):
    """Rename collection REGISTRY/OLD to NEW; its links and aliases move along."""
    coll = c.store().rename_collection(address, new_name)
    done(as_json, coll.to_dict(), f"renamed collection {address} to {coll.address}"
         if coll.address != address else f"collection {address}: nothing to change")


@collection.command("delete")
@click.argument("address", metavar="REGISTRY/NAME")
@store_options
def collection_delete(c, address, as_json):
    """Delete collection REGISTRY/NAME with its links and aliases (artifact versions stay)."""
    coll = c.store().delete_collection(address)
    done(as_json, {**coll.to_dict(), "deleted": True},
         f"deleted collection {coll.address} ({coll.versions} link{'s' * (coll.versions != 1)})")
