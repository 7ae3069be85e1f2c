"""`canonry merge`, `clone`, `push`, `pull` and `sync`: bringing branches and remotes together."""
from __future__ import annotations

import click

from canonry.cli.common import done, json_option, pass_ctx, pick_store_branch, store_branch_options

__all__ = ["clone", "merge", "pull", "push", "sync"]


@click.command()
@click.argument("branch")
@click.option("--message", default=None, help="Subject of the merge commit.")
@click.option("--no-ff", is_flag=True, help="Always make a merge commit.")
@json_option
@pass_ctx
def merge(c, branch, message, no_ff, as_json):
    """Merge proposal BRANCH into the store branch: replays its operations, renumbering new
    links if the store branch linked meanwhile; a true conflict stops with nothing written.

    What BRANCH brings in is first checked as `canonry validate` checks it (schemas, invariants,
    policies, roles): any finding refuses the merge, naming it, and nothing fires."""
    store = c.store()
    result = store.merge(branch, message=message, fast_forward=not no_ff)
    if result.kind == "up-to-date":
        text = f"{branch} is already merged into {store.branch}: nothing to do"
    else:
        text = f"merged {branch} into {store.branch} ({result.kind}, {len(result.records)} operation(s))"
        for r in result.records:
            text += f"\n  {r.get('summary', r.get('op'))}"
    done(as_json, result.to_dict(), text)


@click.command()
@click.argument("url")
@click.argument("directory", type=click.Path(file_okay=False))
@store_branch_options("Store branch to check out (default: the remote's HEAD).")
@click.option("--bare", is_flag=True)
@json_option
def clone(url, directory, store_branch, old_store_branch, bare, as_json):
    """Clone the store at URL (path, file://, http(s)://, ssh) into DIRECTORY."""
    from canonry.sharing.remote import safe_url
    from canonry.store import clone_store

    branch = pick_store_branch(store_branch, old_store_branch)
    store = clone_store(url, directory, branch=branch, bare=bare)
    done(as_json, {"url": safe_url(url), "path": store.path, "branch": store.branch},
         f"cloned {safe_url(url)} into {directory} (branch {store.branch})")


def _sync_text(verb: str, r) -> str:
    if r.action == "up-to-date":
        return f"{r.branch}: up to date with {r.remote}"
    text = f"{verb} {r.branch} ({r.action}) {(r.old or 'nothing')[:10]} -> {(r.new or '')[:10]}"
    if r.replayed:
        text += f"; replayed {r.replayed} local commit(s) on the remote's new state"
    if verb == "pulled" and r.incoming:
        a, _, b = r.incoming.partition("..")
        shown = f"{a[:10]}..{b[:10]}" if b else a[:10]
        text += f"\n  deliver their events with: canonry automations run {shown}"
    return text


@click.command()
@click.argument("remote", default="origin")
@json_option
@pass_ctx
def push(c, remote, as_json):
    """Push the store branch (and the automation run log) to REMOTE; never forced. If the
    remote moved, your commits are replayed on its new state first."""
    r = c.store().push(remote)
    done(as_json, r.to_dict(), _sync_text("pushed", r))


@click.command()
@click.argument("remote", default="origin")
@click.option("--discard-local", is_flag=True,
              help="Drop your commits REMOTE lacks instead of replaying them (the way out of a "
                   "conflict); they are kept under refs/canonry/discarded/.")
@json_option
@pass_ctx
def pull(c, remote, discard_local, as_json):
    """Fetch REMOTE's store branch and bring yours onto it (local work is replayed on top)."""
    r = c.store().pull(remote, discard_local=discard_local)
    text = _sync_text("pulled", r)
    if r.action == "discarded-local":
        text = (f"pulled {r.branch}: dropped {r.discarded} local commit(s), kept at {r.kept_at} "
                f"(git log {r.kept_at}); now at {r.remote}'s {(r.new or '')[:10]}")
    done(as_json, r.to_dict(), text)


@click.command()
@click.argument("remote", default="origin")
@json_option
@pass_ctx
def sync(c, remote, as_json):
    """Pull, then push."""
    r = c.store().sync(remote)
    done(as_json, r.to_dict(), _sync_text("synced", r))
