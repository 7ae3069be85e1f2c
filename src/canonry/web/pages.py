"""The catalog's pages: a URL path to the data it shows (read through the Store API) and its HTML.

Paths mirror addresses:

    /                              the registries
    /REGISTRY                      its collections; ?q=FILTER&tag=T&kind=collections|versions searches
    /REGISTRY/COLLECTION           its versions, a metric chart (?metric=M), its history
    /REGISTRY/COLLECTION/vN|ALIAS  one linked version: files, metadata, metrics, lineage, how to fetch
    /artifacts/ARTIFACT/vK         one artifact version, wherever it is linked
    /timeline                      promotions and automation runs, newest first
    /compare/BASE...HEAD           what HEAD changes over its merge base with BASE (`canonry diff`)
    /commit/ID                     what one commit changed

`Catalog.render(path, params, audience)` is the whole of it: the live server (app.py) and the
static site (site.py) both call it, so both show the same pages. Every path segment is checked
against the rules for names before anything is read; Jinja2 escapes every value (autoescape).
A registry the audience may not see answers 404, exactly as one that does not exist.
"""
from __future__ import annotations

import json
import os
import posixpath
import re
from dataclasses import replace
from typing import Any, NamedTuple
from xml.sax.saxutils import escape as xml_escape

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

import canonry
from canonry import model as m
from canonry.errors import CanonryError, InvalidInput, InvalidName, NotFound
from canonry.names import NAME_RE, branch_problem, is_version
from canonry.output import human_size
from canonry.query.catalog import registry_figures
from canonry.query.lineage import layered_svg
from canonry.query.search import FilterError
from canonry.web.audience import Audience
from canonry.web.charts import metric_chart

__all__ = ["MAX_METRIC_COLUMNS", "RESERVED", "TEMPLATES", "Catalog", "HttpError", "Page", "split_path", "stylesheet"]

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
RESERVED = ("artifacts", "timeline", "compare", "commit", "static")  # first segments that are not registries
MAX_METRIC_COLUMNS = 8
HISTORY_LIMIT = 200
TIMELINE_LIMIT = 2000  # history entries read for the timeline (promotions are picked from them)
RUNS_LIMIT = 200
SEARCH_LIMIT = 1000
PROMOTION_OPS = ("alias.set", "alias.rm")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_REV_RE = re.compile(r"^[0-9a-f]{7,40}$")


class Page(NamedTuple):
    status: int
    body: str
    content_type: str = "text/html; charset=utf-8"


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def stylesheet() -> bytes:
    """The catalog's one stylesheet (package data, never a file named by a URL)."""
    with open(os.path.join(STATIC, "catalog.css"), "rb") as f:
        return f.read()


def split_path(path: str) -> list[str]:
    """The segments of a URL path, each a valid name (or version, alias): anything else, '..'
    and '.' included, is a 404 before any file is read."""
    if "\\" in path or "\x00" in path:
        raise HttpError(400, "bad path")
    segments = [s for s in path.split("/") if s != ""]
    for s in segments:
        if s in (".", "..") or not NAME_RE.fullmatch(s) or ".." in s:
            raise HttpError(404, "no such page")
    return segments


class Catalog:
    """The pages of one store. `static`: links between pages are relative file paths
    (`../x/index.html`), so the site works from any folder, a file:// URL or GitHub Pages."""

    def __init__(self, store, static: bool = False):
        self.store = store
        self.static = static
        self.known: set[str] | None = None  # static site: the pages written (others are not linked)
        self.env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                               undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.env.filters["size"] = human_size
        self.env.filters["short"] = lambda text, n=10: str(text)[:n]
        self.env.filters["value"] = _value

    # ---- entry point ---------------------------------------------------------------------------------
    def render(self, path: str, params: dict | None = None, audience: Audience | None = None) -> Page:
        params = params or {}
        audience = audience or Audience()
        here = "/" + "/".join(s for s in path.split("/") if s)
        try:
            if path.startswith("/compare/"):  # BASE...HEAD: checked as branch names (they hold '/')
                name, data = self._compare(path[len("/compare/"):], audience)
            else:
                name, data = self._route(split_path(path), params, audience)
            return Page(200, self._html(name, data, here, audience))
        except HttpError as e:
            return Page(e.status, self._error(e.status, e.message, here, audience))
        except (NotFound, InvalidName) as e:
            return Page(404, self._error(404, str(e), here, audience))
        except (InvalidInput, FilterError, CanonryError) as e:
            return Page(400, self._error(400, str(e), here, audience))

    def _route(self, seg: list[str], params: dict, audience: Audience) -> tuple[str, dict]:
        if not seg:
            return self._registries(audience)
        if seg[0] == "timeline" and len(seg) == 1:
            return self._timeline(audience)
        if seg[0] == "artifacts" and len(seg) == 3 and is_version(seg[2]):
            return self._artifact_version(seg[1], seg[2], audience)
        if seg[0] == "commit" and len(seg) == 2 and _COMMIT_RE.fullmatch(seg[1]):
            return self._commit(seg[1], audience)
        if seg[0] in RESERVED:
            raise HttpError(404, "no such page")
        visible = self._visible(audience)
        if seg[0] not in visible:
            raise HttpError(404, f"no registry {seg[0]} here")
        if len(seg) == 1:
            return self._registry(seg[0], params)
        if len(seg) == 2:
            return self._collection(seg[0], seg[1], params, visible)
        if len(seg) == 3:
            return self._linked_version(seg[0], seg[1], seg[2], visible, audience)
        raise HttpError(404, "no such page")

    # ---- pages ---------------------------------------------------------------------------------------
    def _visible(self, audience: Audience) -> set[str]:
        return audience.visible(self.store.view())

    def _registries(self, audience: Audience) -> tuple[str, dict]:
        visible = self._visible(audience)
        figures = registry_figures(self.store)
        empty = {"collections": 0, "versions": 0, "promotion": None}
        rows = [(r, figures.get(r.name, empty)) for r in self.store.registries() if r.name in visible]
        return "registries.html", {"title": "Registries", "rows": rows}

    def _registry(self, name: str, params: dict) -> tuple[str, dict]:
        reg = self.store.registry(name)
        q = (params.get("q") or "").strip()
        tag = (params.get("tag") or "").strip()
        kind = params.get("kind") or "collections"
        if kind not in ("collections", "versions"):
            raise HttpError(400, "kind is collections or versions")
        data: dict[str, Any] = {"title": f"Registry {name}", "reg": reg, "q": q, "tag": tag, "kind": kind,
                                "results": None, "search_error": None}
        if q or tag or kind == "versions":
            try:
                flt = json.loads(q) if q else None
            except ValueError as e:
                data["search_error"] = f"the filter is not JSON: {e}"
            else:
                try:
                    data["results"] = self.store.search(flt, kind=kind, tag=tag or None, registry=name,
                                                        limit=SEARCH_LIMIT)
                except CanonryError as e:
                    data["search_error"] = str(e)
        data["collections"] = self.store.collections(name, filter={})
        data["tags"] = sorted({t for c in data["collections"] for t in c.tags})
        return "registry.html", data

    def _collection(self, registry: str, name: str, params: dict, visible: set[str]) -> tuple[str, dict]:
        address = f"{registry}/{name}"
        coll = self.store.collection(address)
        cmp = self.store.compare(address)
        metrics = cmp["metrics"]
        chosen = params.get("metric") or (metrics[0] if metrics else None)
        if chosen is not None and chosen not in metrics:
            raise HttpError(400, f"no version of {address} has metric {chosen!r}")
        in_order = cmp["versions"]  # link order (compare sorts by version when no metric is chosen)
        charts = []
        for metric in (metrics[:MAX_METRIC_COLUMNS] if self.static else [chosen] if chosen else []):
            charts.append((metric, Markup(metric_chart(metric, [(v["version"], v["metrics"].get(metric))
                                                                for v in in_order],
                                                       chart_id="chart-" + _slug(metric)))))
        history = self.store.history(address, limit=HISTORY_LIMIT)
        here = f"/{address}"
        for v in in_order:  # links made here, not by a template call per row: thousands of rows
            v["href"] = self.url(f"/{address}/{v['version']}", here)
            v["artifact_href"] = self.url("/artifacts/" + v["artifact"].replace(":", "/"), here)
        return "collection.html", {
            "title": f"Collection {address}", "coll": coll, "address": address,
            "versions": list(reversed(in_order)), "metrics": metrics[:MAX_METRIC_COLUMNS],
            "more_metrics": len(metrics) > MAX_METRIC_COLUMNS, "chosen": chosen, "charts": charts,
            "all_metrics": metrics, "history": history, "history_limit": HISTORY_LIMIT}

    def _linked_version(self, registry: str, collection: str, ref: str, visible: set[str],
                        audience: Audience) -> tuple[str, dict]:
        target = f"{registry}/{collection}:{ref}"
        lv = self.store.resolve(target)
        if not isinstance(lv, m.LinkedVersion):
            raise HttpError(404, "no such page")
        av = self.store.artifact_version(lv.artifact)
        data = self._version_data(av, visible, audience)
        data.update(title=f"{registry}/{collection}:{lv.version}", lv=lv,
                    fetch_target=f"{registry}/{collection}:{lv.version}",
                    alias_target=f"{registry}/{collection}:{ref}" if not is_version(ref) else None)
        return "version.html", data

    def _artifact_version(self, artifact: str, version: str, audience: Audience) -> tuple[str, dict]:
        av = self.store.artifact_version(f"{artifact}:{version}")
        visible = self._visible(audience)
        data = self._version_data(av, visible, audience)
        if not data["links"] and not audience.everything and audience.email != av.created_by:
            raise HttpError(404, f"no artifact version {artifact}:{version} here")
        data.update(title=f"{artifact}:{version}", lv=None, fetch_target=av.address, alias_target=None)
        return "version.html", data

    def _version_data(self, av: m.ArtifactVersion, visible: set[str], audience: Audience) -> dict:
        lineage = self.store.lineage(av.address)
        shown = {}
        for ref, node in lineage.nodes.items():  # links into registries the audience may not see: left out
            shown[ref] = replace(node, links=[x for x in node.links if x["address"].split("/")[0] in visible])
        lineage = replace(lineage, nodes=shown)
        root = lineage.nodes[lineage.root]
        upstream = sorted((n for n in lineage.nodes.values() if n.distance < 0), key=lambda n: (-n.distance, n.ref))
        downstream = sorted((n for n in lineage.nodes.values() if n.distance > 0), key=lambda n: (n.distance, n.ref))
        return {"av": av, "links": root.links, "lineage_svg": Markup(layered_svg(lineage)),
                "upstream": upstream, "downstream": downstream,
                "has_lineage": len(lineage.nodes) > 1}

    def _timeline(self, audience: Audience) -> tuple[str, dict]:
        visible = self._visible(audience)
        entries = [e for e in self.store.history(limit=TIMELINE_LIMIT)
                   if e.op in PROMOTION_OPS and e.target.split("/")[0] in visible]
        runs = []
        for r in self.store.automation_log():
            target = str(r.get("target") or "")
            if audience.everything or ("/" in target and target.split("/")[0] in visible):
                runs.append(r)
            if len(runs) >= RUNS_LIMIT:
                break
        return "timeline.html", {"title": "Timeline", "entries": entries, "runs": runs}

    def _compare(self, spec: str, audience: Audience) -> tuple[str, dict]:
        sep = "..." if "..." in spec else ".." if ".." in spec else None
        if sep is None:
            raise HttpError(404, "a comparison is /compare/BASE...HEAD")
        base, _, head = spec.partition(sep)
        if "\\" in spec or "\x00" in spec:
            raise HttpError(400, "bad path")
        for rev in (base, head):
            if rev and branch_problem(rev) and not _REV_RE.fullmatch(rev):
                raise HttpError(404, f"no branch {rev!r}")
        review = self.store.diff(f"{base}..{head}")
        return "compare.html", self._review_data(review, f"{base}...{head}", audience)

    def _commit(self, commit: str, audience: Audience) -> tuple[str, dict]:
        found = self.store.storage.commit(self.store.storage.resolve_rev(commit))
        if not found.parents:
            raise HttpError(404, "the first commit of the store changes no registry")
        review = self.store.diff(f"{found.parents[0].decode()}..{commit}")
        data = self._review_data(review, commit[:10], audience)
        data.update(title=f"Commit {commit[:10]}", commit=commit,
                    subject=found.message.decode("utf-8", "replace").split("\n", 1)[0],
                    author=found.author.decode("utf-8", "replace"))
        return "compare.html", data

    def _review_data(self, review, spec: str, audience: Audience) -> dict:
        visible = self._visible(audience)
        groups = []
        hidden = 0
        for group, changes in review.groups():
            keep = [c for c in changes if (c.registry in visible if c.registry else audience.everything)]
            hidden += len(changes) - len(keep)
            if keep:
                groups.append((_group_title(group), [_change_html(c) for c in keep]))
        return {"title": f"Compare {spec}", "spec": spec, "review": review, "groups": groups, "hidden": hidden,
                "commit": None, "subject": None, "author": None}

    # ---- pages the static site writes ------------------------------------------------------------------
    def paths(self, audience: Audience) -> list[str]:
        """Every page of the catalog for `audience` (what `canonry site build` writes)."""
        out = ["/", "/timeline"]
        visible = sorted(self._visible(audience))
        artifacts = set()
        for registry in visible:
            out.append(f"/{registry}")
            for coll in self.store.collections(registry, filter={}):
                out.append(f"/{registry}/{coll.name}")
                for v in self.store.versions(f"{registry}/{coll.name}", filter={}):
                    out.append(f"/{registry}/{coll.name}/{v.version}")
                    artifacts.add(v.artifact)
        for ref in sorted(artifacts):
            name, version = ref.split(":")
            out.append(f"/artifacts/{name}/{version}")
        return out

    # ---- rendering ----------------------------------------------------------------------------------------
    def url(self, target: str, here: str) -> str:
        """The link from page `here` to page `target` (both paths): the path itself when served,
        a relative file path in the static site."""
        if not self.static:
            return target
        depth = len([s for s in here.split("/") if s])
        rel = "../" * depth + "/".join(s for s in target.split("/") if s)
        return posixpath.join(rel, "index.html") if rel else "index.html"

    def asset(self, name: str, here: str) -> str:
        if not self.static:
            return f"/static/{name}"
        return "../" * len([s for s in here.split("/") if s]) + f"static/{name}"

    def _html(self, template: str, data: dict, here: str, audience: Audience) -> str:
        def u(target: str) -> str:
            return self.url(target, here)

        def linkable(target: str) -> bool:
            return self.known is None or target in self.known

        return self.env.get_template(template).render(
            **data, u=u, linkable=linkable, css=self.asset("catalog.css", here), static=self.static, audience=audience,
            here=here, store_branch=self.store.branch, version=canonry.__version__)

    def _error(self, status: int, message: str, here: str, audience: Audience) -> str:
        title = {400: "Bad request", 404: "Not found"}.get(status, "Error")
        return self._html("error.html", {"title": title, "status": status, "message": message}, here, audience)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, sort_keys=True)
    return "" if v is None else str(v)


def _group_title(group: str) -> Markup:
    if group.startswith("registry "):
        return Markup("registry <strong>%s</strong>") % group[len("registry "):]
    if group == "store":
        return Markup("store settings (<code>canonry.yaml</code>)")
    if group == "artifacts":
        return Markup("artifact versions")
    return Markup("<strong>%s</strong>") % group


def _change_html(change) -> Markup:
    """Change.line() as HTML: names in <code>, every character escaped exactly once (the parts
    are held apart as placeholders while the rest is escaped)."""
    parts: list[str] = []

    def hold(html: str) -> str:
        parts.append(html)
        return f"\x01{len(parts) - 1}\x02"

    line = change.line(lambda t: hold(f"<code>{xml_escape(str(t))}</code>"), lambda t: hold(xml_escape(str(t))))
    out = str(escape(line))
    return Markup(re.sub("\x01([0-9]+)\x02", lambda mt: parts[int(mt.group(1))], out))

