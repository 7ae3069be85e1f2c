"""`canonry serve` and `canonry site build`: the web catalog (canonry/web/ does the work).

Starlette, Jinja2 and uvicorn come with the `web` extra (`pip install 'canonry[web]'`) and are
imported only when these commands run.
"""
from __future__ import annotations

import click

from canonry.cli.common import UserError, branch_option, done, json_option, pass_ctx

__all__ = ["read_branch", "serve", "site", "site_build"]

MISSING = ("the web catalog needs the web extra: pip install 'canonry[web]' "
           "(Starlette, Jinja2 and uvicorn; missing: {name})")


def _web(module: str):
    """Import canonry.web.MODULE, or a one-line error naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(f"canonry.web.{module}")
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in ("starlette", "jinja2", "uvicorn", "markupsafe", "anyio"):
            raise UserError(MISSING.format(name=e.name.split(".")[0])) from None
        raise


def read_branch(f):
    """`--branch B` of a read: B must exist (the catalog never creates a branch)."""
    return branch_option(f, read=True)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (the default is reachable from this machine only).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--trust-header", metavar="H",
              help="Take the viewer's email from request header H (e.g. X-Forwarded-Email), set by a reverse "
                   "proxy that signs people in; restricted registries show to their members.")
@click.option("--all", "everything", is_flag=True,
              help="Show every registry, restricted ones too (a local user's own view).")
@read_branch
@pass_ctx
def serve(c, host, port, trust_header, everything):
    """Serve a read-only web catalog of the store, live: new commits show on the next page load.

    Without --trust-header or --all only organization-visible registries are shown."""
    if trust_header and everything:
        raise click.UsageError("--trust-header and --all exclude each other")
    app = _web("app")
    store = c.store()
    try:
        app.serve(store, host=host, port=port, trust_header=trust_header, everything=everything,
                  log=lambda text: click.echo(text, err=True))
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


@click.group()
def site():
    """The web catalog as static files, for GitHub or GitLab Pages: build."""


@site.command("build")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--as", "as_email", metavar="EMAIL",
              help="Build for EMAIL: organization registries and the restricted ones EMAIL is a member of "
                   "(default: organization-visible registries only).")
@json_option
@read_branch
@pass_ctx
def site_build(c, directory, as_email, as_json):
    """Write the catalog's pages as static HTML into DIRECTORY, for one audience."""
    if as_email is not None and ("@" not in as_email or any(ch.isspace() for ch in as_email)):
        raise click.BadParameter(f"{as_email!r} is not an email", param_hint="--as")
    site_mod = _web("site")
    audience = _web("audience").Audience(email=as_email)
    result = site_mod.build_site(c.store(), directory, audience)
    done(as_json, result, f"wrote {result['pages']} pages to {directory}: {result['audience']}")

