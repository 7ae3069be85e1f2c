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
    ap.add_argument("--repeat", type=int, default=1, help="run everything this many times")
    ap.add_argument("--keep", action="store_true", help="keep the stores (their folder is printed)")
    args = ap.parse_args(argv)
    os.environ.setdefault("CANONRY_ACTOR", "Stress Runner <stress@example.com>")
    root = Path(tempfile.mkdtemp(prefix="canonry-concurrency-"))
    layouts = ["bare", "worktree"] if args.layout == "both" else [args.layout]
    failed = 0
    for k in range(args.repeat):
        for layout in layouts:
            failed += _attempt(lambda layout=layout, k=k: _one_store(root / f"{layout}-{k}", layout, args))
        if args.rounds:
            failed += _attempt(lambda k=k: _clones(root / f"clones-{k}", args))
    if args.keep:
        print(f"stores kept in {root}")
    else:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    print(f"FAILED: {failed} of {args.repeat * (len(layouts) + bool(args.rounds))} runs" if failed
          else "ok: nothing lost")
    return 1 if failed else 0


def _attempt(run) -> int:
    """1 if the run's checks failed (what failed is printed), else 0."""
    try:
        run()
    except AssertionError as e:
        print("FAILED:", str(e).strip(), flush=True)
        return 1
    return 0


def _one_store(root: Path, layout: str, args: argparse.Namespace) -> None:
    t = time.monotonic()
    run = run_workers(prepare_store(root, args.processes, args.operations, bare=layout == "bare"),
                      timeout=max(600, args.processes * args.operations))
    f = check_store(run)
    print(f"{layout:9} {args.processes} processes × {args.operations} operations: "
          f"{f['acknowledged']} acknowledged, {f['landed']} landed in exactly one commit each "
          f"({f['acknowledged'] - f['landed']} changed nothing), {f['walked']} commits walked; "
          f"writes {f['seconds']:.1f} s, in all {time.monotonic() - t:.1f} s", flush=True)


def _clones(root: Path, args: argparse.Namespace) -> None:
    t = time.monotonic()
    crun = run_clones(root, args.rounds, timeout=max(600, 10 * args.rounds))
    f = check_clones(crun)
    print(f"clones    2 clones × {args.rounds} link-and-push rounds: {f['pushes acknowledged']} pushes "
          f"acknowledged and on the remote once each, {f['conflicts']} conflicts on `production` "
          f"reported (their links kept off the remote; a plain pull met the same conflict {f['stuck']} times, "
          f"`pull --discard-local` got the clone out each time, keeping the dropped commits), "
          f"{f['walked']} remote commits walked; pushes {f['seconds']:.1f} s, in all {time.monotonic() - t:.1f} s",
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
