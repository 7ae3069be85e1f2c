"""The live catalog: a Starlette application over Catalog, and `serve` to run it with uvicorn.

Every request reads the branch head again (Store.view, the index brought up to it), so a push
or a write from another process shows on the next page load. All store access runs on one
worker thread: a Store and its SQLite index belong to the thread that uses them, and pages are
fast enough that one at a time is plenty for a catalog. Responses carry security headers (a
strict Content-Security-Policy: no scripts at all, styles only from the app itself), and the
only files served are the catalog's own stylesheet, never anything named by the URL.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from canonry.web.audience import Audience
from canonry.web.pages import Catalog, stylesheet

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "SECURITY_HEADERS", "make_app", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; img-src 'self' data:; "
                                "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}
def make_app(store, trust_header: str | None = None, everything: bool = False) -> Starlette:
    """The ASGI app for `store`. `trust_header`: the request header a reverse proxy sets to the
    signed-in viewer's email (only honoured when named here); `everything`: show restricted
    registries too (a local user's own view)."""
    catalog = Catalog(store)
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="canonry-web")
    css = stylesheet()

    def audience_of(request: Request) -> Audience:
        if everything:
            return Audience(everything=True)
        if trust_header:
            email = (request.headers.get(trust_header) or "").strip()
            if email and "@" in email and len(email) <= 254 and not any(c.isspace() for c in email):
                return Audience(email=email)
        return Audience()

    async def page(request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response("read-only catalog", status_code=405, headers={**SECURITY_HEADERS, "Allow": "GET, HEAD"})
        path = request.url.path
        params = {k: v for k, v in request.query_params.items() if k in ("q", "tag", "kind", "metric")}
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(worker, catalog.render, path, params, audience_of(request))
        return Response(result.body, status_code=result.status, media_type=result.content_type,
                        headers=SECURITY_HEADERS)

    async def style(request: Request) -> Response:
        return Response(css, media_type="text/css", headers={**SECURITY_HEADERS, "Cache-Control": "max-age=300"})

    routes = [Route("/static/catalog.css", style, methods=["GET", "HEAD"]),
              Route("/{path:path}", page, methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"])]
    app = Starlette(routes=routes)
    app.state.catalog = catalog
    app.state.worker = worker
    return app


def serve(store, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, trust_header: str | None = None,
          everything: bool = False, log=print) -> None:
    """Run the catalog until interrupted. The socket is bound here first, so an address in use
    (or not allowed) is an OSError for the caller rather than uvicorn's log line and exit."""
    import socket

    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    app = make_app(store, trust_header=trust_header, everything=everything)
    config = uvicorn.Config(app, log_level="warning", server_header=False, proxy_headers=False)
    log(f"canonry catalog of {store.path} (branch {store.branch}) on http://{host}:{sock.getsockname()[1]}/ "
        "— Ctrl+C stops it")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
