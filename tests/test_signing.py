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

SIGNER = "signer@example.com"  # the comment ssh-keygen writes into each key: says nothing about whose it is
COLLEAGUE = "colleague@example.com"


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
    return {"trusted": _keygen(d / "trusted"), "colleague": _keygen(d / "colleague"),
            "stranger": _keygen(d / "stranger")}


def _pub(key: Path) -> str:
    return " ".join(Path(f"{key}.pub").read_text().split()[:2])


@pytest.fixture
def signing_store(store, store_path, keys, tmp_path):
    """A non-bare store whose git config signs with ssh and trusts two keys: `trusted`, the key
    of the admin who commits (ACTOR_EMAIL), and `colleague`, the key of COLLEAGUE. The
    `stranger` key is trusted for nobody."""
    allowed = tmp_path / "keys" / "allowed_signers"
    allowed.write_text(f'{ACTOR_EMAIL} namespaces="git" {_pub(keys["trusted"])}\n'
                       f'{COLLEAGUE} namespaces="git" {_pub(keys["colleague"])}\n')
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


# ---- the signing key must be the author's (issue 14) ------------------------------------------------
def _commit_signed_with(store_path, key: Path, email: str = ACTOR_EMAIL, message: str = "signed") -> str:
    git("-C", store_path, "add", "-A")
    git("-C", store_path, "-c", "user.name=Someone", "-c", f"user.email={email}",
        "-c", f"user.signingkey={key}.pub", "commit", "-q", "-S", "-m", message)
    return git("-C", store_path, "rev-parse", "HEAD").strip()


def test_a_commit_signed_with_another_users_key_is_reported(signing_store, store_path, keys, cli):
    """The admin is the author, but the key is the colleague's: git verify-commit says "Good",
    yet the signature proves nothing about the admin. Refused, naming whose key it is."""
    base = head_of(store_path)
    _describe(store_path, "signed by a colleague in the admin's name")
    commit = _commit_signed_with(store_path, keys["colleague"])
    verified = subprocess.run(["git", "-C", str(store_path), "verify-commit", commit], capture_output=True, text=True)
    assert verified.returncode == 0 and f"Good \"git\" signature for {COLLEAGUE}" in verified.stderr
    report = canonry.open(str(store_path)).validate(f"{base}..main", require_signed=True)
    assert [(f.commit, f.path, f.rule) for f in report] == [(commit, "(signature)", "signer")]
    assert COLLEAGUE in report[0].message and f"author {ACTOR_EMAIL}" in report[0].message
    r = cli("validate", f"{base}..main", "--require-signed")
    assert r.exit_code == 1
    assert r.stdout == f"{commit[:10]} (signature): signer: {report[0].message}\n"
    # the colleague signing their own commit is fine, and so is the admin with the admin's key
    _describe(store_path, "the colleague's own commit")
    _commit_signed_with(store_path, keys["colleague"], email=COLLEAGUE)
    _describe(store_path, "the admin's own commit")
    _commit_signed_with(store_path, keys["trusted"])
    later = canonry.open(str(store_path)).validate(f"{commit}..main", require_signed=True)
    assert [f for f in later if f.path == "(signature)"] == []  # (the colleague lacks the role: another rule)


def test_a_key_with_several_principals_signs_for_each(signing_store, store_path, keys, tmp_path):
    """git names only the first principal of a key (%GS); the author may be any of them."""
    allowed = tmp_path / "keys" / "allowed_signers"
    allowed.write_text(f'old-ada@example.org,{ACTOR_EMAIL} namespaces="git" {_pub(keys["trusted"])}\n')
    base = head_of(store_path)
    _describe(store_path, "signed under a second principal")
    _commit_signed_with(store_path, keys["trusted"])
    assert canonry.open(str(store_path)).validate(f"{base}..main", require_signed=True) == []
    # and a principal that is not the author's is still refused
    allowed.write_text(f'old-ada@example.org namespaces="git" {_pub(keys["trusted"])}\n')
    assert [f.rule for f in canonry.open(str(store_path)).validate(f"{base}..main", require_signed=True)] == ["signer"]


@pytest.fixture
def gpg_home(tmp_path, monkeypatch):
    """A private GNUPGHOME with two gpg keys: the admin's (ACTOR_EMAIL) and the colleague's."""
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("GNUPGHOME", str(home))
    fingerprints = {}
    for email in (ACTOR_EMAIL, COLLEAGUE):
        subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", f"Someone <{email}>",
                        "ed25519", "sign", "never"], check=True, capture_output=True)
        listed = subprocess.run(["gpg", "--with-colons", "--list-keys", email], check=True,
                                capture_output=True, text=True).stdout
        fingerprints[email] = next(line.split(":")[9] for line in listed.splitlines() if line.startswith("fpr:"))
    yield fingerprints
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], capture_output=True)  # the agent gpg started


def test_gpg_signatures_are_tied_to_the_author_by_the_keys_user_ids(store, store_path, gpg_home):
    base = head_of(store_path)
    git("-C", store_path, "config", "gpg.format", "openpgp")
    for email, key, message in ((ACTOR_EMAIL, gpg_home[ACTOR_EMAIL], "own key"),
                                (ACTOR_EMAIL, gpg_home[COLLEAGUE], "a colleague's key")):
        _describe(store_path, message)
        git("-C", store_path, "add", "-A")
        git("-C", store_path, "-c", "user.name=Someone", "-c", f"user.email={email}",
            "-c", f"user.signingkey={key}", "commit", "-q", "-S", "-m", message)
    commits = git("-C", store_path, "rev-list", "--reverse", f"{base}..main").split()
    report = canonry.open(str(store_path)).validate(f"{base}..main", require_signed=True)
    assert [(f.commit, f.rule) for f in report] == [(commits[1], "signer")]
    assert gpg_home[COLLEAGUE] in report[0].message and COLLEAGUE in report[0].message
