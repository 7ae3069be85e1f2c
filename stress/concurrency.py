"""Full-size concurrency run (issue 15, "The suite"): N processes × M mixed link/alias/unlink/tag
operations on one store, for a bare store and a work-tree store, then two clones pushing R rounds
each to one remote; every run is checked like tests/test_reliability_concurrency.py checks its
CI-sized runs, and the figures are printed.

    python3 stress/concurrency.py                 # 8 processes × 100 operations, 2 clones × 100 pushes
    python3 stress/concurrency.py -n 4 -m 20 --rounds 10 --layout bare
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _reliability_helpers import check_clones, check_store, prepare_store, run_clones, run_workers

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--processes", type=int, default=8)
    ap.add_argument("-m", "--operations", type=int, default=100, help="operations per process")
    ap.add_argument("--rounds", type=int, default=100, help="link-and-push rounds per clone")
    ap.add_argument("--layout", choices=["bare", "worktree", "both"], default="both")
    ap.add_argument("--keep", action="store_true", help="keep the stores (their folder is printed)")
    args = ap.parse_args(argv)
    os.environ.setdefault("CANONRY_ACTOR", "Stress Runner <stress@example.com>")
    root = Path(tempfile.mkdtemp(prefix="canonry-concurrency-"))
    layouts = ["bare", "worktree"] if args.layout == "both" else [args.layout]
    for layout in layouts:
        t = time.monotonic()
        run = run_workers(prepare_store(root / layout, args.processes, args.operations, bare=layout == "bare"),
                          timeout=max(600, args.processes * args.operations))
        f = check_store(run)
        print(f"{layout:9} {args.processes} processes × {args.operations} operations: "
              f"{f['acknowledged']} acknowledged, {f['landed']} landed in exactly one commit each "
              f"({f['acknowledged'] - f['landed']} changed nothing), {f['walked']} commits walked; "
              f"writes {f['seconds']:.1f} s, in all {time.monotonic() - t:.1f} s", flush=True)
    if args.rounds:
        t = time.monotonic()
        crun = run_clones(root / "clones", args.rounds, timeout=max(600, 10 * args.rounds))
        f = check_clones(crun)
        print(f"clones    2 clones × {args.rounds} link-and-push rounds: {f['pushes acknowledged']} pushes "
              f"acknowledged and on the remote once each, {f['conflicts']} conflicts on `production` "
              f"reported (their links kept off the remote; `pull` failed right after {f['stuck']} of them), {f['walked']} remote commits walked; "
              f"pushes {f['seconds']:.1f} s, in all {time.monotonic() - t:.1f} s", flush=True)
    if args.keep:
        print(f"stores kept in {root}")
    else:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    print("ok: nothing lost")
    return 0


if __name__ == "__main__":
    sys.exit(main())
