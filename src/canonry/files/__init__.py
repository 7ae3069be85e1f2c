"""Artifact bytes: manifests (path, size, sha256 per file) and the blob stores that hold the content."""
