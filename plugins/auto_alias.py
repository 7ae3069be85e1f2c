"""Built-in action `auto-alias`: move an alias to a new version when its metric is better.

    automations:
      - name: keep-best
        on: link.created
        filter: {registry: model, collection: "mnist*"}
        action: auto-alias
        with: {alias: best, metric: accuracy, mode: max}   # mode: max (default) or min

When a version is linked and its metric beats the version holding the alias (or nobody holds
it), the alias moves — as a commit of its own, made by the acting identity.
"""
from canonry import hookimpl

__version__ = "1.0"


def _metric(store, artifact, metric):
    return (store.artifact_version(artifact).metrics or {}).get(metric)


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
    collection = store.collection(event.collection)
    holder = collection.aliases.get(alias)
    if holder:
        current = store.resolve(f"{event.collection}:{holder}")
        old = _metric(store, current.artifact, metric)
        better = old is None or (new > old if mode == "max" else new < old)
        if not better:
            return {"moved": False, "why": f"{metric} {new} does not beat {holder}'s {old}"}
    change = store.set_alias(f"{event.collection}:{event.version}", alias)
    return {"moved": change.changed, "from": change.before or "", "to": change.after}


@hookimpl
def automation_actions():
    return {"auto-alias": run}
