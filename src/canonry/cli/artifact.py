"""`canonry artifact …`: describe artifacts, delete artifact versions."""
from __future__ import annotations

import click

from canonry.cli.common import done, store_options

__all__ = ["artifact", "artifact_delete", "artifact_edit"]


@click.group()
def artifact():
    """Describe artifacts and delete artifact versions."""


@artifact.command("edit")
@click.argument("name")
@click.option("--description", "-d", default=None, help="New description.")
@store_options
def artifact_edit(c, name, description, as_json):
    """Set the description of artifact NAME (its creator or a store admin)."""
    store = c.store()
    before = store.view().artifact(name).get("description", "")
    art = store.edit_artifact(name, description=description)
    changed = art.description != before
    done(as_json, {**art.to_dict(), "changed": changed},
         f"edited artifact {name}" if changed else f"artifact {name}: nothing to change")


@artifact.command("delete")
@click.argument("ref", metavar="NAME:vK")
@store_options
def artifact_delete(c, ref, as_json):
    """Delete artifact version NAME:vK: refused while a collection links it."""
    v = c.store().delete_artifact_version(ref)
    done(as_json, v.to_dict(), f"deleted {v.address}: its number is not reused, its files are "
                               "collectable by `canonry gc --blobs`")
