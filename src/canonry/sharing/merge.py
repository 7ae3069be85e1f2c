"""Bringing two lines of store history together without losing a promotion.

- `merge_branch`: `canonry merge BRANCH` — fast-forward when the store branch has not moved
  since the branch was made; else the branch's operations are replayed on the store branch and
  recorded as one merge commit (parents: store head, branch head) whose trailers hold the
  replayed records, with links renumbered where the store branch linked meanwhile.
- `rebase_commits`: re-create a chain of commits on top of another head, one commit each,
  authors kept (used when a push lost a race and when a pull meets local work).

A true conflict (both sides moved `production`; an alias aimed at a link unlinked meanwhile)
stops with MergeConflict; nothing is written.

The gate: before the store branch moves, what the merge brings in (the commits of
MERGE-BASE..BRANCH) must pass the checks `canonry validate` runs (roles, policies, schemas,
invariants). The Store passes them in as `gate` (this layer does not import the facade), and a
finding refuses the merge: nothing moves, no automation fires. A fast-forward is no shortcut:
a commit made by hand on the branch is judged as CI would judge it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from canonry import journal
from canonry.errors import Conflict, InvalidInput, MergeConflict
from canonry.git import graph
from canonry.git.graph import can_fast_forward, first_parent_chain
from canonry.sharing.replay import Replayer, author_identity
from canonry.view import View

__all__ = ["MergeResult", "changed_paths", "merge_branch", "rebase_commits"]


@dataclass
class MergeResult:
    branch: str
    kind: str  # "fast-forward", "merge", "up-to-date"
    old: str | None
    new: str | None
    records: list[dict]

    def to_dict(self) -> dict:
        return {"branch": self.branch, "kind": self.kind, "old": self.old, "new": self.new,
                "operations": [r.get("summary", r.get("op")) for r in self.records]}


def _records_or_refuse(storage, commit_id: bytes, what: str) -> list[dict]:
    records = journal.records(storage.commit(commit_id).message)
    if not records:
        subject = storage.commit(commit_id).message.decode("utf-8", "replace").splitlines()[:1]
        raise MergeConflict(
            f"commit {commit_id.decode()[:10]} of {what} ({subject[0] if subject else ''!s}) was not made "
            "by canonry, so it cannot be replayed: merge it with git and check with `canonry validate`")
    return records


def merge_branch(store, branch: str, message: str | None = None, fast_forward: bool = True,
                 attempts: int = 10, *, check: Callable[[View, bytes], None],
                 landed: Callable[[bytes | None, bytes, list[str]], None],
                 gate: Callable[[bytes, bytes], None]) -> MergeResult:
    """Merge `branch` into the store branch of `store` (see the module's docstring).

    Args:
      store: the Store merged into (its storage, record cache and actor are used).
      branch: the proposal branch to merge.
      message: the merge commit's subject (default: "merge BRANCH into STORE-BRANCH").
      fast_forward: move the branch when it has not diverged, instead of a merge commit.
      attempts: how many times to redo the merge when the store branch moved meanwhile.
      check: `check(view, new)` before the branch moves to a merge commit: raises to refuse it
        (the Store's policy plugins).
      landed: `landed(old, new, paths)` once the branch moved (the Store's housekeeping: work
        tree, packs, automations).
      gate: `gate(base, head)` before anything moves, with the merge base and the branch head:
        raises to refuse what BASE..HEAD brings in (the Store runs `canonry validate` on it).
    """
    storage = store.storage
    repo = storage.repo
    source_ref = b"refs/heads/" + branch.encode()
    if source_ref not in repo.refs:
        raise InvalidInput(f"no branch {branch!r} to merge")
    if branch == storage.branch:
        raise InvalidInput(f"cannot merge {branch} into itself")
    gated = None  # the branch head that passed the gate: the store branch only moves forward,
    # so a later merge base brings in a part of what was checked; a moved branch is checked again
    for _ in range(attempts):
        head = storage.head()
        theirs = repo.refs[source_ref]
        if head == theirs or can_fast_forward(storage, theirs, head):
            return MergeResult(branch, "up-to-date", head.decode(), head.decode(), [])
        if fast_forward and can_fast_forward(storage, head, theirs):
            if gated != theirs:
                gate(head, theirs)
                gated = theirs
            if storage.compare_and_swap(head, theirs, f"merge {branch}: Fast-forward"):
                paths = changed_paths(storage, head, theirs)
                landed(head, theirs, paths)
                return MergeResult(branch, "fast-forward", head.decode(), theirs.decode(),
                                   [r for c in first_parent_chain(storage, head, theirs)
                                    for r in journal.records(storage.commit(c).message)])
            continue
        base = graph.merge_base(storage, head, theirs)
        if base is None:
            raise MergeConflict(f"{branch} and {storage.branch} share no history")
        target = View(storage, head, store.cache)
        replayer = Replayer(target, View(storage, base, store.cache), f"branch {branch}")
        records: list[dict] = []
        for commit_id in first_parent_chain(storage, base, theirs):
            records += replayer.replay(storage, commit_id, _records_or_refuse(storage, commit_id, branch))
        if gated != theirs:  # after the replay: a commit it cannot replay is named as such first
            gate(base, theirs)
            gated = theirs
        subject = message or f"merge {branch} into {storage.branch}"
        if not target.pending:
            records = [{"op": "merge", "branch": branch, "summary": subject}]
        msg = journal.message(records or [{"op": "merge", "branch": branch, "summary": subject}],
                              subject=subject)
        new = storage.write_commit(head, target.pending, msg, store.actor, extra_parents=[theirs])
        check(target, new)
        if storage.compare_and_swap(head, new, f"commit (merge): {subject}"):
            landed(head, new, list(target.pending))
            return MergeResult(branch, "merge", head.decode(), new.decode(), records)
    raise Conflict(f"branch {storage.branch} kept moving while merging {branch}; nothing was written")


def rebase_commits(store, commits: list[bytes], base: bytes | None, onto: bytes, what: str) -> bytes:
    """Re-create `commits` (oldest first, all after `base`) on top of `onto`; return the new head.
    Writes objects only; the caller moves refs."""
    storage = store.storage
    replayer = Replayer(View(storage, onto, store.cache), View(storage, base, store.cache), what)
    head = onto
    replayed: dict[bytes, bytes] = {}
    for commit_id in commits:
        records = _records_or_refuse(storage, commit_id, what)
        view = View(storage, head, store.cache)
        replayer.target = view
        new_records = replayer.replay(storage, commit_id, records)
        if not view.pending:
            continue  # the same change is already there
        original = storage.commit(commit_id)
        subject = None
        if len(original.parents) > 1:  # a merge keeps its sentence ("merge promote/x into main")
            subject = original.message.decode("utf-8", "replace").splitlines()[0]
        msg = journal.message(new_records, subject=subject)
        # A replayed merge stays a merge: its branch remains merged.
        head = storage.write_commit(head, view.pending, msg, author_identity(original),
                                    when=original.author_time, committer=store.actor,
                                    extra_parents=original.parents[1:])
        replayed[commit_id] = head
    _carry_over_runs(store, replayed)
    return head


def _carry_over_runs(store, replayed: dict) -> None:
    """Automations that already ran for a commit count as run for its replay: the events of the
    two are paired by position and kind, and the successful runs copied to the new event ids."""
    from canonry.automation.runlog import RunLog

    log = RunLog(store.storage)
    for old, new in replayed.items():
        runs = [r for r in log.read(old.decode()) if r.get("status") == "ok"]
        if not runs:
            continue
        # Pair events by what they are about (numbers may differ after renumbering).
        pool = list(store.events(new.decode()))
        ids = {}
        for a in store.events(old.decode()):
            for b in pool:
                if (a.kind, a.collection, a.alias, a.registry) == (b.kind, b.collection, b.alias, b.registry):
                    ids[a.id] = b.id
                    pool.remove(b)
                    break
        carried = [dict(r, event=ids[r["event"]], replayed_from=r["event"])
                   for r in runs if r.get("event") in ids]
        log.append(new.decode(), carried, store.actor)


def changed_paths(storage, old: bytes, new: bytes) -> list[str]:
    """Store paths whose entry differs between commits `old` and `new` (a tree diff)."""
    from dulwich.diff_tree import tree_changes

    out = []
    for ch in tree_changes(storage.repo.object_store, storage.root_tree(old), storage.root_tree(new)):
        path = (ch.new.path if ch.new is not None and ch.new.path else ch.old.path).decode()
        out.append(path)
    return out
