"""The web catalog (canonry/web/): pages, visibility, escaping, security headers, path checks,
live updates and the static site. Starlette's TestClient drives the real ASGI app in process;
test_web_server.py runs it behind a real uvicorn and a real browser."""
from __future__ import annotations

import html
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from _web_helpers import HOSTILE, MEMBER, OUTSIDER, build_catalog_store
from conftest import assert_one_line_error, run_process
from starlette.testclient import TestClient

import canonry
from canonry.review.diff import render_markdown
from canonry.web.app import make_app
from canonry.web.audience import Audience
from canonry.web.site import build_site


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CANONRY_ACTOR", "Ada Lovelace <ada@example.com>")
        store = build_catalog_store(root / "store", root / "files")
    return root / "store", store


@pytest.fixture(scope="module")
def client(built):
    with TestClient(make_app(built[1])) as c:
        yield c


def _main(text: str) -> str:
    return text[text.index("<main"):text.index("</main>")]


# ---- pages ---------------------------------------------------------------------------------------------
def test_registries_page_lists_visible_registries_with_counts_and_newest_promotion(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    body = _main(r.text)
    for name in ("model", "dataset", "evil"):
        assert f'href="/{name}"' in body
    assert "secret" not in body  # restricted, and nobody signed in
    assert "model/first-collection:best → v2" in body  # the newest alias set in model
    assert "Showing organization-visible registries only." in r.text


def test_html_from_the_store_renders_as_text(client):
    for path in ("/", "/evil", "/model/first-collection/v0", "/artifacts/gemma-finetuned/v0"):
        text = client.get(path).text
        assert "<script>alert" not in text and "<img src=x" not in text, path
        assert "<script" not in text.lower(), path  # the catalog itself has no scripts either
    assert html.escape(HOSTILE, quote=False) in client.get("/evil").text.replace("&#34;", '"')


def test_registry_page_lists_collections_and_searches_with_filters(client):
    body = _main(client.get("/model").text)
    assert 'href="/model/first-collection"' in body and "vision" in body
    assert 'href="/model/first-collection/v1">production → v1' in body
    found = _main(client.get("/model", params={"q": '{"metrics.accuracy": {"$gt": 0.82}}', "kind": "versions"}).text)
    assert "2 versions found" in found
    assert "first-collection:v1" in found and "first-collection:v2" in found and "first-collection:v0" not in found
    by_tag = _main(client.get("/model", params={"tag": "vision"}).text)
    assert "1 collections found" in by_tag
    none = _main(client.get("/model", params={"tag": "audio"}).text)
    assert "0 collections found" in none


def test_bad_filters_are_one_line_messages_on_the_page(client):
    r = client.get("/model", params={"q": "{not json"})
    assert r.status_code == 200 and "the filter is not JSON" in r.text
    r = client.get("/model", params={"q": '{"nosuchfield": 1}'})
    assert r.status_code == 200 and 'class="error"' in r.text and "nosuchfield" in r.text
    assert client.get("/model", params={"kind": "dogs"}).status_code == 400


def test_collection_page_versions_badges_metrics_chart_history(client):
    r = client.get("/model/first-collection")
    body = _main(r.text)
    rows = re.findall(r'<th scope="row"><a href="/model/first-collection/(v\d+)">', body)
    assert rows == ["v2", "v1", "v0"]  # newest first
    assert '<span class="badge">production</span>' in body and '<span class="badge">staging</span>' in body
    assert '<th scope="col" class="num">accuracy</th>' in body and ">0.91<" in body
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="chart"' in body and "<polyline" in body
    assert "v2: accuracy = 0.91" in body
    assert "alias.set" in body and 'href="/commit/' in body  # the action history, linked to commits
    loss = _main(client.get("/model/first-collection", params={"metric": "loss"}).text)
    assert "v2: loss = 0.3" in loss
    assert client.get("/model/first-collection", params={"metric": "nope"}).status_code == 400


def test_version_page_files_metadata_lineage_links_and_fetch(client, built):
    store = built[1]
    av = store.artifact_version("gemma-finetuned:v1")
    body = _main(client.get("/model/first-collection/v1").text)
    assert av.digest in body and av.files[0]["sha256"] in body and "my_model.txt" in body
    assert ">epochs<" in body and ">accuracy<" in body
    assert "canonry get model/first-collection:v1 --to" in body
    assert 'canonry.use("model/first-collection:v1")' in body
    assert "<svg" in body and "lineage of gemma-finetuned:v1" in body and "mnist:v0" in body
    assert 'href="/artifacts/mnist/v0"' in body  # made from
    assert 'href="/model/first-collection"' in body
    by_alias = _main(client.get("/model/first-collection/production").text)
    assert "model/first-collection:production names this version now" in by_alias
    assert 'canonry.use("model/first-collection:production")' in by_alias
    dataset = _main(client.get("/artifacts/mnist/v0").text)
    assert "Made into" in dataset and 'href="/artifacts/gemma-finetuned/v2"' in dataset


def test_timeline_shows_promotions_and_automation_runs(client):
    body = _main(client.get("/timeline").text)
    assert "model/first-collection:production" in body and "dataset/mnist:production" in body
    assert "automation:notify" in body and "status-error" in body and "carrier-pigeon" in body
    assert "secret/" not in body


def test_compare_page_has_the_content_of_diff_markdown(client, built):
    store = built[1]
    r = client.get("/compare/main...promote/x")
    assert r.status_code == 200
    body = _main(r.text)
    markdown = render_markdown(store.diff("main..promote/x"))
    assert "- `production` v1 → v2 (`gemma-finetuned:v2`" in markdown
    assert "<code>production</code> v1 → v2 (<code>gemma-finetuned:v2</code>" in body
    assert "accuracy 0.85 → 0.91" in markdown and "accuracy 0.85 → 0.91" in body
    assert client.get("/compare/main...no-such-branch").status_code == 404
    assert client.get("/compare/nothing").status_code == 404


def test_commit_page_describes_one_commit(client, built):
    store = built[1]
    entry = next(e for e in store.history("model/first-collection") if e.op == "alias.set")
    body = _main(client.get(f"/commit/{entry.commit}").text)
    assert entry.summary in body and "<code>" in body


def test_unknown_pages_and_traversal_are_404(client):
    for path in ("/nope", "/model/nope", "/model/first-collection/v99", "/model/first-collection/v1/x",
                 "/artifacts/gemma-finetuned/v9", "/artifacts/x", "/static/../pages.py", "/static/pages.py",
                 "/model/%2e%2e/%2e%2e/etc/passwd", "/.git/config", "/model/..%2f..%2fcanonry.yaml",
                 "/commit/abc", "/compare/main...%2e%2e%2fetc"):
        r = client.get(path)
        assert r.status_code in (400, 404), path
        assert "canonry.yaml" not in r.text.split("<main", 1)[-1] or r.status_code == 404


def test_security_headers_and_read_only(client):
    r = client.get("/")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert client.get("/nope").headers["x-frame-options"] == "DENY"
    css = client.get("/static/catalog.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert client.post("/").status_code == 405
    assert client.delete("/model").status_code == 405


# ---- visibility -----------------------------------------------------------------------------------------
def test_restricted_registry_is_hidden_unless_the_viewer_is_a_member(built):
    store = built[1]
    with TestClient(make_app(store)) as anon:
        assert anon.get("/secret").status_code == 404
        assert anon.get("/secret/skunkworks/v0").status_code == 404
        assert anon.get("/artifacts/hidden-model/v0").status_code == 404
        assert "secret" not in _main(anon.get("/", headers={"X-Forwarded-Email": MEMBER}).text)  # not trusted
    with TestClient(make_app(store, trust_header="X-Forwarded-Email")) as proxied:
        member = proxied.get("/", headers={"X-Forwarded-Email": MEMBER}).text
        assert 'href="/secret"' in member and f"Showing what {MEMBER} may see" in member
        assert proxied.get("/secret/skunkworks/v0", headers={"X-Forwarded-Email": MEMBER}).status_code == 200
        assert proxied.get("/secret", headers={"X-Forwarded-Email": OUTSIDER}).status_code == 404
        assert proxied.get("/secret").status_code == 404
    with TestClient(make_app(store, everything=True)) as local:
        assert 'href="/secret"' in local.get("/").text
        assert local.get("/artifacts/hidden-model/v0").status_code == 200


def test_audience_of_a_store_admin_sees_everything(built):
    view = built[1].view()
    assert "secret" in Audience(email="ada@example.com").visible(view)  # ada made it: admin
    assert "secret" not in Audience(email=OUTSIDER).visible(view)


# ---- live -------------------------------------------------------------------------------------------------
def test_new_commits_show_on_the_next_page_load(tmp_path, model_file):
    canonry.init(str(tmp_path / "s"))
    server_store = canonry.open(str(tmp_path / "s"))
    with TestClient(make_app(server_store)) as c:
        assert "No collections yet." in c.get("/model").text
        writer = canonry.open(str(tmp_path / "s"))  # another Store: as another process would write
        writer.log_artifact(str(model_file), name="m", type="model", metrics={"accuracy": 0.5})
        writer.link("m:v0", "model/fresh", aliases=["production"])
        assert 'href="/model/fresh"' in c.get("/model").text
        assert c.get("/model/fresh/production").status_code == 200
        subprocess.run([sys.executable, "-m", "canonry", "-C", str(tmp_path / "s"), "tag", "add", "model/fresh", "later"],
                       check=True, capture_output=True)
        assert "later" in c.get("/model/fresh").text


# ---- static site ----------------------------------------------------------------------------------------------
def _links(page: Path) -> list[str]:
    return re.findall(r'(?:href)="([^"#?]+)"', page.read_text())


def test_static_site_pages_link_to_each_other_and_say_their_audience(built, tmp_path):
    out = tmp_path / "site"
    result = build_site(built[1], str(out))
    pages = sorted(out.rglob("index.html"))
    assert result["pages"] == len(pages) > 10
    assert (out / "model" / "first-collection" / "v1" / "index.html").exists()
    assert (out / "artifacts" / "mnist" / "v0" / "index.html").exists()
    assert not (out / "secret").exists()
    for page in pages:
        text = page.read_text()
        assert "Showing organization-visible registries only." in text and "A static snapshot" in text
        assert "skunkworks" not in text and "<script>alert" not in text
        for link in _links(page):
            assert not link.startswith("/"), (page, link)  # relative: works under any prefix
            assert (page.parent / link).resolve().exists(), (page, link)
    assert (out / "static" / "catalog.css").exists()
    assert 'role="search"' not in (out / "model" / "index.html").read_text()  # search needs the server


def test_static_site_for_a_member(built, tmp_path):
    out = tmp_path / "site"
    build_site(built[1], str(out), Audience(email=MEMBER))
    text = (out / "secret" / "skunkworks" / "v0" / "index.html").read_text()
    assert f"Showing what {MEMBER} may see" in text


def test_site_build_cli(built, tmp_path, run_cli):
    path = str(built[0])
    done = run_cli("-C", path, "site", "build", str(tmp_path / "s1"), "--json")
    assert done.exit_code == 0, done.output
    assert done.json()["pages"] > 10
    member = run_cli("-C", path, "site", "build", str(tmp_path / "s2"), "--as", MEMBER)
    assert member.exit_code == 0 and MEMBER in member.stdout
    assert (tmp_path / "s2" / "secret" / "index.html").exists()
    assert run_cli("-C", path, "site", "build", str(tmp_path / "s3"), "--as", "not an email").exit_code == 2
    (tmp_path / "file").write_text("x")
    assert_one_line_error(run_cli("-C", path, "site", "build", str(tmp_path / "file")), exit_code=2)
    assert run_cli("-C", path, "serve", "--all", "--trust-header", "X-Email").exit_code == 2
    # the catalog never shows the store branch's state under another branch's name
    for args in (("serve", "--branch", "nope"), ("site", "build", str(tmp_path / "s4"), "--branch", "nope")):
        assert_one_line_error(run_cli("-C", path, *args), contains=("no branch nope",))
    assert not (tmp_path / "s4").exists()


def test_cli_start_up_does_not_import_the_web_stack(built):
    code = ("import sys\nfrom canonry.cli.app import main\ntry:\n    main(['-C', sys.argv[1], 'ls'])\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in ('starlette', 'jinja2', 'uvicorn', 'canonry.web') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(built[0])], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_serve_on_an_address_in_use_is_one_line(built):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = run_process(["-C", str(built[0]), "serve", "--port", str(port)])
    assert_one_line_error(done, contains=("cannot listen on 127.0.0.1", "in use"))
