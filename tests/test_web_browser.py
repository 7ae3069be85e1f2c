"""The catalog behind a real server (`canonry serve`, uvicorn, on 127.0.0.1) in a real headless
browser (Debian's chromium driven by playwright; .ci/run installs it). Screenshots of each
page are kept in tests/out/screenshots/ (README.md shows two of them)."""
from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _web_helpers import HOSTILE, build_catalog_store

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).parent / "out" / "screenshots"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`canonry serve` in its own process, on a free port of 127.0.0.1, until the module ends."""
    root = tmp_path_factory.mktemp("served")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CANONRY_ACTOR", "Ada Lovelace <ada@example.com>")
        build_catalog_store(root / "store", root / "files").close()
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    log = open(root / "serve.log", "wb")  # noqa: SIM115 (open for the server's whole life)
    proc = subprocess.Popen([sys.executable, "-m", "canonry", "-C", str(root / "store"), "serve", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60  # a busy machine: a budget of time, not of attempts
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                log.close()
                pytest.fail(f"canonry serve did not start: {(root / 'serve.log').read_text()}")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}", port
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def _raw_get(port: int, path: str) -> tuple[int, bytes]:
    """GET `path` exactly as written (no client-side normalisation of '..')."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("GET", path, skip_accept_encoding=True)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def test_real_server_binds_loopback_and_refuses_traversal(server):
    _, port = server
    status, body = _raw_get(port, "/")
    assert status == 200 and b"Registries" in body
    for path in ("/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/static/../../pyproject.toml",
                 "/static/..%2f..%2fpages.py", "/model/first-collection/..%2f..%2f..%2fcanonry.yaml",
                 "/compare/main...%2e%2e/%2e%2e/HEAD"):
        status, body = _raw_get(port, path)
        assert status in (400, 404), path
        assert b"root:" not in body and b"format_version" not in body


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no browser: {CHROMIUM} is missing "
                    "(Debian: apt-get install chromium; .ci/run does it)")
def test_pages_in_a_real_browser(server):
    from playwright.sync_api import sync_playwright

    base, _ = server
    SHOTS.mkdir(parents=True, exist_ok=True)
    dialogs: list[str] = []
    csp_errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("console", lambda msg: csp_errors.append(msg.text) if "Content Security Policy" in msg.text
                    else None)

            page.goto(base + "/")
            assert page.locator("h1").inner_text() == "Registries"
            page.screenshot(path=str(SHOTS / "registries.png"), full_page=True)

            page.get_by_role("link", name="model", exact=True).click()
            assert page.locator("h1").inner_text() == "Registry model"
            page.screenshot(path=str(SHOTS / "registry.png"), full_page=True)

            page.get_by_role("link", name="first-collection", exact=True).click()
            assert page.locator("h1").inner_text() == "Collection model/first-collection"
            badges = page.locator("table.versions .badge").all_inner_texts()
            assert "production" in badges and "staging" in badges and "best" in badges
            chart = page.locator("svg.chart")
            assert chart.is_visible() and chart.bounding_box()["width"] > 200
            assert page.locator("svg.chart circle").count() == 3
            page.screenshot(path=str(SHOTS / "collection.png"), full_page=True)

            page.get_by_label("Metric", exact=True).select_option("loss")
            page.get_by_role("button", name="Show").click()  # a plain form: no script needed
            assert "metric=loss" in page.url
            assert "loss across versions" in (page.locator("svg.chart title").first.text_content() or "")

            page.get_by_role("link", name="v1", exact=True).click()
            assert page.locator("h1").inner_text() == "model/first-collection:v1"
            lineage = page.locator("figure.lineage svg")
            assert lineage.is_visible()
            assert "mnist:v0" in (lineage.text_content() or "")
            page.screenshot(path=str(SHOTS / "version.png"), full_page=True)

            page.goto(base + "/compare/main...promote/x")
            assert "main...promote/x" in page.locator("h1").inner_text()
            assert "production v1 → v2" in page.locator("main li").first.inner_text()
            page.screenshot(path=str(SHOTS / "compare.png"), full_page=True)

            page.goto(base + "/evil")
            assert page.locator("main > p").first.inner_text() == HOSTILE  # shown as text, never run
            page.goto(base + "/timeline")
            assert page.locator("h1").inner_text() == "Timeline"
            page.screenshot(path=str(SHOTS / "timeline.png"), full_page=True)

            phone = browser.new_page(viewport={"width": 390, "height": 844})
            phone.goto(base + "/model/first-collection")
            overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"the page is {overflow}px wider than a phone"
            phone.screenshot(path=str(SHOTS / "collection-phone.png"), full_page=True)
        finally:
            browser.close()
    assert dialogs == [] and csp_errors == []
