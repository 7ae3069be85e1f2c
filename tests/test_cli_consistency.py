"""One interface across the commands (issue 18): each flag means one thing everywhere, a read of
a branch that does not exist fails, bad syntax is a usage error (exit 2), `audit` names who a
governance change was about, and `automations set` warns about what will not work as written."""
from __future__ import annotations

from collections import defaultdict

import click
import pytest
from conftest import assert_one_line_error, commit_count, git, head_of

from canonry.cli.app import cli as canonry_cli
from canonry.cli.app import load_builtin_command
from canonry.cli.help import BUILTIN_COMMANDS


def _options(command: click.Command, path: str):
    """(command path, option) for every option of `command` and of its subcommands."""
    for param in command.params:
        if isinstance(param, click.Option):
            yield path, param
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _options(sub, f"{path} {name}")


def _every_option():
    yield from _options(canonry_cli, "canonry")
    for name in BUILTIN_COMMANDS:
        yield from _options(load_builtin_command(name), f"canonry {name}")


def test_each_short_flag_has_one_meaning_across_the_cli():
    meanings: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    shorts_of: dict[str, set[str]] = defaultdict(set)
    for path, option in _every_option():
        names = option.opts + option.secondary_opts
        longs = tuple(sorted(n for n in names if n.startswith("--"))) or (option.name or "",)
        for short in (n for n in names if not n.startswith("--")):
            meanings[short][" ".join(longs)].append(path)
            for long in longs:
                shorts_of[long].add(short)
    clashes = {s: dict(m) for s, m in meanings.items() if len(m) > 1}
    assert not clashes, f"short flags with more than one meaning: {clashes}"
    several = {long: s for long, s in shorts_of.items() if len(s) > 1}
    assert not several, f"long options with more than one short flag: {several}"
    assert meanings["-m"].keys() == {"--metadata"}


def test_branch_means_a_proposal_branch_wherever_it_is_shown():
    """--branch (visible) is the shared proposal-branch option; init and clone say --store-branch."""
    for path, option in _every_option():
        if "--branch" in option.opts and not option.hidden:
            assert option.expose_value is False and option.callback is not None, path
    for name in ("init", "clone"):
        opts = {o for p in load_builtin_command(name).params for o in p.opts
                if not getattr(p, "hidden", False)}
        assert "--store-branch" in opts and "--branch" not in opts, name


def test_metric_short_flags_are_gone_from_compare_and_merge(linked, cli):
    r = cli("compare", "model/first-collection", "-m", "accuracy")
    assert_one_line_error(r, 2, contains=("No such option",))
    r = cli("merge", "p", "-m", "subject")
    assert_one_line_error(r, 2, contains=("No such option",))


# ---- init and clone: --store-branch ------------------------------------------------------------
def test_init_store_branch(run_cli, tmp_path):
    r = run_cli("init", tmp_path / "s", "--store-branch", "registry", "--json")
    assert r.exit_code == 0, r
    assert r.json()["branch"] == "registry" and head_of(tmp_path / "s", "registry")
    assert r.stderr == ""


def test_init_and_clone_old_branch_spelling_works_with_a_warning(run_cli, tmp_path):
    r = run_cli("init", tmp_path / "s", "--branch", "registry", "--json")
    assert r.exit_code == 0, r
    assert r.json()["branch"] == "registry"
    assert r.stderr.count("\n") == 1 and "--store-branch" in r.stderr and "warning" in r.stderr
    r = run_cli("clone", tmp_path / "s", tmp_path / "c", "--branch", "registry", "--json")
    assert r.exit_code == 0, r
    assert r.json()["branch"] == "registry" and "--store-branch" in r.stderr
    r = run_cli("clone", tmp_path / "s", tmp_path / "c2", "--store-branch", "registry", "--json")
    assert r.exit_code == 0 and r.json()["branch"] == "registry" and r.stderr == ""


def test_init_both_spellings_disagreeing_is_a_usage_error(run_cli, tmp_path):
    r = run_cli("init", tmp_path / "s", "--store-branch", "a", "--branch", "b")
    assert r.exit_code == 2 and "--store-branch" in r.stderr
    assert not (tmp_path / "s").exists()


# ---- a branch that does not exist ------------------------------------------------------------
READS = [
    ("show", "model/first-collection"),
    ("ls",),
    ("ls", "model/first-collection"),
    ("history", "model/first-collection"),
    ("get", "gemma-finetuned:v0"),
    ("search",),
    ("compare", "model/first-collection"),
    ("lineage", "gemma-finetuned:v0"),
    ("audit",),
    ("registry", "list"),
    ("registry", "show", "model"),
    ("registry", "member", "list", "model"),
    ("events", "HEAD"),
    ("storage", "verify"),
    ("use", "model/first-collection:production"),
    ("usage", "model/first-collection"),
]


@pytest.mark.parametrize("args", READS, ids=[" ".join(a) for a in READS])
def test_reading_a_missing_branch_is_an_error(linked, cli, store_path, args):
    before = commit_count(store_path)
    r = cli(*args, "--branch", "nope")
    assert assert_one_line_error(r, 1) == "canonry: error: no branch nope"
    assert commit_count(store_path) == before and head_of(store_path, "nope") is None


def test_reading_an_existing_branch_and_writing_a_new_one(linked, cli, store_path):
    assert cli("show", "model/first-collection", "--branch", "main").exit_code == 0
    r = cli("tag", "add", "model/first-collection", "vision", "--branch", "p/tags")  # a write creates it
    assert r.exit_code == 0, r
    assert head_of(store_path, "p/tags") is not None
    r = cli("show", "model/first-collection", "--branch", "p/tags", "--json")
    assert r.exit_code == 0 and "vision" in r.json()["tags"]
    assert "vision" not in cli("show", "model/first-collection", "--json").json()["tags"]


# ---- usage errors exit 2 -----------------------------------------------------------------------
@pytest.mark.parametrize("since", ["yesterday", "2026-13-01", "2026-02-30", "2026-11-01T25:00"])
def test_audit_since_unreadable_is_a_usage_error(linked, cli, since):
    assert_one_line_error(cli("audit", "--since", since), 2, contains=("--since", "2026-11-01"))


def test_usage_since_impossible_date_is_a_usage_error(linked, cli):
    assert_one_line_error(cli("usage", "model/first-collection", "--since", "2026-02-30"), 2,
                          contains=("--since",))


def test_audit_since_readable(linked, cli):
    assert cli("audit", "--since", "2000-01-01", "--json").json()
    assert cli("audit", "--since", "2999-01-01T10:00Z", "--json").json() == []


@pytest.mark.parametrize("value", ["acc=nan", "acc=high", "acc=inf", "acc=", "acc"])
def test_bad_metric_values_share_exit_code_2(cli, model_file, store_path, value):
    before = commit_count(store_path)
    r = cli("log", model_file, "-n", "m", "-t", "model", "--metric", value)
    assert_one_line_error(r, 2, contains=("--metric",))
    assert commit_count(store_path) == before


@pytest.mark.parametrize("args", [
    ("--filter", "{"), ("--filter", "[]"), ("--filter", '{"$nope": 1}'), ("--filter", '{"bogus": 1}'),
    ("--filter", '{"metrics.acc": {"$gt": "x", "$zz": 1}}'), ("--kind", "registries", "--tag", "x"),
])
def test_search_filters_that_cannot_be_asked_are_usage_errors(linked, cli, args):
    assert_one_line_error(cli("search", *args), 2)


# ---- audit names the member --------------------------------------------------------------------
def test_audit_text_names_the_member_of_governance_changes(linked, cli):
    assert cli("registry", "member", "add", "model", "bob@example.com", "--role", "member").exit_code == 0
    assert cli("registry", "member", "add", "model", "bob@example.com", "--role", "admin").exit_code == 0
    assert cli("registry", "member", "rm", "model", "bob@example.com").exit_code == 0
    assert cli("admin", "add", "carol@example.com").exit_code == 0
    assert cli("group", "ml", "dan@example.com").exit_code == 0
    lines = cli("audit").stdout.splitlines()
    line = {op: next(x for x in lines if f" {op} " in x) for op in ("member.rm", "store.admin", "store.group")}
    assert "bob@example.com=admin → -" in line["member.rm"]
    assert "carol@example.com" in line["store.admin"]
    assert "group:ml" in line["store.group"] and "dan@example.com" in line["store.group"]
    sets = [x for x in lines if " member.set " in x]
    assert "- → bob@example.com=member" in sets[1] and "bob@example.com=member → bob@example.com=admin" in sets[0]
    data = cli("audit", "--json").json()
    rm = next(e for e in data if e["op"] == "member.rm")
    assert rm["target"] == "model" and rm["before"] == {"bob@example.com": "admin"} and rm["after"] is None


# ---- automations set: warnings -----------------------------------------------------------------
POLICY = """\
- name: production-needs-accuracy
  action: policy
  with: {alias: production, metric: accuracy, min: 0.9}
"""
COMMAND = """\
- name: run-eval
  on: link.created
  action: command
  with: {command: ["true"]}
"""


def _warnings(r) -> list[str]:
    return [x for x in r.stderr.splitlines() if "warning" in x]


def test_automations_set_warns_when_a_new_policy_is_already_broken(linked, cli, tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text(POLICY)
    r = cli("automations", "set", f)
    assert r.exit_code == 0, r
    (warning,) = _warnings(r)
    assert "model/first-collection:production" in warning and "production-needs-accuracy" in warning
    assert "accuracy" in warning
    r = cli("automations", "set", f)  # the same policy again: nothing new to warn about
    assert r.exit_code == 0 and _warnings(r) == []


def test_automations_set_no_warning_when_the_store_keeps_the_policy(store, cli, model_file, tmp_path):
    v = store.log_artifact(str(model_file), name="good", type="model", metrics={"accuracy": 0.95})
    store.link(v.address, "model/c", aliases=["production"])
    f = tmp_path / "a.yaml"
    f.write_text(POLICY)
    r = cli("automations", "set", f)
    assert r.exit_code == 0 and _warnings(r) == [], r


def test_automations_set_warns_when_command_automations_are_untrusted(linked, cli, tmp_path, store_path):
    f = tmp_path / "a.yaml"
    f.write_text(COMMAND)
    r = cli("automations", "set", f)
    assert r.exit_code == 0, r
    (warning,) = _warnings(r)
    assert "run-eval" in warning and "trust_local_automations" in warning
    # trusted on the store branch (a reviewed edit of canonry.yaml): no warning
    cfg = store_path / "canonry.yaml"
    cfg.write_text(cfg.read_text() + "trust_local_automations: true\n")
    git("-C", store_path, "commit", "-qam", "trust local automations")
    f.write_text(COMMAND.replace("run-eval", "run-eval-2"))
    r = cli("automations", "set", f)
    assert r.exit_code == 0 and _warnings(r) == [], r


def test_automations_set_on_a_proposal_cannot_trust_itself(linked, cli, tmp_path, store_path):
    """A proposal branch setting trust_local_automations does not make its commands runnable."""
    assert cli("tag", "add", "model/first-collection", "x", "--branch", "p").exit_code == 0
    git("-C", store_path, "checkout", "-q", "p")
    cfg = store_path / "canonry.yaml"
    cfg.write_text(cfg.read_text() + "trust_local_automations: true\n")
    git("-C", store_path, "commit", "-qam", "trust myself")
    git("-C", store_path, "checkout", "-q", "main")
    f = tmp_path / "a.yaml"
    f.write_text(COMMAND)
    r = cli("automations", "set", f, "--branch", "p")
    assert r.exit_code == 0 and len(_warnings(r)) == 1 and "trust_local_automations" in r.stderr
