"""Keeping a store's object folder small and fast to read: packing loose objects, merging
small packs as they accumulate (tiered: see packs.py), and `canonry gc`.

One process at a time does it, under `<git dir>/canonry/gc.lock`; the others just go on. The
packs a merge replaced are hidden at once (their indexes renamed, see packs.retire_packs) and
deleted by a background thread that holds the lock until it is done.
"""
from __future__ import annotations

import os
import threading
import time

from . import packs

# Pack loose objects once the fan-out sample says there are about this many (git gc --auto: 6700).
PACK_LOOSE_THRESHOLD = 4096
GC_LOCK_WAIT = 60.0  # seconds `canonry gc` waits for a merge under way elsewhere


class Housekeeping:
    def __init__(self, storage):
        self.storage = storage
        self.thread: threading.Thread | None = None  # deleting the packs the last merge retired

    def loose_object_estimate(self) -> int:
        sample = os.path.join(self.storage.objects_dir, "17")
        try:
            return len(os.listdir(sample)) * 256
        except FileNotFoundError:
            return 0

    def maybe_pack(self) -> bool:
        """Pack loose objects when there are many, and merge small packs when a tier is full.

        Only one process does this at a time (an exclusive lock file); the others just go on.
        The packs a merge replaced are hidden at once (packs.retire_packs: their indexes are
        renamed) and deleted by a background thread, which holds the lock until it is done: an
        unlink costs ~0.3 ms here and a merge replaces 16 files, time the next commit need not
        wait for (the thread only waits on the disk, not on the GIL). A reader starting after
        this returns never lists a pack that is being deleted."""
        loose = self.loose_object_estimate() >= PACK_LOOSE_THRESHOLD
        if not loose and not (self.storage.packs_written and packs.merge_plan(self.storage.pack_dir)):
            return False
        lock = None
        try:
            lock = self._take_lock()
            if lock is None:
                return False
            if loose:
                self.storage.repo.object_store.pack_loose_objects()
            retired = packs.retire_packs(self.merge_small_packs(remove=False))
            if retired:
                self.thread = threading.Thread(
                    target=_remove_then_unlock, args=(retired, lock), name="canonry-remove-packs")
                self.thread.start()
                lock = None  # the thread releases it
        except Exception as e:  # housekeeping after a landed commit: warn, the next one retries
            import sys

            sys.stderr.write(f"canonry: warning: merging packs failed (tried again later): {e}\n")
            return False
        finally:
            if lock is not None:
                _unlock(lock)
        return True

    def wait(self) -> None:
        """Wait until the packs replaced by this storage's last merge are deleted."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None

    def merge_small_packs(self, remove: bool = True) -> list[str]:
        """Merge the small packs due for it; the packs replaced (deleted already if `remove`)."""
        packs.remove_retired(packs.leftover_retired(self.storage.pack_dir))  # of an interrupted process
        plan = packs.merge_plan(self.storage.pack_dir)
        if not plan:
            return []
        _merged, replaced = packs.merge_packs(self.storage.objects, plan, fsync=self.storage.fsync_packs)
        self.storage.objects.forget(plan)
        if remove:
            packs.remove_packs(replaced)
        # dulwich's object store (if open) is not rescanned here (~1 ms): it rescans by itself
        # when it misses a pack that has gone.
        return replaced

    def _take_lock(self) -> str | None:
        """The path of the lock file when this process now holds it, else None."""
        lock = os.path.join(self.storage.common_dir, "canonry", "gc.lock")  # one object folder, one lock
        os.makedirs(os.path.dirname(lock), exist_ok=True)
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            try:
                if time.time() - os.path.getmtime(lock) > 600:  # left by a crashed process
                    os.unlink(lock)
            except OSError:
                pass
            return None
        return lock

    def gc(self, full: bool = True) -> dict:
        """Pack loose objects; `full`: everything into one pack (dulwich's repack).

        Under the gc lock, waiting for it: a merge, or the deletion of the packs it replaced,
        may be under way in this process or another, and a repack must not read a pack that
        is being deleted."""
        self.wait()
        deadline = time.monotonic() + GC_LOCK_WAIT
        while (lock := self._take_lock()) is None:
            if time.monotonic() > deadline:
                from .errors import Conflict

                raise Conflict(f"another process has been packing objects for {GC_LOCK_WAIT:.0f} s "
                               f"(lock {os.path.join(self.storage.common_dir, 'canonry', 'gc.lock')}): try again later")
            time.sleep(0.02)
        try:
            packs.remove_retired(packs.leftover_retired(self.storage.pack_dir))  # of an interrupted process
            store = self.storage.repo.object_store
            packed = store.pack_loose_objects()
            packs_before = len(store.packs)
            consolidated = False
            if full and packs_before > 1:
                store.repack()
                consolidated = True
            elif not full:
                self.merge_small_packs()
            self.storage.objects.close()  # what it had open may be gone: it rescans on the next read
            return {"packed_objects": packed, "packs_before": packs_before,
                    "packs": len(store.packs), "consolidated": consolidated}
        finally:
            _unlock(lock)


def _remove_then_unlock(retired: list[str], lock: str) -> None:
    try:
        packs.remove_retired(retired)
    except OSError as e:  # they stay; a later merge or gc takes them again
        import sys

        sys.stderr.write(f"canonry: warning: could not delete merged packs: {e}\n")
    finally:
        _unlock(lock)


def _unlock(lock: str) -> None:
    try:
        os.unlink(lock)
    except FileNotFoundError:  # taken for stale and removed by another process
        pass
