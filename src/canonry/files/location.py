"""Where a store's artifact bytes live: its storage URL, checked, chosen and opened.

The URL is part of the store (`storage:` in canonry.yaml, set by `canonry init --storage` or
`canonry storage set`), so every clone, CI job and reviewer reads the same one. A user may point
their own copy elsewhere (a mirror, a cache) with CANONRY_STORAGE or `git config
canonry.storage`; CANONRY_BLOBS and `canonry.blobs` are older names of the same override.
Without any, the bytes stay in <git dir>/canonry/blobs: a one-machine store.

URLs: a folder (an absolute path or file:///path), s3://bucket/prefix (also S3-compatible
services through AWS_ENDPOINT_URL), gs://bucket/prefix, az://container/prefix. A URL that
holds credentials (user:password@, a query string such as a signature) is refused: credentials
come from the environment, never from the repository.
"""
from __future__ import annotations

import os
import re
from typing import NamedTuple
from urllib.parse import urlsplit

from canonry.errors import InvalidInput

__all__ = [
    "DEFAULT_FOLDER",
    "OBJECT_SCHEMES",
    "StorageChoice",
    "check_storage_url",
    "choose_storage",
    "open_blob_store",
    "redact",
]

DEFAULT_FOLDER = os.path.join("canonry", "blobs")  # under the git directory
OBJECT_SCHEMES = ("s3", "gs", "az")
_ALIASES = {"s3a": "s3", "gcs": "gs", "azure": "az"}
_URL = re.compile(r"\b([a-z][a-z0-9+.-]*)://([^\s/?#]*@)?([^\s?#]*)(\?[^\s#]*)?(#\S*)?", re.I)


class StorageChoice(NamedTuple):
    url: str  # file:///abs/path, s3://bucket/prefix, …
    source: str  # where it was chosen: the environment, git config, canonry.yaml, the default


def redact(text: str) -> str:
    """`text` with the user:password@ part and the query string of every URL in it removed."""
    return _URL.sub(lambda m: f"{m.group(1)}://{m.group(3)}", text)


def check_storage_url(url: str, base: str | None = None) -> str:
    """The storage URL `url` in its one spelling (file:///abs, s3://bucket/prefix), or
    InvalidInput saying why it cannot be one. A plain path is taken relative to `base` (the
    git directory for a git config value), else it must be absolute."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("a storage URL is a folder or s3://, gs://, az://, file:// URL; got nothing")
    url = url.strip()
    if "://" not in url:
        if not os.path.isabs(url):
            if base is None:
                raise InvalidInput(f"storage {url!r} is a relative path: give an absolute one, or a "
                                   "file:///, s3://, gs:// or az:// URL (every clone reads it)")
            url = os.path.join(base, url)
        return "file://" + os.path.normpath(url)
    parts = urlsplit(url)
    scheme = _ALIASES.get(parts.scheme.lower(), parts.scheme.lower())
    shown = redact(url)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidInput(f"storage {shown}: credentials do not belong in the URL (it is committed); "
                           "give them through the environment (AWS_ACCESS_KEY_ID, …)")
    if parts.query or parts.fragment:
        raise InvalidInput(f"storage {shown}: a storage URL has no ?query or #fragment")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidInput(f"storage {shown}: a file:// URL names a folder of this machine (file:///path)")
        if not parts.path.startswith("/"):
            raise InvalidInput(f"storage {shown}: give an absolute folder (file:///path)")
        return "file://" + os.path.normpath(parts.path)
    if scheme not in OBJECT_SCHEMES:
        raise InvalidInput(f"storage {shown}: unknown kind {parts.scheme!r} (a folder, file://, s3://, gs:// or az://)")
    if not parts.netloc:
        raise InvalidInput(f"storage {shown}: no bucket (s3://BUCKET/prefix)")
    prefix = parts.path.strip("/")
    if any(seg in ("", ".", "..") for seg in prefix.split("/")) and prefix:
        raise InvalidInput(f"storage {shown}: the prefix has an empty, '.' or '..' segment")
    return f"{scheme}://{parts.netloc}" + (f"/{prefix}" if prefix else "")


def choose_storage(git_dir: str, committed: str | None, git_config: dict[str, str | None],
                   environ=os.environ) -> StorageChoice:
    """The storage this process uses: the user's override (environment, then git config), then
    the store's own (canonry.yaml), then the folder in the git directory."""
    for name in ("CANONRY_STORAGE", "CANONRY_BLOBS"):
        if environ.get(name):
            return StorageChoice(check_storage_url(environ[name], base=os.getcwd()), f"${name}")
    for key in ("storage", "blobs"):
        if git_config.get(key):
            return StorageChoice(check_storage_url(git_config[key], base=git_dir), f"git config canonry.{key}")
    if committed:
        return StorageChoice(check_storage_url(committed), "canonry.yaml")
    return StorageChoice("file://" + os.path.join(git_dir, DEFAULT_FOLDER), "default")


def open_blob_store(url: str):
    """The blob store at `url` (a checked URL, see check_storage_url)."""
    if url.startswith("file://"):
        from canonry.files.blobs import LocalBlobStore

        root = url[len("file://"):]
        return LocalBlobStore(root, url=root)
    from canonry.files.objects import ObjectBlobStore

    return ObjectBlobStore(url)
