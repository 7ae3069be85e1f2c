"""MLflow's model registry on a canonry store: `mlflow.set_registry_uri("canonry:///path/to/store")`.

MLflow finds this class through the `mlflow.model_registry_store` entry point that canonry's
package declares (`pip install 'canonry[mlflow]'`); its client then reads and writes the store
through the Store API, so every write is one canonry commit with the usual trailers, checked
against roles, protected aliases and policy plugins. docs/mlflow.md has the whole mapping; in short:

    registered model NAME      collection REGISTRY/NAME (REGISTRY: ?registry=, default `model`)
    its tags, description      the collection's metadata, description
    model version N            link v(N-1) of that collection (MLflow counts from 1, canonry from v0)
    its files                  artifact NAME (type model), logged from the version's source
    its source, run, tags      the artifact version's metadata under `mlflow` (fixed when logged)
    its description            the link's note
    alias                      alias (protected aliases need a registry admin)
    stage                      none: stages are refused (MLflow deprecated them); use aliases

A refusal (roles, protected aliases, policy plugins) is an MlflowException with error code
PERMISSION_DENIED; something missing, RESOURCE_DOES_NOT_EXIST; bad input, INVALID_PARAMETER_VALUE.
"""
from __future__ import annotations

import functools
import os
import re
import tempfile
from datetime import datetime
from urllib.parse import parse_qs, unquote, urlparse

from mlflow.entities.model_registry import (
    ModelVersion,
    ModelVersionTag,
    RegisteredModel,
    RegisteredModelAlias,
    RegisteredModelTag,
)
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    ABORTED,
    DATA_LOSS,
    INTERNAL_ERROR,
    INVALID_PARAMETER_VALUE,
    PERMISSION_DENIED,
    RESOURCE_ALREADY_EXISTS,
    RESOURCE_DOES_NOT_EXIST,
    TEMPORARILY_UNAVAILABLE,
)
from mlflow.store.entities.paged_list import PagedList
from mlflow.store.model_registry.abstract_store import AbstractStore
from mlflow.utils.search_utils import SearchModelUtils, SearchModelVersionUtils

from canonry.errors import (
    CanonryError,
    Conflict,
    IntegrityError,
    InvalidInput,
    NotAStore,
    NotFound,
    PolicyRefused,
    SchemaError,
    StorageUnavailable,
)
from canonry.governance import PermissionDenied
from canonry.names import check_name
from canonry.store import Store, open_store

__all__ = [
    "DEFAULT_REGISTRY",
    "MODEL_TYPE",
    "REFERENCE_SCHEMES",
    "SCHEME",
    "CanonryRegistryStore",
    "error_code",
    "link_version",
    "mlflow_version",
    "parse_uri",
]

SCHEME = "canonry"
DEFAULT_REGISTRY = "model"
MODEL_TYPE = "model"  # the artifact type of every version MLflow logs
# Sources canonry records as references (files/references.py) rather than copies; any other
# remote source (runs:/, models:/, mlflow-artifacts:/, dbfs:/ …) is fetched by MLflow and copied.
REFERENCE_SCHEMES = ("s3", "gs", "az", "http", "https")
LATEST = "latest"

# Canonry's errors, most specific first, and the MLflow error code each becomes.
_CODES = (
    (PermissionDenied, PERMISSION_DENIED),
    (PolicyRefused, PERMISSION_DENIED),
    (NotFound, RESOURCE_DOES_NOT_EXIST),
    (NotAStore, RESOURCE_DOES_NOT_EXIST),
    (Conflict, ABORTED),
    (StorageUnavailable, TEMPORARILY_UNAVAILABLE),
    (IntegrityError, DATA_LOSS),
    (SchemaError, INTERNAL_ERROR),  # the store's files contradict their schema: not the caller's fault
)


def error_code(error: CanonryError) -> int:
    """The MLflow error code a canonry error becomes (INVALID_PARAMETER_VALUE when none is closer)."""
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return INVALID_PARAMETER_VALUE


def _translated(method):
    """Run `method`, turning a canonry error into the MlflowException MLflow's callers expect."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except CanonryError as e:
            raise MlflowException(str(e), error_code=error_code(e)) from e
    return wrapper


def parse_uri(uri: str) -> tuple[str, str, str | None]:
    """(store path, registry, branch or None) of `canonry:///ABS/PATH?registry=R&branch=B` (or
    `canonry:REL/PATH`). A store elsewhere is cloned first: the URI names one on this machine."""
    parsed = urlparse(uri or "")
    if parsed.scheme != SCHEME:
        raise InvalidInput(f"not a canonry registry URI: {uri!r} (expected {SCHEME}:///PATH/TO/STORE)")
    if parsed.netloc not in ("", "localhost"):
        raise InvalidInput(f"{uri}: a canonry registry URI names a store on this machine, "
                           f"{SCHEME}:///ABSOLUTE/PATH or {SCHEME}:RELATIVE/PATH; clone a shared store "
                           "first (`canonry clone URL DIR`)")
    path = unquote(parsed.path)
    if not path:
        raise InvalidInput(f"{uri}: no store path (expected {SCHEME}:///PATH/TO/STORE)")
    query = parse_qs(parsed.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"registry", "branch"})
    if unknown:
        raise InvalidInput(f"{uri}: unknown parameter {unknown[0]!r} (known: registry, branch)")
    registry = check_name(query.get("registry", [DEFAULT_REGISTRY])[-1], "registry name")
    branch = query.get("branch", [None])[-1] or None
    return path, registry, branch


def link_version(version) -> str:
    """Canonry's link (vN) of MLflow's version number: MLflow's 1 is canonry's v0."""
    text = str(version).strip()
    if not text.isdigit() or int(text) < 1:
        raise InvalidInput(f"model version {version!r}: a version is a whole number from 1")
    return f"v{int(text) - 1}"


def mlflow_version(link: str) -> str:
    """MLflow's version number of canonry's link vN: N + 1, a string as ModelVersion declares it
    (and MLflow's REST client gives it; MLflow takes an int or a string wherever one goes in)."""
    return str(int(link[1:]) + 1)


def _ms(iso: str | None) -> int | None:
    """Milliseconds since the epoch (MLflow's timestamps) of an ISO 8601 time."""
    if not iso:
        return None
    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def _like_regex(pattern: str) -> str:
    """SQL LIKE (`%` any run, `_` one character) as an anchored regular expression."""
    return "^" + "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern) + "$"


def _condition(clause: dict) -> dict:
    """One parsed MLflow comparison as a canonry search condition (query/search.py)."""
    op, value = clause["comparator"], clause["value"]
    if op in ("LIKE", "ILIKE"):
        return {"$regex": _like_regex(value), **({"$options": "i"} if op == "ILIKE" else {})}
    operators = {"=": "$eq", "!=": "$ne", "IN": "$in", "NOT IN": "$nin", ">": "$gt", ">=": "$gte",
                 "<": "$lt", "<=": "$lte"}
    if op not in operators:
        raise InvalidInput(f"comparator {op} is not supported on {clause['key']}")
    return {operators[op]: list(value) if op in ("IN", "NOT IN") else value}


def _matches(value, clause: dict) -> bool:
    """Whether `value` (None: the field is missing) passes one parsed MLflow comparison.
    A missing tag passes `!=` only, as MLflow's own prompt filter (`tag.… != 'true'`) needs."""
    op, wanted = clause["comparator"], clause["value"]
    if value is None:
        return op in ("!=", "NOT IN")
    if op in ("LIKE", "ILIKE"):
        return re.search(_like_regex(wanted), str(value), re.S | (re.I if op == "ILIKE" else 0)) is not None
    if op in ("IN", "NOT IN"):
        return (str(value) in [str(w) for w in wanted]) == (op == "IN")
    if isinstance(wanted, (int, float)):
        value = float(value)
    else:
        value = str(value)
    return {"=": value == wanted, "!=": value != wanted, ">": value > wanted, ">=": value >= wanted,
            "<": value < wanted, "<=": value <= wanted}[op]


def _ordered(items: list, order_by, keys: dict) -> list:
    """`items` sorted by MLflow's order_by clauses ("name ASC", "version_number DESC", …)."""
    for clause in reversed(list(order_by or [])):
        parts = clause.split()
        key = parts[0] if parts else ""
        if key not in keys or len(parts) > 2 or (len(parts) == 2 and parts[1].upper() not in ("ASC", "DESC")):
            raise InvalidInput(f"order_by {clause!r}: use one of {', '.join(sorted(keys))}, then ASC or DESC")
        items = sorted(items, key=lambda item, get=keys[key]: _sort_key(get(item)),
                       reverse=len(parts) == 2 and parts[1].upper() == "DESC")
    return items


def _sort_key(value) -> tuple:
    return (value is None, value if value is not None else 0)


def _page(items: list, max_results, page_token) -> PagedList:
    """One page of `items`; the token of the next page is its offset."""
    start = 0
    if page_token:
        if not str(page_token).isdigit():
            raise InvalidInput(f"page_token {page_token!r} is not one this store gave")
        start = int(page_token)
    if max_results is None:
        return PagedList(items[start:], None)
    if int(max_results) < 1:
        raise InvalidInput(f"max_results must be at least 1, not {max_results}")
    end = start + int(max_results)
    return PagedList(items[start:end], str(end) if end < len(items) else None)


class CanonryRegistryStore(AbstractStore):
    """MLflow's registry store over a canonry store (see the module's docstring for the mapping)."""

    def __init__(self, store_uri: str | None = None, tracking_uri: str | None = None):
        super().__init__()
        self.store_uri = store_uri
        self.tracking_uri = tracking_uri  # where runs:/ and models:/ sources are fetched from
        self.store, self.registry = self._open(store_uri)

    @staticmethod
    @_translated
    def _open(store_uri) -> tuple[Store, str]:
        path, registry, branch = parse_uri(store_uri)
        store = open_store(path, branch)
        store.registry(registry)  # unknown registry: RESOURCE_DOES_NOT_EXIST now, not at first use
        return store, registry

    # ---- addresses and records ------------------------------------------------------------------
    def _address(self, name: str) -> str:
        return f"{self.registry}/{check_name(name, 'registered model name')}"

    def _registered_model(self, address: str) -> RegisteredModel:
        coll = self.store.collection(address)
        latest = []
        updated = coll.created_at
        if LATEST in coll.aliases:
            newest = self._model_version(self.store.resolve(f"{address}:{LATEST}"))
            latest = [newest]
            updated = max(updated, self.store.resolve(f"{address}:{LATEST}").linked_at)
        return RegisteredModel(
            name=coll.name, creation_timestamp=_ms(coll.created_at), last_updated_timestamp=_ms(updated),
            description=coll.description, latest_versions=latest,
            tags=[RegisteredModelTag(k, str(v)) for k, v in sorted(coll.metadata.items())],
            aliases=[RegisteredModelAlias(a, mlflow_version(v)) for a, v in sorted(coll.aliases.items())
                     if a != LATEST])

    def _model_version(self, link) -> ModelVersion:
        version = self.store.artifact_version(link.artifact)
        meta = version.metadata.get("mlflow")
        meta = meta if isinstance(meta, dict) else {}
        tags = meta.get("tags") if isinstance(meta.get("tags"), dict) else {}
        extra = {"model_id": meta["model_id"]} if meta.get("model_id") else {}  # MLflow 3 only
        return ModelVersion(
            name=link.collection, version=mlflow_version(link.version), creation_timestamp=_ms(link.linked_at),
            last_updated_timestamp=_ms(link.linked_at), description=link.description, user_id=link.linked_by,
            current_stage="None", source=meta.get("source") or link.artifact, run_id=meta.get("run_id") or "",
            status="READY", tags=[ModelVersionTag(k, str(v)) for k, v in sorted(tags.items())],
            run_link=meta.get("run_link") or "", aliases=[a for a in link.aliases if a != LATEST], **extra)

    def _link(self, name: str, version) -> str:
        return f"{self._address(name)}:{link_version(version)}"

    # ---- registered models ------------------------------------------------------------------------
    @_translated
    def create_registered_model(self, name, tags=None, description=None, deployment_job_id=None):
        address = self._address(name)
        try:
            self.store.collection(address)
        except NotFound:
            pass
        else:
            raise MlflowException(f"Registered Model (name={name}) already exists ({address}).",
                                  error_code=RESOURCE_ALREADY_EXISTS)
        metadata = {t.key: t.value for t in tags or []}
        self.store.create_collection(address, MODEL_TYPE, description=description or "",
                                     metadata=metadata or None)
        return self._registered_model(address)

    @_translated
    def update_registered_model(self, name, description, deployment_job_id=None):
        address = self._address(name)
        self.store.edit_collection(address, description=description or "")
        return self._registered_model(address)

    @_translated
    def rename_registered_model(self, name, new_name):
        self.store.rename_collection(self._address(name), check_name(new_name, "registered model name"))
        return self._registered_model(self._address(new_name))

    @_translated
    def delete_registered_model(self, name):
        self.store.delete_collection(self._address(name))

    @_translated
    def get_registered_model(self, name):
        return self._registered_model(self._address(name))

    @_translated
    def search_registered_models(self, filter_string=None, max_results=None, order_by=None, page_token=None):
        parts: list[dict] = [{"registry": self.registry}]
        by_tag = []  # tags are collection metadata, which the search index does not hold: matched here
        for clause in SearchModelUtils.parse_search_filter(filter_string):
            if clause["type"] == "attribute":
                parts.append({clause["key"]: _condition(clause)})
            else:
                by_tag.append(clause)
        found = self.store.collections(self.registry, filter={"$and": parts})
        models = [self._registered_model(c.address) for c in sorted(found, key=lambda c: c.name)]
        models = [rm for rm in models if all(_matches(rm.tags.get(c["key"]), c) for c in by_tag)]
        models = _ordered(models, order_by, {"name": lambda rm: rm.name,
                                             "creation_timestamp": lambda rm: rm.creation_timestamp,
                                             "last_updated_timestamp": lambda rm: rm.last_updated_timestamp})
        return _page(models, max_results, page_token)

    @_translated
    def get_latest_versions(self, name, stages=None):
        """The newest version: every version is in stage "None" (canonry has aliases, not stages)."""
        address = self._address(name)
        coll = self.store.collection(address)
        if stages and not any(str(s).lower() == "none" for s in stages):
            return []
        if LATEST not in coll.aliases:
            return []
        return [self._model_version(self.store.resolve(f"{address}:{LATEST}"))]

    @_translated
    def set_registered_model_tag(self, name, tag):
        self.store.edit_collection(self._address(name), metadata={tag.key: tag.value})

    @_translated
    def delete_registered_model_tag(self, name, key):
        address = self._address(name)
        if key in self.store.collection(address).metadata:
            self.store.edit_collection(address, remove_metadata=[key])

    # ---- model versions ---------------------------------------------------------------------------
    @_translated
    def create_model_version(self, name, source, run_id=None, tags=None, run_link=None, description=None,
                             local_model_path=None, model_id=None):
        """Log the files of `source` as a version of artifact NAME and link it into REGISTRY/NAME,
        in one commit. A local path (or file://) is copied into canonry's storage; s3://, gs://,
        az://, http(s):// are recorded as references; runs:/, models:/ and the like are fetched
        through MLflow, then copied. Content identical to the newest version gives that version."""
        address = self._address(name)
        self.store.collection(address)  # MLflow wants the registered model first
        meta = {k: v for k, v in {"source": source, "run_id": run_id, "run_link": run_link,
                                  "model_id": model_id}.items() if v}
        version_tags = {t.key: t.value for t in tags or []}
        if version_tags:
            meta["tags"] = version_tags
        with tempfile.TemporaryDirectory(prefix="canonry-mlflow-") as scratch:
            kind, where = self._files_of(source, local_model_path, scratch)
            with self.store.transaction(message=f"register a new version of {address} (MLflow)") as tx:
                if kind == "reference":
                    tx.log_reference(where, name=name, type=MODEL_TYPE, metadata={"mlflow": meta})
                else:
                    tx.log_artifact(where, name=name, type=MODEL_TYPE, metadata={"mlflow": meta})
                # NAME:latest, not NAME:vK: a replay after a lost race links what it logged itself
                tx.link(f"{name}:{LATEST}", address, description=description or "")
        return self._model_version(self.store.resolve(tx.results[-1].address))

    def _files_of(self, source: str, local_model_path: str | None, scratch: str) -> tuple[str, str]:
        """("path", a local folder or file) or ("reference", a URL) for a version's source."""
        if local_model_path and os.path.exists(local_model_path):
            return "path", local_model_path
        parsed = urlparse(str(source))
        if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and os.name == "nt"):
            path = unquote(parsed.path) if parsed.scheme == "file" else str(source)
            if not os.path.exists(path):
                raise InvalidInput(f"model source {source}: no such file or folder")
            return "path", path
        if parsed.scheme in REFERENCE_SCHEMES:
            return "reference", str(source)
        from mlflow.artifacts import download_artifacts

        return "path", download_artifacts(artifact_uri=str(source), tracking_uri=self.tracking_uri,
                                          dst_path=scratch)

    @_translated
    def update_model_version(self, name, version, description):
        self.store.resolve(self._link(name, version))  # a missing version says so first
        raise InvalidInput("canonry: a model version's description is the note of its link, written when "
                           "it is linked (create_model_version(description=...)); it cannot be changed")

    @_translated
    def transition_model_version_stage(self, name, version, stage, archive_existing_versions):
        raise InvalidInput(f"canonry has no stages (MLflow deprecated them): set an alias instead, e.g. "
                           f"set_registered_model_alias({name!r}, {str(stage).lower()!r}, {version!r})")

    @_translated
    def delete_model_version(self, name, version):
        self.store.unlink(self._link(name, version))

    @_translated
    def get_model_version(self, name, version):
        return self._model_version(self.store.resolve(self._link(name, version)))

    @_translated
    def get_model_version_download_uri(self, name, version):
        """A local folder holding the version's files, fetched from canonry's storage and verified
        once into the download cache (Store.use: recorded in the usage log where the registry says)."""
        return self.store.use(self._link(name, version))

    @_translated
    def search_model_versions(self, filter_string=None, max_results=None, order_by=None, page_token=None):
        fields = {"name": "name", "run_id": "metadata.mlflow.run_id", "source_path": "metadata.mlflow.source"}
        parts: list[dict] = [{"registry": self.registry}]
        here = []  # version numbers (canonry's are vN strings) and dotted tag keys: matched here
        for clause in SearchModelVersionUtils.parse_search_filter(filter_string):
            key = clause["key"]
            if clause["type"] == "attribute" and key in fields:
                parts.append({fields[key]: _condition(clause)})
            elif clause["type"] != "attribute" and "." not in key and clause["comparator"] != "!=":
                parts.append({f"metadata.mlflow.tags.{key}": _condition(clause)})
            else:
                here.append(clause)
        versions = [self._model_version(link) for link in self.store.versions(filter={"$and": parts})]
        versions = [mv for mv in versions if all(self._version_matches(mv, c) for c in here)]
        versions = _ordered(versions, ["name ASC", "version_number DESC"], _VERSION_KEYS)
        versions = _ordered(versions, order_by, _VERSION_KEYS)
        return _page(versions, max_results, page_token)

    @staticmethod
    def _version_matches(mv: ModelVersion, clause: dict) -> bool:
        if clause["type"] == "attribute":
            value = {"version_number": int(mv.version), "name": mv.name, "run_id": mv.run_id,
                     "source_path": mv.source}[clause["key"]]
            if clause["key"] == "version_number" and clause["comparator"] in ("IN", "NOT IN", "LIKE", "ILIKE"):
                raise InvalidInput(f"version_number takes =, !=, <, <=, >, >=, not {clause['comparator']}")
            return _matches(value, clause)
        return _matches(mv.tags.get(clause["key"]), clause)

    @_translated
    def set_model_version_tag(self, name, version, tag):
        self.store.resolve(self._link(name, version))
        raise InvalidInput("canonry: a model version's tags are kept in its artifact version, which never "
                           "changes: give them to create_model_version(tags=...)")

    @_translated
    def delete_model_version_tag(self, name, version, key):
        self.store.resolve(self._link(name, version))
        raise InvalidInput("canonry: a model version's tags are kept in its artifact version, which never "
                           "changes: they cannot be removed")

    # ---- aliases ----------------------------------------------------------------------------------
    @_translated
    def set_registered_model_alias(self, name, alias, version):
        self.store.set_alias(self._link(name, version), alias)

    @_translated
    def delete_registered_model_alias(self, name, alias):
        self.store.remove_alias(self._address(name), alias)

    @_translated
    def get_model_version_by_alias(self, name, alias):
        if alias == LATEST:
            raise InvalidInput("'latest' is not an alias: use get_latest_versions")
        return self._model_version(self.store.resolve(f"{self._address(name)}:{alias}"))


_VERSION_KEYS = {"name": lambda mv: mv.name, "version_number": lambda mv: int(mv.version),
                 "creation_timestamp": lambda mv: mv.creation_timestamp,
                 "last_updated_timestamp": lambda mv: mv.last_updated_timestamp}
