"""Random stores for the search, index and lineage tests: real operations through the API, plus
commits made by hand with the git CLI, from a seed (the same seed builds the same store); and the
test oracles the fast paths are checked against: `matches` (a filter evaluated in pure Python,
against the SQL canonry.query.search makes) and `reference_documents` (search documents built
from the store itself, against the index)."""
from __future__ import annotations

import random

import yaml
from conftest import git

from canonry import model as m
from canonry import ops
from canonry.query.history import walk
from canonry.query.search import parse
from canonry.query.values import regex_search, to_number

TAGS = ["vision", "nlp", "team-a", "v2"]
ALIASES = ["production", "staging", "best", "champion"]
NAMES = {"model": ["bert", "yolo", "gemma"], "dataset": ["data", "images"]}
COLLECTIONS = {"model": ["clf", "yolo-v8", "prod-model"], "dataset": ["train", "eval"],
               "exp": ["sweep", "a"]}
STRINGS = ["a", "b", "vision", "1", "true", "A-1", "", "yolo"]
METADATA_KEYS = ["x", "y", "z", "n"]


def rand_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 2 else 7)
    if kind == 0:
        return rng.randint(-3, 3)
    if kind == 1:
        return rng.choice([0.5, -1.25, 3.0, 1e10, 2.0])
    if kind == 2:
        return rng.choice([True, False])
    if kind == 3:
        return None
    if kind in (4, 5):
        return rng.choice(STRINGS)
    if kind == 6:
        return [rng.choice([1, "a", True, None, 2.5, "vision"]) for _ in range(rng.randrange(4))]
    return {k: rand_value(rng, depth + 1) for k in rng.sample(METADATA_KEYS, rng.randrange(1, 3))}


def rand_metadata(rng: random.Random) -> dict:
    meta = {k: rand_value(rng) for k in rng.sample(METADATA_KEYS, rng.randrange(0, 4))}
    if rng.random() < 0.2:
        meta["a.b"] = 1  # a key holding '.': not addressable by a filter
    return meta


def rand_metrics(rng: random.Random) -> dict:
    return {k: rng.choice([0.1, 0.5, 0.9, 1, 2, -3.5, 0.95]) for k in rng.sample(["acc", "loss", "f1"], rng.randrange(0, 3))}


def build_random_store(store, workdir, seed: int, n_ops: int = 30, hand: bool = True) -> dict:
    """Fill `store` (a fresh, non-bare store) with random registries' content. Returns what was made."""
    rng = random.Random(seed)
    store.create_registry("exp", description="experiments and sweeps", visibility="organization")
    made = {"versions": [], "collections": set()}
    counter = [0]

    def new_file() -> str:
        counter[0] += 1
        p = workdir / "files" / f"f{seed}-{counter[0]}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f"{seed}:{counter[0]}".encode())
        return str(p)

    def log(type_: str):
        name = rng.choice(NAMES[type_])
        inputs = rng.sample(made["versions"], min(len(made["versions"]), rng.randrange(0, 3)))
        v = store.log_artifact(new_file(), name=name, type=type_, metadata=rand_metadata(rng),
                               metrics=rand_metrics(rng), inputs=list(inputs),
                               description=rng.choice(["", "baseline", "fine-tuned on vision"]))
        made["versions"].append(v.address)
        return v

    for _ in range(4):
        log(rng.choice(["model", "dataset"]))
    for _step in range(n_ops):
        action = rng.randrange(10)
        try:
            if action <= 1:
                log(rng.choice(["model", "dataset"]))
            elif action <= 4 and made["versions"]:
                ref = rng.choice(made["versions"])
                type_ = store.artifact_version(ref).type
                reg = rng.choice([type_, "exp"])
                coll = f"{reg}/{rng.choice(COLLECTIONS[reg])}"
                store.link(ref, coll, aliases=rng.sample(ALIASES, rng.randrange(0, 2)),
                           description=rng.choice(["", "candidate"]))
                made["collections"].add(coll)
            elif action == 5 and made["collections"]:
                coll = rng.choice(sorted(made["collections"]))
                vs = store.versions(coll)
                if vs:
                    store.set_alias(f"{coll}:{rng.choice(vs).version}", rng.choice(ALIASES))
            elif action == 6 and made["collections"]:
                coll = rng.choice(sorted(made["collections"]))
                target = coll
                vs = store.versions(coll)
                if vs and rng.random() < 0.6:
                    target = f"{coll}:{rng.choice(vs).version}"
                if rng.random() < 0.7:
                    store.tag(target, *rng.sample(TAGS, rng.randrange(1, 3)))
                else:
                    store.untag(target, rng.choice(TAGS))
            elif action == 7 and made["collections"]:
                coll = rng.choice(sorted(made["collections"]))
                vs = store.versions(coll)
                if vs and rng.random() < 0.5:
                    store.unlink(f"{coll}:{rng.choice(vs).version}")
                else:
                    aliases = [a for a in store.collection(coll).aliases if a != "latest"]
                    if aliases:
                        store.remove_alias(coll, rng.choice(aliases))
            elif action == 8 and hand:
                hand_commit(store, rng)
        except Exception as e:  # an op the random choice made invalid (type not accepted, …)
            from canonry.errors import CanonryError

            if not isinstance(e, CanonryError):
                raise
    if hand:
        hand_commit(store, rng)
        drop_linked_version(store, rng)
    return made


def drop_linked_version(store, rng: random.Random) -> None:
    """Delete (with git) an artifact version that a link points at: a dangling link, whose type,
    metadata and metrics are then missing."""
    linked = sorted({v.artifact for v in store.versions()})
    if not linked:
        return
    name, _, version = rng.choice(linked).partition(":")
    git("-C", store.path, "rm", "-q", f"artifacts/{name}/{version}.yaml")
    git("-C", store.path, "commit", "-q", "-m", f"drop {name}:{version} by hand")


def hand_commit(store, rng: random.Random) -> None:
    """A commit made with the git CLI, no canonry trailers: edit tags of a link, or an artifact
    version's metadata, or the description of a collection."""
    root = store.path
    view = store.view()
    choices = []
    for reg in view.registry_names():
        for coll in view.collection_names(reg):
            choices.append(("collection", f"registries/{reg}/{coll}/collection.yaml"))
            for v in view.link_versions(reg, coll):
                choices.append(("link", f"registries/{reg}/{coll}/links/{v}.yaml"))
    for art in view.artifact_names():
        for v in view.artifact_versions(art):
            choices.append(("av", f"artifacts/{art}/{v}.yaml"))
    if not choices:
        return
    kind, rel = rng.choice(choices)
    path = f"{root}/{rel}"
    with open(path) as f:
        rec = yaml.safe_load(f)
    if kind == "link":
        rec["tags"] = sorted(set(rec.get("tags", [])) ^ {rng.choice(TAGS)})
    elif kind == "av":
        rec["metadata"] = dict(rec.get("metadata") or {}, n=rng.choice([1, "one", True, [1, 2]]))
    else:
        rec["description"] = rng.choice(["edited by hand", "vision models", ""])
    with open(path, "w") as f:
        yaml.safe_dump(rec, f, sort_keys=False)
    git("-C", root, "add", "-A")
    git("-C", root, "commit", "-q", "--allow-empty", "-m", f"hand edit of {rel}")


def vocabulary(store) -> list[str]:
    """Strings worth filtering on in this store: names, aliases, tags, refs, metadata strings."""
    words = set(STRINGS) | set(TAGS) | set(ALIASES) | {"latest", "model", "dataset", "exp", "v0", "v1", "v2"}
    for kind in ("registries", "collections", "versions"):
        for d in reference_documents(store, kind):
            for k in ("name", "address", "artifact", "registry", "type", "description", "note"):
                if isinstance(d.get(k), str):
                    words.add(d[k])
    return sorted(words)


# ---- test oracle: the reference evaluator of filters ----------------------------------------------------
def matches(filter, doc: dict, kind: str | None = None) -> bool:
    """Does `doc` (a plain dict, as search returns them) match `filter`? Pure Python, no index:
    the brute-force oracle the SQL translation is tested against."""
    return evaluate(parse(filter, kind), doc)


def evaluate(node, doc: dict) -> bool:
    tag = node[0]
    if tag == "true":
        return True
    if tag == "and":
        return all(evaluate(n, doc) for n in node[1])
    if tag == "or":
        return any(evaluate(n, doc) for n in node[1])
    if tag == "not":
        return not evaluate(node[1], doc)
    _, _field, path, op, value = node
    exists, values = lookup(doc, path)
    if op == "exists":
        return exists == value
    if op == "eq":
        return _eq_any(exists, values, value)
    if op == "in":
        return any(_eq_any(exists, values, v) for v in value)
    if op == "regex":
        return any(isinstance(c, str) and regex_search(value[0], value[1], c) for c in values)
    if op == "contains":
        return any(isinstance(c, str) and value in c for c in values)
    return any(_ordered(c, op, value) for c in values)


def lookup(doc: dict, path: str) -> tuple[bool, list]:
    """(the dotted path is present, its scalar values) in a document."""
    cur = doc
    for seg in path.split("."):
        if isinstance(cur, dict) and seg in cur:
            cur = cur[seg]
        else:
            return False, []
    if isinstance(cur, list):
        return True, [x for x in cur if not isinstance(x, (list, dict))]
    if isinstance(cur, dict):
        return True, []
    return True, [cur]


def _kind(v) -> str:
    if isinstance(v, bool):
        return "b"
    if isinstance(v, (int, float)):
        return "n"
    if isinstance(v, str):
        return "s"
    return "z" if v is None else "?"


def _eq_any(exists: bool, values: list, v) -> bool:
    if v is None:
        return not exists or any(c is None for c in values)
    return any(_eq(c, v) for c in values)


def _eq(c, v) -> bool:
    k = _kind(c)
    if k != _kind(v):
        return False
    if k == "n":
        return to_number(c) == to_number(v)
    return c == v


def _ordered(c, op: str, v) -> bool:
    k = _kind(c)
    if k != _kind(v) or k in ("z", "?"):
        return False
    if k == "n":
        c, v = to_number(c), to_number(v)
    if op == "gt":
        return c > v
    if op == "gte":
        return c >= v
    if op == "lt":
        return c < v
    return c <= v


# ---- test oracle: documents straight from the store ------------------------------------------------------
def reference_documents(store, kind: str) -> list[dict]:
    """The documents of `kind` built from the store itself (View reads, a history walk for
    updated_at): slow, independent of the index; what search results must equal."""
    view = store.view()

    def updated(target: str, floor: str | None) -> str | None:
        times = [e.time for e in walk(store, target)]
        best = max(times) if times else ""
        return max(best, floor or "") or None

    out = []
    if kind == "registries":
        for name in view.registry_names():
            r = ops.registry_record(name, view.registry(name))
            rec = view.registry(name)
            keep = {k: rec.get(k) for k in ("description", "visibility", "types", "protected_aliases",
                                              "members", "created_at", "created_by")}
            out.append(drop_none({"kind": "registry", "address": name, "name": name,
                                  "description": r.description, "visibility": r.visibility,
                                  "type": ["all"] if r.types == "all" else list(r.types),
                                  "created_at": r.created_at, "created_by": r.created_by,
                                  "updated_at": updated(name, r.created_at), "record": keep}))
        return out
    for reg in view.registry_names():
        for coll in view.collection_names(reg):
            if kind == "collections":
                c = ops.collection_record(view, reg, coll)
                out.append(drop_none({"kind": "collection", "address": c.address, "registry": reg,
                                      "name": coll, "collection": c.address, "type": c.type,
                                      "description": c.description, "tags": c.tags,
                                      "aliases": list(c.aliases), "alias_map": c.aliases,
                                      "versions": c.versions, "next_version": c.next_version,
                                      "created_at": c.created_at, "created_by": c.created_by,
                                      "updated_at": updated(c.address, c.created_at)}))
                continue
            aliases = view.aliases(reg, coll)
            versions = view.link_versions(reg, coll)
            latest = versions[-1] if versions else None
            for v in versions:
                lv = ops.link_record(view, reg, coll, v, aliases=aliases, latest=latest)
                name, _, kver = lv.artifact.partition(":")
                av = view.read(m.artifact_version_file(name, kver))
                doc = {"kind": "version", "address": lv.address, "registry": reg,
                       "collection": f"{reg}/{coll}", "name": coll, "version": v, "artifact": lv.artifact,
                       "note": lv.description, "digest": lv.digest, "tags": lv.tags, "aliases": lv.aliases,
                       "inputs": [], "metadata": {}, "metrics": {}, "linked_at": lv.linked_at,
                       "linked_by": lv.linked_by, "updated_at": updated(lv.address, lv.linked_at)}
                if av is not None:
                    doc.update({"type": av["type"], "description": av.get("description", ""),
                                "inputs": list(av.get("inputs", [])), "metadata": av.get("metadata") or {},
                                "metrics": av.get("metrics") or {}, "created_at": av["created_at"],
                                "created_by": av["created_by"]})
                out.append(drop_none(doc))
    return out


def drop_none(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if v is not None}
