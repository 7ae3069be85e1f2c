"""Automations: the hook specifications, the plugin manager and its entry-point scan, events computed
from commit diffs, their delivery to plugins and configured automations, and the run log (git notes)."""
