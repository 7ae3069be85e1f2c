"""A real S3 API server for the object-storage tests: moto in server mode, started on
127.0.0.1 as a subprocess (not a mocked client), once per test session."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

__all__ = ["S3Server", "s3_env", "s3_server"]


class S3Server:
    def __init__(self, proc: subprocess.Popen, endpoint: str):
        self.proc = proc
        self.endpoint = endpoint

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "canonry-test-key",
                "AWS_SECRET_ACCESS_KEY": "canonry-test-secret-do-not-log", "AWS_DEFAULT_REGION": "us-east-1"}

    def client(self):
        import boto3

        env = self.env()
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])

    def new_bucket(self) -> str:
        name = f"b-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    pytest.importorskip("obstore")
    port = _free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")  # noqa: SIM115 (closed at teardown)
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60  # a busy machine starts a Python server slowly
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto server did not start (exit {proc.poll()})") from None
            time.sleep(0.1)
    yield S3Server(proc, f"http://127.0.0.1:{port}")
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """The S3 server's endpoint and credentials in the environment, as a user would set them."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    os.environ.pop("AWS_PROFILE", None)
    return s3_server
