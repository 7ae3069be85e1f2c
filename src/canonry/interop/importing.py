"""What the importers share: a plan of actions, printed by `--dry-run` or applied in order, and
the summary of what an import did (docs/import.md).

An importer reads its source and the store, then makes a Plan: one Action per change it would
make, each with the one line `--dry-run` prints. Everything already in the store is left out
of the plan, so running an import twice adds nothing the second time.
"""
from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from canonry.errors import InvalidInput
from canonry.files.manifest import collect_files, digest
from canonry.git.storage import Identity, parse_identity
from canonry.governance import NEEDS, WHAT, PermissionDenied, allowed, role_in

__all__ = [
    "Action",
    "Plan",
    "Summary",
    "canonry_name",
    "check_roles",
    "iso",
    "local_digest",
    "person",
]

_NOT_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Action:
    """One change an import makes (one commit at most): `line` says what, `apply` does it.
    `kind` counts it in the summary: collection, version, alias, tag, edit, unlink, or several
    joined by `+`."""

    line: str
    kind: str
    apply: Callable[[], object]


@dataclass
class Summary:
    """What an import did (or, with --dry-run, would do)."""

    collections: int = 0
    versions: int = 0
    aliases: int = 0
    other: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    dry_run: bool = False

    def count(self, kinds: str) -> None:
        for kind in kinds.split("+"):
            self._count(kind)

    def _count(self, kind: str) -> None:
        if kind == "collection":
            self.collections += 1
        elif kind == "version":
            self.versions += 1
        elif kind == "alias":
            self.aliases += 1
        else:
            self.other += 1

    def as_dict(self) -> dict:
        return {"dry_run": self.dry_run, "collections": self.collections, "versions": self.versions,
                "aliases": self.aliases, "other": self.other,
                "skipped": [{"what": what, "why": why} for what, why in self.skipped]}

    def text(self) -> str:
        verb = "would import" if self.dry_run else "imported"
        line = (f"{verb} {self.collections} collection{'s' * (self.collections != 1)}, {self.versions} "
                f"version{'s' * (self.versions != 1)}, {self.aliases} alias{'es' * (self.aliases != 1)}, "
                f"{self.other} other change{'s' * (self.other != 1)}; skipped {len(self.skipped)}")
        return "\n".join([line, *(f"  skipped {what}: {why}" for what, why in self.skipped)])


@dataclass
class Plan:
    """The actions of an import, in the order they are applied, and what it skips."""

    actions: list[Action] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # actor email -> the governance actions (NEEDS keys) it performs, per registry
    needs: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    def add(self, line: str, kind: str, apply: Callable[[], object]) -> None:
        self.actions.append(Action(line, kind, apply))

    def skip(self, what: str, why: str) -> None:
        self.skipped.append((what, why))

    def need(self, registry: str, actor: str, action: str) -> None:
        self.needs.setdefault((registry, actor), set()).add(action)

    def run(self, dry_run: bool = False, echo: Callable[[str], None] | None = None,
            progress: Callable[[int], None] | None = None) -> Summary:
        """Apply every action in order (or only print them with `dry_run`). `echo` gets each
        action's line; `progress` is told of each action done."""
        summary = Summary(skipped=list(self.skipped), dry_run=dry_run)
        for action in self.actions:
            if echo is not None:
                echo(action.line)
            if not dry_run:
                action.apply()
            summary.count(action.kind)
            if progress is not None:
                progress(1)
        return summary


def check_roles(store, plan: Plan) -> None:
    """Refuse, before anything is written, an import whose replayed authors lack a role it needs:
    each change is made as its original author, who must hold that role (as `validate` checks)."""
    view = store.view()
    config = view.store_config()
    for (registry, actor), actions in sorted(plan.needs.items()):
        role = role_in(config, view.registry(registry), actor)
        for action in sorted(actions, key=lambda a: (NEEDS[a], a)):
            if not allowed(role, action):
                has = f"has {role}" if role else "is not a member"
                raise PermissionDenied(
                    f"{actor} may not {WHAT[action]} in registry {registry} ({actor} {has}; needs "
                    f"{NEEDS[action]}): the import replays each change as its original author; give "
                    f"them the role first (`canonry registry member add {registry} {actor} --role "
                    f"{NEEDS[action]}`); nothing was written")


def person(user: str | None, fallback: Identity) -> Identity:
    """The identity of a user named by another tool (an email, `Name <email>`, a login), or
    `fallback` when there is none."""
    user = (user or "").strip()
    return parse_identity(user) if user else fallback


def canonry_name(name: str) -> str:
    """A canonry name (collection, artifact) for another tool's name: characters canonry names
    do not take become `-`."""
    out = _NOT_NAME.sub("-", name).strip("-._")
    while ".." in out:
        out = out.replace("..", ".")
    if not out:
        raise InvalidInput(f"cannot make a canonry name of {name!r}")
    return out[:128]


def iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def local_digest(path: str) -> str:
    """The digest `log` would record for the files at `path` (hashed here, stored nowhere): finds
    a version already logged with the same content wherever it is in the artifact's line."""
    entries = []
    for rel, full in collect_files(path):
        h = hashlib.sha256()
        with open(full, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        entries.append({"path": rel, "size": os.path.getsize(full), "sha256": h.hexdigest()})
    return digest(entries)
