"""Hook specifications. Plugin authors write `from canonry import hookimpl`.

Every hook takes keyword arguments; implementations may accept any subset of them, so new
arguments can be added later without breaking plugins. Event hooks run after the change is
committed (the branch has moved): they cannot undo it, and a failing one never stops the
others. Policy hooks run before the commit and can refuse it.

Implementations are called through pluggy, in its order (`tryfirst=True` first, `trylast=True`
last, else the most recently loaded first), each one on its own so that its failure or refusal
is its own, and each inside the hook's wrappers (`hookwrapper=True` or `wrapper=True`), which
therefore run once per implementation. An implementation is a function named after its hook.
"""
from __future__ import annotations

import pluggy

__all__ = [
    "EVENT_HOOKS", "alias_added", "alias_moved", "alias_removed", "artifact_logged", "automation_actions",
    "check_change", "collection_changed", "hookimpl", "hookspec", "link_created", "link_removed", "register_commands",
    "registry_changed", "tags_changed",
]

hookspec = pluggy.HookspecMarker("canonry")
hookimpl = pluggy.HookimplMarker("canonry")

# ---- events: after a change is committed --------------------------------------------------------


@hookspec
def link_created(event, store):
    """A version was linked into a collection (event.collection, event.version, event.artifact)."""


@hookspec
def link_removed(event, store):
    """A link was removed (unlinked); event.artifact is the version it pointed at."""


@hookspec
def alias_added(event, store):
    """An alias appeared in a collection: event.alias now points at event.version."""


@hookspec
def alias_moved(event, store):
    """An alias moved from event.previous_version to event.version in event.collection."""


@hookspec
def alias_removed(event, store):
    """An alias was removed; event.previous_version is the version that held it."""


@hookspec
def artifact_logged(event, store):
    """A new artifact version was logged (event.artifact is ARTIFACT:vK)."""


@hookspec
def tags_changed(event, store):
    """Tags of a collection or a linked version changed (event.previous_tags -> event.tags)."""


@hookspec
def collection_changed(event, store):
    """A collection was created (event.kind 'collection.created') or its settings changed
    ('collection.changed', event.changes maps field -> [before, after])."""


@hookspec
def registry_changed(event, store):
    """A registry was created ('registry.created') or its settings changed ('registry.changed')."""


# ---- policy: before a change is committed -------------------------------------------------------


@hookspec
def check_change(events, store, view):
    """Called before a commit lands, with the events it would produce (their commit field is
    the commit that would land) and `view`, the store as it would be after the change.
    Return a string to refuse the change (the reason), or None to allow it."""


# ---- extension points ---------------------------------------------------------------------------


@hookspec
def register_commands(cli):
    """Add click commands or groups to the `canonry` command group `cli`."""


@hookspec
def automation_actions():
    """Return a dict {action name: callable(event, params, store) -> dict | None} of actions
    that declarative automations (the `automations:` lists in the store) can use. The callable
    raises to report a failure; the dict it returns is recorded with the outcome."""


EVENT_HOOKS = {
    "link.created": "link_created",
    "link.removed": "link_removed",
    "alias.added": "alias_added",
    "alias.moved": "alias_moved",
    "alias.removed": "alias_removed",
    "artifact.logged": "artifact_logged",
    "tags.changed": "tags_changed",
    "collection.created": "collection_changed",
    "collection.changed": "collection_changed",
    "registry.created": "registry_changed",
    "registry.changed": "registry_changed",
}
