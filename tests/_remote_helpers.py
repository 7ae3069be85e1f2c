"""Helpers for the sharing tests (issue 4): bare remotes, clones with their own actors, a real
smart-HTTP git server on 127.0.0.1, the git CLI, the canonry CLI in-process.

Nothing is mocked: every repository is a real one in tmp_path, every remote a real bare
repository reached through a path, file:// or http://127.0.0.1:PORT (dulwich's WSGI git
server in a thread, receive-pack enabled), and every check of history goes through the git CLI.

Test modules import what they need from here; `world` is a fixture factory (import it into the
module namespace so pytest sees it).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from click.testing import CliRunner

import canonry
from canonry.cli.app import cli as canonry_cli

GIT = shutil.which("git")
ALICE = "Alice Archer <alice@example.com>"
BOB = "Bob Builder <bob@example.com>"
CAROL = "Carol CI <ci@example.com>"
NOTES_REF = "refs/notes/canonry-automations"
HAND = ("-c", "user.name=t", "-c", "user.email=t@x")  # a hand-made commit's identity


# ---- git ---------------------------------------------------------------------------------------
def git(*args, cwd=None, check=True, input=None, env=None) -> str:
    """The real git CLI; its stdout."""
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update(env)
    proc = subprocess.run([GIT, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          input=input, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def rev(repo, ref: str = "main") -> str | None:
    """The commit `ref` names in `repo` (git rev-parse), None if it does not exist."""
    proc = subprocess.run([GIT, "-C", str(repo), "rev-parse", "--verify", "-q", f"{ref}^{{commit}}"],
                          capture_output=True, text=True)
    return proc.stdout.strip() or None


def is_ancestor(repo, a: str, b: str) -> bool:
    """`git merge-base --is-ancestor A B`."""
    proc = subprocess.run([GIT, "-C", str(repo), "merge-base", "--is-ancestor", a, b],
                          capture_output=True, text=True)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode == 0


def parents(repo, commit: str) -> list[str]:
    return git("-C", repo, "rev-list", "--parents", "-n1", commit).split()[1:]


def subject(repo, commit: str = "main") -> str:
    return git("-C", repo, "log", "-1", "--format=%s", commit).strip()


def fsck(repo) -> subprocess.CompletedProcess:
    return subprocess.run([GIT, "-C", str(repo), "fsck", "--strict", "--no-dangling", "--full"],
                          capture_output=True, text=True)


def status(repo) -> str:
    """`git status --porcelain` (untracked files included); '' means clean."""
    return git("-C", repo, "status", "--porcelain", "--untracked-files=all")


def hand_commit(repo, message: str = "hand edit") -> str:
    """Commit everything in the work tree with the git CLI (no canonry trailers)."""
    git("-C", repo, "add", "-A")
    git("-C", repo, *HAND, "commit", "-q", "-m", message)
    return rev(repo, "HEAD")


# ---- canonry -----------------------------------------------------------------------------------
class Result:
    """What a CLI call did: exit code, stdout and stderr apart, the exception if any."""

    def __init__(self, exit_code, stdout, stderr, exception=None):
        self.exit_code, self.stdout, self.stderr, self.exception = exit_code, stdout, stderr, exception

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self):
        return json.loads(self.stdout)

    def __repr__(self):
        return (f"Result(exit={self.exit_code}, stdout={self.stdout!r}, stderr={self.stderr!r}, "
                f"exc={self.exception!r})")


def invoke(*args, actor: str | None = None, env: dict | None = None, cwd=None) -> Result:
    """`canonry ARGS` in-process (click's CliRunner), as `actor` (CANONRY_ACTOR) when given."""
    full_env = dict(env or {})
    if actor:
        full_env["CANONRY_ACTOR"] = actor
    runner = CliRunner()
    with _chdir(cwd):
        r = runner.invoke(canonry_cli, [str(a) for a in args], env=full_env, catch_exceptions=True)
    return Result(r.exit_code, r.stdout, r.stderr, r.exception)


def ok(*args, **kw) -> Result:
    """invoke(), asserting exit 0."""
    r = invoke(*args, **kw)
    assert r.exit_code == 0, r
    return r


@contextmanager
def _chdir(path):
    if path is None:
        yield
        return
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@contextmanager
def env_var(name: str, value: str | None):
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def open_as(path, actor: str, branch: str | None = None, **kw):
    """canonry.open(path) acting as `actor` for the life of the Store (the identity is read once)."""
    with env_var("CANONRY_ACTOR", actor):
        store = canonry.open(str(path), branch=branch, **kw)
        assert store.actor.email in actor
    return store


def canonry_command() -> list[str]:
    script = Path(sys.executable).with_name("canonry")
    if script.exists():
        return [str(script)]
    found = shutil.which("canonry")
    return [found] if found else [sys.executable, "-c", "from canonry.cli.app import main; main()"]


def run_process(*args, cwd=None, actor: str | None = None, env: dict | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess:
    """canonry as a real process."""
    full = dict(os.environ)
    full.update(env or {})
    if actor:
        full["CANONRY_ACTOR"] = actor
    return subprocess.run(canonry_command() + [str(a) for a in args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout)


_counter = {"n": 0}


def unique_file(tmp_path, label: str = "weights") -> str:
    """A new file with content nobody else has (every log makes a new version)."""
    _counter["n"] += 1
    p = Path(tmp_path) / "files" / f"{label}-{_counter['n']}.bin"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(f"{label} #{_counter['n']} pid {os.getpid()}\n")
    return str(p)


def aliases(store, collection: str) -> dict:
    return {k: v for k, v in store.collection(collection).aliases.items() if k != "latest"}


def links(store, collection: str) -> dict[str, str]:
    """version -> artifact of every link of a collection."""
    return {v.version: v.artifact for v in store.versions(collection)}


# ---- a world: one bare remote, seeded, and clones of it --------------------------------------------
class World:
    """A bare remote (`git init --bare`) holding a store pushed there by canonry, and clones.

    Seed: gemma-finetuned v0..v5 (accuracy 0.50, 0.60, ... 1.00) logged; model/mnist with
    gemma-finetuned:v0 linked as v0 [production]."""

    def __init__(self, tmp_path: Path, automations: list | None = None, versions: int = 6):
        self.tmp = tmp_path
        self.remote = tmp_path / "remote.git"
        git("init", "-q", "--bare", "-b", "main", self.remote)
        seed_path = tmp_path / "seed"
        with env_var("CANONRY_ACTOR", ALICE):
            seed = canonry.init(str(seed_path))
            for i in range(versions):
                seed.log_artifact(unique_file(tmp_path, "seed"), name="gemma-finetuned", type="model",
                                  metrics={"accuracy": round(0.5 + 0.1 * i, 2)})
            seed.link("gemma-finetuned:v0", "model/mnist", aliases=["production"])
            if automations:
                seed.set_automations(automations)
            git("-C", seed_path, "remote", "add", "origin", self.remote)
            result = seed.push()
        assert result.action == "pushed", result
        self.seed_path = seed_path
        self.base = rev(self.remote, "main")

    @property
    def url(self) -> str:
        return str(self.remote)

    def clone(self, name: str, url: str | None = None, actor: str = ALICE) -> Path:
        """`canonry clone URL DIR` (in-process); the path of the clone."""
        path = self.tmp / name
        r = invoke("clone", url or self.url, path, actor=actor)
        assert r.exit_code == 0, r
        return path

    def git_clone(self, name: str) -> Path:
        path = self.tmp / name
        git("clone", "-q", self.remote, path)
        return path

    def remote_store(self):
        """A fresh git clone of the remote, opened read-only (the remote itself is not touched)."""
        path = self.tmp / f"verify-{_counter['n']}"
        _counter["n"] += 1
        git("clone", "-q", self.remote, path)
        git("-C", path, "fetch", "-q", "origin", f"+{NOTES_REF}:{NOTES_REF}", check=False)
        return canonry.open(str(path)), path


@pytest.fixture
def world(tmp_path):
    """world(automations=None) -> World."""

    def make(**kw) -> World:
        return World(tmp_path, **kw)

    return make


# ---- a real smart-HTTP git server ------------------------------------------------------------------
class GitHTTPServer:
    """dulwich's WSGI git application (upload-pack and receive-pack) for every repository under
    `root`, served by wsgiref on 127.0.0.1:<free port> in a thread. Each request opens the
    repository afresh. `requests` records (method, path, had Authorization header)."""

    def __init__(self, root: Path):
        from dulwich.repo import Repo
        from dulwich.server import Backend
        from dulwich.web import make_wsgi_chain

        root = str(root)

        class FreshBackend(Backend):
            def open_repository(self, path):
                rel = os.fsdecode(path).lstrip("/")
                return Repo(os.path.join(root, rel))

        git_app = make_wsgi_chain(FreshBackend())
        self.requests: list[tuple[str, str, bool]] = []
        self.errors: list[str] = []
        server = self

        def app(environ, start_response):
            server.requests.append((environ["REQUEST_METHOD"], environ["PATH_INFO"],
                                    bool(environ.get("HTTP_AUTHORIZATION"))))
            return git_app(environ, start_response)

        class Threaded(ThreadingMixIn, WSGIServer):
            daemon_threads = True

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args):
                pass

            def log_error(self, *args):
                server.errors.append(args[0] % args[1:] if len(args) > 1 else str(args))

        self.httpd = make_server("127.0.0.1", 0, app, server_class=Threaded, handler_class=Quiet)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def url(self, name: str, userinfo: str | None = None) -> str:
        auth = f"{userinfo}@" if userinfo else ""
        return f"http://{auth}127.0.0.1:{self.port}/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def git_http():
    """git_http(root) -> GitHTTPServer serving the repositories under root."""
    servers = []

    def make(root) -> GitHTTPServer:
        s = GitHTTPServer(root)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


class GitHttpBackendServer:
    """`git http-backend` (git's own smart-HTTP CGI program) behind a tiny threaded HTTP server
    on 127.0.0.1: the server side of a push is real git, whose ref update is a true
    compare-and-swap (a lost race is answered `ng … failed to lock` / `stale info`)."""

    def __init__(self, root: Path):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        backend = os.path.join(git("--exec-path").strip(), "git-http-backend")
        server = self
        self.requests: list[tuple[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _cgi(self):
                path, _, query = self.path.partition("?")
                server.requests.append((self.command, path))
                body = self._body() if self.command == "POST" else b""
                env = dict(os.environ, GIT_PROJECT_ROOT=str(root), GIT_HTTP_EXPORT_ALL="1",
                           REMOTE_USER="tester", REMOTE_ADDR="127.0.0.1", GATEWAY_INTERFACE="CGI/1.1",
                           REQUEST_METHOD=self.command, PATH_INFO=path, QUERY_STRING=query,
                           CONTENT_TYPE=self.headers.get("Content-Type", ""),
                           CONTENT_LENGTH=str(len(body)), SERVER_PROTOCOL="HTTP/1.0")
                for key in ("Content-Encoding", "Git-Protocol", "Accept"):
                    if self.headers.get(key):
                        env["HTTP_" + key.upper().replace("-", "_")] = self.headers[key]
                proc = subprocess.run([backend], input=body, env=env, capture_output=True)
                head, _, payload = proc.stdout.partition(b"\r\n\r\n")
                if not _:
                    head, _, payload = proc.stdout.partition(b"\n\n")
                status, headers = 200, []
                for line in head.decode("latin-1").splitlines():
                    key, _, value = line.partition(":")
                    if key.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif key:
                        headers.append((key, value.strip()))
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _cgi

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def git_http_backend():
    """git_http_backend(root) -> GitHttpBackendServer serving the repositories under root."""
    servers = []

    def make(root) -> GitHttpBackendServer:
        s = GitHttpBackendServer(root)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def free_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
