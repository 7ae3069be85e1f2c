"""Size of a store's objects before and after `canonry gc` (issue 17: gc must keep deltas).

Two stores:

* **real**: LINKS links made one commit each through `Store.link` (collections of 100 links,
  every tenth link also moves `production`), with canonry's automatic packing as it happens;
* **synthetic**: bench_core's bulk-built store (one commit, one pack) of SYNTH links, then
  EXTRA alias moves through `Store.set_alias`, each a real commit, so that there are many packs
  and large trees stored as deltas.

For each: bytes of `objects/` (packs and loose objects) and pack count before and after
`Store.gc()`, the time gc took, and `git fsck --strict` after it.

    python benchmarks/bench_gc.py                  # 10,000 real links, 100,000 synthetic + 300 moves
    python benchmarks/bench_gc.py --links 1000 --synth 0   # quick
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def objects_size(git_dir: str) -> tuple[int, int]:
    """(bytes under objects/, pack count)."""
    total, count = 0, 0
    for root, _dirs, files in os.walk(os.path.join(git_dir, "objects")):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
            count += name.endswith(".pack")
    return total, count


def build_real(path: str, links: int) -> None:
    import canonry

    store = canonry.init(path, bare=True)
    src = os.path.join(os.path.dirname(path), "model.bin")
    versions = []
    for k in range(100):
        with open(src, "w") as f:
            f.write(f"weights {k}\n")
        versions.append(store.log_artifact(src, name=f"net{k % 10}", type="model",
                                           metrics={"acc": k / 100}).address)
    done = 0
    started = time.monotonic()
    while done < links:
        c, v = divmod(done, 100)
        store.link(versions[v], f"model/task{c:04d}")
        if v % 10 == 9:
            store.set_alias(f"model/task{c:04d}:v{v}", "production")
        done += 1
        if done % 1000 == 0:
            print(f"  {done} links, {time.monotonic() - started:.0f} s", file=sys.stderr)
    store.close()


def build_synthetic(path: str, links: int, moves: int) -> None:
    import bench_core

    import canonry

    info = bench_core.build_store(path, links, log=lambda *a: None)
    store = canonry.open(path)
    n = info["collections"]
    for i in range(moves):  # production starts at v90 in every collection
        to = "v95" if (i // n) % 2 == 0 else "v90"
        store.set_alias(f"model/{bench_core.coll_name(i % n)}:{to}", "production")
    store.close()


def measure(path: str) -> dict:
    import canonry

    before = objects_size(path)
    store = canonry.open(path)
    started = time.monotonic()
    result = store.gc()
    took = time.monotonic() - started
    store.close()
    after = objects_size(path)
    fsck = subprocess.run(["git", "-C", path, "fsck", "--strict", "--no-progress"],
                          capture_output=True, text=True)
    return {"bytes_before": before[0], "packs_before": before[1], "bytes_after": after[0],
            "packs_after": after[1], "ratio": round(after[0] / before[0], 3), "gc_s": round(took, 2),
            "fsck_ok": fsck.returncode == 0, "gc": result}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--links", type=int, default=10_000, help="links made one commit each (10000)")
    ap.add_argument("--synth", type=int, default=100_000, help="links of the synthetic store (0: skip)")
    ap.add_argument("--moves", type=int, default=300, help="alias moves on the synthetic store (300)")
    ap.add_argument("--workdir", help="where the stores are built (and, with --keep, kept)")
    ap.add_argument("--reuse", action="store_true", help="copy stores already built in --workdir")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    work = args.workdir or tempfile.mkdtemp(prefix="bench-gc-")
    os.makedirs(work, exist_ok=True)
    results = {}
    for name, n, build in (("real", args.links, lambda p: build_real(p, args.links)),
                           ("synthetic", args.synth, lambda p: build_synthetic(p, args.synth, args.moves))):
        if not n:
            continue
        built = os.path.join(work, f"{name}-{n}.git")
        if not (args.reuse and os.path.isdir(built)):
            shutil.rmtree(built, ignore_errors=True)
            print(f"building {name} store of {n} links", file=sys.stderr)
            build(built)
        trial = os.path.join(work, f"{name}-{n}-gc.git")
        shutil.rmtree(trial, ignore_errors=True)
        shutil.copytree(built, trial)
        results[name] = {"links": n, **measure(trial)}
        shutil.rmtree(trial)
        print(json.dumps({name: results[name]}), flush=True)
    if not (args.keep or args.workdir):
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
