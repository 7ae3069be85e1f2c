"""Moving many files in and out of a blob store at once: a pool of threads, since each transfer
waits on a disk or a network most of its time (hashlib and obstore let go of the GIL).

A failure stops the batch: transfers not yet started are cancelled, and the first error is
raised once the running ones are done, so nothing is left half-written (uploads are complete
objects or none; downloads appear by rename).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TypeVar

__all__ = ["parallel", "workers_for"]

T = TypeVar("T")
R = TypeVar("R")


def workers_for(blobs, count: int) -> int:
    """Threads for `count` transfers to or from `blobs`: a network store gains from many
    requests in flight, a local disk from a few."""
    from canonry.files.blobs import LocalBlobStore

    return max(1, min(count, 4 if isinstance(blobs, LocalBlobStore) else 16))


def parallel(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """fn(item) for every item, `workers` at a time; results in the items' order."""
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(fn, item) for item in items]
        wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f.done() and f.exception() is not None), None)
        if failed is not None:
            for f in futures:
                f.cancel()
            wait(futures)
            raise failed.exception()
        return [f.result() for f in futures]
