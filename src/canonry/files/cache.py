"""The download cache: each artifact version's files, fetched once, under its manifest digest.

`canonry get TARGET` without --to and `canonry.use(TARGET)` return a folder of this cache.
Two versions with the same content share one folder (the key is the manifest digest), and so do
two stores. A folder appears by rename once all its files are verified, so a reader never sees
half of one; a process killed while filling one leaves a `.partial-` folder, removed by the next
fill after a day. Location: $CANONRY_CACHE_DIR, else $XDG_CACHE_HOME/canonry, else
~/.cache/canonry.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable

from canonry.errors import InvalidInput

__all__ = ["cache_root", "cached_version"]

_PARTIAL = ".partial-"
_STALE_S = 24 * 3600


def cache_root(environ=os.environ) -> str:
    if environ.get("CANONRY_CACHE_DIR"):
        return os.path.abspath(environ["CANONRY_CACHE_DIR"])
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "canonry")


def _complete(folder: str, entries: list[dict]) -> bool:
    """Every file of the manifest there with its size (a cheap check: the bytes were verified
    when the folder was filled, and it is read-only to canonry)."""
    for e in entries:
        path = os.path.join(folder, *e["path"].split("/"))
        try:
            if os.lstat(path).st_size != e["size"] or os.path.islink(path):
                return False
        except OSError:
            return False
    return True


def cached_version(digest: str, entries: list[dict], fill: Callable[[str], None],
                   root: str | None = None) -> str:
    """The cache folder of the version with manifest `digest`, filled by fill(folder) first if
    it is missing or incomplete."""
    root = root or cache_root()
    versions = os.path.join(root, "versions")
    final = os.path.join(versions, digest.removeprefix("sha256:"))
    if os.path.isdir(final) and _complete(final, entries):
        return final
    try:
        os.makedirs(versions, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=versions, prefix=_PARTIAL)
    except OSError as e:
        raise InvalidInput(f"cannot use the download cache {root}: {e.strerror or e} "
                           "(set CANONRY_CACHE_DIR, or pass --to)") from None
    _sweep(versions, tmp)
    try:
        fill(tmp)
        if os.path.isdir(final):  # incomplete (a user deleted a file), or filled meanwhile
            if _complete(final, entries):
                shutil.rmtree(tmp)
                return final
            aside = tempfile.mkdtemp(dir=versions, prefix=_PARTIAL)
            os.rename(final, os.path.join(aside, "old"))
            shutil.rmtree(aside, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:  # another process renamed its copy in first: same bytes
            shutil.rmtree(tmp, ignore_errors=True)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _sweep(versions: str, keep: str) -> None:
    now = time.time()
    for name in os.listdir(versions):
        path = os.path.join(versions, name)
        if name.startswith(_PARTIAL) and path != keep:
            try:
                if now - os.stat(path).st_mtime > _STALE_S:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass
