"""YAML in and out: the C loader/dumper when present, no implicit timestamps, stable output."""
from __future__ import annotations

import re

import yaml

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    pass


# Times are kept as ISO strings: a hand-written unquoted timestamp must not turn into a datetime.
# Booleans are YAML 1.2's true/false only: YAML 1.1 would read the key `on:` (automations) as True.
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_Loader.yaml_implicit_resolvers = {}
for _ch, _resolvers in _BaseLoader.yaml_implicit_resolvers.items():
    kept = []
    for _tag, _rx in _resolvers:
        if _tag == "tag:yaml.org,2002:timestamp":
            continue
        kept.append((_tag, _BOOL) if _tag == "tag:yaml.org,2002:bool" else (_tag, _rx))
    _Loader.yaml_implicit_resolvers[_ch] = kept


def _construct_bool(loader, node):
    return loader.construct_scalar(node).lower() == "true"


_Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)


def _construct_mapping_unique(loader, node, deep=False):
    # PyYAML keeps the last of two equal keys silently; in aliases.yaml that would hide an alias
    # held twice, so a repeated key is an error.
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {key_node.start_mark.line + 1})", key_node.start_mark)
        seen.add(key)
    return yaml.constructor.SafeConstructor.construct_mapping(loader, node, deep=deep)


_Loader.construct_mapping = _construct_mapping_unique


class _Dumper(_BaseDumper):  # type: ignore[misc, valid-type]
    pass


def load(data: bytes | str):
    return yaml.load(data, Loader=_Loader)


def dump(obj) -> bytes:
    return yaml.dump(
        obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100
    ).encode("utf-8")
