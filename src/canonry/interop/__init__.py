"""Interoperability with other registries: importers (MLflow, GTO) and integrations.

A layer of its own, at the Store's level: it uses the Store API like any program would and
is used by the CLI (docs/import.md).
"""
