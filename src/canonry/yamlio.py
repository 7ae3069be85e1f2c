"""YAML in and out: the C loader/dumper when present, no implicit timestamps, stable output.

Every YAML canonry reads — store files anyone with push access can write by hand, and a user's
automations file — is checked before it is built into objects (`check_shape`): at most
MAX_BYTES bytes, no anchor or alias (canonry never writes one; a few lines of nested aliases
expand to gigabytes), at most MAX_DEPTH levels of nesting (the C composer recurses and would
crash the process) and at most MAX_NODES nodes. Each refusal is a ValueError with one line.
"""
from __future__ import annotations

import re

import yaml

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "check_shape", "dump", "load"]

# The largest record canonry writes is a version record, ~125 bytes and 7 values per file of its
# manifest: these bounds hold a folder of ~140,000 files (a 17 MB record that takes seconds to
# read; a bigger folder is better logged as several artifacts or an archive). The values bound
# is what bounds memory (~600 bytes a value while composing: ~600 MB at most, which a laptop
# survives); the bytes bound keeps long scalars from doing what many values cannot.
MAX_BYTES = 32 * 1024 * 1024
MAX_NODES = 1_000_000
MAX_DEPTH = 64  # canonry's records nest 3 levels; metadata a user nests stays far below this

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


def check_shape(data: bytes | str) -> None:
    """Raise ValueError (one line) if `data` is too large, holds an anchor or alias, nests too
    deeply or has too many nodes; the parse errors of malformed YAML are left to `load`."""
    size = len(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    if size > MAX_BYTES:
        raise ValueError(f"{size} bytes, more than the {MAX_BYTES} canonry reads")
    # The events come from the C parser, which keeps its own stacks: nothing here recurses.
    loader = _Loader(data)
    depth = nodes = 0
    try:
        while True:
            event = loader.get_event()
            if event is None:
                return
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                line = event.start_mark.line + 1 if event.start_mark else 0
                raise ValueError(f"an anchor or alias (line {line}): canonry refuses them")
            if isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
                nodes += 1
                if nodes > MAX_NODES:
                    raise ValueError(f"more than {MAX_NODES} values")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as e:
        # PyYAML >= 6.0.4 stops deep nesting in its own scanner: the same refusal, worded as ours
        if "nesting depth" in str(e):
            raise ValueError(f"nested more than {MAX_DEPTH} levels deep") from None
        return  # malformed YAML: `load` reports the parse error where it is
    finally:
        loader.dispose()


def load(data: bytes | str):
    """The one document in `data`, after `check_shape`."""
    check_shape(data)
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
