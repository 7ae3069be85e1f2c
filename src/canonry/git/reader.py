"""Reading a git repository's objects and refs without dulwich's Repo and object store.

Why: a fresh `canonry show` reads a dozen objects, and importing dulwich's repository and
object-store modules (with logging, subprocess, platform, hooks, config, …) would cost a large
part of its budget (docs/performance.md). What a read needs is small: the pack index v2 and pack v2 formats (we
write both in packs.py), loose objects, alternates, loose and packed refs.

Anything this reader cannot read (a pack index of another version, an object it cannot find)
is handed to dulwich's object store, opened on first need: it is never the only judge of
whether an object exists.
"""
from __future__ import annotations

import binascii
import mmap
import os
import struct
import threading
import time
import zlib

from canonry.git import locks
from canonry.git.compat import fast_apply_delta

__all__ = [
    "REF_LOCK_WAIT",
    "ObjectReader",
    "apply_delta",
    "apply_delta_py",
    "entry_header",
    "offset_at",
    "read_ref",
    "update_ref",
]

# How long a write waits for a ref lock a live process holds. canonry and git hold one for
# milliseconds, so this only runs out when something is wrong (a stopped process); generous for
# a loaded machine, short enough to tell the user.
REF_LOCK_WAIT = 10.0
_OFS_DELTA, _REF_DELTA = 6, 7
_IDX_MAGIC = b"\377tOc\x00\x00\x00\x02"
_FANOUT = 8
_NAMES = 8 + 256 * 4
_TYPES = {b"commit": 1, b"tree": 2, b"blob": 3, b"tag": 4}
_BASE_CACHE = 256  # decoded delta bases kept per reader (trees of a few KB to ~40 KB)


def apply_delta(base: bytes, delta: bytes) -> bytes:
    """The object a git delta makes of `base` (Documentation/gitformat-pack, "Deltified
    representation")."""
    if fast_apply_delta is not None:  # dulwich's compiled applier (see compat)
        return fast_apply_delta(base, delta)
    return apply_delta_py(base, delta)


def apply_delta_py(base: bytes, delta: bytes) -> bytes:
    at = 0
    for _ in range(2):  # source size, then target size
        while delta[at] & 0x80:
            at += 1
        at += 1
    out = bytearray()
    end = len(delta)
    while at < end:
        op = delta[at]
        at += 1
        if op & 0x80:
            offset = size = 0
            for i in range(4):
                if op & (1 << i):
                    offset |= delta[at] << (8 * i)
                    at += 1
            for i in range(3):
                if op & (0x10 << i):
                    size |= delta[at] << (8 * i)
                    at += 1
            out += base[offset:offset + (size or 0x10000)]
        elif op:
            out += delta[at:at + op]
            at += op
        else:
            raise ValueError("invalid delta: opcode 0")
    return bytes(out)


class _Unreadable(Exception):
    """An entry this reader does not decode (left to dulwich)."""


class _Pack:
    """One pack and its index v2, both memory-mapped."""

    def __init__(self, base: str):
        self.base = base
        with open(base + ".idx", "rb") as f:
            self.idx = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        if self.idx[:8] != _IDX_MAGIC:
            self.idx.close()
            raise _Unreadable(base)
        self.fanout = struct.unpack_from(">256I", self.idx, _FANOUT)
        self.count = self.fanout[255]
        self._crc = _NAMES + 20 * self.count
        self._offsets = self._crc + 4 * self.count
        self._large = self._offsets + 4 * self.count
        self._data: mmap.mmap | None = None

    @property
    def data(self) -> mmap.mmap:
        if self._data is None:
            with open(self.base + ".pack", "rb") as f:
                self._data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return self._data

    def offset_of(self, sha: bytes) -> int | None:
        """Where binary id `sha` starts in the pack, or None (a binary search of the index)."""
        first = sha[0]
        lo = self.fanout[first - 1] if first else 0
        hi = self.fanout[first]
        idx = self.idx
        while lo < hi:
            mid = (lo + hi) // 2
            at = _NAMES + 20 * mid
            name = idx[at:at + 20]
            if name < sha:
                lo = mid + 1
            elif name > sha:
                hi = mid
            else:
                (off,) = struct.unpack_from(">I", idx, self._offsets + 4 * mid)
                if off & 0x80000000:
                    (off,) = struct.unpack_from(">Q", idx, self._large + 8 * (off & 0x7FFFFFFF))
                return off
        return None

    def close(self) -> None:
        for m in (self.idx, self._data):
            if m is not None:
                m.close()


class ObjectReader:
    """`get_raw(hex id) -> (type number, bytes)` over a repository's object directories.

    Safe to share between threads. A pack that vanished (merged by another process) is
    dropped and the pack directory read again when an object is not found."""

    def __init__(self, objects_dir: str, fallback=None):
        self.path = objects_dir
        self._dirs = _object_dirs(objects_dir)
        self._fallback = fallback  # () -> dulwich object store, for what this reader cannot read
        self._packs: list[_Pack] = []
        self._known: set[str] = set()  # pack bases listed, readable or not
        self._bases: dict[tuple[str, int], tuple[int, bytes]] = {}
        self._lock = threading.Lock()
        self._scan()

    # ---- packs -------------------------------------------------------------------------------
    def _scan(self) -> bool:
        """Open packs not seen yet, newest first, and forget vanished ones. True if anything changed."""
        found = []
        for objects in self._dirs:
            pack_dir = os.path.join(objects, "pack")
            try:
                names = set(os.listdir(pack_dir))
            except OSError:
                continue
            for name in names:
                # Any pack with its index, as git reads them (git maintenance writes loose-*.pack);
                # a pack without its index is still being written.
                if name.endswith(".idx") and name[:-4] + ".pack" in names:
                    found.append(os.path.join(pack_dir, name[:-4]))
        with self._lock:
            present = set(found)
            changed = False
            for pack in [p for p in self._packs if p.base not in present]:
                self._packs.remove(pack)
                pack.close()
                changed = True
            self._known &= present
            new = []
            for base in found:
                if base in self._known:
                    continue
                self._known.add(base)
                try:
                    new.append((os.path.getmtime(base + ".idx"), _Pack(base)))
                except _Unreadable:
                    pass  # listed as known; its objects are left to dulwich (the fallback)
                except (OSError, ValueError):  # vanished meanwhile, or an empty file being written
                    self._known.discard(base)
            if new:
                new.sort(key=lambda x: x[0], reverse=True)
                self._packs[:0] = [p for _, p in new]
                changed = True
            return changed

    def forget(self, bases) -> None:
        """Packs `bases` were merged away by this process: close them now."""
        gone = set(bases)
        with self._lock:
            for pack in [p for p in self._packs if p.base in gone]:
                self._packs.remove(pack)
                pack.close()
            self._known -= gone

    def close(self) -> None:
        with self._lock:
            for pack in self._packs:
                pack.close()
            self._packs, self._known, self._bases = [], set(), {}

    # ---- objects -----------------------------------------------------------------------------
    # An object a ref leads to exists: git and canonry write objects before moving a ref. A miss
    # then means another process replaced the pack holding it between our listing of the pack
    # folder and our opening of it (a growing pack rewritten, packs merged): look again, for a
    # moment, before calling it missing.
    MISS_RETRY_S = 1.0

    def get_raw(self, hex_sha: bytes, must_exist: bool = True) -> tuple[int, bytes]:
        """(type number, bytes) of an object, by hex id (or binary, as dulwich also takes).

        Raises KeyError when it is missing: at once with `must_exist=False` (a question, as
        `in` asks), else only after looking again for up to MISS_RETRY_S seconds."""
        if len(hex_sha) == 20:
            sha, hex_sha = hex_sha, binascii.hexlify(hex_sha)
        else:
            sha = binascii.unhexlify(hex_sha)
        found = self._lookup(sha, hex_sha)
        if found is not None:
            return found
        if must_exist:
            deadline = time.monotonic() + self.MISS_RETRY_S
            delay = 0.005
            while time.monotonic() < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
                found = self._lookup(sha, hex_sha)
                if found is not None:
                    return found
        raise KeyError(hex_sha)

    def _lookup(self, sha: bytes, hex_sha: bytes) -> tuple[int, bytes] | None:
        found = self._from_packs(sha)
        if found is None:
            found = self._loose(hex_sha)
        if found is None and self._scan():
            found = self._from_packs(sha)
        if found is None and self._fallback is not None:
            try:
                found = self._fallback().get_raw(hex_sha)
            except KeyError:
                return None
        return found

    def __contains__(self, hex_sha: bytes) -> bool:
        try:
            self.get_raw(hex_sha, must_exist=False)
        except KeyError:
            return False
        return True

    def _from_packs(self, sha: bytes):
        for pack in list(self._packs):
            try:
                off = pack.offset_of(sha)
                if off is not None:
                    return self._entry(pack, off)
            except (ValueError, OSError):  # closed by a rescan in another thread: look again
                return None
            except _Unreadable:
                return None
        return None

    def _entry(self, pack: _Pack, off: int) -> tuple[int, bytes]:
        cached = self._bases.get((pack.base, off))
        if cached is not None:
            return cached
        data = pack.data
        type_num, size, at = entry_header(data, off)
        if type_num == _OFS_DELTA:
            distance, at = offset_at(data, at)
            base_type, base = self._entry(pack, off - distance)
        elif type_num == _REF_DELTA:
            base_hex = binascii.hexlify(data[at:at + 20])
            at += 20
            base_type, base = self.get_raw(base_hex, must_exist=False)  # no wait: a missing base is damage, not a race
        raw = _inflate(data, at, size)
        if type_num in (_OFS_DELTA, _REF_DELTA):
            type_num, raw = base_type, apply_delta(base, raw)
            # Remember what deltas are built on: the next read of this chain starts from here.
            if len(self._bases) >= _BASE_CACHE:
                self._bases.pop(next(iter(self._bases)), None)
            self._bases[(pack.base, off)] = (type_num, raw)
        elif type_num not in (1, 2, 3, 4):
            raise _Unreadable(f"pack entry of type {type_num}")
        return type_num, raw

    def _loose(self, hex_sha: bytes):
        name = hex_sha.decode()
        for objects in self._dirs:
            try:
                with open(os.path.join(objects, name[:2], name[2:]), "rb") as f:
                    body = zlib.decompress(f.read())
            except FileNotFoundError:
                continue
            head, _, raw = body.partition(b"\0")
            kind, _, size = head.partition(b" ")
            if kind not in _TYPES or int(size) != len(raw):
                raise ValueError(f"corrupt loose object {name}")
            return _TYPES[kind], raw
        return None


def entry_header(data: bytes | mmap.mmap, at: int) -> tuple[int, int, int]:
    """(type, size, where the payload starts) of the pack entry at `at`."""
    byte = data[at]
    type_num, size, shift = (byte >> 4) & 7, byte & 0x0F, 4
    at += 1
    while byte & 0x80:
        byte = data[at]
        size |= (byte & 0x7F) << shift
        shift += 7
        at += 1
    return type_num, size, at


def offset_at(data: bytes | mmap.mmap, at: int) -> tuple[int, int]:
    """(distance back to the base, where the payload starts) of an OFS_DELTA entry."""
    byte = data[at]
    n = byte & 0x7F
    at += 1
    while byte & 0x80:
        byte = data[at]
        n = ((n + 1) << 7) | (byte & 0x7F)
        at += 1
    return n, at


def _inflate(data, at: int, size: int) -> bytes:
    # Deflate never grows data by more than 5 bytes per 16 KB stored block plus headers.
    window = size + 5 * (size // 16_000 + 1) + 64
    d = zlib.decompressobj()
    out = d.decompress(data[at:at + window], size)
    while not d.eof and len(out) < size:
        at += window
        more = data[at:at + window]
        if not more:
            break
        out += d.decompress(d.unconsumed_tail + more, size - len(out))
    if len(out) != size:
        raise ValueError("corrupt pack entry")
    return out


def _object_dirs(objects_dir: str) -> list[str]:
    """The object directory and its alternates (objects/info/alternates), recursively."""
    out: list[str] = []
    todo = [objects_dir]
    while todo:
        d = os.path.abspath(todo.pop(0))
        if d in out or len(out) > 16:
            continue
        out.append(d)
        try:
            with open(os.path.join(d, "info", "alternates"), encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        todo += [os.path.join(d, line.strip()) for line in lines
                 if line.strip() and not line.startswith("#")]
    return out


# ---- refs ----------------------------------------------------------------------------------------
def update_ref(git_dir: str, ref: bytes, old: bytes | None, new: bytes, fsync: bool,
               wait: float | None = None, on_move=None) -> bool:
    """Move `ref` from `old` (None: it must not exist) to `new`, as git does: hold `REF.lock`
    (created exclusively), re-read the ref under the lock, write, rename. False if the ref was
    not `old`.

    While it holds `REF.lock` canonry also flocks it (locks.hold), so a lock file left by a
    killed writer can be told from a live one: a stale one is removed at once (locks.break_if_stale),
    a live one is waited for up to `wait` seconds (default REF_LOCK_WAIT), then
    dulwich.file.FileLocked is raised with a `message` naming the lock file and its age.

    Not dulwich's set_if_equals: that fsyncs every ref update, while git hardens refs only
    when core.fsync names them; canonry fsyncs the objects a ref points to before moving it,
    so a ref lost in a crash leaves the previous, complete state.

    `on_move()`, if given, runs under the lock once the ref is known to move, before it does:
    where git writes the reflog (reflog.Reflog.writer)."""
    path = os.path.join(git_dir, os.fsdecode(ref))
    lock = path + ".lock"
    fd = _create_lock(path, lock, REF_LOCK_WAIT if wait is None else wait,
                      os.fsdecode(ref) + ".lock")
    renamed = False
    try:
        current = _loose_ref(path)
        if current is None:
            current = _packed_refs(git_dir).get(ref)
        if current != old:
            return False
        os.write(fd, new + b"\n")
        if fsync:
            os.fsync(fd)
        if on_move is not None:
            on_move()
        os.replace(lock, path)
        renamed = True
        return True
    finally:
        if not renamed:
            try:
                os.unlink(lock)
            except OSError:
                pass
        os.close(fd)  # after the rename or unlink: the flock marks the lock live until it is gone


def _create_lock(path: str, lock: str, wait: float, shown: str) -> int:
    """Create and flock git's lock file `lock` for `path`; wait for a live holder up to `wait`
    seconds, remove a dead one's."""
    deadline = time.monotonic() + wait
    delay = 0.002
    while True:
        try:
            try:
                fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileNotFoundError:  # the ref's folder is not there yet (a first branch/x)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if locks.break_if_stale(lock):
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise locks.lock_held(path, lock, shown) from None
            import random  # only when waiting (see locks.FileLock.acquire)

            time.sleep(min(remaining, random.uniform(delay / 2, delay)))
            delay = min(delay * 2, 0.05)
            continue
        locks.hold(fd)
        return fd


def _loose_ref(path: str) -> bytes | None:
    try:
        value = _read_file(path).strip()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    return value or None


def _read_file(path: str) -> bytes:
    """A small file's bytes in three system calls: open() with its buffered reader makes
    seven (fstat, isatty, lseek, …), and a commit reads the branch ref three times."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        data = os.read(fd, 4096)
        if len(data) < 4096:
            return data
        chunks = [data]
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_ref(git_dir: str, ref: bytes, depth: int = 5) -> bytes | None:
    """The object id a ref names (following symbolic refs), or None: a loose ref file first,
    then packed-refs, as git does."""
    try:
        value = _read_file(os.path.join(git_dir, os.fsdecode(ref))).strip()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        value = _packed_refs(git_dir).get(ref)
    if value is None:
        return None
    if value.startswith(b"ref: "):
        return read_ref(git_dir, value[5:], depth - 1) if depth else None
    return value if len(value) == 40 else None


def _packed_refs(git_dir: str) -> dict[bytes, bytes]:
    try:
        lines = _read_file(os.path.join(git_dir, "packed-refs")).splitlines()
    except FileNotFoundError:
        return {}
    out = {}
    for line in lines:
        if line[:1] in (b"#", b"^") or not line.strip():
            continue
        sha, _, name = line.partition(b" ")
        out[name.strip()] = sha
    return out
