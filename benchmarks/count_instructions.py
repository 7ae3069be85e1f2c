"""Instructions per operation at 100,000 links, counted by callgrind: a figure that does not
move with the machine's load, for before/after comparisons of CPU work (fsync waits and
other blocking are not in it: bench_core.py measures time).

    python benchmarks/count_instructions.py                 # builds a store (~45 s), then ~5 min
    python benchmarks/count_instructions.py --store PATH    # a store from bench_core.py --keep

Runs the same loop of operations (link --alias, unlink, alias set, over 10 collections) under
`valgrind --tool=callgrind` twice, with 20 + N and with 20 rounds, on fresh copies of the store,
and prints the difference in instructions divided by the 3 N operations. Needs valgrind (Debian:
`apt install valgrind`). To compare two versions, run each checkout's copy of this script.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
WARM_UP = 20  # rounds run, and not counted, before the N rounds

LOOP = r"""
import os, sys
sys.path.insert(0, sys.argv[3])
os.environ.setdefault("CANONRY_ACTOR", "Bench Runner <bench@example.com>")
import canonry
from canonry.recordcache import RecordCache
# Under valgrind an operation takes ~50 times as long: flush the record cache by its entry
# count only, as happens in real time (there 256 entries come before a second has passed).
RecordCache.FLUSH_S = float("inf")
store = canonry.open(sys.argv[1])
rounds = int(sys.argv[2])
collections = [f"model/coll-{c:05d}" for c in range(0, 1000, 100)]
# WARM_UP rounds come first in both runs, so that what happens once (imports, compiling the
# schemas' validators, first reads) is not counted.
for i in range(WARM_UP + rounds):
    c = collections[i % 10]
    lv = store.link(f"spare-{i % 10:02d}:v{(i // 10) % 10}", c, aliases=["candidate"])
    store.unlink(f"{c}:{lv.version}")
    # each visit to a collection moves the alias (v90 <-> v95): every operation commits
    store.set_alias(f"{c}:{'v95' if (i // 10) % 2 else 'v90'}", "production")
store.close()
"""


def count(store: str, rounds: int, work: str) -> int:
    copy = os.path.join(work, f"store-{rounds}")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(store, copy, symlinks=True)
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c",
         LOOP.replace("WARM_UP", str(WARM_UP)),
         copy, str(rounds), SRC], capture_output=True, text=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or not found:
        sys.exit(f"count_instructions: the loop failed under valgrind:\n{done.stderr[-2000:]}")
    shutil.rmtree(copy, ignore_errors=True)
    return int(found.group(1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", help="a store of 100,000 links built by bench_core.py (--keep)")
    ap.add_argument("--rounds", type=int, default=120, help="rounds of 3 operations (120)")
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        sys.exit("count_instructions: valgrind is not installed (Debian: apt install valgrind)")
    work = tempfile.mkdtemp(prefix="canonry-instructions-", dir=os.path.join(HERE, "out")
                            if os.path.isdir(os.path.join(HERE, "out")) else None)
    try:
        store = args.store
        if store is None:
            sys.path.insert(0, HERE)
            import bench_core

            store = os.path.join(work, "built")
            bench_core.build_store(store, 100_000)
        base = count(store, 0, work)
        total = count(store, args.rounds, work)
        ops = 3 * args.rounds
        print(f"{(total - base) / ops / 1e6:.2f} M instructions per operation "
              f"({ops} operations at 100,000 links, callgrind)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
