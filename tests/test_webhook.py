"""The built-in webhook action against a real HTTP server on 127.0.0.1: signature, payload,
retries with backoff, Slack format, and the secret never reaching the repository or the log."""
from __future__ import annotations

import os
import socket
import subprocess

import pytest
from _plugin_helpers import *

import canonry

SECRET = "whsec-Zq8v1T4mKx9-not-in-the-repo"
SECRET_ENV = "DEPLOY_HOOK_SECRET"


def _deploy_automation(url, **extra):
    params = {"url": url, "secret_env": SECRET_ENV, "timeout": 5, "retries": 2, "backoff": 0.01}
    params.update(extra)
    return {"name": "deploy-on-production", "on": ["alias.added", "alias.moved"],
            "filter": {"registry": "model", "alias": "^production$"},
            "action": "webhook", "with": params}


@pytest.fixture
def promoted(mkstore, tmp_path, monkeypatch):
    """promoted(server, **with) -> (store, path): two versions of mnist-cnn with metadata and
    metrics linked in model/mnist, a webhook automation configured, then production set on v0
    and moved to v1."""
    monkeypatch.setenv(SECRET_ENV, SECRET)

    def make(server, automation=None, promote=True, **extra):
        path = mkstore()
        s = canonry.open(str(path))
        s.log_artifact(artifact_file(tmp_path), name="mnist-cnn", type="model",
                       metadata={"framework": "torch", "epochs": 10}, metrics={"accuracy": 0.91})
        s.log_artifact(artifact_file(tmp_path), name="mnist-cnn", type="model",
                       metadata={"framework": "torch", "epochs": 20}, metrics={"accuracy": 0.95, "loss": 0.12})
        s.link("mnist-cnn:v0", "model/mnist")
        s.link("mnist-cnn:v1", "model/mnist")
        s.set_automations([automation or _deploy_automation(server.url, **extra)])
        if promote:
            s.set_alias("model/mnist:v0", "production")
            s.set_alias("model/mnist:v1", "production")
        return s, path

    return make


def test_webhook_received_signed_with_the_expected_payload(webhook_server, promoted):
    server = webhook_server(secret=SECRET)
    s, path = promoted(server)
    assert len(server.requests) == 2
    assert all(r["signature_valid"] for r in server.requests), server.requests
    added, moved = server.bodies()
    events = s.events("HEAD~2..HEAD")
    assert [e.kind for e in events] == ["alias.added", "alias.moved"]

    for req, body, event in zip(server.requests, (added, moved), events):
        h = req["headers"]
        assert req["path"] == "/hooks/deploy"
        assert h["content-type"] == "application/json"
        assert h["x-canonry-event"] == event.kind
        assert h["x-canonry-delivery"] == event.id
        assert h["x-canonry-signature-256"] == signature(SECRET, req["body"])
        for key, value in event.to_dict().items():
            if key != "changes":
                assert body[key] == value, key

    assert (moved["alias"], moved["previous_version"], moved["version"]) == ("production", "v0", "v1")
    assert moved["collection"] == "model/mnist" and moved["registry"] == "model"
    assert moved["artifact"] == "mnist-cnn:v1"
    assert moved["metadata"] == {"framework": "torch", "epochs": 20}
    assert moved["metrics"] == {"accuracy": 0.95, "loss": 0.12}
    assert moved["artifact_type"] == "model"
    assert moved["digest"] == s.artifact_version("mnist-cnn:v1").digest
    assert moved["actor"] == ACTOR_EMAIL and moved["commit"] == head(path)
    assert added["metrics"] == {"accuracy": 0.91} and added["previous_version"] is None

    runs = [r for r in s.automation_log() if r["receiver"] == "automation:deploy-on-production"]
    assert len(runs) == 2 and all(r["status"] == "ok" for r in runs)
    assert all(r["result"] == {"status_code": 200, "attempts": 1} for r in runs)


def test_webhook_filter_only_production(webhook_server, promoted, tmp_path):
    server = webhook_server(secret=SECRET)
    s, _ = promoted(server)
    s.set_alias("model/mnist:v0", "staging")  # alias does not match ^production$
    s.tag("model/mnist:v0", "approved")  # kind not configured
    s.log_artifact(artifact_file(tmp_path), name="words", type="dataset")
    s.link("words:v0", "dataset/text", aliases=["production"])  # registry dataset: filtered out
    assert [b["kind"] for b in server.bodies()] == ["alias.added", "alias.moved"]


def test_webhook_retried_after_the_server_first_fails(webhook_server, promoted):
    server = webhook_server(secret=SECRET)
    server.plan = [500]
    s, _ = promoted(server, promote=False)
    s.set_alias("model/mnist:v1", "production")
    assert [r["answered"] for r in server.requests] == [500, 200]
    first, second = server.requests
    assert first["body"] == second["body"]
    assert first["headers"]["x-canonry-delivery"] == second["headers"]["x-canonry-delivery"]
    assert all(r["signature_valid"] for r in server.requests)
    (run,) = s.automation_log()
    assert run["status"] == "ok"
    assert run["result"] == {"status_code": 200, "attempts": 2}


def test_webhook_429_is_retried_too(webhook_server, promoted):
    server = webhook_server(secret=SECRET)
    server.plan = [429, 503]
    s, _ = promoted(server, promote=False)
    s.set_alias("model/mnist:v1", "production")
    assert [r["answered"] for r in server.requests] == [429, 503, 200]
    assert s.automation_log()[0]["result"]["attempts"] == 3


def test_webhook_gives_up_after_the_retries_and_records_the_failure(webhook_server, promoted):
    server = webhook_server(secret=SECRET)
    server.plan = [500, 502, 500, 500]
    s, path = promoted(server, promote=False)
    before = head(path)
    s.set_alias("model/mnist:v1", "production")
    assert head(path) != before  # the change stays
    assert len(server.requests) == 3  # 1 + retries (2)
    (run,) = s.automation_log()
    assert run["status"] == "error"
    assert "after 3 attempt(s)" in run["error"] and "HTTP 500" in run["error"]
    # the next `automations run` delivers it (failed deliveries are not marked delivered)
    server.plan = []
    out = invoke("-C", path, "automations", "run", "HEAD")
    assert out.exit_code == 0, out
    assert len(server.requests) == 4 and server.requests[-1]["answered"] == 200
    assert "nothing to deliver" in invoke("-C", path, "automations", "run", "HEAD").stdout
    assert len(server.requests) == 4


def test_webhook_client_errors_are_not_retried(webhook_server, promoted):
    server = webhook_server(secret="a different secret")  # the receiver answers 401
    s, _ = promoted(server, promote=False)
    s.set_alias("model/mnist:v1", "production")
    assert len(server.requests) == 1
    assert server.requests[0]["signature_valid"] is False
    (run,) = s.automation_log()
    assert run["status"] == "error" and "HTTP 401" in run["error"] and "1 attempt" in run["error"]


def test_webhook_network_errors_are_retried_and_recorded(promoted, webhook_server):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://user:pw-token@127.0.0.1:{port}/hook?token=sekrit-query"
    server = webhook_server()
    s, _ = promoted(server, automation=_deploy_automation(url), promote=False)
    s.set_alias("model/mnist:v1", "production")
    (run,) = s.automation_log()
    assert run["status"] == "error"
    assert "after 3 attempt(s)" in run["error"]
    # credentials and query of the URL are kept out of the log
    assert "pw-token" not in run["error"] and "sekrit-query" not in run["error"]
    assert f"http://127.0.0.1:{port}/hook" in run["error"]


def test_slack_format(webhook_server, promoted):
    server = webhook_server(secret=SECRET)
    _s, _ = promoted(server, format="slack")
    assert all(r["signature_valid"] for r in server.requests)
    added, moved = server.bodies()
    assert set(added) == {"text"} and set(moved) == {"text"}
    assert moved["text"] == f"[canonry] model/mnist: production: v0 → v1 (mnist-cnn:v1) by {ACTOR_EMAIL}"
    assert "production → v0" in added["text"] and "model/mnist" in added["text"]


def test_webhook_without_the_secret_in_the_environment(webhook_server, promoted, monkeypatch):
    server = webhook_server(secret=SECRET)
    s, path = promoted(server, promote=False)
    monkeypatch.delenv(SECRET_ENV)
    s.set_alias("model/mnist:v1", "production")
    assert server.requests == []  # nothing unsigned is sent
    (run,) = s.automation_log()
    assert run["status"] == "error" and SECRET_ENV in run["error"]
    # set it, and CI's `automations run` delivers what is missing
    monkeypatch.setenv(SECRET_ENV, SECRET)
    out = invoke("-C", path, "automations", "run", "HEAD~3..HEAD")
    assert out.exit_code == 0, out
    assert len(server.requests) == 1 and server.requests[0]["signature_valid"]
    assert "deploy-on-production" in out.stdout


def test_unsigned_webhook_without_secret_env(webhook_server, promoted):
    server = webhook_server()
    auto = _deploy_automation(server.url)
    auto["with"].pop("secret_env")
    _s, _ = promoted(server, automation=auto)
    assert len(server.requests) == 2
    assert all("x-canonry-signature-256" not in r["headers"] for r in server.requests)


def test_secret_never_reaches_the_repository_or_the_run_log(webhook_server, promoted, tmp_path):
    server = webhook_server(secret=SECRET)
    server.plan = [500]
    s, path = promoted(server)
    # a failing delivery too (its error is recorded)
    s.set_automations([_deploy_automation(server.url),
                       _deploy_automation("http://127.0.0.1:9/unreachable") | {"name": "broken"}])
    server.plan = [500, 500, 500]
    s.set_alias("model/mnist:v0", "production")
    runs = s.automation_log()
    assert {r["status"] for r in runs} == {"ok", "error"}
    assert len(server.requests) >= 5 and all(r["signature_valid"] for r in server.requests)

    texts = {
        "git log -p --all": git("-C", path, "log", "-p", "--all"),
        "git notes list": git("-C", path, "notes", "--ref", "canonry-automations", "list"),
        "automations log --json": invoke("-C", path, "automations", "log", "--json").stdout,
        "automations log": invoke("-C", path, "automations", "log").stdout,
    }
    annotated = texts["git notes list"].split()[1::2]
    assert len(annotated) >= 3
    texts["git notes show"] = "".join(git("-C", path, "notes", "--ref", "canonry-automations", "show", c)
                                      for c in annotated)
    assert "deploy-on-production" in texts["git notes show"]
    objects = subprocess.run([GIT, "-C", str(path), "cat-file", "--batch-all-objects", "--batch"],
                             capture_output=True).stdout
    assert b"deploy-on-production" in objects
    for where, text in texts.items():
        assert SECRET not in text, where
    assert SECRET.encode() not in objects
    assert SECRET_ENV in git("-C", path, "show", "HEAD:canonry.yaml")  # only its name is stored
    # nor any file canonry keeps next to the repository (caches, logs)
    for root, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                assert SECRET.encode() not in f.read(), os.path.join(root, name)
