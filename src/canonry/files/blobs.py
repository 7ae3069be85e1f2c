"""Content-addressed storage of artifact bytes in a folder, deduplicated by sha256.

A blob lives at <root>/<first 2 hex digits>/<other 62>: the same layout as in object storage
(files/objects.py), so a folder can be synced to a bucket and back. The default folder is
<git dir>/canonry/blobs (inside the git directory, so never committed); where else the bytes
live is the store's storage URL (files/location.py).

Every blob store, folder or bucket, offers what `BlobStore` names; `write_verified` is the one
way bytes reach a user's folder: hashed on the way, renamed into place only when they match.
"""
from __future__ import annotations

# hashlib is imported where it hashes: loading OpenSSL is a visible part of a fresh
# `canonry show`, which hashes nothing.
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from canonry.errors import IntegrityError, InvalidInput
from canonry.git import locks

__all__ = [
    "CHUNK",
    "INCOMING",
    "BlobInfo",
    "BlobStore",
    "LocalBlobStore",
    "Progress",
    "blob_key",
    "hash_file",
    "restore_blob",
    "write_verified",
]

CHUNK = 1 << 20
INCOMING = ".incoming-"  # a blob being copied in (put_file), renamed to its digest when complete

Progress = Callable[[int], None]  # told how many more bytes were moved
BlobInfo = tuple[str, int, float]  # (sha256, size, modified as a unix time)


class BlobStore(Protocol):
    """What canonry asks of the place artifact bytes live."""

    url: str  # for messages: never holds credentials

    def has(self, sha256: str) -> bool: ...

    def put_file(self, src: str, progress: Progress | None = None) -> tuple[str, int]:
        """Store the bytes of `src` under their sha256 (kept as is when already there)."""
        ...

    def chunks(self, sha256: str) -> Iterator[bytes]:
        """The blob's bytes, in pieces of bounded size; raises IntegrityError when missing."""
        ...

    def blobs(self) -> Iterator[BlobInfo]: ...

    def delete(self, sha256: str) -> None: ...

    def remove_leftovers(self) -> int: ...


def blob_key(sha256: str) -> str:
    return f"{sha256[:2]}/{sha256[2:]}"


def _hash_chunks(chunks: Iterable[bytes], sink: Callable[[bytes], object] | None = None,
                 progress: Progress | None = None) -> tuple[str, int]:
    """sha256 and size of `chunks`, each also given to `sink`. Hashing runs in a second thread
    while `sink` writes the chunk (hashlib lets go of the GIL): a large file costs about the
    slower of the two, not their sum."""
    import hashlib

    h = hashlib.sha256()
    size = 0
    if sink is None:
        for chunk in chunks:
            h.update(chunk)
            size += len(chunk)
            if progress:
                progress(len(chunk))
        return h.hexdigest(), size
    from concurrent.futures import ThreadPoolExecutor

    hasher = None  # made at the second chunk: a small file is not worth a thread
    pending = None
    try:
        for chunk in chunks:
            if pending is not None:
                pending.result()  # in order: the hash is of the bytes as they come
                pending = hasher.submit(h.update, chunk)
            elif size:
                hasher = ThreadPoolExecutor(1)
                pending = hasher.submit(h.update, chunk)
            else:
                h.update(chunk)
            sink(chunk)
            size += len(chunk)
            if progress:
                progress(len(chunk))
        if pending is not None:
            pending.result()
    finally:
        if hasher is not None:
            hasher.shutdown()
    return h.hexdigest(), size


def _file_chunks(path: str, chunk: int = 4 * CHUNK) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while data := f.read(chunk):
            yield data


def hash_file(path: str, progress: Progress | None = None) -> tuple[str, int]:
    """(sha256, size) of the file at `path`."""
    try:
        return _hash_chunks(_file_chunks(path), progress=progress)
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror or e}") from None


def write_verified(chunks: Iterable[bytes], sha256: str | None, dest: str, what: str,
                   progress: Progress | None = None, size: int | None = None) -> None:
    """Write `chunks` to `dest`, hashing them on the way: `dest` appears (by rename) only when
    they hash to `sha256` (and are `size` bytes long, when given), else IntegrityError names
    `what` and nothing is left behind. The temporary file is opened O_EXCL|O_NOFOLLOW: never
    written through a planted link."""
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    tmp = dest + ".canonry-partial"
    if os.path.lexists(tmp):  # a leftover, or a planted link: unlinked, never followed
        os.unlink(tmp)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except FileExistsError:  # planted again between the unlink and the open
        raise InvalidInput(f"cannot write {dest}: {tmp} appeared while writing; nothing written") from None
    try:
        with os.fdopen(fd, "wb") as out:
            digest, got = _hash_chunks(chunks, out.write, progress)
    except BaseException:  # a full disk, an interrupt, a lost connection: no partial file left
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    if size is not None and got != size:
        os.unlink(tmp)
        raise IntegrityError(f"{what} has {got} bytes, not the {size} recorded (nothing written)")
    if sha256 is not None and digest != sha256:
        os.unlink(tmp)
        raise IntegrityError(f"{what} is corrupt: its bytes hash to {digest[:12]}, not {sha256[:12]} "
                             "(nothing written)")
    os.replace(tmp, dest)


def restore_blob(blobs: BlobStore, sha256: str, dest: str, progress: Progress | None = None) -> None:
    """Write blob `sha256` of `blobs` to `dest`, verified (write_verified)."""
    write_verified(blobs.chunks(sha256), sha256, dest, f"blob {sha256[:12]} in {blobs.url}", progress)


class LocalBlobStore:
    """Blobs in a folder of this machine (or a shared file system mounted on it)."""

    def __init__(self, root: str, url: str | None = None):
        self.root = root
        self.url = url or root
        self._swept = False

    def path(self, sha256: str) -> str:
        return os.path.join(self.root, sha256[:2], sha256[2:])

    def has(self, sha256: str) -> bool:
        return os.path.exists(self.path(sha256))

    def remove_leftovers(self) -> int:
        """Remove what writers killed while copying a file in left (flocked while alive, so
        never a live one's: locks.remove_stale); the bytes freed."""
        self._swept = True
        if not os.path.isdir(self.root):
            return 0
        return locks.remove_stale(self.root, lambda name: name.startswith(INCOMING))

    def put_file(self, src: str, progress: Progress | None = None) -> tuple[str, int]:
        """Copy `src` in (hashing as it goes); return (sha256, size). Existing content is kept."""
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as e:
            raise InvalidInput(f"cannot write to storage {self.url}: {e.strerror or e}") from None
        if not self._swept:  # once per process
            self.remove_leftovers()
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=INCOMING)
        locks.hold(fd)  # alive while flocked: never taken for a dead writer's
        try:
            with os.fdopen(fd, "wb") as out:
                digest, size = _hash_chunks(_file_chunks(src), out.write, progress)
            dest = self.path(digest)
            if os.path.exists(dest):
                os.unlink(tmp)
            else:
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.chmod(tmp, 0o444)
                os.replace(tmp, dest)
            return digest, size
        except OSError as e:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise InvalidInput(f"cannot read {src}: {e.strerror or e}") from None
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def copy_to(self, sha256: str, dest: str, progress: Progress | None = None) -> None:
        restore_blob(self, sha256, dest, progress)

    def chunks(self, sha256: str) -> Iterator[bytes]:
        path = self.path(sha256)
        if not os.path.isfile(path):
            raise IntegrityError(f"content {sha256[:12]} is not in storage {self.url}")
        return _file_chunks(path)

    def blobs(self) -> Iterator[BlobInfo]:
        if not os.path.isdir(self.root):
            return
        for top in sorted(os.listdir(self.root)):
            folder = os.path.join(self.root, top)
            if len(top) != 2 or not os.path.isdir(folder):
                continue
            for name in sorted(os.listdir(folder)):
                if len(name) == 62:
                    st = os.stat(os.path.join(folder, name))
                    yield top + name, st.st_size, st.st_mtime

    def delete(self, sha256: str) -> None:
        try:
            os.unlink(self.path(sha256))
        except FileNotFoundError:
            pass
