"""Reference artifacts, as W&B's: files recorded where they already are, never copied.

`canonry log --reference URL` lists the files at URL and records, for each, its path, size and
URL with a digest: sha256 when canonry reads the bytes (file:// and http(s):// sources), or the
ETag and version id the object store reports (s3://, gs://, az://: reading a whole bucket prefix
to hash it would cost what copying it costs), recorded as `etag:`/`version:` so nobody takes
them for a content hash. `get` fetches each file from its URL and checks it against what was
recorded: a source changed since it was logged is reported as such, never written silently.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

from canonry.errors import IntegrityError, InvalidInput
from canonry.files.blobs import Progress, hash_file, write_verified
from canonry.files.location import OBJECT_SCHEMES, redact

__all__ = ["REFERENCE_SCHEMES", "fetch_reference", "list_reference"]

REFERENCE_SCHEMES = ("file", "http", "https", *OBJECT_SCHEMES)
_HTTP_TIMEOUT_S = 60


def _scheme(url: str) -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    return {"s3a": "s3", "gcs": "gs", "azure": "az"}.get(scheme, scheme)


def _check(url: str) -> str:
    scheme = _scheme(url)
    if scheme not in REFERENCE_SCHEMES:
        raise InvalidInput(f"cannot log a reference to {redact(url)}: give a file://, http(s)://, s3://, "
                           "gs:// or az:// URL")
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None or (scheme != "http" and scheme != "https"
                                                                     and parts.query):
        raise InvalidInput(f"cannot log a reference to {redact(url)}: credentials do not belong in the "
                           "URL (it is committed); give them through the environment")
    return scheme


def list_reference(url: str) -> list[dict]:
    """Manifest entries for the file or folder at `url`, sorted by path."""
    from canonry.files.manifest import collect_files

    scheme = _check(url)
    if scheme == "file":
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise InvalidInput(f"cannot log a reference to {url}: file:// names a path of this machine")
        root = unquote(parts.path)
        entries = []
        single = os.path.isfile(root)
        for rel, full in collect_files(root):
            sha256, size = hash_file(full)
            ref = "file://" + os.path.abspath(full) if not single else "file://" + os.path.abspath(root)
            entries.append({"path": rel, "size": size, "sha256": sha256, "ref": ref})
        return entries
    if scheme in ("http", "https"):
        return [_http_entry(url)]
    return _object_entries(url)


def _http_entry(url: str) -> dict:
    from canonry.files.manifest import path_problem

    name = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    if not name or path_problem(name):
        raise InvalidInput(f"cannot log a reference to {redact(url)}: its last segment is not a file name")
    import hashlib

    h = hashlib.sha256()
    size = 0
    for chunk in _http_chunks(url):
        h.update(chunk)
        size += len(chunk)
    return {"path": name, "size": size, "sha256": h.hexdigest(), "ref": url}


def _http_chunks(url: str) -> Iterator[bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "canonry"}),
                                    timeout=_HTTP_TIMEOUT_S) as resp:
            while data := resp.read(1 << 22):
                yield data
    except urllib.error.HTTPError as e:
        raise IntegrityError(f"cannot read {redact(url)}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise IntegrityError(f"cannot read {redact(url)}: {reason}") from None


def _bucket_and_key(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return f"{_scheme(url)}://{parts.netloc}", parts.path.lstrip("/")


def _object_entries(url: str) -> list[dict]:
    import obstore

    from canonry.files.manifest import path_problem
    from canonry.files.objects import object_store, storage_error

    bucket, key = _bucket_and_key(url)
    store = object_store(bucket)
    metas = []
    try:
        if key and not key.endswith("/"):
            try:
                metas = [(key.rsplit("/", 1)[-1], obstore.head(store, key))]
            except FileNotFoundError:
                key += "/"  # not an object: a folder
        if not metas:
            for batch in obstore.list(store, prefix=key.rstrip("/") + "/" if key else None, chunk_size=1000):
                for meta in batch:
                    metas.append((meta["path"][len(key.rstrip("/") + "/") if key else 0:], meta))
    except Exception as e:
        raise storage_error(redact(url), "list", e) from None
    if not metas:
        raise InvalidInput(f"cannot log a reference to {redact(url)}: no objects there")
    entries = []
    for rel, meta in sorted(metas, key=lambda pm: pm[0]):
        if (why := path_problem(rel)) is not None:
            raise InvalidInput(f"cannot log a reference to {redact(url)}: object {rel!r} cannot be a "
                               f"manifest path: {why}")
        entry = {"path": rel, "size": meta["size"], "ref": f"{bucket}/{meta['path']}",
                 "etag": (meta.get("e_tag") or "").strip('"')}
        if meta.get("version"):
            entry["version"] = meta["version"]
        entries.append(entry)
    return entries


def fetch_reference(entry: dict, dest: str, progress: Progress | None = None) -> None:
    """Write the referenced file of `entry` to `dest`, checked against what was recorded."""
    url = entry["ref"]
    scheme = _check(url)
    what = f"{entry['path']} ({redact(url)})"
    changed = f"{redact(url)} has changed since it was logged"
    if scheme == "file":
        path = unquote(urlsplit(url).path)
        if not os.path.isfile(path):
            raise IntegrityError(f"{changed}: it is gone")
        try:
            write_verified(_file_chunks(path), entry["sha256"], dest, what, progress, size=entry["size"])
        except IntegrityError as e:
            raise IntegrityError(f"{changed} ({e})") from None
        return
    if scheme in ("http", "https"):
        try:
            write_verified(_http_chunks(url), entry["sha256"], dest, what, progress, size=entry["size"])
        except IntegrityError as e:
            raise IntegrityError(f"{changed} ({e})") from None
        return
    import obstore

    from canonry.files.objects import object_store, storage_error

    bucket, key = _bucket_and_key(url)
    store = object_store(bucket)
    try:
        result = obstore.get(store, key, options={"version": entry["version"]} if entry.get("version") else None)
    except FileNotFoundError:
        raise IntegrityError(f"{changed}: it is gone") from None
    except Exception as e:
        raise storage_error(redact(url), "read", e) from None
    etag = (result.meta.get("e_tag") or "").strip('"')
    if entry.get("etag") and etag != entry["etag"]:
        raise IntegrityError(f"{changed}: its ETag was {entry['etag']}, it is {etag} now")
    write_verified((bytes(c) for c in result.stream(min_chunk_size=1 << 22)), entry.get("sha256"), dest, what,
                   progress, size=entry["size"])


def _file_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while data := f.read(1 << 22):
            yield data
