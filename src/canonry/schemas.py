"""JSON Schemas (draft 2020-12) for every kind of store file, and validation with one-line errors."""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from canonry.errors import SchemaError

__all__ = ["FORMAT_VERSION", "KINDS", "check_record", "load_schema", "schema_dir"]

FORMAT_VERSION = 1
KINDS = ("store", "registry", "collection", "aliases", "link", "artifact", "artifact_version")


def schema_dir() -> Path:
    installed = Path(__file__).with_name("schemas")  # wheel: force-included next to the code
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[2] / "schemas"  # source checkout / editable install


@cache
def load_schema(kind: str) -> dict:
    with open(schema_dir() / f"{kind}.schema.json", encoding="utf-8") as f:
        return json.load(f)


@cache
def _validator(kind: str):
    from jsonschema import Draft202012Validator  # imported lazily: keeps `canonry --help` fast

    schema = load_schema(kind)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@cache
def _fast_check(kind: str):
    """The schema compiled to Python by fastjsonschema: an order of magnitude faster than
    jsonschema per record, and far cheaper to import (docs/performance.md). It only ever accepts: anything it
    refuses goes to jsonschema, the reference, for the verdict and the message (the schemas
    use only keywords whose meaning is the same in fastjsonschema's draft 7)."""
    try:
        import fastjsonschema

        return fastjsonschema.compile(load_schema(kind), use_default=False, use_formats=False)
    except Exception:  # not installed, or a schema it cannot compile: jsonschema alone
        return None


def check_record(kind: str, data, path: str) -> None:
    """Raise SchemaError naming the file, the field and the problem."""
    if not isinstance(data, dict):
        raise SchemaError(f"{path}: invalid {kind} file: expected a mapping, got {type(data).__name__}")
    fast = _fast_check(kind)
    if fast is not None:
        try:
            fast(data)
            return
        except Exception:  # JsonSchemaValueException, or anything odd: ask the reference
            pass
    validator = _validator(kind)
    errors = list(validator.iter_errors(data))
    if not errors:
        return
    from jsonschema.exceptions import best_match

    err = best_match(errors)
    field = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    raise SchemaError(f"{path}: field {field}: {_short(err.message)}")


def _short(message: str, limit: int = 160) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"
