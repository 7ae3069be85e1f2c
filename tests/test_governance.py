"""Governance (issue 5): roles per registry, store admins, groups, organization visibility,
protected aliases, members, the role rule of `canonry validate`, CODEOWNERS and the audit log.

Real stores in tmp_path; identities switched with CANONRY_ACTOR; hand edits committed with the
git CLI as their author. Nothing mocked except the clock of the `--since` test.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from conftest import ACTOR_EMAIL, assert_one_line_error, git, git_status, head_of

import canonry
from canonry.errors import InvalidInput
from canonry.governance import RANK, PermissionDenied

ADA = ACTOR_EMAIL  # created the store: store admin, admin of every registry she creates
RADMIN = "radmin@example.com"  # admin of registry `secure` (not a store admin)
MEMBER = "member@example.com"
VIEWER = "viewer@example.com"
RV = "rv@example.com"  # restricted viewer
OUTSIDER = "outsider@example.com"  # no role in `secure`
BOSS = "boss@example.com"  # store admin, not a member of `secure`

# who -> (email, the role they hold in `secure`)
WHO = {
    "outsider": (OUTSIDER, None),
    "restricted_viewer": (RV, "restricted_viewer"),
    "viewer": (VIEWER, "viewer"),
    "member": (MEMBER, "member"),
    "admin": (RADMIN, "admin"),
    "store_admin": (BOSS, "admin"),
}

REGISTRY_YAML = "registries/secure/registry.yaml"
ALIASES_YAML = "registries/secure/c/aliases.yaml"


# ---- helpers ------------------------------------------------------------------------------------
def act_as(monkeypatch, store_path, email) -> canonry.store.Store:
    """The store opened as `email` (CANONRY_ACTOR stays set for later CLI calls too)."""
    monkeypatch.setenv("CANONRY_ACTOR", email)
    s = canonry.open(str(store_path))
    assert s.actor.actor == email
    return s


def author_of(path, rev="main") -> str:
    return git("-C", path, "log", "-1", "--format=%ae", rev).strip()


def build_roles(store, work: Path) -> None:
    """`secure`: restricted, accepts models; RADMIN admin, MEMBER member, VIEWER viewer, RV
    restricted viewer; BOSS a store admin. g:v0..v2 logged; secure/c:v0 [production, protected],
    secure/c:v1 [staging]; g:v2 unlinked."""
    store.create_registry("secure", "restricted models", types=["model"])
    for email, role in ((RADMIN, "admin"), (MEMBER, "member"), (VIEWER, "viewer"), (RV, "restricted_viewer")):
        store.set_member("secure", email, role)
    store.add_store_admin(BOSS)
    for i in range(3):
        f = work / f"weights{i}.bin"
        f.write_bytes(f"weights {i}\n".encode())
        store.log_artifact(str(f), name="g", type="model")
    store.link("g:v0", "secure/c", aliases=["production"])
    store.link("g:v1", "secure/c", aliases=["staging"])
    store.protect_alias("secure", "production")


@pytest.fixture
def roles(from_template):
    return from_template("governance-roles", build_roles)


AUTOMATION = [{"name": "notify", "on": "alias.added", "action": "webhook",
               "with": {"url": "http://127.0.0.1:9/hook"}}]

# name -> (minimum role (None: anyone, members or not), writes?, API call, CLI arguments)
# `out` is a directory that does not exist yet.
ACTIONS = {
    # see metadata
    "show": (None, False, lambda s, out: s.show("secure/c"), lambda out: ["show", "secure/c"]),
    "show-link": (None, False, lambda s, out: s.show("secure/c:production"),
                  lambda out: ["show", "secure/c:production", "--json"]),
    "ls": (None, False, lambda s, out: s.versions("secure/c"), lambda out: ["ls", "secure/c"]),
    "registry-show": (None, False, lambda s, out: s.registry("secure"), lambda out: ["registry", "show", "secure"]),
    # download files
    "get-link": ("viewer", False, lambda s, out: s.download("secure/c:production", out),
                 lambda out: ["get", "secure/c:production", "--to", out]),
    "get-artifact": ("viewer", False, lambda s, out: s.download("g:v0", out),
                     lambda out: ["get", "g:v0", "--to", out]),
    # link / unlink, tag, non-protected aliases, new collections
    "link": ("member", True, lambda s, out: s.link("g:v2", "secure/c"), lambda out: ["link", "g:v2", "secure/c"]),
    "create-collection": ("member", True, lambda s, out: s.link("g:v2", "secure/fresh"),
                          lambda out: ["link", "g:v2", "secure/fresh"]),
    "link-with-alias": ("member", True, lambda s, out: s.link("g:v2", "secure/c", aliases=["candidate"]),
                        lambda out: ["link", "g:v2", "secure/c", "--alias", "candidate"]),
    "tag-collection": ("member", True, lambda s, out: s.tag("secure/c", "reviewed"),
                       lambda out: ["tag", "add", "secure/c", "reviewed"]),
    "tag-version": ("member", True, lambda s, out: s.tag("secure/c:v1", "ok"),
                    lambda out: ["tag", "add", "secure/c:v1", "ok"]),
    "set-alias": ("member", True, lambda s, out: s.set_alias("secure/c:v1", "candidate"),
                  lambda out: ["alias", "set", "secure/c:v1", "candidate"]),
    "move-alias": ("member", True, lambda s, out: s.set_alias("secure/c:v0", "staging"),
                   lambda out: ["alias", "set", "secure/c:v0", "staging"]),
    "remove-alias": ("member", True, lambda s, out: s.remove_alias("secure/c", "staging"),
                     lambda out: ["alias", "rm", "secure/c", "staging"]),
    "unlink": ("member", True, lambda s, out: s.unlink("secure/c:v1"), lambda out: ["unlink", "secure/c:v1"]),
    # protected aliases
    "move-protected": ("admin", True, lambda s, out: s.set_alias("secure/c:v1", "production"),
                       lambda out: ["alias", "set", "secure/c:v1", "production"]),
    "remove-protected": ("admin", True, lambda s, out: s.remove_alias("secure/c", "production"),
                         lambda out: ["alias", "rm", "secure/c", "production"]),
    "link-with-protected": ("admin", True, lambda s, out: s.link("g:v2", "secure/c", aliases=["production"]),
                            lambda out: ["link", "g:v2", "secure/c", "--alias", "production"]),
    "unlink-protected": ("admin", True, lambda s, out: s.unlink("secure/c:v0"),
                         lambda out: ["unlink", "secure/c:v0"]),
    "unlink-protected-by-alias": ("admin", True, lambda s, out: s.unlink("secure/c:production"),
                                  lambda out: ["unlink", "secure/c:production"]),
    # settings
    "visibility": ("admin", True, lambda s, out: s.edit_registry("secure", visibility="organization"),
                   lambda out: ["registry", "edit", "secure", "--visibility", "organization"]),
    "add-type": ("admin", True, lambda s, out: s.edit_registry("secure", add_types=["dataset"]),
                 lambda out: ["registry", "edit", "secure", "--add-type", "dataset"]),
    "description": ("admin", True, lambda s, out: s.edit_registry("secure", description="new words"),
                    lambda out: ["registry", "edit", "secure", "--description", "new words"]),
    "protect": ("admin", True, lambda s, out: s.protect_alias("secure", "staging"),
                lambda out: ["registry", "protect", "secure", "staging"]),
    "unprotect": ("admin", True, lambda s, out: s.unprotect_alias("secure", "production"),
                  lambda out: ["registry", "unprotect", "secure", "production"]),
    "automations": ("admin", True, lambda s, out: s.set_automations(AUTOMATION, registry="secure"), None),
    # members
    "member-add": ("admin", True, lambda s, out: s.set_member("secure", "new@example.com", "viewer"),
                   lambda out: ["registry", "member", "add", "secure", "new@example.com", "--role", "viewer"]),
    "member-change": ("admin", True, lambda s, out: s.set_member("secure", VIEWER, "member"),
                      lambda out: ["registry", "member", "add", "secure", VIEWER, "--role", "member"]),
    "member-rm": ("admin", True, lambda s, out: s.remove_member("secure", MEMBER),
                  lambda out: ["registry", "member", "rm", "secure", MEMBER]),
}


def may(role: str | None, need: str | None) -> bool:
    return need is None or (role is not None and RANK[role] >= RANK[need])


# Operations that check two roles in turn (member to link or unlink, admin for the protected alias
# involved): refused at the first check, they name member. See
# test_a_refusal_names_the_role_the_whole_operation_needs for what they should name.
TWO_CHECKS = {"link-with-protected", "unlink-protected", "unlink-protected-by-alias"}


def assert_names_a_missing_role(message: str, email: str, role: str | None, need: str, action: str) -> None:
    """The refusal names the actor, their role, and the role the action needs."""
    assert email in message, message
    assert (f"has {role}" if role else "is not a member") in message, message
    named = message.split("that needs role ", 1)[1].split()[0]
    if action in TWO_CHECKS:
        assert named in RANK and RANK[named] <= RANK[need], message
        assert role is None or RANK[named] > RANK[role], message
    else:
        assert named == need, message


def assert_unchanged(store_path, before: str, out: Path) -> None:
    assert head_of(store_path) == before
    assert git_status(store_path) == ""
    assert not out.exists() or not any(out.iterdir()), "refused download left files behind"


# ---- the role table ------------------------------------------------------------------------------------
# One store per identity: after each allowed change the branch, index and files are reset to the
# template's state (`git reset --hard`), so every action starts from the same store.
def _reset(store_path, before: str, out: Path) -> None:
    if head_of(store_path) != before:
        git("-C", store_path, "reset", "-q", "--hard", before)
    if out.exists():
        import shutil

        shutil.rmtree(out)


def _api_row(s, store_path, out, email, role, action) -> None:
    need, writes, call, _ = ACTIONS[action]
    assert s.role("secure") == role
    before = head_of(store_path)
    if may(role, need):
        call(s, out)
        if writes:
            # one commit, on top of the one before, by the actor
            assert git("-C", store_path, "log", "-1", "--format=%P %ae", "main").split() == [before, email]
            assert git_status(store_path) == ""
            assert s.validate(f"{before}..main") == []  # allowed at the parent: no role finding
        else:
            assert head_of(store_path) == before
        if action.startswith("get-"):
            assert (out / "weights0.bin").read_bytes() == b"weights 0\n"
    else:
        with pytest.raises(PermissionDenied) as e:
            call(s, out)
        assert_names_a_missing_role(str(e.value), email, role, need, action)
        assert "\n" not in str(e.value)
        assert_unchanged(store_path, before, out)


def _cli_row(store_path, out, monkeypatch, run_cli, email, role, action) -> None:
    need, writes, _, args = ACTIONS[action]
    monkeypatch.setenv("CANONRY_ACTOR", email)
    before = head_of(store_path)
    r = run_cli("-C", store_path, *args(out))
    if may(role, need):
        assert r.exit_code == 0, r
        assert r.stderr == ""
        assert (head_of(store_path) != before) == writes
        if writes:
            assert author_of(store_path) == email
            assert git_status(store_path) == ""
        if action.startswith("get-"):
            assert (out / "weights0.bin").read_bytes() == b"weights 0\n"
    else:
        line = assert_one_line_error(r, 1, contains=(email, "that needs role "))
        assert line.startswith("canonry: error: ")
        assert_names_a_missing_role(line, email, role, need, action)
        assert_unchanged(store_path, before, out)


@pytest.mark.parametrize("who", list(WHO))
def test_role_table_api(roles, store_path, tmp_path, monkeypatch, who):
    """Every action of the role table through the API: allowed (one commit by the actor, which
    validate accepts) or refused (PermissionDenied naming the role needed; store unchanged)."""
    email, role = WHO[who]
    out = tmp_path / "out"
    start = head_of(store_path)
    s = act_as(monkeypatch, store_path, email)
    failed = []
    for action in ACTIONS:
        try:
            _api_row(s, store_path, out, email, role, action)
        except (Exception, pytest.fail.Exception) as e:  # collect every row, report them all
            failed.append(f"{who} {action}: {type(e).__name__}: {e}")
        _reset(store_path, start, out)
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("who", list(WHO))
def test_role_table_cli(roles, store_path, tmp_path, monkeypatch, run_cli, who):
    """The same through the CLI: exit 0, or exit 1 with one line naming the role needed."""
    email, role = WHO[who]
    out = tmp_path / "out"
    start = head_of(store_path)
    failed = []
    for action, spec in ACTIONS.items():
        if spec[3] is None:
            continue
        try:
            _cli_row(store_path, out, monkeypatch, run_cli, email, role, action)
        except (Exception, pytest.fail.Exception) as e:
            failed.append(f"{who} {action}: {type(e).__name__}: {e}")
        _reset(store_path, start, out)
    assert not failed, "\n".join(failed)


def test_restricted_viewer_sees_metadata_but_get_is_refused_naming_viewer(roles, store_path, tmp_path,
                                                                          monkeypatch, run_cli):
    monkeypatch.setenv("CANONRY_ACTOR", RV)
    shown = run_cli("-C", store_path, "show", "secure/c:production", "--json")
    assert shown.exit_code == 0, shown
    data = shown.json()
    assert data["artifact"] == "g:v0" and "production" in data["aliases"]
    assert data["artifact_version"]["files"][0]["path"] == "weights0.bin"
    listed = run_cli("-C", store_path, "ls", "secure/c", "--json")
    assert [v["version"] for v in listed.json()] == ["v0", "v1"]
    for target in ("secure/c:production", "secure/c:v1", "g:v0"):
        r = run_cli("-C", store_path, "get", target, "--to", tmp_path / "out")
        line = assert_one_line_error(r, 1, contains=("restricted_viewer", "that needs role viewer",
                                                     "registry secure"))
        assert line == (f"canonry: error: {RV} may not download files in registry secure: that needs "
                        f"role viewer ({RV} has restricted_viewer)")
    assert not (tmp_path / "out" / "weights0.bin").exists()


def test_a_refusal_names_the_role_the_whole_operation_needs(roles, store_path, monkeypatch):
    """Unlinking a version that holds a protected alias needs admin: a viewer told "that needs
    role member" would get member, try again, and be refused a second time."""
    s = act_as(monkeypatch, store_path, VIEWER)
    with pytest.raises(PermissionDenied) as e:
        s.unlink("secure/c:production")
    assert "that needs role admin" in str(e.value)
    with pytest.raises(PermissionDenied) as e:
        s.link("g:v2", "secure/c", aliases=["production"])
    assert "that needs role admin" in str(e.value)


def test_refusals_name_the_detail(roles, store_path, monkeypatch):
    s = act_as(monkeypatch, store_path, MEMBER)
    with pytest.raises(PermissionDenied) as e:
        s.unlink("secure/c:v0")
    assert str(e.value) == (f"{MEMBER} may not add or remove a protected alias (unlinking secure/c:v0 "
                            f"removes production) in registry secure: that needs role admin "
                            f"({MEMBER} has member)")
    with pytest.raises(PermissionDenied) as e:
        s.set_alias("secure/c:v1", "production")
    assert "protected alias (production)" in str(e.value)


def test_unprotected_alias_becomes_free_for_members_again(roles, store_path, monkeypatch):
    member = act_as(monkeypatch, store_path, MEMBER)
    with pytest.raises(PermissionDenied):
        member.set_alias("secure/c:v1", "production")
    act_as(monkeypatch, store_path, RADMIN).unprotect_alias("secure", "production")
    member.set_alias("secure/c:v1", "production")
    assert member.collection("secure/c").aliases["production"] == "v1"
    # and a newly protected alias is closed to members at once
    act_as(monkeypatch, store_path, RADMIN).protect_alias("secure", "staging")
    with pytest.raises(PermissionDenied):
        member.remove_alias("secure/c", "staging")


# ---- store admins, organization visibility, default roles, groups -------------------------------------
def test_store_admins_are_admins_everywhere(roles, store_path, monkeypatch, run_cli, make_file):
    # a registry BOSS never joined, created by someone else
    other = act_as(monkeypatch, store_path, OUTSIDER)
    other.create_registry("private")
    assert other.role("private") == "admin"  # the creator is its first admin
    assert other.registry("private").members == {OUTSIDER: "admin"}
    assert other.role("private", BOSS) == "admin" and other.role("private", ADA) == "admin"
    assert other.role("private", MEMBER) is None
    boss = act_as(monkeypatch, store_path, BOSS)
    boss.link("g:v2", "private/c", aliases=["production"])
    boss.protect_alias("private", "production")
    boss.set_member("private", VIEWER, "viewer")
    r = run_cli("-C", store_path, "registry", "member", "list", "private", "--json")
    rows = {(x["member"], x["role"], x["source"]) for x in r.json()}
    assert {(OUTSIDER, "admin", "registry"), (VIEWER, "viewer", "registry"),
            (ADA, "admin", "store admin"), (BOSS, "admin", "store admin")} == rows
    # a store admin removed is an admin no more
    act_as(monkeypatch, store_path, ADA).remove_store_admin(BOSS)
    boss = act_as(monkeypatch, store_path, BOSS)
    assert boss.role("private") is None
    with pytest.raises(PermissionDenied):
        boss.tag("private/c", "x")


def test_store_admin_commands_need_a_store_admin(roles, store_path, monkeypatch, run_cli):
    monkeypatch.setenv("CANONRY_ACTOR", RADMIN)  # admin of a registry, not of the store
    before = head_of(store_path)
    for args in (("admin", "add", RADMIN), ("admin", "rm", ADA), ("group", "team", RADMIN)):
        assert_one_line_error(run_cli("-C", store_path, *args), 1,
                              contains=(RADMIN, "that needs a store admin", ADA, BOSS))
    assert head_of(store_path) == before
    monkeypatch.setenv("CANONRY_ACTOR", ADA)
    r = run_cli("-C", store_path, "admin", "add", RADMIN, "--json")
    assert r.exit_code == 0, r
    assert r.json() == {"admins": [ADA, BOSS, RADMIN]}
    assert yaml.safe_load(git("-C", store_path, "show", "main:canonry.yaml"))["admins"] == [ADA, BOSS, RADMIN]
    # idempotent: nothing changes, no commit
    head = head_of(store_path)
    assert run_cli("-C", store_path, "admin", "add", RADMIN).exit_code == 0
    assert head_of(store_path) == head
    assert run_cli("-C", store_path, "admin", "rm", RADMIN).exit_code == 0
    assert run_cli("-C", store_path, "admin", "rm", BOSS).exit_code == 0
    line = assert_one_line_error(run_cli("-C", store_path, "admin", "rm", ADA), 1,
                                 contains=("last store admin",))
    assert line == "canonry: error: cannot remove the last store admin"
    assert_one_line_error(run_cli("-C", store_path, "admin", "add", "not-an-email"), 1,
                          contains=("invalid member",))


def test_organization_visibility_makes_everyone_a_viewer(store, store_path, cli, monkeypatch, model_file,
                                                         tmp_path):
    store.log_artifact(str(model_file), name="gemma", type="model")
    r = cli("registry", "create", "shared", "--visibility", "organization")
    assert r.exit_code == 0, r
    assert store.registry("shared").visibility == "organization"
    assert store.role("shared", OUTSIDER) == "viewer"
    assert cli("link", "gemma:v0", "shared/c", "--alias", "best").exit_code == 0
    monkeypatch.setenv("CANONRY_ACTOR", OUTSIDER)
    got = cli("get", "shared/c:best", "--to", tmp_path / "out")
    assert got.exit_code == 0, got
    assert (tmp_path / "out" / "my_model.txt").read_bytes() == model_file.read_bytes()
    before = head_of(store_path)
    for args in (("link", "gemma:v0", "shared/d"), ("tag", "add", "shared/c", "x"),
                 ("alias", "set", "shared/c:v0", "staging")):
        assert_one_line_error(cli(*args), 1, contains=(f"that needs role member ({OUTSIDER} has viewer)",))
    assert head_of(store_path) == before
    # an explicit role above the default wins; restricted_viewer below it does not take it away
    monkeypatch.setenv("CANONRY_ACTOR", ADA)
    assert cli("registry", "member", "add", "shared", OUTSIDER, "--role", "member").exit_code == 0
    assert cli("registry", "member", "add", "shared", VIEWER, "--role", "restricted_viewer").exit_code == 0
    assert store.role("shared", OUTSIDER) == "member" and store.role("shared", VIEWER) == "viewer"
    listed = cli("registry", "member", "list", "shared", "--json").json()
    assert {"member": "everyone", "role": "viewer", "source": "organization visibility"} in listed
    # back to restricted: the non-member loses access to the files
    assert cli("registry", "edit", "shared", "--visibility", "restricted").exit_code == 0
    assert store.role("shared", "nobody@example.com") is None
    monkeypatch.setenv("CANONRY_ACTOR", "nobody@example.com")
    assert_one_line_error(cli("get", "shared/c:best", "--to", tmp_path / "out2"), 1,
                          contains=("that needs role viewer (nobody@example.com is not a member)",))


def test_core_registries_let_everyone_promote_but_not_govern(store, store_path, monkeypatch, model_file):
    assert store.registry("model").visibility == "organization"
    assert store.registry("model").members == {ADA: "admin"}
    s = act_as(monkeypatch, store_path, OUTSIDER)
    assert s.role("model") == "member" and s.role("dataset") == "member"
    v = s.log_artifact(str(model_file), name="gemma", type="model")
    s.link(v.address, "model/first", aliases=["staging"])
    s.set_alias("model/first:v0", "production")
    for call in (lambda: s.protect_alias("model", "production"),
                 lambda: s.edit_registry("model", add_types=["code"]),
                 lambda: s.set_member("model", OUTSIDER, "admin")):
        with pytest.raises(PermissionDenied, match="that needs role admin"):
            call()
    act_as(monkeypatch, store_path, ADA).protect_alias("model", "production")
    with pytest.raises(PermissionDenied, match="that needs role admin"):
        s.remove_alias("model/first", "production")
    s.remove_alias("model/first", "staging")


def test_group_members_get_the_group_role(roles, store_path, monkeypatch, cli, run_cli):
    monkeypatch.setenv("CANONRY_ACTOR", ADA)
    r = cli("group", "team", "a@example.com", "b@example.com", "--json")
    assert r.exit_code == 0, r
    assert r.json() == {"groups": {"team": ["a@example.com", "b@example.com"]}}
    assert cli("registry", "member", "add", "secure", "group:team", "--role", "member").exit_code == 0
    a = act_as(monkeypatch, store_path, "a@example.com")
    assert a.role("secure") == "member"
    assert a.role("secure", "c@example.com") is None
    assert a.link("g:v2", "secure/c").version == "v2"
    monkeypatch.setenv("CANONRY_ACTOR", "c@example.com")
    assert_one_line_error(cli("tag", "add", "secure/c", "x"), 1,
                          contains=("that needs role member (c@example.com is not a member)",))
    # the better of a personal role and a group role counts
    monkeypatch.setenv("CANONRY_ACTOR", ADA)
    assert cli("group", "readers", VIEWER, "b@example.com").exit_code == 0
    assert cli("registry", "member", "add", "secure", "group:readers", "--role", "viewer").exit_code == 0
    assert a.role("secure", "b@example.com") == "member"
    assert a.role("secure", RV) == "restricted_viewer"
    # a group made admin gives admin rights; redefining the group takes them away
    assert cli("registry", "member", "add", "secure", "group:team", "--role", "admin").exit_code == 0
    act_as(monkeypatch, store_path, "b@example.com").protect_alias("secure", "staging")
    monkeypatch.setenv("CANONRY_ACTOR", ADA)
    r = cli("group", "team", "a@example.com")
    assert r.exit_code == 0 and "group team: a@example.com" in r.stdout
    b = act_as(monkeypatch, store_path, "b@example.com")
    assert b.role("secure") == "viewer"  # still in readers
    with pytest.raises(PermissionDenied):
        b.unprotect_alias("secure", "staging")
    # no emails removes the group
    monkeypatch.setenv("CANONRY_ACTOR", ADA)
    assert cli("group", "readers").exit_code == 0
    assert "readers" not in yaml.safe_load(git("-C", store_path, "show", "main:canonry.yaml"))["groups"]
    assert b.role("secure") is None
    assert_one_line_error(cli("group", "bad..name", "a@example.com"), 1)
    assert_one_line_error(cli("group", "ok", "not an email"), 1, contains=("invalid member",))


# ---- members and protected aliases -------------------------------------------------------------------
def test_member_add_list_change_rm(store, store_path, cli):
    assert cli("registry", "create", "team").exit_code == 0
    r = cli("registry", "member", "add", "team", "bob@example.com", "--role", "viewer")
    assert r.exit_code == 0, r
    assert r.stdout == "bob@example.com is viewer in registry team\n"
    r = cli("registry", "member", "add", "team", "bob@example.com", "--role", "member", "--json")
    assert r.json() == {"registry": "team", "member": "bob@example.com", "before": "viewer", "after": "member"}
    head = head_of(store_path)
    r = cli("registry", "member", "add", "team", "bob@example.com", "--role", "member")
    assert r.exit_code == 0 and "already is member" in r.stdout
    assert head_of(store_path) == head  # no change, no commit
    r = cli("registry", "member", "add", "team", "carol@example.com", "--role", "restricted-viewer")
    assert r.exit_code == 0, r
    assert store.registry("team").members == {ADA: "admin", "bob@example.com": "member",
                                              "carol@example.com": "restricted_viewer"}
    r = cli("registry", "member", "list", "team")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["MEMBER", "ROLE", "FROM"]
    assert ["bob@example.com", "member", "registry"] in [line.split() for line in lines]
    assert ["carol@example.com", "restricted_viewer", "registry"] in [line.split() for line in lines]
    r = cli("registry", "member", "rm", "team", "bob@example.com")
    assert r.exit_code == 0 and r.stdout == "removed bob@example.com (member) from registry team\n"
    assert "bob@example.com" not in store.registry("team").members
    on_disk = yaml.safe_load(git("-C", store_path, "show", "main:registries/team/registry.yaml"))
    assert on_disk["members"] == {ADA: "admin", "carol@example.com": "restricted_viewer"}
    assert git_status(store_path) == ""
    assert store.validate() == []


def test_member_errors_are_one_line(store, store_path, cli):
    assert cli("registry", "create", "team").exit_code == 0
    before = head_of(store_path)
    line = assert_one_line_error(cli("registry", "member", "add", "team", "bob@example.com", "--role", "owner"),
                                 2, contains=("--role",))
    assert "owner" in line
    for bad in ("bob", "bob smith@example.com", "group:bad..name"):
        assert_one_line_error(cli("registry", "member", "add", "team", bad, "--role", "viewer"), 1,
                              contains=("invalid",))
    assert_one_line_error(cli("registry", "member", "rm", "team", "nobody@example.com"), 1,
                          contains=("nobody@example.com",))
    assert_one_line_error(cli("registry", "member", "add", "nope", "bob@example.com", "--role", "viewer"), 1,
                          contains=("nope",))
    assert head_of(store_path) == before
    # the API checks the role too (click is not the only gate)
    with pytest.raises(InvalidInput, match="invalid role 'owner'"):
        store.set_member("team", "bob@example.com", "owner")
    assert head_of(store_path) == before


def test_missing_role_is_a_one_line_usage_error(store, store_path, cli):
    """Without --role, click lists the choices over several lines: canonry's errors are one line."""
    assert cli("registry", "create", "team").exit_code == 0
    before = head_of(store_path)
    assert_one_line_error(cli("registry", "member", "add", "team", "bob@example.com"), 2, contains=("--role",))
    assert head_of(store_path) == before


def test_removing_the_last_admin(store, store_path, cli, monkeypatch):
    """Store admins are never all removed; a registry may drop its last own admin only while
    store admins remain (they govern it); without store admins it may not."""
    assert cli("registry", "create", "team").exit_code == 0
    assert cli("registry", "member", "add", "team", "bob@example.com", "--role", "member").exit_code == 0
    r = cli("registry", "member", "rm", "team", ADA)
    assert r.exit_code == 0, r  # ADA stays admin of `team` as a store admin
    assert store.role("team", ADA) == "admin"
    assert cli("registry", "member", "add", "team", ADA, "--role", "admin").exit_code == 0
    # a store with no store admins (canonry.yaml edited by hand)
    path = Path(store_path) / "canonry.yaml"
    config = yaml.safe_load(path.read_text())
    del config["admins"]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    git("-C", store_path, "commit", "-q", "-am", "no store admins")
    assert store.role("team", "bob@example.com") == "member"
    before = head_of(store_path)
    line = assert_one_line_error(cli("registry", "member", "rm", "team", ADA), 1, contains=("no admin left",))
    assert line == f"canonry: error: cannot remove {ADA}: registry team would have no admin left"
    assert head_of(store_path) == before
    assert store.registry("team").members[ADA] == "admin"
    # other admins may leave while one remains
    assert cli("registry", "member", "add", "team", "bob@example.com", "--role", "admin").exit_code == 0
    assert cli("registry", "member", "rm", "team", "bob@example.com").exit_code == 0


def _store_without_admins(store, store_path, cli):
    assert cli("registry", "create", "team").exit_code == 0
    path = Path(store_path) / "canonry.yaml"
    config = yaml.safe_load(path.read_text())
    del config["admins"]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    git("-C", store_path, "commit", "-q", "-am", "no store admins")


def test_demoting_the_last_admin_is_refused_like_removing_them(store, store_path, cli):
    """Changing the last admin's role to member leaves the registry without an admin just as
    removing them does: nobody could manage its members or settings any more."""
    _store_without_admins(store, store_path, cli)
    before = head_of(store_path)
    assert_one_line_error(cli("registry", "member", "add", "team", ADA, "--role", "member"), 1,
                          contains=("no admin left",))
    assert head_of(store_path) == before
    assert store.registry("team").members[ADA] == "admin"


def test_protect_and_unprotect(linked, store_path, cli):
    r = cli("registry", "protect", "model", "production")
    assert r.exit_code == 0 and r.stdout == "protected aliases of model: production\n"
    head = head_of(store_path)
    r = cli("registry", "protect", "model", "production")
    assert r.exit_code == 0 and r.stdout == "production already is protected in model\n"
    assert head_of(store_path) == head
    assert cli("registry", "protect", "model", "champion").exit_code == 0
    shown = cli("registry", "show", "model", "--json").json()
    assert shown["protected_aliases"] == ["champion", "production"]
    r = cli("registry", "unprotect", "model", "champion", "--json")
    assert r.json() == {"registry": "model", "protected_aliases": ["production"], "changed": True}
    r = cli("registry", "unprotect", "model", "champion")
    assert r.exit_code == 0 and r.stdout == "champion is not protected in model\n"
    for bad in ("v3", "latest", "no spaces"):
        assert_one_line_error(cli("registry", "protect", "model", bad), 1)
    assert_one_line_error(cli("registry", "protect", "nope", "production"), 1, contains=("nope",))
    on_disk = yaml.safe_load(git("-C", store_path, "show", "main:registries/model/registry.yaml"))
    assert on_disk["protected_aliases"] == ["production"]
    assert linked.validate() == []


def test_registry_edit_types_grow_never_shrink(roles, store_path, monkeypatch, run_cli):
    monkeypatch.setenv("CANONRY_ACTOR", RADMIN)
    r = run_cli("-C", store_path, "registry", "edit", "secure", "--add-type", "dataset", "--json")
    assert r.exit_code == 0, r
    assert r.json()["types"] == ["model", "dataset"] and r.json()["changed"] is True
    s = act_as(monkeypatch, store_path, RADMIN)
    with pytest.raises(InvalidInput, match="never shrink"):
        s.edit_registry("secure", types=["model"])
    assert s.registry("secure").types == ["model", "dataset"]


# ---- validate: nobody grants themselves a role and uses it in one change ------------------------------
def _edit_yaml(store_path, rel, change):
    path = Path(store_path) / rel
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _commit_as(store_path, email, message) -> str:
    git("-C", store_path, "add", "-A")
    git("-C", store_path, "-c", "user.name=Hand", "-c", f"user.email={email}", "commit", "-q", "-m", message)
    return git("-C", store_path, "rev-parse", "HEAD").strip()


def _grant(email, role):
    def change(reg):
        reg["members"][email] = role
    return change


def _move_staging(aliases):
    aliases["aliases"]["staging"] = "v0"


def test_validate_catches_granting_oneself_a_role_in_the_same_commit(roles, store_path, run_cli):
    _edit_yaml(store_path, REGISTRY_YAML, _grant(VIEWER, "admin"))
    _edit_yaml(store_path, ALIASES_YAML, _move_staging)
    commit = _commit_as(store_path, VIEWER, "make me admin and promote")
    r = run_cli("-C", store_path, "validate", "main~1..main")
    assert r.exit_code == 1, r
    lines = r.stdout.splitlines()
    role_lines = [line for line in lines if ": role: " in line]
    assert len(role_lines) == 2, lines
    assert any(line.startswith(f"{commit[:10]} {REGISTRY_YAML}: role: {VIEWER} may not manage members")
               for line in role_lines), role_lines
    assert any(line.startswith(f"{commit[:10]} {ALIASES_YAML}: role: {VIEWER} may not set or remove aliases")
               for line in role_lines), role_lines
    assert all("at the parent commit" in line and f"{VIEWER} has viewer" in line for line in role_lines)
    found = run_cli("-C", store_path, "validate", "main~1..main", "--json").json()
    assert found["ok"] is False
    assert {(f["commit"], f["path"], f["rule"]) for f in found["findings"]} == {
        (commit, REGISTRY_YAML, "role"), (commit, ALIASES_YAML, "role")}


def test_validate_catches_the_grant_when_it_is_used_in_the_next_commit(roles, store_path):
    base = head_of(store_path)
    _edit_yaml(store_path, REGISTRY_YAML, _grant(VIEWER, "admin"))
    grant = _commit_as(store_path, VIEWER, "make me admin")
    _edit_yaml(store_path, ALIASES_YAML, _move_staging)
    _commit_as(store_path, VIEWER, "promote")
    store = canonry.open(str(store_path))
    report = store.validate(f"{base}..main")
    assert [(f.commit, f.path, f.rule) for f in report] == [(grant, REGISTRY_YAML, "role")]
    assert "needs role admin" in report[0].message and f"{VIEWER} has viewer" in report[0].message
    assert report.checked_commits == 2


def test_validate_role_rule_on_a_branch_and_for_the_store_file(roles, store_path, run_cli):
    git("-C", store_path, "checkout", "-q", "-b", "sneaky")
    _edit_yaml(store_path, "canonry.yaml", lambda c: c["admins"].append(MEMBER))
    _edit_yaml(store_path, "registries/secure/c/collection.yaml", lambda c: c["tags"].append("hot"))
    commit = _commit_as(store_path, MEMBER, "make me a store admin")
    r = run_cli("-C", store_path, "validate", "main..sneaky", "--json")
    assert r.exit_code == 1, r
    findings = {(f["commit"], f["path"], f["rule"]) for f in r.json()["findings"]}
    assert findings == {(commit, "canonry.yaml", "role")}  # the tag itself is fine for a member
    # A next commit using the grant is judged by the rules at its parent, where MEMBER already is a
    # store admin: it passes. The finding on the grant is what makes the range fail review.
    _edit_yaml(store_path, ALIASES_YAML, lambda a: a["aliases"].update(production="v1"))
    promoted = _commit_as(store_path, MEMBER, "promote")
    r = run_cli("-C", store_path, "validate", "main..sneaky", "--json")
    findings = {(f["commit"], f["path"], f["rule"]) for f in r.json()["findings"]}
    assert findings == {(commit, "canonry.yaml", "role")}  # the grant is what review must refuse
    r = run_cli("-C", store_path, "validate", "sneaky~1..sneaky")
    assert r.exit_code == 0, r  # checked alone, the promotion is legitimate: validate whole ranges
    assert promoted


def test_validate_role_rule_counts_group_roles(roles, store_path, monkeypatch):
    ada = act_as(monkeypatch, store_path, ADA)
    ada.set_group("team", ["t1@example.com"])
    ada.set_member("secure", "group:team", "member")
    base = head_of(store_path)
    _edit_yaml(store_path, ALIASES_YAML, _move_staging)
    _commit_as(store_path, "t1@example.com", "stage v0")  # a member through the group
    _edit_yaml(store_path, "registries/secure/c/collection.yaml", lambda c: c["tags"].append("hot"))
    tagged = _commit_as(store_path, RV, "tag it")  # a restricted viewer may not
    report = canonry.open(str(store_path)).validate(f"{base}..main")
    assert [(f.commit, f.path, f.rule) for f in report] == [
        (tagged, "registries/secure/c/collection.yaml", "role")]
    assert f"{RV} has restricted_viewer" in report[0].message


def test_validate_catches_removing_a_registry_without_the_role(roles, store_path, monkeypatch):
    """Deleting a registry's settings is the largest settings edit of all: it drops its members
    and protected aliases, and lets the next commit create the registry afresh with its author
    as admin (a created registry is not role-checked). It needs admin like any settings edit."""
    act_as(monkeypatch, store_path, ADA).create_registry("plain")
    git("-C", store_path, "rm", "-q", "registries/plain/registry.yaml")
    dropped = _commit_as(store_path, OUTSIDER, "drop plain")
    report = canonry.open(str(store_path)).validate("main~1..main")
    assert [(f.commit, f.path, f.rule) for f in report] == [(dropped, "registries/plain/registry.yaml", "role")]


def test_validate_passes_a_legitimate_change_by_an_admin(roles, store_path, run_cli):
    _edit_yaml(store_path, REGISTRY_YAML, _grant(VIEWER, "member"))
    _edit_yaml(store_path, ALIASES_YAML, lambda a: a["aliases"].update(production="v1"))  # protected
    _commit_as(store_path, RADMIN, "promote v1; viewer becomes member")
    # and then the new member uses the role the admin gave them
    _edit_yaml(store_path, ALIASES_YAML, _move_staging)
    _commit_as(store_path, VIEWER, "stage v0")
    r = run_cli("-C", store_path, "validate", "main~2..main")
    assert r.exit_code == 0, r
    assert r.stdout == "" and r.stderr == "validate: ok: checked 2 commits of main~2..main\n"


def test_validate_role_rule_protected_alias_by_a_member(roles, store_path):
    _edit_yaml(store_path, ALIASES_YAML, lambda a: a["aliases"].update(production="v1"))
    commit = _commit_as(store_path, MEMBER, "promote without review")
    report = canonry.open(str(store_path)).validate("main~1..main")
    assert [(f.commit, f.path, f.rule) for f in report] == [(commit, ALIASES_YAML, "role")]
    assert "needs role admin" in report[0].message


def test_validate_role_rule_for_canonry_commits_made_when_allowed(roles, store_path, monkeypatch):
    """Commits canonry made after checking the role pass the rule, whoever made them."""
    base = head_of(store_path)
    act_as(monkeypatch, store_path, MEMBER).set_alias("secure/c:v0", "staging")
    act_as(monkeypatch, store_path, RADMIN).set_member("secure", VIEWER, "member")
    act_as(monkeypatch, store_path, VIEWER).tag("secure/c", "now-a-member")
    assert canonry.open(str(store_path)).validate(f"{base}..main") == []


# ---- CODEOWNERS -------------------------------------------------------------------------------------
def owners(text: str) -> dict[str, set[str]]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            path, *people = line.split()
            assert path not in out, f"{path} twice"
            out[path] = set(people)
    return out


def test_codeowners_maps_folders_to_who_may_change_them(roles, store_path, monkeypatch, cli, tmp_path):
    monkeypatch.setenv("CANONRY_ACTOR", ADA)
    assert cli("group", "leads", "lead1@example.com", "lead2@example.com").exit_code == 0
    assert cli("group", "team", "t1@example.com").exit_code == 0
    assert cli("registry", "member", "add", "secure", "group:leads", "--role", "admin").exit_code == 0
    assert cli("registry", "member", "add", "secure", "group:team", "--role", "member").exit_code == 0
    assert cli("registry", "create", "plain").exit_code == 0  # restricted, no protected aliases
    assert cli("registry", "create", "open", "--visibility", "organization").exit_code == 0
    r = cli("codeowners")
    assert r.exit_code == 0, r
    got = owners(r.stdout)
    admins = {ADA, BOSS, RADMIN, "lead1@example.com", "lead2@example.com"}
    assert got == {
        "/canonry.yaml": {ADA, BOSS},
        "/registries/secure/": admins | {MEMBER, "t1@example.com"},  # no viewers
        "/registries/secure/registry.yaml": admins,
        "/registries/secure/*/aliases.yaml": admins,  # it protects production
        "/registries/plain/": {ADA, BOSS},
        "/registries/plain/registry.yaml": {ADA, BOSS},
        "/registries/open/": {ADA, BOSS},  # organization, default viewer: only writers own it
        "/registries/open/registry.yaml": {ADA, BOSS},
        "/registries/model/registry.yaml": {ADA, BOSS},  # everyone may promote in model: no folder line
        "/registries/dataset/registry.yaml": {ADA, BOSS},
    }
    # later lines win in CODEOWNERS: each registry's specific lines follow its folder line
    paths = [line.split()[0] for line in r.stdout.splitlines() if line and not line.startswith("#")]
    assert paths.index("/registries/secure/") < paths.index("/registries/secure/registry.yaml") \
        < paths.index("/registries/secure/*/aliases.yaml")
    assert "# protected aliases: production" in r.stdout.splitlines()
    # -o writes the file (creating folders), says so, prints nothing else
    dest = tmp_path / "repo" / ".github" / "CODEOWNERS"
    w = cli("codeowners", "-o", dest)
    assert w.exit_code == 0, w
    assert w.stdout == f"wrote {dest}\n"
    assert dest.read_text() == r.stdout
    # unprotecting production drops the aliases.yaml line; removing a member changes the folder
    assert cli("registry", "unprotect", "secure", "production").exit_code == 0
    assert cli("registry", "member", "rm", "secure", MEMBER).exit_code == 0
    got = owners(cli("codeowners").stdout)
    assert "/registries/secure/*/aliases.yaml" not in got
    assert MEMBER not in got["/registries/secure/"]


def test_codeowners_of_a_prefix_store_uses_its_folder(tmp_path, run_cli, monkeypatch):
    repo = tmp_path / "product"
    git("init", "-q", "-b", "trunk", repo)
    (repo / "app.py").write_text("print('hi')\n")
    git("-C", repo, "add", "-A")
    git("-C", repo, "commit", "-q", "-m", "code")
    r = run_cli("init", repo, "--prefix", "registry/")
    assert r.exit_code == 0, r
    assert run_cli("-C", repo, "registry", "create", "vision").exit_code == 0
    assert run_cli("-C", repo, "registry", "protect", "vision", "production").exit_code == 0
    r = run_cli("-C", repo, "codeowners")
    assert r.exit_code == 0, r
    got = owners(r.stdout)
    assert got == {
        "/registry/canonry.yaml": {ADA},
        "/registry/registries/vision/": {ADA},
        "/registry/registries/vision/registry.yaml": {ADA},
        "/registry/registries/vision/*/aliases.yaml": {ADA},
        "/registry/registries/model/registry.yaml": {ADA},
        "/registry/registries/dataset/registry.yaml": {ADA},
    }
    # the paths name real files of the repository
    files = git("-C", repo, "ls-tree", "-r", "--name-only", "trunk").split()
    assert "registry/canonry.yaml" in files and "registry/registries/vision/registry.yaml" in files


# ---- audit and history ---------------------------------------------------------------------------------
def _people_work(roles, store_path, monkeypatch):
    act_as(monkeypatch, store_path, MEMBER).set_alias("secure/c:v0", "staging")
    act_as(monkeypatch, store_path, RADMIN).set_member("secure", VIEWER, "member")
    act_as(monkeypatch, store_path, OUTSIDER).link("g:v2", "model/other")
    act_as(monkeypatch, store_path, VIEWER).tag("secure/c", "reviewed")


def test_audit_json_lists_everyones_changes_newest_first(roles, store_path, monkeypatch, run_cli):
    _people_work(roles, store_path, monkeypatch)
    r = run_cli("-C", store_path, "audit", "--json")
    assert r.exit_code == 0, r
    entries = r.json()
    assert [(e["actor"], e["op"]) for e in entries[:4]] == [
        (VIEWER, "tag.add"), (OUTSIDER, "link"), (RADMIN, "member.set"), (MEMBER, "alias.set")]
    assert entries[0]["target"] == "secure/c" and entries[0]["after"] == ["reviewed"]
    assert entries[2]["target"] == "secure"  # the member is named on each side
    assert (entries[2]["before"], entries[2]["after"]) == ({VIEWER: "viewer"}, {VIEWER: "member"})
    assert entries[3]["target"] == "secure/c:staging" and (entries[3]["before"], entries[3]["after"]) == ("v1", "v0")
    assert entries[-1]["op"] in ("init", "registry.create") and entries[-1]["actor"] == ADA
    times = [e["time"] for e in entries]
    assert times == sorted(times, reverse=True)
    commits = git("-C", store_path, "rev-list", "main").split()
    assert list(dict.fromkeys(e["commit"] for e in entries)) == commits  # every commit, newest first
    assert {e["actor"] for e in entries} == {ADA, MEMBER, RADMIN, OUTSIDER, VIEWER}
    # the table form
    table = run_cli("-C", store_path, "audit")
    assert table.exit_code == 0
    first = table.stdout.splitlines()[1]
    assert VIEWER in first and "tag.add" in first


def test_audit_filters_by_registry_and_actor(roles, store_path, monkeypatch, run_cli):
    _people_work(roles, store_path, monkeypatch)
    by_registry = run_cli("-C", store_path, "audit", "--registry", "model", "--json").json()
    # in `model`: OUTSIDER's link (which created model/other), then the store's creation of `model`
    assert [(e["actor"], e["op"], e["target"]) for e in by_registry] == [
        (OUTSIDER, "link", "model/other:v0"), (ADA, "registry.create", "model")]
    secure = run_cli("-C", store_path, "audit", "--registry", "secure", "--json").json()
    assert secure and all(e["target"].split("/")[0].split(":")[0] == "secure" for e in secure)
    assert {"tag.add", "member.set", "alias.set", "registry.protect", "registry.create"} <= {e["op"] for e in secure}
    by_actor = run_cli("-C", store_path, "audit", "--actor", MEMBER, "--json").json()
    assert [(e["actor"], e["op"]) for e in by_actor] == [(MEMBER, "alias.set")]
    both = run_cli("-C", store_path, "audit", "--actor", OUTSIDER, "--registry", "secure", "--json").json()
    assert both == []
    none = run_cli("-C", store_path, "audit", "--actor", "ghost@example.com")
    assert none.exit_code == 0 and none.stdout.strip() == "no changes recorded"
    assert_one_line_error(run_cli("-C", store_path, "audit", "--registry", "nope"), 1, contains=("nope",))


class _Clock:
    """The time module, except that time() returns a chosen moment (commit times only)."""

    def __init__(self, stamp: float):
        self.stamp = stamp

    def time(self):
        return self.stamp

    def __getattr__(self, name):
        return getattr(time, name)


def _epoch(iso: str) -> float:
    import calendar

    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


def test_audit_since(store, store_path, monkeypatch, run_cli, make_file):
    import canonry.git.storage

    clock = _Clock(_epoch("2030-01-10T09:00:00Z"))
    monkeypatch.setattr(canonry.git.storage, "time", clock)
    v0 = store.log_artifact(str(make_file("a")), name="g", type="model")
    clock.stamp = _epoch("2030-02-01T12:00:00Z")
    act_as(monkeypatch, store_path, MEMBER).link(v0.address, "model/c")
    clock.stamp = _epoch("2030-03-05T08:30:00Z")
    act_as(monkeypatch, store_path, ADA).set_alias("model/c:v0", "production")

    def ops(*args):
        r = run_cli("-C", store_path, "audit", *args, "--json")
        assert r.exit_code == 0, r
        return [(e["time"], e["op"]) for e in r.json()]

    assert ops("--since", "2030-02-01") == [("2030-03-05T08:30:00Z", "alias.set"),
                                            ("2030-02-01T12:00:00Z", "link")]
    assert ops("--since", "2030-02-01T12:00:01Z") == [("2030-03-05T08:30:00Z", "alias.set")]
    assert ops("--since", "2030-02-01T12:00") == ops("--since", "2030-02-01")
    assert ops("--since", "2030-04-01") == []
    assert [op for _, op in ops("--since", "2030-01-10")][-1] == "log"
    assert ops("--since", "2030-02-01", "--actor", MEMBER) == [("2030-02-01T12:00:00Z", "link")]
    for bad in ("yesterday", "2026-13", "01/02/2026"):
        line = assert_one_line_error(run_cli("-C", store_path, "audit", "--since", bad), 2,
                                     contains=("--since", bad))
        assert line.startswith("canonry: error: ")


def test_history_actor(roles, store_path, monkeypatch, run_cli):
    act_as(monkeypatch, store_path, MEMBER).set_alias("secure/c:v0", "staging")
    act_as(monkeypatch, store_path, RADMIN).set_alias("secure/c:v1", "staging")
    r = run_cli("-C", store_path, "history", "secure/c:staging", "--actor", MEMBER, "--json")
    assert r.exit_code == 0, r
    assert [(e["actor"], e["before"], e["after"]) for e in r.json()] == [(MEMBER, "v1", "v0")]
    everyone = run_cli("-C", store_path, "history", "secure/c:staging", "--json").json()
    assert [e["actor"] for e in everyone] == [RADMIN, MEMBER, ADA]
    s = canonry.open(str(store_path))
    assert [e.actor for e in s.history("secure", actor=ADA)] and \
        all(e.actor == ADA for e in s.history("secure", actor=ADA))
    assert s.history("secure/c", actor="ghost@example.com") == []
    none = run_cli("-C", store_path, "history", "secure/c", "--actor", "ghost@example.com")
    assert none.exit_code == 0 and "no changes recorded" in none.stdout


def test_audit_includes_hand_commits_with_their_author(roles, store_path, run_cli):
    _edit_yaml(store_path, ALIASES_YAML, _move_staging)
    commit = _commit_as(store_path, MEMBER, "stage v0 by hand")
    entries = run_cli("-C", store_path, "audit", "--registry", "secure", "--json").json()
    assert (entries[0]["commit"], entries[0]["actor"], entries[0]["op"], entries[0]["summary"]) == (
        commit, MEMBER, "commit", "stage v0 by hand")


# ---- the bytes of versions linked nowhere (docs/security.md, "Reading") ---------------------------
def test_a_version_linked_nowhere_is_its_authors_and_the_store_admins(roles, store_path, tmp_path, monkeypatch,
                                                                     run_cli):
    """g:v2 was logged by ADA and never linked: no registry's roles govern it, so it is not public."""
    for who in (OUTSIDER, RV, VIEWER, MEMBER, RADMIN):
        monkeypatch.setenv("CANONRY_ACTOR", who)
        for target in ("g:v2", "g:latest"):
            r = run_cli("-C", store_path, "get", target, "--to", tmp_path / "out")
            assert_one_line_error(r, 1, contains=(f"{who} may not download g:v2", "linked in no registry",
                                                  f"author ({ADA})"))
    assert not (tmp_path / "out").exists()
    for who in (ADA, BOSS):  # the author; a store admin
        act_as(monkeypatch, store_path, who).download("g:v2", str(tmp_path / who))
        assert (tmp_path / who / "weights2.bin").read_bytes() == b"weights 2\n"


def test_unlinking_from_a_restricted_registry_does_not_make_the_bytes_public(roles, store_path, tmp_path,
                                                                            monkeypatch):
    viewer = act_as(monkeypatch, store_path, VIEWER)
    viewer.download("g:v1", str(tmp_path / "before"))  # linked in secure: a viewer of secure may
    act_as(monkeypatch, store_path, RADMIN).unlink("secure/c:v1")
    for who in (VIEWER, OUTSIDER):
        with pytest.raises(PermissionDenied, match="linked in no registry"):
            act_as(monkeypatch, store_path, who).download("g:v1", str(tmp_path / who))
        assert not (tmp_path / who).exists()
    act_as(monkeypatch, store_path, BOSS).download("g:v1", str(tmp_path / "boss"))

