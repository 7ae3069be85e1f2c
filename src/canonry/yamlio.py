"""YAML in and out: the C loader/dumper when present, no implicit timestamps, stable output."""
from __future__ import annotations

import re

import yaml

__all__ = ["dump", "load"]

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
    fast = _dump_simple(obj)
    if fast is not None:
        return fast
    return yaml.dump(
        obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100
    ).encode("utf-8")


# ---- a fast path for the records a promotion writes --------------------------------------------
# PyYAML's representer is Python, slow for the three small records a promotion writes. Records
# made only of plain words, integers and flat lists/maps of them are written here instead, byte
# for byte as PyYAML writes them (a hypothesis test holds the two to that); anything else (floats,
# quoting, long text, nesting) goes to PyYAML.
_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@/+-]*(?::[A-Za-z0-9_.@/+-]+)*")
_MAX_PLAIN = 120  # PyYAML folds lines only at spaces (words have none); keys stay below its 128
_str_tag = "tag:yaml.org,2002:str"


def _word(value, key: bool = False) -> str | None:
    """`value` as PyYAML writes it, or None if we are not sure how it would."""
    if type(value) is not str or len(value) > _MAX_PLAIN or not _WORD.fullmatch(value):
        return None
    # A word that reads as another type (true, null, 12, 1e3, 2026-01-01T10:00:00Z, 1:20, ...)
    # is single-quoted; as a key we leave that to PyYAML.
    if _Dumper.resolve(_Dumper, yaml.ScalarNode, value, (True, False)) != _str_tag:
        return None if key else f"'{value}'"
    return value


def _scalar(value) -> str | None:
    if value is None:
        return "null"
    if type(value) is int:
        return str(value)
    if value == "":
        return "''"
    return _word(value)


def _dump_simple(obj) -> bytes | None:
    if type(obj) is not dict:
        return None
    lines = []
    for key, value in obj.items():
        k = _word(key, key=True)
        if k is None:
            return None
        if type(value) is list:
            if not value:
                lines.append(f"{k}: []")
                continue
            items = [_scalar(v) for v in value]
            if None in items:
                return None
            lines.append(f"{k}:")
            lines += [f"- {item}" for item in items]
        elif type(value) is dict:
            if not value:
                lines.append(f"{k}: {{}}")
                continue
            lines.append(f"{k}:")
            for sub_key, sub_value in value.items():
                sk, sv = _word(sub_key, key=True), _scalar(sub_value)
                if sk is None or sv is None:
                    return None
                lines.append(f"  {sk}: {sv}")
        else:
            v = _scalar(value)
            if v is None:
                return None
            lines.append(f"{k}: {v}")
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else None
