"""Built-in action `auto-alias`: move an alias to a new version when its metric is better.

    automations:
      - name: keep-best
        on: link.created
        filter: {registry: model, collection: "mnist*"}
        action: auto-alias
        with: {alias: best, metric: accuracy, mode: max}   # mode: max (default) or min

When a version is linked and its metric beats every other linked version of the collection
(the best of them: the highest, or lowest with `mode: min`, ties to the newest), the alias
moves to it — as a commit of its own, made by the acting identity. Versions without the
metric do not compete.
"""
from canonry import hookimpl

__version__ = "1.0"


def _metric(store, artifact, metric):
    return (store.artifact_version(artifact).metrics or {}).get(metric)


def _best_other(store, collection, version, metric, mode):
    """(version, value) of the best other linked version that has the metric (ties to the
    newest), or None."""
    best = None
    for linked in store.versions(collection):
        if linked.version == version:
            continue
        value = _metric(store, linked.artifact, metric)
        if value is None:
            continue
        number = int(linked.version[1:])
        key = (value if mode == "max" else -value, number)
        if best is None or key > best[0]:
            best = (key, linked.version, value)
    return None if best is None else best[1:]


def run(event, params, store):
    alias, metric = params.get("alias"), params.get("metric")
    if not alias or not metric:
        raise ValueError("auto-alias: `alias` and `metric` are required")
    if not event.collection or not event.version or not event.artifact:
        return {"moved": False, "why": "not a link event"}
    mode = params.get("mode", "max")
    new = _metric(store, event.artifact, metric)
    if new is None:
        return {"moved": False, "why": f"{event.artifact} has no metric {metric}"}
    best = _best_other(store, event.collection, event.version, metric, mode)
    if best is not None:
        holder, old = best
        if not (new > old if mode == "max" else new < old):
            return {"moved": False, "why": f"{metric} {new} does not beat {holder}'s {old}"}
    change = store.set_alias(f"{event.collection}:{event.version}", alias)
    return {"moved": change.changed, "from": change.before or "", "to": change.after}


@hookimpl
def automation_actions():
    return {"auto-alias": run}
