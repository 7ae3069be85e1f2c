"""Many writers against one store, and two clones against one remote, then proof that nothing was
lost: shared by tests/test_reliability_concurrency.py (CI size) and stress/concurrency.py (full size).

Each worker is a real process (this file run as a script) acting as its own identity. It records
every operation the API acknowledged (returned without error) with what it returned. The checks
read the result from outside, through the git CLI and dulwich's object reader, never through
canonry's read model:

- every acknowledged change is in exactly one commit, and each worker's commits are, in order,
  its acknowledged changes (matched on the `Canonry-Op` trailer records);
- at every commit of the history, each collection's aliases.yaml has no repeated key and every
  alias names a link that exists, no link number reaches `next_version`, and no artifact version
  is linked twice;
- `git fsck --strict` and `canonry validate` are clean, and a work-tree store's `git status` is empty.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CloneRun",
    "StoreRun",
    "check_clones",
    "check_store",
    "prepare_store",
    "run_clones",
    "run_workers",
]

HERE = Path(__file__).resolve()
TRAILER = "Canonry-Op: "
COLLECTIONS = ("model/shared", "model/other", "dataset/shared")
SHARED_ALIASES = ("champion", "staging")
GIT = shutil.which("git") or "git"


# ---- running things -----------------------------------------------------------------------------
def git(*args: Any, check: bool = True) -> str:
    proc = subprocess.run([GIT, *map(str, args)], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(map(str, args))} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout


def canonry_cli(*args: Any, actor: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The `canonry` console script as a real process."""
    script = Path(sys.executable).with_name("canonry")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "canonry.cli.launcher"]
    env = dict(os.environ)
    if actor:
        env["CANONRY_ACTOR"] = actor
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def actor_of(who: str) -> str:
    return f"Worker {who} <{who}@workers.example>"


def _spawn(args: list[str], who: str) -> subprocess.Popen:
    env = dict(os.environ, CANONRY_ACTOR=actor_of(who))
    return subprocess.Popen([sys.executable, str(HERE), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _collect(procs: dict[str, subprocess.Popen], outs: dict[str, Path], timeout: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    results = {}
    for who, p in procs.items():
        try:
            _out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs.values():
                q.kill()
            raise AssertionError(f"worker {who} still running after {timeout:g} s") from None
        assert p.returncode == 0, f"worker {who} exited {p.returncode}:\n{err}"
        results[who] = json.loads(outs[who].read_text())
    return results


# ---- N writers on one store ----------------------------------------------------------------------
@dataclass
class StoreRun:
    path: Path
    workers: list[str]
    ops: int
    bare: bool
    results: dict[str, dict] = field(default_factory=dict)  # who -> {"acks": [...], "errors": [...]}
    seconds: float = 0.0


def prepare_store(root: Path, workers: int, ops: int, bare: bool) -> StoreRun:
    """A store (bare, or the work-tree store `canonry init DIR` makes) where worker wK has one
    artifact `wK` with a version per operation it may link (every link is of a new version)."""
    import canonry

    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    path = root / ("store.git" if bare else "store")
    who = [f"w{k}" for k in range(workers)]
    src = root / "src"
    src.mkdir(exist_ok=True)
    with canonry.init(str(path), bare=bare) as store, store.transaction(message="prepare") as tx:
        for w in who:
            for j in range(ops):
                f = src / f"{w}-{j}.bin"
                f.write_text(f"{w} {j}\n")
                tx.log_artifact(str(f), name=w, type="dataset" if w.endswith(("1", "3")) else "model")
    return StoreRun(path, who, ops, bare)


def run_workers(run: StoreRun, timeout: float = 600) -> StoreRun:
    """All workers at once, each its own process; waits for them and gathers what they recorded."""
    outs = {w: run.path.parent / f"{w}.json" for w in run.workers}
    start = run.path.parent / "go"
    started = time.monotonic()
    procs = {w: _spawn(["store-worker", str(run.path), w, str(run.ops), str(outs[w]), str(start)], w)
             for w in run.workers}
    start.write_text("go")  # the workers open their stores first, then start together
    run.results = _collect(procs, outs, timeout)
    run.seconds = time.monotonic() - started
    return run


def _store_worker(path: str, who: str, ops: int, out: str, start: str) -> None:
    """Worker `who`: `ops` random operations — link, link with an alias, alias set, unlink, tag —
    each recorded with what the API returned; an error is recorded, never retried."""
    import canonry
    from canonry.errors import CanonryError

    rng = random.Random(f"{who}-{ops}")
    store = canonry.open(path)
    acks: list[dict] = []
    errors: list[str] = []
    live: list[str] = []  # this worker's links not unlinked: only it touches them, so none fails
    next_av = 0
    deadline = time.monotonic() + 60
    while not Path(start).exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    for i in range(ops):
        kind = rng.choices(["link", "link-alias", "alias", "unlink", "tag"], [30, 20, 25, 10, 15])[0]
        if kind in ("alias", "unlink", "tag") and not live:
            kind = "link"
        coll = rng.choice(COLLECTIONS[2:] if who.endswith(("1", "3")) else COLLECTIONS[:2])
        alias = rng.choice([*SHARED_ALIASES, f"own-{who}"])
        try:
            if kind in ("link", "link-alias"):
                aliases = [alias] if kind == "link-alias" else []
                lv = store.link(f"{who}:v{next_av}", coll, aliases=aliases)
                next_av += 1
                live.append(lv.address)
                acks.append({"op": "link", "artifact": lv.artifact, "collection": f"{lv.registry}/{lv.collection}",
                             "version": lv.version, "aliases": aliases, "created": lv.created})
            elif kind == "alias":
                ch = store.set_alias(rng.choice(live), alias)
                acks.append({"op": "alias.set", "collection": ch.collection, "alias": ch.alias,
                             "before": ch.before, "after": ch.after, "changed": ch.changed})
            elif kind == "unlink":
                target = live.pop(rng.randrange(len(live)))
                lv = store.unlink(target)
                acks.append({"op": "unlink", "collection": f"{lv.registry}/{lv.collection}",
                             "version": lv.version, "artifact": lv.artifact})
            else:
                tc = store.tag(rng.choice(live), f"t{i}")
                acks.append({"op": "tag.add", "target": tc.target, "before": tc.before, "after": tc.after,
                             "changed": tc.changed})
        except Exception as e:  # recorded: the check fails on any, with what it was
            where = "" if isinstance(e, CanonryError) else "\n" + traceback.format_exc(limit=-6)
            errors.append(f"op {i} {kind}: {type(e).__name__}: {e}{where}")
    store.close()
    Path(out).write_text(json.dumps({"acks": acks, "errors": errors}))


def _key(rec: dict) -> tuple:
    """What identifies an operation, in an acknowledgement and in a commit's first trailer record."""
    op = rec["op"]
    if op == "link":
        return op, rec["artifact"], rec["collection"], rec["version"], tuple(rec.get("aliases", ()))
    if op == "alias.set":
        return op, rec["collection"], rec["alias"], rec["before"], rec["after"]
    if op == "unlink":
        return op, rec["collection"], rec["version"], rec["artifact"]
    if op == "tag.add":
        return op, rec["target"], tuple(rec["before"]), tuple(rec["after"])
    return (op,)


def log_of(repo: Path, rev: str = "main") -> list[dict]:
    """Every commit of `rev`'s first-parent history, oldest first: sha, parents, author email and
    the `Canonry-Op` trailer records of its message."""
    out = git("-C", repo, "log", "--first-parent", "--reverse", "--format=%H %P%x00%ae%x00%B%x1e", rev)
    commits = []
    for chunk in out.split("\x1e"):
        chunk = chunk.strip("\n")
        if not chunk:
            continue
        head, email, body = chunk.split("\x00", 2)
        sha, *parents = head.split()
        recs = [json.loads(line[len(TRAILER):]) for line in body.splitlines() if line.startswith(TRAILER)]
        commits.append({"sha": sha, "parents": parents, "email": email, "records": recs})
    return commits


class _NoDuplicates(yaml.SafeLoader):
    """A YAML loader that refuses a repeated mapping key (PyYAML keeps the last one silently)."""


def _mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    repeated = {k for k in keys if keys.count(k) > 1}
    if repeated:
        raise AssertionError(f"repeated keys {sorted(repeated)} at {node.start_mark}")
    return loader.construct_mapping(node, deep=deep)


_NoDuplicates.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def check_aliases_at_every_commit(repo: Path, rev: str = "main") -> int:
    """Walk every commit reachable from `rev`: in each collection, aliases.yaml has no repeated
    key, each alias names an existing links/vN.yaml, every vN is below next_version, and no
    artifact version is linked twice.
    Returns the number of commits walked."""
    from dulwich.objects import Tree
    from dulwich.repo import Repo

    r = Repo(str(repo))
    try:
        seen: set[bytes] = set()  # collection trees already checked (most commits change one)
        artifacts: dict[bytes, str] = {}  # link file blob -> the artifact version it links
        shas = git("-C", repo, "rev-list", rev).split()
        for sha in shas:
            tree = r[r[sha.encode()].tree]
            assert isinstance(tree, Tree)
            if b"registries" not in tree:
                continue
            regs = r[tree[b"registries"][1]]
            for reg_name, _mode, reg_sha in regs.items():
                reg = r[reg_sha]
                if not isinstance(reg, Tree):
                    continue
                for coll_name, _m, coll_sha in reg.items():
                    coll = r[coll_sha]
                    if not isinstance(coll, Tree) or coll_sha in seen:
                        continue
                    seen.add(coll_sha)
                    where = f"{reg_name.decode()}/{coll_name.decode()} at {sha[:10]}"
                    links = set()
                    if b"links" in coll:
                        entries = r[coll[b"links"][1]]
                        assert isinstance(entries, Tree)
                        links = {n.decode()[:-len(".yaml")] for n in entries}
                        linked = [_artifact_of(r, blob, artifacts) for _n, _m, blob in entries.items()]
                        twice = {a for a in linked if linked.count(a) > 1}
                        assert not twice, f"{where}: {sorted(twice)} linked twice"
                    meta = yaml.safe_load(r[coll[b"collection.yaml"][1]].data)
                    nxt = meta.get("next_version", 0)
                    assert all(int(v[1:]) < nxt for v in links), f"{where}: a link at or past next_version {nxt}"
                    if b"aliases.yaml" in coll:
                        data = yaml.load(r[coll[b"aliases.yaml"][1]].data, Loader=_NoDuplicates) or {}
                        for alias, version in (data.get("aliases") or {}).items():
                            assert version in links, f"{where}: alias {alias} names {version}, not a link"
        return len(shas)
    finally:
        r.close()


def _artifact_of(repo: Any, blob: bytes, cache: dict[bytes, str]) -> str:
    if blob not in cache:
        cache[blob] = yaml.safe_load(repo[blob].data)["artifact"]
    return cache[blob]


def check_clean(repo: Path, worktree: bool) -> None:
    """fsck --strict, `canonry validate`, and (work tree) an empty `git status --porcelain`."""
    fsck = subprocess.run([GIT, "-C", str(repo), "fsck", "--strict", "--no-dangling", "--full"],
                          capture_output=True, text=True)
    assert fsck.returncode == 0, f"git fsck --strict: {fsck.stdout}{fsck.stderr}"
    v = canonry_cli("-C", repo, "validate")
    assert v.returncode == 0, f"canonry validate: {v.stdout}{v.stderr}"
    if worktree:
        status = git("-C", repo, "status", "--porcelain", "--untracked-files=all")
        assert status == "", f"git status after the run:\n{status}"


def check_store(run: StoreRun) -> dict:
    """Everything a run must leave true; returns the figures (acknowledged, landed, commits)."""
    commits = log_of(run.path)
    assert all(len(c["parents"]) <= 1 for c in commits), "local writes made a merge commit"
    assert len(git("-C", run.path, "rev-list", "main").split()) == len(commits)
    acknowledged = landed = 0
    link_commits: dict[str, str] = {}  # COLLECTION:vN -> the commit that linked it
    for w in run.workers:
        acks = run.results[w]["acks"]
        acknowledged += len(acks)
        # a call that changed nothing makes no commit; every other one makes exactly one
        changes = [_key(a) for a in acks if a.get("changed", True) and a.get("created", True)]
        mine = [c for c in commits if c["email"] == f"{w}@workers.example"]
        made = [_key(c["records"][0]) if c["records"] else ("no trailer", c["sha"]) for c in mine]
        assert made == changes, _first_difference(w, changes, made)
        landed += len(changes)
        for c, a in zip(mine, [a for a in acks if a.get("changed", True) and a.get("created", True)]):
            if a["op"] == "link":
                link_commits[f"{a['collection']}:{a['version']}"] = c["sha"]
                if a["aliases"]:  # the alias came with the link, in the same commit
                    assert {"op": "alias.set", "alias": a["aliases"][0]}.items() <= c["records"][1].items(), c
    walked = check_aliases_at_every_commit(run.path)
    check_clean(run.path, worktree=not run.bare)
    # canonry's own `history --json` agrees: each acknowledged link, in the commit found above
    for coll in COLLECTIONS:
        wanted = {(t, sha) for t, sha in link_commits.items() if t.startswith(coll + ":")}
        if not wanted:
            continue
        h = canonry_cli("-C", run.path, "history", coll, "--json")
        assert h.returncode == 0, h.stderr
        listed = {(e["target"], e["commit"]) for e in json.loads(h.stdout) if e["op"] == "link"}
        assert wanted <= listed, f"history of {coll} misses {sorted(wanted - listed)[:3]}"
    # checked last, so a failed call is first shown to have written nothing (no commit of its
    # worker is left unmatched above) and the run's other guarantees are still checked
    errors = [f"{w}: {e}" for w, res in run.results.items() for e in res["errors"]]
    assert errors == [], (f"{len(errors)} operations failed (nothing of them was written; "
                          f"{acknowledged} acknowledged ones all landed once):\n" + "\n".join(errors[:20]))
    return {"acknowledged": acknowledged, "landed": landed, "commits": len(commits), "walked": walked,
            "seconds": run.seconds}


def _first_difference(who: str, wanted: list, made: list) -> str:
    for i, (a, b) in enumerate(zip(wanted, made)):
        if a != b:
            return f"{who}: operation {i}: acknowledged {a}, but its commit says {b}"
    return f"{who}: {len(wanted)} acknowledged changes, {len(made)} commits"


# ---- two clones, one remote ---------------------------------------------------------------------
@dataclass
class CloneRun:
    remote: Path
    clones: dict[str, Path]
    rounds: int
    results: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0


def run_clones(root: Path, rounds: int, clones: int = 2, timeout: float = 600) -> CloneRun:
    """A bare remote seeded by a canonry store, cloned `clones` times with `canonry clone`; then
    every clone, in its own process, links and pushes `rounds` times (pulling now and then)."""
    import canonry

    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    remote = root / "remote.git"
    git("init", "-q", "--bare", "-b", "main", remote)
    names = [f"c{k}" for k in range(clones)]
    src = root / "src"
    src.mkdir(exist_ok=True)
    seed_path = root / "seed"
    with canonry.init(str(seed_path)) as seed:
        with seed.transaction(message="prepare") as tx:
            for c in names:
                for j in range(rounds):
                    f = src / f"{c}-{j}.bin"
                    f.write_text(f"{c} {j}\n")
                    tx.log_artifact(str(f), name=c, type="model")
            f = src / "seed.bin"
            f.write_text("seed\n")
            tx.log_artifact(str(f), name="seed", type="model")
        seed.link("seed:v0", "model/shared", aliases=["production"])
        git("-C", seed_path, "remote", "add", "origin", remote)
        assert seed.push().action == "pushed"
    paths = {}
    for c in names:
        paths[c] = root / c
        r = canonry_cli("clone", remote, paths[c], actor=actor_of(c))
        assert r.returncode == 0, r.stderr
    run = CloneRun(remote, paths, rounds)
    outs = {c: root / f"{c}.json" for c in names}
    start = root / "go"
    started = time.monotonic()
    procs = {c: _spawn(["clone-worker", str(paths[c]), c, str(rounds), str(outs[c]), str(start)], c)
             for c in names}
    start.write_text("go")
    run.results = _collect(procs, outs, timeout)
    run.seconds = time.monotonic() - started
    return run


def _clone_worker(path: str, who: str, rounds: int, out: str, start: str) -> None:
    """Clone `who`: each round links a new version (every third with the contested alias
    `production`) and pushes; every fourth round pulls first. A push that reports a conflict
    is recorded, and the clone gets out with `canonry pull --discard-local` (the way out the
    error names), dropping the commits that conflicted: they were never acknowledged as pushed."""
    import canonry
    from canonry.errors import CanonryError

    rng = random.Random(who)
    pushed: list[dict] = []  # link acknowledgements whose push was acknowledged
    conflicts: list[str] = []
    errors: list[str] = []
    pending: list[dict] = []
    stuck: list[str] = []  # what `pull` said right after a conflict
    dropped: list[dict] = []  # links whose push reported a conflict: they must not reach the remote
    deadline = time.monotonic() + 60
    while not Path(start).exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    for j in range(rounds):
        store = canonry.open(path)
        try:
            if j % 4 == 3:
                store.pull()
            aliases = ["production"] if j % 3 == 2 else []
            lv = store.link(f"{who}:v{j}", "model/shared", aliases=aliases)
            pending.append({"artifact": lv.artifact, "aliases": aliases})
            try:
                result = store.push()
            except CanonryError as e:
                if "production" not in str(e):  # not the conflict this run provokes: a failure
                    errors.append(f"round {j}: push: {type(e).__name__}: {e}")
                    continue  # the link stays pending: the next acknowledged push carries it
                conflicts.append(f"round {j}: {e}")
                try:  # a plain pull meets the same conflict: recorded, for the figures
                    store.pull()
                except CanonryError as stuck_error:
                    stuck.append(f"round {j}: pull: {stuck_error}")
                # the way out the error names, as a user runs it
                way_out = canonry_cli("-C", path, "pull", "--discard-local", actor=actor_of(who))
                if way_out.returncode != 0:
                    errors.append(f"round {j}: pull --discard-local: {way_out.stderr.strip()}")
                    _back_to_remote(path)
                dropped.extend(pending)
                pending = []
                continue
            assert result.action == "pushed", result
            pushed.extend(pending)
            pending = []
        except Exception as e:
            errors.append(f"round {j}: {type(e).__name__}: {e}")
        finally:
            store.close()
        time.sleep(rng.uniform(0, 0.02))
    Path(out).write_text(json.dumps({"pushed": pushed, "dropped": dropped, "conflicts": conflicts, "stuck": stuck,
                                      "errors": errors}))


def _back_to_remote(path: str) -> None:
    """When canonry's own way out failed (recorded as an error): git itself, to go on."""
    git("-C", path, "fetch", "-q", "origin")
    git("-C", path, "reset", "-q", "--hard", "origin/main")


def check_clones(run: CloneRun) -> dict:
    """The remote's history holds every acknowledged push of every clone exactly once, its aliases
    are sound at every commit, and the remote and each clone pass fsck and validate."""
    for c, res in run.results.items():
        for msg in res["conflicts"]:
            one_line = "\n" not in msg.strip()
            assert one_line and "conflict" in msg and "production" in msg, \
                f"{c}: a push failed for another reason than a conflict on the alias: {msg}"
            assert "--discard-local" in msg, f"{c}: the conflict does not name the way out: {msg}"
    commits = log_of(run.remote)
    linked: dict[str, list[dict]] = {}
    for c in commits:
        for rec in c["records"]:
            if rec["op"] == "link":
                linked.setdefault(rec["artifact"], []).append({"email": c["email"], **rec})
    acknowledged = 0
    for who, res in run.results.items():
        for ack in res["pushed"]:
            acknowledged += 1
            found = linked.get(ack["artifact"], [])
            assert len(found) == 1, f"{who}: pushed link of {ack['artifact']} is in {len(found)} commits of the remote"
            assert found[0]["email"] == f"{who}@workers.example"
            assert found[0]["aliases"] == ack["aliases"], (who, ack, found[0])
        kept = git("-C", run.clones[who], "log", "--format=%B", "--glob=refs/canonry/discarded/*")
        for gone in res["dropped"]:
            assert gone["artifact"] not in linked, f"{who}: {gone['artifact']} reached the remote after a conflict"
            # discarded, not lost: the clone keeps the dropped commits under refs/canonry/discarded/
            assert f'"artifact":"{gone["artifact"]}"' in kept, f"{who}: dropped {gone['artifact']} is not kept"
    walked = check_aliases_at_every_commit(run.remote)
    check_clean(run.remote, worktree=False)
    for path in run.clones.values():
        canonry_cli("-C", path, "pull")  # each clone ends where the remote is
        check_clean(path, worktree=True)
    errors = [f"{c}: {e}" for c, res in run.results.items() for e in res["errors"]]
    assert errors == [], (f"{len(errors)} rounds failed ({acknowledged} acknowledged pushes all on the "
                          "remote once):\n" + "\n".join(errors[:20]))
    return {"pushes acknowledged": acknowledged,
            "conflicts": sum(len(r["conflicts"]) for r in run.results.values()),
            "stuck": sum(len(r["stuck"]) for r in run.results.values()),
            "commits": len(commits), "walked": walked, "seconds": run.seconds}


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    cmd, *rest = sys.argv[1:]
    if cmd == "store-worker":
        _store_worker(rest[0], rest[1], int(rest[2]), rest[3], rest[4])
    elif cmd == "clone-worker":
        _clone_worker(rest[0], rest[1], int(rest[2]), rest[3], rest[4])
    else:
        raise SystemExit(f"unknown command {cmd}")
