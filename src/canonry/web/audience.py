"""Who a page is rendered for, and so which registries it may show.

Restricted registries are shown only to their members (and store admins); organization
registries to everyone. Without a known viewer only organization registries are shown, unless
the audience is `everything` (a local user who asked for it with `canonry serve --all`).
"""
from __future__ import annotations

from dataclasses import dataclass

from canonry.governance import role_in

__all__ = ["Audience"]


@dataclass(frozen=True)
class Audience:
    email: str | None = None  # the viewer, when known (a trusted proxy header, or `site build --as`)
    everything: bool = False  # every registry, restricted ones included

    def describe(self) -> str:
        """The line every page carries, saying what it shows."""
        if self.everything:
            return "Showing every registry, restricted ones included (local view)."
        if self.email:
            return f"Showing what {self.email} may see: organization registries and those they are a member of."
        return "Showing organization-visible registries only."

    def visible(self, view) -> set[str]:
        """Names of the registries this audience may see at `view`."""
        names = view.registry_names()
        if self.everything:
            return set(names)
        config = view.store_config()
        out = set()
        for name in names:
            rec = view.registry(name)
            if rec.get("visibility") == "organization" or (
                    self.email and role_in(config, rec, self.email) is not None):
                out.add(name)
        return out
