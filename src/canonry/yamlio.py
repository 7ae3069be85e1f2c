"""YAML in and out: the C loader/dumper when present, no implicit timestamps, stable output."""
from __future__ import annotations

import yaml

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    pass


# Times are kept as ISO strings; a hand-written unquoted timestamp must not turn into a datetime.
_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in _BaseLoader.yaml_implicit_resolvers.copy().items()
}


class _Dumper(_BaseDumper):  # type: ignore[misc, valid-type]
    pass


def load(data: bytes | str):
    return yaml.load(data, Loader=_Loader)


def dump(obj) -> bytes:
    return yaml.dump(
        obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100
    ).encode("utf-8")
