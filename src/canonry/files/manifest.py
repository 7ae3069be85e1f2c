"""Manifests: every file of a logged path with its size and sha256, and one digest over them.

A manifest path is where `canonry get` writes a file under the folder it is given, and it comes
from a YAML file anyone with push access can write by hand. So one rule, `path_problem`, says
what a manifest path may be, and `log` (what goes in), `validate` (what is reviewed) and `get`
(what comes out) all apply it: a relative POSIX path of at most MAX_DEPTH segments and
MAX_PATH_BYTES bytes in UTF-8; each segment non-empty, not `.` or `..`, at most
MAX_SEGMENT_BYTES bytes; no backslash (a separator on Windows), no control character (NUL, and
the tab and newline that separate the fields of the digest's lines), no drive prefix (`C:`).
Within one manifest no path appears twice and none is also a folder of another (`a` and `a/b`).
"""
from __future__ import annotations

# hashlib is imported where it hashes: loading OpenSSL is a visible part of a fresh
# `canonry show`, which hashes nothing.
import os
import re
from collections.abc import Iterable

from canonry.errors import IntegrityError, InvalidInput

__all__ = [
    "MAX_DEPTH",
    "MAX_PATH_BYTES",
    "MAX_SEGMENT_BYTES",
    "collect_files",
    "digest",
    "manifest_problems",
    "path_problem",
    "restore_plan",
    "shown",
    "store_files",
    "total_size",
]

MAX_DEPTH = 64  # folders nested deeper than this are not a model or a data set, but an attack
MAX_PATH_BYTES = 1024
MAX_SEGMENT_BYTES = 255  # NAME_MAX of common file systems

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")
_SURROGATE = re.compile("[\ud800-\udfff]")


def shown(path: str) -> str:
    """`path` printable on one line: bytes that are not UTF-8 as \\xNN, controls escaped."""
    try:
        raw = path.encode("utf-8", "surrogateescape")  # a name read from disk: its bytes
    except UnicodeEncodeError:
        raw = path.encode("utf-8", "surrogatepass")  # any other lone surrogate
    text = raw.decode("utf-8", "backslashreplace")
    return text if not _CONTROL.search(text) else text.encode("unicode_escape").decode("ascii")


def path_problem(path: object) -> str | None:
    """Why `path` may not be a manifest path, or None when it may (the rule is in the module
    docstring)."""
    if not isinstance(path, str) or not path:
        return "a manifest path is a non-empty string"
    if _CONTROL.search(path):
        return "it holds a control character"
    if _SURROGATE.search(path):  # how Python reads a file name whose bytes are not UTF-8
        return "it is not valid UTF-8"
    if "\\" in path:
        return "it holds a backslash (use / between folders)"
    if path.startswith("/") or _DRIVE.match(path):
        return "it is absolute (manifest paths are relative to the folder `get` writes to)"
    parts = path.split("/")
    if len(parts) > MAX_DEPTH:
        return f"it is {len(parts)} levels deep (at most {MAX_DEPTH})"
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return f"it is longer than {MAX_PATH_BYTES} bytes"
    for part in parts:
        if part in ("", ".", ".."):
            return "it has an empty, '.' or '..' segment (a//b, ./a, ../a, a/)"
        if len(part.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
            return f"a segment is longer than {MAX_SEGMENT_BYTES} bytes"
    return None


def manifest_problems(paths: Iterable[object]) -> list[tuple[object, str]]:
    """(path, why) for every path of a manifest that breaks the rule, then every duplicate and
    every path that is also a folder of another; empty when the manifest is sound."""
    problems: list[tuple[object, str]] = []
    seen: set[str] = set()
    for path in paths:
        why = path_problem(path)
        if why is not None:
            problems.append((path, why))
            continue
        assert isinstance(path, str)
        if path in seen:
            problems.append((path, "it appears twice"))
        seen.add(path)
    for path in sorted(seen):
        parts = path.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder in seen:
                problems.append((folder, f"it is a file, and also the folder of {path}"))
                break
    return problems


def restore_plan(address: str, entries: list[dict], root: str, force: bool = False,
                 blobs=None) -> list[tuple[dict, str]]:
    """(entry, destination) of every file of a manifest restored under `root`, checked whole
    before anything is written: raises IntegrityError for an unsafe path or, when `blobs` (a
    blob store, files/blobs.py) is given, content missing from storage; InvalidInput when
    something in `root` is in the way — a folder, a symbolic link below `root` (never
    followed), or an existing file unless `force`."""
    problems = manifest_problems(e.get("path") for e in entries)
    if problems:
        path, why = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise IntegrityError(f"{address}: refusing unsafe manifest path {path!r}: {why}{more}")
    plan = []
    for entry in entries:
        if blobs is not None and "ref" not in entry and not blobs.has(entry["sha256"]):
            raise IntegrityError(f"{address}: content {entry['sha256'][:12]} of {entry['path']} is not in "
                                 f"storage {blobs.url} (logged from a clone whose storage is "
                                 "elsewhere, or offline? see `canonry storage show`, `canonry storage push`)")
        dest = os.path.join(root, *entry["path"].split("/"))
        _check_room(root, dest)
        if os.path.lexists(dest) and not os.path.islink(dest) and not force:
            raise InvalidInput(f"cannot write {dest}: it exists (--force to overwrite; nothing written)")
        plan.append((entry, dest))
    return plan


def _check_room(root: str, dest: str) -> None:
    """A file cannot be written where a folder is, nor below a file, nor through a symbolic
    link below `root` (it may lead out of it): say so before writing. `root` itself may be a
    link: the user named it."""
    for path in (dest, dest + ".canonry-partial"):
        if os.path.islink(path):
            raise InvalidInput(f"cannot write {dest}: {path} is a symbolic link (not followed; nothing written)")
    if os.path.isdir(dest):
        raise InvalidInput(f"cannot write {dest}: a folder is in the way")
    parent = os.path.dirname(dest)
    while True:  # from the file's folder up to `root` itself (which may be "/")
        if len(parent) > len(root) and os.path.islink(parent):
            raise InvalidInput(f"cannot write {dest}: {parent} is a symbolic link (not followed; nothing written)")
        if os.path.lexists(parent) and not os.path.isdir(parent):
            raise InvalidInput(f"cannot write {dest}: {parent} is not a folder")
        if len(parent) <= len(root):
            break
        parent = os.path.dirname(parent)


def collect_files(path: str) -> list[tuple[str, str]]:
    """(relative posix path, absolute path) of every regular file under `path`, sorted."""
    if not os.path.exists(path):
        raise InvalidInput(f"cannot log {path}: no such file or directory")
    if os.path.isfile(path):
        name = os.path.basename(path)
        if (why := path_problem(name)) is not None:
            raise InvalidInput(f"cannot log {shown(path)}: its name {shown(name)!r} cannot be a manifest "
                               f"path: {why}")
        return [(name, path)]
    if not os.path.isdir(path):
        raise InvalidInput(f"cannot log {shown(path)}: not a regular file or directory")
    found = []
    for top, dirs, files in os.walk(path, onerror=_raise):
        dirs.sort()
        for name in dirs + files:
            full = os.path.join(top, name)
            # A symbolic link inside a logged folder is refused, not followed: it may lead out
            # of the folder (to /etc/hostname, ~/.ssh). A dangling one leads nowhere and is
            # skipped, as ever; the path given to `log` itself may be a link (the user named it).
            if os.path.islink(full) and os.path.exists(full):
                raise InvalidInput(f"cannot log {shown(full)}: it is a symbolic link (canonry logs "
                                   f"only the regular files of a folder: copy them, e.g. `cp -rL`)")
        for name in files:
            full = os.path.join(top, name)
            if not os.path.islink(full) and not os.path.isfile(full) and os.path.exists(full):
                raise InvalidInput(f"cannot log {shown(full)}: it is not a regular file (a fifo, socket "
                                   "or device: canonry logs only the regular files of a folder)")
            if os.path.isfile(full):
                rel = os.path.relpath(full, path).replace(os.sep, "/")
                if (why := path_problem(rel)) is not None:
                    raise InvalidInput(f"cannot log {shown(full)}: its path {shown(rel)!r} cannot be a "
                                       f"manifest path: {why}")
                found.append((rel, full))
    if not found:
        raise InvalidInput(f"cannot log {path}: the directory holds no files")
    return sorted(found)


def _raise(err: OSError) -> None:
    raise InvalidInput(f"cannot read {shown(str(err.filename))}: {err.strerror}")


def total_size(files: list[tuple[str, str]]) -> int:
    """Bytes in the files `collect_files` found (for a progress bar)."""
    total = 0
    for _, full in files:
        try:
            total += os.stat(full).st_size
        except OSError:
            pass
    return total


def store_files(files: list[tuple[str, str]], blobs, progress=None) -> list[dict]:
    """Put every file `collect_files` found into blob storage, several at a time; return
    manifest entries in the same order."""
    from canonry.files.transfer import parallel, workers_for

    def put(item: tuple[str, str]) -> dict:
        rel, full = item
        sha, size = blobs.put_file(full, progress)
        return {"path": rel, "size": size, "sha256": sha}

    return parallel(put, files, workers_for(blobs, len(files)))


def digest(entries: list[dict]) -> str:
    """One digest over a manifest: equal manifests, equal digests. A stored file's line is
    path, size, sha256; a reference's also holds its URL, and its ETag and version id when it
    has no sha256."""
    import hashlib

    h = hashlib.sha256()
    for e in sorted(entries, key=lambda e: e["path"]):
        if "ref" not in e:
            h.update(f"{e['path']}\t{e['size']}\t{e['sha256']}\n".encode())
        else:
            tag = e.get("sha256") or f"etag:{e.get('etag', '')}:{e.get('version', '')}"
            h.update(f"{e['path']}\t{e['size']}\t{tag}\t{e['ref']}\n".encode())
    return "sha256:" + h.hexdigest()
