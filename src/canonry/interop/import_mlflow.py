"""`canonry import mlflow`: an MLflow model registry brought into a canonry registry.

Registered model -> collection REGISTRY/NAME (description; tags as collection metadata; the
original name under `mlflow.name`). Model version -> an artifact version of artifact NAME (type
`model`) and a link, in version order: its files copied into canonry's storage when MLflow's
artifact URI is a local path or file://, recorded as a reference (Store.log_reference) otherwise;
the run's metrics as metrics; the version number, run id, source, stage, status, tags and the
run's params as metadata `mlflow`. Each version is one commit authored by the version's MLflow
user at its creation time (Store.transaction(actor=, at=)). Aliases: set on the links of the
versions they name. What is in the store already is found again (metadata `mlflow.model` and
`mlflow.version`, or the same content) and left alone: a second run adds nothing.
"""
from __future__ import annotations

import os
from functools import partial
from typing import Any
from urllib.parse import unquote, urlparse

from canonry.errors import CanonryError, InvalidInput, NotFound
from canonry.files.manifest import digest
from canonry.files.references import list_reference
from canonry.interop.importing import Plan, canonry_name, iso, local_digest, person
from canonry.names import check_alias
from canonry.ops import accepts

__all__ = ["ARTIFACT_TYPE", "plan_mlflow"]

ARTIFACT_TYPE = "model"
_PAGE = 1000


def _client(tracking_uri: str):
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise InvalidInput("canonry import mlflow needs the mlflow package (pip install mlflow-skinny)") from None
    try:
        return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    except MlflowException as e:
        raise InvalidInput(f"cannot use MLflow tracking URI {tracking_uri}: {e.message}") from None


def _all(search, **kwargs) -> list:
    out, token = [], None
    while True:
        page = search(max_results=_PAGE, page_token=token, **kwargs)
        out += list(page)
        token = getattr(page, "token", None)
        if not token:
            return out


def _artifact_uri(client, uri: str) -> str:
    """Where a model version's files are: `runs:/RUN/PATH` and `models:/ID` (MLflow 3's logged
    models) resolved through the tracking store to the artifact store's URI."""
    parsed = urlparse(uri)
    if parsed.scheme == "runs":
        run_id, _, path = uri[len("runs:/"):].lstrip("/").partition("/")
        base = client.get_run(run_id).info.artifact_uri.rstrip("/")
        return f"{base}/{path}" if path else base
    if parsed.scheme == "models" and uri[len("models:/"):].startswith("m-"):
        return client.get_logged_model(uri[len("models:/"):].strip("/")).artifact_location
    return uri


def _local_path(uri: str) -> str | None:
    """The local path behind an artifact URI (a path or file://), or None."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return uri
    return None


def plan_mlflow(store, tracking_uri: str, registry: str = "model") -> Plan:
    """The plan that brings the registered models at `tracking_uri` into `registry`."""
    client = _client(tracking_uri)
    from mlflow.exceptions import MlflowException

    view = store.view()
    reg = view.registry(registry)  # NotFound: one line
    if not accepts(reg, ARTIFACT_TYPE):
        raise InvalidInput(f"registry {registry} does not accept type {ARTIFACT_TYPE!r}: import into a "
                           "registry that does (--registry)")
    try:
        models = _all(client.search_registered_models)
    except MlflowException as e:
        raise InvalidInput(f"cannot read the MLflow registry at {tracking_uri}: {e.message}") from None
    me = store.actor
    plan = Plan()
    taken: dict[str, str] = {}
    for rm in sorted(models, key=lambda r: (r.creation_timestamp or 0, r.name)):
        name = canonry_name(rm.name)
        if taken.setdefault(name, rm.name) != rm.name:
            plan.skip(f"registered model {rm.name!r}", f"its canonry name {name} is taken by {taken[name]!r}")
            continue
        _plan_model(store, client, plan, registry, rm, name, me)
    return plan


def _plan_model(store, client, plan: Plan, registry: str, rm, name: str, me) -> None:
    view = store.view()
    address = f"{registry}/{name}"
    try:
        coll = store.collection(address)
    except NotFound:
        coll = None
    if coll is not None and coll.type != ARTIFACT_TYPE:
        plan.skip(f"registered model {rm.name!r}", f"collection {address} holds type {coll.type!r}")
        return
    description = rm.description or ""
    metadata: dict[str, Any] = {"mlflow.name": rm.name}
    metadata.update({k: v for k, v in (rm.tags or {}).items() if k not in metadata})
    created = (rm.creation_timestamp or 0) / 1000 or None
    if coll is None:
        plan.need(registry, me.actor, "collection")
        plan.add(f"create collection {address} (MLflow registered model {rm.name!r})", "collection",
                 partial(_create, store, address, description, metadata, created))
    else:
        changed = {k: v for k, v in metadata.items() if coll.metadata.get(k) != v}
        if changed or coll.description != description:
            plan.need(registry, me.actor, "edit-collection")
            plan.add(f"update collection {address}: " + ", ".join(
                (["description"] if coll.description != description else []) + sorted(changed)), "edit",
                partial(store.edit_collection, address, description=description, metadata=changed or None))
    # MLflow version -> what the store already holds for it: the artifact version, then its link.
    known: dict[int, str] = {}
    newest: tuple[str | None, str | None] = (None, None)  # (digest, artifact version) `log` compares with
    for av in (store.artifact_versions(name) if _has_artifact(view, name) else []):
        meta = av.metadata.get("mlflow") if isinstance(av.metadata, dict) else None
        if isinstance(meta, dict) and meta.get("model") == rm.name and isinstance(meta.get("version"), int):
            known.setdefault(meta["version"], av.address)
        newest = (None, None) if av.deleted_at else (av.digest, av.address)
    links = {v.artifact: v.version for v in store.versions(address)} if coll is not None else {}
    quoted = rm.name.replace("'", "\\'")
    versions = _all(client.search_model_versions, filter_string=f"name='{quoted}'")
    versions.sort(key=lambda mv: int(mv.version))
    resolved: dict[int, str] = {}  # MLflow version -> its artifact version, once known
    same_as: dict[int, int] = {}  # MLflow version -> the earlier one canonry keeps it as
    previous: int | None = None  # the MLflow version behind `newest`, when this plan logs it
    for mv in versions:
        number = int(mv.version)
        what = f"MLflow {rm.name} version {number}"
        if str(mv.status).rsplit(".", 1)[-1] != "READY":
            plan.skip(what, f"status {mv.status}")
            continue
        ref = known.get(number)
        uri = path = None
        if ref is None:
            try:
                uri = _artifact_uri(client, client.get_model_version_download_uri(rm.name, mv.version))
            except Exception as e:  # MLflow raises many kinds: the version is skipped
                plan.skip(what, f"no artifact URI: {e}")
                continue
            path = _local_path(uri)
            if path is not None and not os.path.exists(path):
                plan.skip(what, f"its files at {uri} do not exist")
                continue
            try:
                content = local_digest(path) if path is not None else digest(list_reference(uri))
            except CanonryError as e:
                plan.skip(what, str(e))
                continue
            if content == newest[0]:
                # The same files as the version logged just before: canonry keeps one version
                # for both (`log` makes no new version of identical content).
                if newest[1] is not None:
                    ref = newest[1]
                else:
                    same_as[number] = previous
                    plan.skip(what, f"the same files as MLflow version {previous}, logged just before it: "
                                    "canonry keeps them as one version")
                    continue
            else:
                newest, previous = (content, None), number
        if ref is not None:
            resolved[number] = ref
            if ref in links:
                continue
        author = person(mv.user_id, me)
        plan.need(registry, author.actor, "link")
        if ref is not None:  # logged, not linked (an interrupted import): link it
            plan.add(f"link {ref} -> {address} ({what})", "version",
                     partial(_link, store, resolved, number, address, mv, author))
            continue
        how = f"copy {path}" if path is not None else f"reference {uri}"
        plan.add(f"log {name} ({how}) and link -> {address} ({what})", "version",
                 partial(_log_and_link, store, client, name, address, rm.name, mv, uri, path, author, resolved))
    current = store.collection(address).aliases if coll is not None else {}
    by_link = {links[r]: r for r in links}
    for alias, version in sorted(dict(getattr(rm, "aliases", None) or {}).items()):
        what = f"alias {alias} of MLflow {rm.name}"
        try:
            check_alias(alias)
        except CanonryError as e:
            plan.skip(what, str(e))
            continue
        number = int(version)
        if not any(int(mv.version) == number for mv in versions):
            plan.skip(what, f"version {number} does not exist")
            continue
        held = current.get(alias)
        if held is not None and by_link.get(held) is not None \
                and by_link[held] == resolved.get(same_as.get(number, number)):
            continue
        plan.need(registry, me.actor, "protected-alias" if alias in store.registry(registry).protected_aliases
                  else "alias")
        plan.add(f"set alias {alias} on {address} -> MLflow version {number}", "alias",
                 partial(_alias, store, address, resolved, same_as.get(number, number), alias, rm.name))


def _has_artifact(view, name: str) -> bool:
    from canonry import model as m

    return view.read(m.artifact_file(name)) is not None


def _create(store, address: str, description: str, metadata: dict, created: float | None) -> None:
    with store.transaction(at=created) as tx:
        tx.create_collection(address, ARTIFACT_TYPE, description=description, metadata=metadata)


def _metadata(client, model: str, mv) -> tuple[dict, dict]:
    """(metadata, metrics) of a model version: MLflow's own fields, and its run's."""
    meta: dict[str, Any] = {"model": model, "version": int(mv.version), "source": mv.source or "",
                            "run_id": mv.run_id or None, "stage": mv.current_stage if mv.current_stage not in (None, "", "None") else None,
                            "status": str(mv.status).rsplit(".", 1)[-1],
                            "created_by": mv.user_id or None,
                            "created_at": iso(mv.creation_timestamp / 1000) if mv.creation_timestamp else None,
                            "tags": dict(mv.tags or {})}
    metrics: dict = {}
    if mv.run_id:
        try:
            run = client.get_run(mv.run_id)
        except Exception:  # a deleted run: the version still imports
            run = None
        if run is not None:
            meta["params"] = dict(run.data.params)
            meta["run_name"] = run.info.run_name
            metrics = {k: float(v) for k, v in run.data.metrics.items()
                       if isinstance(v, (int, float)) and v == v and abs(v) != float("inf")}
    return {"mlflow": {k: v for k, v in meta.items() if v is not None}}, metrics


def _log_and_link(store, client, name, address, model, mv, uri, path, author, resolved) -> None:
    metadata, metrics = _metadata(client, model, mv)
    at = mv.creation_timestamp / 1000 if mv.creation_timestamp else None
    description = mv.description or ""
    producer = {"actor": author.actor, "command": f"mlflow model version {model}/{mv.version}"}
    with store.transaction(actor=author, at=at, message=f"import MLflow {model} version {mv.version}") as tx:
        if path is not None:
            av = tx.log_artifact(path, name, ARTIFACT_TYPE, metadata=metadata, metrics=metrics,
                                 description=description, producer=producer)
        else:
            av = tx.log_reference(uri, name, ARTIFACT_TYPE, metadata=metadata, metrics=metrics,
                                  description=description, producer=producer)
        tx.link(av.address, address, description=description)
    resolved[int(mv.version)] = av.address


def _link(store, resolved: dict, number: int, address: str, mv, author) -> None:
    """Link MLflow version `number`'s artifact version, logged before (an interrupted import)."""
    at = mv.creation_timestamp / 1000 if mv.creation_timestamp else None
    with store.transaction(actor=author, at=at, message=f"import MLflow {mv.name} version {mv.version}") as tx:
        tx.link(resolved[number], address, description=mv.description or "")


def _alias(store, address: str, resolved: dict, number: int, alias: str, model: str) -> None:
    ref = resolved.get(number)
    if ref is None:
        raise NotFound("imported MLflow version", f"{model} {number}", [str(n) for n in sorted(resolved)])
    link = next((v.version for v in store.versions(address) if v.artifact == ref), None)
    if link is None:
        raise NotFound("link of", ref, [], where=address)
    store.set_alias(f"{address}:{link}", alias)
