#!/usr/bin/env python3
"""Core benchmark for canonry (a script, not a test).

    python benchmarks/bench_core.py                 # default: 100 vs 100,000 links (~90 seconds)
    python benchmarks/bench_core.py --core-fsync none   # the same without fsyncs: what durability costs
    python benchmarks/bench_core.py --quick         # smoke run: 100 vs 2,000 links (< 1 minute)
    python benchmarks/bench_core.py --links 100000 --ops 300 --out benchmarks/out [--profile]

What it does (details in benchmarks/README.md):

1. Builds two synthetic stores in bulk, each in ONE commit written as a single pack, in a bare
   repository made by canonry.init: the layout and record shapes canonry writes (YAML bytes from
   canonry.yamlio.dump). Same shape at every scale: collections of 100 links, every link its own
   artifact version, 10 versions per artifact, aliases production/staging in every collection,
   plus 10 spare artifacts that the link benchmark links from. Every record also goes into
   canonry's on-disk record cache, as canonry's own writes would have put it there (records by
   blob id, and each collection's artifact -> link map by links tree id, as a link leaves it).
2. In-process: link, link --alias, unlink and alias-set operations, each a real commit through
   compare-and-swap. Every timed link is followed by a (timed) unlink of it, so the target
   collection always holds 100 links at both scales. Regimes: "several" (ops cycle over --spread
   warmed-up collections; the small store has one) and, at the large scale, "spread" (its own
   Store object on its own copy of the large store, so every regime has a single writer, as
   the small store has; ops on random other collections: mostly first touch). All kinds and regimes
   run interleaved in chunks of 10 ops so background load hits them alike.
3. Fresh-process wall time (median of --runs interleaved runs) of `canonry -C STORE show
   model/COLL:production`, `canonry --help` and `python -c pass`, with PYTHONDONTWRITEBYTECODE
   removed from the environment (after one warm-up run that writes the .pyc files).
4. Prints a table and writes JSON to --out (default benchmarks/out/, gitignored).
"""
from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import hashlib
import io
import itertools
import json
import os
import platform
import pstats
import random
import re
import shutil
import stat
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))  # run from a checkout without install

os.environ.setdefault("CANONRY_ACTOR", "Bench Runner <bench@example.com>")

from dulwich.objects import Blob, Commit, Tree  # noqa: E402

import canonry  # noqa: E402
from canonry import model as m  # noqa: E402
from canonry import yamlio  # noqa: E402
from canonry.schemas import FORMAT_VERSION  # noqa: E402

LINKS_PER_COLLECTION = 100
VERSIONS_PER_ARTIFACT = 10
SPARE_ARTIFACTS = 10  # x VERSIONS_PER_ARTIFACT artifact versions the link benchmark links from
REGISTRY = "model"
ALIAS = "production"  # on v90 / v95 of every collection; the alias benchmark moves it between them
TARGETS = {"ops_per_s_at_large": 150.0, "cost_ratio": 1.5, "show_ms": 150.0, "help_ms": 120.0}


# ---- synthetic store --------------------------------------------------------------------------------
def coll_name(c: int) -> str:
    return f"coll-{c:05d}"


def art_name(a: int) -> str:
    return f"art-{a:06d}"


def spare_name(s: int) -> str:
    return f"spare-{s:02d}"


def _artifact_rec(created_at, created_by):
    return {"format": FORMAT_VERSION, "type": "model", "description": "", "created_at": created_at,
            "created_by": created_by}


def _av_rec(digest, size, sha, run, created_at, created_by):
    return {"format": FORMAT_VERSION, "type": "model", "digest": digest, "size": size,
            "files": [{"path": "model.safetensors", "size": size, "sha256": sha}],
            "metadata": {"base": "gemma-2b", "run": run}, "metrics": {"accuracy": 0.91, "loss": 0.23},
            "inputs": [], "producer": {"git_commit": None, "command": "canonry log model.safetensors",
                                       "host": "bench-host", "actor": created_by, "cwd": "/work"},
            "description": "", "created_at": created_at, "created_by": created_by}


def _link_rec(artifact, digest, linked_at, linked_by):
    return {"format": FORMAT_VERSION, "artifact": artifact, "digest": digest, "description": "",
            "tags": [], "linked_at": linked_at, "linked_by": linked_by}


def _collection_rec(next_version, created_at, created_by):
    return {"format": FORMAT_VERSION, "type": "model", "description": "", "tags": [],
            "next_version": next_version, "created_at": created_at, "created_by": created_by}


def _aliases_rec():
    return {"format": FORMAT_VERSION, "aliases": {ALIAS: "v90", "staging": "v99"}}


class Template:
    """yamlio.dump of a record shape, rendered by substitution (yamlio.dump costs ~100 µs a call).

    Values that vary are plain YAML scalars (names, hex digests, integers), so substituting them
    gives exactly yamlio.dump's bytes (times, which YAML quotes, are fixed per template);
    `check` verifies that on samples."""

    def __init__(self, make, **fixed):
        self.make, self.fixed = make, fixed
        code = make.__code__
        self.fields = [f for f in code.co_varnames[:code.co_argcount] if f not in fixed]
        sentinels = {f: f"QQ{i}{f.upper()}QQ" for i, f in enumerate(self.fields)}
        text = yamlio.dump(make(**sentinels, **fixed)).decode("utf-8")
        by_sentinel = {v: k for k, v in sentinels.items()}
        rx = re.compile("|".join(re.escape(s) for s in sentinels.values()))
        self.parts = rx.split(text)
        self.order = [by_sentinel[s] for s in rx.findall(text)]

    def render(self, **values) -> bytes:
        out = [self.parts[0]]
        for name, part in zip(self.order, self.parts[1:]):
            out.append(str(values[name]))
            out.append(part)
        return "".join(out).encode("utf-8")

    def check(self, **values) -> None:
        a, b = self.render(**values), yamlio.dump(self.make(**values, **self.fixed))
        if a != b:
            raise AssertionError(f"template render differs from yamlio.dump:\n{a!r}\n{b!r}")


def close(store) -> None:
    """Close the repository's pack files (else dulwich complains at interpreter exit)."""
    try:
        store.storage.repo.close()
    except Exception:
        pass


def _hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _build_tree(storage, base_tree: bytes | None, entries: dict, out: list) -> bytes:
    """Tree id for base_tree with entries (nested dict: name -> blob id | dict) merged in.
    New Tree objects are appended to `out` (bottom-up); nothing is written here."""
    tree = Tree()
    if base_tree is not None:
        for e in storage.tree(base_tree).iteritems():
            tree.add(e.path, e.mode, e.sha)
    for name, value in entries.items():
        key = name.encode()
        if isinstance(value, dict):
            old = tree[key][1] if key in tree and stat.S_ISDIR(tree[key][0]) else None
            tree.add(key, stat.S_IFDIR, _build_tree(storage, old, value, out))
        else:
            tree.add(key, 0o100644, value)
    out.append(tree)
    return tree.id


def build_store(path: str, links: int, log=print) -> dict:
    """A bare store with `links` links (collections of 100), written as one commit and one pack."""
    t0 = time.perf_counter()
    n_coll = max(1, links // LINKS_PER_COLLECTION)
    per_coll_artifacts = LINKS_PER_COLLECTION // VERSIONS_PER_ARTIFACT
    store = canonry.init(path, bare=True)
    storage = store.storage
    actor = store.actor.actor
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    who = dict(created_at=now, created_by=actor)
    t_av, t_link = Template(_av_rec, **who), Template(_link_rec, linked_at=now, linked_by=actor)
    blobs: dict[bytes, Blob] = {}
    cache_rows: list[tuple[bytes, str, dict]] = []  # what canonry's record cache would hold
    seen_cache: set[tuple[bytes, str]] = set()

    def blob(data: bytes, kind: str, make, values) -> bytes:
        b = Blob.from_string(data)
        if b.id not in blobs:
            blobs[b.id] = b
        if (b.id, kind) not in seen_cache:
            seen_cache.add((b.id, kind))
            cache_rows.append((b.id, kind, make(**values)))
        return b.id

    artifacts_tree: dict = {}
    artifact_yaml = blob(yamlio.dump(_artifact_rec(**who)), "artifact", _artifact_rec, who)
    digests: dict[tuple[str, int], str] = {}

    def add_artifact(name: str, sample: bool) -> None:
        d = {"artifact.yaml": artifact_yaml}
        for k in range(VERSIONS_PER_ARTIFACT):
            sha = _hex(f"{name}:v{k}")
            values = dict(digest="sha256:" + _hex(sha), size=1000 + k, sha=sha, run=f"{name}-run{k}")
            if sample:
                t_av.check(**values)
            digests[(name, k)] = values["digest"]
            d[f"v{k}.yaml"] = blob(t_av.render(**values), "artifact_version", _av_rec, {**values, **who})
        artifacts_tree[name] = d

    n_art = n_coll * per_coll_artifacts
    for a in range(n_art):
        add_artifact(art_name(a), sample=a % 997 == 0)
    for s in range(SPARE_ARTIFACTS):
        add_artifact(spare_name(s), sample=s == 0)

    coll_values = dict(next_version=LINKS_PER_COLLECTION, created_at=now, created_by=actor)
    coll_yaml = blob(yamlio.dump(_collection_rec(**coll_values)), "collection", _collection_rec, coll_values)
    aliases_yaml = blob(yamlio.dump(_aliases_rec()), "aliases", _aliases_rec, {})
    registry_tree: dict = {}
    for c in range(n_coll):
        links_tree = {}
        for n in range(LINKS_PER_COLLECTION):
            a, k = c * per_coll_artifacts + n // VERSIONS_PER_ARTIFACT, n % VERSIONS_PER_ARTIFACT
            values = dict(artifact=f"{art_name(a)}:v{k}", digest=digests[(art_name(a), k)])
            if (c * LINKS_PER_COLLECTION + n) % 997 == 0:
                t_link.check(**values)
            links_tree[f"v{n}.yaml"] = blob(t_link.render(**values), "link", _link_rec,
                                            dict(values, linked_at=now, linked_by=actor))
        registry_tree[coll_name(c)] = {"collection.yaml": coll_yaml, "aliases.yaml": aliases_yaml,
                                       "links": links_tree}
        # The artifact -> link map a link op leaves under the new links tree (ops.link).
        links_tree_obj = Tree()
        for name, sha in links_tree.items():
            links_tree_obj.add(name.encode(), 0o100644, sha)
        cache_rows.append((links_tree_obj.id, "links-index", {
            f"{art_name(c * per_coll_artifacts + n // VERSIONS_PER_ARTIFACT)}:v{n % VERSIONS_PER_ARTIFACT}": f"v{n}"
            for n in range(LINKS_PER_COLLECTION)}))
    t_render = time.perf_counter() - t0

    # Trees bottom-up, merged into the tree canonry.init committed; then one commit, one pack.
    base = storage.head()
    trees: list[Tree] = []
    root = _build_tree(storage, storage.root_tree(base), {
        "registries": {REGISTRY: registry_tree}, "artifacts": artifacts_tree}, trees)
    commit = Commit()
    commit.tree = root
    commit.parents = [base]
    commit.author = commit.committer = store.actor.git
    commit.author_time = commit.commit_time = int(time.time())
    commit.author_timezone = commit.commit_timezone = 0
    commit.encoding = b"UTF-8"
    commit.message = (f"benchmark: synthetic store, {n_coll * LINKS_PER_COLLECTION} links in {n_coll} "
                      f"collections, {n_art + SPARE_ARTIFACTS} artifacts\n").encode()
    objects = list(blobs.values()) + trees + [commit]
    t1 = time.perf_counter()
    storage.repo.object_store.add_objects([(o, None) for o in objects])
    if not storage.compare_and_swap(base, commit.id, "benchmark: bulk build"):
        raise RuntimeError("branch moved during the bulk build")
    t_pack = time.perf_counter() - t1

    # Pack what canonry.init left loose. No consolidation into one pack: store.gc() would rewrite
    # all ~200k objects (~45 s here) and a store in use has several packs anyway.
    t2 = time.perf_counter()
    gc = storage.gc(full=False)
    t_gc = time.perf_counter() - t2

    # Fill canonry's on-disk record cache, as canonry's own writes would have (View.write -> put).
    t3 = time.perf_counter()
    disk = store.cache.disk
    for i, (sha, kind, rec) in enumerate(cache_rows):
        disk.put(sha, kind, rec)
        if i % 50_000 == 49_999:
            disk.flush()
    disk.flush()
    t_cache = time.perf_counter() - t3

    info = {"links": n_coll * LINKS_PER_COLLECTION, "collections": n_coll,
            "artifacts": n_art + SPARE_ARTIFACTS,
            "artifact_versions": (n_art + SPARE_ARTIFACTS) * VERSIONS_PER_ARTIFACT,
            "files": n_coll * (LINKS_PER_COLLECTION + 2) + (n_art + SPARE_ARTIFACTS) * (VERSIONS_PER_ARTIFACT + 1) + 3,
            "objects": len(objects), "render_s": t_render, "pack_s": t_pack, "gc_s": t_gc,
            "record_cache_s": t_cache, "build_s": time.perf_counter() - t0, "gc": gc,
            "packs": len(storage.repo.object_store.packs)}
    close(store)
    log(f"  built {path}: {info['links']:,} links, {n_coll:,} collections, {info['artifacts']:,} artifacts,"
        f" {info['files']:,} files in {info['build_s']:.1f}s (render {t_render:.1f}s, pack {t_pack:.1f}s,"
        f" gc {t_gc:.1f}s, record cache {t_cache:.1f}s)")
    return info


def validate_sample(path: str, collections: list[int]) -> int:
    """Read files through a View with no record cache: YAML parse + JSON Schema validation."""
    from canonry.view import ParseCache, View

    store = canonry.open(path)
    view = View(store.storage, store.storage.head(), ParseCache(disk=None))
    paths = [m.STORE_FILE, m.registry_file(REGISTRY)]
    for c in collections:
        name = coll_name(c)
        paths += [m.collection_file(REGISTRY, name), m.aliases_file(REGISTRY, name)]
        for v in view.link_versions(REGISTRY, name):
            paths.append(m.link_file(REGISTRY, name, v))
            art, ver = view.read(paths[-1])["artifact"].split(":")
            paths += [m.artifact_file(art), m.artifact_version_file(art, ver)]
    for s in range(SPARE_ARTIFACTS):
        paths.append(m.artifact_file(spare_name(s)))
        paths += [m.artifact_version_file(spare_name(s), v) for v in view.artifact_versions(spare_name(s))]
    for p in dict.fromkeys(paths):
        if view.read(p) is None:
            raise AssertionError(f"missing {p}")
    close(store)
    return len(set(paths))


# ---- in-process operations ---------------------------------------------------------------------------
OP_KINDS = ("link", "link --alias", "unlink", "alias set")
CHUNK = 10  # ops of one kind run on one store before switching to the next (interleaving)


def _q(lat: list[float], pct: int) -> float:
    return statistics.quantiles(lat, n=100, method="inclusive")[pct - 1] if len(lat) > 1 else lat[0]


def summarize(lat: list[float], packed: list[bool]) -> dict:
    steady = [x for x, p in zip(lat, packed) if not p] or lat
    return {"n": len(lat), "ops_per_s": len(lat) / sum(lat), "mean_ms": 1e3 * statistics.fmean(lat),
            "p50_ms": 1e3 * statistics.median(lat), "p95_ms": 1e3 * _q(lat, 95),
            "p99_ms": 1e3 * _q(lat, 99), "max_ms": 1e3 * max(lat),
            "pack_events": sum(packed), "mean_ms_without_pack_events": 1e3 * statistics.fmean(steady)}


class OpBench:
    """Runs link/unlink/alias operations against one Store object, recording per-op latency and
    whether the op included an automatic pack of loose objects (Storage.maybe_pack)."""

    def __init__(self, path: str, collections: list[int]):
        self.store = canonry.open(path)
        self.collections = collections  # the timed sequence of target collections
        self.spare = [f"{spare_name(s)}:v{k}" for s in range(SPARE_ARTIFACTS)
                      for k in range(VERSIONS_PER_ARTIFACT)]
        self.spare_i = 0
        self.alias_at: dict[int, str] = {}  # where ALIAS is now, per collection
        self.lat = {k: [] for k in OP_KINDS}
        self.packed = {k: [] for k in OP_KINDS}
        self.pack_s: list[float] = []
        storage = self.store.storage
        original = getattr(storage, "maybe_pack", None)
        if original is not None:  # instrumentation only: count and time automatic packing
            def counted(*a, **kw):
                t = time.perf_counter()
                did = original(*a, **kw)
                if did:
                    self.pack_s.append(time.perf_counter() - t)
                return did
            storage.maybe_pack = counted

    def _timed(self, kind: str | None, fn):
        packs = len(self.pack_s)
        t = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - t
        if kind:
            self.lat[kind].append(elapsed)
            self.packed[kind].append(len(self.pack_s) > packs)
        return result

    def link_cycle(self, c: int, alias: bool, timed: bool = True) -> None:
        coll = f"{REGISTRY}/{coll_name(c)}"
        ref = self.spare[self.spare_i % len(self.spare)]
        self.spare_i += 1
        kind = ("link --alias" if alias else "link") if timed else None
        lv = self._timed(kind, lambda: self.store.link(ref, coll, aliases=["candidate"] if alias else ()))
        assert lv.created, f"{ref} was already linked in {coll}"
        # Unlinking it again keeps the collection at 100 links: same size at both scales.
        self._timed("unlink" if timed else None, lambda: self.store.unlink(f"{coll}:{lv.version}"))

    def alias_move(self, c: int, timed: bool = True) -> None:
        coll = f"{REGISTRY}/{coll_name(c)}"
        if c not in self.alias_at:  # where the alias is now (untimed read)
            self.alias_at[c] = self.store.view().aliases(REGISTRY, coll_name(c)).get(ALIAS, "v90")
        to = "v95" if self.alias_at[c] == "v90" else "v90"
        change = self._timed("alias set" if timed else None, lambda: self.store.set_alias(f"{coll}:{to}", ALIAS))
        assert change.changed and change.after == to, change
        self.alias_at[c] = to

    def run(self, kind: str, start: int, stop: int) -> None:
        for c in self.collections[start:stop]:
            if kind == "alias set":
                self.alias_move(c)
            else:
                self.link_cycle(c, alias=kind == "link --alias")

    def warm_up(self, collections: list[int], rounds: int) -> None:
        for _ in range(rounds):
            for c in collections:
                self.link_cycle(c, True, timed=False)
                self.alias_move(c, timed=False)

    def results(self) -> dict:
        return {"collections": len(set(self.collections)),
                "ops": {k: summarize(self.lat[k], self.packed[k]) for k in OP_KINDS},
                "pack_events": len(self.pack_s), "pack_s": [round(x, 3) for x in self.pack_s]}


def bench_ops(small: dict, large: dict, ops: int, spread: int, warmup: int, seed: int) -> dict:
    """All kinds and regimes, interleaved in chunks of CHUNK ops so background load hits them alike."""
    rng = random.Random(seed)
    benches: dict[str, OpBench] = {}
    several_small = list(range(min(spread, small["collections"])))
    benches["small/several"] = OpBench(small["path"], [several_small[i % len(several_small)] for i in range(ops)])
    several = sorted(rng.sample(range(large["collections"]), min(spread, large["collections"])))
    benches["large/several"] = OpBench(large["path"], [several[i % len(several)] for i in range(ops)])
    others = sorted(set(range(large["collections"])) - set(several))
    if others:
        # Its own Store object (own in-memory caches); random collections among all the others
        # (never one of `several`, so the two regimes never touch the same collection): mostly first touch.
        benches["large/spread"] = OpBench(large.get("spread_path", large["path"]),
                                          [rng.choice(others) for _ in range(ops)])
    benches["small/several"].warm_up(several_small, rounds=max(1, warmup // len(several_small)))
    benches["large/several"].warm_up(several, rounds=max(1, warmup // len(several)))
    if "large/spread" in benches:
        benches["large/spread"].warm_up([rng.choice(others)], rounds=2)
    # Kinds interleave too: run one after the other, a kind would be judged by the machine's
    # load during its third of the run (a busy stretch made whichever kind ran then "slowest").
    for start in range(0, ops, CHUNK):
        for kind in ("link", "link --alias", "alias set"):
            for b in benches.values():
                b.run(kind, start, start + CHUNK)
    out = {k: b.results() for k, b in benches.items()}
    for b in benches.values():
        close(b.store)
    return out


def make_layout(bare: str, layout: str, dest: str) -> dict:
    """A store with a work tree holding the bulk-built store at `bare`: `init` (canonry.init DIR,
    then the built branch checked out by git) or `clone` (`git clone`). The record cache is
    copied along (a clone has none, canonry's own writes would have filled it)."""
    t0 = time.perf_counter()
    shutil.rmtree(dest, ignore_errors=True)
    if layout == "clone":
        subprocess.run(["git", "clone", "-q", bare, dest], check=True)
    else:
        close(canonry.init(dest))
        subprocess.run(["git", "-C", dest, "fetch", "-q", bare, "main"], check=True)
        subprocess.run(["git", "-C", dest, "reset", "-q", "--hard", "FETCH_HEAD"], check=True)
    cache = os.path.join(bare, "canonry")
    if os.path.isdir(cache):
        for name in os.listdir(cache):
            if name.startswith("records-"):
                os.makedirs(os.path.join(dest, ".git", "canonry"), exist_ok=True)
                shutil.copy(os.path.join(cache, name), os.path.join(dest, ".git", "canonry", name))
    return {"path": dest, "layout": layout, "make_s": time.perf_counter() - t0}


def git_status_clean(path: str) -> bool:
    out = subprocess.run(["git", "-C", path, "status", "--porcelain"], check=True,
                         capture_output=True, text=True).stdout
    return out == ""


def bench_layouts(stores: dict, work: str, layouts: list[str], ops: int, spread: int,
                  warmup: int, seed: int) -> dict:
    """The same interleaved link/alias ops as bench_ops, "several" regime, on stores with a
    work tree (made from the small and the large bulk-built store), then `git status` checked."""
    rng = random.Random(seed)
    benches: dict[str, OpBench] = {}
    made: dict[str, dict] = {}
    for layout in layouts:
        for label, st in stores.items():
            key = f"{layout}/{label}"
            print(f"  making the {key} store ...", flush=True)
            made[key] = make_layout(st["path"], layout, os.path.join(work, f"{layout}-{st['links']}"))
            several = sorted(rng.sample(range(st["collections"]), min(spread, st["collections"])))
            benches[key] = OpBench(made[key]["path"], [several[i % len(several)] for i in range(ops)])
            # The first write turns git's index into a split index (one pass over it): untimed.
            benches[key].warm_up(several, rounds=max(1, warmup // len(several)))
    os.sync()
    time.sleep(2)
    for start in range(0, ops, CHUNK):
        for kind in ("link", "link --alias", "alias set"):
            for b in benches.values():
                b.run(kind, start, start + CHUNK)
    out = {}
    for key, b in benches.items():
        out[key] = {**b.results(), "make_s": made[key]["make_s"]}
        close(b.store)
        out[key]["git_status_clean"] = git_status_clean(made[key]["path"])
    return out


def bench_transactions(base: str, work: str, sizes: list[int], runs: int) -> dict:
    """N links in ONE store.transaction() (N // 100 new collections of 100 links, linking the
    small store's spare artifact versions), on a fresh copy of the small bare store each time:
    the time of the operations and of the commit, median of `runs` (1 run above 10,000 links)."""
    spare = [f"{spare_name(s)}:v{k}" for s in range(SPARE_ARTIFACTS) for k in range(VERSIONS_PER_ARTIFACT)]
    out: dict = {}
    for n in sizes:
        ops_s, commit_s = [], []
        for _ in range(runs if n <= 10_000 else 1):
            path = os.path.join(work, f"tx-{n}")
            shutil.rmtree(path, ignore_errors=True)
            shutil.copytree(base, path, symlinks=True)
            store = canonry.open(path)
            t0 = time.perf_counter()
            with store.transaction() as tx:
                for i in range(n):
                    tx.link(spare[i % len(spare)], f"{REGISTRY}/tx-{i // len(spare):05d}")
                t1 = time.perf_counter()
            t2 = time.perf_counter()
            ops_s.append(t1 - t0)
            commit_s.append(t2 - t1)
            assert len(store.view().link_versions(REGISTRY, "tx-00000")) == min(n, len(spare))
            close(store)
            shutil.rmtree(path, ignore_errors=True)
            print(f"  {n:,} links in one transaction: ops {t1 - t0:.2f}s, commit {t2 - t1:.2f}s", flush=True)
        out[str(n)] = {"ops_s": statistics.median(ops_s), "commit_s": statistics.median(commit_s),
                       "total_s": statistics.median(a + b for a, b in zip(ops_s, commit_s)),
                       "runs": len(ops_s)}
    keys = list(out)
    for a, b in itertools.pairwise(keys):
        out[f"ratio {b}/{a}"] = out[b]["total_s"] / out[a]["total_s"]
    return out


def report_extra(res: dict) -> str:
    lines = []
    if "layouts" in res:
        lines.append("work-tree layouts (several regime), ms per op: median p50 / mean; ops/s")
        for key, r in res["layouts"].items():
            row = "  ".join(f"{k} {v['p50_ms']:.2f}/{v['mean_ms']:.2f}" for k, v in r["ops"].items())
            total_n = sum(v["n"] for v in r["ops"].values())
            total_s = sum(v["mean_ms"] * v["n"] / 1000 for v in r["ops"].values())
            lines.append(f"  {key:<14} {row}  ops/s {total_n / total_s:.0f}"
                         f"  git status clean: {r['git_status_clean']}")
        layouts = sorted({k.split("/")[0] for k in res["layouts"]})
        for layout in layouts:
            small, large = res["layouts"].get(f"{layout}/small"), res["layouts"].get(f"{layout}/large")
            if small and large:
                for kind in large["ops"]:
                    lines.append(f"  {layout} cost ratio large/small, {kind}: p50 "
                                 f"{large['ops'][kind]['p50_ms'] / small['ops'][kind]['p50_ms']:.2f}, mean "
                                 f"{large['ops'][kind]['mean_ms'] / small['ops'][kind]['mean_ms']:.2f}")
    if "transactions" in res:
        lines.append("links in one transaction: seconds (ops + commit)")
        for key, r in res["transactions"].items():
            if key.startswith("ratio"):
                lines.append(f"  {key}: {r:.1f}")
            else:
                lines.append(f"  {int(key):>7,}  {r['total_s']:.2f}s  (ops {r['ops_s']:.2f}, commit {r['commit_s']:.2f})")
    return "\n".join(lines)


def profile_ops(path: str, collections: list[int], out: str, n: int = 100) -> None:
    bench = OpBench(path, [collections[i % len(collections)] for i in range(n)])
    bench.warm_up(collections, rounds=1)
    prof = cProfile.Profile()
    prof.enable()
    for kind in ("link", "link --alias", "alias set"):
        bench.run(kind, 0, n)
    prof.disable()
    close(bench.store)
    s = io.StringIO()
    st = pstats.Stats(prof, stream=s)
    st.sort_stats("cumulative").print_stats(45)
    st.sort_stats("tottime").print_stats(25)
    with open(out, "w") as f:
        f.write(f"{n} ops each of link (+unlink), link --alias (+unlink), alias set on {path}\n")
        f.write(f"automatic pack events during profiling: {len(bench.pack_s)}\n")
        f.write(s.getvalue())


# ---- fresh processes -----------------------------------------------------------------------------------
def canonry_script() -> str:
    """The console script itself (not a pyenv/asdf shim in front of it)."""
    cand = os.path.join(sysconfig.get_path("scripts"), "canonry")
    if os.path.exists(cand):
        return cand
    found = shutil.which("canonry")
    if not found:
        raise SystemExit("the canonry command is not installed: pip install -e .")
    return found


def bench_processes(small: dict, large: dict, runs: int) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # The subprocesses run the same canonry code this process imported (and measured).
    src = os.path.dirname(os.path.dirname(os.path.abspath(canonry.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    exe = canonry_script()
    t_large = f"{REGISTRY}/{coll_name(large['collections'] // 2)}:{ALIAS}"
    t_small = f"{REGISTRY}/{coll_name(0)}:{ALIAS}"
    jobs = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        # What every canonry command pays for its two big dependencies before any code of its own.
        ("python -c 'import click, dulwich.repo, sqlite3'",
         [sys.executable, "-c", "import click, dulwich.repo, sqlite3"]),
        ("canonry --help", [exe, "--help"]),
        (f"canonry show {t_large}  [{large['links']:,} links]", [exe, "-C", large["path"], "show", t_large]),
        (f"canonry show {t_large} --json  [{large['links']:,} links]",
         [exe, "-C", large["path"], "show", t_large, "--json"]),
        (f"canonry show {t_small}  [{small['links']:,} links]", [exe, "-C", small["path"], "show", t_small]),
    ]
    shim = shutil.which("canonry")
    if shim and os.path.realpath(shim) != os.path.realpath(exe):
        jobs.append((f"canonry --help via PATH ({shim})", [shim, "--help"]))
    # Interleave the runs of all commands (round-robin) so background load hits them alike.
    for _, cmd in jobs:
        warm = subprocess.run(cmd, env=env, capture_output=True, text=True)  # also writes .pyc files
        if warm.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({warm.returncode}): {warm.stderr.strip()}")
    lat: dict[str, list[float]] = {name: [] for name, _ in jobs}
    for _ in range(runs):
        for name, cmd in jobs:
            t = time.perf_counter()
            r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            lat[name].append(time.perf_counter() - t)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode})")
    base = statistics.median(lat["python -c pass"])
    return {name: {"cmd": cmd, "runs": runs, "median_ms": 1e3 * statistics.median(lat[name]),
                   "min_ms": 1e3 * min(lat[name]), "max_ms": 1e3 * max(lat[name]),
                   "over_python_ms": 1e3 * (statistics.median(lat[name]) - base)}
            for name, cmd in jobs}


# ---- report -------------------------------------------------------------------------------------------
def machine() -> dict:
    import dulwich
    import yaml

    v = dulwich.__version__
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "dulwich": ".".join(map(str, v)) if isinstance(v, tuple) else str(v), "pyyaml": yaml.__version__,
            "libyaml": bool(getattr(yaml, "__with_libyaml__", False)), "canonry": canonry.__version__,
            "canonry_src": os.path.dirname(os.path.abspath(canonry.__file__)), "loadavg_at_start": load,
            "git": _source_revision()}


def _source_revision() -> str | None:
    """Commit of the measured canonry source, '+dirty' when src/ has uncommitted changes."""
    src = os.path.dirname(os.path.abspath(canonry.__file__))
    try:
        head = subprocess.run(["git", "-C", src, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", src, "status", "--porcelain", "."], capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+dirty" if dirty else "")) or None


def report(res: dict) -> str:
    small, large = res["stores"]["small"], res["stores"]["large"]
    ops = res["ops"]
    mach = res["machine"]
    lines = [f"canonry core benchmark — {mach['platform']}, {mach['cpus']} CPUs, Python {mach['python']}, "
             f"dulwich {mach['dulwich']}, canonry {mach['git']},",
             f"load average at start {tuple(round(x, 2) for x in mach['loadavg_at_start'] or ())}",
             "durability: " + (f"core.fsync={res['args']['core_fsync']}" if res["args"].get("core_fsync")
                               is not None else "git's default (each commit's pack fsynced before the "
                               "branch moves; the ref itself not)"),
             "", "Stores (bare; built in one commit written as one pack; record cache filled):"]
    for label, st in (("small", small), ("large", large)):
        lines.append(f"  {label:5}  {st['links']:>9,} links  {st['collections']:>6,} collections  "
                     f"{st['artifacts']:>7,} artifacts  {st['artifact_versions']:>8,} artifact versions  "
                     f"{st['files']:>9,} files  built in {st['build_s']:.1f}s")
    lines += ["", "In-process operations, each one commit via compare-and-swap (latency in ms; 'packs' = ops",
              "that included an automatic pack of loose objects; 'steady' = mean without those):",
              f"  {'operation':13} {'links':>9} {'regime':8} {'colls':>5} {'n':>4} {'ops/s':>6} {'mean':>7} "
              f"{'p50':>7} {'p95':>7} {'p99':>7} {'max':>8} {'packs':>5} {'steady':>7}"]
    for op in OP_KINDS:
        for key, r in ops.items():
            scale, regime = key.split("/")
            s = r["ops"][op]
            lines.append(f"  {op:13} {res['stores'][scale]['links']:>9,} {regime:8} {r['collections']:>5} "
                         f"{s['n']:>4} {s['ops_per_s']:>6.0f} {s['mean_ms']:>7.2f} {s['p50_ms']:>7.2f} "
                         f"{s['p95_ms']:>7.2f} {s['p99_ms']:>7.2f} {s['max_ms']:>8.1f} {s['pack_events']:>5} "
                         f"{s['mean_ms_without_pack_events']:>7.2f}")
    lines += ["", f"Per-op cost ratio {large['links']:,} / {small['links']:,} links (target ≤ {TARGETS['cost_ratio']}):",
              f"  {'operation':13} {'regime':8} {'mean':>6} {'p50':>6} {'steady':>7}"]
    for op, by_regime in res["ratios"].items():
        for regime, r in by_regime.items():
            lines.append(f"  {op:13} {regime:8} {r['mean']:>6.2f} {r['p50']:>6.2f} {r['steady']:>7.2f}")
    lines += ["", f"Fresh processes (median of {res['runs']} runs, interleaved; PYTHONDONTWRITEBYTECODE unset "
              "after a warm-up run wrote the .pyc files):"]
    for name, p in res["processes"].items():
        lines.append(f"  {name:62} {p['median_ms']:6.1f} ms  (min {p['min_ms']:6.1f}, max {p['max_ms']:6.1f}; "
                     f"{p['over_python_ms']:+6.1f} over python -c pass)")
    lines += ["", "Targets:"]
    for t in res["targets"]:
        lines.append(f"  [{'PASS' if t['ok'] else 'FAIL'}] {t['what']}: {t['measured']} (target {t['target']})")
    return "\n".join(lines)


def ratios(res: dict) -> dict:
    ops = res["ops"]
    base = ops["small/several"]["ops"]
    out: dict = {}
    for op in OP_KINDS:
        b = base[op]
        out[op] = {}
        for key in ("large/several", "large/spread"):
            if key in ops:
                s = ops[key]["ops"][op]
                out[op][key.split("/")[1]] = {
                    "mean": s["mean_ms"] / b["mean_ms"], "p50": s["p50_ms"] / b["p50_ms"],
                    "steady": s["mean_ms_without_pack_events"] / b["mean_ms_without_pack_events"]}
    return out


def evaluate(res: dict) -> list[dict]:
    out = []
    links = res["stores"]["large"]["links"]
    for key in ("large/several", "large/spread"):
        if key not in res["ops"]:
            continue
        regime = key.split("/")[1]
        r = res["ops"][key]["ops"]
        kinds = ("link", "link --alias", "alias set")
        slowest = min(kinds, key=lambda op: r[op]["ops_per_s"])
        # For the record: the three kinds as one workload (total ops / total time). The target
        # is checked on the slowest kind alone.
        together = sum(r[op]["n"] for op in kinds) / sum(r[op]["n"] / r[op]["ops_per_s"] for op in kinds)
        out.append({"what": f"link/alias ops/s at {links:,} links ({regime})",
                    "measured": f"{r[slowest]['ops_per_s']:.0f} ops/s (slowest: {slowest}; "
                                f"the three kinds together: {together:.0f})",
                    "target": f"≥ {TARGETS['ops_per_s_at_large']:.0f}",
                    "ok": r[slowest]["ops_per_s"] >= TARGETS["ops_per_s_at_large"]})
        worst = max(("link", "link --alias", "alias set"), key=lambda op: res["ratios"][op][regime]["mean"])
        w = res["ratios"][worst][regime]["mean"]
        out.append({"what": f"per-op cost ratio {links:,}/{res['stores']['small']['links']:,} links ({regime})",
                    "measured": f"{w:.2f} (worst: {worst}, mean latency)",
                    "target": f"≤ {TARGETS['cost_ratio']}", "ok": w <= TARGETS["cost_ratio"]})
    procs = res["processes"]
    show = next(v for k, v in procs.items() if k.startswith("canonry show") and "--json" not in k)
    out.append({"what": f"canonry show REGISTRY/COLLECTION:ALIAS at {links:,} links, fresh process",
                "measured": f"{show['median_ms']:.0f} ms", "target": f"≤ {TARGETS['show_ms']:.0f} ms",
                "ok": show["median_ms"] <= TARGETS["show_ms"]})
    h = procs["canonry --help"]
    out.append({"what": "canonry --help, fresh process", "measured": f"{h['median_ms']:.0f} ms",
                "target": f"≤ {TARGETS['help_ms']:.0f} ms", "ok": h["median_ms"] <= TARGETS["help_ms"]})
    return out


NOTES = [
    "stores are bare repositories: no work tree or index to update after a commit",
    "every timed link is followed by a timed unlink of it, so collections stay at 100 links",
    "ops/s = ops / sum of their latencies; cost ratio = large / small of mean latency (also p50, steady)",
    "'several' = ops cycle over --spread collections that were warmed up (the small store has one "
    "collection); 'spread' = its own Store object on its own copy of the large store, ops on random "
    "collections among all (mostly first touch: records come from the on-disk record cache, not memory)",
    "every regime has a single writer, as at 100 links: two Store objects taking turns on one store "
    "would each read the other's new trees at every turn (0.3-1.2 ms more per op, measured)",
    "kinds and regimes run interleaved in chunks of 10 ops so background load affects them alike",
    "the record cache holds every record, as canonry's own writes would have left it",
    "fresh-process timings: PYTHONDONTWRITEBYTECODE removed from the environment, one warm-up run "
    "per command first; 'python -c pass' is this machine's interpreter start-up baseline",
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--links", type=int, default=100_000, help="links in the large store (default 100000)")
    ap.add_argument("--small-links", type=int, default=100, help="links in the small store (default 100)")
    ap.add_argument("--ops", type=int, default=300, help="timed ops per operation kind and regime (300)")
    ap.add_argument("--spread", type=int, default=10, help="collections in the 'several' regime (10)")
    ap.add_argument("--warmup", type=int, default=20, help="untimed link+alias rounds before timing (20)")
    ap.add_argument("--runs", type=int, default=15, help="fresh-process runs per command (15)")
    ap.add_argument("--out", default=os.path.join(HERE, "out"), help="where results JSON goes")
    ap.add_argument("--workdir", help="where to build the stores (default: a temporary directory "
                    "next to --out: on this machine /tmp creates files ~8x slower than the work disk)")
    ap.add_argument("--keep", action="store_true", help="keep the stores afterwards")
    ap.add_argument("--profile", action="store_true",
                    help="also cProfile 100 ops per kind on each store (written next to the JSON)")
    ap.add_argument("--core-fsync", metavar="VALUE",
                    help="set git's core.fsync on both stores (default: unset, git's default: packs "
                         "fsynced before the branch moves; 'none': nothing fsynced, to see what "
                         "durability costs on this disk)")
    ap.add_argument("--shared-store", action="store_true",
                    help="both regimes write to the one large store, taking turns (two writers: "
                         "how the benchmark ran before 2026-11-24)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2,000 links, 50 ops, 5 runs")
    ap.add_argument("--layouts", default="init,clone",
                    help="work-tree layouts to time too, comma-separated: init, clone ('' for none)")
    ap.add_argument("--transactions", default="1000,10000,100000",
                    help="links in one transaction to time, comma-separated ('' for none)")
    ap.add_argument("--skip-core", action="store_true",
                    help="skip the bare-store ops and fresh processes (layouts, transactions only)")
    args = ap.parse_args(argv)
    if args.quick:
        args.links, args.ops, args.runs, args.warmup = min(args.links, 2000), 50, 5, 10

    t_start = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    work = args.workdir or tempfile.mkdtemp(prefix="canonry-bench-", dir=args.out)
    os.makedirs(work, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    res: dict = {"when": stamp, "machine": machine(), "args": vars(args), "runs": args.runs,
                 "notes": NOTES, "stores": {}}
    try:
        for label, links in (("small", args.small_links), ("large", args.links)):
            path = os.path.join(work, f"store-{links}")
            if os.path.exists(path):
                shutil.rmtree(path)
            print(f"[{label}] building a store with {links:,} links ...", flush=True)
            info = build_store(path, links)
            info["path"] = path
            if args.core_fsync is not None:
                subprocess.run(["git", "-C", path, "config", "core.fsync", args.core_fsync], check=True)
            checked = validate_sample(path, sorted({0, info["collections"] // 2, info["collections"] - 1}))
            print(f"  validated {checked} files against schemas/ (YAML parse + JSON Schema, no cache)", flush=True)
            res["stores"][label] = info
        small, large = res["stores"]["small"], res["stores"]["large"]
        if not args.shared_store and not args.skip_core:  # the spread regime writes to a copy: one writer per store, as in the small store
            large["spread_path"] = large["path"] + "-spread"
            shutil.rmtree(large["spread_path"], ignore_errors=True)
            shutil.copytree(large["path"], large["spread_path"], symlinks=True)
        # The build wrote a few hundred MB: let the disk finish writing them back first, so
        # the timed commits do not compete with the build's own writeback.
        os.sync()
        time.sleep(2)
        layouts = [x for x in args.layouts.split(",") if x]
        if layouts:
            print(f"[layouts] timing {args.ops} ops per kind on work-tree stores: {', '.join(layouts)} ...", flush=True)
            res["layouts"] = bench_layouts({"small": small, "large": large}, work, layouts,
                                           args.ops, args.spread, args.warmup, args.seed)
        sizes = [int(x) for x in args.transactions.split(",") if x]
        if sizes:
            print(f"[transactions] links in one transaction: {', '.join(map(str, sizes))} ...", flush=True)
            res["transactions"] = bench_transactions(small["path"], work, sizes, runs=3)
        if args.skip_core:
            text = report_extra(res)
            print()
            print(text)
            out = os.path.join(args.out, f"bench_core-extra-{stamp}.json")
            with open(out, "w") as f:
                json.dump(res, f, indent=2, default=str)
            print(f"results: {out}")
            return 0
        print(f"[ops] timing {args.ops} ops per kind and regime, interleaved ...", flush=True)
        res["ops"] = bench_ops(small, large, args.ops, args.spread, args.warmup, args.seed)
        res["ratios"] = ratios(res)
        if args.profile:
            for label, st in (("small", small), ("large", large)):
                prof = os.path.join(args.out, f"profile-{label}-{stamp}.txt")
                profile_ops(st["path"], list(range(min(args.spread, st["collections"]))), prof)
                print(f"  profile of the {label} store written to {prof}", flush=True)
        print(f"[processes] timing fresh processes ({args.runs} runs each) ...", flush=True)
        res["processes"] = bench_processes(small, large, args.runs)
        res["targets"] = evaluate(res)
        res["total_s"] = time.perf_counter() - t_start
        text = report(res)
        if "layouts" in res or "transactions" in res:
            text += "\n" + report_extra(res)
        print()
        print(text)
        print(f"\n(total {res['total_s']:.0f}s)")
        out = os.path.join(args.out, f"bench_core-{stamp}.json")
        for target in (out, os.path.join(args.out, "bench_core-latest.json")):
            with open(target, "w") as f:
                json.dump(res, f, indent=2, default=str)
        with open(os.path.join(args.out, "bench_core-latest.txt"), "w") as f:
            f.write(text + "\n")
        print(f"results: {out}")
    finally:
        if args.keep:
            print(f"stores kept in {work}")
        elif not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
