"""Built-in policies: refuse a change before it is committed.

    automations:
      - name: production-needs-accuracy
        action: policy
        with: {alias: production, metric: accuracy, min: 0.9}
      - name: production-only-approved
        action: policy
        filter: {registry: model}
        with: {alias: production, tag: approved}

A policy applies to alias.added and alias.moved events (unless `on` says otherwise) whose
alias is `with.alias` (or matches `filter.alias`, a regex). `metric` + `min`/`max` require
the linked artifact version's metric to be present and within bounds; `tag` requires the
linked version to carry that tag.
"""
from canonry import hookimpl

__version__ = "1.0"


def _policies(view, registry):
    from canonry.automation.delivery import configured

    return [a for a in configured(view, registry) if a.get("action") == "policy"]


def _violation(policy, event, view):
    from canonry import model as m

    params = policy.get("with", {}) or {}
    reg, coll = event.collection.split("/", 1)
    link = view.read(m.link_file(reg, coll, event.version), copy_=False)
    if link is None:
        return None
    where = f"{event.collection}:{event.version} ({link['artifact']})"
    if "tag" in params and params["tag"] not in link.get("tags", []):
        return f"alias {event.alias} only on versions tagged {params['tag']!r}; {where} is not"
    metric = params.get("metric")
    if metric:
        name, version = link["artifact"].split(":")
        av = view.read(m.artifact_version_file(name, version), copy_=False) or {}
        value = (av.get("metrics") or {}).get(metric)
        if value is None:
            return f"alias {event.alias} requires metric {metric}; {where} has none"
        if "min" in params and value < params["min"]:
            return f"alias {event.alias} requires {metric} ≥ {params['min']}; {where} has {value}"
        if "max" in params and value > params["max"]:
            return f"alias {event.alias} requires {metric} ≤ {params['max']}; {where} has {value}"
    return None


@hookimpl
def check_change(events, view):
    from canonry.automation.delivery import matches, summary

    if "policy" not in summary(view)["actions"]:
        return None  # nothing to enforce: never look at the events (computing them costs)
    for event in events:
        if not event.alias or not event.collection or event.kind == "alias.removed":
            continue
        for policy in _policies(view, event.registry):
            params = policy.get("with", {}) or {}
            if "alias" in params and params["alias"] != event.alias:
                continue
            rule = dict(policy)
            rule.setdefault("on", ["alias.added", "alias.moved"])
            if not matches(rule, event, view):
                continue
            reason = _violation(policy, event, view)
            if reason:
                return f"{policy['name']}: {reason}"
    return None
