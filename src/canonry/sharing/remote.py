"""Sharing a store through any git remote: clone, fetch, pull, push, sync.

Git is the distributed engine: we speak what dulwich speaks (a local path, file://, smart
HTTP(S), ssh) and never force-push. A push that lost a race fetches, replays the operations
of the local unpublished commits on the remote's new state (their trailers make that
possible) and pushes again; the remote's ref update is itself a compare-and-swap (the server
checks the old value). Notes (the automation run log) and the usage log (refs/canonry/usage)
travel with the branch, and are merged, never overwritten.
Credentials come from the usual git places (the URL, ssh keys, credential config) and are
never printed: messages show URLs without user info.
"""
from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from dulwich.file import FileLocked

from canonry.automation.runlog import NOTES_REF, merge_notes
from canonry.errors import CanonryError, Conflict, InvalidInput, MergeConflict
from canonry.git.graph import can_fast_forward, first_parent_chain, merge_base
from canonry.sharing.merge import changed_paths, rebase_commits
from canonry.usage import USAGE_REF, merge_usage

__all__ = [
    "DISCARDED_REFS",
    "SIDE_REFS",
    "ZERO",
    "DiscardResult",
    "RemoteError",
    "SyncResult",
    "clone_repository",
    "fetch",
    "fetch_run_log",
    "pull",
    "push",
    "remote_url",
    "safe_url",
    "sync",
]

ZERO = b"0" * 40
# `pull --discard-local` keeps the commits it drops here, one ref per use: nothing is lost.
DISCARDED_REFS = b"refs/canonry/discarded/"


class RemoteError(CanonryError):
    pass


@dataclass
class SyncResult:
    action: str  # up-to-date | pushed | fast-forward | rebased | created
    branch: str
    old: str | None
    new: str | None
    replayed: int = 0
    remote: str = ""
    incoming: str | None = None  # the range of commits that came in (for `automations run`)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def safe_url(url: str) -> str:
    """A URL fit to print: no user name, password or token."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
    except ValueError:  # a malformed URL: show no more than scheme and path
        return url.split("://", 1)[0] + "://…"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def remote_url(repo, remote: str) -> str:
    config = repo.get_config()
    try:
        url = config.get((b"remote", remote.encode()), b"url").decode()
    except KeyError:
        url = None
    if url is not None:
        if "://" not in url and ":" not in url.split("/")[0] and not os.path.isabs(url):
            url = os.path.normpath(os.path.join(repo.path, url))  # as git: from the repository
        return url
    if "://" in remote or os.path.exists(remote) or remote.startswith("git@"):
        return remote
    raise InvalidInput(f"no remote named {remote!r} (git config remote.{remote}.url) and no such path")


def _client(repo, url: str, operation: str):
    from dulwich.client import get_transport_and_path

    try:
        return get_transport_and_path(url, config=repo.get_config_stack(), operation=operation)
    except Exception as e:
        raise RemoteError(f"cannot reach {safe_url(url)}: {_why(e)}") from None


def _why(e: BaseException) -> str:
    import re

    text = " ".join(str(e).split()) or type(e).__name__
    text = re.sub(r"://[^/\s@'\"()]*@", "://", text)  # user:password@ wherever a URL appears
    return text[:300]


def fetch(store, remote: str = "origin") -> dict:
    """Fetch the store branch, the notes ref and the usage ref; return the remote's refs."""
    storage = store.storage
    repo = storage.repo
    url = remote_url(repo, remote)
    client, path = _client(repo, url, "pull")
    wanted = (storage.ref, *SIDE_REFS)

    def determine_wants(refs, depth=None):
        return [refs[r] for r in wanted if refs.get(r) and refs[r] not in repo.object_store]

    retry = _Retry(FETCH_BUDGET_S)
    while True:
        try:
            result = client.fetch(path, repo, determine_wants=determine_wants)
        except Exception as e:
            raise RemoteError(f"fetch from {safe_url(url)} failed: {_why(e)}") from None
        refs = {k: v for k, v in result.refs.items() if v is not None}
        # The remote may have moved between telling its refs and sending objects: make sure
        # we have what the refs we act on point at, else fetch again.
        if all(refs[r] in repo.object_store for r in wanted if r in refs):
            break
        if not retry.again():
            raise RemoteError(f"fetch from {safe_url(url)}: the remote kept moving for {FETCH_BUDGET_S:g} s "
                              f"({retry.attempts} attempts); try again")
    if storage.ref in refs:
        _track(storage, remote, refs[storage.ref])
    return refs


def _track(storage, remote: str, sha: bytes, message: str | None = None) -> None:
    """Keep refs/remotes/REMOTE/BRANCH, as git does, for a named remote (with its reflog)."""
    if "://" in remote or os.path.exists(remote) or remote.startswith("git@"):
        return
    storage.set_ref(b"refs/remotes/" + remote.encode() + b"/" + storage.branch.encode(), sha,
                    message or f"fetch {remote}: fast-forward")


def _integrate(store, remote_head: bytes | None, what: str,
               remote: str | None = None) -> tuple[str, bytes | None, bytes | None, int]:
    """Bring the local branch onto `remote_head`: fast-forward, or replay local work on it.
    Returns (action, old local, new local, replayed commits)."""
    storage = store.storage
    repo = storage.repo
    retry = _Retry(INTEGRATE_BUDGET_S)
    while True:
        local = _ref(repo, storage.ref)
        if remote_head is None or local == remote_head:
            return "up-to-date", local, local, 0
        if local is None:
            if storage.compare_and_swap(None, remote_head, "pull: storing head"):
                return "created", None, remote_head, 0
            if not retry.again():
                break
            continue
        if can_fast_forward(storage, remote_head, local):
            return "ahead", local, local, 0
        if can_fast_forward(storage, local, remote_head):
            if storage.compare_and_swap(local, remote_head, "pull: Fast-forward"):
                _after_pull(store, local, remote_head, changed_paths(storage, local, remote_head))
                return "fast-forward", local, remote_head, 0
            if not retry.again():
                break
            continue
        base = merge_base(storage, local, remote_head)
        if base is None:
            raise Conflict("the local and remote store branches share no history")
        mine = first_parent_chain(storage, base, local)
        try:
            new = rebase_commits(store, mine, base, remote_head, what)
        except MergeConflict as e:
            # Every later push and pull would meet the same conflict: name the way out.
            raise MergeConflict(f"{e}; to drop your unpublished commits (kept under "
                                f"{DISCARDED_REFS.decode()}) and take the remote's: "
                                f"canonry pull {remote or 'REMOTE'} --discard-local") from None
        if storage.compare_and_swap(local, new, "pull: replay local commits on the remote's"):
            _after_pull(store, local, new, changed_paths(storage, local, new))
            return "rebased", local, new, len(mine)
        if not retry.again():
            break
    raise Conflict(f"the local branch kept moving for {INTEGRATE_BUDGET_S:g} s; nothing was changed")


class _Retry:
    """Another try after a lost race, with a short jittered pause, until `budget` seconds have
    passed (and at least three tries): a time budget, so a loaded machine and an idle one
    retry for as long as each other."""

    def __init__(self, budget: float):
        self.deadline = time.monotonic() + budget
        self.attempts = 1

    def again(self) -> bool:
        if time.monotonic() > self.deadline and self.attempts >= 3:
            return False
        time.sleep(random.uniform(0.002, min(0.2, 0.005 * 2 ** min(self.attempts, 6))))
        self.attempts += 1
        return True


def _after_pull(store, old: bytes | None, new: bytes, paths: list[str]) -> None:
    """After a pull moved the branch: refresh the work tree; automations are not fired
    (run `canonry automations run OLD..NEW` where the team delivers them)."""
    from dulwich.file import FileLocked

    store.cache.flush()
    try:
        store.storage.sync_worktree(old, new, paths)
    except (FileLocked, OSError) as e:
        sys.stderr.write(f"canonry: warning: moved the branch, but could not update the work tree: {e}\n")


def pull(store, remote: str = "origin", discard_local: bool = False) -> SyncResult:
    """Fetch `remote`'s store branch and bring the local one onto it, replaying local work.
    `discard_local`: instead drop the local commits the remote does not have (the way out of a
    conflict that would stop every later push and pull), keeping them under DISCARDED_REFS."""
    refs = fetch(store, remote)
    storage = store.storage
    if discard_local:
        return _discard_local(store, remote, refs)
    action, old, new, replayed = _integrate(store, refs.get(storage.ref), "your unpublished commits",
                                            remote)
    _merge_side_refs(store, refs)
    if action == "ahead":
        action = "up-to-date"
    result = SyncResult(action, storage.branch, _hex(old), _hex(new), replayed,
                        safe_url(remote_url(storage.repo, remote)))
    if action == "rebased" and old and refs.get(storage.ref):
        # what came in is the remote's part: from where the two lines met to the remote's head
        result.incoming = f"{merge_base(storage, old, refs[storage.ref]).decode()}..{refs[storage.ref].decode()}"
    elif action in ("fast-forward", "created") and new:
        result.incoming = f"{old.decode()}..{new.decode()}" if old else new.decode()
    return result


@dataclass
class DiscardResult(SyncResult):
    """What `pull --discard-local` did: SyncResult, plus how many commits it dropped and the
    ref that keeps them."""

    discarded: int = 0
    kept_at: str | None = None


def _discard_local(store, remote: str, refs: dict) -> SyncResult:
    storage = store.storage
    repo = storage.repo
    url = safe_url(remote_url(repo, remote))
    remote_head = refs.get(storage.ref)
    if remote_head is None:
        raise InvalidInput(f"{url} has no branch {storage.branch}: nothing to take in place of yours")
    for _ in range(10):
        local = _ref(repo, storage.ref)
        if local is None or local == remote_head or can_fast_forward(storage, local, remote_head):
            return pull(store, remote)  # nothing of ours to drop: an ordinary pull
        base = merge_base(storage, local, remote_head)
        dropped = first_parent_chain(storage, base, local) if base else []
        # Keep them first, so that a crash between the two steps loses nothing.
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        backup = DISCARDED_REFS + f"{stamp}-{local.decode()[:10]}".encode()
        repo.refs[backup] = local
        if storage.compare_and_swap(local, remote_head, "pull --discard-local: reset to the remote's"):
            _after_pull(store, local, remote_head, changed_paths(storage, local, remote_head))
            _merge_side_refs(store, refs)
            return DiscardResult("discarded-local", storage.branch, local.decode(),
                                 remote_head.decode(), 0, url,
                                 f"{base.decode()}..{remote_head.decode()}" if base else remote_head.decode(),
                                 len(dropped), backup.decode())
        repo.refs.remove_if_equals(backup, local)  # the branch moved: look again
    raise Conflict("the local branch kept moving; nothing was changed")


FETCH_BUDGET_S = 10.0  # how long a fetch keeps asking a remote that moves while it sends
INTEGRATE_BUDGET_S = 10.0  # how long a pull keeps redoing itself while local writers move the branch
PUSH_BUDGET_S = 15.0  # how long a push keeps retrying lost races before it reports the remote moving


def push(store, remote: str = "origin", budget: float = PUSH_BUDGET_S) -> SyncResult:
    """Send the store branch (and the run log) to `remote`, replaying onto what others pushed.

    A lost race (the remote moved, or another push holds its ref lock) means fetch, integrate
    and send again, with a short jittered pause, until `budget` seconds have passed: a time
    budget, not an attempt count, so a busy machine and a fast one retry for the same time."""
    storage = store.storage
    repo = storage.repo
    url = remote_url(repo, remote)
    replayed_total = 0
    landed = None  # (remote head before, our head) once the remote's branch holds our commits
    sent = None
    retry = _Retry(budget)
    while True:
        refs = fetch(store, remote)
        remote_head = refs.get(storage.ref)
        if sent and landed is None and remote_head and can_fast_forward(storage, sent[1], remote_head):
            # An attempt we took for lost did land: another push built on it before we looked.
            landed = sent
        _action, _old, local, replayed = _integrate(store, remote_head, "your unpublished commits",
                                                    remote)
        replayed_total += replayed
        _merge_side_refs(store, refs)
        updates = {}
        if local is not None and local != remote_head:
            updates[storage.ref] = (remote_head, local)
        for ref in SIDE_REFS:
            mine = _ref(repo, ref)
            # only what holds the remote's records: a local writer may have raced the merge
            if mine is not None and mine != refs.get(ref) and (
                    refs.get(ref) is None or can_fast_forward(storage, refs[ref], mine)):
                updates[ref] = (refs.get(ref), mine)
        if not updates or _send(repo, url, updates):
            if storage.ref in updates:
                _track(storage, remote, local, "update by push")
                landed = (remote_head, local)
            if landed:
                return SyncResult("pushed", storage.branch, _hex(landed[0]), _hex(landed[1]),
                                  replayed_total, safe_url(url))
            return SyncResult("up-to-date", storage.branch, _hex(remote_head), _hex(remote_head),
                              replayed_total, safe_url(url))
        # The remote moved between our fetch and our push (or so it looks): go round again.
        if storage.ref in updates:
            sent = (remote_head, local)
        if not retry.again():
            raise Conflict(f"the remote {safe_url(url)} kept moving; pushed nothing after {retry.attempts} "
                           f"attempts in {budget:g} s")


class _Moved(Exception):
    pass


def _send(repo, url: str, updates: dict) -> bool:
    """Update remote refs from expected old values; False if one of them moved (nothing sent)."""
    client, path = _client(repo, url, "push")

    def update_refs(refs):
        new_refs = dict(refs)
        for ref, (expected, new) in updates.items():
            if refs.get(ref, ZERO) not in (expected or ZERO, expected):
                raise _Moved(ref)
            new_refs[ref] = new
        return new_refs

    try:
        result = client.send_pack(path, update_refs, generate_pack_data=repo.generate_pack_data)
    except _Moved:
        return False
    except FileLocked:  # a local remote's ref is being updated by another push: try again
        return False
    except Exception as e:
        if ".lock" in str(e):
            return False
        raise RemoteError(f"push to {safe_url(url)} failed: {_why(e)}") from None
    failed = {r: err for r, err in (result.ref_status or {}).items() if err}
    if any(r in updates for r in failed):
        return False  # rejected (the ref moved under us, or a lock): fetch and retry
    # Some servers (dulwich's own) answer `ok` even when their compare-and-swap failed: look.
    try:
        now = client.get_refs(path)
        now = getattr(now, "refs", now)
    except Exception:
        return True
    return all(now.get(ref) == new for ref, (_, new) in updates.items() if ref in now)


# Refs that travel with the store branch, each with how two sides of it are merged (a union:
# never a conflict).
SIDE_REFS = {NOTES_REF: merge_notes, USAGE_REF: merge_usage}


def _merge_side_refs(store, remote_refs: dict) -> None:
    for ref, merge in SIDE_REFS.items():
        _merge_side_ref(store, ref, remote_refs.get(ref), merge)


def _merge_side_ref(store, ref: bytes, remote_head: bytes | None, merge) -> None:
    """Bring local `ref` to hold what `remote_head` holds: fast-forward, or a merge commit;
    redone while local writers (a use being recorded) move the ref meanwhile."""
    if remote_head is None:
        return
    storage = store.storage
    repo = storage.repo
    for _ in range(50):
        local = _ref(repo, ref)
        if local == remote_head or (local and can_fast_forward(storage, remote_head, local)):
            return
        if local is None or can_fast_forward(storage, local, remote_head):
            new = remote_head
        else:
            new = merge(storage, local, remote_head, store.actor)
        try:
            if local is None:
                ok = repo.refs.add_if_new(ref, new)
            else:
                ok = repo.refs.set_if_equals(ref, local, new)
        except FileLocked:
            ok = False
        if ok:
            return
        time.sleep(random.uniform(0.002, 0.02))


def sync(store, remote: str = "origin") -> SyncResult:
    pulled = pull(store, remote)
    pushed = push(store, remote)
    pushed.replayed += pulled.replayed
    return pushed


def clone_repository(url: str, directory: str, branch: str | None = None, bare: bool = False) -> None:
    """Clone the repository of a store with dulwich (the git CLI's `git clone` works as well);
    the caller opens the store in it (canonry.store.clone_store) and then fetches its run log
    (`fetch_run_log`)."""
    from dulwich import porcelain

    if os.path.exists(directory) and os.listdir(directory):
        raise InvalidInput(f"cannot clone into {directory}: it exists and is not empty")
    if "://" not in url and os.path.exists(url):
        url = os.path.abspath(url)  # as git records it: the clone must work from anywhere
    try:
        import io

        from canonry.git.storage import DEFAULT_BRANCH

        try:
            porcelain.clone(url, directory, bare=bare, checkout=not bare, branch=branch or DEFAULT_BRANCH,
                            errstream=io.BytesIO())
        except Exception:
            if branch:
                raise
            # no `main` there: the store lives on the remote's default branch (say, trunk)
            import shutil

            shutil.rmtree(directory, ignore_errors=True)
            porcelain.clone(url, directory, bare=bare, checkout=not bare, errstream=io.BytesIO())
    except Exception as e:
        raise RemoteError(f"clone of {safe_url(url)} failed: {_why(e)}") from None


def fetch_run_log(store, remote: str = "origin") -> None:
    """Fetch the automation run log (the notes ref) and the usage log of `remote` and merge them
    into the local ones; quietly nothing if that fails (the branch is what matters; the logs can
    come later)."""
    try:
        refs = fetch(store, remote)
        _merge_side_refs(store, refs)
    except CanonryError:
        pass


def _ref(repo, ref: bytes) -> bytes | None:
    """The commit a local ref names, None if there is no such ref."""
    return repo.refs[ref] if ref in repo.refs else None  # noqa: SIM401 (dulwich's refs have no .get)


def _hex(sha: bytes | None) -> str | None:
    return sha.decode() if sha else None
