"""Artifact bytes that travel (issue 16): the store's storage URL, S3 through a real S3 API
server (moto in server mode on 127.0.0.1), a shared folder, references, the download cache,
verify / push / gc --blobs, and what must never happen (credentials in the repository, a
corrupt file written, an interrupted upload left half-done)."""
from __future__ import annotations

import hashlib
import http.server
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import canonry
from canonry.errors import IntegrityError, InvalidInput
from tests._s3_helpers import s3_env, s3_server  # noqa: F401 (fixtures)
from tests.conftest import assert_one_line_error, canonry_command, git, run_process


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _model_dir(tmp_path: Path, name: str = "ckpt", seed: bytes = b"") -> Path:
    d = tmp_path / name
    (d / "weights").mkdir(parents=True)
    (d / "config.json").write_text('{"layers": 4}')
    (d / "weights" / "w.bin").write_bytes(os.urandom(300_000) + seed)
    return d


def _publish(store_path: Path, tmp_path: Path, storage_url: str, env: dict) -> tuple[Path, Path]:
    """A store on `storage_url` with a model linked as model/mnist:production, pushed to a bare
    origin; returns (origin, the model folder)."""
    r = run_process(["init", store_path, "--storage", storage_url], env=env)
    assert r.returncode == 0, r.stderr
    model = _model_dir(tmp_path)
    r = run_process(["-C", store_path, "log", model, "--name", "mnist", "--type", "model"], env=env)
    assert r.returncode == 0, r.stderr
    r = run_process(["-C", store_path, "link", "mnist:v0", "model/mnist", "--alias", "production"], env=env)
    assert r.returncode == 0, r.stderr
    origin = tmp_path / "origin.git"
    git("init", "--bare", "-q", origin)
    git("-C", store_path, "remote", "add", "origin", origin)
    r = run_process(["-C", store_path, "push", "origin"], env=env)
    assert r.returncode == 0, r.stderr
    return origin, model


# ---- S3 -------------------------------------------------------------------------------------------
def test_s3_log_in_one_clone_get_by_alias_in_another(tmp_path, s3_env):
    bucket = s3_env.new_bucket()
    env = s3_env.env()
    origin, model = _publish(tmp_path / "a", tmp_path, f"s3://{bucket}/models", env)
    keys = [o["Key"] for o in s3_env.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == 2 and all(k.startswith("models/") for k in keys)  # two files, by sha256

    r = run_process(["clone", origin, tmp_path / "b"], env=env)
    assert r.returncode == 0, r.stderr
    r = run_process(["-C", tmp_path / "b", "storage", "show"], env=env)
    assert r.stdout.startswith(f"s3://{bucket}/models (from canonry.yaml)")
    r = run_process(["-C", tmp_path / "b", "get", "model/mnist:production", "--to", tmp_path / "out"], env=env)
    assert r.returncode == 0, r.stderr
    assert _tree(tmp_path / "out") == _tree(model)
    assert r.stderr == ""  # not a terminal: no progress bar

    # without --to: the download cache, once; the path is printed alone, for $(canonry get …)
    cache = tmp_path / "cache"
    r = run_process(["-C", tmp_path / "b", "get", "model/mnist:production"], env={**env, "CANONRY_CACHE_DIR": str(cache)})
    assert r.returncode == 0, r.stderr
    folder = Path(r.stdout.strip())
    assert folder.parent.parent == cache and _tree(folder) == _tree(model)
    for key in keys:  # served from the cache from now on: storage is not read again
        s3_env.client().delete_object(Bucket=bucket, Key=key)
    with canonry.open(str(tmp_path / "b")) as b:
        os.environ["CANONRY_CACHE_DIR"] = str(cache)
        assert b.use("model/mnist:production") == str(folder)
    assert canonry.use("model/mnist:production", path=str(tmp_path / "b")) == str(folder)


def test_s3_corrupt_object_is_refused_and_nothing_written(tmp_path, s3_env):
    bucket = s3_env.new_bucket()
    store = canonry.init(str(tmp_path / "s"), storage=f"s3://{bucket}")
    v = store.log_artifact(str(_model_dir(tmp_path)), name="m", type="model")
    big = next(f for f in v.files if f["path"] == "weights/w.bin")
    key = f"{big['sha256'][:2]}/{big['sha256'][2:]}"
    s3_env.client().put_object(Bucket=bucket, Key=key, Body=b"tampered" * 1000)
    with pytest.raises(IntegrityError, match="corrupt"):
        store.download("m:v0", str(tmp_path / "out"))
    assert not (tmp_path / "out" / "weights" / "w.bin").exists()
    problems = store.verify_storage("m:v0")
    assert [(p["path"], p["versions"]) for p in problems] == [("weights/w.bin", ["m:v0"])]
    assert "corrupt" in problems[0]["problem"]


def test_s3_upload_killed_midway_is_completed_by_running_again(tmp_path, s3_env):
    """kill -9 during a multipart upload: no version recorded, no object under the digest's
    name; the same command again uploads it whole."""
    bucket = s3_env.new_bucket()
    store_path = tmp_path / "s"
    canonry.init(str(store_path), storage=f"s3://{bucket}")
    client = s3_env.client()
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(160 << 20))  # 10 parts of 16 MiB: long enough to be caught mid-way
    sha = hashlib.sha256(big.read_bytes()).hexdigest()
    env = {**os.environ, **s3_env.env()}
    proc = subprocess.Popen([*canonry_command(), "-C", str(store_path), "log", str(big), "-n", "big", "-t", "model"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not client.list_multipart_uploads(Bucket=bucket).get("Uploads"):
        assert proc.poll() is None, f"the upload finished before it could be interrupted: {proc.communicate()}"
        assert time.monotonic() < deadline, "no multipart upload started"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [o["Key"] for o in listed] == []  # nothing half-written under the digest's name
    with canonry.open(str(store_path)) as s:
        assert "big" not in s.view().artifact_names()  # no version recorded

    r = run_process(["-C", store_path, "log", big, "-n", "big", "-t", "model"], env=s3_env.env())
    assert r.returncode == 0, r.stderr
    head = client.head_object(Bucket=bucket, Key=f"{sha[:2]}/{sha[2:]}")
    assert head["ContentLength"] == big.stat().st_size
    r = run_process(["-C", store_path, "get", "big:v0", "--to", tmp_path / "out"], env=s3_env.env())
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "big.bin").read_bytes() == big.read_bytes()


def test_s3_content_already_there_is_not_uploaded_again(tmp_path, s3_env):
    bucket = s3_env.new_bucket()
    store = canonry.init(str(tmp_path / "s"), storage=f"s3://{bucket}")
    model = _model_dir(tmp_path)
    store.log_artifact(str(model), name="a", type="model")
    moved: list[int] = []
    store.log_artifact(str(model), name="b", type="model", progress=moved.append)
    assert len(s3_env.client().list_objects_v2(Bucket=bucket)["Contents"]) == 2
    # the progress callback still hears of every byte: the bar reaches 100% for skipped files
    assert sum(moved) == sum(p.stat().st_size for p in model.rglob("*") if p.is_file())


def test_credentials_never_reach_the_repository_or_a_message(tmp_path, s3_env, run_cli):
    secret = s3_env.env()["AWS_SECRET_ACCESS_KEY"]
    key_id = s3_env.env()["AWS_ACCESS_KEY_ID"]
    bucket = s3_env.new_bucket()
    store_path = tmp_path / "s"
    store = canonry.init(str(store_path), storage=f"s3://{bucket}/p")
    store.log_artifact(str(_model_dir(tmp_path)), name="m", type="model")
    everything = git("-C", store_path, "log", "-p", "--all") + git("-C", store_path, "show", "main:canonry.yaml")
    assert secret not in everything and key_id not in everything
    # a failure names the storage, one line, no credential
    r = run_process(["-C", store_path, "get", "m:v0", "--to", tmp_path / "out"],
                    env={**s3_env.env(), "CANONRY_STORAGE": "s3://no-such-bucket-here/p"})
    assert_one_line_error(r)
    assert secret not in r.stderr and key_id not in r.stderr and "no-such-bucket-here" in r.stderr
    # a URL holding credentials is refused, and not echoed back
    r = run_cli("-C", store_path, "storage", "set", f"s3://{key_id}:{secret}@{bucket}/p")
    assert_one_line_error(r, contains=("credentials",))
    assert secret not in r.stderr


def test_offline_log_then_storage_push(tmp_path, s3_env, run_cli):
    bucket = s3_env.new_bucket()
    store_path = tmp_path / "s"
    canonry.init(str(store_path), storage=f"s3://{bucket}")
    model = _model_dir(tmp_path)
    r = run_cli("-C", store_path, "log", model, "-n", "m", "-t", "model", "--offline")
    assert r.exit_code == 0, r
    assert "Contents" not in s3_env.client().list_objects_v2(Bucket=bucket)
    r = run_cli("-C", store_path, "storage", "verify", "--quick")
    assert r.exit_code == 1 and r.stdout.count("missing: ") == 2 and "needed by m:v0" in r.stdout
    r = run_cli("-C", store_path, "storage", "push", "--json")
    assert r.exit_code == 0, r
    assert r.json()["uploaded"] == 2 and r.json()["missing"] == []
    r = run_cli("-C", store_path, "storage", "verify")
    assert r.exit_code == 0 and "every file verified" in r.stdout
    r = run_cli("-C", store_path, "storage", "push", "--json")
    assert r.json()["uploaded"] == 0 and r.json()["present"] == 2


def test_gc_blobs_lists_then_deletes_only_what_no_branch_needs(tmp_path, s3_env):
    bucket = s3_env.new_bucket()
    store = canonry.init(str(tmp_path / "s"), storage=f"s3://{bucket}")
    kept = store.log_artifact(str(_model_dir(tmp_path, "a")), name="kept", type="model")
    proposal = canonry.open(str(tmp_path / "s"), branch="promote/x")
    on_branch = proposal.log_artifact(str(_model_dir(tmp_path, "b")), name="proposed", type="model")
    orphan_sha, _ = store.blobs.put_file(str(_model_dir(tmp_path, "c") / "weights" / "w.bin"))
    dry = store.collect_blobs(dry_run=True, grace_s=0)
    assert [b["sha256"] for b in dry["blobs"]] == [orphan_sha] and not dry["deleted"]
    assert store.blobs.has(orphan_sha)
    assert store.collect_blobs(dry_run=True)["blobs"] == []  # younger than the hour a `log` may take
    store.collect_blobs(dry_run=False, grace_s=0)
    assert not store.blobs.has(orphan_sha)
    for v in (kept, on_branch):
        assert all(store.blobs.has(f["sha256"]) for f in v.files)
    assert store.verify_storage() == []


# ---- a shared folder --------------------------------------------------------------------------------
def test_shared_folder_storage_across_clones(tmp_path, run_cli):
    shared = tmp_path / "shared"
    origin, model = _publish(tmp_path / "a", tmp_path, f"file://{shared}", {})
    assert len(list(shared.rglob("*"))) >= 2
    r = run_process(["clone", origin, tmp_path / "b"])
    assert r.returncode == 0, r.stderr
    r = run_cli("-C", tmp_path / "b", "get", "model/mnist:production", "--to", tmp_path / "out")
    assert r.exit_code == 0, r
    assert _tree(tmp_path / "out") == _tree(model)
    # a per-user override (a mirror) wins over the store's own, and says so
    mirror = tmp_path / "mirror"
    r = run_process(["-C", tmp_path / "b", "storage", "show"], env={"CANONRY_STORAGE": str(mirror)})
    assert r.stdout.startswith(f"file://{mirror} (from $CANONRY_STORAGE); the store's own is file://{shared}")


def test_storage_set_is_a_commit_for_admins_and_checks_the_url(tmp_path, store, store_path, run_cli):
    r = run_cli("-C", store_path, "storage", "set", "relative/folder")
    assert_one_line_error(r, contains=("relative",))
    for bad in ("ftp://host/x", "s3://", "s3://bucket/p?X-Amz-Signature=abc", "s3://b/../x"):
        assert_one_line_error(run_cli("-C", store_path, "storage", "set", bad))
    assert_one_line_error(run_cli("-C", store_path, "storage", "set"), exit_code=2)
    before = git("-C", store_path, "rev-parse", "main")
    r = run_cli("-C", store_path, "storage", "set", str(tmp_path / "shared"))
    assert r.exit_code == 0, r
    assert git("-C", store_path, "rev-parse", "main") != before
    assert f"storage: file://{tmp_path / 'shared'}" in git("-C", store_path, "show", "main:canonry.yaml")
    assert "store.storage" in git("-C", store_path, "log", "-1", "--format=%B", "main")
    os.environ["CANONRY_ACTOR"] = "Eve <eve@example.com>"
    try:
        r = run_cli("-C", store_path, "storage", "set", "--unset")
        assert_one_line_error(r, contains=("store admin",))
    finally:
        os.environ["CANONRY_ACTOR"] = "Ada Lovelace <ada@example.com>"


# ---- references --------------------------------------------------------------------------------------
def test_reference_to_s3_records_etags_and_notices_a_changed_source(tmp_path, s3_env, run_cli, store_path, store):
    bucket = s3_env.new_bucket()
    client = s3_env.client()
    client.put_object(Bucket=bucket, Key="data/train.csv", Body=b"a,b\n1,2\n")
    client.put_object(Bucket=bucket, Key="data/sub/test.csv", Body=b"a,b\n3,4\n")
    r = run_cli("-C", store_path, "log", "--reference", f"s3://{bucket}/data/", "-n", "ds", "-t", "dataset", "--json")
    assert r.exit_code == 0, r
    files = r.json()["files"]
    assert [(f["path"], f["size"], f["ref"]) for f in files] == [
        ("sub/test.csv", 8, f"s3://{bucket}/data/sub/test.csv"), ("train.csv", 8, f"s3://{bucket}/data/train.csv")]
    assert all(f["etag"] and "sha256" not in f for f in files)
    assert "Contents" not in client.list_objects_v2(Bucket=bucket, Prefix="d9")  # nothing copied
    r = run_cli("-C", store_path, "get", "ds:v0", "--to", tmp_path / "out")
    assert r.exit_code == 0, r
    assert (tmp_path / "out" / "train.csv").read_bytes() == b"a,b\n1,2\n"
    client.put_object(Bucket=bucket, Key="data/train.csv", Body=b"a,b\n9,9\n")
    r = run_cli("-C", store_path, "get", "ds:v0", "--to", tmp_path / "out2")
    assert_one_line_error(r, contains=(f"s3://{bucket}/data/train.csv has changed since it was logged",))
    assert not (tmp_path / "out2" / "train.csv").exists()


def test_reference_to_a_folder_records_sha256_and_notices_a_change(tmp_path, store):
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.txt").write_text("one")
    v = store.log_reference(f"file://{data}", name="ds", type="dataset")
    assert v.files == [{"path": "x.txt", "size": 3, "sha256": hashlib.sha256(b"one").hexdigest(),
                        "ref": f"file://{data / 'x.txt'}"}]
    assert not store.blobs.has(v.files[0]["sha256"])  # not copied
    store.download("ds:v0", str(tmp_path / "out"))
    assert (tmp_path / "out" / "x.txt").read_text() == "one"
    (data / "x.txt").write_text("two")
    with pytest.raises(IntegrityError, match="has changed since it was logged"):
        store.download("ds:v0", str(tmp_path / "out2"))
    assert not (tmp_path / "out2" / "x.txt").exists()
    # the same content logged again is the same version; another URL is another version
    assert store.log_reference(f"file://{data}", name="ds", type="dataset").address == "ds:v1"


def test_reference_over_https_is_hashed(tmp_path, store):
    served = tmp_path / "web"
    served.mkdir()
    (served / "labels.txt").write_bytes(b"cat\ndog\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             lambda *a: Quiet(*a, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/labels.txt"
        v = store.log_reference(url, name="labels", type="dataset")
        assert v.files[0]["sha256"] == hashlib.sha256(b"cat\ndog\n").hexdigest()
        store.download("labels:v0", str(tmp_path / "out"))
        assert (tmp_path / "out" / "labels.txt").read_bytes() == b"cat\ndog\n"
        (served / "labels.txt").write_bytes(b"cat\ndog\nbird\n")
        with pytest.raises(IntegrityError, match="has changed since it was logged"):
            store.download("labels:v0", str(tmp_path / "out2"))
    finally:
        server.shutdown()


def test_reference_refuses_credentials_and_unknown_schemes(store):
    for url in ("ftp://host/x", "s3://AKIA:secret@bucket/x", "relative/path"):
        with pytest.raises(InvalidInput):
            store.log_reference(url, name="ds", type="dataset")


# ---- what log refuses ----------------------------------------------------------------------------------
def test_log_refuses_a_fifo_inside_a_folder(tmp_path, store):
    d = _model_dir(tmp_path)
    os.mkfifo(d / "pipe")
    with pytest.raises(InvalidInput, match="not a regular file"):
        store.log_artifact(str(d), name="m", type="model")
    assert store.view().artifact_names() == []


def test_log_usage_errors_exit_2(cli, model_file):
    assert cli("log", "-n", "m", "-t", "model").exit_code == 2  # neither PATH nor --reference
    assert cli("log", model_file, "--reference", "file:///x", "-n", "m", "-t", "model").exit_code == 2
    assert cli("gc", "--dry-run").exit_code == 2
