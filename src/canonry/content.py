"""The bytes behind artifact versions: where they live, and moving, checking and collecting them.

The store's records hold manifests (files/manifest.py); the bytes are in its storage
(files/location.py: a folder or a bucket). This module is what the Store does with them:
choose the storage, restore a version into a folder or the download cache, list which blobs
the versions of every branch need, verify storage against them, push what was logged offline,
and collect what no version needs.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from canonry import model as m
from canonry.errors import IntegrityError, InvalidInput
from canonry.files import manifest
from canonry.files.blobs import BlobStore, LocalBlobStore, Progress, restore_blob
from canonry.files.location import DEFAULT_FOLDER
from canonry.files.transfer import parallel, workers_for

__all__ = [
    "GC_GRACE_S",
    "collect_garbage",
    "needed_blobs",
    "offline_folder",
    "push_blobs",
    "restore_files",
    "verify_blobs",
]

GC_GRACE_S = 3600  # a blob younger than this may belong to a `log` that has not committed yet


def offline_folder(git_dir: str) -> LocalBlobStore:
    """The folder `log --offline` keeps bytes in until `storage push` (the default storage)."""
    root = os.path.join(git_dir, DEFAULT_FOLDER)
    return LocalBlobStore(root)


def restore_files(blobs: BlobStore, address: str, entries: list[dict], to: str, force: bool = False,
                  progress: Progress | None = None, fallback: BlobStore | None = None) -> None:
    """Write every file of a manifest under `to`, each verified before it appears, several at
    a time. The whole manifest is checked first (files/manifest.py), and for a folder storage
    that every blob is there. `fallback` (the offline folder) is read first when it has a blob."""
    from canonry.files.references import fetch_reference

    local = isinstance(blobs, LocalBlobStore)
    plan = manifest.restore_plan(address, entries, os.path.abspath(to), force=force,
                                 blobs=blobs if local and fallback is None else None)

    def fetch(item: tuple[dict, str]) -> None:
        entry, dest = item
        if "ref" in entry:
            fetch_reference(entry, dest, progress)
        elif fallback is not None and fallback.has(entry["sha256"]):
            restore_blob(fallback, entry["sha256"], dest, progress)
        else:
            try:
                restore_blob(blobs, entry["sha256"], dest, progress)
            except IntegrityError as e:
                raise IntegrityError(f"{address}: {entry['path']}: {e}") from None

    parallel(fetch, plan, workers_for(blobs, len(plan)))


def _versions_at(view) -> Iterable[tuple[str, dict]]:
    for name in view.artifact_names():
        for version in view.artifact_versions(name):
            rec = view.read(m.artifact_version_file(name, version), copy_=False)
            if rec is not None and not rec.get("deleted_at"):  # a deleted version needs no bytes
                yield f"{name}:{version}", rec


def needed_blobs(views: Iterable[Any]) -> dict[str, list[str]]:
    """sha256 -> the versions (NAME:vK) whose files need it, over the given views (one per
    branch tip); references are not in storage and are left out, and so are versions deleted
    (`artifact delete`) at that tip."""
    needed: dict[str, list[str]] = {}
    for view in views:
        for address, rec in _versions_at(view):
            for entry in rec.get("files") or ():
                if "ref" not in entry and entry.get("sha256"):
                    users = needed.setdefault(entry["sha256"], [])
                    if address not in users:
                        users.append(address)
    return needed


def verify_blobs(blobs: BlobStore, versions: list[tuple[str, dict]], deep: bool = True,
                 progress: Progress | None = None) -> list[dict]:
    """A finding for every file of `versions` that storage lacks or holds corrupt (`deep`:
    read and hash every blob; else check it is there). References are fetched and checked
    against what was recorded only when `deep`. Each finding: path, sha256/ref, problem,
    versions."""
    import hashlib

    from canonry.files.references import fetch_reference

    wanted: dict[str, dict] = {}
    for address, rec in versions:
        for entry in rec.get("files") or ():
            key = entry.get("ref") or entry["sha256"]
            item = wanted.setdefault(key, {"entry": entry, "versions": []})
            if address not in item["versions"]:
                item["versions"].append(address)

    def check(key: str) -> dict | None:
        entry = wanted[key]["entry"]
        problem = None
        try:
            if "ref" in entry:
                if deep:
                    import tempfile

                    with tempfile.TemporaryDirectory(prefix="canonry-verify-") as tmp:
                        fetch_reference(entry, os.path.join(tmp, "file"), progress)
            elif not deep:
                if not blobs.has(key):
                    problem = "missing"
            else:
                h = hashlib.sha256()
                for chunk in blobs.chunks(key):
                    h.update(chunk)
                    if progress:
                        progress(len(chunk))
                if h.hexdigest() != key:
                    problem = f"corrupt: its bytes hash to {h.hexdigest()[:12]}"
        except IntegrityError as e:
            problem = "missing" if "is not in storage" in str(e) else str(e)
        if problem is None:
            return None
        return {"path": entry["path"], ("ref" if "ref" in entry else "sha256"): key, "problem": problem,
                "versions": wanted[key]["versions"]}

    keys = sorted(wanted)
    found = parallel(check, keys, workers_for(blobs, len(keys)))
    return [f for f in found if f is not None]


def push_blobs(source: BlobStore, target: BlobStore, needed: dict[str, list[str]],
               progress: Progress | None = None) -> dict:
    """Upload to `target` every blob a version needs that `source` holds and `target` lacks;
    counts of what was uploaded, already there, and missing from both."""
    if getattr(source, "url", None) == getattr(target, "url", None):
        return {"uploaded": 0, "present": len(needed), "missing": [], "bytes": 0}

    def one(sha256: str) -> tuple[str, int]:
        if target.has(sha256):
            return "present", 0
        if not source.has(sha256):
            return "missing", 0
        if isinstance(source, LocalBlobStore):
            _, size = target.put_file(source.path(sha256), progress)
            return "uploaded", size
        raise InvalidInput(f"storage push copies from a folder; {source.url} is not one")

    keys = sorted(needed)
    results = parallel(one, keys, workers_for(target, len(keys)))
    missing = [k for k, (what, _) in zip(keys, results) if what == "missing"]
    return {"uploaded": sum(1 for what, _ in results if what == "uploaded"),
            "present": sum(1 for what, _ in results if what == "present"),
            "missing": [{"sha256": k, "versions": needed[k]} for k in missing],
            "bytes": sum(size for _, size in results)}


def collect_garbage(blobs: BlobStore, needed: dict[str, list[str]], dry_run: bool = True,
                    grace_s: float = GC_GRACE_S) -> dict:
    """Blobs in storage that no version of any branch needs (and older than `grace_s`, so a
    `log` between upload and commit keeps its bytes); deleted unless `dry_run`."""
    now = time.time()
    unneeded = [(sha, size) for sha, size, modified in blobs.blobs()
                if sha not in needed and now - modified >= grace_s]
    if not dry_run:
        parallel(lambda item: blobs.delete(item[0]), unneeded, workers_for(blobs, len(unneeded)))
    return {"blobs": [{"sha256": sha, "size": size} for sha, size in unneeded],
            "bytes": sum(size for _, size in unneeded), "deleted": not dry_run}

