"""Lineage: which artifact versions a version was made from (upstream) and which were made from
it (downstream), walked over the inputs recorded at log time. Downstream needs the reverse of
every version's inputs: it comes from the index (vals `a.inputs`), never from a scan.

Each node carries what points at it (the linked versions, REGISTRY/COLLECTION:vN, with their
aliases) and its producer (git commit, command, host, actor), so "what was production trained
on" reads off the graph. Renderings: tree (text), json, mermaid, dot and svg (graphviz `dot`
when installed, else a small built-in layered layout).
"""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass, field

from canonry import model as m
from canonry.errors import InvalidInput
from canonry.query.index import for_store

__all__ = [
    "DIRECTIONS",
    "FORMATS",
    "Lineage",
    "Node",
    "layered_svg",
    "layout",
    "render",
    "render_dot",
    "render_mermaid",
    "render_svg",
    "render_tree",
    "root_ref",
    "trace",
]

DIRECTIONS = ("both", "upstream", "downstream")
FORMATS = ("tree", "json", "mermaid", "dot", "svg")


@dataclass
class Node:
    ref: str  # ARTIFACT:vK
    artifact: str
    version: str
    type: str | None = None
    description: str = ""
    created_at: str | None = None
    created_by: str | None = None
    producer: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    inputs: list = field(default_factory=list)
    links: list = field(default_factory=list)  # [{"address": R/C:vN, "aliases": [...], "tags": [...]}]
    distance: int = 0  # hops from the root: negative upstream, positive downstream
    missing: bool = False  # named as an input, but no such artifact version in the store
    consumers: list = field(default_factory=list)  # recorded uses, newest first (with usage=True)

    def label_links(self) -> str:
        parts = []
        for link in self.links:
            shown = list(link["aliases"])
            parts.append(link["address"] + (f" [{', '.join(shown)}]" if shown else ""))
        return "; ".join(parts)


@dataclass
class Lineage:
    root: str
    direction: str
    depth: int | None
    nodes: dict[str, Node]
    edges: list[tuple[str, str]]  # (input, made from it)
    truncated: bool = False  # the depth limit cut the walk short

    def to_dict(self) -> dict:
        return {"root": self.root, "direction": self.direction, "depth": self.depth,
                "truncated": self.truncated,
                "nodes": [asdict(n) for n in sorted(self.nodes.values(), key=lambda n: (n.distance, n.ref))],
                "edges": [{"from": a, "to": b} for a, b in self.edges]}

    def upstream_of(self, ref: str) -> list[str]:
        return [a for a, b in self.edges if b == ref]

    def downstream_of(self, ref: str) -> list[str]:
        return [b for a, b in self.edges if a == ref]


def root_ref(store, target: str) -> str:
    """ARTIFACT:vK that `target` names (a linked version's artifact; an artifact's newest)."""
    obj = store.resolve(target)
    if isinstance(obj, m.LinkedVersion):
        return obj.artifact
    if isinstance(obj, m.ArtifactVersion):
        return obj.address
    if isinstance(obj, m.Artifact):
        if not obj.versions:
            raise InvalidInput(f"artifact {obj.name} has no versions yet: nothing to trace")
        return f"{obj.name}:{obj.versions[-1]}"
    raise InvalidInput(f"lineage starts at a version: ARTIFACT:vK, ARTIFACT, or REGISTRY/COLLECTION:vN|ALIAS, "
                       f"not {target!r}")


def trace(store, target: str, direction: str = "both", depth: int | None = None,
          usage: bool = False) -> Lineage:
    """The lineage graph around TARGET's version; `usage`: with each version's consumers, read
    from the usage log (canonry/usage.py)."""
    if direction not in DIRECTIONS:
        raise InvalidInput(f"invalid direction {direction!r}: use {', '.join(DIRECTIONS)}")
    if depth is not None and depth < 0:
        raise InvalidInput("--depth must be 0 or more")
    root = root_ref(store, target)
    lineage = for_store(store).query(lambda db: _walk(db, root, direction, depth))
    if usage:
        from canonry.usage import UsageLog

        log = UsageLog(store.storage)
        for node in lineage.nodes.values():
            if not node.missing:
                node.consumers = log.read(node.artifact, node.version)[::-1]
    return lineage


def _walk(db, root: str, direction: str, depth: int | None) -> Lineage:
    nodes: dict[str, Node] = {}
    edges: set[tuple[str, str]] = set()
    truncated = False
    nodes[root] = _node(db, root, 0)
    for sign, step in ((-1, "upstream"), (1, "downstream")):
        if direction not in ("both", step):
            continue
        frontier, hops = [root], 0
        seen = {root}
        while frontier:
            if depth is not None and hops >= depth:
                truncated = truncated or any(_neighbours(db, nodes, r, step) for r in frontier)
                break
            hops += 1
            nxt = []
            for ref in frontier:
                for other in _neighbours(db, nodes, ref, step):
                    edges.add((other, ref) if step == "upstream" else (ref, other))
                    if other not in nodes:
                        nodes[other] = _node(db, other, sign * hops)
                    if other not in seen:
                        seen.add(other)
                        nxt.append(other)
            frontier = sorted(nxt)
    return Lineage(root=root, direction=direction, depth=depth, nodes=nodes, edges=sorted(edges),
                   truncated=truncated)


def _neighbours(db, nodes: dict, ref: str, step: str) -> list[str]:
    if step == "upstream":
        node = nodes.get(ref)
        return list(dict.fromkeys(node.inputs)) if node is not None else []
    rows = db.execute("SELECT a.ref FROM vals v JOIN avs a ON a.id = v.item WHERE v.field = 'a.inputs' "
                      "AND v.value = ? ORDER BY a.ref", (ref,)).fetchall()
    return [r for (r,) in rows]


def _node(db, ref: str, distance: int) -> Node:
    name, _, version = ref.partition(":")
    row = db.execute("SELECT type, description, created_at, created_by, producer, metrics, inputs "
                     "FROM avs WHERE ref = ?", (ref,)).fetchone()
    if row is None:
        return Node(ref=ref, artifact=name, version=version, distance=distance, missing=True)
    type_, description, created_at, created_by, producer, metrics, inputs = row
    links = [{"address": f"{r}/{c}:{v}", "aliases": json.loads(a), "tags": json.loads(t)}
             for r, c, v, a, t in db.execute(
                 "SELECT l.registry, l.collection, l.version, l.aliases, l.tags FROM links l "
                 "JOIN collections c ON c.registry = l.registry AND c.name = l.collection "
                 "JOIN registries r ON r.name = l.registry WHERE l.artifact = ? "
                 "ORDER BY l.registry, l.collection, l.num", (ref,))]
    return Node(ref=ref, artifact=name, version=version, type=type_, description=description or "",
                created_at=created_at, created_by=created_by, producer=json.loads(producer or "{}"),
                metrics=json.loads(metrics or "{}"), inputs=json.loads(inputs or "[]"), links=links,
                distance=distance)


# ---- renderings -------------------------------------------------------------------------------------
def render(lineage: Lineage, fmt: str = "tree") -> str:
    if fmt not in FORMATS:
        raise InvalidInput(f"invalid format {fmt!r}: use {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps(lineage.to_dict(), indent=2) + "\n"
    if fmt == "tree":
        return render_tree(lineage)
    if fmt == "mermaid":
        return render_mermaid(lineage)
    if fmt == "dot":
        return render_dot(lineage)
    return render_svg(lineage)


def _describe(node: Node) -> str:
    if node.missing:
        return f"{node.ref} (not in this store)"
    text = f"{node.ref} ({node.type})"
    if node.links:
        text += " ← " + node.label_links()
    producer = node.producer or {}
    extra = []
    if producer.get("git_commit"):
        extra.append(f"commit {str(producer['git_commit'])[:10]}")
    if producer.get("command"):
        command = str(producer["command"])
        extra.append(f"`{command if len(command) <= 60 else command[:59] + '…'}`")
    if extra:
        text += " · " + " · ".join(extra)
    if node.consumers:
        text += f" · {len(node.consumers)} recorded use{'s' * (len(node.consumers) != 1)}"
    return text


CONSUMERS_SHOWN = 10  # consumers listed under the root in the tree; `canonry usage` lists all


def _consumer_line(use: dict) -> str:
    text = f"{use.get('at', '')} {use.get('actor', '')} on {use.get('host', '?')}"
    if use.get("git_commit"):
        text += f" · commit {str(use['git_commit'])[:10]}"
    if use.get("purpose"):
        text += f" · {use['purpose']}"
    return text


def render_tree(lineage: Lineage) -> str:
    root = lineage.nodes[lineage.root]
    lines = [_describe(root)]
    sections = []
    if lineage.direction in ("both", "upstream"):
        sections.append(("made from", lineage.upstream_of))
    if lineage.direction in ("both", "downstream"):
        sections.append(("used by", lineage.downstream_of))
    for title, children in sections:
        kids = children(lineage.root)
        lines.append(f"{title}:" if kids else f"{title}: (nothing recorded)")
        shown: set[str] = {lineage.root}
        for i, kid in enumerate(kids):
            _tree(lineage, kid, children, "", i == len(kids) - 1, shown, lines)
    if root.consumers:
        lines.append("consumers (recorded uses):")
        shown_uses = root.consumers[:CONSUMERS_SHOWN]
        for i, use in enumerate(shown_uses):
            last = i == len(shown_uses) - 1 and len(root.consumers) <= CONSUMERS_SHOWN
            lines.append(("└── " if last else "├── ") + _consumer_line(use))
        if len(root.consumers) > CONSUMERS_SHOWN:
            lines.append(f"└── … {len(root.consumers) - CONSUMERS_SHOWN} more: canonry usage {lineage.root}")
    if lineage.truncated:
        lines.append(f"(stopped at depth {lineage.depth}: --depth N to see further)")
    return "\n".join(lines) + "\n"


def _tree(lineage: Lineage, ref: str, children, indent: str, last: bool, shown: set, lines: list) -> None:
    branch = "└── " if last else "├── "
    node = lineage.nodes[ref]
    if ref in shown:
        lines.append(f"{indent}{branch}{ref} (see above)")
        return
    shown.add(ref)
    lines.append(f"{indent}{branch}{_describe(node)}")
    kids = children(ref)
    for i, kid in enumerate(kids):
        _tree(lineage, kid, children, indent + ("    " if last else "│   "), i == len(kids) - 1, shown, lines)


def _ids(lineage: Lineage) -> dict[str, str]:
    order = sorted(lineage.nodes.values(), key=lambda n: (n.distance, n.ref))
    return {n.ref: f"n{i}" for i, n in enumerate(order)}


def _short_label(node: Node) -> list[str]:
    lines = [node.ref + (f" ({node.type})" if node.type else "")]
    for link in node.links:
        aliases = list(link["aliases"])
        lines.append(link["address"] + (f" [{', '.join(aliases)}]" if aliases else ""))
    commit = (node.producer or {}).get("git_commit")
    if commit:
        lines.append(f"commit {str(commit)[:10]}")
    if node.missing:
        lines.append("(not in this store)")
    return lines


def render_mermaid(lineage: Lineage) -> str:
    ids = _ids(lineage)
    out = ["graph LR"]
    for ref, nid in ids.items():
        label = "<br/>".join(_mermaid_escape(x) for x in _short_label(lineage.nodes[ref]))
        shape = ('(["', '"])') if ref == lineage.root else ('["', '"]')
        out.append(f"  {nid}{shape[0]}{label}{shape[1]}")
    for a, b in lineage.edges:
        out.append(f"  {ids[a]} --> {ids[b]}")
    if lineage.root in ids:
        out.append(f"  style {ids[lineage.root]} stroke-width:3px")
    return "\n".join(out) + "\n"


def _mermaid_escape(text: str) -> str:
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def render_dot(lineage: Lineage) -> str:
    ids = _ids(lineage)
    out = ["digraph lineage {", "  rankdir=LR;",
           '  node [shape=box, style="rounded,filled", fillcolor="#f5f7fa", fontname="Helvetica", fontsize=11];',
           '  edge [color="#5b6b7f"];']
    for ref, nid in ids.items():
        node = lineage.nodes[ref]
        label = "\\n".join(_dot_escape(x) for x in _short_label(node))
        extra = ', penwidth=2.5, fillcolor="#fff4d6"' if ref == lineage.root else ""
        if node.missing:
            extra += ', style="rounded,dashed"'
        out.append(f'  {nid} [label="{label}"{extra}];')
    for a, b in lineage.edges:
        out.append(f"  {ids[a]} -> {ids[b]};")
    out.append("}")
    return "\n".join(out) + "\n"


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def render_svg(lineage: Lineage, use_graphviz: bool = True) -> str:
    """SVG from graphviz `dot` when it is installed, else from the built-in layout."""
    exe = shutil.which("dot") if use_graphviz else None
    if exe:
        try:
            proc = subprocess.run([exe, "-Tsvg"], input=render_dot(lineage), capture_output=True, text=True,
                                  timeout=60)
            if proc.returncode == 0 and "<svg" in proc.stdout:
                return proc.stdout
        except (OSError, subprocess.SubprocessError):
            pass
    return layered_svg(lineage)


# ---- a small layered layout (no graphviz) ---------------------------------------------------------------
_CHAR_W, _LINE_H, _PAD, _GAP_X, _GAP_Y = 7.0, 16, 10, 70, 24


def layout(lineage: Lineage) -> dict[str, tuple[float, float, float, float]]:
    """(x, y, width, height) per node: layers by longest path from the sources (left to
    right), order inside a layer by the mean position of the inputs (two sweeps)."""
    refs = sorted(lineage.nodes)
    preds: dict[str, list[str]] = {r: [] for r in refs}
    succs: dict[str, list[str]] = {r: [] for r in refs}
    for a, b in lineage.edges:
        preds[b].append(a)
        succs[a].append(b)
    layer: dict[str, int] = {}

    def depth_of(r, stack=()):
        if r in layer:
            return layer[r]
        if r in stack:  # a cycle (hand-made inputs): cut it
            return 0
        layer[r] = 0 if not preds[r] else 1 + max(depth_of(p, (*stack, r)) for p in preds[r])
        return layer[r]

    for r in refs:
        depth_of(r)
    layers: dict[int, list[str]] = {}
    for r in refs:
        layers.setdefault(layer[r], []).append(r)
    pos: dict[str, float] = {}
    for k in sorted(layers):
        for i, r in enumerate(layers[k]):
            pos[r] = i
    for _ in range(2):  # barycenter sweeps: forward by inputs, backward by outputs
        for k in sorted(layers):
            layers[k].sort(key=lambda r: (sum(pos[p] for p in preds[r]) / len(preds[r])) if preds[r] else pos[r])
            for i, r in enumerate(layers[k]):
                pos[r] = i
        for k in sorted(layers, reverse=True):
            layers[k].sort(key=lambda r: (sum(pos[s] for s in succs[r]) / len(succs[r])) if succs[r] else pos[r])
            for i, r in enumerate(layers[k]):
                pos[r] = i
    sizes = {}
    for r in refs:
        lines = _short_label(lineage.nodes[r])
        sizes[r] = (max(len(x) for x in lines) * _CHAR_W + 2 * _PAD, len(lines) * _LINE_H + 2 * _PAD)
    boxes: dict[str, tuple[float, float, float, float]] = {}
    x = 20.0
    heights = {k: sum(sizes[r][1] for r in rs) + _GAP_Y * (len(rs) - 1) for k, rs in layers.items()}
    tallest = max(heights.values()) if heights else 0
    for k in sorted(layers):
        width = max(sizes[r][0] for r in layers[k])
        y = 20.0 + (tallest - heights[k]) / 2
        for r in layers[k]:
            w, h = sizes[r]
            boxes[r] = (x, y, w, h)
            y += h + _GAP_Y
        x += width + _GAP_X
    return boxes


def layered_svg(lineage: Lineage) -> str:
    from xml.sax.saxutils import escape

    boxes = layout(lineage)
    width = max((x + w for x, _, w, _ in boxes.values()), default=100) + 20
    height = max((y + h for _, y, _, h in boxes.values()), default=60) + 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="Helvetica, Arial, sans-serif" font-size="12">',
           "<title>" + escape(f"lineage of {lineage.root}") + "</title>",
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#5b6b7f"/></marker></defs>',
           f'<rect width="{width:.0f}" height="{height:.0f}" fill="white"/>']
    for a, b in lineage.edges:
        ax, ay, aw, ah = boxes[a]
        bx, by, _bw, bh = boxes[b]
        x1, y1, x2, y2 = ax + aw, ay + ah / 2, bx, by + bh / 2
        mid = (x1 + x2) / 2
        out.append(f'<path class="edge" d="M {x1:.1f} {y1:.1f} C {mid:.1f} {y1:.1f}, {mid:.1f} {y2:.1f}, '
                   f'{x2:.1f} {y2:.1f}" fill="none" stroke="#5b6b7f" stroke-width="1.4" marker-end="url(#arrow)"/>')
    for ref, (x, y, w, h) in sorted(boxes.items()):
        node = lineage.nodes[ref]
        is_root = ref == lineage.root
        fill = "#fff4d6" if is_root else "#f5f7fa"
        stroke = "#c28a00" if is_root else "#8796a8"
        dash = ' stroke-dasharray="4 3"' if node.missing else ""
        out.append(f'<g class="node" id="{escape(_svg_id(ref))}"><rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" '
                   f'height="{h:.1f}" rx="6" fill="{fill}" stroke="{stroke}" '
                   f'stroke-width="{2.5 if is_root else 1.2}"{dash}/>')
        for i, line in enumerate(_short_label(node)):
            weight = ' font-weight="bold"' if i == 0 else ' fill="#334"'
            out.append(f'<text x="{x + _PAD:.1f}" y="{y + _PAD + (i + 1) * _LINE_H - 4:.1f}"{weight}>'
                       f"{escape(line)}</text>")
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _svg_id(ref: str) -> str:
    return "node-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in ref)
