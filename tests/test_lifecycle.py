"""Lifecycle (issue 18): deleting and renaming registries and collections, creating and editing
collections, deleting artifact versions, describing artifacts. Each through the API and the CLI,
with role refusals, history entries, the index, replay across a rename and `validate`.

Real stores in tmp_path; identities switched with CANONRY_ACTOR; nothing mocked.
"""
from __future__ import annotations

import json

import pytest
from _remote_helpers import open_as
from conftest import ACTOR_EMAIL, assert_one_line_error, git, head_of

import canonry
from canonry.errors import InvalidInput, NotFound
from canonry.governance import PermissionDenied

ADA = ACTOR_EMAIL  # made the store: its store admin
MEMBER = "member@example.com"
RADMIN = "radmin@example.com"  # admin of registry `secure`, not a store admin


@pytest.fixture
def team(store, make_file):
    """`secure` (restricted; RADMIN admin, MEMBER member); g:v0 linked as secure/c:v0 [production,
    protected], g:v1 as secure/c:v1 [staging]; g:v2 logged, linked nowhere."""
    store.create_registry("secure", "models", types=["model"])
    store.set_member("secure", RADMIN, "admin")
    store.set_member("secure", MEMBER, "member")
    for i in range(3):
        store.log_artifact(str(make_file(f"weights {i}\n", f"w{i}.bin")), name="g", type="model")
    store.link("g:v0", "secure/c", aliases=["production"])
    store.link("g:v1", "secure/c", aliases=["staging"])
    store.protect_alias("secure", "production")
    return store


def last_op(store) -> dict:
    from canonry import journal

    head = store.storage.head()
    return journal.records(store.storage.commit(head).message)[0]


# ---- collections ----------------------------------------------------------------------------------
def test_collection_create_edit_rename_delete_api(team, store_path):
    s = open_as(store_path, MEMBER)
    coll = s.create_collection("secure/new", "model", description="for later", metadata={"owner": "ml"})
    assert (coll.address, coll.type, coll.description, coll.metadata) == ("secure/new", "model", "for later",
                                                                          {"owner": "ml"})
    assert last_op(s)["op"] == "collection.create"
    with pytest.raises(InvalidInput, match="already exists"):
        s.create_collection("secure/new", "model")
    with pytest.raises(Exception, match="does not accept type 'dataset'"):
        s.create_collection("secure/data", "dataset")
    before = head_of(store_path)
    edited = s.edit_collection("secure/new", description="now", metadata={"stage": "beta"}, remove_metadata=["owner"])
    assert (edited.description, edited.metadata) == ("now", {"stage": "beta"})
    assert head_of(store_path) != before
    before = head_of(store_path)
    s.edit_collection("secure/new", description="now")  # nothing changes: no commit
    assert head_of(store_path) == before
    s.link("g:v2", "secure/new", aliases=["candidate"])
    renamed = s.rename_collection("secure/new", "renamed")
    assert renamed.address == "secure/renamed" and renamed.aliases["candidate"] == "v0"
    assert renamed.metadata == {"stage": "beta"}
    with pytest.raises(NotFound):
        s.collection("secure/new")
    assert s.resolve("secure/renamed:candidate").artifact == "g:v2"
    gone = s.delete_collection("secure/renamed")
    assert gone.versions == 1 and gone.aliases == {"candidate": "v0"}
    assert [c.name for c in s.collections("secure")] == ["c"]
    assert s.artifact_version("g:v2").version == "v2"  # artifact versions stay
    ops = [e.op for e in s.history("secure", limit=6)]
    assert ops[:2] == ["collection.delete", "collection.rename"] and "collection.edit" in ops
    assert s.validate().ok


def test_collection_with_a_protected_alias_needs_an_admin(team, store_path):
    member = open_as(store_path, MEMBER)
    for call in (lambda: member.delete_collection("secure/c"),
                 lambda: member.rename_collection("secure/c", "d")):
        with pytest.raises(PermissionDenied, match=r"protected alias production.*needs role admin"):
            call()
    viewer = open_as(store_path, "nobody@example.com")
    with pytest.raises(PermissionDenied):
        viewer.create_collection("secure/x", "model")
    admin = open_as(store_path, RADMIN)
    assert admin.rename_collection("secure/c", "d").address == "secure/d"
    assert admin.delete_collection("secure/d").versions == 2


def test_collection_cli(team, cli):
    r = cli("collection", "create", "secure/x", "--type", "model", "-d", "desc", "--metadata", "k=v", "--json")
    assert r.exit_code == 0, r
    assert json.loads(r.stdout)["metadata"] == {"k": "v"}
    r = cli("collection", "edit", "secure/x", "--metadata", "team=vision", "--rm-metadata", "k")
    assert r.exit_code == 0 and "edited collection secure/x" in r.stdout
    r = cli("show", "secure/x")
    assert "team=vision" in r.stdout and "desc" in r.stdout
    assert cli("collection", "rename", "secure/x", "y").stdout.strip() == "renamed collection secure/x to secure/y"
    assert "deleted collection secure/y" in cli("collection", "delete", "secure/y").stdout
    assert_one_line_error(cli("collection", "delete", "secure/y"), contains=("secure/y",))
    assert_one_line_error(cli("collection", "edit", "secure/c", "--metadata", "novalue"), exit_code=2)
    assert_one_line_error(cli("collection", "rename", "secure/c", "other/c"), contains=("within its registry",))
    r = cli("history", "secure")
    assert "collection.delete" in r.stdout and "collection.rename" in r.stdout
    r = cli("audit", "--json")
    entry = next(e for e in json.loads(r.stdout) if e["op"] == "collection.rename")
    assert (entry["target"], entry["before"], entry["after"]) == ("secure/x", "secure/x", "secure/y")


def test_search_and_index_follow_renames_and_deletes(team, store_path):
    s = canonry.open(str(store_path))
    assert [c["name"] for c in s.search(kind="collections", registry="secure")] == ["c"]
    s.rename_collection("secure/c", "d")
    assert [c["name"] for c in s.search(kind="collections", registry="secure")] == ["d"]
    assert {v["collection"] for v in s.search({}, registry="secure")} == {"secure/d"}
    s.delete_collection("secure/d")
    assert s.search(kind="collections", registry="secure") == []
    assert s.search({}, registry="secure") == []
    s.rename_registry("secure", "vault")
    assert [r["name"] for r in s.search(kind="registries") if r["name"] in ("secure", "vault")] == ["vault"]


# ---- registries -------------------------------------------------------------------------------------
def test_registry_delete_and_rename(team, store_path):
    admin = open_as(store_path, RADMIN)
    with pytest.raises(InvalidInput, match=r"not empty .*secure/c.*--force"):
        admin.delete_registry("secure")
    with pytest.raises(PermissionDenied, match="store admin"):
        admin.delete_registry("secure", force=True)
    with pytest.raises(PermissionDenied, match="needs role admin"):
        open_as(store_path, MEMBER).rename_registry("secure", "vault")
    renamed = admin.rename_registry("secure", "vault")
    assert renamed.name == "vault" and admin.role("vault", MEMBER) == "member"
    assert admin.resolve("vault/c:production").artifact == "g:v0"
    assert admin.protect_alias("vault", "staging")["changed"]  # settings moved along
    with pytest.raises(InvalidInput, match="already exists"):
        admin.rename_registry("vault", "model")
    boss = canonry.open(str(store_path))
    gone = boss.delete_registry("vault", force=True)
    assert gone.name == "vault"
    rec = last_op(boss)
    assert (rec["op"], rec["collections"], rec["links"], rec["force"]) == ("registry.delete", ["c"], 2, True)
    assert [a.version for a in boss.artifact_versions("g")] == ["v0", "v1", "v2"]  # never artifact versions
    boss.create_registry("empty")
    assert boss.delete_registry("empty").name == "empty"
    assert "empty" not in [r.name for r in boss.registries()]
    entries = boss.audit()
    assert [e.op for e in entries[:5]] == ["registry.delete", "registry.create", "registry.delete",
                                           "registry.protect", "registry.rename"]
    assert entries[2].before == {"collections": ["c"], "links": 2} and entries[2].after is None
    assert (entries[4].target, entries[4].before, entries[4].after) == ("secure", "secure", "vault")
    assert [e.op for e in boss.history("vault", limit=2)] == ["registry.delete", "registry.protect"]
    assert boss.validate().ok


def test_registry_cli(team, cli):
    assert_one_line_error(cli("registry", "delete", "secure"), contains=("not empty",))
    r = cli("registry", "rename", "secure", "vault")
    assert r.exit_code == 0 and r.stdout.strip() == "renamed registry secure to vault"
    r = cli("registry", "delete", "vault", "--force", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["deleted"] is True
    assert_one_line_error(cli("registry", "rename", "vault", "x"), contains=("vault",))
    r = cli("registry", "edit", "model", "-d", "Our models")
    assert r.exit_code == 0 and cli("registry", "show", "model", "--json").json()["description"] == "Our models"


# ---- artifact versions --------------------------------------------------------------------------------
def test_artifact_delete(team, store_path, tmp_path, make_file):
    s = canonry.open(str(store_path))
    with pytest.raises(InvalidInput, match=r"linked in secure/c:v0; unlink"):
        s.delete_artifact_version("g:v0")
    with pytest.raises(PermissionDenied, match=r"only its author|store admin"):
        open_as(store_path, MEMBER).delete_artifact_version("g:v2")
    v = s.delete_artifact_version("g:v2")
    assert v.deleted and v.deleted_by == ADA
    shown = s.show("g:v2")
    assert shown["deleted_by"] == ADA and shown["deleted_at"] == v.deleted_at
    with pytest.raises(InvalidInput, match=f"g:v2 was deleted by {ADA} at"):
        s.download("g:v2", str(tmp_path / "out"))
    with pytest.raises(InvalidInput, match=r"cannot link g:v2: .*deleted"):
        s.link("g:v2", "secure/c")
    with pytest.raises(InvalidInput, match="was deleted"):
        s.delete_artifact_version("g:v2")
    assert s.resolve("g:latest").version == "v1"  # latest skips a deleted version
    again = s.log_artifact(str(make_file("weights 2\n", "w2-again.bin")), name="g", type="model")
    assert again.version == "v3" and again.created  # the number is never reused
    blobs = {b["sha256"] for b in s.collect_blobs(dry_run=True, grace_s=0)["blobs"]}
    assert blobs == set()  # v3 holds the same bytes as the deleted v2
    s.unlink("secure/c:staging")
    s.delete_artifact_version("g:v1")
    collectable = s.collect_blobs(dry_run=True, grace_s=0)["blobs"]
    assert [b["sha256"] for b in collectable] == [s.show("g:v1")["files"][0]["sha256"]]
    assert [e.op for e in s.history("g:v1", limit=1)] == ["artifact.delete"]
    assert s.validate().ok


def test_artifact_cli(team, cli, tmp_path):
    assert_one_line_error(cli("artifact", "delete", "g:v0"), contains=("secure/c:v0",))
    r = cli("artifact", "delete", "g:v2")
    assert r.exit_code == 0 and r.stdout.startswith("deleted g:v2")
    r = cli("show", "g:v2")
    assert f"by {ADA} (its files are no longer kept)" in r.stdout
    assert_one_line_error(cli("get", "g:v2", "--to", tmp_path / "out"), contains=("was deleted by",))
    r = cli("artifact", "edit", "g", "-d", "the weights")
    assert r.exit_code == 0 and cli("show", "g", "--json").json()["description"] == "the weights"
    r = cli("audit", "--json")
    ops = [e["op"] for e in json.loads(r.stdout)][:2]
    assert ops == ["artifact.edit", "artifact.delete"]
    assert_one_line_error(cli("artifact", "edit", "nope", "-d", "x"), contains=("nope",))


# ---- merges and review ---------------------------------------------------------------------------------
def test_merge_of_an_older_branch_after_renames(team, store_path):
    """A proposal made before main renamed the registry and the collection still merges: its
    records are replayed under the new names."""
    branch = open_as(store_path, MEMBER, branch="promote/x")
    branch.link("g:v2", "secure/c", aliases=["candidate"])
    branch.tag("secure/c", "reviewed")
    main = canonry.open(str(store_path))
    main.rename_collection("secure/c", "d")
    main.rename_registry("secure", "vault")
    result = main.merge("promote/x")
    assert result.kind == "merge"
    after = canonry.open(str(store_path))
    assert after.resolve("vault/d:candidate").artifact == "g:v2"
    assert "reviewed" in after.collection("vault/d").tags
    assert [c.name for c in after.collections("vault")] == ["d"]
    assert after.validate().ok


def test_merge_of_a_branch_that_renames(team, store_path):
    branch = open_as(store_path, RADMIN, branch="tidy")
    branch.rename_collection("secure/c", "d")
    branch.set_alias("secure/d:v1", "best")
    main = canonry.open(str(store_path))
    main.link("g:v2", "secure/c")  # main goes on meanwhile
    assert main.merge("tidy").kind == "merge"
    after = canonry.open(str(store_path))
    assert after.collection("secure/d").aliases == {"production": "v0", "staging": "v1", "best": "v1",
                                                    "latest": "v2"}
    assert after.validate().ok


def test_validate_refuses_a_branch_deleting_what_its_author_may_not(team, store_path):
    git("-C", store_path, "branch", "sneaky", "main")
    member = open_as(store_path, MEMBER, branch="sneaky")
    # by hand: the member removes the collection holding the protected alias
    git("-C", store_path, "checkout", "-q", "sneaky")
    git("-C", store_path, "rm", "-rq", "registries/secure/c")
    git("-C", store_path, "-c", f"user.email={MEMBER}", "-c", "user.name=M", "commit", "-qm", "drop c")
    git("-C", store_path, "checkout", "-q", "main")
    report = member.validate("main..sneaky")
    assert {f.rule for f in report} == {"role"}  # the collection, and the protected alias with it
    assert "may not remove registries/secure/c/collection.yaml (holding protected production)" in report[0].message


def test_validate_of_deletions_through_canonry(team, store_path):
    """A branch where a registry admin deletes a registry with collections, and a member marks
    someone else's artifact version deleted by hand: both need a store admin."""
    git("-C", store_path, "branch", "b", "main")
    admin_branch = open_as(store_path, RADMIN, branch="b")
    from canonry import ops

    view = admin_branch.view()
    # what --force would write, made without the store admin check: the gate must catch it
    for path in sorted(p for p in ops._files_under(view, "registries/secure")):
        view.delete(path)
    admin_branch._commit_view(view, [{"op": "registry.delete", "registry": "secure", "summary": "x"}], None)
    report = canonry.open(str(store_path)).validate("main..b")
    assert [f.rule for f in report] == ["role"]
    assert "holds 1 collection: that needs a store admin" in report[0].message

    git("-C", store_path, "branch", "c", "main")
    other = open_as(store_path, MEMBER, branch="c")
    view = other.view()
    rec = view.read("artifacts/g/v2.yaml")
    rec.update(deleted_at="2026-12-06T00:00:00Z", deleted_by=MEMBER)
    view.write("artifacts/g/v2.yaml", rec)
    other._commit_view(view, [{"op": "artifact.delete", "artifact": "g:v2", "summary": "x"}], None)
    report = canonry.open(str(store_path)).validate("main..c")
    assert [f.rule for f in report] == ["role"]
    assert "may not delete g:v2: only its author" in report[0].message


def test_validate_finds_a_deleted_version_still_linked(team, store_path):
    git("-C", store_path, "branch", "c", "main")
    s = open_as(store_path, ADA, branch="c")
    view = s.view()
    rec = view.read("artifacts/g/v0.yaml")
    rec.update(deleted_at="2026-12-06T00:00:00Z", deleted_by=ADA)
    view.write("artifacts/g/v0.yaml", rec)
    s._commit_view(view, [{"op": "artifact.delete", "artifact": "g:v0", "summary": "x"}], None)
    report = s.validate("main..c")
    assert [f.rule for f in report] == ["link-target"]
    assert "g:v0 was deleted while secure/c:v0 links it" in report[0].message


def test_diff_describes_lifecycle_changes(team, store_path, cli):
    s = open_as(store_path, ADA, branch="p")
    s.rename_collection("secure/c", "d")
    s.edit_collection("secure/d", description="renamed")
    s.create_registry("tmp")
    s.link("g:v2", "tmp/x")
    s.unlink("tmp/x:v0")
    s.delete_artifact_version("g:v2")
    s.rename_registry("model", "models")
    s.edit_artifact("g", description="weights")
    text = cli("diff", "main..p").stdout
    assert "secure/d: renamed from secure/c; description \"\" → renamed" in text
    assert "registry models: renamed from model" in text
    assert "artifacts: - g:v2 deleted by" in text
    assert "artifacts: g: description \"\" → weights" in text
    assert "secure/c" not in text.replace("renamed from secure/c", "")
    kinds = {c["kind"] for c in json.loads(cli("diff", "main..p", "--format", "json").stdout)}
    assert {"collection.renamed", "registry.renamed", "artifact.deleted", "artifact.described"} <= kinds
    s.delete_collection("secure/d")
    text = cli("diff", "main..p").stdout
    assert "secure/c: collection deleted (with its links and aliases)" in text
