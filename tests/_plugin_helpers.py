"""Helpers for the plugin / event / automation tests (issue 3).

Everything is real: git repositories in tmp_path, the git CLI, plugin files written to disk and
loaded by canonry's plugin manager, an HTTP server on 127.0.0.1, subprocesses. No mocks.

Test modules use these with `from _plugin_helpers import *`; the fixtures defined here are
then collected by pytest as if they were written in the module.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

import canonry
from canonry.cli.app import cli as canonry_cli

GIT = shutil.which("git")
ACTOR = "Ada Lovelace <ada@example.com>"
ACTOR_EMAIL = "ada@example.com"

__all__ = [
    "ACTOR",
    "ACTOR_EMAIL",
    "GIT",
    "Hooks",
    "WebhookServer",
    "artifact_file",
    "event_summary",
    "git",
    "head",
    "invoke",
    "mkstore",
    "one_line_error",
    "plugin_dir",
    "plugin_env",
    "run_canonry",
    "signature",
    "webhook_server",
    "write_plugin",
]


@pytest.fixture(autouse=True)
def plugin_env(monkeypatch, tmp_path_factory):
    """Deterministic identity, a private git config, no plugin filter or store leaking in from
    the environment, a short hook timeout, and a cwd outside any repository."""
    monkeypatch.setenv("CANONRY_ACTOR", ACTOR)
    home = tmp_path_factory.mktemp("plugin-gitcfg")
    cfg = home / "gitconfig"
    cfg.write_text("[user]\n\tname = Git User\n\temail = git-user@example.com\n"
                   "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n"
                   "[protocol \"file\"]\n\tallow = always\n[merge]\n\tff = true\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(cfg))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("CANONRY_STORE", "CANONRY_BRANCH", "CANONRY_BLOBS", "CANONRY_PLUGINS",
                "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL",
                "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CANONRY_HOOK_TIMEOUT", "10")
    monkeypatch.chdir(tmp_path_factory.mktemp("plugin-cwd"))


# ---- stores, git, files -------------------------------------------------------------------------
def git(*args, cwd=None, check=True, input=None) -> str:
    proc = subprocess.run([GIT, *map(str, args)], cwd=cwd, capture_output=True, text=True, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def head(path, branch: str = "main") -> str | None:
    proc = subprocess.run([GIT, "-C", str(path), "rev-parse", "--verify", "-q", f"refs/heads/{branch}"],
                          capture_output=True, text=True)
    return proc.stdout.strip() or None


@pytest.fixture
def mkstore(tmp_path):
    """mkstore(name='store') -> Path of a fresh non-bare store (branch main)."""

    def make(name: str = "store") -> Path:
        path = tmp_path / name
        canonry.init(str(path))
        return path

    return make


@pytest.fixture
def plugin_dir(tmp_path) -> Path:
    d = tmp_path / "plugin-dir"
    d.mkdir()
    return d


def write_plugin(directory, name: str, code: str) -> Path:
    path = Path(directory) / f"{name}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code))
    return path


_counter = {"n": 0}


def artifact_file(tmp_path, content: str | None = None) -> str:
    """A new file with unique content (so every log makes a new version)."""
    _counter["n"] += 1
    p = Path(tmp_path) / "artifact-files" / f"f{_counter['n']}.bin"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(content if content is not None else f"weights #{_counter['n']}\n")
    return str(p)


class Hooks:
    """A plugin that records every event hook call (one JSON line per call) into a file.

    hooks = Hooks(plugin_dir, "rec"); ... hooks.calls() -> list of dicts (hook, id, kind, ...)."""

    HOOK_NAMES = ("link_created", "link_removed", "alias_added", "alias_moved", "alias_removed",
                  "artifact_logged", "tags_changed", "collection_changed", "registry_changed")

    def __init__(self, directory, name: str = "recorder", log: Path | None = None):
        self.name = name
        self.log = Path(log) if log else Path(directory) / f"{name}.calls.jsonl"
        body = [f"import json, threading\nfrom canonry import hookimpl\n__version__ = '2.5'\n"
                f"_LOG = {str(self.log)!r}\n_LOCK = threading.Lock()\n\n"
                "def _rec(hook, event):\n"
                "    with _LOCK, open(_LOG, 'a') as f:\n"
                "        f.write(json.dumps({'hook': hook, **event.to_dict()}, default=str) + '\\n')\n"]
        for h in self.HOOK_NAMES:
            body.append(f"\n@hookimpl\ndef {h}(event, store):\n    _rec({h!r}, event)\n")
        write_plugin(directory, name, "".join(body))

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


def event_summary(e) -> tuple:
    """What an event says, without where (commit, id, time) it was computed."""
    d = e if isinstance(e, dict) else e.to_dict()
    return (d["kind"], d["target"], d["registry"], d["collection"], d["version"], d["alias"],
            d["previous_version"], d["artifact"], tuple(d["tags"]), tuple(d["previous_tags"]))


# ---- running the CLI ----------------------------------------------------------------------------
class Result:
    def __init__(self, exit_code, stdout, stderr, exception=None):
        self.exit_code, self.stdout, self.stderr, self.exception = exit_code, stdout, stderr, exception

    def json(self):
        return json.loads(self.stdout)

    def __repr__(self):
        return f"Result(exit={self.exit_code}, stdout={self.stdout!r}, stderr={self.stderr!r}, exc={self.exception!r})"


def invoke(*args, input=None) -> Result:
    """The canonry CLI in-process (click's CliRunner), stdout and stderr apart."""
    r = CliRunner().invoke(canonry_cli, [str(a) for a in args], input=input, catch_exceptions=True)
    return Result(r.exit_code, r.stdout, r.stderr, r.exception)


def _canonry_cmd() -> list[str]:
    script = Path(sys.executable).with_name("canonry")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from canonry.cli.app import main; main()"]


def run_canonry(*args, env=None, cwd=None) -> Result:
    """canonry as a real process (for things that are loaded once per process, like plugin commands)."""
    full = dict(os.environ)
    full.update(env or {})
    p = subprocess.run(_canonry_cmd() + [str(a) for a in args], capture_output=True, text=True,
                       env=full, cwd=cwd, timeout=120)
    return Result(p.returncode, p.stdout, p.stderr)


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result
    assert "Traceback" not in result.stderr + result.stdout, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    return lines[0]


# ---- a real webhook receiver ------------------------------------------------------------------------
def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookServer:
    """ThreadingHTTPServer on 127.0.0.1:0 that records every POST and verifies its signature.

    `plan` is a list of status codes answered in order (then 200 for ever)."""

    def __init__(self, secret: str | None = None):
        self.secret = secret
        self.requests: list[dict] = []
        self.plan: list[int] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                sig = headers.get("x-canonry-signature-256")
                valid = None
                if server.secret is not None:
                    valid = sig is not None and hmac.compare_digest(sig, signature(server.secret, body))
                with server.lock:
                    status = server.plan.pop(0) if server.plan else 200
                    server.requests.append({"path": self.path, "headers": headers, "body": body,
                                            "signature_valid": valid, "answered": status})
                if server.secret is not None and not valid:
                    status = 401
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                out = b'{"ok": true}' if status < 300 else b'{"ok": false}'
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):  # keep test output quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/hooks/deploy"

    def bodies(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def webhook_server():
    servers = []

    def make(secret: str | None = None) -> WebhookServer:
        s = WebhookServer(secret)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()
