"""`canonry site build DIR`: the catalog's pages written as static files, for one audience.

Each page goes to PATH/index.html, links between pages are relative (the site works from a
folder, a file:// URL, GitHub or GitLab Pages under any prefix), the stylesheet goes to
static/catalog.css. Pages that need a server (search, the metric chooser, commit and branch
comparisons) are left out; every page says which audience it was built for.
"""
from __future__ import annotations

import os

from canonry.errors import InvalidInput
from canonry.web.audience import Audience
from canonry.web.pages import Catalog, stylesheet

__all__ = ["build_site"]


def build_site(store, directory: str, audience: Audience | None = None) -> dict:
    """Write the site into `directory` (created if missing; existing files there are replaced,
    others left alone). Returns {"directory", "pages", "audience"}."""
    audience = audience or Audience()
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise InvalidInput(f"{directory} exists and is not a folder")
    catalog = Catalog(store, static=True)
    paths = catalog.paths(audience)
    catalog.known = set(paths)
    root = os.path.abspath(directory)
    for path in paths:
        page = catalog.render(path, {}, audience)
        if page.status != 200:
            raise InvalidInput(f"page {path} could not be rendered ({page.status})")
        target = os.path.join(root, *[s for s in path.split("/") if s], "index.html")
        if not os.path.abspath(target).startswith(root + os.sep):
            raise InvalidInput(f"page {path} would be written outside {directory}")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as f:
            f.write(page.body)
    os.makedirs(os.path.join(root, "static"), exist_ok=True)
    with open(os.path.join(root, "static", "catalog.css"), "wb") as f:
        f.write(stylesheet())
    return {"directory": directory, "pages": len(paths), "audience": audience.describe()}
