"""Content-addressed storage of artifact bytes, deduplicated by sha256.

Default location: <git dir>/canonry/blobs (inside the git directory, so never committed).
Override with the CANONRY_BLOBS environment variable or `git config canonry.blobs PATH`
(relative paths are taken from the git directory).
"""
from __future__ import annotations

# hashlib is imported where it hashes: loading OpenSSL is a visible part of a fresh
# `canonry show`, which hashes nothing.
import os
import shutil
import tempfile

from canonry.errors import IntegrityError, InvalidInput
from canonry.git import locks

__all__ = ["CHUNK", "INCOMING", "LocalBlobStore", "blob_store_for"]

CHUNK = 1 << 20
INCOMING = ".incoming-"  # a blob being copied in (put_file), renamed to its digest when complete


class LocalBlobStore:
    def __init__(self, root: str):
        self.root = root
        self._swept = False

    def path(self, sha256: str) -> str:
        return os.path.join(self.root, sha256[:2], sha256[2:])

    def has(self, sha256: str) -> bool:
        return os.path.exists(self.path(sha256))

    def remove_leftovers(self) -> int:
        """Remove what writers killed while copying a file in left (flocked while alive, so
        never a live one's: locks.remove_stale); the bytes freed."""
        self._swept = True
        return locks.remove_stale(self.root, lambda name: name.startswith(INCOMING))

    def put_file(self, src: str) -> tuple[str, int]:
        """Copy `src` in (hashing as it goes); return (sha256, size). Existing content is kept."""
        import hashlib

        os.makedirs(self.root, exist_ok=True)
        h = hashlib.sha256()
        size = 0
        if not self._swept:  # once per process
            self.remove_leftovers()
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=INCOMING)
        locks.hold(fd)  # alive while flocked: never taken for a dead writer's
        try:
            with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            digest = h.hexdigest()
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

    def copy_to(self, sha256: str, dest: str) -> None:
        """Write the blob to `dest`, verifying its digest on the way; dest appears only if it matches."""
        import hashlib

        src = self.path(sha256)
        if not os.path.exists(src):
            raise IntegrityError(
                f"content {sha256[:12]} is not in blob storage {self.root} "
                "(logged from another clone? point CANONRY_BLOBS at shared storage)"
            )
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
        h = hashlib.sha256()
        tmp = dest + ".canonry-partial"
        if os.path.lexists(tmp):  # a leftover, or a planted link: unlinked, never followed
            os.unlink(tmp)
        try:
            # O_EXCL and O_NOFOLLOW: never write through a link planted at the temporary name
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with open(src, "rb") as f, os.fdopen(fd, "wb") as out:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
        except FileExistsError:  # planted again between the unlink and the open
            raise InvalidInput(f"cannot write {dest}: {tmp} appeared while writing; nothing written") from None
        except BaseException:  # a full disk, an interrupt: leave no partial file behind
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise
        if h.hexdigest() != sha256:
            os.unlink(tmp)
            raise IntegrityError(f"blob {sha256[:12]} is corrupt: its bytes hash to {h.hexdigest()[:12]}")
        os.replace(tmp, dest)
        shutil.copymode(src, dest)
        os.chmod(dest, 0o644)


def blob_store_for(git_dir: str, configured: str | None) -> LocalBlobStore:
    root = os.environ.get("CANONRY_BLOBS") or configured or os.path.join("canonry", "blobs")
    if not os.path.isabs(root):
        root = os.path.join(git_dir, root)
    return LocalBlobStore(root)
