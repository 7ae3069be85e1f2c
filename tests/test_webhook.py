"""The built-in webhook action against a real HTTP server on 127.0.0.1: signature, payload,
retries with backoff, Slack format, the secret never reaching the repository or the log, only
http(s) URLs, and redirects (a failure unless `follow_redirects: true`; never signed elsewhere)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


# ---- only http(s), and no redirect followed unless configured (issue 14) ------------------------------
class RedirectServer:
    """ThreadingHTTPServer on 127.0.0.1:0 recording every request (any method); `answer` is
    (status, Location or None) for every request to a path starting with /hooks."""

    def __init__(self, answer=(200, None)):
        self.answer = answer
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length", 0) or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append({"method": self.command, "path": self.path, "body": body,
                                        "headers": {k.lower(): v for k, v in self.headers.items()}})
                status, location = server.answer if self.path.startswith("/hooks") else (200, None)
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = do_PUT = _handle

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str = "/hooks/deploy") -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def redirect_server():
    servers = []

    def make(answer=(200, None)) -> RedirectServer:
        servers.append(RedirectServer(answer))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def _one_run(s) -> dict:
    (run,) = [r for r in s.automation_log() if r["receiver"] == "automation:deploy-on-production"]
    return run


@pytest.mark.parametrize("url", ["file:///etc/hostname", "ftp://127.0.0.1/hook", "data:,hello",
                                 "http:///no-host"])
def test_webhook_accepts_only_http_and_https_urls(webhook_server, promoted, url):
    server = webhook_server()
    s, _ = promoted(server, automation=_deploy_automation(url), promote=False)
    s.set_alias("model/mnist:v1", "production")
    run = _one_run(s)
    assert run["status"] == "error", run
    assert "http or https URL" in run["error"], run
    assert server.requests == []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_webhook_redirect_is_a_failure_naming_status_and_location(promoted, redirect_server, status):
    elsewhere = redirect_server()
    hook = redirect_server((status, elsewhere.url("/collect")))
    s, path = promoted(hook, automation=_deploy_automation(hook.url()), promote=False)
    s.set_alias("model/mnist:v1", "production")
    run = _one_run(s)
    assert run["status"] == "error", run
    assert f"HTTP {status} redirect to {elsewhere.url('/collect')}" in run["error"], run
    assert "follow_redirects" in run["error"]
    assert len(hook.requests) == 1  # a redirect is an answer: not retried
    assert hook.requests[0]["method"] == "POST"
    assert "x-canonry-signature-256" in hook.requests[0]["headers"]
    assert elsewhere.requests == []  # neither the payload nor the signature went there
    # and `automations run` reports it like any failed delivery
    again = invoke("-C", path, "automations", "run", "HEAD")
    assert again.exit_code == 1 and "deliveries failed" in again.stderr, again
    assert elsewhere.requests == []


def test_webhook_follow_redirects_resends_the_post_unsigned_to_another_host(promoted, redirect_server):
    elsewhere = redirect_server()  # another port: another origin
    hook = redirect_server((307, elsewhere.url("/collect")))
    s, _ = promoted(hook, automation=_deploy_automation(hook.url(), follow_redirects=True), promote=False)
    s.set_alias("model/mnist:v1", "production")
    run = _one_run(s)
    assert run["status"] == "ok", run
    (first,), (second,) = hook.requests, elsewhere.requests
    assert second["method"] == "POST" and second["path"] == "/collect"
    assert second["body"] == first["body"] and json.loads(second["body"])["alias"] == "production"
    assert first["headers"]["x-canonry-signature-256"] == signature(SECRET, first["body"])
    assert "x-canonry-signature-256" not in second["headers"]
    assert second["headers"]["x-canonry-delivery"] == first["headers"]["x-canonry-delivery"]


def test_webhook_follow_redirects_keeps_the_signature_on_the_same_origin(promoted, redirect_server):
    hook = redirect_server((308, "/moved/deploy"))  # relative Location, same host and port
    s, _ = promoted(hook, automation=_deploy_automation(hook.url(), follow_redirects=True), promote=False)
    s.set_alias("model/mnist:v1", "production")
    assert _one_run(s)["status"] == "ok"
    first, second = hook.requests
    assert first["path"] == "/hooks/deploy"
    assert (second["method"], second["path"]) == ("POST", "/moved/deploy")
    assert second["headers"]["x-canonry-signature-256"] == signature(SECRET, second["body"])


@pytest.mark.parametrize("location", ["file:///etc/hostname", "ftp://127.0.0.1/x"])
def test_webhook_follow_redirects_only_to_http_and_https(promoted, redirect_server, location):
    hook = redirect_server((302, location))
    s, _ = promoted(hook, automation=_deploy_automation(hook.url(), follow_redirects=True), promote=False)
    s.set_alias("model/mnist:v1", "production")
    run = _one_run(s)
    assert run["status"] == "error", run
    assert "HTTP 302" in run["error"] and "http or https URL" in run["error"], run
    assert len(hook.requests) == 1


def test_webhook_follow_redirects_stops_after_five_hops(promoted, redirect_server):
    hook = redirect_server((302, "/hooks/again"))  # a loop
    s, _ = promoted(hook, automation=_deploy_automation(hook.url(), follow_redirects=True), promote=False)
    s.set_alias("model/mnist:v1", "production")
    run = _one_run(s)
    assert run["status"] == "error" and "more than 5 redirects" in run["error"], run
    assert len(hook.requests) == 6
