"""How the CLI words an error: one line on stderr, `canonry: error: …`.

Imports nothing heavy and no click: the console script (launcher.py) prints errors with it
before click is imported, and the click group (app.py, common.py) prints the same lines.
"""
from __future__ import annotations

import sys

__all__ = ["error_line", "fail", "os_error_message"]


def error_line(message: str) -> str:
    """`message` as the CLI prints an error."""
    return f"canonry: error: {message}"


def fail(message: str, code: int) -> int:
    """Print `message` as one error line on stderr and return `code` (the exit status)."""
    sys.stderr.write(error_line(message) + "\n")
    return code


def os_error_message(e: OSError) -> str:
    """An OSError in words: its reason and the file it names (no traceback, no errno)."""
    where = f": {e.filename}" if getattr(e, "filename", None) else ""
    return f"{e.strerror or e}{where}"
