"""Canonry side by side with its peers (issue 17): the same workload on MLflow's model registry
(SQLite backend, in-process), canonry's bare and work-tree layouts (in-process), and as fresh
processes for the CLIs (canonry, GTO, an MLflow one-liner); then the growth of canonry's
per-operation cost with the store's size, for both layouts, as a table and a plot.

    pip install -e '.[bench]'                      # mlflow, gto, matplotlib (a venv of your own)
    python benchmarks/compare.py                   # peers at 1,000 links; growth 100 .. 10,000 (+100,000 bare)
    python benchmarks/compare.py --quick           # smoke run
    python benchmarks/compare.py --worktree-100k   # also the 100,000-link work-tree point (slow today)

Workload (each op timed alone; systems interleaved op by op, so background load hits them
alike; medians): link a version (MLflow: create a model version), set/move an alias, resolve an
alias, search by a metric (10 results), list a collection, the history of an alias (MLflow keeps
none). Ratios are to canonry bare. Stores are bench_core's synthetic stores (bulk-built, one pack);
the work-tree store is a `git clone` of the bare one, as a user gets it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import bench_core  # noqa: E402

import canonry  # noqa: E402

OPS = ["link", "alias move", "resolve", "search metric", "list collection", "alias history"]
GROWTH_OPS = ["link", "alias move", "resolve"]


# ---- systems -------------------------------------------------------------------------------------
class Canonry:
    def __init__(self, path: str, links: int):
        self.store = canonry.open(path)
        self.colls = max(1, links // bench_core.LINKS_PER_COLLECTION)
        self.i = 0
        self.flip = {}

    def coll(self, i: int) -> str:
        return f"model/{bench_core.coll_name(i % min(self.colls, 10))}"

    def op(self, kind: str):
        self.i += 1
        i, c = self.i, self.coll(self.i)
        s = self.store
        if kind == "link":  # a spare version not linked here yet: 100 spare versions x 10 collections
            k = i // min(self.colls, 10)
            return lambda: s.link(f"{bench_core.spare_name(k // 10 % 10)}:v{k % 10}", c)
        if kind == "alias move":
            self.flip[c] = not self.flip.get(c, False)
            to = "v95" if self.flip[c] else "v90"
            return lambda: s.set_alias(f"{c}:{to}", "production")
        if kind == "resolve":
            return lambda: s.resolve(f"{c}:production")
        if kind == "search metric":
            return lambda: s.search({"metrics.accuracy": {"$gt": 0.9}}, limit=10)
        if kind == "list collection":
            return lambda: s.versions(c)
        if kind == "alias history":
            return lambda: s.history(f"{c}:production", limit=10)
        raise KeyError(kind)

    def close(self):
        self.store.close()


class MLflow:
    def __init__(self, workdir: str, links: int):
        import logging

        logging.getLogger("mlflow").setLevel(logging.ERROR)
        from mlflow import MlflowClient

        workdir = os.path.join(workdir, f"run-{os.getpid()}", "mlflow")
        os.makedirs(workdir, exist_ok=True)
        uri = f"sqlite:///{os.path.join(workdir, 'mlflow.db')}"
        self.client = c = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.uri = uri
        self.exp = c.create_experiment("bench", artifact_location=os.path.join(workdir, "mlruns"))
        for r in range(100):
            run = c.create_run(self.exp)
            c.log_metric(run.info.run_id, "accuracy", 0.85 + r / 1000)
            c.set_terminated(run.info.run_id)
        self.models = max(1, links // 100)
        per = links // self.models
        for m in range(self.models):
            c.create_registered_model(f"coll-{m:05d}")
            for v in range(per):
                c.create_model_version(f"coll-{m:05d}", source=f"file:///models/{m}/{v}")
            c.set_registered_model_alias(f"coll-{m:05d}", "production", "90" if per >= 90 else "1")
        self.i = 0
        self.flip = {}

    def op(self, kind: str):
        self.i += 1
        c, name = self.client, f"coll-{self.i % min(self.models, 10):05d}"
        if kind == "link":
            return lambda: c.create_model_version(name, source="file:///models/new")
        if kind == "alias move":
            self.flip[name] = not self.flip.get(name, False)
            to = "95" if self.flip[name] else "90"
            return lambda: c.set_registered_model_alias(name, "production", to)
        if kind == "resolve":
            return lambda: c.get_model_version_by_alias(name, "production")
        if kind == "search metric":
            return lambda: c.search_runs([self.exp], "metrics.accuracy > 0.9", max_results=10)
        if kind == "list collection":
            return lambda: c.search_model_versions(f"name='{name}'")
        return None  # alias history: MLflow keeps none

    def close(self):
        pass


def build(workdir: str, links: int, worktree: bool) -> str:
    """A store of `links` links not written to by an earlier run: a copy (bare) or a `git clone`
    (work tree) of a pristine bulk-built one, which is kept in `workdir` for the next run."""
    pristine = os.path.join(workdir, f"pristine-{links}.git")
    if not os.path.exists(pristine):
        bench_core.build_store(pristine + ".tmp", links, log=lambda *a: None)
        os.rename(pristine + ".tmp", pristine)
    run = os.path.join(workdir, f"run-{os.getpid()}")
    target = os.path.join(run, f"{'wt' if worktree else 'bare'}-{links}" + ("" if worktree else ".git"))
    if not os.path.exists(target):
        if worktree:
            subprocess.run(["git", "clone", "-q", pristine, target], check=True)
        else:
            shutil.copytree(pristine, target)
    return target


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def interleaved(systems: dict, ops: list[str], n: int, warmup: int = 3) -> dict:
    """{system: {op: median ms}}, each op run n times on each system in turn."""
    lat: dict = {s: {o: [] for o in ops} for s in systems}
    for r in range(warmup + n):
        for o in ops:
            for s, sys_ in systems.items():
                fn = sys_.op(o)
                if fn is None:
                    continue
                dt = timed(fn)
                if r >= warmup:
                    lat[s][o].append(dt)
    return {s: {o: (1e3 * statistics.median(v) if v else None) for o, v in d.items()} for s, d in lat.items()}


# ---- fresh processes -----------------------------------------------------------------------------
def env() -> dict:
    e = dict(os.environ)
    e.pop("PYTHONDONTWRITEBYTECODE", None)
    e["PYTHONPATH"] = os.path.join(ROOT, "src") + os.pathsep + e.get("PYTHONPATH", "")
    return e


def run_cmds(cmds: dict, runs: int, cwd: str) -> dict:
    lat: dict = {k: [] for k in cmds}
    for r in range(runs + 1):
        for k, cmd in cmds.items():
            t = time.perf_counter()
            p = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True)
            dt = time.perf_counter() - t
            if p.returncode != 0:
                raise SystemExit(f"{k} failed: {' '.join(cmd)}\n{p.stderr[-800:]}")
            if r:
                lat[k].append(dt)
    return {k: 1e3 * statistics.median(v) for k, v in lat.items()}


def processes(workdir: str, canonry_store: str, mlflow_uri: str, runs: int, tags: int) -> dict:
    py = sys.executable
    cli = [py, "-m", "canonry", "-C", canonry_store]
    coll = f"model/{bench_core.coll_name(0)}"
    gto_repo = os.path.join(workdir, f"run-{os.getpid()}", "gto-repo")
    gto = shutil.which("gto") or os.path.join(os.path.dirname(py), "gto")
    if not os.path.exists(gto_repo):
        os.makedirs(gto_repo)
        subprocess.run(["git", "init", "-q", gto_repo], check=True)
        for v in range(tags):  # as many registered versions as `tags`, each a commit and its git tag
            subprocess.run(["git", "-C", gto_repo, "commit", "-q", "--allow-empty", "-m", f"v{v}"], check=True)
            subprocess.run(["git", "-C", gto_repo, "tag", "-a", f"nn@v0.0.{v}", "-m",
                            f"Registering artifact nn version v0.0.{v}"], check=True)
        subprocess.run([gto, "assign", "nn", "nn@v0.0.0", "--stage", "prod"], cwd=gto_repo, check=True,
                       capture_output=True)
    ml = f"from mlflow import MlflowClient as C; c=C('{mlflow_uri}', registry_uri='{mlflow_uri}'); "
    flip = {"i": 0}

    def canonry_move():
        flip["i"] += 1
        return [*cli, "alias", "set", f"{coll}:v{95 if flip['i'] % 2 else 90}", "production"]

    reads = {
        "canonry resolve (show alias)": [*cli, "show", f"{coll}:production"],
        "gto resolve (show nn@prod)": [gto, "show", "nn#prod", "--ref"],
        "mlflow resolve (one-liner)": [py, "-c", ml + "c.get_model_version_by_alias('coll-00000','production')"],
        "python -c pass": [py, "-c", "pass"],
    }
    out = run_cmds(reads, runs, gto_repo)
    # writes: each run a distinct change
    lat: dict = {"canonry alias move": [], "gto assign": [], "mlflow alias move (one-liner)": []}
    for r in range(runs):
        for k in lat:
            if k.startswith("canonry"):
                cmd = canonry_move()
            elif k.startswith("gto"):
                cmd = [gto, "assign", "nn", f"nn@v0.0.{(r + 1) % tags}", "--stage", "prod", "--force"]
            else:
                cmd = [py, "-c", ml + f"c.set_registered_model_alias('coll-00000','production','{95 if r % 2 else 90}')"]
            t = time.perf_counter()
            p = subprocess.run(cmd, cwd=gto_repo, env=env(), capture_output=True, text=True)
            if p.returncode != 0:
                raise SystemExit(f"{k} failed: {' '.join(cmd)}\n{p.stderr[-800:]}")
            lat[k].append(time.perf_counter() - t)
    out.update({k: 1e3 * statistics.median(v) for k, v in lat.items()})
    return out


# ---- report ----------------------------------------------------------------------------------------
def fmt(x) -> str:
    return "—" if x is None else (f"{x:.2f}" if x < 10 else f"{x:.0f}")


def report(res: dict) -> str:
    lines = [f"## Side by side at {res['compare_links']:,} links (median ms per op; ratio to canonry bare)", "",
             "| op | canonry bare | canonry work tree | MLflow (SQLite) | work tree / bare | MLflow / bare |",
             "|---|---|---|---|---|---|"]
    p = res["peers"]
    for o in OPS:
        b, w, m = p["canonry bare"][o], p["canonry work tree"][o], p.get("mlflow", {}).get(o)
        lines.append(f"| {o} | {fmt(b)} | {fmt(w)} | {fmt(m)} | {fmt(w / b if b and w else None)}× | "
                     f"{fmt(m / b if b and m else None)}× |")
    if res.get("processes"):
        lines += ["", "## Fresh processes (median ms)", "", "| command | ms |", "|---|---|"]
        lines += [f"| {k} | {fmt(v)} |" for k, v in res["processes"].items()]
    lines += ["", "## Growth: canonry per-op cost (median ms) by links in the store", "",
              "| layout | op | " + " | ".join(f"{n:,}" for n in res["growth_sizes"]) + " | last / first |",
              "|---|---|" + "---|" * (len(res["growth_sizes"]) + 1)]
    for layout, by_size in res["growth"].items():
        for o in GROWTH_OPS:
            vals = [by_size.get(str(n), {}).get(o) for n in res["growth_sizes"]]
            known = [v for v in vals if v]
            lines.append(f"| {layout} | {o} | " + " | ".join(fmt(v) for v in vals)
                         + f" | {fmt(known[-1] / known[0] if len(known) > 1 else None)}× |")
    return "\n".join(lines) + "\n"


def plot(res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for layout, by_size in res["growth"].items():
        for o, style in zip(GROWTH_OPS, ("o-", "s--", "^:"), strict=True):
            xs = [n for n in res["growth_sizes"] if by_size.get(str(n), {}).get(o)]
            ax.plot(xs, [by_size[str(n)][o] for n in xs], style, label=f"{layout}: {o}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("links in the store")
    ax.set_ylabel("median ms per operation (in-process)")
    ax.set_title("canonry: per-operation cost by store size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare-links", type=int, default=1000, help="store size of the side-by-side run (1000)")
    ap.add_argument("--sizes", default="100,1000,10000,100000", help="growth sizes (links)")
    ap.add_argument("--worktree-100k", action="store_true",
                    help="also time the work-tree layout at 100,000 links (skipped by default: slow today)")
    ap.add_argument("--ops", type=int, default=15, help="timed ops per kind and system (15)")
    ap.add_argument("--runs", type=int, default=7, help="fresh-process runs per command (7)")
    ap.add_argument("--gto-tags", type=int, default=100, help="registered versions (tags) in the GTO repo (100)")
    ap.add_argument("--no-processes", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smoke run: sizes 100,1000; 5 ops, 3 runs")
    ap.add_argument("--workdir")
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--plot", default=os.path.join(ROOT, "docs", "img", "performance-growth.png"))
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.ops, args.runs = "100,1000", 5, 3
    sizes = [int(s) for s in args.sizes.split(",")]
    work = args.workdir or tempfile.mkdtemp(prefix="canonry-compare-")
    os.makedirs(work, exist_ok=True)
    res: dict = {"compare_links": args.compare_links, "growth_sizes": sizes, "ops": args.ops}

    def log(*a):
        print(*a, file=sys.stderr, flush=True)

    log(f"side by side at {args.compare_links} links")
    peers = {"canonry bare": Canonry(build(work, args.compare_links, False), args.compare_links),
             "canonry work tree": Canonry(build(work, args.compare_links, True), args.compare_links)}
    mlflow_uri = None
    try:
        peers["mlflow"] = MLflow(work, args.compare_links)
        mlflow_uri = peers["mlflow"].uri
    except ImportError:
        log("mlflow is not installed (pip install -e '.[bench]'): skipped")
    res["peers"] = interleaved(peers, OPS, args.ops)
    for s in peers.values():
        s.close()
    if not args.no_processes and mlflow_uri:
        log("fresh processes")
        res["processes"] = processes(work, build(work, args.compare_links, False), mlflow_uri, args.runs,
                                     args.gto_tags)
    res["growth"] = {"bare": {}, "work tree": {}}
    for n in sizes:
        systems = {"bare": Canonry(build(work, n, False), n)}
        if n < 100_000 or args.worktree_100k:
            systems["work tree"] = Canonry(build(work, n, True), n)
        log(f"growth at {n} links: {', '.join(systems)}")
        got = interleaved(systems, GROWTH_OPS, args.ops)
        for layout, d in got.items():
            res["growth"][layout][str(n)] = d
        for s in systems.values():
            s.close()
    text = report(res)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    with open(os.path.join(args.out, f"compare-{stamp}.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(args.out, "compare-latest.md"), "w") as f:
        f.write(text)
    try:
        os.makedirs(os.path.dirname(args.plot), exist_ok=True)
        plot(res, args.plot)
        log(f"plot: {args.plot}")
    except ImportError:
        log("matplotlib is not installed: no plot")
    shutil.rmtree(os.path.join(work, f"run-{os.getpid()}"), ignore_errors=True)  # pristine stores stay
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
