"""What `canonry --help` says, and its rendering without click.

The built-in commands (where each lives, its short help), the top-level help text and the
global options are declared here, in a module that imports neither click nor any command: app.py
builds the click group from them, and the launcher prints `canonry --help` from them. Importing
click would spend a quarter of what a fresh `--help` may take (docs/performance.md). The rendering follows click's
(HelpFormatter: width, definition lists, shortened help); tests/test_launcher.py compares the
two, byte for byte, at several terminal widths.
"""
from __future__ import annotations

import os
import sys

__all__ = [
    "BUILTIN_COMMANDS", "GLOBAL_OPTIONS", "GROUP_HELP", "MAX_CONTENT_WIDTH", "PLUGINS_DIR_OPTION_HELP",
    "STORE_OPTION_HELP", "short_help", "terminal_columns", "top_level_help",
]

# name -> (module, attribute, short help). The short help is the first sentence of the command's
# docstring, the text click would shorten for the listing: tests/test_cli_lazy.py checks that
# they agree, so a changed docstring fails a test rather than drifting from `canonry --help`.
BUILTIN_COMMANDS: dict[str, tuple[str, str, str]] = {
    "admin": ("canonry.cli.governance", "admin", "Store-wide admins (admins of every registry)."),
    "alias": ("canonry.cli.write", "alias", "Set or remove aliases (production, staging, best, …)."),
    "artifact": ("canonry.cli.artifact", "artifact", "Describe artifacts and delete artifact versions."),
    "audit": ("canonry.cli.governance", "audit", "Who did what and when, across the store: newest first."),
    "automations": ("canonry.cli.automations", "automations",
                    "Declarative automations: configure them, fire them for a range, read their log."),
    "clone": ("canonry.cli.sharing", "clone",
              "Clone the store at URL (path, file://, http(s)://, ssh) into DIRECTORY."),
    "codeowners": ("canonry.cli.governance", "codeowners",
                   "Write a CODEOWNERS file mapping each registry's folder to who may change it."),
    "collection": ("canonry.cli.collection", "collection", "Create, edit, rename and delete collections."),
    "compare": ("canonry.cli.query", "compare_cmd",
                "Every linked version of a collection with its aliases and metrics, best first, with a "
                "bar chart of the chosen metric and its trend across versions."),
    "diff": ("canonry.cli.diff", "diff_cmd",
             "Describe what HEAD changes over its merge base with BASE (like `git diff BASE...HEAD`): "
             "alias moves with the metrics behind them, links, tags, settings."),
    "events": ("canonry.cli.automations", "events",
               "List the events of the commits in REV_RANGE (A..B, or one commit), oldest first."),
    "gc": ("canonry.cli.store", "gc",
           "Repack every git object into one pack (small packs are also merged automatically)."),
    "get": ("canonry.cli.read", "get", "Restore the files of a version into DIR, verifying every sha256."),
    "group": ("canonry.cli.governance", "group_cmd", "Define group NAME as EMAIL..."),
    "history": ("canonry.cli.read", "history",
                "Every change to TARGET, newest first: commit, time, actor, operation, before → after."),
    "import": ("canonry.cli.importers", "import_cmd",
               "Import a registry kept elsewhere (MLflow, GTO), keeping its authors, times and order."),
    "init": ("canonry.cli.store", "init", "Make PATH (default: current directory) a canonry store."),
    "lineage": ("canonry.cli.query", "lineage_cmd",
                "The artifact versions TARGET was made from and those made from it, with the collections, "
                "links and aliases pointing at each and who produced it (git commit, command)."),
    "link": ("canonry.cli.write", "link", "Link an artifact version into a collection (created if missing)."),
    "log": ("canonry.cli.write", "log_cmd", "Log PATH (a file or directory) as a new version of artifact NAME."),
    "ls": ("canonry.cli.read", "ls",
           "List registries, the collections of a registry, or the versions of a collection."),
    "merge": ("canonry.cli.sharing", "merge",
              "Merge proposal BRANCH into the store branch: replays its operations, renumbering new links "
              "if the store branch linked meanwhile; a true conflict stops with nothing written."),
    "plugins": ("canonry.cli.automations", "plugins_cmd",
                "List plugins: where each came from, its version, its hooks, and any load error."),
    "pull": ("canonry.cli.sharing", "pull",
             "Fetch REMOTE's store branch and bring yours onto it (local work is replayed on top)."),
    "push": ("canonry.cli.sharing", "push",
             "Push the store branch (and the automation run log) to REMOTE; never forced."),
    "quickstart": ("canonry.cli.store", "quickstart",
                   "Create a store in DIRECTORY and walk through log → link → alias → show → history."),
    "registry": ("canonry.cli.registry", "registry", "Create, list, show, edit, rename and delete registries."),
    "search": ("canonry.cli.query", "search_cmd",
               "Find linked versions (or collections, registries) across the store."),
    "serve": ("canonry.cli.web", "serve",
              "Serve a read-only web catalog of the store, live: new commits show on the next page load."),
    "show": ("canonry.cli.read", "show",
             "Show everything known about a registry, collection, linked version or artifact version."),
    "site": ("canonry.cli.web", "site", "The web catalog as static files, for GitHub or GitLab Pages: build."),
    "storage": ("canonry.cli.storage", "storage",
                "Where artifact bytes live (a folder, s3://, gs://, az://): show, set, verify, push."),
    "sync": ("canonry.cli.sharing", "sync", "Pull, then push."),
    "tag": ("canonry.cli.write", "tag", "Add or remove tags on collections and linked versions."),
    "unlink": ("canonry.cli.write", "unlink", "Remove a link (and the aliases it holds)."),
    "usage": ("canonry.cli.usage", "usage_cmd",
              "Recorded uses of TARGET, newest first: who, when, which version, through which address, "
              "from which host and git commit, and why."),
    "use": ("canonry.cli.usage", "use",
            "Print a local folder holding TARGET's files and record the use (who, when, from where, why)."),
    "validate": ("canonry.cli.validate", "validate_cmd",
                 "Check every commit of BASE..HEAD (or the whole store): schemas, invariants, policies."),
}



GROUP_HELP = """Canonry: an artifact registry kept as YAML in a git repository.

Every change is a commit: history is the audit log. Addresses: REGISTRY,
REGISTRY/COLLECTION, REGISTRY/COLLECTION:vN, REGISTRY/COLLECTION:ALIAS,
ARTIFACT:vK, ARTIFACT:latest."""

STORE_OPTION_HELP = "Store to use (default: found from the current directory upwards; env CANONRY_STORE)."
PLUGINS_DIR_OPTION_HELP = "Also load plugins (*.py) from DIR."
# The rows of the Options section, in click's order: the group's options, then --version and
# --help, whose texts are click's own.
GLOBAL_OPTIONS: list[tuple[str, str]] = [
    ("-C PATH", STORE_OPTION_HELP),
    ("--plugins-dir DIR", PLUGINS_DIR_OPTION_HELP),
    ("--version", "Show the version and exit."),
    ("-h, --help", "Show this message and exit."),
]
MAX_CONTENT_WIDTH = 100  # the group's context setting: help is wrapped at most this wide


def top_level_help(columns: int | None = None) -> str:
    """`canonry --help` as click prints it for the built-in commands (no plugin commands)."""
    import textwrap

    width = max(min(columns or terminal_columns(), MAX_CONTENT_WIDTH) - 2, 50)
    out = ["Usage: canonry [OPTIONS] COMMAND [ARGS]...", ""]
    for paragraph in GROUP_HELP.split("\n\n"):
        out.append(textwrap.fill(" ".join(paragraph.splitlines()), width, initial_indent="  ",
                                 subsequent_indent="  ", replace_whitespace=False))
        out.append("")
    out += ["Options:", *_definitions(GLOBAL_OPTIONS, width), ""]
    limit = width - 6 - max(map(len, BUILTIN_COMMANDS))
    commands = [(name, short_help(text, limit)) for name, (_m, _a, text) in sorted(BUILTIN_COMMANDS.items())]
    out += ["Commands:", *_definitions(commands, width)]
    return "\n".join(out) + "\n"


def _definitions(rows: list[tuple[str, str]], width: int) -> list[str]:
    """A definition list two columns wide, indented by 2, as click's HelpFormatter.write_dl."""
    import textwrap

    term_width = min(max(len(term) for term, _ in rows), 30)
    text_width = max(width - term_width - 4, 10)
    lines = []
    for term, text in rows:
        wrapped = textwrap.wrap(text, text_width, replace_whitespace=False) or [""]
        if len(term) <= term_width:
            lines.append(f"  {term:<{term_width}}  {wrapped[0]}".rstrip())
        else:  # a long term gets its own line, its text starts below
            lines += [f"  {term}", f"{'':{term_width + 4}}{wrapped[0]}"]
        lines += [f"{'':{term_width + 4}}{line}" for line in wrapped[1:]]
    return lines


def short_help(text: str, limit: int) -> str:
    """The first sentence of `text`, shortened at a word to fit `limit` with "..." (what click
    lists for a command without an explicit short help)."""
    words = text.split("\n\n", 1)[0].split()
    kept, length = [], -1
    for word in words:
        if length + 1 + len(word) > limit:
            break
        kept.append(word)
        length += 1 + len(word)
        if word.endswith("."):
            return " ".join(kept)
    else:
        return " ".join(kept)
    while kept and length + 3 > limit:  # make room for the ellipsis
        length -= len(kept.pop()) + 1
    return " ".join(kept) + "..."


def terminal_columns() -> int:
    """The terminal's width as shutil.get_terminal_size() sees it (COLUMNS first), without
    importing shutil."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80
