"""Using an artifact in one line, and the usage audit (issue 18).

`canonry.use`/`store.use`/`canonry use` and what `resolve` returns for a link (download,
metrics, metadata, files), `ArtifactVersion.links`, `get` with several targets; the usage log on
refs/canonry/usage: recorded when asked or when a registry says so, listed by `canonry usage`,
shown by `lineage --usage`, pushed, pulled and merged between clones, safe with concurrent
writers. Real repositories in tmp_path, the real git CLI for what git sees; nothing mocked.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from _remote_helpers import ALICE, BOB, invoke, open_as, unique_file, world  # noqa: F401 (fixture)
from conftest import ACTOR_EMAIL, assert_one_line_error, commit_count, fsck, git, head_of, run_process

import canonry
from canonry.governance import PermissionDenied
from canonry.usage import USAGE_REF, UsageLog

REF = USAGE_REF.decode()


def usage_ref(path) -> str | None:
    proc = subprocess.run(["git", "-C", str(path), "rev-parse", "--verify", "-q", REF],
                          capture_output=True, text=True)
    return proc.stdout.strip() or None


@pytest.fixture
def two(store, make_file):
    """mnist:v0 linked as model/mnist:v0 [production], mnist:v1 as model/mnist:v1; metrics and
    metadata on v0."""
    store.log_artifact(str(make_file("zero\n", "m0.bin")), name="mnist", type="model",
                       metrics={"accuracy": 0.9}, metadata={"epochs": 3})
    store.log_artifact(str(make_file("one\n", "m1.bin")), name="mnist", type="model")
    store.link("mnist:v0", "model/mnist", aliases=["production"])
    store.link("mnist:v1", "model/mnist")
    return store


# ---- one line ------------------------------------------------------------------------------------
def test_resolved_link_reads_its_artifact_version_and_downloads(two, tmp_path):
    link = two.resolve("model/mnist:production")
    assert link.metrics == {"accuracy": 0.9}
    assert link.metadata == {"epochs": 3}
    assert [f["path"] for f in link.files] == ["m0.bin"]
    assert link.artifact_version.address == "mnist:v0"
    cached = link.download()
    assert cached == two.use("mnist:v0")
    assert Path(cached, "m0.bin").read_text() == "zero\n"
    out = link.download(str(tmp_path / "out"))
    assert out == str(tmp_path / "out") and (tmp_path / "out" / "m0.bin").read_text() == "zero\n"
    # the record stays a record: same fields, equal to an unbound one, picklable
    assert set(link.to_dict()) == set(type(link)._fields)
    copy = pickle.loads(pickle.dumps(link))
    assert copy == link and copy.to_dict() == link.to_dict()
    with pytest.raises(canonry.CanonryError, match="not read from a store"):
        _ = copy.metrics
    # versions() and link() give bound records too
    assert two.versions("model/mnist")[1].download() == two.use("mnist:v1")


def test_artifact_version_links_are_filled_as_show_lists_them(two):
    for version in (two.artifact_version("mnist:v0"), two.resolve("mnist:v0"), two.artifact_versions("mnist")[0]):
        assert [x["version"] for x in version.links] == ["v0"]
        assert version.links[0]["aliases"] == ["production"]
        assert version.links == two.show("mnist:v0")["links"]
    assert two.artifact_version("mnist:v0").download() == two.use("model/mnist:v0")


def test_get_takes_several_targets(two, cli, tmp_path):
    out = tmp_path / "out"
    r = cli("get", "model/mnist:production", "mnist:v1", "mnist:v0", "--to", out)
    assert r.exit_code == 0, r
    assert (out / "mnist-v0" / "m0.bin").read_text() == "zero\n"
    assert (out / "mnist-v1" / "m1.bin").read_text() == "one\n"
    assert sorted(p.name for p in out.iterdir()) == ["mnist-v0", "mnist-v1"]
    r = cli("get", "model/mnist:v0", "model/mnist:v1")
    assert r.exit_code == 0, r
    assert r.stdout.splitlines() == [two.use("mnist:v0"), two.use("mnist:v1")]
    r = cli("get", "mnist:v0", "mnist:v1", "--json")
    assert [x["artifact"] for x in r.json()] == ["mnist:v0", "mnist:v1"]
    assert cli("get", "mnist:v0", "--json").json()["artifact"] == "mnist:v0"  # one target: one object
    # one bad target: nothing is downloaded
    r = cli("get", "mnist:v0", "mnist:v9", "--to", tmp_path / "none")
    assert_one_line_error(r, 1, ("mnist",))
    assert not (tmp_path / "none").exists()


# ---- recording -----------------------------------------------------------------------------------
def test_use_with_record_writes_the_usage_ref_not_the_store_branch(two, store_path):
    head, commits = head_of(store_path), commit_count(store_path)
    folder = two.use("model/mnist:production", record=True, purpose="nightly eval")
    assert Path(folder, "m0.bin").exists()
    assert head_of(store_path) == head and commit_count(store_path) == commits
    assert usage_ref(store_path)
    [rec] = two.usage("model/mnist:production")
    assert rec["actor"] == ACTOR_EMAIL and rec["artifact"] == "mnist:v0"
    assert rec["target"] == "model/mnist:production" and rec["link"] == "model/mnist:v0"
    assert rec["registry"] == "model" and rec["purpose"] == "nightly eval" and rec["trigger"] == "asked"
    assert rec["host"] and rec["cwd"] == os.getcwd() and rec["git_commit"] is None  # cwd: no repository
    # git sees one file per record on its own ref, and the repository is sound
    files = git("-C", store_path, "ls-tree", "-r", "--name-only", REF).split()
    assert len(files) == 1 and files[0].startswith("mnist/v0/") and files[0].endswith(".json")
    assert fsck(store_path).returncode == 0
    # not recorded unless asked (no registry setting)
    two.use("mnist:v1")
    two.download("mnist:v1")
    canonry.use("mnist:v1", path=str(store_path))
    assert two.usage("mnist:v1") == []


def test_the_consumer_commit_is_the_working_directory_repository(two, store_path, tmp_path, monkeypatch):
    consumer = tmp_path / "consumer"
    git("init", "-q", consumer)
    git("-C", consumer, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "--allow-empty", "-m", "x")
    monkeypatch.chdir(consumer)
    canonry.use("mnist:v1", path=str(store_path), record=True)
    [rec] = two.usage("mnist:v1")
    assert rec["git_commit"] == git("-C", consumer, "rev-parse", "HEAD").strip()
    monkeypatch.chdir(store_path)  # inside the store's own repository: its commit says nothing
    two.use("mnist:v0", record=True)
    assert two.usage("mnist:v0")[0]["git_commit"] is None


def test_cli_use_prints_the_folder_and_usage_lists_it(two, cli):
    r = cli("use", "model/mnist:production", "--purpose", "deploy")
    assert r.exit_code == 0, r
    assert r.stdout.strip() == two.use("mnist:v0")
    cli("use", "mnist:v1")
    r = cli("usage", "model/mnist")
    assert r.exit_code == 0, r
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["AT", "ACTOR", "VERSION", "VIA", "HOST", "COMMIT", "PURPOSE"]
    assert "mnist:v1" in lines[1] and "model/mnist:production" in lines[2] and "deploy" in lines[2]
    data = cli("usage", "mnist:v0", "--json").json()
    assert [d["purpose"] for d in data] == ["deploy"]
    assert [d["artifact"] for d in cli("usage", "mnist", "--json").json()] == ["mnist:v1", "mnist:v0"]
    assert cli("usage", "model", "--json").json() == cli("usage", "model/mnist", "--json").json()
    assert "no recorded uses" in cli("usage", "model/mnist:v1", "--since", "2999-01-01").stdout
    assert_one_line_error(cli("usage", "mnist:v0", "--since", "yesterday"), 2, ("--since",))
    assert_one_line_error(cli("usage", "model/nothing"), 1)


def test_since_keeps_uses_at_or_after_the_date(two, store_path):
    log = UsageLog(two.storage)
    for at in ("2026-09-30T23:59:59Z", "2026-10-01T00:00:00Z", "2026-11-02T08:00:00Z"):
        log.record({"at": at, "artifact": "mnist:v0", "actor": "a@x"}, two.actor)
    assert [r["at"] for r in two.usage("mnist:v0")] == ["2026-11-02T08:00:00Z", "2026-10-01T00:00:00Z",
                                                         "2026-09-30T23:59:59Z"]
    assert [r["at"] for r in two.usage("mnist:v0", since="2026-10-01")] == [
        "2026-11-02T08:00:00Z", "2026-10-01T00:00:00Z"]
    assert [r["at"] for r in two.usage("mnist:v0", since="2026-10-01T00:00:01Z")] == ["2026-11-02T08:00:00Z"]
    r = invoke("-C", store_path, "usage", "model/mnist:production", "--since", "2026-11-01", "--json")
    assert [d["at"] for d in json.loads(r.stdout)] == ["2026-11-02T08:00:00Z"]


def test_registry_setting_records_every_download(two, cli, tmp_path):
    r = cli("registry", "edit", "model", "--record-usage")
    assert r.exit_code == 0, r
    assert two.registry("model").record_usage is True
    assert "every download is recorded" in cli("show", "model").stdout
    assert "record_usage" in two.history("model")[0].after
    assert cli("get", "model/mnist:v1", "--to", tmp_path / "a").exit_code == 0
    two.use("mnist:v0")  # by ARTIFACT:vK: the registry it is linked in decides
    two.use("mnist:v0", record=False)  # never
    uses = two.usage("model/mnist")
    assert [(u["artifact"], u["trigger"]) for u in uses] == [("mnist:v0", "registry"), ("mnist:v1", "registry")]
    assert cli("registry", "edit", "model", "--no-record-usage").exit_code == 0
    two.use("mnist:v1")
    assert len(two.usage("model/mnist")) == 2
    assert cli("validate").exit_code == 0


def test_a_viewer_may_record_a_restricted_viewer_cannot_use(two, store_path, monkeypatch):
    two.create_registry("secure", "restricted", types=["model"])
    two.set_member("secure", "viewer@example.com", "viewer")
    two.set_member("secure", "rv@example.com", "restricted_viewer")
    two.link("mnist:v1", "secure/c")
    monkeypatch.setenv("CANONRY_ACTOR", "viewer@example.com")
    r = invoke("-C", store_path, "use", "secure/c:v0", "--purpose", "audit")
    assert r.exit_code == 0, r
    monkeypatch.setenv("CANONRY_ACTOR", "rv@example.com")
    with pytest.raises(PermissionDenied):
        canonry.use("secure/c:v0", path=str(store_path), record=True)
    assert [u["actor"] for u in canonry.open(str(store_path)).usage("secure/c")] == ["viewer@example.com"]


def test_a_use_whose_recording_fails_warns_and_returns_the_folder(two, store_path, capfd):
    Path(two.storage.common_dir, "refs", "canonry").write_text("not a folder\n")  # the ref cannot be written
    head = head_of(store_path)
    folder = two.use("mnist:v0", record=True)
    assert Path(folder, "m0.bin").read_text() == "zero\n"
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "could not record the use" in err
    assert head_of(store_path) == head


def test_lineage_downstream_shows_consumers(two, cli, make_file):
    two.log_artifact(str(make_file("distilled\n", "d.bin")), name="distilled", type="model", inputs=["mnist:v0"])
    two.use("model/mnist:production", record=True, purpose="serving")
    r = cli("lineage", "model/mnist:production", "--downstream", "--usage")
    assert r.exit_code == 0, r
    assert "distilled:v0" in r.stdout and "consumers (recorded uses):" in r.stdout
    assert f"{ACTOR_EMAIL} on " in r.stdout and "serving" in r.stdout
    data = cli("lineage", "mnist:v0", "--downstream", "--usage", "--json").json()
    root = next(n for n in data["nodes"] if n["ref"] == "mnist:v0")
    assert [c["purpose"] for c in root["consumers"]] == ["serving"]
    assert "consumers (recorded uses)" not in cli("lineage", "mnist:v0", "--downstream").stdout


# ---- sharing and concurrency ---------------------------------------------------------------------
def test_usage_is_pushed_pulled_and_merged_from_both_clones(world):
    w = world(versions=1)
    a, b = w.clone("alice"), w.clone("bob")
    for path, actor, name in ((a, ALICE, "a-model"), (b, BOB, "b-model")):
        s = open_as(path, actor)
        s.log_artifact(unique_file(w.tmp, name), name=name, type="model")
        s.use(f"{name}:v0", record=True, purpose=name)
        # and both record a use of one version in one month: their folders merge deep down
        UsageLog(s.storage).record({"at": "2026-10-05T12:00:00Z", "artifact": "gemma-finetuned:v0",
                                    "actor": s.actor.actor}, s.actor)
    a_usage, b_usage = usage_ref(a), usage_ref(b)
    assert a_usage and b_usage
    assert open_as(a, ALICE).push().action == "pushed"
    assert usage_ref(w.remote) == a_usage
    assert open_as(b, BOB).push().action == "pushed"  # both sides have records: merged, no conflict
    merged = usage_ref(w.remote)
    for side in (a_usage, b_usage):
        assert git("-C", w.remote, "merge-base", "--is-ancestor", side, merged, check=False) == ""
    open_as(a, ALICE).pull()
    assert usage_ref(a) == merged
    alice = open_as(a, ALICE)
    assert [u["actor"] for u in alice.usage("b-model:v0")] == ["bob@example.com"]
    assert [u["purpose"] for u in alice.usage("a-model:v0")] == ["a-model"]
    assert sorted(u["actor"] for u in alice.usage("gemma-finetuned:v0")) == ["alice@example.com", "bob@example.com"]
    files = git("-C", w.remote, "ls-tree", "-r", "--name-only", REF).split()
    assert sorted(f.split("/")[0] for f in files) == ["a-model", "b-model", "gemma-finetuned", "gemma-finetuned"]
    assert fsck(w.remote).returncode == 0
    # a fresh clone gets the log with the store
    c = w.clone("carol")
    assert usage_ref(c) == merged


def test_concurrent_recorders_in_one_clone_lose_nothing(two, store_path):
    script = ("import sys, canonry\n"
              "for i in range(3):\n"
              "    canonry.use('mnist:v0', path=sys.argv[1], record=True, purpose=sys.argv[2] + str(i))\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(store_path), f"p{n}-"],
                              stderr=subprocess.PIPE, text=True) for n in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0 and "warning" not in err, err
    purposes = sorted(u["purpose"] for u in two.usage("mnist:v0"))
    assert purposes == sorted(f"p{n}-{i}" for n in range(4) for i in range(3))
    assert fsck(store_path).returncode == 0


def test_use_and_usage_through_a_real_process(two, store_path):
    r = run_process(["-C", store_path, "use", "mnist:v1", "-p", "cli"])
    assert r.returncode == 0, r.stderr
    r = run_process(["-C", store_path, "usage", "mnist:v1", "--json"])
    assert [d["purpose"] for d in json.loads(r.stdout)] == ["cli"]
