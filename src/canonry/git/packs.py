"""Object packs: every commit's new objects in one small pack, and packs merged in tiers.

Why packs and not loose objects: a loose object is a file of its own, and creating a file is
the slowest step of a commit on ordinary disks (docs/performance.md);
a promotion writes about eight objects. A pack with its index is two files however many
objects it holds.

Why a growing pack: a writer's next commit rewrites its last pack with the new objects added
(GrowingPack) while that pack is small, so one writer adds one pack of tier 0, not one per
commit, and its commits need no merge of tier 0.

Why tiers: every pack is one more index to search on a lookup, so small packs are merged as
they accumulate, log-structured: when TIER_WIDTH packs of one tier exist, they (and any smaller
ones) are merged into one pack of the next tier. The pack count stays logarithmic in the number
of objects and each object is rewritten once per tier. Packs above AUTO_MERGE_LIMIT objects are
left to `canonry gc`, so an operation never stalls on rewriting a large pack.

The formats written here are git's pack v2 and pack index v2 (Documentation/gitformat-pack).
"""
from __future__ import annotations

# hashlib is imported where it hashes: loading OpenSSL is a visible part of a fresh
# `canonry show`, which hashes nothing.
import binascii
import itertools
import os
import struct
import zlib

from canonry.git import locks
from canonry.git.reader import apply_delta, entry_header, offset_at

__all__ = [
    "AUTO_MERGE_LIMIT",
    "DELTA_MIN_SIZE",
    "GROW_MAX_BYTES",
    "GROW_MAX_OBJECTS",
    "RETIRED",
    "SMALLEST_TIER",
    "TIER_WIDTH",
    "GrowingPack",
    "PackContent",
    "is_dulwich_temp_file",
    "is_own_temp_file",
    "leftover_retired",
    "listed",
    "make_delta",
    "merge",
    "merge_packs",
    "merge_plan",
    "object_count",
    "read_index",
    "remove_leftover_temp_files",
    "remove_packs",
    "remove_retired",
    "retire_packs",
    "tier",
    "write",
]

TIER_WIDTH = 8  # packs per tier before they are merged into one
SMALLEST_TIER = 64  # objects: packs below this are tier 0; each tier is TIER_WIDTH times larger
AUTO_MERGE_LIMIT = 32_768  # objects: larger packs are only rewritten by a full gc
GROW_MAX_OBJECTS = SMALLEST_TIER  # a GrowingPack with this many objects is left as it is
GROW_MAX_BYTES = 512 * 1024  # and so is one of this size

_OFS_DELTA, _REF_DELTA = 6, 7
_PACK_HEADER = 12  # "PACK", version, object count
DELTA_MIN_SIZE = 2048  # bytes: smaller trees are stored whole
_MAX_DEPTH = 16  # deltas in a chain: reading the last one applies them all
_CANDIDATES = 256  # large trees kept as candidate bases
_TREE = 2
_IDX_MAGIC = b"\377tOc" + struct.pack(">I", 2)
_IDX_FIXED = 8 + 256 * 4 + 2 * 20  # header, fan-out table, the two trailing checksums
_IDX_PER_OBJECT = 20 + 4 + 4  # object id, crc32, 32-bit offset


def _object_header(type_num: int, size: int) -> bytes:
    out = bytearray()
    c = (type_num << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(c | 0x80)
        c = size & 0x7F
        size >>= 7
    out.append(c)
    return bytes(out)


def _encode(type_num: int, raw: bytes, level: int = 1) -> bytes:
    # Level 1: YAML records and trees of object ids barely compress better at git's default
    # level 6, which costs ~3x the time on a 1,000-entry tree.
    return _object_header(type_num, len(raw)) + zlib.compress(raw, level)


def _offset_varint(n: int) -> bytes:
    """OFS_DELTA's distance back to the base (git's big-endian, offset-by-one varint)."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        n -= 1
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def _size_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        if n < 0x80:
            out.append(n)
            return bytes(out)
        out.append(0x80 | (n & 0x7F))
        n >>= 7


def _copy_op(offset: int, size: int) -> bytes:
    out = bytearray([0x80])
    for i in range(4):
        if (offset >> (8 * i)) & 0xFF:
            out[0] |= 1 << i
            out.append((offset >> (8 * i)) & 0xFF)
    for i in range(3):
        if (size >> (8 * i)) & 0xFF:
            out[0] |= 1 << (4 + i)
            out.append((size >> (8 * i)) & 0xFF)
    return bytes(out)


def _common_prefix(a: bytes, b: bytes, limit: int) -> int:
    """Length of the common prefix of a and b, at most `limit`."""
    n = 0
    while n < limit:  # equal 4 KB blocks are skipped by memcmp; the first unequal one is
        step = min(4096, limit - n)  # settled by XOR-ing it as two big integers (all in C)
        x, y = a[n:n + step], b[n:n + step]
        if x != y:
            diff = int.from_bytes(x, "big") ^ int.from_bytes(y, "big")
            return n + step - (diff.bit_length() + 7) // 8
        n += step
    return n


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    """Length of the common suffix, at most `limit` (little-endian: the last byte weighs most)."""
    n = 0
    while n < limit:
        step = min(4096, limit - n)
        x, y = a[len(a) - n - step:len(a) - n], b[len(b) - n - step:len(b) - n]
        if x != y:
            diff = int.from_bytes(x, "little") ^ int.from_bytes(y, "little")
            return n + step - (diff.bit_length() + 7) // 8
        n += step
    return n


def make_delta(base: bytes, target: bytes) -> bytes | None:
    """A git delta from `base` to `target` when they differ in one stretch (a tree with a few
    entries changed: the case of every promotion's registry tree); None when that would not
    save at least three quarters of the target."""
    limit = min(len(base), len(target))
    prefix = _common_prefix(base, target, limit)
    suffix = _common_suffix(base, target, limit - prefix)
    if (prefix + suffix) * 4 < len(target) * 3:
        return None
    out = bytearray(_size_varint(len(base)) + _size_varint(len(target)))
    for at in range(0, prefix, 0xFFFF):
        out += _copy_op(at, min(0xFFFF, prefix - at))
    middle = target[prefix:len(target) - suffix]
    for at in range(0, len(middle), 0x7F):
        piece = middle[at:at + 0x7F]
        out.append(len(piece))
        out += piece
    start = len(base) - suffix
    for at in range(0, suffix, 0xFFFF):
        out += _copy_op(start + at, min(0xFFFF, suffix - at))
    return bytes(out)


class PackContent:
    """A pack's entries, encoded as they are added, in pack order: an entry's offset is known
    when it is added, so a pack can grow by appending (GrowingPack) and a delta can point
    back at its base at once.

    Large trees are stored as deltas against the previous version of the same directory in
    this pack, found by its first or last 48 bytes (a version with one entry changed keeps at
    least one of them): a promotion rewrites its registry's tree with one entry changed."""

    def __init__(self):
        self.chunks: list[bytes] = []
        self.offsets: dict[bytes, int] = {}  # raw object id -> offset of its entry
        self.crcs: dict[bytes, int] = {}
        self.end = _PACK_HEADER  # offset of the next entry
        self._depth: dict[bytes, int] = {}  # of entries stored as deltas
        self._by_head: dict[bytes, tuple[int, bytes, bytes]] = {}  # raw[:48] -> (seq, id, raw)
        self._by_tail: dict[bytes, tuple[int, bytes, bytes]] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self.offsets)

    def __contains__(self, sha: bytes) -> bool:
        return sha in self.offsets

    def add_objects(self, objects) -> None:
        """Add dulwich objects not in the pack yet."""
        for obj in objects:
            sha = obj.sha().digest()
            if sha not in self.offsets:
                self.add(sha, obj.type_num, obj.as_raw_string())

    def add_entry(self, sha: bytes, entry: bytes) -> None:
        """A whole object's entry, copied byte for byte from another pack (it is valid in any)."""
        self.offsets[sha] = self.end
        self.crcs[sha] = binascii.crc32(entry) & 0xFFFFFFFF
        self.chunks.append(entry)
        self.end += len(entry)

    def add_delta(self, sha: bytes, type_num: int, raw: bytes, base: bytes | None, delta: bytes | None,
                  compressed: bytes | None = None) -> bool:
        """Keep an existing delta when its base is in this pack too (no need to compute it
        again); `compressed`, its deflated bytes as they were, spares deflating them again."""
        if delta is None or base not in self.offsets:
            return False
        depth = self._depth.get(base, 0) + 1
        if depth > _MAX_DEPTH:
            return False
        self._add_delta(sha, base, delta, depth, compressed)
        self._remember(sha, type_num, raw)
        return True

    def add(self, sha: bytes, type_num: int, raw: bytes, entry: bytes | None = None) -> None:
        """Add an object, a large tree as a delta when a similar one is in the pack; `entry`,
        its whole entry as another pack holds it, is copied when no delta is found (git may
        have compressed it better than this would)."""
        if type_num != _TREE or len(raw) < DELTA_MIN_SIZE:
            # A large blob (a record with a long description) is stored, not compressed, as a
            # large tree without a base is: see below.
            self.add_entry(sha, _encode(type_num, raw, 0 if len(raw) >= DELTA_MIN_SIZE else 1))
            return
        found = [c for c in (self._by_head.get(raw[:48]), self._by_tail.get(raw[-48:])) if c]
        for _, base_sha, base_raw in sorted(found, reverse=True):  # the newest is the likeliest
            if self._depth.get(base_sha, 0) >= _MAX_DEPTH:
                continue
            delta = make_delta(base_raw, raw) if abs(len(base_raw) - len(raw)) * 8 <= len(raw) else None
            if delta is not None:
                self._add_delta(sha, base_sha, delta, self._depth.get(base_sha, 0) + 1)
                self._remember(sha, type_num, raw)
                return
        # Stored, not compressed: a large tree is mostly object ids, which do not compress
        # (compressing costs about ten times the storing), and this happens once a chain.
        self.add_entry(sha, entry if entry is not None else _encode(type_num, raw, 0))
        self._remember(sha, type_num, raw)

    def _add_delta(self, sha: bytes, base: bytes, delta: bytes, depth: int, compressed: bytes | None = None) -> None:
        self.add_entry(sha, _object_header(_OFS_DELTA, len(delta)) + _offset_varint(self.end - self.offsets[base])
                       + (compressed if compressed is not None else zlib.compress(delta, 1)))
        self._depth[sha] = depth

    def _remember(self, sha: bytes, type_num: int, raw: bytes) -> None:
        if type_num != _TREE or len(raw) < DELTA_MIN_SIZE:
            return
        self._seq += 1
        for table, key in ((self._by_head, raw[:48]), (self._by_tail, raw[-48:])):
            table.pop(key, None)
            table[key] = (self._seq, sha, raw)
            if len(table) > _CANDIDATES:
                del table[next(iter(table))]


def write(pack_dir: str, content: PackContent, fsync: bool) -> str | None:
    """Write a pack and its index; the pack's base path (None for no entries). The index goes
    last, so no reader ever sees a pack whose index is incomplete (git and dulwich ignore a
    .pack without its .idx)."""
    import hashlib

    if not content.offsets:
        return None
    os.makedirs(pack_dir, exist_ok=True)
    header = b"PACK" + struct.pack(">II", 2, len(content.offsets))
    checksum = hashlib.sha1(b"".join([header, *content.chunks])).digest()
    base = os.path.join(pack_dir, "pack-" + checksum.hex())
    if os.path.exists(base + ".idx"):  # the very same objects are already packed
        return base
    _write_files([(base + ".pack", [header, *content.chunks, checksum]),
                  (base + ".idx", [_index(content.offsets, content.crcs, checksum)])], fsync)
    return base


class GrowingPack:
    """The newest pack a storage wrote, kept in memory so that the next commit's pack is
    written as that pack plus the new objects, and replaces it.

    Why: one new pack per commit meant a merge of tier 0 every TIER_WIDTH commits, a pack
    write with its own fsyncs and file creations (the slowest step of one commit in eight). Rewriting a small pack costs next to nothing beside the fsync every commit pays
    anyway, so a writer keeps one pack of tier 0 and no merge of tier 0 is needed for its
    commits. It stops growing at GROW_MAX_OBJECTS (= SMALLEST_TIER: a pack of tier 1, merged as before) or
    GROW_MAX_BYTES, so a commit never rewrites much.

    The pack it replaces is superseded (every object of it is in the new one) once the new
    one is written: the caller retires it (see retire_packs) when it may."""

    def __init__(self, pack_dir: str):
        self.pack_dir = pack_dir
        self.content: PackContent | None = None
        self.base: str | None = None  # where `content` is written

    def write(self, objects, fsync: bool) -> tuple[str | None, str | None]:
        """Write `objects` with the growing pack: (the new pack's base, the pack it supersedes)."""
        content, old = self.content, self.base
        if content is None or old is None or not os.path.exists(old + ".idx"):
            content, old = PackContent(), None  # none yet, or merged away by another process
        self.content = self.base = None  # until the write succeeds: a failed one starts afresh
        content.add_objects(objects)
        base = write(self.pack_dir, content, fsync)
        if len(content) < GROW_MAX_OBJECTS and content.end < GROW_MAX_BYTES:
            self.content, self.base = content, base
        return base, (old if old != base else None)

    def forget(self, bases) -> None:
        """Packs `bases` were merged into another: start a new pack rather than grow one of them."""
        if self.base in bases:
            self.content = self.base = None


def _index(offsets: dict[bytes, int], crcs: dict[bytes, int], pack_checksum: bytes) -> bytes:
    import hashlib

    names = sorted(offsets)
    counts = [0] * 256  # fanout[b]: how many ids start with a byte <= b
    for name in names:
        counts[name[0]] += 1
    fanout = list(itertools.accumulate(counts))
    small: list[int] = []
    large: list[int] = []
    for name in names:
        off = offsets[name]
        if off < 0x80000000:
            small.append(off)
        else:  # past 2 GiB: the 32-bit table points into a table of 64-bit offsets
            small.append(0x80000000 | len(large))
            large.append(off)
    body = b"".join([
        _IDX_MAGIC, struct.pack(">256I", *fanout), *names,
        struct.pack(f">{len(names)}I", *(crcs[n] for n in names)),
        struct.pack(f">{len(small)}I", *small),
        struct.pack(f">{len(large)}Q", *large), pack_checksum])
    return body + hashlib.sha1(body).digest()


def _write_files(files: list[tuple[str, list[bytes]]], fsync: bool) -> None:
    """Write each file under a temporary name, then rename them in order: a final name appears
    complete or not at all, and (with `fsync`) only once every file's bytes are on disk."""
    pending: list[tuple[str, str]] = []  # (temporary name, final name) not renamed yet
    try:
        fds: list[int] = []
        try:
            for path, chunks in files:
                tmp = f"{os.path.dirname(path)}/tmp_{os.path.basename(path)}_{os.urandom(6).hex()}"
                fds.append(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444))  # read-only, as git's
                locks.hold(fds[-1])  # alive while flocked: see remove_leftover_temp_files
                pending.append((tmp, path))
                rest = memoryview(b"".join(chunks))
                while rest:
                    rest = rest[os.write(fds[-1], rest):]
            if fsync:
                # Start writing every file back before waiting on the first: on ext4 the first
                # fsync's journal commit then carries the others' blocks and their own fsyncs
                # are cheaper (measured: docs/performance.md). Each file is still fsynced.
                if hasattr(os, "posix_fadvise"):
                    for fd in fds[1:]:
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                for fd in fds:
                    os.fsync(fd)
        finally:
            for fd in fds:
                os.close(fd)
        while pending:
            os.replace(*pending[0])
            pending.pop(0)
    except BaseException:
        for tmp, _ in pending:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise


# ---- tiered merging ---------------------------------------------------------------------------
def object_count(idx_path: str) -> int:
    return _count_from_index_size(os.path.getsize(idx_path))


def _count_from_index_size(size: int) -> int:
    """Objects in a pack, from the size of its v2 index (no need to open it)."""
    return max(0, (size - _IDX_FIXED) // _IDX_PER_OBJECT)


def tier(count: int) -> int:
    t, limit = 0, SMALLEST_TIER
    while count >= limit:
        t, limit = t + 1, limit * TIER_WIDTH
    return t


# Objects per pack index name. A pack is named by its checksum and never changes: planning a
# merge after every commit needs the names only, not a stat of every index.
_COUNTS: dict[str, int] = {}


def merge_plan(pack_dir: str) -> list[str]:
    """Base paths of the packs to merge now (empty when no tier is full).

    A full tier is merged together with every smaller pack; if the result would fill the next
    tier, that tier joins in too, so one merge settles a cascade."""
    try:
        names = set(os.listdir(pack_dir))
    except FileNotFoundError:
        return []
    tiers: dict[int, list[str]] = {}  # tier -> pack names without extension
    for name in names:
        if not name.endswith(".idx"):
            continue
        stem = name[:-4]
        if stem + ".pack" not in names or stem + ".keep" in names or stem + ".mtimes" in names:
            continue  # no pack (yet), or kept, or git's cruft pack
        count = _COUNTS.get(name)
        if count is None:
            try:
                count = _count_from_index_size(os.stat(os.path.join(pack_dir, name)).st_size)
            except OSError:  # removed meanwhile
                continue
            if len(_COUNTS) > 4096:
                _COUNTS.clear()
            _COUNTS[name] = count
        if count < AUTO_MERGE_LIMIT:
            tiers.setdefault(tier(count), []).append(stem)
    full = [t for t, stems in tiers.items() if len(stems) >= TIER_WIDTH]
    if not full:
        return []
    chosen = [stem for t in sorted(tiers) if t <= min(full) for stem in tiers[t]]
    for t in sorted(t for t in tiers if t > min(full)):
        if len(tiers[t]) + 1 < TIER_WIDTH:  # the merged pack would not fill this tier
            break
        chosen += tiers[t]
    return [os.path.join(pack_dir, stem) for stem in chosen]


def listed(pack_dir: str, keep: bool = True) -> list[str]:
    """Base paths of the packs readers see (an index and its pack); without `keep`, not those
    git is told to keep (`.keep`) or its cruft packs (`.mtimes`), which a full gc leaves alone."""
    try:
        names = set(os.listdir(pack_dir))
    except FileNotFoundError:
        return []
    stems = sorted(name[:-4] for name in names if name.endswith(".idx") and name[:-4] + ".pack" in names)
    if not keep:
        stems = [s for s in stems if s + ".keep" not in names and s + ".mtimes" not in names]
    return [os.path.join(pack_dir, stem) for stem in stems]


def read_index(idx_path: str) -> list[tuple[bytes, int, int]] | None:
    """(object id, offset, crc32) of every object in a pack index v2; None for other versions."""
    with open(idx_path, "rb") as f:
        data = f.read()
    if data[:8] != _IDX_MAGIC:
        return None
    count = struct.unpack_from(">I", data, 8 + 255 * 4)[0]
    at = 8 + 256 * 4
    names = [data[at + 20 * i:at + 20 * i + 20] for i in range(count)]
    at += 20 * count
    crcs = struct.unpack_from(f">{count}I", data, at)
    at += 4 * count
    small = struct.unpack_from(f">{count}I", data, at)
    at += 4 * count
    offsets = [struct.unpack_from(">Q", data, at + 8 * (off & 0x7FFFFFFF))[0] if off & 0x80000000 else off
               for off in small]
    return list(zip(names, offsets, crcs, strict=True))


def merge(object_store, bases: list[str], fsync: bool = False) -> str | None:
    """Write the objects of packs `bases` as one pack, then delete them; the new base path."""
    merged, replaced = merge_packs(object_store, bases, fsync)
    remove_packs(replaced)
    return merged


def merge_packs(object_store, bases: list[str], fsync: bool = False) -> tuple[str | None, list[str]]:
    """Write the objects of packs `bases` as one pack: (its base path, the packs it replaces,
    which the caller deletes with remove_packs once it may).

    Whole objects are copied byte for byte (entry and crc stay valid in any pack), except large
    trees: each is stored as a delta against a similar recent one (a promotion rewrites its
    registry's tree with one entry changed, so that saves ~99% of it). Readers holding a deleted
    pack open keep reading it; dulwich and git rescan the pack directory when a pack they listed
    has gone."""
    bases = sorted(bases, key=_mtime)  # oldest first: each tree's predecessor is its best base
    out = PackContent()
    merged_from = []
    for base in bases:
        try:
            index = read_index(base + ".idx")
            with open(base + ".pack", "rb") as f:
                data = f.read()
        except FileNotFoundError:  # retired meanwhile: its objects are in another pack
            continue
        if index is None:  # not an index v2: leave that pack as it is
            continue
        merged_from.append(base)
        by_offset = sorted((off, sha) for sha, off, _crc in index)
        sha_at = dict(by_offset)
        ends = [off for off, _ in by_offset[1:]] + [len(data) - 20]
        decoded: dict[int, tuple[int, bytes]] = {}  # offset -> large trees, bases of later deltas
        for (off, sha), end in zip(by_offset, ends, strict=True):
            if sha in out:
                continue
            type_num, size, at = entry_header(data, off)
            delta = base_sha = compressed = whole = None
            if type_num == _OFS_DELTA:
                distance, at = offset_at(data, at)
                compressed = data[at:end]
                delta, base_sha = zlib.decompress(compressed), sha_at.get(off - distance)
                known = decoded.get(off - distance)
                if known is None:
                    type_num, raw = object_store.get_raw(sha)
                else:
                    type_num, raw = known[0], apply_delta(known[1], delta)
            elif type_num == _REF_DELTA:
                type_num, raw = object_store.get_raw(sha)
            elif type_num == _TREE and size >= DELTA_MIN_SIZE:
                raw, whole = zlib.decompress(data[at:end]), data[off:end]
            else:
                out.add_entry(sha, data[off:end])
                continue
            if type_num == _TREE and len(raw) >= DELTA_MIN_SIZE:
                decoded[off] = (type_num, raw)
                if len(decoded) > 256:  # bases of later deltas; ~10 MB at most
                    del decoded[next(iter(decoded))]
            if not out.add_delta(sha, type_num, raw, base_sha, delta, compressed):
                out.add(sha, type_num, raw, entry=whole)
    if not merged_from:
        return None, []
    merged = write(os.path.dirname(bases[0]), out, fsync)
    return merged, [base for base in merged_from if base != merged]


def remove_packs(bases: list[str]) -> None:
    """Delete packs (whose objects are safely in another pack)."""
    if not bases:
        return
    present = set(os.listdir(os.path.dirname(bases[0])))  # one listing, not a failed unlink per missing file
    for base in bases:
        # The index first: nobody starts reading a pack mid-removal. Then what git may keep
        # beside a pack it wrote (reverse index, bitmap).
        stem = os.path.basename(base)
        for ext in (".idx", ".pack", ".rev", ".bitmap"):
            if stem + ext in present:
                try:
                    os.unlink(base + ext)
                except FileNotFoundError:  # removed by another process meanwhile
                    pass


# A pack whose index was renamed to this suffix was merged away and is being deleted.
RETIRED = ".retired"


def retire_packs(bases: list[str]) -> list[str]:
    """Hide packs that a merge replaced from every reader that starts from now on, cheaply:
    git, dulwich and canonry list a pack by its index, and renaming the index to a new name
    costs a tenth of deleting the pack's files on the disks measured. Readers
    that had it open keep reading it. The packs actually hidden (remove_retired deletes them)."""
    retired = []
    for base in bases:
        try:
            os.replace(base + ".idx", base + RETIRED)
        except FileNotFoundError:  # removed by another process meanwhile
            continue
        retired.append(base)
    return retired


def remove_retired(bases: list[str], extras: bool = True) -> None:
    """Delete retired packs, and (`extras`) what git may keep beside a pack it wrote (reverse
    index, bitmap; never beside canonry's own). The renamed index goes last: while it is
    there, a later merge or gc knows the pack is still to be deleted (should this be
    interrupted)."""
    exts = (".pack", ".rev", ".bitmap", RETIRED) if extras else (".pack", RETIRED)
    for base in bases:
        for ext in exts:
            try:
                os.unlink(base + ext)
            except FileNotFoundError:
                pass


def leftover_retired(pack_dir: str) -> list[str]:
    """Packs retired but not deleted (by a process that ended first): their bases."""
    try:
        return [os.path.join(pack_dir, name[:-len(RETIRED)]) for name in os.listdir(pack_dir)
                if name.endswith(RETIRED)]
    except FileNotFoundError:
        return []




def is_own_temp_file(name: str) -> bool:
    """Whether `name` in a pack folder is one of canonry's temporary files (_write_files)."""
    return name.startswith("tmp_pack-")


def is_dulwich_temp_file(name: str) -> bool:
    """Whether `name` in a pack folder is a temporary pack dulwich writes (gc, fetch): mkstemp's
    `tmpXXXXXXXX.pack` (git's own are `tmp_pack_*` and `tmp_idx_*`: not ours to judge)."""
    return name.startswith("tmp") and name.endswith(".pack") and not name.startswith("tmp_")


def remove_leftover_temp_files(pack_dir: str) -> int:
    """Remove the temporary pack files of writers killed while writing; the bytes freed.

    canonry flocks its own while writing them, and dulwich's through compat.hold_temp_packs, so
    only dead writers' are taken (locks.remove_stale)."""
    return locks.remove_stale(
        pack_dir, lambda name: is_own_temp_file(name) or is_dulwich_temp_file(name))


def _mtime(base: str) -> float:
    try:
        return os.path.getmtime(base + ".pack")
    except OSError:
        return 0.0
