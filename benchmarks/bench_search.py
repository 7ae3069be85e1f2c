#!/usr/bin/env python3
"""Search, history and index benchmark for canonry (a script, not a test). Issue 6 targets.

    python benchmarks/bench_search.py            # 100,000 links, 20,000 commits (~4-6 minutes)
    python benchmarks/bench_search.py --quick    # smoke run: 5,000 links, 1,000 commits
    python benchmarks/bench_search.py --keep --workdir benchmarks/out/search-store   # keep the store

The synthetic store (built with bench_core's approach: records rendered from templates that
reproduce yamlio.dump byte for byte, written as one commit in one pack, record cache filled):

- 1,000 collections of 100 links (990 in registry `model`, 10 in registry `exp`): 100,000 links;
  every link its own artifact version; aliases production (v90) and staging (v99) everywhere;
  1% of links tagged `vision` (v7, v17, ...), 10% of collections tagged `team-a`.
- 10,000 model artifacts x 10 versions (100,000 artifact versions), each with metrics accuracy
  and loss (pseudo-random), metadata base/run/lr/epochs, and one input: a version of one of
  100 dataset artifacts (x 10 versions) -- 10,100 artifacts in all.
- then 20,000 more commits, written directly as canonry would write them (Canonry-Op trailers,
  real trees, packed every 5,000): alias moves of `production` (v90 <-> v95), 95% in the 10
  collections of `exp`, 5% across `model`, and one in 2,000 made "by hand" (no trailers).

Measured: full index rebuild (a fresh process, its peak RSS), searches by tag, alias and metric
across all versions in-process with a warm index, `canonry search` / `canonry history` as fresh
processes (PYTHONDONTWRITEBYTECODE removed after a warm-up run), bringing the index up to date
after one new commit (alias move, link, log), and tracemalloc peaks by result size.
Prints a table; writes JSON to benchmarks/out/bench_search-<time>.json (and -latest.json/.txt).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_core as core  # noqa: E402  (also puts ../src on sys.path and sets CANONRY_ACTOR)
from dulwich.objects import Blob, Commit, Tree  # noqa: E402

import canonry  # noqa: E402
from canonry import journal, yamlio  # noqa: E402
from canonry.schemas import FORMAT_VERSION  # noqa: E402

LINKS_PER_COLLECTION = 100
VERSIONS_PER_ARTIFACT = 10
EXP_COLLECTIONS = 10
DATASETS = 100
BASES = ("gemma-2b", "llama-3-8b", "mistral-7b", "phi-3", "qwen-7b")
LRS = (0.1, 0.01, 0.001, 0.0003, 0.0001)
TAGGED = 7  # links vN with N % 10 == 7 ... see tagged()
TARGETS = {"search_ms": 50.0, "process_search_ms": 300.0, "history_ms": 200.0, "update_ms": 20.0,
           "rebuild_s": 30.0}


def coll_registry(c: int, n_coll: int) -> str:
    return "exp" if c >= n_coll - EXP_COLLECTIONS else "model"


def tagged(n: int) -> bool:
    return n % 100 == TAGGED  # 1 link in 100


def _u(text: str) -> float:
    """A deterministic pseudo-random number in [0, 1) from a string."""
    return int(core._hex(text)[:12], 16) / float(1 << 48)


def accuracy_of(name: str, k: int) -> float:
    return round(0.5 + 0.5 * _u(f"acc:{name}:v{k}"), 4)


# ---- record shapes (what canonry writes) -----------------------------------------------------------------
def _av_rec(digest, size, sha, run, acc, loss, lr, epochs, base, data, commit, created_at, created_by):
    return {"format": FORMAT_VERSION, "type": "model", "digest": digest, "size": size,
            "files": [{"path": "model.safetensors", "size": size, "sha256": sha}],
            "metadata": {"base": base, "run": run, "lr": lr, "epochs": epochs},
            "metrics": {"accuracy": acc, "loss": loss}, "inputs": [data],
            "producer": {"git_commit": commit, "command": "python train.py --config train.yaml",
                         "host": "bench-host", "actor": created_by, "cwd": "/work"},
            "description": "", "created_at": created_at, "created_by": created_by}


def _data_rec(digest, size, sha, rows, created_at, created_by):
    return {"format": FORMAT_VERSION, "type": "dataset", "digest": digest, "size": size,
            "files": [{"path": "data.parquet", "size": size, "sha256": sha}], "metadata": {"source": "s3"},
            "metrics": {"rows": rows}, "inputs": [], "producer": {}, "description": "",
            "created_at": created_at, "created_by": created_by}


def _artifact_rec(type, created_at, created_by):
    return {"format": FORMAT_VERSION, "type": type, "description": "", "created_at": created_at,
            "created_by": created_by}


def _link_rec(artifact, digest, tags, linked_at, linked_by):
    return {"format": FORMAT_VERSION, "artifact": artifact, "digest": digest, "description": "",
            "tags": tags, "linked_at": linked_at, "linked_by": linked_by}


def _collection_rec(tags, next_version, created_at, created_by):
    return {"format": FORMAT_VERSION, "type": "model", "description": "", "tags": tags,
            "next_version": next_version, "created_at": created_at, "created_by": created_by}


def _aliases_rec(production):
    return {"format": FORMAT_VERSION, "aliases": {"production": production, "staging": "v99"}}


# ---- building the store --------------------------------------------------------------------------------
def checkpoint(disk) -> None:
    """Fold the record cache's write-ahead log into it, as canonry's own small writes (and the
    last process to close it) leave it; filled in one go, it would keep a ~50 MB WAL."""
    try:
        disk._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except Exception:
        pass

def build_store(path: str, n_coll: int, log=print) -> dict:
    """One bulk commit (one pack): n_coll collections of 100 links, their artifacts, datasets."""
    t0 = time.perf_counter()
    store = canonry.init(path, bare=True)
    store.create_registry("exp", description="experiments", visibility="organization", types=["model"])
    storage = store.storage
    actor = store.actor.actor
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 86400))
    who = dict(created_at=now, created_by=actor)
    t_av = core.Template(_av_rec, **who)
    t_data = core.Template(_data_rec, **who)
    t_link = {tg: core.Template(_link_rec, tags=list(tg), linked_at=now, linked_by=actor)
              for tg in ((), ("vision",))}
    blobs: dict[bytes, Blob] = {}
    cache_rows: list = []
    seen: set = set()
    expect = {"vision": 0, "production": 0, "acc_gt_0995": 0, "acc_gte_09999": 0, "base_llama": 0}

    def blob(data: bytes, kind: str, make, values) -> bytes:
        b = Blob.from_string(data)
        blobs.setdefault(b.id, b)
        if (b.id, kind) not in seen:
            seen.add((b.id, kind))
            cache_rows.append((b.id, kind, make(**values)))
        return b.id

    artifacts_tree: dict = {}
    art_yaml = {t: blob(yamlio.dump(_artifact_rec(type=t, **who)), "artifact", _artifact_rec, dict(type=t, **who))
                for t in ("model", "dataset")}
    for d in range(DATASETS):
        name = f"data-{d:03d}"
        tree = {"artifact.yaml": art_yaml["dataset"]}
        for k in range(VERSIONS_PER_ARTIFACT):
            sha = core._hex(f"{name}:v{k}")
            values = dict(digest="sha256:" + core._hex(sha), size=10_000 + k, sha=sha, rows=1000 * (k + 1))
            if d == 0 and k == 0:
                t_data.check(**values)
            tree[f"v{k}.yaml"] = blob(t_data.render(**values), "artifact_version", _data_rec, {**values, **who})
        artifacts_tree[name] = tree
    per_coll = LINKS_PER_COLLECTION // VERSIONS_PER_ARTIFACT
    digests: dict = {}
    for a in range(n_coll * per_coll):
        name = core.art_name(a)
        tree = {"artifact.yaml": art_yaml["model"]}
        for k in range(VERSIONS_PER_ARTIFACT):
            sha = core._hex(f"{name}:v{k}")
            run = f"{name}-run{k}"
            acc = accuracy_of(name, k)
            base = BASES[int(_u(f"base:{name}:{k}") * len(BASES))]
            values = dict(digest="sha256:" + core._hex(sha), size=1000 + k, sha=sha, run=run, acc=acc,
                          loss=round(1.0 - acc + 0.01 * _u(f"loss:{name}:{k}"), 4),
                          lr=LRS[(a + k) % len(LRS)], epochs=1 + (a + k) % 20, base=base,
                          data=f"data-{a % DATASETS:03d}:v{k}", commit=core._hex(run)[:40])
            if a % 997 == 0:
                t_av.check(**values)
            expect["acc_gt_0995"] += acc > 0.995
            expect["acc_gte_09999"] += acc >= 0.9999
            expect["base_llama"] += base == "llama-3-8b"
            digests[(name, k)] = values["digest"]
            tree[f"v{k}.yaml"] = blob(t_av.render(**values), "artifact_version", _av_rec, {**values, **who})
        artifacts_tree[name] = tree
    aliases_yaml = blob(yamlio.dump(_aliases_rec("v90")), "aliases", _aliases_rec, {"production": "v90"})
    coll_yaml = {}
    for tg in ((), ("team-a",)):
        values = dict(tags=list(tg), next_version=LINKS_PER_COLLECTION, **who)
        coll_yaml[tg] = blob(yamlio.dump(_collection_rec(**values)), "collection", _collection_rec, values)
    registries: dict = {"model": {}, "exp": {}}
    for c in range(n_coll):
        links = {}
        for n in range(LINKS_PER_COLLECTION):
            a, k = c * per_coll + n // VERSIONS_PER_ARTIFACT, n % VERSIONS_PER_ARTIFACT
            tg = ("vision",) if tagged(n) else ()
            values = dict(artifact=f"{core.art_name(a)}:v{k}", digest=digests[(core.art_name(a), k)])
            if (c * LINKS_PER_COLLECTION + n) % 997 == 0:
                t_link[tg].check(**values)
            links[f"v{n}.yaml"] = blob(t_link[tg].render(**values), "link", _link_rec,
                                       dict(values, tags=list(tg), linked_at=now, linked_by=actor))
            expect["vision"] += bool(tg)
        expect["production"] += 1
        registries[coll_registry(c, n_coll)][core.coll_name(c)] = {
            "collection.yaml": coll_yaml[("team-a",) if c % 10 == 0 else ()], "aliases.yaml": aliases_yaml,
            "links": links}
    base = storage.head()
    trees: list = []
    root = core._build_tree(storage, storage.root_tree(base),
                            {"registries": registries, "artifacts": artifacts_tree}, trees)
    commit = Commit()
    commit.tree = root
    commit.parents = [base]
    commit.author = commit.committer = store.actor.git
    commit.author_time = commit.commit_time = int(time.time()) - 86400
    commit.author_timezone = commit.commit_timezone = 0
    commit.encoding = b"UTF-8"
    commit.message = f"benchmark: synthetic store, {n_coll * LINKS_PER_COLLECTION} links\n".encode()
    objects = list(blobs.values()) + trees + [commit]
    storage.repo.object_store.add_objects([(o, None) for o in objects])
    if not storage.compare_and_swap(base, commit.id, "benchmark: bulk build"):
        raise RuntimeError("branch moved during the bulk build")
    storage.gc(full=False)
    disk = store.cache.disk
    for i, (sha, kind, rec) in enumerate(cache_rows):
        disk.put(sha, kind, rec)
        if i % 50_000 == 49_999:
            disk.flush()
    disk.flush()
    checkpoint(disk)
    info = {"links": n_coll * LINKS_PER_COLLECTION, "collections": n_coll,
            "artifacts": n_coll * per_coll + DATASETS,
            "artifact_versions": (n_coll * per_coll + DATASETS) * VERSIONS_PER_ARTIFACT,
            "objects": len(objects), "bulk_build_s": time.perf_counter() - t0, "expect": expect}
    core.close(store)
    log(f"  bulk build: {info['links']:,} links, {n_coll:,} collections, {info['artifacts']:,} artifacts, "
        f"{info['artifact_versions']:,} artifact versions in {info['bulk_build_s']:.1f}s")
    return info


def add_commits(path: str, n_coll: int, count: int, seed: int, log=print) -> dict:
    """`count` alias-move commits, written directly (trees, commit, trailers as canonry makes
    them), packed every 5,000. 95% in registry exp, 5% in model; 1 in 2,000 without trailers."""
    t0 = time.perf_counter()
    rng = random.Random(seed)
    store = canonry.open(path)
    storage = store.storage
    actor = store.actor
    head = storage.head()
    root_entries = dict(storage.tree(storage.commit(head).tree)._entries)
    regs_entries = dict(storage.tree(root_entries[b"registries"][1])._entries)
    reg_entries = {r: dict(storage.tree(regs_entries[r.encode()][1])._entries) for r in ("model", "exp")}
    alias_blob = {}
    for v in ("v90", "v95"):
        b = Blob.from_string(yamlio.dump(_aliases_rec(v)))
        alias_blob[v] = b
        store.cache.disk.put(b.id, "aliases", _aliases_rec(v))
    store.cache.disk.flush()
    checkpoint(store.cache.disk)
    coll_entries: dict = {}
    state: dict = {}
    pending: dict = {b.id: b for b in alias_blob.values()}
    exp = [c for c in range(n_coll) if coll_registry(c, n_coll) == "exp"]
    model = [c for c in range(n_coll) if coll_registry(c, n_coll) == "model"]
    parent = head
    start = int(time.time()) - count - 60
    touched = {"exp": {}, "model": {}}
    hand = 0
    hand_every = max(10, min(2000, count // 10))

    def tree_of(entries: dict) -> Tree:
        t = Tree()
        t._entries = dict(entries)
        t._needs_serialization = True
        pending[t.id] = t
        return t

    packs = 0
    for i in range(count):
        c = rng.choice(model) if i % 20 == 19 else rng.choice(exp)
        reg, name = coll_registry(c, n_coll), core.coll_name(c)
        key = name.encode()
        if c not in coll_entries:
            coll_entries[c] = dict(storage.tree(reg_entries[reg][key][1])._entries)
        before = state.get(c, "v90")
        after = "v95" if before == "v90" else "v90"
        state[c] = after
        coll_entries[c][b"aliases.yaml"] = (0o100644, alias_blob[after].id)
        ct = tree_of(coll_entries[c])
        reg_entries[reg][key] = (0o040000, ct.id)
        rt = tree_of(reg_entries[reg])
        regs_entries[reg.encode()] = (0o040000, rt.id)
        gt = tree_of(regs_entries)
        root_entries[b"registries"] = (0o040000, gt.id)
        top = tree_of(root_entries)
        where = f"{reg}/{name}"
        if i % hand_every == hand_every - 1:
            message = f"hand edit: production of {where} to {after}\n"
            hand += 1
        else:
            message = journal.message([{"op": "alias.set", "collection": where, "alias": "production",
                                        "before": before, "after": after,
                                        "summary": f"move alias production of {where} from {before} to {after}"}])
        commit = Commit()
        commit.tree = top.id
        commit.parents = [parent]
        commit.author = commit.committer = actor.git
        commit.author_time = commit.commit_time = start + i
        commit.author_timezone = commit.commit_timezone = 0
        commit.encoding = b"UTF-8"
        commit.message = message.encode()
        pending[commit.id] = commit
        parent = commit.id
        touched[reg][where] = touched[reg].get(where, 0) + 1
        if len(pending) > 30_000 or i == count - 1:
            storage.repo.object_store.add_objects([(o, None) for o in pending.values()])
            packs += 1
            pending = {}
    if not storage.compare_and_swap(head, parent, "benchmark: commits"):
        raise RuntimeError("branch moved while adding commits")
    busiest = max(touched["exp"], key=touched["exp"].get)
    quiet = sorted(touched["model"], key=touched["model"].get)[len(touched["model"]) // 2]
    core.close(store)
    info = {"commits_added": count, "hand_made": hand, "packs_written": packs, "s": time.perf_counter() - t0,
            "busiest": busiest, "busiest_changes": touched["exp"][busiest], "quiet": quiet,
            "quiet_changes": touched["model"][quiet]}
    log(f"  {count:,} commits added in {info['s']:.1f}s ({hand} by hand; {packs} packs); busiest collection "
        f"{busiest} ({info['busiest_changes']} changes), a model collection: {quiet} ({info['quiet_changes']})")
    return info


# ---- measurements --------------------------------------------------------------------------------------
def stats(lat: list[float]) -> dict:
    lat_ms = [x * 1e3 for x in lat]
    q = statistics.quantiles(lat_ms, n=20, method="inclusive") if len(lat_ms) > 1 else lat_ms * 19
    return {"n": len(lat_ms), "median_ms": statistics.median(lat_ms), "p95_ms": q[18], "min_ms": min(lat_ms),
            "max_ms": max(lat_ms)}


REBUILD_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[2])
import canonry
from canonry.query import index
t0 = time.perf_counter()
store = canonry.open(sys.argv[1])
idx = index.for_store(store)
t1 = time.perf_counter()
info = idx.rebuild()
t2 = time.perf_counter()
import os
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec, so a child of the process that
# built the store (~800 MiB) would report the builder's peak.
hwm = [int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:")]
print(json.dumps({"rebuild_s": t2 - t1, "total_s": t2 - t0, "update": info,
                  "maxrss_mib": hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "index_mib": os.path.getsize(idx.path) / 2**20}))
"""


def bench_rebuild(path: str) -> dict:
    src = os.path.dirname(os.path.dirname(os.path.abspath(canonry.__file__)))
    from canonry.query.index import index_path

    store = canonry.open(path)
    p = index_path(store)
    core.close(store)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(p + suffix):
            os.unlink(p + suffix)
    proc = subprocess.run([sys.executable, "-c", REBUILD_CHILD, path, src], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"rebuild failed: {proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


SEARCHES = [
    ("tag", "versions", {"tag": "vision"}, "vision"),
    ("alias", "versions", {"alias": "production"}, "production"),
    ("metric", "versions", {"metrics.accuracy": {"$gt": 0.995}}, "acc_gt_0995"),
    ("metric, narrow", "versions", {"metrics.accuracy": {"$gte": 0.9999}}, "acc_gte_09999"),
    ("tag and metric", "versions", {"$and": [{"tag": "vision"}, {"metrics.accuracy": {"$gt": 0.9}}]}, None),
    ("alias or tag, not exp", "versions",
     {"$or": [{"alias": "staging"}, {"tag": "vision"}], "registry": {"$ne": "exp"}}, None),
    ("metadata (20% of all)", "versions", {"metadata.base": "llama-3-8b"}, "base_llama"),
    ("collections by tag", "collections", {"tag": "team-a"}, None),
    ("collections by name regex", "collections", {"name": {"$regex": "^coll-001"}}, None),
]


def bench_searches(path: str, expect: dict, runs: int) -> dict:
    store = canonry.open(path)
    from canonry.query import search

    store.versions(filter={"tag": "vision"})  # warm: index current, connection open
    out = {}
    for label, kind, flt, key in SEARCHES:
        typed = (lambda f=flt: store.versions(filter=f)) if kind == "versions" else \
            (lambda f=flt: store.collections(filter=f))
        docs = lambda f=flt, k=kind: store.search(f, kind=k)  # noqa: E731
        n = len(typed())
        if key is not None and n != expect[key]:
            raise AssertionError(f"{label}: {n} results, expected {expect[key]}")
        lat_typed = [_timed(typed) for _ in range(runs)]
        lat_docs = [_timed(docs) for _ in range(runs)]
        plan = search.explain(store, kind, flt)
        out[label] = {"filter": flt, "kind": kind, "results": n, "typed": stats(lat_typed),
                      "docs": stats(lat_docs), "plan": plan}
    core.close(store)
    return out


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_memory(path: str) -> dict:
    """tracemalloc peak of one search, by result size (index warm)."""
    store = canonry.open(path)
    store.versions(filter={"tag": "vision"})
    out = {}
    for label, flt in (("~10 results", {"metrics.accuracy": {"$gte": 0.9999}}),
                       ("~1,000 results", {"tag": "vision"}),
                       ("~20,000 results", {"metadata.base": "llama-3-8b"}),
                       ("100,000 results (everything)", {})):
        tracemalloc.start()
        n = len(store.versions(filter=flt))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out[label] = {"results": n, "peak_kib": peak / 1024, "per_result_bytes": peak / max(n, 1)}
    core.close(store)
    return out


def bench_updates(path: str, rounds: int, workdir: str, n_coll: int) -> dict:
    """Bringing the index up to date after one new commit: alias move, link, log."""
    from canonry.query import index

    writer = canonry.open(path, load_plugins=False)
    reader = canonry.open(path)
    idx = index.for_store(reader)
    idx.update()
    lat = {"alias set": [], "link": [], "log": []}
    modes = set()
    rng = random.Random(7)
    files = os.path.join(workdir, "files")
    os.makedirs(files, exist_ok=True)
    colls = [c for c in range(0, n_coll, 7) if coll_registry(c, n_coll) == "model"]
    for i in range(rounds):
        c = core.coll_name(colls[i % len(colls)])
        state = writer.view().aliases("model", c).get("production", "v90")
        writer.set_alias(f"model/{c}:{'v95' if state == 'v90' else 'v90'}", "production")
        lat["alias set"].append(_timed(idx.update))
        modes.add(idx.last_update.get("mode"))
        f = os.path.join(files, f"f{i}.bin")
        with open(f, "wb") as fh:
            fh.write(os.urandom(64))
        v = writer.log_artifact(f, name=core.art_name(rng.randrange(9000)), type="model",
                                metrics={"accuracy": rng.random()}, producer={})
        lat["log"].append(_timed(idx.update))
        writer.link(v.address, f"model/{c}")
        lat["link"].append(_timed(idx.update))
        modes.add(idx.last_update.get("mode"))
    core.close(writer)
    core.close(reader)
    return {k: stats(v) for k, v in lat.items()} | {"modes": sorted(m for m in modes if m)}


def bench_processes(path: str, info: dict, runs: int) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    src = os.path.dirname(os.path.dirname(os.path.abspath(canonry.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    exe = core.canonry_script()
    quiet, busy = info["commits"]["quiet"], info["commits"]["busiest"]
    jobs = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        (f"canonry show {quiet}:production (floor: opening the store)",
         [exe, "-C", path, "show", f"{quiet}:production"]),
        ("canonry search --tag vision --json", [exe, "-C", path, "search", "--tag", "vision", "--json"]),
        ("canonry search --alias production", [exe, "-C", path, "search", "--alias", "production"]),
        ("canonry search --filter metrics.accuracy>0.995 --json",
         [exe, "-C", path, "search", "--filter", '{"metrics.accuracy": {"$gt": 0.995}}', "--json"]),
        (f"canonry history {quiet}", [exe, "-C", path, "history", quiet]),
        (f"canonry history {busy} --json ({info['commits']['busiest_changes']} entries)",
         [exe, "-C", path, "history", busy, "--json"]),
        ("canonry audit --since <1 h ago> --json",
         [exe, "-C", path, "audit", "--since", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600)),
          "--json"]),
    ]
    for _, cmd in jobs:
        warm = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if warm.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({warm.returncode}): {warm.stderr.strip()}")
    lat: dict = {name: [] for name, _ in jobs}
    for _ in range(runs):
        for name, cmd in jobs:
            t = time.perf_counter()
            r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            lat[name].append(time.perf_counter() - t)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode})")
    return {name: stats(v) | {"cmd": cmd} for (name, cmd), v in zip(jobs, lat.values())}


def bench_history_inprocess(path: str, info: dict, runs: int) -> dict:
    store = canonry.open(path)
    out = {}
    for _label, target in (("quiet", info["commits"]["quiet"]), ("busiest", info["commits"]["busiest"])):
        n = len(store.history(target))
        out[f"history {target}"] = stats([_timed(lambda t=target: store.history(t)) for _ in range(runs)]) | \
            {"entries": n}
    core.close(store)
    return out


# ---- report -------------------------------------------------------------------------------------------
def evaluate(res: dict) -> list[dict]:
    out = []
    worst = max(("tag", "alias", "metric"), key=lambda k: res["search"][k]["typed"]["median_ms"])
    w = res["search"][worst]
    out.append({"what": "search by tag, alias or metric across all versions, in-process, warm index",
                "measured": f"{w['typed']['median_ms']:.1f} ms median (slowest: {worst}, {w['results']:,} results)",
                "target": f"≤ {TARGETS['search_ms']:.0f} ms", "ok": w["typed"]["median_ms"] <= TARGETS["search_ms"]})
    procs = {k: v for k, v in res["processes"].items() if k.startswith("canonry search")}
    name, slow = max(procs.items(), key=lambda kv: kv[1]["median_ms"])
    out.append({"what": "canonry search as a fresh process", "measured": f"{slow['median_ms']:.0f} ms ({name})",
                "target": f"≤ {TARGETS['process_search_ms']:.0f} ms",
                "ok": slow["median_ms"] <= TARGETS["process_search_ms"]})
    name, h = next((k, v) for k, v in res["processes"].items() if k.startswith("canonry history"))
    out.append({"what": "canonry history of one collection, fresh process", "measured": f"{h['median_ms']:.0f} ms ({name})",
                "target": f"≤ {TARGETS['history_ms']:.0f} ms", "ok": h["median_ms"] <= TARGETS["history_ms"]})
    u = max(res["updates"][k]["median_ms"] for k in ("alias set", "link", "log"))
    out.append({"what": "index up to date after one new commit (alias set, link, log)",
                "measured": f"{u:.1f} ms median (worst kind)", "target": f"≤ {TARGETS['update_ms']:.0f} ms",
                "ok": u <= TARGETS["update_ms"]})
    r = res["rebuild"]["rebuild_s"]
    out.append({"what": "full index rebuild (fresh process)", "measured": f"{r:.1f} s",
                "target": f"≤ {TARGETS['rebuild_s']:.0f} s", "ok": r <= TARGETS["rebuild_s"]})
    mem = res["memory"]
    small, big = mem["~1,000 results"], mem["100,000 results (everything)"]
    out.append({"what": "memory bounded by the result size (tracemalloc peak of one search)",
                "measured": f"{small['peak_kib']:.0f} KiB for {small['results']:,} results, "
                            f"{big['peak_kib'] / 1024:.1f} MiB for {big['results']:,}",
                "target": "grows with results, not with the store",
                "ok": small["peak_kib"] < 0.05 * big["peak_kib"]})
    return out


def report(res: dict) -> str:
    mach, st = res["machine"], res["store"]
    lines = [f"canonry search benchmark — {mach['platform']}, {mach['cpus']} CPUs, Python {mach['python']}, "
             f"dulwich {mach['dulwich']}, canonry {mach['git']}",
             f"load average at start {tuple(round(x, 2) for x in mach['loadavg_at_start'] or ())}", "",
             f"Store: {st['links']:,} links in {st['collections']:,} collections, {st['artifacts']:,} artifacts "
             f"({st['artifact_versions']:,} versions), {res['total_commits']:,} commits "
             f"(built in {st['bulk_build_s'] + res['commits']['s']:.0f}s)", "",
             f"Index rebuild (fresh process): {res['rebuild']['rebuild_s']:.1f} s, peak RSS "
             f"{res['rebuild']['maxrss_mib']:.0f} MiB, index file {res['rebuild']['index_mib']:.0f} MiB, "
             f"{res['rebuild']['update']['files']:,} files, {res['rebuild']['update']['commits']:,} commits", "",
             f"In-process searches, warm index (median / p95 of {res['args']['search_runs']} runs, ms): typed = "
             "Store.versions/collections(filter=…), docs = Store.search (plain dicts)",
             f"  {'query':28} {'results':>8} {'typed':>8} {'p95':>7} {'docs':>8} {'p95':>7}"]
    for label, s in res["search"].items():
        lines.append(f"  {label:28} {s['results']:>8,} {s['typed']['median_ms']:>8.1f} {s['typed']['p95_ms']:>7.1f} "
                     f"{s['docs']['median_ms']:>8.1f} {s['docs']['p95_ms']:>7.1f}")
    lines += ["", "In-process history (median ms):"]
    for label, s in res["history_inprocess"].items():
        lines.append(f"  {label:40} {s['median_ms']:8.1f}  ({s['entries']:,} entries)")
    lines += ["", f"Index update after one new commit (median / p95 / max ms, {res['args']['update_rounds']} each; "
              f"modes {res['updates']['modes']}):"]
    for k in ("alias set", "link", "log"):
        u = res["updates"][k]
        lines.append(f"  {k:10} {u['median_ms']:7.2f} {u['p95_ms']:7.2f} {u['max_ms']:7.2f}")
    lines += ["", "Memory of one search (tracemalloc peak):"]
    for label, mm in res["memory"].items():
        lines.append(f"  {label:30} {mm['results']:>8,} results  {mm['peak_kib']:>9.0f} KiB  "
                     f"({mm['per_result_bytes']:.0f} B per result)")
    lines += ["", f"Fresh processes (median of {res['args']['runs']} runs, interleaved; PYTHONDONTWRITEBYTECODE unset):"]
    for name, p in res["processes"].items():
        lines.append(f"  {name:62} {p['median_ms']:7.1f} ms  (min {p['min_ms']:6.1f}, max {p['max_ms']:6.1f})")
    lines += ["", "Targets:"]
    for t in res["targets"]:
        lines.append(f"  [{'PASS' if t['ok'] else 'FAIL'}] {t['what']}: {t['measured']} (target {t['target']})")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collections", type=int, default=1000, help="collections of 100 links (1000)")
    ap.add_argument("--commits", type=int, default=20_000, help="commits in all (20000)")
    ap.add_argument("--runs", type=int, default=15, help="fresh-process runs per command (15)")
    ap.add_argument("--search-runs", type=int, default=20, help="in-process runs per search (20)")
    ap.add_argument("--update-rounds", type=int, default=20, help="commits per kind for the update timing (20)")
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--workdir", help="where to build the store (default: a temporary directory in --out)")
    ap.add_argument("--keep", action="store_true", help="keep the store afterwards")
    ap.add_argument("--reuse", action="store_true", help="with --workdir: reuse a store built before")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="smoke run: 50 collections, 1,000 commits")
    args = ap.parse_args(argv)
    if args.quick:
        args.collections, args.commits, args.runs, args.search_runs, args.update_rounds = 50, 1000, 5, 5, 5
    t_start = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    work = args.workdir or tempfile.mkdtemp(prefix="canonry-bench-search-", dir=args.out)
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, "store")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    res: dict = {"when": stamp, "machine": core.machine(), "args": vars(args)}
    try:
        meta = os.path.join(work, "store-info.json")
        if args.reuse and os.path.exists(meta):
            with open(meta) as f:
                saved = json.load(f)
            res["store"], res["commits"] = saved["store"], saved["commits"]
            print(f"[store] reusing {path}", flush=True)
        else:
            if os.path.exists(path):
                shutil.rmtree(path)
            print(f"[store] building {args.collections * LINKS_PER_COLLECTION:,} links ...", flush=True)
            res["store"] = build_store(path, args.collections)
            extra = max(0, args.commits - 3)  # init, create exp, bulk commit
            res["commits"] = add_commits(path, args.collections, extra, args.seed)
            with open(meta, "w") as f:
                json.dump({"store": res["store"], "commits": res["commits"]}, f)
        res["total_commits"] = int(subprocess.run(["git", "-C", path, "rev-list", "--count", "main"],
                                                  capture_output=True, text=True).stdout.strip() or 0)
        print(f"  {res['total_commits']:,} commits on main", flush=True)
        print("[rebuild] full index rebuild in a fresh process ...", flush=True)
        res["rebuild"] = bench_rebuild(path)
        print(f"  {res['rebuild']['rebuild_s']:.1f}s", flush=True)
        print("[search] in-process searches ...", flush=True)
        res["search"] = bench_searches(path, res["store"]["expect"], args.search_runs)
        res["memory"] = bench_memory(path)
        res["history_inprocess"] = bench_history_inprocess(path, res, args.search_runs)
        print("[processes] fresh processes ...", flush=True)
        res["processes"] = bench_processes(path, res, args.runs)
        print("[update] index updates after one commit ...", flush=True)
        res["updates"] = bench_updates(path, args.update_rounds, work, args.collections)
        res["targets"] = evaluate(res)
        res["total_s"] = time.perf_counter() - t_start
        text = report(res)
        print()
        print(text)
        print(f"\n(total {res['total_s']:.0f}s)")
        out = os.path.join(args.out, f"bench_search-{stamp}.json")
        for target in (out, os.path.join(args.out, "bench_search-latest.json")):
            with open(target, "w") as f:
                json.dump(res, f, indent=2, default=str)
        with open(os.path.join(args.out, "bench_search-latest.txt"), "w") as f:
            f.write(text + "\n")
        print(f"results: {out}")
    finally:
        if args.keep or args.workdir:
            print(f"store kept in {path}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
