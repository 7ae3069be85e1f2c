"""The `canonry` command: parse arguments, call the Python API, format the answer. No logic here.

Heavy modules (dulwich, yaml, jsonschema) are imported inside commands so `--help` stays fast.
"""
from __future__ import annotations

import os
import sys

import click

from .errors import CanonryError

JSON_HELP = "Print data only, as JSON (shape documented in the README)."


class Ctx:
    def __init__(self, path: str | None, plugins_dir: str | None = None):
        self.path = path
        self.plugins_dir = plugins_dir
        self.branch = None
        self._store = None

    def store(self):
        if self._store is None:
            from .store import open_store

            self._store = open_store(self.path, self.branch, plugins_dir=self.plugins_dir)
        return self._store

    def plugins(self):
        return self.store().plugins


def _plugins_without_store(plugins_dir):
    from . import plugins

    return plugins.load(None, plugins_dir)


def _entry_point_plugins_may_exist() -> bool:
    """Whether a distribution on sys.path may declare entry points in group `canonry`.

    `--help` asks on every run: importlib.metadata costs ~25 ms (its imports, then every
    distribution's metadata), reading the entry_points.txt files found on sys.path ~2 ms. A yes
    may be wrong (a shadowed distribution, an empty section): importlib.metadata, which loads
    the plugins, then decides. Where this scan cannot look (a zip or an egg on sys.path, a
    custom distribution finder) it says yes."""
    from importlib.machinery import PathFinder

    if any(hasattr(f, "find_distributions") and f is not PathFinder for f in sys.meta_path):
        return True
    return any(_path_entry_may_declare_canonry_entry_points(entry) for entry in sys.path)


def _path_entry_may_declare_canonry_entry_points(entry: str) -> bool:
    if not isinstance(entry, str):  # not what this scan reads: let importlib.metadata look
        return True
    root = entry or "."
    if os.path.basename(root).lower().endswith(".egg"):
        return True
    try:
        names = os.listdir(root)
    except NotADirectoryError:  # a zip file: importlib.metadata reads inside it
        return True
    except OSError:  # missing or unreadable: importlib.metadata finds nothing there either
        return False
    for name in names:
        if name.lower().endswith((".dist-info", ".egg-info")):
            try:
                with open(os.path.join(root, name, "entry_points.txt"), "rb") as f:
                    if b"[canonry]" in f.read():
                        return True
            except OSError:  # no entry points (or an .egg-info file rather than a folder)
                continue
    return False


pass_ctx = click.make_pass_decorator(Ctx)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help=JSON_HELP)(f)


def _set_branch(ctx, param, value):
    if value:
        from .names import check_branch

        ctx.find_object(Ctx).branch = check_branch(value)
    return value


def branch_option(f):
    """`--branch B`: work on branch B (created from the store branch on the first write)."""
    return click.option("--branch", "-b", metavar="B", expose_value=False, callback=_set_branch,
                        help="Work on branch B instead of the store branch (created from it on "
                             "the first write: a proposal to review).")(f)


def _say(message: str) -> None:
    click.echo(message, err=False)


def _note(message: str) -> None:
    click.echo(message, err=True)


class UserError(click.ClickException):
    """A domain error, shown as one line: `canonry: error: …`."""

    def show(self, file=None) -> None:
        click.echo(f"canonry: error: {self.format_message()}", err=True)


class CanonryGroup(click.Group):
    """Turns domain errors into one-line messages, whether run from main() or a CliRunner.

    Commands that plugins add (hook register_commands) are looked up only when a name is not
    a built-in command, or when the full list is asked for, so built-ins start fast."""

    def _load_plugin_commands(self, ctx) -> None:
        # Runs before the group callback made ctx.obj: take -C/--plugins-dir from the parsed params.
        params = ctx.params if ctx is not None else {}
        key = (params.get("store_path"), params.get("plugins_dir"))
        loaded = self.__dict__.setdefault("_loaded_for", set())
        if key in loaded:
            return
        loaded.add(key)
        obj = Ctx(*key)
        try:
            plugins = obj.plugins()
        except CanonryError:
            plugins = _plugins_without_store(obj.plugins_dir)
        from .plugins import call

        for name, fn, argnames in plugins.impls("register_commands"):
            try:
                call(fn, argnames, cli=self)
            except Exception as e:
                click.echo(f"canonry: warning: plugin {name}: register_commands failed: {e}", err=True)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:  # one line, exit 2: what is wrong and where help is
            where = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            message = " ".join(e.format_message().split())  # click lists choices on lines
            click.echo(f"canonry: error: {message}{where}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("canonry: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        if command is None:
            self._load_plugin_commands(ctx)
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx):
        # For the listing, only installed (entry point) plugins and a named --plugins-dir are
        # asked for commands, and only when there are some: opening the store and loading every
        # plugin would cost `canonry --help` more than its budget. A trusted store plugin's
        # command still runs (get_command); `canonry plugins` lists every plugin's hooks.
        params = ctx.params or {}
        if params.get("plugins_dir") or _entry_point_plugins_may_exist():
            self._load_listed_plugin_commands(params.get("plugins_dir"))
        return super().list_commands(ctx)

    def _load_listed_plugin_commands(self, plugins_dir) -> None:
        loaded = self.__dict__.setdefault("_loaded_for", set())
        if ("listing", plugins_dir) in loaded:
            return
        loaded.add(("listing", plugins_dir))
        from . import plugins as plugin_mod
        from .plugins import call

        found = plugin_mod.load(None, plugins_dir, builtin=False)
        for name, fn, argnames in found.impls("register_commands"):
            try:
                call(fn, argnames, cli=self)
            except Exception as e:
                click.echo(f"canonry: warning: plugin {name}: register_commands failed: {e}", err=True)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CanonryError as e:
            err = UserError(str(e))
            err.exit_code = e.exit_code
            raise err from None
        except OSError as e:
            where = f": {e.filename}" if getattr(e, "filename", None) else ""
            raise UserError(f"{e.strerror or e}{where}") from None


@click.group(cls=CanonryGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-C", "store_path", metavar="PATH", envvar="CANONRY_STORE", is_eager=True,
              help="Store to use (default: found from the current directory upwards; env CANONRY_STORE).")
@click.option("--plugins-dir", metavar="DIR", type=click.Path(exists=True, file_okay=False), is_eager=True,
              help="Also load plugins (*.py) from DIR.")
@click.version_option(package_name="canonry", message="canonry %(version)s")
@click.pass_context
def cli(ctx, store_path, plugins_dir):
    """Canonry: an artifact registry kept as YAML in a git repository.

    Every change is a commit: history is the audit log. Addresses: REGISTRY,
    REGISTRY/COLLECTION, REGISTRY/COLLECTION:vN, REGISTRY/COLLECTION:ALIAS,
    ARTIFACT:vK, ARTIFACT:latest.
    """
    ctx.obj = Ctx(store_path, plugins_dir)


# ---- store ----------------------------------------------------------------------------------------
@cli.command()
@click.argument("path", required=False, type=click.Path(file_okay=False))
@click.option("--bare", is_flag=True, help="Create a bare repository (when PATH is not one yet).")
@click.option("--branch", metavar="B", help="Store branch (default: main; with --prefix: the checked-out one).")
@click.option("--prefix", metavar="DIR/", default="",
              help="Keep the store under this folder of an existing code repository.")
@json_option
@pass_ctx
def init(c, path, bare, branch, prefix, as_json):
    """Make PATH (default: current directory) a canonry store."""
    from .store import init_store

    store, created = init_store(path or c.path or ".", branch=branch, bare=bare, prefix=prefix)
    data = {"path": store.path, "branch": store.branch, "created": created,
            "registries": [r.name for r in store.registries()]}
    if as_json:
        from .output import emit_json

        return emit_json(data)
    if created:
        where = f"{store.path}/{store.storage.prefix}" if store.storage.prefix else store.path
        _say(f"initialized canonry store in {where} (branch {store.branch}; "
             f"registries: {', '.join(data['registries'])})")
    else:
        _say(f"{store.path} is already a canonry store (branch {store.branch}); nothing changed")


@cli.command()
@json_option
@pass_ctx
def gc(c, as_json):
    """Repack every git object into one pack (small packs are also merged automatically)."""
    result = c.store().gc()
    if as_json:
        from .output import emit_json

        return emit_json(result)
    _say(f"packed {result['packed_objects']} loose objects; {result['packs']} pack(s) now")


# ---- registries -----------------------------------------------------------------------------------
@cli.group()
def registry():
    """Create, list, show and edit registries."""


@registry.command("create")
@click.argument("name")
@click.option("--description", "-d", default="", help="What the registry is for.")
@click.option("--visibility", type=click.Choice(["restricted", "organization"]), default="restricted",
              show_default=True)
@click.option("--type", "types", multiple=True, metavar="T",
              help="Accepted artifact type (repeatable; default: all types).")
@json_option
@branch_option
@pass_ctx
def registry_create(c, name, description, visibility, types, as_json):
    """Create registry NAME."""
    reg = c.store().create_registry(name, description, visibility, list(types) or None)
    _done(as_json, reg.to_dict(), f"created registry {reg.name} ({reg.visibility}; "
                                  f"types: {_types(reg.types)})")


@registry.command("list")
@json_option
@branch_option
@pass_ctx
def registry_list(c, as_json):
    """List registries."""
    _print_registries(c.store(), as_json)


@registry.command("show")
@click.argument("name")
@json_option
@branch_option
@pass_ctx
def registry_show(c, name, as_json):
    """Show registry NAME and its collections."""
    from .names import check_name

    check_name(name, "registry name")
    _show(c.store(), name, as_json)


@registry.command("edit")
@click.argument("name")
@click.option("--description", "-d", default=None)
@click.option("--visibility", type=click.Choice(["restricted", "organization"]), default=None)
@click.option("--add-type", "add_types", multiple=True, metavar="T",
              help="Accept another artifact type (repeatable; 'all' accepts every type).")
@json_option
@branch_option
@pass_ctx
def registry_edit(c, name, description, visibility, add_types, as_json):
    """Edit registry settings. Accepted types can be added, never removed."""
    store = c.store()
    before = store.registry(name)
    reg = store.edit_registry(name, description=description, visibility=visibility,
                              add_types=list(add_types) or None)
    changed = reg.to_dict() != before.to_dict()
    _done(as_json, {**reg.to_dict(), "changed": changed},
          f"edited registry {name}" if changed else f"registry {name}: nothing to change")


def _types(types) -> str:
    return types if types == "all" else ", ".join(types)


def _print_registries(store, as_json):
    regs = store.registries()
    if as_json:
        from .output import emit_json

        return emit_json([r.to_dict() for r in regs])
    from .output import table

    counts = {}
    for coll in store.collections():
        counts[coll.registry] = counts.get(coll.registry, 0) + 1
    _say(table([[r.name, r.visibility, _types(r.types), counts.get(r.name, 0), r.description]
                for r in regs], ["REGISTRY", "VISIBILITY", "TYPES", "COLLECTIONS", "DESCRIPTION"]))


# ---- governance -----------------------------------------------------------------------------------
@registry.group("member")
def registry_member():
    """Manage the members of a registry and their roles."""


@registry_member.command("add")
@click.argument("registry_name", metavar="REGISTRY")
@click.argument("member", metavar="USER")
@click.option("--role", required=True, type=click.Choice(["admin", "member", "viewer", "restricted_viewer", "restricted-viewer"]))
@json_option
@branch_option
@pass_ctx
def member_add(c, registry_name, member, role, as_json):
    """Give USER (an email, or group:NAME) ROLE in REGISTRY (changes the role if USER has one)."""
    r = c.store().set_member(registry_name, member, role)
    text = (f"{member} is {r['after']} in registry {registry_name}" if r["before"] != r["after"]
            else f"{member} already is {r['after']} in registry {registry_name}: nothing changed")
    _done(as_json, r, text)


@registry_member.command("rm")
@click.argument("registry_name", metavar="REGISTRY")
@click.argument("member", metavar="USER")
@json_option
@branch_option
@pass_ctx
def member_rm(c, registry_name, member, as_json):
    """Remove USER from REGISTRY."""
    r = c.store().remove_member(registry_name, member)
    _done(as_json, r, f"removed {member} ({r['before']}) from registry {registry_name}")


@registry_member.command("list")
@click.argument("registry_name", metavar="REGISTRY")
@json_option
@branch_option
@pass_ctx
def member_list(c, registry_name, as_json):
    """List the members of REGISTRY with their roles."""
    store = c.store()
    reg = store.registry(registry_name)
    config = store.view().store_config()
    rows = [{"member": k, "role": v, "source": "registry"} for k, v in sorted(reg.members.items())]
    rows += [{"member": a, "role": "admin", "source": "store admin"} for a in config.get("admins", [])]
    if reg.visibility == "organization":
        rows.append({"member": "everyone", "role": store.view().registry(registry_name).get("default_role", "viewer"),
                     "source": "organization visibility"})
    if as_json:
        from .output import emit_json

        return emit_json(rows)
    from .output import table

    _say(table([[r["member"], r["role"], r["source"]] for r in rows], ["MEMBER", "ROLE", "FROM"]))


@registry.command("protect")
@click.argument("registry_name", metavar="REGISTRY")
@click.argument("alias_name", metavar="ALIAS")
@json_option
@branch_option
@pass_ctx
def registry_protect(c, registry_name, alias_name, as_json):
    """Protect ALIAS in REGISTRY: only admins may then add or remove it."""
    r = c.store().protect_alias(registry_name, alias_name)
    _done(as_json, r, f"protected aliases of {registry_name}: {', '.join(r['protected_aliases'])}"
          if r["changed"] else f"{alias_name} already is protected in {registry_name}")


@registry.command("unprotect")
@click.argument("registry_name", metavar="REGISTRY")
@click.argument("alias_name", metavar="ALIAS")
@json_option
@branch_option
@pass_ctx
def registry_unprotect(c, registry_name, alias_name, as_json):
    """Stop protecting ALIAS in REGISTRY."""
    r = c.store().unprotect_alias(registry_name, alias_name)
    _done(as_json, r, f"protected aliases of {registry_name}: {', '.join(r['protected_aliases']) or 'none'}"
          if r["changed"] else f"{alias_name} is not protected in {registry_name}")


@cli.group()
def admin():
    """Store-wide admins (admins of every registry)."""


@admin.command("add")
@click.argument("member", metavar="EMAIL")
@json_option
@pass_ctx
def admin_add(c, member, as_json):
    """Make EMAIL a store admin."""
    admins = c.store().add_store_admin(member)
    _done(as_json, {"admins": admins}, f"store admins: {', '.join(admins)}")


@admin.command("rm")
@click.argument("member", metavar="EMAIL")
@json_option
@pass_ctx
def admin_rm(c, member, as_json):
    """Remove EMAIL from the store admins."""
    admins = c.store().remove_store_admin(member)
    _done(as_json, {"admins": admins}, f"store admins: {', '.join(admins)}")


@cli.command("group")
@click.argument("name")
@click.argument("members", nargs=-1, metavar="EMAIL...")
@json_option
@pass_ctx
def group_cmd(c, name, members, as_json):
    """Define group NAME as EMAIL... (usable as member group:NAME); no emails removes it."""
    groups = c.store().set_group(name, list(members))
    _done(as_json, {"groups": groups}, f"group {name}: {', '.join(groups.get(name, [])) or 'removed'}")


@cli.command()
@click.option("--since", metavar="DATE", help="Only changes at or after DATE (2026-11-01 or ISO time).")
@click.option("--registry", "registry_name", metavar="R", help="Only changes in registry R.")
@click.option("--actor", metavar="EMAIL", help="Only changes made by EMAIL.")
@json_option
@branch_option
@pass_ctx
def audit(c, since, registry_name, actor, as_json):
    """Who did what and when, across the store: newest first."""
    entries = c.store().audit(since=since, registry=registry_name, actor=actor)
    if as_json:
        from .output import emit_json

        return emit_json([e.to_dict() for e in entries])
    from . import views

    _say(views.history_table(entries) if entries else "no changes recorded")


@cli.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write to this file (default: print). GitHub reads .github/CODEOWNERS.")
@pass_ctx
def codeowners(c, output):
    """Write a CODEOWNERS file mapping each registry's folder to who may change it."""
    from .codeowners import render

    store = c.store()
    text = render(store.view(), store.storage.prefix)
    if output:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
        _say(f"wrote {output}")
    else:
        click.echo(text, nl=False)


# ---- artifact versions ----------------------------------------------------------------------------
def _key_values(values, what: str, numeric: bool = False) -> dict:
    import json

    out = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint=f"--{what}")
        if numeric:
            try:
                value = float(raw)
            except ValueError:
                raise click.BadParameter(f"{key}={raw!r}: not a number", param_hint=f"--{what}") from None
            out[key] = int(value) if value.is_integer() and "." not in raw and "e" not in raw.lower() else value
        else:
            try:
                out[key] = json.loads(raw)  # numbers, booleans, lists stay typed
            except ValueError:
                out[key] = raw
    return out


@cli.command("log")
@click.argument("path", type=click.Path())
@click.option("--name", "-n", required=True, help="Artifact name.")
@click.option("--type", "-t", "type_", required=True, help="Artifact type (model, dataset, …).")
@click.option("--metadata", "-m", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
@click.option("--metric", multiple=True, metavar="KEY=NUMBER", help="Repeatable.")
@click.option("--input", "inputs", multiple=True, metavar="ARTIFACT:vK",
              help="An artifact version this one was made from (lineage; repeatable).")
@click.option("--description", "-d", default="")
@json_option
@branch_option
@pass_ctx
def log_cmd(c, path, name, type_, metadata, metric, inputs, description, as_json):
    """Log PATH (a file or directory) as a new version of artifact NAME."""
    store = c.store()
    v = store.log_artifact(path, name=name, type=type_, metadata=_key_values(metadata, "metadata"),
                           metrics=_key_values(metric, "metric", numeric=True), inputs=inputs,
                           description=description)
    from .output import human_size

    if v.created:
        text = f"logged {v.address} ({v.type}, {len(v.files)} file{'s' * (len(v.files) != 1)}, " \
               f"{human_size(v.size)}, {v.digest[:19]})"
    else:
        text = f"{path} is identical to {v.address} (same digest): no new version made"
    _done(as_json, v.to_dict(), text)


# ---- links and aliases ----------------------------------------------------------------------------
@cli.command()
@click.argument("artifact", metavar="ARTIFACT:vK")
@click.argument("collection", metavar="REGISTRY/COLLECTION")
@click.option("--alias", "-a", "aliases", multiple=True, metavar="A", help="Alias to set (repeatable).")
@click.option("--description", "-d", default="")
@json_option
@branch_option
@pass_ctx
def link(c, artifact, collection, aliases, description, as_json):
    """Link an artifact version into a collection (created if missing). No bytes are copied."""
    lv = c.store().link(artifact, collection, aliases=aliases, description=description)
    if lv.created:
        text = f"linked {lv.artifact} -> {lv.address}"
    else:
        text = f"{lv.artifact} is already linked as {lv.address}: no new link"
    shown = [a for a in lv.aliases if a != "latest"]
    if shown:
        text += f" [{', '.join(shown)}]"
    _done(as_json, lv.to_dict(), text)


@cli.command()
@click.argument("target", metavar="REGISTRY/COLLECTION:vN")
@json_option
@branch_option
@pass_ctx
def unlink(c, target, as_json):
    """Remove a link (and the aliases it holds). The artifact version itself stays."""
    lv = c.store().unlink(target)
    gone = [a for a in lv.aliases if a != "latest"]
    text = f"unlinked {lv.address} ({lv.artifact})" + (f"; removed aliases {', '.join(gone)}" if gone else "")
    _done(as_json, lv.to_dict(), text)


@cli.group()
def alias():
    """Set or remove aliases (production, staging, best, …)."""


@alias.command("set")
@click.argument("target", metavar="REGISTRY/COLLECTION:vN")
@click.argument("name", metavar="ALIAS")
@json_option
@branch_option
@pass_ctx
def alias_set(c, target, name, as_json):
    """Point ALIAS at a linked version, moving it if another version holds it."""
    ch = c.store().set_alias(target, name)
    if not ch.changed:
        text = f"{ch.alias} already points at {ch.collection}:{ch.after}: nothing changed"
    elif ch.before:
        text = f"moved {ch.alias} in {ch.collection}: {ch.before} -> {ch.after}"
    else:
        text = f"set {ch.alias} -> {ch.collection}:{ch.after}"
    _done(as_json, {**ch.to_dict(), "changed": ch.changed}, text)


@alias.command("rm")
@click.argument("collection", metavar="REGISTRY/COLLECTION")
@click.argument("name", metavar="ALIAS")
@json_option
@branch_option
@pass_ctx
def alias_rm(c, collection, name, as_json):
    """Remove ALIAS from a collection."""
    ch = c.store().remove_alias(collection, name)
    _done(as_json, {**ch.to_dict(), "changed": True},
          f"removed {ch.alias} from {ch.collection} (was on {ch.before})")


@cli.group()
def tag():
    """Add or remove tags on collections and linked versions."""


@tag.command("add")
@click.argument("target", metavar="TARGET")
@click.argument("tags", nargs=-1, required=True)
@json_option
@branch_option
@pass_ctx
def tag_add(c, target, tags, as_json):
    """Add TAGS to REGISTRY/COLLECTION or REGISTRY/COLLECTION:vN."""
    _tag_done(as_json, c.store().tag(target, *tags))


@tag.command("rm")
@click.argument("target", metavar="TARGET")
@click.argument("tags", nargs=-1, required=True)
@json_option
@branch_option
@pass_ctx
def tag_rm(c, target, tags, as_json):
    """Remove TAGS from REGISTRY/COLLECTION or REGISTRY/COLLECTION:vN."""
    _tag_done(as_json, c.store().untag(target, *tags))


def _tag_done(as_json, ch):
    from .output import fmt

    text = (f"tags of {ch.target}: {fmt(ch.after)}" if ch.changed
            else f"tags of {ch.target} unchanged: {fmt(ch.after)}")
    _done(as_json, {**ch.to_dict(), "changed": ch.changed}, text)


def _done(as_json: bool, data: dict, text: str) -> None:
    if as_json:
        from .output import emit_json

        emit_json(data)
    else:
        _say(text)


# ---- reading --------------------------------------------------------------------------------------
@cli.command()
@click.argument("target")
@json_option
@branch_option
@pass_ctx
def show(c, target, as_json):
    """Show everything known about a registry, collection, linked version or artifact version."""
    _show(c.store(), target, as_json)


def _show(store, target, as_json):
    data = store.show(target)
    if as_json:
        from .output import emit_json

        return emit_json(data)
    from . import views

    _say(views.render_show(data))


@cli.command()
@click.argument("target", required=False, metavar="[REGISTRY[/COLLECTION]]")
@json_option
@branch_option
@pass_ctx
def ls(c, target, as_json):
    """List registries, the collections of a registry, or the versions of a collection."""
    store = c.store()
    if not target:
        return _print_registries(store, as_json)
    from .names import parse

    addr = parse(target)
    from . import views
    from .output import emit_json

    if addr.kind == "name":
        from .names import check_name

        colls = store.collections(check_name(addr.registry, "registry name"))
        if as_json:
            return emit_json([x.to_dict() for x in colls])
        return _say(views.collections_table(colls))
    if addr.kind == "collection":
        versions = store.versions(target)
        if as_json:
            return emit_json([v.to_dict() for v in versions])
        return _say(views.versions_table(versions))
    raise click.BadParameter(f"{target!r}: expected REGISTRY or REGISTRY/COLLECTION", param_hint="TARGET")


@cli.command()
@click.argument("target")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many entries.")
@click.option("--actor", metavar="EMAIL", help="Only the changes made by EMAIL.")
@json_option
@branch_option
@pass_ctx
def history(c, target, limit, actor, as_json):
    """Every change to TARGET, newest first: commit, time, actor, operation, before → after."""
    entries = c.store().history(target, limit=limit, actor=actor)
    if as_json:
        from .output import emit_json

        return emit_json([e.to_dict() for e in entries])
    from . import views

    _say(views.history_table(entries) if entries else f"no changes recorded for {target}")


@cli.command()
@click.argument("target")
@click.option("--to", "dest", required=True, type=click.Path(file_okay=False), help="Directory to write to.")
@json_option
@branch_option
@pass_ctx
def get(c, target, dest, as_json):
    """Restore the files of a version into DIR, verifying every sha256."""
    v = c.store().download(target, dest)
    _done(as_json, {"artifact": v.address, "digest": v.digest, "to": os.path.abspath(dest),
                    "files": [f["path"] for f in v.files]},
          f"restored {v.address} ({len(v.files)} file{'s' * (len(v.files) != 1)}, digests verified) "
          f"into {dest}")


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@pass_ctx
def quickstart(c, directory):
    """Create a store in DIRECTORY and walk through log → link → alias → show → history."""
    from .quickstart import run

    run(directory, _say)


# ---- plugins, events, automations ----------------------------------------------------------------
@cli.command("plugins")
@json_option
@pass_ctx
def plugins_cmd(c, as_json):
    """List plugins: where each came from, its version, its hooks, and any load error."""
    try:
        plugins = c.plugins()
    except CanonryError:  # outside a store: still list built-in and installed plugins
        plugins = _plugins_without_store(c.plugins_dir)
    infos = [i.to_dict() for i in plugins.infos]
    if as_json:
        from .output import emit_json

        return emit_json(infos)
    from .output import table

    _say(table([[i["name"], i["source"], i["version"] or "-",
                 ", ".join(i["hooks"]) if i["loaded"] else f"NOT LOADED: {i['error']}"] for i in infos],
               ["PLUGIN", "SOURCE", "VERSION", "HOOKS"]))


@cli.command()
@click.argument("rev_range", metavar="REV_RANGE")
@json_option
@branch_option
@pass_ctx
def events(c, rev_range, as_json):
    """List the events of the commits in REV_RANGE (A..B, or one commit), oldest first."""
    found = c.store().events(rev_range)
    if as_json:
        from .output import emit_json

        return emit_json([e.to_dict() for e in found])
    from . import views

    _say(views.events_table(found) if found else f"no events in {rev_range}")


@cli.group()
def automations():
    """Declarative automations: configure them, fire them for a range, read their log."""


@automations.command("run")
@click.argument("rev_range", metavar="REV_RANGE")
@json_option
@pass_ctx
def automations_run(c, rev_range, as_json):
    """Deliver the events of REV_RANGE to plugins and automations (each at most once)."""
    outcomes = c.store().run_automations(rev_range)
    failed = [o for o in outcomes if o["status"] != "ok"]
    if as_json:
        from .output import emit_json

        emit_json(outcomes)
    else:
        from . import views

        _say(views.runs_table(outcomes) if outcomes else "nothing to deliver (all events already delivered)")
    if failed:
        raise UserError(f"{len(failed)} of {len(outcomes)} deliveries failed (recorded; "
                        "`automations run` again retries them)")


@automations.command("log")
@click.argument("target", required=False)
@json_option
@pass_ctx
def automations_log(c, target, as_json):
    """Recorded automation runs, newest first (kept in git notes, refs/notes/canonry-automations)."""
    runs = c.store().automation_log(target)
    if as_json:
        from .output import emit_json

        return emit_json(runs)
    from . import views

    _say(views.runs_table(runs) if runs else "no automation runs recorded")


@automations.command("list")
@click.option("--registry", metavar="R", help="The automations of registry R (default: store-wide).")
@json_option
@pass_ctx
def automations_list(c, registry, as_json):
    """Show the configured automations."""
    store = c.store()
    view = store.view()
    autos = (view.registry(registry) if registry else view.store_config()).get("automations", [])
    if as_json:
        from .output import emit_json

        return emit_json(autos)
    from .output import fmt, table

    _say(table([[a["name"], fmt(a.get("on", "any")), fmt(a.get("filter", {})), a["action"],
                 "yes" if a.get("enabled", True) else "no"] for a in autos],
               ["NAME", "ON", "FILTER", "ACTION", "ENABLED"]) if autos else "no automations configured")


@automations.command("set")
@click.argument("file", type=click.File("r"))
@click.option("--registry", metavar="R", help="Set the automations of registry R (default: store-wide).")
@json_option
@branch_option
@pass_ctx
def automations_set(c, file, registry, as_json):
    """Replace the automations with the YAML list in FILE (- for stdin): one reviewed commit."""
    from . import yamlio

    try:
        autos = yamlio.load(file.read())
    except Exception as e:
        raise UserError(f"{file.name}: not valid YAML: {str(e).splitlines()[0]}") from None
    if isinstance(autos, dict) and "automations" in autos:
        autos = autos["automations"]
    result = c.store().set_automations(autos if autos is not None else [], registry=registry)
    _done(as_json, {"automations": result}, f"automations of {('registry ' + registry) if registry else 'the store'}: "
          f"{', '.join(a['name'] for a in result) or 'none'}")


# ---- sharing: merge and remotes ------------------------------------------------------------------
@cli.command()
@click.argument("branch")
@click.option("--message", "-m", default=None, help="Subject of the merge commit.")
@click.option("--no-ff", is_flag=True, help="Always make a merge commit.")
@json_option
@pass_ctx
def merge(c, branch, message, no_ff, as_json):
    """Merge proposal BRANCH into the store branch: replays its operations, renumbering new
    links if the store branch linked meanwhile; a true conflict stops with nothing written."""
    store = c.store()
    result = store.merge(branch, message=message, fast_forward=not no_ff)
    if result.kind == "up-to-date":
        text = f"{branch} is already merged into {store.branch}: nothing to do"
    else:
        text = f"merged {branch} into {store.branch} ({result.kind}, {len(result.records)} operation(s))"
        for r in result.records:
            text += f"\n  {r.get('summary', r.get('op'))}"
    _done(as_json, result.to_dict(), text)


@cli.command()
@click.argument("url")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--branch", metavar="B", help="Store branch to check out (default: the remote's HEAD).")
@click.option("--bare", is_flag=True)
@json_option
def clone(url, directory, branch, bare, as_json):
    """Clone the store at URL (path, file://, http(s)://, ssh) into DIRECTORY."""
    from .remote import clone as do_clone, safe_url

    store = do_clone(url, directory, branch=branch, bare=bare)
    _done(as_json, {"url": safe_url(url), "path": store.path, "branch": store.branch},
          f"cloned {safe_url(url)} into {directory} (branch {store.branch})")


def _sync_text(verb: str, r) -> str:
    if r.action == "up-to-date":
        return f"{r.branch}: up to date with {r.remote}"
    text = f"{verb} {r.branch} ({r.action}) {(r.old or 'nothing')[:10]} -> {(r.new or '')[:10]}"
    if r.replayed:
        text += f"; replayed {r.replayed} local commit(s) on the remote's new state"
    if verb == "pulled" and r.incoming:
        a, _, b = r.incoming.partition("..")
        shown = f"{a[:10]}..{b[:10]}" if b else a[:10]
        text += f"\n  deliver their events with: canonry automations run {shown}"
    return text


@cli.command()
@click.argument("remote", default="origin")
@json_option
@pass_ctx
def push(c, remote, as_json):
    """Push the store branch (and the automation run log) to REMOTE; never forced. If the
    remote moved, your commits are replayed on its new state first."""
    r = c.store().push(remote)
    _done(as_json, r.to_dict(), _sync_text("pushed", r))


@cli.command()
@click.argument("remote", default="origin")
@json_option
@pass_ctx
def pull(c, remote, as_json):
    """Fetch REMOTE's store branch and bring yours onto it (local work is replayed on top)."""
    r = c.store().pull(remote)
    _done(as_json, r.to_dict(), _sync_text("pulled", r))


@cli.command()
@click.argument("remote", default="origin")
@json_option
@pass_ctx
def sync(c, remote, as_json):
    """Pull, then push."""
    r = c.store().sync(remote)
    _done(as_json, r.to_dict(), _sync_text("synced", r))


# ---- review commands (each in a module of its own) --------------------------------------------------
def _add_review_commands() -> None:
    from .cli_diff import diff_cmd
    from .cli_validate import validate_cmd

    cli.add_command(validate_cmd, "validate")
    cli.add_command(diff_cmd, "diff")


def _add_query_commands() -> None:
    from .cli_query import compare_cmd, lineage_cmd, search_cmd

    cli.add_command(lineage_cmd, "lineage")
    cli.add_command(compare_cmd, "compare")
    cli.add_command(search_cmd, "search")


# ---- entry point ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="canonry")


_add_review_commands()
_add_query_commands()
