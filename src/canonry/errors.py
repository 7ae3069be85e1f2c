"""Domain errors. Each one renders as a single line for the CLI (cli/app.py and cli/messages.py)."""
from __future__ import annotations

__all__ = [
    "BrokenState", "CanonryError", "Conflict", "IntegrityError", "InvalidAddress", "InvalidInput", "InvalidName",
    "MergeConflict", "NotAStore", "NotFound", "PolicyRefused", "ReservedAlias", "SchemaError",
    "StorageUnavailable", "TypeNotAccepted",
]


class CanonryError(Exception):
    """Base class: a user-facing failure. The store is left unchanged."""

    exit_code = 1


class NotAStore(CanonryError):
    pass


class NotFound(CanonryError):
    def __init__(self, kind: str, name: str, candidates=(), where: str = ""):
        self.kind, self.name = kind, name
        msg = f"unknown {kind} {name!r}"
        if where:
            msg += f" in {where}"
        import difflib

        candidates = list(candidates)
        close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
        if not close and kind == "version" and name[1:].isdigit():
            # v1 vs v0 is a poor string match; by number, the nearest versions are the best guess
            numbered = [c for c in candidates if c[1:].isdigit()]
            close = sorted(numbered, key=lambda c: abs(int(c[1:]) - int(name[1:])))[:2]
        if close:
            msg += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
        super().__init__(msg)


class InvalidName(CanonryError):
    pass


class InvalidAddress(CanonryError):
    pass


class TypeNotAccepted(CanonryError):
    pass


class ReservedAlias(CanonryError):
    pass


class InvalidInput(CanonryError):
    """Bad arguments or unreadable input files."""


class SchemaError(CanonryError):
    """A YAML file in the store does not validate against its schema."""


class BrokenState(SchemaError):
    """Store files, each valid, contradict one another: an alias on a link that is gone (a merge
    of two valid sides can leave that). `canonry validate` reports it; reads name it and the fix."""


class Conflict(CanonryError):
    """The store branch kept moving under us; the operation was not applied."""


class IntegrityError(CanonryError):
    """Stored bytes do not match their recorded digest, or are missing."""


class StorageUnavailable(CanonryError):
    """Object storage could not be reached, or refused the request (credentials, permissions)."""


class PolicyRefused(CanonryError):
    """A policy plugin refused the change; nothing was committed."""


class MergeConflict(Conflict):
    """Two lines of history changed the same thing differently (e.g. both moved `production`)."""
