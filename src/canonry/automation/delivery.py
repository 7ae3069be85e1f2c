"""Delivering events to plugins and to the declarative automations configured in the store.

Each receiver (a plugin's hook implementation, or one configured automation) runs isolated:
in its own thread, with a timeout, its exceptions caught. Every outcome is recorded in the
run log (git notes), and an event already delivered to a receiver is never delivered to it
again, so `canonry automations run A..B` is safe to repeat (in CI after every merge, say).

Which automations run, and with what parameters (a webhook's URL), is read from `config`, the
store branch head (the trusted side), never from the commit whose events are delivered: a
commit's own canonry.yaml decides nothing about its own events. The commit's state is still
what filters look at (a collection's tags when it changed). The Store delivers only events of
commits on the store branch (store.py).
"""
from __future__ import annotations

import fnmatch
import functools
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from canonry import model as m
from canonry.automation.events import Event
from canonry.automation.hookspecs import EVENT_HOOKS
from canonry.automation.plugins import first_result
from canonry.automation.runlog import RunLog

__all__ = [
    "DEFAULT_TIMEOUT", "configured", "deliver", "matches", "receivers", "run_isolated", "settings_key",
    "summary", "tags_of",
]

DEFAULT_TIMEOUT = 30.0
_depth = threading.local()


def configured(view, registry: str | None) -> list[dict]:
    """Automations in force at a view: store-wide ones, then the registry's own."""
    autos = list(view.store_config().get("automations", []))
    if registry and view.exists(m.registry_file(registry)):
        for a in view.registry(registry).get("automations", []):
            a = dict(a)
            a.setdefault("filter", {}).setdefault("registry", registry)
            autos.append(a)
    return [a for a in autos if a.get("enabled", True)]


def settings_key(view) -> tuple:
    """Blob ids of the store's settings files (canonry.yaml, every registry.yaml): equal keys,
    equal settings, so anything derived from the settings can be remembered by this key.
    Remembered per root tree (a commit asks twice: its policies, then its automations)."""
    key = _KEYS.get(view.root)
    if key is None:
        registries = sorted(view.storage.names(view.root, m.REGISTRIES))
        files = [m.STORE_FILE] + [m.registry_file(r) for r in registries]
        if len(_KEYS) > 256:
            _KEYS.clear()
        key = _KEYS[view.root] = tuple(view.storage.lookup(view.root, f) for f in files)
    return key


_KEYS: dict[bytes | None, tuple] = {}


_SUMMARY: dict[tuple, dict] = {}


def summary(view) -> dict:
    """What the settings configure, remembered per settings key (checked on every commit):
    `any` — some automation is configured (store-wide enabled ones, or any in a registry);
    `actions` — the actions of the enabled ones, store-wide and in every registry."""
    key = settings_key(view)
    found = _SUMMARY.get(key)
    if found is None:
        registries = view.registry_names()
        store_wide = configured(view, None)
        actions = {a.get("action") for a in store_wide}
        for r in registries:
            actions |= {a.get("action") for a in configured(view, r)}
        found = {"any": bool(store_wide) or any(view.registry(r).get("automations") for r in registries),
                 "actions": frozenset(actions)}
        if len(_SUMMARY) > 256:
            _SUMMARY.clear()
        _SUMMARY[key] = found
    return found


def matches(auto: dict, event: Event, view) -> bool:
    on = auto.get("on", [])
    on = [on] if isinstance(on, str) else on
    if on and event.kind not in on:
        return False
    f = auto.get("filter", {}) or {}
    if "registry" in f and not (event.registry and fnmatch.fnmatchcase(event.registry, f["registry"])):
        return False
    if "collection" in f:
        if not event.collection:
            return False
        pattern = f["collection"]
        subject = event.collection if "/" in pattern else event.collection.split("/", 1)[1]
        if not fnmatch.fnmatchcase(subject, pattern):
            return False
    if "alias" in f and not (event.alias and re.search(f["alias"], event.alias)):
        return False
    return not ("tag" in f and f["tag"] not in tags_of(event, view))


def tags_of(event: Event, view) -> set[str]:
    tags = set(event.tags)
    if event.collection:
        reg, coll = event.collection.split("/", 1)
        rec = view.read(m.collection_file(reg, coll), copy_=False)
        tags |= set(rec.get("tags", [])) if rec else set()
        if event.version:
            link = view.read(m.link_file(reg, coll, event.version), copy_=False)
            tags |= set(link.get("tags", [])) if link else set()
    return tags


def _no_action(action: str) -> None:
    raise LookupError(f"no plugin provides the action {action!r}")


def _call_one(caller, event: Event, store) -> Any:
    return first_result(caller(event=event, store=store))


def receivers(store, event: Event, view, config=None) -> list[tuple[str, Callable[[], Any]]]:
    """(name, zero-argument callable) for everything that should receive `event`: the plugins'
    hooks, and the automations defined at `config` (default: `view`, the event's commit)."""
    out: list[tuple[str, Callable[[], Any]]] = []
    for plugin_name, caller in store.plugins.callers(EVENT_HOOKS[event.kind]):  # pluggy's order
        out.append((f"plugin:{plugin_name}", functools.partial(_call_one, caller, event, store)))
    actions = None
    for auto in configured(view if config is None else config, event.registry):
        if auto.get("action") == "policy" or not matches(auto, event, view):
            continue  # policies act before the commit (check_change), not after
        if actions is None:
            actions = store.plugins.actions()
        action = actions.get(auto.get("action"))
        name = f"automation:{auto.get('name', auto.get('action'))}"
        if action is None:
            out.append((name, functools.partial(_no_action, auto.get("action"))))
        else:
            params = dict(auto.get("with", {}) or {})
            out.append((name, functools.partial(action, event, params, store)))
    return out


def run_isolated(fn, timeout: float) -> dict:
    box: dict = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as e:  # a plugin's failure must never reach the caller
            box["error"] = f"{type(e).__name__}: {' '.join(str(e).split())}"[:500]

    start = time.perf_counter()
    thread = threading.Thread(target=target, daemon=True, name="canonry-automation")
    thread.start()
    thread.join(timeout)
    duration = round((time.perf_counter() - start) * 1000, 1)
    if thread.is_alive():
        return {"status": "timeout", "duration_ms": duration, "error": f"no answer within {timeout:g} s"}
    if "error" in box:
        return {"status": "error", "duration_ms": duration, "error": box["error"]}
    out = {"status": "ok", "duration_ms": duration}
    result = box.get("result")
    if isinstance(result, dict) and result:
        out["result"] = {k: v for k, v in result.items() if isinstance(v, (str, int, float, bool))}
    return out


def _now_ms() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def deliver(store, events: list[Event], view_at, config=None) -> list[dict]:
    """Deliver events not yet delivered; record and return the outcomes of this run.
    `view_at(commit_hex)` is the store at an event's commit; `config`, the view whose
    automations are in force (default: that commit's)."""
    depth = getattr(_depth, "value", 0)
    if depth >= 3:
        return []  # automations triggering automations: stop here; `automations run` can resume
    _depth.value = depth + 1
    try:
        timeout = float(os.environ.get("CANONRY_HOOK_TIMEOUT", DEFAULT_TIMEOUT))
        log = RunLog(store.storage)
        outcomes: list[dict] = []
        by_commit: dict[str, list[Event]] = {}
        for e in events:
            by_commit.setdefault(e.commit, []).append(e)
        for commit_hex, commit_events in by_commit.items():
            view = view_at(commit_hex)
            done = {(r.get("receiver"), r.get("event")) for r in log.read(commit_hex)
                    if r.get("status") == "ok"}
            records = []
            for event in commit_events:
                for name, fn in receivers(store, event, view, config):
                    if (name, event.id) in done:
                        continue
                    outcome = run_isolated(fn, timeout)
                    records.append({"receiver": name, "event": event.id, "kind": event.kind,
                                    "target": event.target, "at": _now_ms(), **outcome})
            log.append(commit_hex, records, store.actor)
            outcomes += records
        return outcomes
    finally:
        _depth.value = depth
