"""`canonry storage …`: where a store's artifact bytes live, and keeping storage whole."""
from __future__ import annotations

import click

from canonry.cli.common import UserError, done, json_option, pass_ctx, read_options, say, store_options

__all__ = ["quiet_option", "storage", "storage_push", "storage_set", "storage_show", "storage_verify"]


def quiet_option(f):
    return click.option("--quiet", "-q", is_flag=True, help="No progress bar.")(f)


@click.group()
def storage():
    """Where artifact bytes live (a folder, s3://, gs://, az://): show, set, verify, push."""


@storage.command("show")
@json_option
@pass_ctx
def storage_show(c, as_json):
    """Print the storage this store uses, and where that choice comes from."""
    store = c.store()
    location = store.storage_location
    committed = store.view().store_config().get("storage")
    data = {"url": location.url, "source": location.source, "committed": committed}
    text = f"{location.url} (from {location.source})"
    if committed and location.source != "canonry.yaml":
        text += f"; the store's own is {committed}"
    done(as_json, data, text)


@storage.command("set")
@click.argument("url", required=False)
@click.option("--unset", is_flag=True, help="Go back to each clone's own folder (<git dir>/canonry/blobs).")
@store_options
def storage_set(c, url, unset, as_json):
    """Record URL as where the store's bytes live, for every clone (a commit; store admins only).

    URL: an absolute folder or file:///path, s3://BUCKET/PREFIX (also MinIO, Ceph, R2 through
    AWS_ENDPOINT_URL), gs://BUCKET/PREFIX, az://CONTAINER/PREFIX. Credentials come from the
    environment, never from the URL. Bytes already logged stay where they are: `canonry storage
    push` uploads them."""
    if bool(url) == bool(unset):
        raise click.UsageError("give a URL, or --unset")
    result = c.store().set_storage(None if unset else url)
    if not result["changed"]:
        text = f"storage is already {result['storage'] or 'each clone’s own folder'}; nothing changed"
    elif result["storage"]:
        text = f"storage set to {result['storage']} (run `canonry storage push` to upload bytes logged before)"
    else:
        text = "storage unset: each clone keeps its bytes in its own folder"
    done(as_json, result, text)


@storage.command("verify")
@click.argument("target", required=False)
@click.option("--all", "all_", is_flag=True, help="Every version on every branch (the default without TARGET).")
@click.option("--quick", is_flag=True, help="Check that each blob is there, without reading it back.")
@quiet_option
@read_options
def storage_verify(c, target, all_, quick, quiet, as_json):
    """Check that storage holds every file of TARGET's version (or of every version) with its
    sha256; name each missing or corrupt file and the versions that need it. Exit 1 if any."""
    if target and all_:
        raise click.UsageError("give TARGET or --all, not both")
    from canonry.cli.progress import byte_progress

    store = c.store()
    with byte_progress("verifying", None, quiet or as_json or quick) as progress:
        problems = store.verify_storage(target, deep=not quick, progress=progress)
    if as_json:
        from canonry.output import emit_json

        emit_json({"storage": store.storage_location.url, "problems": problems})
    else:
        for p in problems:
            key = p.get("sha256", "")[:12] or p.get("ref")
            say(f"{p['problem']}: {p['path']} ({key}), needed by {', '.join(p['versions'])}")
        if not problems:
            say(f"storage {store.storage_location.url}: every file {'present' if quick else 'verified'}")
    if problems:
        raise UserError(f"{len(problems)} file(s) missing or corrupt in storage {store.storage_location.url}")


@storage.command("push")
@quiet_option
@read_options
def storage_push(c, quiet, as_json):
    """Upload what this clone logged offline (or before storage was set) to the store's storage."""
    from canonry.cli.progress import byte_progress
    from canonry.output import human_size

    store = c.store()
    with byte_progress("uploading", None, quiet or as_json) as progress:
        result = store.push_storage(progress)
    lines = [f"uploaded {result['uploaded']} blob(s) ({human_size(result['bytes'])}) to "
             f"{store.storage_location.url}; {result['present']} already there"]
    lines += [f"missing everywhere: {m['sha256'][:12]}, needed by {', '.join(m['versions'])}"
              for m in result["missing"]]
    done(as_json, result, "\n".join(lines))
    if result["missing"]:
        raise UserError(f"{len(result['missing'])} blob(s) are neither here nor in storage "
                        "(logged in another clone that has not pushed them?)")
