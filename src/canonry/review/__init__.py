"""Reviewing changes: `validate` (the CI gate: schemas, invariants, roles, policies per commit), `diff`
(what a branch changes, in registry terms), `codeowners` (a CODEOWNERS file from registry admins)."""
