"""Progress bars for moving bytes (log, get, storage push/verify), drawn by tqdm on stderr.

None when stderr is not a terminal, with --quiet or with --json: a script or a CI log gets the
result lines only. tqdm is imported only when a bar is drawn.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["byte_progress"]


@contextmanager
def byte_progress(label: str, total: int | None, quiet: bool = False) -> Iterator[Callable[[int], None] | None]:
    """A callable told each number of bytes moved (thread-safe), or None when no bar is drawn."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, file=sys.stderr,
              leave=False, dynamic_ncols=True, miniters=1) as bar:
        yield bar.update
