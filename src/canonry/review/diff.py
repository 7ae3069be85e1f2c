"""`canonry diff BASE..HEAD`: what a branch (a pull request) changes, told in registry terms.

The change is the net one between the merge base of BASE and HEAD and HEAD, like
`git diff BASE...HEAD`: what the branch introduces, whatever happened on BASE meanwhile. It is
computed from tree diffs (events.diff_events), so a hand-edited commit reads like a canonry one.

    model/mnist: production v3 → v4 (gemma-finetuned:v7, accuracy 0.91 → 0.94)
    model/mnist: +staging → v4 (gemma-finetuned:v7, accuracy 0.94)
    model/mnist: + v5 gemma-finetuned:v8 (accuracy 0.95)

`describe` returns a Review (a list of Change records plus who made them); `render_text`,
`render_markdown` and `Review.to_list()` (the `--format json` shape) present it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from canonry import model as m
from canonry.errors import CanonryError, InvalidInput
from canonry.git import graph
from canonry.output import fmt

MAX_METRICS = 8  # metrics shown per line in text and markdown (JSON has all of them)
MAX_VALUE = 60  # characters of a setting value shown in text and markdown

# Within a collection: promotions first, then what was linked and unlinked, then labels and settings.
_RANK = {k: i for i, k in enumerate((
    "store.changed", "registry.created", "registry.renamed", "registry.removed", "registry.changed",
    "alias.moved", "alias.added", "alias.removed", "collection.created", "collection.renamed",
    "collection.removed", "link.created", "link.removed", "tags.changed", "collection.changed",
    "artifact.logged", "artifact.deleted", "artifact.described", "artifact.changed", "artifact.removed"))}

STORE_GROUP = "store"
ARTIFACTS_GROUP = "artifacts"


@dataclass
class Change:
    """One net change between the merge base and HEAD. `from`/`to` are link versions (vN):
    where an alias was and is, the link removed or added. `previous_artifact`/`artifact` are
    the artifact versions (NAME:vK) behind them at the merge base and at HEAD, and `metrics`
    maps each metric of either to [at the merge base, at HEAD] (null where absent)."""

    kind: str
    group: str  # REGISTRY/COLLECTION, "registry NAME", "store" or "artifacts"
    registry: str | None = None
    collection: str | None = None  # REGISTRY/COLLECTION
    version: str | None = None  # the vN concerned (link, tagged link, alias target)
    alias: str | None = None
    from_: str | None = None
    to: str | None = None
    artifact: str | None = None
    previous_artifact: str | None = None
    metrics: dict = field(default_factory=dict)
    tags_added: list = field(default_factory=list)
    tags_removed: list = field(default_factory=list)
    tags: list = field(default_factory=list)  # the tags at HEAD, for tags.changed
    changes: dict = field(default_factory=dict)  # setting -> [before, after]
    detail: str = ""  # type of a new collection, artifact, etc. (human rendering only)
    target: str = ""

    def line(self, code=str, esc=str) -> str:
        """The change in one line, without its group (for markdown, `code` wraps names and
        `esc` escapes free text)."""
        return _line(self, code, esc)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "collection": self.collection, "alias": self.alias,
                "from": self.from_, "to": self.to, "version": self.version,
                "artifact": self.artifact, "previous_artifact": self.previous_artifact,
                "metrics": {k: list(v) for k, v in self.metrics.items()},
                "registry": self.registry, "tags_added": list(self.tags_added),
                "tags_removed": list(self.tags_removed), "tags": list(self.tags),
                "changes": {k: list(v) for k, v in self.changes.items()},
                "target": self.target, "text": f"{self.group}: {self.line()}"}


@dataclass
class Review:
    """What BASE..HEAD introduces: the changes, grouped and ordered, and who made them."""

    range: str
    base: str  # commit ids (hex)
    head: str
    merge_base: str
    changes: list[Change]
    authors: list[str]  # "Name <email>" of the commits in the range that touched the store
    commits: int

    def __iter__(self):
        return iter(self.changes)

    def __len__(self) -> int:
        return len(self.changes)

    def __getitem__(self, i):
        return self.changes[i]

    def to_list(self) -> list[dict]:
        return [c.to_dict() for c in self.changes]

    def groups(self) -> list[tuple[str, list[Change]]]:
        out: dict[str, list[Change]] = {}
        for c in self.changes:
            out.setdefault(c.group, []).append(c)
        return list(out.items())


# ---- computing -----------------------------------------------------------------------------------
def parse_range(storage, spec: str) -> tuple[bytes, bytes]:
    """Commit ids of BASE and HEAD in `BASE..HEAD` (or `BASE...HEAD`, the same here); an empty
    side means the store branch."""
    spec = spec.strip()
    sep = "..." if "..." in spec else ".." if ".." in spec else None
    if sep is None:
        raise InvalidInput(f"{spec!r}: expected a range BASE..HEAD (e.g. main..promote/mnist-v7)")
    base, _, head = spec.partition(sep)
    if not base and not head:
        raise InvalidInput(f"{spec!r}: expected a range BASE..HEAD (e.g. main..promote/mnist-v7)")
    return storage.resolve_rev(base or storage.branch), storage.resolve_rev(head or storage.branch)


def merge_base(storage, base_id: bytes, head_id: bytes, spec: str = "") -> bytes:
    """graph.merge_base, refusing (with `spec` in the message) sides that share no history."""
    found = graph.merge_base(storage, base_id, head_id)
    if found is None:
        raise InvalidInput(f"{spec or 'BASE..HEAD'}: the two sides have no common history (no merge base)")
    return found


def describe(store, rev_range: str) -> Review:
    """The net registry change that HEAD brings over the merge base of BASE and HEAD."""
    from canonry.automation.events import diff_events

    storage = store.storage
    base_id, head_id = parse_range(storage, rev_range)
    mb = merge_base(storage, base_id, head_id, rev_range)
    before, after = store.view(mb), store.view(head_id)
    changes: list[Change] = []
    if mb != head_id:
        events = diff_events(storage, mb, head_id, store.read_record, "", "", head_id.decode())
        changes = [_change(e, before, after) for e in events]
        changes = [c for c in changes if c is not None]
        changes = _renames(changes + _untracked_changes(store, mb, head_id))
    changes = _ordered(changes)
    authors, count = _authors(storage, mb, head_id)
    return Review(range=rev_range, base=base_id.decode(), head=head_id.decode(),
                  merge_base=mb.decode(), changes=changes, authors=authors, commits=count)


def _change(e, before, after) -> Change | None:
    kind = e.kind
    if kind.startswith("registry."):
        c = Change(kind=kind, group=f"registry {e.registry}", registry=e.registry, target=e.target,
                   changes=dict(e.changes))
        if kind == "registry.created":
            rec = after.read(m.registry_file(e.registry), copy_=False) or {}
            types = rec.get("types", "all")
            c.detail = f"{rec.get('visibility', '?')}; types: {types if types == 'all' else ', '.join(types)}"
        return c
    if kind.startswith("artifact."):
        name, version = e.artifact.split(":")
        rec = after.read(m.artifact_version_file(name, version), copy_=False) or {}
        return Change(kind=kind, group=ARTIFACTS_GROUP, artifact=e.artifact, target=e.target,
                      version=version, detail=rec.get("type", ""),
                      metrics={k: [None, v] for k, v in (rec.get("metrics") or {}).items()})
    reg, coll = e.collection.split("/")
    c = Change(kind=kind, group=e.collection, registry=reg, collection=e.collection, target=e.target,
               version=e.version, alias=e.alias)
    if kind == "collection.created":
        rec = after.read(m.collection_file(reg, coll), copy_=False) or {}
        c.detail = rec.get("type", "")
    elif kind == "collection.changed":
        c.changes = dict(e.changes)
    elif kind == "tags.changed":
        old, new = list(e.previous_tags), list(e.tags)
        c.tags = new
        c.tags_added = [t for t in new if t not in old]
        c.tags_removed = [t for t in old if t not in new]
        if e.version:
            c.artifact = e.artifact
    elif kind == "link.created":
        c.to, c.artifact = e.version, e.artifact
        c.metrics = _metrics(before, None, after, e.artifact)
        c.tags = list(e.tags)
    elif kind == "link.removed":
        c.from_, c.previous_artifact = e.version, e.artifact
        c.metrics = _metrics(before, e.artifact, after, None)
    elif kind == "alias.added":
        c.to, c.artifact = e.version, e.artifact
        c.metrics = _metrics(before, None, after, e.artifact)
    elif kind == "alias.removed":
        c.from_, c.previous_artifact = e.previous_version, e.artifact
        c.metrics = _metrics(before, e.artifact, after, None)
    elif kind == "alias.moved":
        c.from_, c.to, c.artifact = e.previous_version, e.version, e.artifact
        link = before.link(reg, coll, e.previous_version) if e.previous_version else None
        c.previous_artifact = link.get("artifact") if link else None
        c.metrics = _metrics(before, c.previous_artifact, after, e.artifact)
    return c


def _artifact_metrics(view, ref: str | None) -> dict:
    if not ref or ":" not in ref:
        return {}
    name, version = ref.split(":", 1)
    rec = view.read(m.artifact_version_file(name, version), copy_=False)
    return dict((rec or {}).get("metrics") or {})


def _metrics(before_view, before_ref, after_view, after_ref) -> dict:
    """{metric: [value at the merge base, value at HEAD]} for every metric of either version."""
    old = _artifact_metrics(before_view, before_ref)
    new = _artifact_metrics(after_view, after_ref)
    return {k: [old.get(k), new.get(k)] for k in dict.fromkeys(list(old) + list(new))}


def _untracked_changes(store, old_commit: bytes, new_commit: bytes) -> list[Change]:
    """Changes diff_events does not report but a reviewer must see: store settings
    (canonry.yaml: trust in local plugins, admins, automations) and logged artifact versions
    that were edited or deleted (they are meant to be immutable)."""
    from dulwich.diff_tree import tree_changes

    storage = store.storage
    out: list[Change] = []
    old_root, new_root = storage.root_tree(old_commit), storage.root_tree(new_commit)
    for ch in tree_changes(storage.repo.object_store, old_root, new_root):
        old_sha = ch.old.sha if ch.old is not None else None
        new_sha = ch.new.sha if ch.new is not None else None
        path = (ch.new.path if ch.new is not None and ch.new.path else ch.old.path).decode()
        kind = m.kind_of_path(path)
        if kind == "store" and old_sha and new_sha:
            before = store.read_record(old_sha, path)
            after = store.read_record(new_sha, path)
            changes = _setting_changes(before, after, skip=("format",))
            if changes:
                out.append(Change(kind="store.changed", group=STORE_GROUP, changes=changes,
                                  target=m.STORE_FILE))
        elif kind in ("registry", "collection") and (old_sha is None) != (new_sha is None):
            # a removal, told here (diff_events has no event for it); an addition only as a
            # marker for _renames to pair it with a removal of the same file
            parts = path.split("/")
            gone = new_sha is None
            try:
                rec = store.read_record(old_sha if gone else new_sha, path)
            except CanonryError:
                rec = {}
            # what survives a rename: when and by whom it was made (and a collection's type)
            same = repr((rec.get("created_at"), rec.get("created_by"), rec.get("type")))
            if kind == "registry":
                out.append(Change(kind="registry.removed" if gone else "registry.added",
                                  group=f"registry {parts[1]}", registry=parts[1], target=parts[1],
                                  detail=same, changes=rec))
            else:
                where = f"{parts[1]}/{parts[2]}"
                out.append(Change(kind="collection.removed" if gone else "collection.added", group=where,
                                  registry=parts[1], collection=where, target=where, detail=same, changes=rec))
        elif kind == "artifact" and old_sha and new_sha:
            changes = _setting_changes(store.read_record(old_sha, path), store.read_record(new_sha, path))
            if changes:
                name = path.split("/")[1]
                out.append(Change(kind="artifact.described", group=ARTIFACTS_GROUP, artifact=name,
                                  changes=changes, target=name))
        elif kind == "artifact_version" and old_sha:
            parts = path.split("/")
            ref = f"{parts[1]}:{parts[2][:-5]}"
            before = store.read_record(old_sha, path)
            if new_sha is None:
                out.append(Change(kind="artifact.removed", group=ARTIFACTS_GROUP, previous_artifact=ref,
                                  version=parts[2][:-5], target=ref))
                continue
            after = store.read_record(new_sha, path)
            changes = _setting_changes(before, after)
            if set(changes) == {"deleted_at", "deleted_by"} and before.get("deleted_at") is None:
                out.append(Change(kind="artifact.deleted", group=ARTIFACTS_GROUP, previous_artifact=ref,
                                  version=parts[2][:-5], target=ref,
                                  detail=f"by {after['deleted_by']} at {after['deleted_at']}"))
            elif changes:
                out.append(Change(kind="artifact.changed", group=ARTIFACTS_GROUP, artifact=ref,
                                  previous_artifact=ref, version=parts[2][:-5], changes=changes,
                                  target=ref))
    return out


def _renames(changes: list[Change]) -> list[Change]:
    """A registry or collection removed and one added that was made at the same time by the same
    person is a rename: one `*.renamed` change (with any settings changed on the way) instead of
    everything under both names. Other removals stay; the addition markers go (diff_events tells
    creations)."""
    removed = [c for c in changes if c.kind in ("registry.removed", "collection.removed")]
    renamed: list[Change] = []
    regs: dict[str, str] = {}  # old registry -> new
    names: set[tuple[str, str]] = set()  # ("registry", NAME) / ("collection", REG/NAME) on either side

    def counterpart(c: Change) -> Change | None:
        """The removal `c` (an addition) renames: same creation; a collection in the same
        registry (a collection is renamed within its registry) or moved with it."""
        found = [r for r in removed if r.kind.split(".")[0] == c.kind.split(".")[0] and r.detail == c.detail
                 and (c.kind == "registry.added" or r.registry in (c.registry, *[o for o, n in regs.items()
                                                                                 if n == c.registry]))]
        found.sort(key=lambda r: r.changes != c.changes)  # an unchanged file first
        return found[0] if found else None

    for kind in ("registry", "collection"):  # registries first: their collections move along
        for c in changes:
            if c.kind != f"{kind}.added":
                continue
            old = counterpart(c)
            if old is None:
                continue
            removed.remove(old)
            if kind == "collection" and regs.get(old.registry or "") == c.registry:
                continue  # moved with its registry
            if kind == "registry":
                regs[old.target] = c.target
            names |= {(kind, old.target), (kind, c.target)}
            settings = {k: v for k, v in _setting_changes(old.changes, c.changes).items()
                        if k not in ("next_version", "tags")}
            renamed.append(Change(kind=f"{kind}.renamed", group=c.group, registry=c.registry,
                                  collection=c.collection, from_=old.target, to=c.target, target=c.target,
                                  changes=settings))
    out = list(renamed)
    for c in changes:
        if c.kind.endswith(".added") and c.kind.split(".")[0] in ("registry", "collection"):
            continue
        if c.kind in ("registry.removed", "collection.removed"):
            if c not in removed:
                continue  # half of a rename
            c.detail, c.changes = "", {}
        elif ("registry", c.registry) in names or ("collection", c.collection) in names:
            continue  # moved along with what was renamed
        out.append(c)
    return out


def _setting_changes(before: dict, after: dict, skip=()) -> dict:
    keys = [k for k in dict.fromkeys(list(before) + list(after)) if k not in skip]
    return {k: [before.get(k), after.get(k)] for k in keys if before.get(k) != after.get(k)}


def _vnum(version: str | None) -> int:
    try:
        return int(version[1:]) if version else -1
    except ValueError:
        return -1


def _ordered(changes: list[Change]) -> list[Change]:
    """Store settings, then registries, then collections (those with promotions first), then
    artifact versions; inside a group, promotions first."""
    promoted = {c.group for c in changes if c.kind.startswith("alias.")}

    def group_key(c: Change):
        if c.group == STORE_GROUP:
            return (0, 0, "")
        if c.kind.startswith("registry."):
            return (1, 0, c.group)
        if c.group == ARTIFACTS_GROUP:
            return (3, 0, "")
        return (2, 0 if c.group in promoted else 1, c.group)

    def key(c: Change):
        name, _, ver = (c.artifact or c.previous_artifact or "").partition(":")
        return (group_key(c), _RANK.get(c.kind, 99), c.alias or "", name,
                _vnum(c.version or c.to or c.from_), _vnum(ver))

    return sorted(changes, key=key)


def _authors(storage, merge_base_id: bytes, head_id: bytes) -> tuple[list[str], int]:
    """Authors ("Name <email>", first commit first) of the commits HEAD has over the merge base
    that changed the store, and how many such commits there are."""
    if merge_base_id == head_id:
        return [], 0
    seen: dict[str, str] = {}
    count = 0
    walker = storage.repo.get_walker(include=[head_id], exclude=[merge_base_id])
    commits = [entry.commit for entry in walker]
    for commit in reversed(commits):
        parent = commit.parents[0] if commit.parents else None
        if storage.root_tree(commit.id) == storage.root_tree(parent):
            continue  # a code-only commit (store under a prefix) or an empty merge
        count += 1
        author = commit.author.decode("utf-8", "replace").strip()
        email = author[author.find("<") + 1:author.rfind(">")] if "<" in author else author
        seen.setdefault(email.lower(), author)
    return list(seen.values()), count


# ---- rendering -----------------------------------------------------------------------------------
def _value(value, esc=str) -> str:
    if isinstance(value, str):
        text = esc(value if len(value) <= MAX_VALUE else value[:MAX_VALUE - 1] + "…")
        return f'"{text}"' if (" " in text or not text) else text
    return esc(_short(fmt(value)))


def _short(text: str) -> str:
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 1] + "…"


def _metric_text(metrics: dict, side: str, esc=str) -> list[str]:
    """side: "both" (a → b), "after" or "before" (one value)."""
    items = list(metrics.items())
    shown = []
    for name, (old, new) in items[:MAX_METRICS]:
        if side == "both":
            shown.append(f"{esc(name)} {fmt(old)} → {fmt(new)}")
        else:
            value = new if side == "after" else old
            if value is not None:
                shown.append(f"{esc(name)} {fmt(value)}")
    if len(items) > MAX_METRICS:
        shown.append(f"+{len(items) - MAX_METRICS} more metrics")
    return shown


def _tag_text(c: Change, code) -> str:
    parts = [f"+{code(t)}" for t in c.tags_added] + [f"-{code(t)}" for t in c.tags_removed]
    return "tags " + " ".join(parts) if parts else "tags reordered"


def _setting_text(name: str, before, after, code, esc=str) -> str:
    if name == "automations":
        return "automations " + _named_list_text(before or [], after or [], code)
    if isinstance(before, dict) or isinstance(after, dict):
        old, new = before or {}, after or {}
        parts = []
        for k in dict.fromkeys(list(old) + list(new)):
            if k not in old:
                parts.append(f"+{code(k)}={_value(new[k], esc)}")
            elif k not in new:
                parts.append(f"-{code(k)}")
            elif old[k] != new[k]:
                parts.append(f"{code(k)} {_value(old[k], esc)} → {_value(new[k], esc)}")
        return f"{name} " + ", ".join(parts)
    if isinstance(before, list) and isinstance(after, list) and \
            all(not isinstance(x, (dict, list)) for x in before + after):
        added = [f"+{code(str(x))}" for x in after if x not in before]
        removed = [f"-{code(str(x))}" for x in before if x not in after]
        return f"{name} " + " ".join(added + removed) if added or removed else f"{name} reordered"
    return f"{name} {_value(before, esc)} → {_value(after, esc)}"


def _named_list_text(before: list, after: list, code) -> str:
    """Automations are a list of {name, …}: say which were added, removed or edited."""
    old = {a.get("name"): a for a in before if isinstance(a, dict)}
    new = {a.get("name"): a for a in after if isinstance(a, dict)}
    parts = [f"+{code(str(n))}" for n in new if n not in old]
    parts += [f"-{code(str(n))}" for n in old if n not in new]
    parts += [f"{code(str(n))} edited" for n in new if n in old and old[n] != new[n]]
    return ", ".join(parts) or "reordered"


def _line(c: Change, code=str, esc=str) -> str:
    k = c.kind
    if k == "alias.moved":
        info = [code(c.artifact or "?")]
        if c.previous_artifact and c.artifact and \
                c.previous_artifact.split(":")[0] != c.artifact.split(":")[0]:
            info.append(f"was {code(c.previous_artifact)}")
        info += _metric_text(c.metrics, "both", esc)
        return f"{code(c.alias)} {c.from_} → {c.to} ({', '.join(info)})"
    if k == "alias.added":
        info = [code(c.artifact or "?"), *_metric_text(c.metrics, "after", esc)]
        return f"+{code(c.alias)} → {c.to} ({', '.join(info)})"
    if k == "alias.removed":
        return f"-{code(c.alias)} (was {c.from_}, {code(c.previous_artifact or '?')})"
    if k == "link.created":
        text = f"+ {c.to} {code(c.artifact or '?')}"
        metrics = _metric_text(c.metrics, "after", esc)
        if metrics:
            text += f" ({', '.join(metrics)})"
        if c.tags:
            text += " [tags: " + ", ".join(code(t) for t in c.tags) + "]"
        return text
    if k == "link.removed":
        return f"- {c.from_} {code(c.previous_artifact or '?')}"
    if k == "tags.changed":
        return (f"{c.version} " if c.version else "") + _tag_text(c, code)
    if k == "collection.created":
        return f"new collection ({esc(c.detail)})" if c.detail else "new collection"
    if k in ("collection.changed", "registry.changed", "store.changed"):
        return "; ".join(_setting_text(n, b, a, code, esc) for n, (b, a) in c.changes.items())
    if k == "registry.created":
        return f"new registry ({esc(c.detail)})"
    if k in ("registry.renamed", "collection.renamed"):
        return "; ".join([f"renamed from {code(c.from_ or '?')}",
                          *(_setting_text(n, b, a, code, esc) for n, (b, a) in c.changes.items())])
    if k == "registry.removed":
        return "registry deleted (with its collections and links)"
    if k == "collection.removed":
        return "collection deleted (with its links and aliases)"
    if k == "artifact.deleted":
        return f"- {code(c.previous_artifact)} deleted {esc(c.detail)}"
    if k == "artifact.described":
        return f"{code(c.artifact)}: " + "; ".join(_setting_text(n, b, a, code, esc) for n, (b, a) in c.changes.items())
    if k == "artifact.logged":
        info = ([esc(c.detail)] if c.detail else []) + _metric_text(c.metrics, "after", esc)
        return f"+ {code(c.artifact)}" + (f" ({', '.join(info)})" if info else "")
    if k == "artifact.changed":
        fields = ", ".join(code(n) for n in c.changes)
        return f"! {code(c.artifact)} edited after it was logged ({fields}); logged versions must never change"
    if k == "artifact.removed":
        return f"! {code(c.previous_artifact)} deleted; logged versions must never be removed"
    return c.target


def _footer(review: Review, email_brackets=("<", ">")) -> str:
    """Who made the changes: "by A <a@x>, B <b@x> in 3 commits"."""
    if not review.authors:
        return ""
    lo, hi = email_brackets
    names = [a.replace("<", lo).replace(">", hi) for a in review.authors]
    n = review.commits
    return f"by {', '.join(names)} in {n} commit{'s' * (n != 1)}"


def render_text(review: Review) -> str:
    if not review.changes:
        return f"no registry changes in {review.range}"
    blocks = ["\n".join(f"{group}: {c.line()}" for c in changes) for group, changes in review.groups()]
    footer = _footer(review)
    return "\n\n".join(blocks) + (f"\n\n{footer}" if footer else "")


_MD_SPECIAL = "\\`*_[]<>#|~!&"


def _md(text: str) -> str:
    """Escape markdown (and HTML) in free text."""
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)


def _md_code(text: str) -> str:
    text = str(text).replace("`", "'")
    return f"`{text}`"


def render_markdown(review: Review) -> str:
    """A pull-request comment: a heading, one bullet list per collection (promotions first),
    a footer naming who made the changes."""
    out = [f"### Registry changes ({_md_code(review.range)})", ""]
    if not review.changes:
        out.append("no registry changes")
        return "\n".join(out)
    for group, changes in review.groups():
        if group.startswith("registry "):
            title = f"**registry {_md(group[len('registry '):])}**"
        elif group == STORE_GROUP:
            title = "**store settings** (`canonry.yaml`)"
        elif group == ARTIFACTS_GROUP:
            title = "**artifact versions**"
        else:
            title = f"**{_md(group)}**"
        out += [title, ""]
        for c in changes:
            line = c.line(_md_code, _md)
            if line[:2] in ("+ ", "- ", "! "):  # would start a nested list (or look like one)
                line = "\\" + line
            out.append(f"- {line}")
        out.append("")
    footer = _footer(review, email_brackets=("(", ")"))
    short = review.merge_base[:10]
    tail = f"merge base {_md_code(short)}"
    out.append(f"<sub>Changed {_md(footer)} · {tail}</sub>" if footer else f"<sub>{tail}</sub>")
    return "\n".join(out)


__all__ = [
    "Change",
    "Review",
    "describe",
    "merge_base",
    "parse_range",
    "render_markdown",
    "render_text",
]
