#!/usr/bin/env python3
"""Web catalog benchmark (a script, not a test): server-side render times of its pages.

    python benchmarks/bench_web.py                # 100,000-link store, 1,000-version collection
    python benchmarks/bench_web.py --links 2000   # smoke run
    python benchmarks/bench_web.py --runs 30 --out benchmarks/out

Targets (issue 19): the registries page of a 100,000-link store in <= 200 ms; a collection page
with 1,000 versions in <= 300 ms. Measured two ways, medians of --runs after one warm-up (which
also brings the derived index up to date): `Catalog.render` (the page itself: Store reads,
index queries, templates) and a GET through the ASGI app (Starlette's TestClient: routing,
the worker thread, headers; needs httpx). Stores: the 100,000-link one from bench_core's bulk
builder (collections of 100 links); the 1,000-version collection logged and linked through the
API in one transaction, each version with two metrics, so the chart has 1,000 points.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))
sys.path.insert(0, HERE)
os.environ.setdefault("CANONRY_ACTOR", "Bench Runner <bench@example.com>")

import bench_core  # noqa: E402

import canonry  # noqa: E402
from canonry.web.audience import Audience  # noqa: E402
from canonry.web.pages import Catalog  # noqa: E402

TARGETS_MS = {"registries": 200.0, "collection_1000": 300.0}


def build_big_collection(path: str, files: str, versions: int) -> None:
    """One collection of `versions` links, each its own artifact version with metrics, in one commit."""
    store = canonry.init(path, bare=True)
    os.makedirs(files, exist_ok=True)
    with store.transaction(message=f"benchmark: {versions} versions") as tx:
        for k in range(versions):
            f = os.path.join(files, f"w{k}.txt")
            with open(f, "w") as out:
                out.write(f"weights {k}\n")
            tx.log_artifact(f, name="big-model", type="model", metadata={"step": k},
                            metrics={"accuracy": 0.5 + 0.4 * k / versions, "loss": 1.0 - 0.5 * k / versions})
            tx.link(f"big-model:v{k}", "model/big")
    store.set_alias(f"model/big:v{versions - 1}", "production")
    store.close()


def median_ms(fn, runs: int) -> tuple[float, float]:
    fn()  # warm-up: index current, templates compiled
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), max(times)


def measure(store, path: str, runs: int) -> dict:
    catalog = Catalog(store)
    page = catalog.render(path, {}, Audience())
    assert page.status == 200, (path, page.status, page.body[-500:])
    out = {"bytes": len(page.body)}
    out["render_ms"], out["render_max_ms"] = median_ms(lambda: catalog.render(path, {}, Audience()), runs)
    try:
        from starlette.testclient import TestClient

        from canonry.web.app import make_app
    except ImportError:
        return out
    with TestClient(make_app(store)) as client:
        out["http_ms"], out["http_max_ms"] = median_ms(lambda: client.get(path), runs)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--links", type=int, default=100_000)
    ap.add_argument("--versions", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        big_store = os.path.join(tmp, "links")
        bench_core.build_store(big_store, args.links)
        t0 = time.perf_counter()
        coll_store = os.path.join(tmp, "collection")
        build_big_collection(coll_store, os.path.join(tmp, "files"), args.versions)
        print(f"  built a {args.versions}-version collection in {time.perf_counter() - t0:.1f}s")
        res: dict = {"links": args.links, "versions": args.versions, "runs": args.runs}
        with canonry.open(big_store) as store:
            t0 = time.perf_counter()
            Catalog(store).render("/", {}, Audience())
            res["index_build_s"] = time.perf_counter() - t0
            res["registries"] = measure(store, "/", args.runs)
            res["registry_1000_collections"] = measure(store, "/model", args.runs)
            res["collection_100"] = measure(store, "/model/" + bench_core.coll_name(0), args.runs)
            res["version_in_100k"] = measure(store, f"/model/{bench_core.coll_name(0)}/v5", args.runs)
        with canonry.open(coll_store) as store:
            res["collection_1000"] = measure(store, "/model/big", args.runs)
            res["version_of_1000"] = measure(store, "/model/big/production", args.runs)
    print(f"\nweb catalog, medians of {args.runs} (max in parentheses), server side:")
    print(f"  {'page':<28} {'render ms':>16} {'HTTP ms':>16} {'KB':>7}  target")
    for key in ("registries", "registry_1000_collections", "collection_100", "version_in_100k",
                "collection_1000", "version_of_1000"):
        r = res[key]
        http_ms = f"{r['http_ms']:.1f} ({r['http_max_ms']:.0f})" if "http_ms" in r else "-"
        target = f"<= {TARGETS_MS[key]:.0f} ms" if key in TARGETS_MS else ""
        print(f"  {key:<28} {r['render_ms']:>9.1f} ({r['render_max_ms']:>4.0f}) {http_ms:>16} "
              f"{r['bytes'] / 1024:>7.0f}  {target}")
    print(f"  (first render of the 100k store, index built from nothing: {res['index_build_s']:.1f} s)")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_web.json"), "w") as f:
        json.dump(res, f, indent=2)
    ok = all(res[k].get("http_ms", res[k]["render_ms"]) <= v for k, v in TARGETS_MS.items())
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
