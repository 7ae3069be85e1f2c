"""Search: the MongoDB-style filters of W&B Registry, over registries, collections and versions.

    store.versions(filter={"$and": [{"tag": "vision"}, {"metrics.accuracy": {"$gt": 0.9}}]})
    store.collections(filter={"name": {"$regex": "yolo"}})
    store.registries(filter={"description": {"$contains": "vision"}})

A filter is a JSON object. Each key is a field (with a value, or an object of operators that
must all hold) or one of `$and`, `$or` (a non-empty list of filters) and `$not` (a filter).
A plain value means `$eq`; several keys mean all of them. Operators:

    $eq $ne $gt $gte $lt $lte   compare with a string, number, boolean (or null, for $eq/$ne)
    $in $nin                    equal (not equal) to one of a list of those
    $regex [$options]           a Python regular expression, searched (not anchored); options imsx
    $contains                   a string that occurs in the value
    $exists                     true: the field is present; false: it is not
    $not                        negates the operators under it: {"name": {"$not": {"$regex": "^tmp"}}}

Fields (a name in parentheses is accepted too):

    registries   name, description, visibility, type (types: the accepted types, ["all"] for all),
                 created_at (created), updated_at (updated), created_by
    collections  name, registry, collection (REGISTRY/COLLECTION), type, description,
                 tags (tag), aliases (alias: names, `latest` included), created_at, updated_at, created_by
    versions     (linked versions) name (the collection's name, as W&B names a linked version
                 COLLECTION:vN), registry, collection (REGISTRY/COLLECTION), version (vN), artifact
                 (ARTIFACT:vK), type, description (the artifact version's), note (the link's),
                 digest, tags (tag: the link's), aliases (alias: `latest` included), inputs (input:
                 ARTIFACT:vK it was made from), metadata.PATH, metrics.PATH, created_at (logged),
                 linked_at, updated_at, created_by, linked_by

Semantics (the same in the SQL made here and in the pure-Python reference evaluator the tests
check it against, `matches` in tests/_query_helpers.py):
- A list field (tags, aliases, inputs, type of a registry; a list in metadata) matches when one
  of its elements does; `$ne`/`$nin` when none does. `$exists` is true for list fields.
- Values compare within their kind only: numbers with numbers (as IEEE doubles), strings with
  strings (by code point), booleans with booleans; a string never equals a number.
- `{"field": null}` matches a missing field (or a null in metadata); `$exists` tells a present
  field from a missing one; metadata paths walk mappings (a key holding '.' is not addressable).
- Times (created_at, updated_at, linked_at) are ISO 8601 UTC strings; a date in the filter
  (`2026-11-01`, `2026-11-01T12:00`, with an offset or Z) is turned into that form, so
  `{"created_at": {"$gte": "2026-11-01"}}` does what it says.
- `updated_at` is the time of the newest commit that touched the item (what `canonry history`
  shows for it), or its creation (link) time when there is none.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from canonry.errors import InvalidInput
from canonry.query.index import for_store
from canonry.query.values import regex_search, to_number

__all__ = [
    "COMPARISONS",
    "FIELDS",
    "KINDS",
    "MAX_DEPTH",
    "MAX_LIMIT",
    "MAX_TERMS",
    "OPERATORS",
    "SYNONYMS",
    "TRUE",
    "Field",
    "FilterError",
    "check_size",
    "combine",
    "explain",
    "parse",
    "query",
    "search",
    "search_collections",
    "search_registries",
    "search_versions",
    "to_sql",
]

KINDS = ("registries", "collections", "versions")
COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
OPERATORS = (*COMPARISONS, "$in", "$nin", "$and", "$or", "$not", "$regex", "$exists", "$contains")


class FilterError(InvalidInput):
    """A malformed filter: names the operator or field at fault."""


@dataclass(frozen=True)
class Field:
    name: str
    shape: str  # scalar | list | path
    sql: str  # column expression; vals field for lists; kv key prefix for paths
    item: str = ""  # for list/path fields: the row id the side table refers to
    time: bool = False
    nullable_item: bool = False


def _f(name, shape, sql, item="", time=False, nullable_item=False):
    return name, Field(name, shape, sql, item, time, nullable_item)


FIELDS: dict[str, dict[str, Field]] = {
    "registries": dict([
        _f("name", "scalar", "r.name"),
        _f("description", "scalar", "r.description"),
        _f("visibility", "scalar", "r.visibility"),
        _f("type", "list", "r.types", "r.id"),
        _f("created_at", "scalar", "r.created_at", time=True),
        _f("updated_at", "scalar", "r.updated_at", time=True),
        _f("created_by", "scalar", "r.created_by"),
    ]),
    "collections": dict([
        _f("name", "scalar", "c.name"),
        _f("registry", "scalar", "c.registry"),
        _f("collection", "scalar", "(c.registry || '/' || c.name)"),
        _f("type", "scalar", "c.type"),
        _f("description", "scalar", "c.description"),
        _f("tags", "list", "c.tags", "c.id"),
        _f("aliases", "list", "c.aliases", "c.id"),
        _f("created_at", "scalar", "c.created_at", time=True),
        _f("updated_at", "scalar", "c.updated_at", time=True),
        _f("created_by", "scalar", "c.created_by"),
    ]),
    "versions": dict([
        _f("name", "scalar", "l.collection"),
        _f("registry", "scalar", "l.registry"),
        _f("collection", "scalar", "(l.registry || '/' || l.collection)"),
        _f("version", "scalar", "l.version"),
        _f("artifact", "scalar", "l.artifact"),
        _f("type", "scalar", "a.type"),
        _f("description", "scalar", "a.description"),
        _f("note", "scalar", "l.note"),
        _f("digest", "scalar", "l.digest"),
        _f("tags", "list", "l.tags", "l.id"),
        _f("aliases", "list", "l.aliases", "l.id"),
        _f("inputs", "list", "a.inputs", "l.av", nullable_item=True),
        _f("metadata", "path", "metadata", "l.av", nullable_item=True),
        _f("metrics", "path", "metrics", "l.av", nullable_item=True),
        _f("created_at", "scalar", "a.created_at", time=True),
        _f("linked_at", "scalar", "l.linked_at", time=True),
        _f("updated_at", "scalar", "l.updated_at", time=True),
        _f("created_by", "scalar", "a.created_by"),
        _f("linked_by", "scalar", "l.linked_by"),
    ]),
}
SYNONYMS = {"tag": "tags", "alias": "aliases", "input": "inputs", "types": "type",
            "created": "created_at", "updated": "updated_at", "linked": "linked_at"}
TRUE = ("true",)


# ---- parsing (shared by SQL and the reference evaluator of the tests) ---------------------------------
MAX_DEPTH = 32  # objects and lists nested in a filter; a real one nests three or four
# Keys and list items in a whole filter. Each becomes a term of an AND/OR chain in SQL, and
# sqlite refuses expressions nested deeper than 1000: 500 stays below that with room for nesting.
MAX_TERMS = 500
MAX_LIMIT = 2**63 - 1  # sqlite's largest integer


def check_size(filter) -> None:
    """Raise FilterError if `filter` nests deeper than MAX_DEPTH or holds more than MAX_TERMS
    keys and list items: walked without recursion, before anything recurses on it."""
    terms = 0
    stack = [(filter, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                raise FilterError(f"the filter nests more than {MAX_DEPTH} levels deep")
            terms += len(value)
            if terms > MAX_TERMS:
                raise FilterError(f"the filter has more than {MAX_TERMS} fields, operators and "
                                  f"list values")
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))


def parse(filter, kind: str | None = None):
    """The filter as a tree of ("and"|"or", [nodes]), ("not", node), ("true",) and
    ("cmp", field, path, op, value). `kind` (registries, collections, versions) checks field names
    and normalizes times; None accepts any field (for the tests' reference evaluator, on arbitrary documents)."""
    if kind is not None and kind not in KINDS:
        raise FilterError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    if filter is None:
        return TRUE
    if not isinstance(filter, dict):
        raise FilterError(f"a filter is a JSON object like {{\"tag\": \"vision\"}}, not {_show(filter)}")
    nodes = []
    for key, value in filter.items():
        if not isinstance(key, str):
            raise FilterError(f"filter keys are field names or operators, not {_show(key)}")
        if key.startswith("$"):
            nodes.append(_logical(key, value, kind))
        else:
            field, path = _field(key, kind)
            nodes.append(_field_expr(field, path, key, value))
    return _and(nodes)


def _and(nodes):
    nodes = [n for n in nodes if n != TRUE]
    if not nodes:
        return TRUE
    return nodes[0] if len(nodes) == 1 else ("and", nodes)


def _logical(op: str, value, kind):
    if op in ("$and", "$or"):
        if not isinstance(value, list) or not value:
            raise FilterError(f"operator {op} takes a non-empty list of filters, got {_show(value)}")
        return ("and" if op == "$and" else "or", [parse(v, kind) if isinstance(v, dict) else _bad_item(op, v)
                                                  for v in value])
    if op == "$not":
        if not isinstance(value, dict):
            raise FilterError(f"operator $not takes a filter object, got {_show(value)}")
        return ("not", parse(value, kind))
    if op in OPERATORS or op == "$options":
        raise FilterError(f"operator {op} applies to a field, not to the whole filter: "
                          f"write {{\"FIELD\": {{\"{op}\": …}}}}")
    raise FilterError(f"unknown operator {op!r}; operators: {' '.join(OPERATORS)}")


def _bad_item(op, v):
    raise FilterError(f"operator {op} takes a list of filter objects; {_show(v)} is not one")


def _field(key: str, kind: str | None) -> tuple[Field, str]:
    if kind is None:
        return Field(key, "any", key), key
    fields = FIELDS[kind]
    head, dot, rest = key.partition(".")
    name = SYNONYMS.get(head, head)
    if kind == "registries" and name == "types":
        name = "type"
    field = fields.get(name)
    if field is None:
        raise FilterError(f"unknown field {key!r} for {kind}; fields: {', '.join(_field_names(kind))}")
    if field.shape == "path":
        if not dot or not rest or any(not p for p in rest.split(".")):
            raise FilterError(f"field {key!r}: name a key, like {name}.accuracy")
        return field, f"{name}.{rest}"
    if dot:
        raise FilterError(f"unknown field {key!r} for {kind}: {name} has no sub-fields")
    return field, name


def _field_names(kind: str) -> list[str]:
    return [n + (".KEY" if f.shape == "path" else "") for n, f in FIELDS[kind].items()]


def _field_expr(field: Field, path: str, key: str, value):
    if isinstance(value, dict):
        ops = [k for k in value if isinstance(k, str) and k.startswith("$")]
        if not ops:
            raise FilterError(f"field {key!r}: a value is a string, number, boolean or null, or an object of "
                              f"operators like {{\"$gt\": 0.9}}; got {_show(value)}")
        if len(ops) != len(value):
            raise FilterError(f"field {key!r}: do not mix operators and plain keys in {_show(value)}")
        if "$options" in value and "$regex" not in value:
            raise FilterError(f"field {key!r}: $options goes with $regex")
        nodes = [_operator(field, path, key, op, arg, value.get("$options"))
                 for op, arg in value.items() if op != "$options"]
        if not nodes:
            raise FilterError(f"field {key!r}: empty operator object")
        return _and(nodes) if len(nodes) > 1 else nodes[0]
    if isinstance(value, list):
        raise FilterError(f"field {key!r}: to match any of several values use {{\"$in\": {_show(value)}}}")
    return _operator(field, path, key, "$eq", value, None)


def _operator(field: Field, path: str, key: str, op: str, arg, options):
    if op in ("$eq", "$ne"):
        v = _scalar(key, op, arg, allow_null=True)
        node = ("cmp", field, path, "eq", _time(field, key, op, v))
        return ("not", node) if op == "$ne" else node
    if op in ("$gt", "$gte", "$lt", "$lte"):
        v = _scalar(key, op, arg, allow_null=False)
        return ("cmp", field, path, op[1:], _time(field, key, op, v))
    if op in ("$in", "$nin"):
        if not isinstance(arg, list):
            raise FilterError(f"field {key!r}: operator {op} takes a list, got {_show(arg)}")
        vs = tuple(_time(field, key, op, _scalar(key, op, a, allow_null=True)) for a in arg)
        node = ("cmp", field, path, "in", vs)
        return ("not", node) if op == "$nin" else node
    if op == "$regex":
        if not isinstance(arg, str):
            raise FilterError(f"field {key!r}: operator $regex takes a string, got {_show(arg)}")
        flags = options if options is not None else ""
        if not isinstance(flags, str) or any(c not in "imsx" for c in flags):
            raise FilterError(f"field {key!r}: $options takes letters from 'imsx', got {_show(options)}")
        try:
            regex_search(arg, flags, "")
        except re.error as e:
            raise FilterError(f"field {key!r}: operator $regex: invalid regular expression {arg!r}: {e}") from None
        return ("cmp", field, path, "regex", (arg, flags))
    if op == "$contains":
        if not isinstance(arg, str):
            raise FilterError(f"field {key!r}: operator $contains takes a string, got {_show(arg)}")
        return ("cmp", field, path, "contains", arg)
    if op == "$exists":
        if not isinstance(arg, bool):
            raise FilterError(f"field {key!r}: operator $exists takes true or false, got {_show(arg)}")
        return ("cmp", field, path, "exists", arg)
    if op == "$not":
        if not isinstance(arg, dict) or not arg or not all(isinstance(k, str) and k.startswith("$") for k in arg):
            raise FilterError(f"field {key!r}: operator $not takes an object of operators, like "
                              f"{{\"$not\": {{\"$regex\": \"^tmp\"}}}}; got {_show(arg)}")
        return ("not", _field_expr(field, path, key, arg))
    if op in ("$and", "$or"):
        raise FilterError(f"field {key!r}: operator {op} goes at the top of a filter, not under a field")
    raise FilterError(f"field {key!r}: unknown operator {op!r}; operators: {' '.join(OPERATORS)}")


def _scalar(key: str, op: str, v, allow_null: bool):
    if v is None:
        if allow_null:
            return None
        raise FilterError(f"field {key!r}: operator {op} cannot compare with null")
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        raise FilterError(f"field {key!r}: operator {op}: {v!r} is not a finite number")
    if isinstance(v, (str, bool, int, float)):
        return v
    raise FilterError(f"field {key!r}: operator {op} compares with a string, number, boolean"
                      f"{' or null' if allow_null else ''}, not {_show(v)}")


_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def _time(field: Field, key: str, op: str, v):
    """A date or time given for a time field, in the stored form (YYYY-MM-DDTHH:MM:SSZ, UTC)."""
    if not field.time or not isinstance(v, str):
        if field.time and v is not None and not isinstance(v, str):
            raise FilterError(f"field {key!r}: operator {op} takes a date like 2026-11-01 or "
                              f"2026-11-01T12:00:00Z, got {_show(v)}")
        return v
    import datetime as dt

    text = v.strip()
    if _DATE.match(text):
        text += "T00:00:00"
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise FilterError(f"field {key!r}: operator {op}: {v!r} is not a date like 2026-11-01 or "
                          "2026-11-01T12:00:00Z") from None
    if when.tzinfo is not None:
        when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _show(v) -> str:
    try:
        text = json.dumps(v)
    except (TypeError, ValueError):
        text = repr(v)
    return text if len(text) <= 60 else text[:59] + "…"


# ---- SQL -------------------------------------------------------------------------------------------
def to_sql(node, negated: bool = False) -> tuple[str, list]:
    """A WHERE expression (always 0 or 1, never NULL where it matters) and its parameters."""
    tag = node[0]
    if tag == "true":
        return "1", []
    if tag in ("and", "or"):
        parts, args = [], []
        for n in node[1]:
            s, a = to_sql(n, negated)
            parts.append(s)
            args += a
        return "(" + (" AND " if tag == "and" else " OR ").join(parts) + ")", args
    if tag == "not":
        s, a = to_sql(node[1], not negated)
        return f"(NOT {s})", a
    _, field, path, op, value = node
    if field.shape == "scalar":
        return _sql_scalar(field.sql, op, value)
    if field.shape == "list":
        return _sql_list(field, op, value, negated)
    return _sql_path(field, path, op, value, negated)


def _sql_scalar(col: str, op: str, value) -> tuple[str, list]:
    if op == "exists":
        return f"({col} IS {'NOT ' if value else ''}NULL)", []
    if op == "eq":
        if value is None:
            return f"({col} IS NULL)", []
        return (f"({col} IS ?)", [value]) if isinstance(value, str) else ("0", [])
    if op == "in":
        parts, args = [], []
        for v in value:
            s, a = _sql_scalar(col, "eq", v)
            parts.append(s)
            args += a
        return ("(" + " OR ".join(parts) + ")", args) if parts else ("0", [])
    if op == "regex":
        return f"canonry_regex(?, ?, {col})", list(value)
    if op == "contains":
        return f"coalesce(instr({col}, ?) > 0, 0)", [value]
    if not isinstance(value, str):
        return "0", []
    return f"coalesce({col} {_SQL_OP[op]} ?, 0)", [value]


NULL_KIND = "kind = 'z'"
_SQL_OP = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _member(field: Field, sub: str, negated: bool) -> str:
    expr = f"{field.item} IN ({sub})"
    # A missing artifact version (NULL id) makes IN give NULL: fine where a NULL counts as false,
    # not under NOT. Left bare otherwise, so that sqlite can drive the query from the side index.
    return f"coalesce({expr}, 0)" if field.nullable_item and negated else expr


def _sql_list(field: Field, op: str, value, negated: bool) -> tuple[str, list]:
    def sub(cond):
        return _member(field, f"SELECT item FROM vals WHERE field = '{field.sql}' AND {cond}", negated)

    if op == "exists":
        return ("1" if value else "0"), []
    if op == "eq":
        return (sub("value = ?"), [value]) if isinstance(value, str) else ("0", [])
    if op == "in":
        strs = [v for v in value if isinstance(v, str)]
        if not strs:
            return "0", []
        return sub(f"value IN ({','.join('?' * len(strs))})"), strs
    if op == "regex":
        return sub("canonry_regex(?, ?, value)"), list(value)
    if op == "contains":
        return sub("instr(value, ?) > 0"), [value]
    if not isinstance(value, str):
        return "0", []
    return sub(f"value {_SQL_OP[op]} ?"), [value]


def _sql_path(field: Field, path: str, op: str, value, negated: bool) -> tuple[str, list]:
    def sub(cond):
        return _member(field, "SELECT item FROM kv WHERE key = ?" + (f" AND {cond}" if cond else ""), negated)

    def eq(v):
        if v is None:
            # missing, or null: NOT (present) OR (a null)
            present = _member(field, "SELECT item FROM kv WHERE key = ?", True)
            return f"(NOT {present} OR {sub(NULL_KIND)})", [path, path]
        if isinstance(v, bool):
            return sub("kind = 'b' AND num = ?"), [path, 1.0 if v else 0.0]
        if isinstance(v, str):
            return sub("kind = 's' AND txt = ?"), [path, v]
        return sub("kind = 'n' AND num = ?"), [path, to_number(v)]

    if op == "exists":
        s = sub("")
        return (s if value else f"(NOT {_member(field, 'SELECT item FROM kv WHERE key = ?', True)})"), [path]
    if op == "eq":
        return eq(value)
    if op == "in":
        parts, args = [], []
        for v in value:
            s, a = eq(v)
            parts.append(s)
            args += a
        return ("(" + " OR ".join(parts) + ")", args) if parts else ("0", [])
    if op == "regex":
        return sub("kind = 's' AND canonry_regex(?, ?, txt)"), [path, *value]
    if op == "contains":
        return sub("kind = 's' AND instr(txt, ?) > 0"), [path, value]
    if isinstance(value, bool):
        return sub(f"kind = 'b' AND num {_SQL_OP[op]} ?"), [path, 1.0 if value else 0.0]
    if isinstance(value, str):
        return sub(f"kind = 's' AND txt {_SQL_OP[op]} ?"), [path, value]
    return sub(f"kind = 'n' AND num {_SQL_OP[op]} ?"), [path, to_number(value)]


# ---- queries against the index ------------------------------------------------------------------------
_VERSION_COLUMNS = ("l.registry, l.collection, l.num, l.artifact, l.digest, l.note, l.tags, l.aliases, "
                    "l.linked_at, l.linked_by, l.updated_at, a.id, a.type, a.description, a.created_at, "
                    "a.created_by, a.metadata, a.metrics, a.inputs")


def _list(text):
    return [] if not text or text == "[]" else json.loads(text)


def _map(text):
    return {} if not text or text == "{}" else json.loads(text)


def _version_doc(row) -> dict:
    (reg, coll, num, artifact, digest, note, tags, aliases, linked_at, linked_by, updated_at,
     _av, type_, description, created_at, created_by, metadata, metrics, inputs) = row
    doc = {"kind": "version", "address": f"{reg}/{coll}:v{num}", "registry": reg,
           "collection": f"{reg}/{coll}", "name": coll, "version": f"v{num}", "artifact": artifact,
           "type": type_, "description": description, "note": note, "digest": digest,
           "tags": _list(tags), "aliases": _list(aliases), "inputs": _list(inputs),
           "metadata": _map(metadata), "metrics": _map(metrics),
           "created_at": created_at, "created_by": created_by, "linked_at": linked_at,
           "linked_by": linked_by, "updated_at": updated_at}
    return _drop_none(doc)


_V_HEAD = ("'kind', 'version', 'address', l.registry || '/' || l.collection || ':' || l.version, "
           "'registry', l.registry, 'collection', l.registry || '/' || l.collection, 'name', l.collection, "
           "'version', l.version, 'artifact', l.artifact")
_V_TAIL = "'linked_at', l.linked_at, 'linked_by', l.linked_by, 'updated_at', l.updated_at"
# The document of a version as JSON text made by sqlite (the CLI prints it as it is): the same
# keys, in the same order, as _version_doc; a link whose artifact version is missing has no
# type, description, created_at or created_by.
_VERSION_JSON = (
    f"CASE WHEN a.id IS NULL THEN json_object({_V_HEAD}, 'note', l.note, 'digest', l.digest, "
    f"'tags', json(l.tags), 'aliases', json(l.aliases), 'inputs', json('[]'), 'metadata', json('{{}}'), "
    f"'metrics', json('{{}}'), {_V_TAIL}) "
    f"ELSE json_object({_V_HEAD}, 'type', a.type, 'description', a.description, 'note', l.note, "
    f"'digest', l.digest, 'tags', json(l.tags), 'aliases', json(l.aliases), 'inputs', json(a.inputs), "
    f"'metadata', json(a.metadata), 'metrics', json(a.metrics), 'created_at', a.created_at, "
    f"'created_by', a.created_by, {_V_TAIL}) END")


def _drop_none(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if v is not None}


_COLLECTION_COLUMNS = ("c.registry, c.name, c.type, c.description, c.tags, c.aliases, c.versions, "
                       "c.next_version, c.created_at, c.created_by, c.updated_at")


def _collection_doc(row) -> dict:
    reg, name, type_, description, tags, aliases, versions, next_version, created_at, created_by, updated = row
    amap = json.loads(aliases)
    return _drop_none({"kind": "collection", "address": f"{reg}/{name}", "registry": reg, "name": name,
                       "collection": f"{reg}/{name}", "type": type_, "description": description,
                       "tags": json.loads(tags), "aliases": list(amap), "alias_map": amap,
                       "versions": versions, "next_version": next_version, "created_at": created_at,
                       "created_by": created_by, "updated_at": updated})


_REGISTRY_COLUMNS = "r.name, r.description, r.visibility, r.created_at, r.created_by, r.updated_at, r.rec"


def _registry_doc(row) -> dict:
    name, description, visibility, created_at, created_by, updated, rec = row
    rec = json.loads(rec)
    types = rec.get("types")
    return _drop_none({"kind": "registry", "address": name, "name": name, "description": description,
                       "visibility": visibility, "type": ["all"] if types == "all" else list(types or []),
                       "created_at": created_at, "created_by": created_by, "updated_at": updated,
                       "record": rec})


def _select(kind: str, where: str, columns: str | None = None) -> str:
    if kind == "versions":
        return (f"SELECT {columns or _VERSION_COLUMNS} FROM links l "
                "CROSS JOIN collections c ON c.registry = l.registry AND c.name = l.collection "
                "CROSS JOIN registries r ON r.name = l.registry "
                f"LEFT JOIN avs a ON a.id = l.av WHERE {where} ORDER BY l.registry, l.collection, l.num")
    if kind == "collections":
        return (f"SELECT {columns or _COLLECTION_COLUMNS} FROM collections c "
                "CROSS JOIN registries r ON r.name = c.registry "
                f"WHERE {where} ORDER BY c.registry, c.name")
    return f"SELECT {columns or _REGISTRY_COLUMNS} FROM registries r WHERE {where} ORDER BY r.name"


_DOC = {"versions": _version_doc, "collections": _collection_doc, "registries": _registry_doc}


def query(store, kind: str, filter=None, registry: str | None = None, collection: str | None = None,
          limit: int | None = None, make=None, columns: str | None = None) -> list:
    """Items of `kind` matching `filter` (within one registry or collection), made into result
    objects by `make(row)` (default: the plain dict documents filters are evaluated on)."""

    check_size(filter)
    node = parse(filter, kind)
    where, args = to_sql(node)
    scope, scope_args = [], []
    if registry is not None:
        scope.append({"versions": "l.registry = ?", "collections": "c.registry = ?",
                      "registries": "r.name = ?"}[kind])
        scope_args.append(registry)
    if collection is not None and kind == "versions":
        scope.append("l.collection = ?")
        scope_args.append(collection)
    if scope:
        where = " AND ".join(scope) + f" AND {where}"
        args = scope_args + args
    sql = _select(kind, where, columns)
    if limit:
        if not 0 < int(limit) <= MAX_LIMIT:
            raise FilterError(f"a limit is a number from 1 to {MAX_LIMIT}, not {limit}")
        sql += f" LIMIT {int(limit)}"
    make = make or _DOC[kind]

    def run(db):
        return [make(row) for row in db.execute(sql, args)]

    return for_store(store).query(run)


def explain(store, kind: str, filter=None) -> list:
    """sqlite's query plan for a filter (to check which index drives it; benchmarks/bench_search.py
    reports it)."""

    check_size(filter)
    where, args = to_sql(parse(filter, kind))
    sql = "EXPLAIN QUERY PLAN " + _select(kind, where)
    return for_store(store).query(lambda db: [r[-1] for r in db.execute(sql, args)])


# ---- typed results for the Store API -----------------------------------------------------------------
_LINK_COLUMNS = ("l.registry, l.collection, l.num, l.artifact, l.digest, l.note, l.tags, l.aliases, "
                 "l.linked_at, l.linked_by")


def _linked_version(row, LinkedVersion=None):
    if LinkedVersion is None:
        from canonry.model import LinkedVersion

    reg, coll, num, artifact, digest, note, tags, aliases, linked_at, linked_by = row
    return LinkedVersion(registry=reg, collection=coll, version=f"v{num}", artifact=artifact, digest=digest,
                         aliases=_list(aliases), tags=_list(tags), description=note,
                         linked_at=linked_at, linked_by=linked_by)


def _collection(row):
    from canonry.model import Collection

    reg, name, type_, description, tags, aliases, versions, next_version, created_at, created_by, _ = row
    return Collection(registry=reg, name=name, type=type_, description=description, tags=json.loads(tags),
                      aliases=json.loads(aliases), versions=versions, next_version=next_version,
                      created_at=created_at, created_by=created_by)


def _registry(row):
    from canonry.ops import registry_record

    return registry_record(row[0], json.loads(row[-1]))


def search_versions(store, filter=None, collection: str | None = None) -> list:
    """LinkedVersion records matching `filter` (of one collection, REGISTRY/COLLECTION, or all)."""
    reg = coll = None
    if collection:
        from canonry.names import parse_collection

        addr = parse_collection(collection)
        store.view().collection(addr.registry, addr.collection)  # NotFound, as without a filter
        reg, coll = addr.registry, addr.collection
    from canonry.model import LinkedVersion

    return query(store, "versions", filter, registry=reg, collection=coll,
                 make=lambda row: _linked_version(row, LinkedVersion), columns=_LINK_COLUMNS)


def search_collections(store, filter=None, registry: str | None = None) -> list:
    if registry:
        store.view().registry(registry)
    return query(store, "collections", filter, registry=registry, make=_collection)


def search_registries(store, filter=None) -> list:
    return query(store, "registries", filter, make=_registry)


def combine(filter=None, tag: str | None = None, alias: str | None = None, type: str | None = None):
    """The filter plus the CLI's shortcuts (--tag, --alias, --type), all required."""
    parts = [filter] if filter is not None else []  # `[]` is a wrong filter, not no filter
    if tag:
        parts.append({"tags": tag})
    if alias:
        parts.append({"aliases": alias})
    if type:
        parts.append({"type": type})
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$and": parts}


def search(store, filter=None, kind: str = "versions", tag: str | None = None, alias: str | None = None,
           type: str | None = None, registry: str | None = None, limit: int | None = None,
           as_json: bool = False) -> list:
    """Plain-dict results (the documents filters are evaluated on), aliases always included.
    With as_json, each result as JSON text instead (for versions made by sqlite itself: what
    `canonry search --json` prints without building and encoding dicts)."""
    if kind not in KINDS:
        raise FilterError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    if kind == "registries" and (tag or alias):
        raise FilterError("registries have no tags or aliases: search collections or versions")
    if registry:
        store.view().registry(registry)  # NotFound, with the names there are
    flt = combine(filter, tag, alias, type)
    if as_json and kind == "versions":
        return query(store, kind, flt, registry=registry or None, limit=limit, make=lambda row: row[0],
                     columns=_VERSION_JSON)
    docs = query(store, kind, flt, registry=registry or None, limit=limit)
    if as_json:
        encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
        return [encode(d) for d in docs]
    return docs
