"""Interoperability with other registries: importers (MLflow, GTO) and integrations.

A layer of its own, at the Store's level: it uses the Store API like any program would and
is used by the CLI (docs/import.md). `mlflow_store.py` is the other way round: MLflow's model
registry client over a canonry store, loaded by MLflow through its `mlflow.model_registry_store`
entry point and by nothing in canonry (docs/mlflow.md).
"""
