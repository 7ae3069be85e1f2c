"""`canonry validate --require-signed` (issue 5): every commit of the range must carry a valid
signature, verified as git verifies it (`git verify-commit`). Real ssh keys made with ssh-keygen,
real signed commits made with the git CLI; nothing mocked."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ACTOR_EMAIL, git, head_of

import canonry

SIGNER = "signer@example.com"


def _git_version() -> tuple[int, ...]:
    out = git("--version")
    return tuple(int(x) for x in re.search(r"(\d+)\.(\d+)", out).groups())


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", SIGNER, "-f", str(path)],
                   check=True, capture_output=True)
    return path


@pytest.fixture
def keys(tmp_path):
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed: cannot make an ssh signing key")
    if _git_version() < (2, 34):
        pytest.skip("git older than 2.34 cannot sign commits with ssh keys")
    d = tmp_path / "keys"
    d.mkdir()
    return {"trusted": _keygen(d / "trusted"), "stranger": _keygen(d / "stranger")}


@pytest.fixture
def signing_store(store, store_path, keys, tmp_path):
    """A non-bare store whose git config signs with ssh and trusts the `trusted` key only."""
    pub = Path(f"{keys['trusted']}.pub").read_text().split()
    allowed = tmp_path / "keys" / "allowed_signers"
    allowed.write_text(f'{SIGNER} namespaces="git" {pub[0]} {pub[1]}\n')
    for key, value in (("gpg.format", "ssh"), ("user.signingkey", f"{keys['trusted']}.pub"),
                       ("gpg.ssh.allowedSignersFile", allowed), ("commit.gpgsign", "false")):
        git("-C", store_path, "config", key, value)
    return store


def _describe(store_path, text: str) -> None:
    """A legitimate hand edit by the store admin: the model registry's description."""
    path = Path(store_path) / "registries" / "model" / "registry.yaml"
    data = yaml.safe_load(path.read_text())
    data["description"] = text
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _commit(store_path, message, *flags) -> str:
    git("-C", store_path, "add", "-A")
    git("-C", store_path, "-c", "user.name=Ada", "-c", f"user.email={ACTOR_EMAIL}", "commit", "-q",
        *flags, "-m", message)
    return git("-C", store_path, "rev-parse", "HEAD").strip()


def test_signed_range_passes_and_unsigned_commits_are_reported(signing_store, store_path, cli):
    base = head_of(store_path)
    _describe(store_path, "signed once")
    signed = _commit(store_path, "describe models (signed)", "-S")
    assert "Good" in subprocess.run(["git", "-C", str(store_path), "verify-commit", signed],
                                    capture_output=True, text=True).stderr
    r = cli("validate", f"{base}..main", "--require-signed")
    assert r.exit_code == 0, r
    assert r.stdout == "" and r.stderr == f"validate: ok: checked 1 commit of {base}..main\n"

    _describe(store_path, "then unsigned")
    unsigned = _commit(store_path, "describe models (unsigned)", "--no-gpg-sign")
    r = cli("validate", f"{base}..main", "--require-signed")
    assert r.exit_code == 1, r
    assert r.stdout.splitlines() == [
        line for line in r.stdout.splitlines() if line.startswith(f"{unsigned[:10]} (signature): unsigned: ")]
    assert len(r.stdout.splitlines()) == 1
    assert "commit has no valid signature" in r.stdout
    assert r.stderr == f"validate: 1 finding in 2 commits of {base}..main\n"
    report = cli("validate", f"{base}..main", "--require-signed", "--json").json()
    assert report == {"ok": False, "checked_commits": 2, "findings": [
        {"commit": unsigned, "path": "(signature)", "rule": "unsigned", "message": report["findings"][0]["message"]}]}
    # without --require-signed the same range is clean: signatures are opt-in
    assert cli("validate", f"{base}..main").exit_code == 0
    # the signed commit alone still passes
    assert cli("validate", f"{base}..{signed}", "--require-signed").exit_code == 0


def test_canonrys_own_commits_are_unsigned(signing_store, store_path, cli, model_file):
    base = head_of(store_path)
    v = signing_store.log_artifact(str(model_file), name="gemma", type="model")
    signing_store.link(v.address, "model/c", aliases=["production"])
    commits = git("-C", store_path, "rev-list", "--reverse", f"{base}..main").split()
    assert len(commits) == 2
    report = signing_store.validate(f"{base}..main", require_signed=True)
    assert [(f.commit, f.rule) for f in report] == [(c, "unsigned") for c in commits]
    assert report.checked_commits == 2
    assert signing_store.validate(f"{base}..main") == []
    r = cli("validate", f"{base}..main", "--require-signed")
    assert r.exit_code == 1
    assert [line.split()[0] for line in r.stdout.splitlines()] == [c[:10] for c in commits]


def test_a_signature_by_an_untrusted_key_is_not_valid(signing_store, store_path, keys):
    base = head_of(store_path)
    _describe(store_path, "signed by a stranger")
    git("-C", store_path, "add", "-A")
    git("-C", store_path, "-c", "user.name=Ada", "-c", f"user.email={ACTOR_EMAIL}",
        "-c", f"user.signingkey={keys['stranger']}.pub", "commit", "-q", "-S", "-m", "stranger")
    commit = git("-C", store_path, "rev-parse", "HEAD").strip()
    assert "gpgsig" in git("-C", store_path, "cat-file", "commit", commit)  # it is signed ...
    report = canonry.open(str(store_path)).validate(f"{base}..main", require_signed=True)
    assert [(f.commit, f.path, f.rule) for f in report] == [(commit, "(signature)", "unsigned")]  # ... not trusted


def test_require_signed_checks_a_single_commit_and_a_merged_branch(signing_store, store_path):
    base = head_of(store_path)
    git("-C", store_path, "checkout", "-q", "-b", "proposal")
    _describe(store_path, "on a branch")
    side = _commit(store_path, "describe on a branch", "-S")
    git("-C", store_path, "checkout", "-q", "main")
    git("-C", store_path, "-c", "user.name=Ada", "-c", f"user.email={ACTOR_EMAIL}", "merge", "-q",
        "--no-ff", "--no-gpg-sign", "-m", "merge proposal", "proposal")
    merge = git("-C", store_path, "rev-parse", "HEAD").strip()
    store = canonry.open(str(store_path))
    assert store.validate(side, require_signed=True) == []
    report = store.validate(f"{base}..main", require_signed=True)
    assert report.checked_commits == 2
    assert [(f.commit, f.rule) for f in report] == [(merge, "unsigned")]
    assert store.validate(f"{base}..proposal", require_signed=True) == []
