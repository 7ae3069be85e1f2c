#!/usr/bin/env python3
"""Artifact bytes benchmark for canonry (a script, not a test): `log` and `get` (issue 16).

    python benchmarks/bench_storage.py            # 1 GiB file, 10,000 small files, 5 runs (~20-25 minutes on 2 busy cores)
    python benchmarks/bench_storage.py --quick    # smoke run: 64 MiB, 500 small files, 2 runs
    python benchmarks/bench_storage.py --no-s3    # folder storage only (no moto server)

Measured, in every run (the measures interleaved, so background load hits them alike):

1. `canonry -C STORE log FILE` of a random file of --size-mb MiB to the default storage (the
   folder <git dir>/canonry/blobs), as a fresh process, against `sha256sum FILE`, `openssl dgst
   -sha256 FILE` and `cp FILE` + `sha256sum` of the copy, on the same file in the same run. The
   file is made once and stays in the page cache (it is read once before timing); between runs
   the blobs folder is deleted (a new artifact name per run too), so every log really stores
   the bytes. `os.sync()` runs before each timed command, so no command pays for the previous
   one's writeback; writes themselves are not synced (neither canonry nor cp fsyncs a blob).
2. The same log to S3 on a local moto server (CANONRY_STORAGE=s3://bench/<new prefix per run>),
   and, as moto's own ceiling in the same run, boto3 `upload_file` (its default transfer
   config, and one shaped like canonry's: 16 MiB parts, 4 at a time) and a single-stream
   `get_object` read of the same object. Objects are deleted after each run (moto keeps them
   in memory).
3. `canonry get NAME:v0 --to DIR` from both storages (fresh process; the folder store and the S3
   store are two stores, so the S3 get cannot read the folder's copy).
4. Peak RSS of every canonry process (/usr/bin/time -f %M), at --size-mb and at a quarter of
   it: bounded memory means the two are about equal.
5. A folder of --small-files random files of 1-8 KiB, logged and restored in-process with the
   parallel transfers (files/transfer.py `workers_for`: 4 threads for a folder, 16 for object
   storage) and one at a time (`workers_for` replaced by `lambda blobs, n: 1` in this process),
   to the folder storage and to S3.

S3 is moto (a Python server on the same 2 cores): its figures are bounded by moto, not canonry.
Before timing, one 3 MiB file is uploaded through canonry's S3 code: if that fails, the S3
measures of canonry are skipped and the error is in the results.

Writes benchmarks/out/bench_storage-<time>.json and .md (and bench_storage-latest.{json,md}).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_core as core  # noqa: E402  (also puts ../src on sys.path and sets CANONRY_ACTOR)

import canonry  # noqa: E402

MiB = 1 << 20
BUCKET = "bench"
TARGET_RATIO = 0.8  # issue 16: log at >= 0.8x the throughput of sha256sum on the same file

# ---- helpers ---------------------------------------------------------------------------------------
def write_random(path: str, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 * MiB)
            f.write(os.urandom(n))
            left -= n


def read_all(path: str) -> None:
    with open(path, "rb") as f:
        while f.read(16 * MiB):
            pass


def timed(cmd: list[str], env: dict, what: str) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of a fresh process; raises with its stderr when it fails."""
    os.sync()
    with tempfile.NamedTemporaryFile(prefix="rss-", suffix=".txt", delete=False) as tf:
        rss_file = tf.name
    try:
        t = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file, *cmd], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        elapsed = time.perf_counter() - t
        with open(rss_file) as f:
            lines = [ln for ln in f.read().split() if ln.isdigit()]
    finally:
        os.unlink(rss_file)
    if r.returncode != 0:
        raise RuntimeError(f"{what}: `{' '.join(cmd)}` failed ({r.returncode}): {r.stderr.strip()}")
    return elapsed, int(lines[-1]) if lines else 0


def timed_call(fn) -> float:
    os.sync()
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def rmtree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


# ---- moto ------------------------------------------------------------------------------------------
class Moto:
    """A moto_server on a free port of 127.0.0.1, with bucket `bench`; the AWS_* variables for it."""

    def __init__(self, workdir: str):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        exe = shutil.which("moto_server")
        if not exe:
            raise SystemExit("moto_server is not on PATH (pip install 'moto[server]'), or pass --no-s3")
        self.log = open(os.path.join(workdir, "moto.log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.port}", "AWS_ACCESS_KEY_ID": "test",
                    "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
        os.environ.update(self.env)
        import boto3

        self.client = boto3.client("s3")
        deadline = time.time() + 30
        while True:
            try:
                self.client.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise SystemExit(f"moto_server did not start (see {self.log.name})") from None
                time.sleep(0.2)

    def rss_peak_kib(self) -> int | None:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def clear(self, prefix: str) -> None:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=BUCKET, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
            if keys:
                self.client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def s3_preflight(workdir: str) -> str | None:
    """None when canonry can upload a file to the moto bucket as its code is; else the error."""
    from canonry.files.objects import ObjectBlobStore

    path = os.path.join(workdir, "preflight.bin")
    write_random(path, 3 * MiB)
    try:
        ObjectBlobStore(f"s3://{BUCKET}/preflight").put_file(path)
        return None
    except Exception as e:
        return f"{type(e).__name__}: {e}"


# ---- the big file ------------------------------------------------------------------------------------
def bench_big(args, work: str, moto: Moto | None, canonry_cmd: list[str], env: dict) -> dict:
    size = args.size_mb * MiB
    quarter = max(1, args.size_mb // 4) * MiB
    files = {"big": os.path.join(work, "big.bin"), "quarter": os.path.join(work, "quarter.bin")}
    t = time.perf_counter()
    write_random(files["big"], size)
    write_random(files["quarter"], quarter)
    print(f"  made {args.size_mb} MiB and {quarter // MiB} MiB random files in {time.perf_counter() - t:.1f}s",
          flush=True)
    sizes = {"big": size, "quarter": quarter}
    stores = {"folder": os.path.join(work, "store-folder")}
    if moto:
        stores["s3"] = os.path.join(work, "store-s3")
    for path in stores.values():
        canonry.init(path)
    env_s3 = dict(env)
    cp_dest = os.path.join(work, "copy.bin")
    times: dict[str, list[float]] = {}
    rss: dict[str, list[int]] = {}

    def add(key: str, seconds: float, peak: int | None = None) -> None:
        times.setdefault(key, []).append(seconds)
        if peak is not None:
            rss.setdefault(key, []).append(peak)

    for run in range(args.runs):
        for f in files.values():
            read_all(f)  # in the page cache for every measure alike
        order = ["baselines", "folder", "s3", "moto"] if moto else ["baselines", "folder"]
        if run % 2:
            order.reverse()
        for part in order:
            if part == "baselines":
                add("sha256sum", timed(["sha256sum", files["big"]], env, "sha256sum")[0])
                add("openssl dgst -sha256", timed(["openssl", "dgst", "-sha256", files["big"]], env, "openssl")[0])
                t_cp = timed(["cp", files["big"], cp_dest], env, "cp")[0]
                t_sum = timed(["sha256sum", cp_dest], env, "sha256sum copy")[0]
                add("cp", t_cp)
                add("cp + sha256sum", t_cp + t_sum)
                os.unlink(cp_dest)
            elif part in ("folder", "s3"):
                store = stores[part]
                e = env
                if part == "s3":
                    e = dict(env_s3, CANONRY_STORAGE=f"s3://{BUCKET}/r{run}")
                for which in ("big", "quarter"):
                    name = f"{which}-r{run}"
                    sec, peak = timed([*canonry_cmd, "-C", store, "log", files[which], "--name", name,
                                       "--type", "model"], e, f"log to {part}")
                    add(f"log {which} {part}", sec, peak)
                    out = os.path.join(work, f"get-{part}-{which}")
                    sec, peak = timed([*canonry_cmd, "-C", store, "get", f"{name}:v0", "--to", out], e,
                                      f"get from {part}")
                    add(f"get {which} {part}", sec, peak)
                    got = os.path.join(out, os.path.basename(files[which]))
                    if os.path.getsize(got) != sizes[which]:
                        raise RuntimeError(f"get from {part}: {got} has the wrong size")
                    rmtree(out)
                if part == "folder":
                    rmtree(os.path.join(store, ".git", "canonry", "blobs"))
                else:
                    moto.clear(f"r{run}/")
            elif part == "moto":
                from boto3.s3.transfer import TransferConfig

                key = f"boto/r{run}"
                add("boto3 upload_file (default config)",
                    timed_call(lambda k=key: moto.client.upload_file(files["big"], BUCKET, k)))
                shaped = TransferConfig(multipart_chunksize=16 * MiB, max_concurrency=4)
                add("boto3 upload_file (16 MiB parts x 4)",
                    timed_call(lambda k=key, c=shaped: moto.client.upload_file(files["big"], BUCKET, k + "b", Config=c)))

                def read_stream(key=key):
                    body = moto.client.get_object(Bucket=BUCKET, Key=key)["Body"]
                    while body.read(4 * MiB):
                        pass
                add("boto3 get_object read (one stream)", timed_call(read_stream))
                moto.clear("boto/")
        print(f"  big file: run {run + 1}/{args.runs} done", flush=True)

    res: dict = {"size_mib": args.size_mb, "quarter_mib": quarter // MiB, "times_s": {}, "rss_kib": {}}
    for key, vals in times.items():
        nbytes = sizes["quarter"] if " quarter " in key else size
        res["times_s"][key] = summary(vals)
        res["times_s"][key]["MiB_per_s"] = summary([nbytes / MiB / v for v in vals])
    for key, vals in rss.items():
        res["rss_kib"][key] = summary([float(v) for v in vals])
    for part in stores:
        for base in ("sha256sum", "cp + sha256sum", "openssl dgst -sha256"):
            ratios = [b / lg for b, lg in zip(times[base], times[f"log big {part}"])]
            res.setdefault("ratios", {})[f"log {part} / {base}"] = summary(ratios)
    res["target_log_over_sha256sum"] = TARGET_RATIO
    return res


# ---- many small files -------------------------------------------------------------------------------
def bench_small(args, work: str, moto: Moto | None) -> dict:
    import random

    from canonry import content
    from canonry.files import transfer

    rng = random.Random(args.seed)
    src = os.path.join(work, "small")
    total = 0
    for i in range(args.small_files):
        d = os.path.join(src, f"d{i // 1000:03d}")
        if i % 1000 == 0:
            os.makedirs(d, exist_ok=True)
        n = rng.randint(1024, 8192)
        with open(os.path.join(d, f"f{i:06d}.bin"), "wb") as f:
            f.write(os.urandom(n))
        total += n
    print(f"  made {args.small_files:,} small files ({total / MiB:.1f} MiB)", flush=True)
    stores = {"folder": os.path.join(work, "small-folder")}
    if moto:
        stores["s3"] = os.path.join(work, "small-s3")
    for path in stores.values():
        canonry.init(path)
    original = transfer.workers_for
    serial = lambda blobs, n: 1  # noqa: E731

    def set_workers(fn) -> None:
        transfer.workers_for = fn
        content.workers_for = fn  # imported by name there

    times: dict[str, list[float]] = {}
    workers: dict[str, int] = {}
    try:
        for run in range(args.small_runs):
            for top, _, names in os.walk(src):
                for name in names:
                    read_all(os.path.join(top, name))
            modes = ["parallel", "one at a time"] if run % 2 == 0 else ["one at a time", "parallel"]
            for part in stores:
                for mode in modes:
                    set_workers(original if mode == "parallel" else serial)
                    tag = "par" if mode == "parallel" else "ser"
                    if part == "s3":
                        os.environ["CANONRY_STORAGE"] = f"s3://{BUCKET}/small-r{run}-{tag}"
                    else:
                        os.environ.pop("CANONRY_STORAGE", None)
                    try:
                        store = canonry.open(stores[part])
                        workers[f"{part} {mode}"] = transfer.workers_for(store.blobs, args.small_files)
                        name = f"small-r{run}-{tag}"
                        times.setdefault(f"log {part} {mode}", []).append(
                            timed_call(lambda s=store, n=name: s.log_artifact(src, name=n, type="dataset")))
                        out = os.path.join(work, f"small-get-{part}-{tag}")
                        times.setdefault(f"get {part} {mode}", []).append(
                            timed_call(lambda s=store, n=name, o=out: s.download(f"{n}:v0", to=o)))
                        found = sum(len(n) for _, _, n in os.walk(out))
                        if found != args.small_files:
                            raise RuntimeError(f"get from {part}: {found} files, not {args.small_files}")
                        rmtree(out)
                    finally:
                        os.environ.pop("CANONRY_STORAGE", None)
                    if part == "folder":
                        rmtree(os.path.join(stores[part], ".git", "canonry", "blobs"))
                    else:
                        moto.clear(f"small-r{run}-{tag}/")
            print(f"  small files: run {run + 1}/{args.small_runs} done", flush=True)
    finally:
        set_workers(original)
    res: dict = {"files": args.small_files, "bytes": total, "workers": workers, "times_s": {}, "speedup": {}}
    for key, vals in times.items():
        res["times_s"][key] = summary(vals)
        res["times_s"][key]["files_per_s"] = summary([args.small_files / v for v in vals])
    for op in ("log", "get"):
        for part in stores:
            par, ser = times[f"{op} {part} parallel"], times[f"{op} {part} one at a time"]
            res["speedup"][f"{op} {part}"] = summary([s / p for s, p in zip(ser, par)])
    return res


# ---- report ----------------------------------------------------------------------------------------
def disk_of(path: str) -> str:
    try:
        dev = subprocess.run(["df", "--output=source,fstype,size", path], capture_output=True, text=True,
                             timeout=10).stdout.split("\n")[1].split()
        name = os.path.basename(dev[0])
        rot = open(f"/sys/block/{name}/queue/rotational").read().strip()  # noqa: SIM115
        return f"{dev[0]} ({dev[1]}, {dev[2]}, rotational={rot})"
    except Exception:
        return "unknown"


def fmt_range(s: dict, scale: float = 1.0, digits: int = 2) -> str:
    return f"{s['median'] * scale:.{digits}f} ({s['min'] * scale:.{digits}f}–{s['max'] * scale:.{digits}f})"


def report(res: dict) -> str:
    mach = res["machine"]
    lines = [f"# canonry storage benchmark — {res['time']}", "",
             f"{mach['platform']}, nproc {mach['nproc']}, Python {mach['python']}, canonry {mach['git']}, "
             f"obstore {res['versions'].get('obstore')}, moto {res['versions'].get('moto')}; disk {mach['disk']}; "
             f"load average at start {tuple(round(x, 2) for x in mach['loadavg_at_start'] or ())}, "
             f"at end {tuple(round(x, 2) for x in res['loadavg_at_end'] or ())}", ""]
    if res.get("s3_problem"):
        lines += [f"**canonry could not upload to S3**: `{res['s3_problem']}`; its S3 measures were skipped.", ""]
    big = res.get("big")
    if big:
        lines += [f"## One file of {big['size_mib']} MiB (fresh processes; median (min–max) of "
                  f"{res['args']['runs']} runs)", "",
                  "| command | seconds | MiB/s | peak RSS MiB |", "|---|---|---|---|"]
        for key, s in big["times_s"].items():
            r = big["rss_kib"].get(key)
            lines.append(f"| {key} | {fmt_range(s)} | {fmt_range(s['MiB_per_s'], digits=0)} | "
                         f"{fmt_range(r, 1 / 1024, 0) if r else ''} |")
        lines += ["", f"Throughput ratios per run (target: log / sha256sum ≥ {big['target_log_over_sha256sum']}):", "",
                  "| ratio | median (min–max) |", "|---|---|"]
        for key, s in big["ratios"].items():
            lines.append(f"| {key} | {fmt_range(s)} |")
        lines.append("")
    small = res.get("small")
    if small:
        lines += [f"## {small['files']:,} small files, 1–8 KiB ({small['bytes'] / MiB:.1f} MiB), in-process; "
                  f"median (min–max) of {res['args']['small_runs']} runs", "",
                  "| operation | threads | seconds | files/s |", "|---|---|---|---|"]
        for key, s in small["times_s"].items():
            part_mode = key.split(" ", 1)[1]
            lines.append(f"| {key} | {small['workers'].get(part_mode, '')} | {fmt_range(s)} | "
                         f"{fmt_range(s['files_per_s'], digits=0)} |")
        lines += ["", "| parallel speed-up (one at a time / parallel) | median (min–max) |", "|---|---|"]
        for key, s in small["speedup"].items():
            lines.append(f"| {key} | {fmt_range(s)} |")
        lines.append("")
    if res.get("moto_rss_peak_kib"):
        lines.append(f"moto_server peak RSS: {res['moto_rss_peak_kib'] / 1024:.0f} MiB")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024, help="size of the big file in MiB (1024)")
    ap.add_argument("--small-files", type=int, default=10_000, help="files in the folder of small files (10000)")
    ap.add_argument("--runs", type=int, default=5, help="runs of the big-file measures (5)")
    ap.add_argument("--small-runs", type=int, help="runs of the small-files measures (default: --runs)")
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--workdir", help="where to make files and stores (default: a temporary directory in --out)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    ap.add_argument("--no-s3", action="store_true", help="folder storage only: no moto server")
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--skip-small", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="smoke run: 64 MiB, 500 small files, 2 runs")
    args = ap.parse_args()
    if args.quick:
        args.size_mb, args.small_files, args.runs = 64, 500, 2
    if args.small_runs is None:
        args.small_runs = args.runs

    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.makedirs(args.out, exist_ok=True)
    work = args.workdir or tempfile.mkdtemp(prefix="bench-storage-", dir=args.out)
    os.makedirs(work, exist_ok=True)
    os.environ["CANONRY_CACHE_DIR"] = os.path.join(work, "cache")
    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.abspath(canonry.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    canonry_cmd = [core.canonry_script()]
    subprocess.run([*canonry_cmd, "--help"], env=env, capture_output=True)  # writes .pyc files

    versions = {}
    for mod in ("obstore", "moto", "boto3"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod)
        except Exception:
            versions[mod] = None
    mach = core.machine()
    mach["nproc"] = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    mach["disk"] = disk_of(work)
    res: dict = {"time": dt.datetime.now().isoformat(timespec="seconds"), "machine": mach, "versions": versions,
                 "args": vars(args), "workdir": work, "s3_problem": None}
    print(f"work directory {work}; canonry {mach['git']}; nproc {mach['nproc']}", flush=True)
    moto = None
    try:
        if not args.no_s3:
            moto = Moto(work)
            env.update(moto.env)
            problem = s3_preflight(work)
            if problem:
                res["s3_problem"] = problem
                print(f"  canonry cannot upload to S3: {problem}; its S3 measures are skipped", flush=True)
            moto.clear("preflight/")
        s3 = moto if (moto and not res["s3_problem"]) else None
        if not args.skip_big:
            res["big"] = bench_big(args, work, s3, canonry_cmd, env)
        if not args.skip_small:
            res["small"] = bench_small(args, work, s3)
        if moto:
            res["moto_rss_peak_kib"] = moto.rss_peak_kib()
    finally:
        if moto:
            moto.stop()
        if not args.keep and not args.workdir:
            rmtree(work)
    try:
        res["loadavg_at_end"] = os.getloadavg()
    except OSError:
        res["loadavg_at_end"] = None
    text = report(res)
    print(text)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for name in (f"bench_storage-{stamp}", "bench_storage-latest"):
        with open(os.path.join(args.out, name + ".json"), "w") as f:
            json.dump(res, f, indent=1)
        with open(os.path.join(args.out, name + ".md"), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
