"""Crash loop: kill a canonry writer with SIGKILL at random moments and check that the store
is never stuck, never loses an acknowledged operation, and never piles up leftovers (issue 15).

Each round starts a writer process (started one round ahead, so that Python's start-up is not
counted), lets it work for a random 0–300 ms, then kills it with SIGKILL. Writers do one of:
  writes — tag and alias operations in a loop, printing each one acknowledged;
  gc     — `gc` in a loop;
  log    — `log` of a larger file (a new version each time).
After each kill, the next command (a tag add, in a fresh Store) must succeed within --bound
seconds; every few rounds and at the end: every acknowledged tag is in exactly one commit and
at the head, `git fsck --strict` and `canonry validate` are clean, `git status` is clean (work-
tree layout), and no leftover older than a few rounds is there (temp packs, incoming blobs,
lock files, sync markers). At the end, after the stale bound has passed, one write and one gc
leave none at all.

    python3 stress/crash_loop.py --kills 200 --layout both
tests/test_crash_recovery.py runs it at CI size.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import canonry

__all__ = ["WRITER", "Failure", "main", "run"]

GIT = shutil.which("git") or "git"

WRITER = r"""
import os, sys, time
import canonry
path, mode, tag_prefix, big = sys.argv[1:5]
sys.stdin.readline()  # go
print("start", flush=True)
store = canonry.open(path)
i = 0
while True:
    if mode == "writes":
        if i % 3 == 2:
            store.set_alias(f"model/c:v{i % 2}", "production")
            print(f"ack alias {i}", flush=True)
        else:
            tag = f"{tag_prefix}x{i}"
            store.tag("model/c:v0", tag)
            print(f"ack tag {tag}", flush=True)
    elif mode == "gc":
        store.gc()
        print("ack gc", flush=True)
    else:
        v = store.log_artifact(big, name="big", type="dataset")
        print(f"ack log {v.address}", flush=True)
    i += 1
"""


class Failure(AssertionError):
    pass


def _git(path, *args) -> str:
    return subprocess.run([GIT, "-C", str(path), *args], capture_output=True, text=True,
                          check=True).stdout


def _leftovers(path: Path, bare: bool) -> list[tuple[str, float]]:
    """(file, age in s) of every temporary or lock file a writer may leave."""
    git_dir = path if bare else path / ".git"
    now = time.time()
    found = []
    candidates = []
    pack_dir = git_dir / "objects" / "pack"
    if pack_dir.exists():
        candidates += [p for p in pack_dir.iterdir() if p.name.startswith("tmp")]
    blobs = git_dir / "canonry" / "blobs"
    if blobs.exists():
        candidates += [p for p in blobs.iterdir() if p.name.startswith(".incoming-")]
    syncing = git_dir / "canonry" / "syncing"
    if syncing.exists():
        candidates += list(syncing.iterdir())
    candidates += list((git_dir / "refs").rglob("*.lock"))
    candidates += [p for p in (git_dir / "index.lock", git_dir / "packed-refs.lock") if p.exists()]
    if not bare:
        candidates += [p for p in path.rglob("*.canonry-tmp") if ".git" not in p.parts]
    for p in candidates:
        try:
            found.append((str(p.relative_to(path)), now - p.lstat().st_mtime))
        except OSError:
            pass
    return found


def _setup(root: Path, layout: str, big_mb: int) -> tuple[Path, Path]:
    path = root / f"store-{layout}"
    files = root / "files"
    files.mkdir(exist_ok=True)
    if layout == "bare":
        canonry.init(str(path), bare=True).close()
    else:
        canonry.init(str(path)).close()
    small = files / "small.txt"
    small.write_text("weights\n")
    big = files / "big.bin"
    if not big.exists():
        with open(big, "wb") as f:
            for _ in range(big_mb):
                f.write(os.urandom(1 << 20))
    with canonry.open(str(path)) as s:
        for n in range(2):
            small.write_text(f"weights {n}\n")
            v = s.log_artifact(str(small), name="m", type="model")
            s.link(v.address, "model/c")
    return path, big


def _spawn(path: Path, mode: str, prefix: str, big: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), mode, prefix, str(big)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _full_check(path: Path, bare: bool, acked_tags: set[str]) -> None:
    fsck = subprocess.run([GIT, "-C", str(path), "fsck", "--strict", "--no-dangling", "--full"],
                          capture_output=True, text=True)
    if fsck.returncode != 0:
        raise Failure(f"git fsck: {fsck.stdout}{fsck.stderr}")
    with canonry.open(str(path)) as s:
        findings = s.validate()
        if findings:
            raise Failure(f"validate: {findings}")
    head_tags = _head_tags(path)
    lost = acked_tags - head_tags
    if lost:
        raise Failure(f"acknowledged tags missing at the head: {sorted(lost)[:5]}")
    once = _commits_per_tag(path)
    twice = {t: once.get(t, 0) for t in acked_tags if once.get(t, 0) != 1}
    if twice:
        raise Failure(f"acknowledged tags not in exactly one commit: {twice}")
    if not bare:
        status = _git(path, "status", "--porcelain", "--untracked-files=all")
        if status:
            raise Failure(f"git status not clean:\n{status}")


def _head_tags(path: Path) -> set[str]:
    with canonry.open(str(path)) as s:
        version = s.resolve("model/c:v0")
        return set(getattr(version, "tags", []) or [])


def _commits_per_tag(path: Path) -> dict[str, int]:
    """How many commits add each tag, from the operation records in the commit messages."""
    out: dict[str, int] = {}
    for line in _git(path, "log", "--format=%B", "main").splitlines():
        if not line.startswith("Canonry-Op: "):
            continue
        record = json.loads(line[len("Canonry-Op: "):])
        if record.get("op") == "tag.add":
            for tag in set(record.get("after") or []) - set(record.get("before") or []):
                out[tag] = out.get(tag, 0) + 1
    return out


def run(root: Path, kills: int = 20, layout: str = "bare", big_mb: int = 30, seed: int | None = None,
        bound: float = 20.0, check_every: int = 5, modes=("writes", "writes", "gc", "log"),
        log=print) -> dict:
    """Run the loop in `root` (a fresh folder); the figures, or Failure."""
    rnd = random.Random(seed)
    path, big = _setup(root, layout, big_mb)
    bare = layout == "bare"
    acked_tags: set[str] = set()
    figures = {"layout": layout, "kills": 0, "acknowledged": 0, "by_mode": {},
               "next_command_max_s": 0.0, "leftovers_max": 0, "full_checks": 0}
    plan = [rnd.choice(modes) for _ in range(kills)]
    nxt = _spawn(path, plan[0], "r0", big)
    started = time.monotonic()
    for r in range(kills):
        writer = nxt
        if r + 1 < kills:  # the next writer starts up meanwhile
            nxt = _spawn(path, plan[r + 1], f"r{r + 1}", big)
        assert writer.stdin is not None and writer.stdout is not None
        writer.stdin.write("go\n")
        writer.stdin.flush()
        line = writer.stdout.readline()
        if line.strip() != "start":
            raise Failure(f"writer did not start: {line!r} {writer.stderr.read() if writer.stderr else ''}")
        time.sleep(rnd.uniform(0, 0.3))
        writer.send_signal(signal.SIGKILL)
        out, _err = writer.communicate()
        figures["kills"] += 1
        figures["by_mode"][plan[r]] = figures["by_mode"].get(plan[r], 0) + 1
        for ack in out.splitlines():
            parts = ack.split()
            if len(parts) == 3 and parts[0] == "ack":
                figures["acknowledged"] += 1
                if parts[1] == "tag":
                    acked_tags.add(parts[2])
        # the next command: promptly, whatever the kill left
        t0 = time.monotonic()
        tag = f"after{r}"
        with canonry.open(str(path)) as s:
            s.tag("model/c:v0", tag)
        acked_tags.add(tag)
        took = time.monotonic() - t0
        figures["next_command_max_s"] = max(figures["next_command_max_s"], round(took, 3))
        if took > bound:
            raise Failure(f"round {r}: the next command took {took:.1f} s")
        left = _leftovers(path, bare)
        figures["leftovers_max"] = max(figures["leftovers_max"], len(left))
        old = [(f, round(age, 1)) for f, age in left if age > 15]
        if old:
            raise Failure(f"round {r}: leftovers accumulate: {old}")
        if not bare:
            status = _git(path, "status", "--porcelain", "--untracked-files=all")
            if status:
                raise Failure(f"round {r} ({plan[r]}): git status not clean after the next "
                              f"command:\n{status}")
        if check_every and (r + 1) % check_every == 0:
            _full_check(path, bare, acked_tags)
            figures["full_checks"] += 1
    # the end: once the stale bound has passed, a write and a gc leave nothing behind
    time.sleep(2.2)
    with canonry.open(str(path)) as s:
        s.tag("model/c:v0", "final")
        acked_tags.add("final")
        s.gc()
    left = _leftovers(path, bare)
    if left:
        raise Failure(f"leftovers after the final write and gc: {left}")
    _full_check(path, bare, acked_tags)
    figures["full_checks"] += 1
    figures["tags_landed"] = len(acked_tags)
    figures["seconds"] = round(time.monotonic() - started, 1)
    log(json.dumps(figures))
    return figures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=200, help="kills per layout")
    ap.add_argument("--layout", choices=("bare", "worktree", "both"), default="both")
    ap.add_argument("--big-mb", type=int, default=100, help="size of the file `log` writers log")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--check-every", type=int, default=10)
    ap.add_argument("--bound", type=float, default=20.0, help="seconds the next command may take")
    args = ap.parse_args(argv)
    layouts = ("bare", "worktree") if args.layout == "both" else (args.layout,)
    total = {"kills": 0, "acknowledged": 0}
    for layout in layouts:
        with tempfile.TemporaryDirectory(prefix="canonry-crash-") as root:
            figures = run(Path(root), kills=args.kills, layout=layout, big_mb=args.big_mb,
                          seed=args.seed, bound=args.bound, check_every=args.check_every)
        total["kills"] += figures["kills"]
        total["acknowledged"] += figures["acknowledged"]
    print(json.dumps({"total": total}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
