"""Manifests: every file of a logged path with its size and sha256, and one digest over them."""
from __future__ import annotations

# hashlib is imported where it hashes: loading OpenSSL is a visible part of a fresh
# `canonry show`, which hashes nothing.
import os

from canonry.errors import InvalidInput
from canonry.files.blobs import LocalBlobStore

__all__ = ["collect_files", "digest", "store_files"]


def collect_files(path: str) -> list[tuple[str, str]]:
    """(relative posix path, absolute path) of every regular file under `path`, sorted."""
    if not os.path.exists(path):
        raise InvalidInput(f"cannot log {path}: no such file or directory")
    if os.path.isfile(path):
        return [(os.path.basename(path), path)]
    if not os.path.isdir(path):
        raise InvalidInput(f"cannot log {path}: not a regular file or directory")
    found = []
    for top, dirs, files in os.walk(path, onerror=_raise):
        dirs.sort()
        for name in files:
            full = os.path.join(top, name)
            if os.path.isfile(full):
                found.append((os.path.relpath(full, path).replace(os.sep, "/"), full))
    if not found:
        raise InvalidInput(f"cannot log {path}: the directory holds no files")
    return sorted(found)


def _raise(err: OSError) -> None:
    raise InvalidInput(f"cannot read {err.filename}: {err.strerror}")


def store_files(path: str, blobs: LocalBlobStore) -> list[dict]:
    """Copy every file into blob storage; return manifest entries."""
    entries = []
    for rel, full in collect_files(path):
        sha, size = blobs.put_file(full)
        entries.append({"path": rel, "size": size, "sha256": sha})
    return entries


def digest(entries: list[dict]) -> str:
    import hashlib

    h = hashlib.sha256()
    for e in sorted(entries, key=lambda e: e["path"]):
        h.update(f"{e['path']}\t{e['size']}\t{e['sha256']}\n".encode())
    return "sha256:" + h.hexdigest()
