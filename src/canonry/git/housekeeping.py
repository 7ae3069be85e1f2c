"""Keeping a store's object folder small and fast to read: retiring the packs a growing pack
superseded, packing loose objects, merging small packs as they accumulate (tiered: see
packs.py), and `canonry gc`.

One process at a time does it, under the gc lock (a locks.FileLock); the others just go on. The packs
retired or merged away are hidden at once (their indexes renamed, see packs.retire_packs) and
deleted by a background thread that holds the lock until it is done.
"""
from __future__ import annotations

import os
import queue
import threading

from canonry.git import packs
from canonry.git.locks import FileLock

__all__ = ["GC_LOCK_WAIT", "PACK_LOOSE_THRESHOLD", "Housekeeping"]

# Pack loose objects once the fan-out sample says there are about this many (git gc --auto: 6700).
PACK_LOOSE_THRESHOLD = 4096
GC_LOCK_WAIT = 60.0  # seconds `canonry gc` waits for a merge under way elsewhere


class Housekeeping:
    def __init__(self, storage):
        self.storage = storage
        # one object folder, one lock
        self.lock = FileLock(os.path.join(storage.common_dir, "canonry", "gc.lock"))
        self._deleter: _Deleter | None = None
        self._swept = False

    def loose_object_estimate(self) -> int:
        sample = os.path.join(self.storage.objects_dir, "17")
        try:
            return len(os.listdir(sample)) * 256
        except FileNotFoundError:
            return 0

    def maybe_pack(self) -> bool:
        """Retire the packs the growing pack superseded, pack loose objects when there are
        many, and merge small packs when a tier is full; True if it packed or merged.

        Only one process does this at a time (under the gc lock); the others just go on
        (what they would have retired stays, a duplicate that a later merge takes). The packs
        retired (packs.retire_packs: their indexes are renamed, which hides them from every
        reader starting from now on) are deleted by a background thread, which holds the lock
        until it is done: unlinking files is slow on some disks, time the next commit need not wait for
        (the thread only waits on the disk, not on the GIL)."""
        storage = self.storage
        if not self._swept:  # once per process: temp files of writers killed while writing
            self._swept = True
            packs.remove_leftover_temp_files(storage.pack_dir)
        superseded = storage.superseded
        loose = self.loose_object_estimate() >= PACK_LOOSE_THRESHOLD
        merge_due = bool(storage.packs_written and packs.merge_plan(storage.pack_dir))
        if not (loose or merge_due or superseded):
            return False
        self.wait()  # this storage's own deletion still under way holds the lock
        if not self.lock.acquire():
            return False
        handed_over = False
        try:
            # (packs retired, whether git may have written files beside them)
            retired = [(packs.retire_packs(superseded), False)]  # canonry's own growing packs
            storage.objects.forget(superseded)
            del superseded[:]
            if loose:
                storage.repo.object_store.pack_loose_objects()
            if merge_due:
                retired.append((packs.retire_packs(self.merge_small_packs(remove=False)), True))
            if any(bases for bases, _extras in retired):
                if self._deleter is None or not self._deleter.usable():
                    self._deleter = _Deleter()
                self._deleter.delete(retired, self.lock)
                handed_over = True  # the deleter releases the lock
        except Exception as e:  # housekeeping after a landed commit: warn, the next one retries
            import sys

            sys.stderr.write(f"canonry: warning: merging packs failed (tried again later): {e}\n")
            return False
        finally:
            if not handed_over:
                self.lock.release()
        return loose or merge_due

    def wait(self) -> None:
        """Wait until the packs this storage retired are deleted."""
        if self._deleter is not None:
            self._deleter.wait()

    def close(self) -> None:
        """Wait for the deletions under way, then close the lock file."""
        self.wait()
        self.lock.close()

    def merge_small_packs(self, remove: bool = True) -> list[str]:
        """Merge the small packs due for it; the packs replaced (deleted already if `remove`)."""
        packs.remove_retired(packs.leftover_retired(self.storage.pack_dir))  # of an interrupted process
        plan = packs.merge_plan(self.storage.pack_dir)
        if not plan:
            return []
        _merged, replaced = packs.merge_packs(self.storage.objects, plan, fsync=self.storage.fsync_packs)
        self.storage.objects.forget(plan)
        self.storage.growing.forget(plan)
        if remove:
            packs.remove_packs(replaced)
        # dulwich's object store (if open) is not rescanned here (not cheap): it rescans by itself
        # when it misses a pack that has gone.
        return replaced

    def merge_all_packs(self) -> list[str]:
        """Merge every pack (but those git is told to keep) into one; the packs it replaced, deleted.

        Not dulwich's repack: that writes every object whole, so the large trees a tiered merge
        stored as deltas (~1-2 KB each) came back as full copies (~40 KB each at 1,000
        collections) and a gc'd store was half as large again as before. packs.merge_packs
        copies each entry as it is, keeps each delta whose base comes along, and stores the
        other large trees as deltas where it can: the merged pack is no larger than the packs
        it replaces (less the duplicates). Caller holds the gc lock."""
        bases = packs.listed(self.storage.pack_dir, keep=False)
        if len(bases) < 2:
            return []
        _merged, replaced = packs.merge_packs(self.storage.objects, bases, fsync=self.storage.fsync_packs)
        self.storage.objects.forget(bases)
        self.storage.growing.forget(bases)
        # Hidden at once (readers that have one open keep reading it), then deleted.
        packs.remove_retired(packs.retire_packs(replaced))
        return replaced

    def gc(self, full: bool = True) -> dict:
        """Pack loose objects; `full`: every pack into one, keeping deltas (merge_all_packs).

        Under the gc lock, waiting for it: a merge, or the deletion of the packs it replaced,
        may be under way in this process or another, and a repack must not read a pack that
        is being deleted."""
        self.wait()
        from dulwich.file import FileLocked

        try:
            self.lock.acquire(wait=GC_LOCK_WAIT)
        except FileLocked:
            from canonry.errors import Conflict

            raise Conflict(f"another process has been packing objects for {GC_LOCK_WAIT:.0f} s "
                           f"(lock {self.lock.path}): try again later") from None
        try:
            packs.remove_retired(packs.leftover_retired(self.storage.pack_dir))  # of an interrupted process
            packs.remove_leftover_temp_files(self.storage.pack_dir)  # of killed writers
            store = self.storage.repo.object_store
            packed = store.pack_loose_objects()
            packs_before = len(packs.listed(self.storage.pack_dir))
            consolidated = False
            if full and packs_before > 1:
                self.merge_all_packs()
                consolidated = True
            elif not full:
                self.merge_small_packs()
            self.storage.objects.close()  # what it had open may be gone: it rescans on the next read
            return {"packed_objects": packed, "packs_before": packs_before,
                    "packs": len(packs.listed(self.storage.pack_dir)), "consolidated": consolidated}
        finally:
            self.lock.release()


class _Deleter:
    """A thread that deletes retired packs, then releases the gc lock it was handed. One per
    storage, kept while there is work (starting a thread per commit was measurable), ending
    after IDLE_S without any (so a storage dropped without close() leaves no thread behind)."""

    IDLE_S = 2.0

    def __init__(self):
        self._jobs: queue.Queue = queue.Queue()
        self._mutex = threading.Lock()
        self._running = False
        self._pid = os.getpid()

    def usable(self) -> bool:
        return self._pid == os.getpid()  # a forked child has no thread

    def delete(self, retired: list[tuple[list[str], bool]], lock: FileLock) -> None:
        """Delete (packs.remove_retired) each (bases, extras) of `retired`, then release `lock`."""
        with self._mutex:
            self._jobs.put((retired, lock))
            if not self._running:
                # A daemon, so that it never keeps an interpreter alive: Store.close() and the
                # exit handler (storage._close_open_storages) wait for its work.
                threading.Thread(target=self._run, name="canonry-remove-packs", daemon=True).start()
                self._running = True

    def wait(self) -> None:
        if self.usable():
            self._jobs.join()

    def _run(self) -> None:
        while True:
            try:
                retired, lock = self._jobs.get(timeout=self.IDLE_S)
            except queue.Empty:
                with self._mutex:
                    if self._jobs.empty():
                        self._running = False
                        return
                continue
            try:
                for bases, extras in retired:
                    packs.remove_retired(bases, extras)
            except OSError as e:  # they stay; a later merge or gc takes them again
                import sys

                sys.stderr.write(f"canonry: warning: could not delete merged packs: {e}\n")
            finally:
                lock.release()
                self._jobs.task_done()
