"""Keeping a checked-out store's git index and files at the branch head, at a cost that does not
grow with the store.

After each write, a store with a work tree (`canonry init DIR`, a `git clone`, a `--prefix`
store inside a code repository) brings the index entries and files of the paths the commit
touched to the branch head (`sync`), and repairs what a writer that died before its sync left
behind (`repair`, from the markers of syncmarks.py).

The index is kept in git's own split-index mode (gitformat-index(5), "Split index"): most entries
live in `sharedindex.<hash>`, a file that never changes once written, and `.git/index` holds
only the entries changed since then, plus a `link` extension naming the shared file and two
bitmaps (which of its entries are replaced, which deleted). A write rewrites only that small
file; the shared file is read once per process (it is named by its hash, so it can never be
stale), in place through a sidecar of its entries' offsets (`_InPlace`: a fresh process does not
parse ~2 entries per link), and rewritten only when the changes have grown to a fraction of it. Real git reads and
writes this mode natively, and keeps it unless `core.splitIndex` says otherwise.

The index is written as git writes it: under `index.lock` (created exclusively; a held lock is
dulwich.file.FileLocked, as before), to the lock file, renamed over `index`. The cache-tree
(`TREE`), untracked cache and other optional extensions are dropped (git rebuilds them); an index
with a required extension canonry does not know (a sparse index, `sdir`) is refused with an
OSError, which the caller reports as "committed, but could not update the work tree".
"""
from __future__ import annotations

import hashlib
import os
import stat
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from canonry.git import locks, syncmarks

if TYPE_CHECKING:
    from dulwich.objects import ObjectID

__all__ = [
    "SHARED_INDEX_GRACE",
    "GitIndex",
    "break_stale_lock",
    "bring",
    "entry_bytes",
    "locked_index",
    "read_index",
    "sync",
]

SHARED_INDEX_GRACE = 300.0  # seconds an old sharedindex.* file is kept for readers that still use it
_ENTRY_HEAD = struct.Struct(">10L20sH")  # ctime s/ns, mtime s/ns, dev, ino, mode, uid, gid, size, sha, flags
_EXTENDED = 0x4000
_STAGES = [b"\0" + bytes((n,)) for n in range(4)]  # key = name + b"\0" + stage: sorts as git sorts entries
_M32 = 0xFFFFFFFF


# ---- the on-disk format -------------------------------------------------------------------------
class _Entries:
    """A parsed index's entries in index order: keys (name + NUL + stage), their position, and
    each entry's bytes in v2/v3 form (name included)."""

    __slots__ = ("keys", "pos", "raw")

    def __init__(self, keys: list[bytes], raw: list[bytes]):
        self.keys, self.raw = keys, raw
        self.pos = {k: i for i, k in enumerate(keys)}


class _InPlace:
    """A v2/v3 shared index's entries read where they lie in the file, found through the offsets
    of its entries (a sidecar file written once per shared index): a fresh process pays for the
    few entries a write touches, not for parsing the ~2 entries per link of the whole index.
    Offers what _Entries offers: `keys[i]`, `raw[i]`, `pos.get(key)` (by bisection: git's
    order is the keys' byte order), iteration and len()."""

    __slots__ = ("data", "keys", "offsets", "pos", "raw", "version")

    def __init__(self, data: bytes, offsets, version: int):
        self.data, self.offsets, self.version = data, offsets, version  # offsets: one past the end too
        self.keys, self.raw, self.pos = _KeyView(self), _RawView(self), _PosView(self)


class _View:
    """A sequence over the entries of an _InPlace (what __getitem__ gives is the subclass's)."""

    __slots__ = ("e",)

    def __init__(self, entries: _InPlace):
        self.e = entries

    def __len__(self) -> int:
        return len(self.e.offsets) - 1

    def __getitem__(self, i: int) -> bytes:
        raise NotImplementedError

    def __iter__(self) -> Iterator[bytes]:
        return (self[i] for i in range(len(self)))


class _KeyView(_View):
    __slots__ = ()

    def __getitem__(self, i: int) -> bytes:
        data, off = self.e.data, self.e.offsets[i]
        flags = (data[off + 60] << 8) | data[off + 61]
        name_off = off + (64 if (flags & _EXTENDED and self.e.version >= 3) else 62)
        namelen = flags & 0xFFF
        if namelen == 0xFFF:
            namelen = data.index(b"\0", name_off + 0xFFF) - name_off
        return data[name_off:name_off + namelen] + _STAGES[(flags >> 12) & 3]


class _RawView(_View):
    __slots__ = ()

    def __getitem__(self, i: int) -> bytes:
        return self.e.data[self.e.offsets[i]:self.e.offsets[i + 1]]


class _PosView:
    __slots__ = ("e",)

    def __init__(self, entries: _InPlace):
        self.e = entries

    def get(self, key: bytes, default: int | None = None) -> int | None:
        import bisect

        keys = self.e.keys
        i = bisect.bisect_left(keys, key)
        return i if i < len(keys) and keys[i] == key else default

    def __contains__(self, key: bytes) -> bool:
        return self.get(key) is not None


def _offsets_path(git_dir: str, name: str) -> str:
    return os.path.join(git_dir, f"canonry-sharedindex-offsets.{name}")


def _save_offsets(git_dir: str, name: str, raws, size: int) -> None:
    """The sidecar of shared index `name`: its size, then each entry's offset and the end of the
    last (uint32, little-endian). Written atomically; losing it costs one full parse."""
    from array import array
    from itertools import accumulate

    offsets = array("I", accumulate((len(r) for r in raws), initial=12))
    if offsets.itemsize != 4 or size >= 1 << 32:
        return
    tmp = _offsets_path(git_dir, name) + f".{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", size))
            if struct.pack("=I", 1) != struct.pack("<I", 1):
                offsets.byteswap()
            f.write(offsets.tobytes())
        os.replace(tmp, _offsets_path(git_dir, name))
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _load_offsets(git_dir: str, name: str, data: bytes):
    """The offsets of shared index `name` (whose bytes are `data`) from its sidecar, or None
    when there is none or it does not fit the file (then the file is parsed whole)."""
    from array import array

    try:
        with open(_offsets_path(git_dir, name), "rb") as f:
            raw = f.read()
    except OSError:
        return None
    if len(raw) < 12 or (len(raw) - 8) % 4 or struct.unpack("<Q", raw[:8])[0] != len(data):
        return None
    offsets = array("I")
    if offsets.itemsize != 4:
        return None
    offsets.frombytes(raw[8:])
    if struct.pack("=I", 1) != struct.pack("<I", 1):
        offsets.byteswap()
    count = struct.unpack(">L", data[8:12])[0]
    if len(offsets) != count + 1 or offsets[0] != 12 or offsets[-1] > len(data) - 20:
        return None
    return offsets


def _with_name(head: bytes, name: bytes) -> bytes:
    """An entry's v2/v3 bytes from its fixed part (62 or 64 bytes) and its name."""
    flags = int.from_bytes(head[60:62], "big")
    flags = (flags & ~0xFFF) | min(len(name), 0xFFF)
    size = (len(head) + len(name) + 8) & ~7
    out = head[:60] + flags.to_bytes(2, "big") + head[62:] + name
    return out + b"\0" * (size - len(out))


def _parse(data: bytes, where: str) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """(entries as (name + NUL + stage, v2/v3 bytes), extensions as (signature, data))."""
    if len(data) < 32 or data[:4] != b"DIRC":
        raise OSError(f"{where}: not a git index")
    if hashlib.sha1(data[:-20]).digest() != data[-20:]:
        raise OSError(f"{where}: bad index checksum")
    version, count = struct.unpack(">LL", data[4:12])
    if version not in (2, 3, 4):
        raise OSError(f"{where}: git index version {version} is not supported")
    entries: list[tuple[bytes, bytes]] = []
    off, prev = 12, b""
    for _ in range(count):
        flags = (data[off + 60] << 8) | data[off + 61]
        head_len = 64 if (flags & _EXTENDED and version >= 3) else 62
        name_off = off + head_len
        if version == 4:
            # prefix compression: a varint (bytes to drop from the previous name), then a NUL-ended suffix
            c = data[name_off]
            name_off += 1
            strip = c & 127
            while c & 128:
                c = data[name_off]
                name_off += 1
                strip = ((strip + 1) << 7) | (c & 127)
            end = data.index(b"\0", name_off)
            name = prev[:len(prev) - strip] + data[name_off:end]
            raw = _with_name(data[off:off + head_len], name)
            off = end + 1
            prev = name
        else:
            namelen = flags & 0xFFF
            if namelen == 0xFFF:
                namelen = data.index(b"\0", name_off + 0xFFF) - name_off
            name = data[name_off:name_off + namelen]
            size = (head_len + namelen + 8) & ~7
            raw = data[off:off + size]
            off += size
        entries.append((name + _STAGES[(flags >> 12) & 3], raw))
    extensions = []
    end = len(data) - 20
    while off + 8 <= end:
        sig = data[off:off + 4]
        size = int.from_bytes(data[off + 4:off + 8], "big")
        extensions.append((sig, data[off + 8:off + 8 + size]))
        off += 8 + size
    return entries, extensions


def _file_bytes(raws: list[bytes], extensions: bytes = b"") -> bytes:
    version = 3 if any(r[60] & 0x40 for r in raws) else 2
    body = b"".join([b"DIRC", struct.pack(">LL", version, len(raws)), *raws, extensions])
    return body + hashlib.sha1(body).digest()


def _ewah(bits: list[int]) -> bytes:
    """git's EWAH bitmap (ewah/ewah_io.c) of the sorted bit positions `bits`."""
    words: dict[int, int] = {}
    for b in bits:
        words[b >> 6] = words.get(b >> 6, 0) | (1 << (b & 63))
    buffer: list[int] = []
    rlw_at, last = 0, -1  # index of the current run-length word; last word index written
    for w in sorted(words):
        if not buffer or w != last + 1 or (buffer[rlw_at] >> 33) >= 0x7FFFFFFF:
            rlw_at = len(buffer)
            buffer.append((w - last - 1) << 1)  # a run of zero words, no literals yet
        buffer[rlw_at] += 1 << 33  # one more literal word
        buffer.append(words[w])
        last = w
    if not buffer:  # what git writes for an empty bitmap: one empty run-length word
        buffer, rlw_at = [0], 0
    bit_size = bits[-1] + 1 if bits else 0
    return struct.pack(f">LL{len(buffer)}QL", bit_size, len(buffer), *buffer, rlw_at)


def _read_ewah(data: bytes, off: int) -> tuple[list[int], int]:
    """(bit positions, offset after the bitmap) of an EWAH bitmap at `off`."""
    _bit_size, n = struct.unpack_from(">LL", data, off)
    words = struct.unpack_from(f">{n}Q", data, off + 8)
    bits: list[int] = []
    pos = i = 0
    while i < n:
        rlw = words[i]
        run = ((rlw >> 1) & _M32) * 64
        if rlw & 1:
            bits.extend(range(pos, pos + run))
        pos += run
        i += 1
        for _ in range(rlw >> 33):
            w = words[i]
            while w:
                low = w & -w
                bits.append(pos + low.bit_length() - 1)
                w ^= low
            pos += 64
            i += 1
    return bits, off + 8 + 8 * n + 4


# ---- the index as canonry keeps it --------------------------------------------------------------
class GitIndex:
    """One work tree's index: a base (the shared index, or a whole index not split yet) and the
    entries changed on top of it (key -> v2/v3 bytes, or None for removed)."""

    def __init__(self, base: _Entries, shared: str | None, overlay: dict[bytes, bytes | None]):
        self.base, self.shared, self.overlay = base, shared, overlay
        self.changed = False

    def _get(self, key: bytes) -> bytes | None:
        if key in self.overlay:
            return self.overlay[key]
        i = self.base.pos.get(key)
        return None if i is None else self.base.raw[i]

    def __contains__(self, name: bytes) -> bool:
        return self._get(name + _STAGES[0]) is not None

    def sha(self, name: bytes) -> bytes | None:
        """The hex blob id the index holds for `name` (stage 0), or None."""
        raw = self._get(name + _STAGES[0])
        return None if raw is None else raw[40:60].hex().encode()

    def set(self, name: bytes, raw: bytes) -> None:
        """Make `raw` (entry_bytes) the entry of `name`; any conflict stages of it go."""
        self.overlay[name + _STAGES[0]] = raw
        self._drop_stages(name, 1)
        self.changed = True

    def remove(self, name: bytes) -> None:
        self._drop_stages(name, 0)
        self.changed = True

    def _drop_stages(self, name: bytes, first: int) -> None:
        for stage in range(first, 4):
            key = name + _STAGES[stage]
            if key in self.overlay or key in self.base.pos:
                self.overlay[key] = None

    def __len__(self) -> int:
        return len(self.base.keys) + sum(
            (v is not None) - (k in self.base.pos) for k, v in self.overlay.items())

    def merged(self) -> _Entries:
        """All entries, in git's order."""
        base, overlay = self.base, self.overlay
        added = sorted(k for k, v in self.overlay.items() if v is not None and k not in base.pos)
        keys: list[bytes] = []
        raws: list[bytes] = []
        j = 0
        for key, raw in zip(base.keys, base.raw):
            while j < len(added) and added[j] < key:
                keys.append(added[j])
                raws.append(overlay[added[j]] or b"")
                j += 1
            if key in overlay:
                new = overlay[key]
                if new is None:
                    continue
                raw = new
            keys.append(key)
            raws.append(raw)
        for key in added[j:]:
            keys.append(key)
            raws.append(overlay[key] or b"")
        return _Entries(keys, raws)

    def split_bytes(self) -> bytes:
        """`.git/index` in split mode over the shared index: replaced entries (names left
        empty, as git requires) in base order, then added ones in git's order, then `link`."""
        assert self.shared is not None
        base = self.base
        replaced: list[tuple[int, bytes]] = []
        deleted: list[int] = []
        added: list[tuple[bytes, bytes]] = []
        for key, raw in self.overlay.items():
            i = base.pos.get(key)
            if i is None:
                if raw is not None:
                    added.append((key, raw))
            elif raw is None:
                deleted.append(i)
            else:
                replaced.append((i, raw))
        replaced.sort()
        added.sort()
        deleted.sort()
        raws = [_with_name(raw[:64 if raw[60] & 0x40 else 62], b"") for _i, raw in replaced]
        raws += [raw for _key, raw in added]
        link = bytes.fromhex(self.shared) + _ewah(deleted) + _ewah([i for i, _raw in replaced])
        return _file_bytes(raws, b"link" + struct.pack(">L", len(link)) + link)


def entry_bytes(name: bytes, st: os.stat_result, sha: bytes, mode: int, dirty: bool = False) -> bytes:
    """An index entry (v2 form) for a file of stat `st` holding blob `sha` (hex). `dirty`: a stat
    that never matches (size and mtime 0), so git re-hashes the file: a user's edit stays visible."""
    mtime_s, mtime_ns = (0, 0) if dirty else divmod(st.st_mtime_ns, 10**9)
    ctime_s, ctime_ns = divmod(st.st_ctime_ns, 10**9)
    head = _ENTRY_HEAD.pack(ctime_s & _M32, ctime_ns, mtime_s & _M32, mtime_ns, st.st_dev & _M32,
                            st.st_ino & _M32, mode, st.st_uid & _M32, st.st_gid & _M32,
                            0 if dirty else st.st_size & _M32, bytes.fromhex(sha.decode()),
                            min(len(name), 0xFFF))
    size = (62 + len(name) + 8) & ~7
    return head + name + b"\0" * (size - 62 - len(name))


# ---- reading and writing, cached per process ----------------------------------------------------
_shared_cache: dict[str, Any] = {}  # shared index path -> its entries, _Entries or _InPlace (immutable files)
_index_cache: dict[str, tuple[tuple[int, int, int], GitIndex]] = {}  # index path -> (stat, state)


def _stat_key(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _shared(git_dir: str, name: str) -> _Entries:
    path = os.path.join(git_dir, f"sharedindex.{name}")
    found = _shared_cache.get(path)
    if found is None:
        with open(path, "rb") as f:
            data = f.read()
        version = struct.unpack(">L", data[4:8])[0] if len(data) >= 12 else 0
        offsets = _load_offsets(git_dir, name, data) if version in (2, 3) else None
        if offsets is not None:
            found = _InPlace(data, offsets, version)
        else:
            entries, _ext = _parse(data, path)  # checks the file's checksum too
            found = _Entries([k for k, _r in entries], [r for _k, r in entries])
            if version in (2, 3):
                _save_offsets(git_dir, name, found.raw, len(data))
        if len(_shared_cache) >= 4:
            _shared_cache.clear()
        _shared_cache[path] = found
    return found


def read_index(git_dir: str) -> GitIndex:
    """The index of the work tree whose git dir is `git_dir` (cached: re-read only when the file
    changed). The caller owns the returned object: change it only under `locked_index`."""
    path = os.path.join(git_dir, "index")
    stamp = _stat_key(path)
    cached = _index_cache.get(path)
    if stamp is not None and cached is not None and cached[0] == stamp:
        state = cached[1]
        return GitIndex(state.base, state.shared, dict(state.overlay))
    if stamp is None:
        return GitIndex(_Entries([], []), None, {})
    with open(path, "rb") as f:
        data = f.read()
    entries, extensions = _parse(data, path)
    link = None
    for sig, ext in extensions:
        if sig == b"link":
            link = ext
        elif not (65 <= sig[0] <= 90):  # a required extension (lower-case first letter)
            what = "a sparse index" if sig == b"sdir" else f"the index extension {sig.decode('ascii', 'replace')!r}"
            raise OSError(f"{path} uses {what}, which canonry cannot update "
                          f"(`git sparse-checkout disable` or `git update-index --no-split-index` may help)")
    if link is None:
        index = GitIndex(_Entries([k for k, _r in entries], [r for _k, r in entries]), None, {})
    else:
        shared = link[:20].hex()
        base = _shared(git_dir, shared) if shared != "0" * 40 else _Entries([], [])
        overlay: dict[bytes, bytes | None] = {}
        deleted, replaced = ([], []) if len(link) == 20 else _bitmaps(link)
        for i in deleted:
            overlay[base.keys[i]] = None
        for n, i in enumerate(replaced):
            raw = entries[n][1]
            overlay[base.keys[i]] = _with_name(raw[:64 if raw[60] & 0x40 else 62], base.keys[i][:-2])
        for name, raw in entries[len(replaced):]:
            overlay[name] = raw
        index = GitIndex(base, shared if shared != "0" * 40 else None, overlay)
    _index_cache[path] = (stamp, GitIndex(index.base, index.shared, dict(index.overlay)))
    return index


def _bitmaps(link: bytes) -> tuple[list[int], list[int]]:
    deleted, off = _read_ewah(link, 20)
    replaced, _off = _read_ewah(link, off)
    return deleted, replaced


def _write_shared(git_dir: str, entries: _Entries, fsync: bool) -> str:
    data = _file_bytes(entries.raw)
    name = data[-20:].hex()
    path = os.path.join(git_dir, f"sharedindex.{name}")
    _save_offsets(git_dir, name, entries.raw, len(data))
    if not os.path.exists(path):
        tmp = os.path.join(git_dir, f"sharedindex_canonry-{os.getpid()}")
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    _shared_cache[path] = entries
    _forget_old_shared(git_dir, keep=path)
    return name


def _forget_old_shared(git_dir: str, keep: str) -> None:
    """Remove shared index files no longer named by the index, once older than the grace time
    (a git command that read the index just before may still name its shared file), and the
    offset sidecars of shared files that are gone."""
    now = time.time()
    names = os.listdir(git_dir)
    for name in names:
        path = os.path.join(git_dir, name)
        if name.startswith("canonry-sharedindex-offsets."):
            shared = name[len("canonry-sharedindex-offsets."):].split(".", 1)[0]
            if f"sharedindex.{shared}" not in names:
                try:
                    if now - os.stat(path).st_mtime > SHARED_INDEX_GRACE:
                        os.unlink(path)
                except OSError:
                    pass
            continue
        if not name.startswith("sharedindex.") or path == keep:
            continue
        try:
            if now - os.stat(path).st_mtime > SHARED_INDEX_GRACE:
                os.unlink(path)
                _shared_cache.pop(path, None)
        except OSError:
            pass


def _needs_new_shared(index: GitIndex) -> bool:
    """A new shared index once the changes on top of it are many (the split file is rewritten at
    every write, so it must stay small); git's own limit is 20% (splitIndex.maxPercentChange)."""
    return index.shared is None or len(index.overlay) > max(500, len(index.base.keys) // 200)


@contextmanager
def locked_index(git_dir: str, fsync: bool = False) -> Iterator[GitIndex]:
    """The index under git's `index.lock`, written back (when changed) on leaving the block.

    Raises dulwich.file.FileLocked when someone else holds the lock."""
    path = os.path.join(git_dir, "index")
    lock = path + ".lock"
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        from dulwich.file import FileLocked

        raise FileLocked(path, lock) from None
    try:
        index = read_index(git_dir)
        yield index
        if not index.changed:
            os.close(fd)
            fd = -1
            os.unlink(lock)
            return
        if _needs_new_shared(index):
            merged = index.merged()
            index = GitIndex(merged, _write_shared(git_dir, merged, fsync), {})
        data = index.split_bytes()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(lock, path)
        key = _stat_key(path)
        if key is not None:
            _index_cache[path] = (key, GitIndex(index.base, index.shared, dict(index.overlay)))
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(lock)
        except FileNotFoundError:
            pass
        raise


def break_stale_lock(git_dir: str, dead_markers: list[str]) -> None:
    """Remove an `index.lock` left by a writer that died in its sync (one of `dead_markers`): one
    nobody flocks, older than locks.STALE_LOCK_AGE and made after that writer's marker (a dead
    writer takes the index lock after leaving its marker; a git command that holds it for long,
    `git commit` in an editor, took it before). Anything else is left."""
    lock = os.path.join(git_dir, "index.lock")
    since = min((_mtime(path) for path in dead_markers), default=None)
    made = _mtime(lock)
    if since is not None and made is not None and made >= since:
        locks.break_if_stale(lock)


# ---- bringing files and entries to a tree -------------------------------------------------------
def bring(storage: Any, root: bytes, index: GitIndex, paths: list[str],
          ours: dict[str, set[bytes]]) -> None:
    """Bring index and files of repository `paths` to tree `root`, leaving the user's edits: a
    file whose content is not what the index says we last put there (or, in a repair, any of
    `ours` contents) is the user's, and stays (its entry made dirty, so git shows it modified)."""
    worktree = storage.path
    for path in paths:
        after = storage.lookup(root, path)
        fs_path = os.path.join(worktree, *path.split("/"))
        key = path.encode()
        indexed = index.sha(key)
        known = set(ours.get(path, ()))
        if known:  # a repair: the head's content and what the index holds are ours too
            known |= {indexed} if indexed is not None else set()
            known |= {after[1]} if after is not None else set()
            try:
                os.unlink(fs_path + ".canonry-tmp")
            except OSError:
                pass
            clean = _file_matches_any(fs_path, known)
        else:
            clean = _file_matches_any(fs_path, {indexed} if indexed is not None else set())
        if after is None:
            if clean and os.path.exists(fs_path):
                os.unlink(fs_path)
                _prune_empty_dirs(os.path.dirname(fs_path), worktree)
            if key in index:
                index.remove(key)
            continue
        if clean:
            os.makedirs(os.path.dirname(fs_path), exist_ok=True)
            tmp = fs_path + ".canonry-tmp"
            with open(tmp, "wb") as f:
                f.write(storage.blob(after[1]))
            os.replace(tmp, fs_path)
        try:
            st = os.lstat(fs_path)
        except FileNotFoundError:
            if key in index:
                index.remove(key)
            continue
        # A user's edit left in place: a stat that never matches makes git re-hash it.
        index.set(key, entry_bytes(key, st, after[1], _index_mode(after[0]), dirty=not clean))


def _index_mode(mode: int) -> int:
    if stat.S_ISLNK(mode):
        return stat.S_IFLNK
    return mode


def sync(storage: Any, paths: list[str], fsync: bool) -> list[str]:
    """Under the caller's work-tree lock: repair what dead writers left, bring `paths` (repository
    paths) to the branch head, write the index. Returns the dead writers' markers handled (the
    caller removes them)."""
    found = syncmarks.dead(storage.git_dir)
    if found:
        break_stale_lock(storage.git_dir, [p for p, _o, _n in found])
    root = storage.commit(storage.repo.refs[storage.ref]).tree
    with locked_index(storage.git_dir, fsync) as index:
        repaired = _repair(storage, root, index, found)
        bring(storage, root, index, paths, {})
    return repaired


def _repair(storage: Any, root: bytes, index: GitIndex,
            found: list[tuple[str, bytes | None, bytes | None]]) -> list[str]:
    """Bring to `root` every store path a dead writer's commit touched (its marker's OLD..NEW
    and OLD..head). A file is the writer's to overwrite if its content is what the index,
    OLD, NEW or the head holds there; anything else is the user's and stays. Returns the
    markers handled (removed once the index is written)."""
    if not found:
        return []
    from dulwich.diff_tree import tree_changes

    store = storage.repo.object_store
    ours: dict[str, set[bytes]] = {}
    for _path, old, new in found:
        old_root = storage.tree_of(old)
        for other in (storage.tree_of(new), root):
            if other is None or other == old_root:
                continue
            try:
                changes = list(tree_changes(store, cast("ObjectID | None", old_root),
                                            cast("ObjectID", other)))
            except KeyError:  # NEW never made it to disk: nothing of it to repair
                continue
            for change in changes:
                for side in (change.old, change.new):
                    if side is not None and side.path is not None and side.sha is not None:
                        ours.setdefault(side.path.decode("utf-8", "surrogateescape"),
                                        set()).add(side.sha)
    prefix = storage.prefix + "/" if storage.prefix else ""
    bring(storage, root, index, [p for p in ours if p.startswith(prefix)], ours)
    return [path for path, _old, _new in found]


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _file_matches_any(fs_path: str, shas: set[bytes]) -> bool:
    """Whether the file is absent (nothing to lose) or holds one of blobs `shas`."""
    try:
        with open(fs_path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return True
    except IsADirectoryError:
        return False
    if not shas:
        return False  # an untracked file of the user's where we want to write: keep it
    h = hashlib.sha1(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest().encode() in shas


def _prune_empty_dirs(path: str, top: str) -> None:
    while os.path.abspath(path) != os.path.abspath(top):
        try:
            os.rmdir(path)
        except OSError:
            return
        path = os.path.dirname(path)
