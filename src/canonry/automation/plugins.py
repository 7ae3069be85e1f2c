"""The plugin manager: loads plugins once, from four places, each reported and isolated.

1. built-in plugins (the `plugins/` folder shipped with canonry),
2. installed packages' entry points in group `canonry`,
3. the store's own `plugins/*.py`, read from the trusted store branch head (automation/trust.py)
   — only when its canonry.yaml says `trust_local_plugins: true`. Never from the branch being
   written (`--branch`) or validated: a proposal cannot grant itself trust,
4. a folder given with `canonry --plugins-dir DIR` (or `plugins_dir=` in the API).

CANONRY_PLUGINS filters by name: `a,b` loads only a and b; `-c` blocks c; both can mix.
A plugin that fails to import or register (a misspelled hook name included: pluggy's
check_pending) is reported and skipped; the rest load. The trusted canonry.yaml may name
`required_plugins`: `missing_required()` then says which of them did not load, and why, and
writes are refused until they do (store.py; `validate` reports it).

Hooks are called through pluggy (`callers`): in pluggy's order (tryfirst first, then the most
recently registered, trylast last), each implementation on its own (so a receiver's failure,
refusal or timeout is its own), wrapped by the hook's `hookwrapper`/`wrapper` implementations.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from canonry.automation import hookspecs
from canonry.automation.trust import trusted_config

if TYPE_CHECKING:
    from canonry.view import View

__all__ = ["PluginInfo", "Plugins", "builtin_dir", "first_result", "load"]

Caller = Callable[..., list]  # a pluggy HookCaller: keyword arguments in, list of results out


@dataclass
class PluginInfo:
    name: str
    source: str  # builtin | entrypoint | store | dir
    location: str
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "location": self.location,
                "version": self.version, "hooks": self.hooks, "error": self.error,
                "loaded": self.error is None}


def builtin_dir() -> Path:
    installed = Path(__file__).parents[1] / "plugins"  # wheel: force-included into canonry/
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[3] / "plugins"  # source checkout / editable install


class Plugins:
    def __init__(self, off: str | None = None):
        self.pm = pluggy.PluginManager("canonry")
        self.pm.add_hookspecs(hookspecs)
        self.infos: list[PluginInfo] = []
        self._filter = _parse_filter(os.environ.get("CANONRY_PLUGINS", ""))
        self.off = off  # why nothing was loaded (load_plugins=False), if so
        self.required: list[str] = []  # the trusted canonry.yaml's required_plugins
        self.store_plugins: list[str] = []  # names in the trusted plugins/ folder
        self.store_skipped: str | None = None  # why those were not loaded, if they were not

    # ---- loading -------------------------------------------------------------------------------
    def allowed(self, name: str) -> bool:
        allow, block = self._filter
        return name not in block and (not allow or name in allow)

    def add_module(self, module, name: str, source: str, location: str, version: str | None = None):
        info = PluginInfo(name=name, source=source, location=location,
                          version=version or getattr(module, "__version__", None))
        self.infos.append(info)
        if self.pm.get_plugin(name) is not None:
            info.error = f"another plugin named {name!r} is already loaded"
            return info
        try:
            self.pm.register(module, name=name)
            self.pm.check_pending()  # a hookimpl whose name is no hook: an error, not ignored
            _check_named_after_hooks(self.pm, module)
        except Exception as e:  # pluggy.PluginValidationError and anything a plugin's import did
            if self.pm.is_registered(module):
                self.pm.unregister(module)
            info.error = _one_line(e)
            return info
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(module) or [])
        return info

    def load_file(self, path: str, source: str, name: str | None = None, code: str | None = None):
        name = name or Path(path).stem
        if not self.allowed(name):
            return None
        module_name = f"canonry_plugin_{source}_{name}"
        try:
            if code is None:  # a file on disk: import it properly (bytecode is cached)
                spec = importlib.util.spec_from_file_location(module_name, path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            else:  # source read from the store branch
                module = types.ModuleType(module_name)
                module.__file__ = path
                exec(compile(code, path, "exec"), module.__dict__)
        except Exception as e:
            info = PluginInfo(name=name, source=source, location=path, error=f"failed to import: {_one_line(e)}")
            self.infos.append(info)
            return info
        return self.add_module(module, name, source, path)

    def load_dir(self, directory: str, source: str) -> None:
        if not os.path.isdir(directory):
            raise FileNotFoundError(2, "plugins folder not found", directory)
        for entry in sorted(os.listdir(directory)):
            if entry.endswith(".py") and not entry.startswith("_"):
                self.load_file(os.path.join(directory, entry), source)

    def load_entry_points(self) -> None:
        from canonry.automation.entrypoints import entry_point_plugins_may_exist

        if not entry_point_plugins_may_exist():  # spares importing importlib.metadata (costly)
            return
        from importlib.metadata import entry_points

        for ep in entry_points(group="canonry"):
            if not self.allowed(ep.name):
                continue
            try:
                module = ep.load()
            except Exception as e:
                self.infos.append(PluginInfo(name=ep.name, source="entrypoint", location=ep.value,
                                             error=f"failed to import: {_one_line(e)}"))
                continue
            version = ep.dist.version if getattr(ep, "dist", None) else None
            self.add_module(module, ep.name, "entrypoint", ep.value, version)

    def load_store(self, view: View, load: bool = True, skipped: str | None = None) -> None:
        """The store's plugins/*.py at `view` (a trusted view: trust.trusted_view), if its
        canonry.yaml trusts local plugins. With `load` False they are only noted, as not
        loaded for the reason `skipped`."""
        config = trusted_config(view)
        self.required = list(config.get("required_plugins", []))
        names = [n for n in view.names("plugins") if n.endswith(".py") and not n.startswith("_")]
        self.store_plugins = [n[:-3] for n in names]
        if not config.get("trust_local_plugins", False):
            self.store_skipped = "it is in the store's plugins/ folder, whose canonry.yaml does not " \
                                 "set trust_local_plugins: true"
            return
        if not load:
            self.store_skipped = skipped
            return
        for name in sorted(names):
            entry = view.storage.lookup(view.root, f"plugins/{name}")
            code = view.storage.blob(entry[1]).decode("utf-8")
            self.load_file(f"<store>/plugins/{name}", "store", name[:-3], code)

    def missing_required(self) -> list[str]:
        """One line per plugin the trusted canonry.yaml requires that is not loaded, saying why."""
        out = []
        for name in self.required:
            if self.pm.get_plugin(name) is not None:
                continue
            errors = [i.error for i in self.infos if i.name == name and i.error]
            if self.off:
                why = self.off
            elif not self.allowed(name):
                why = "CANONRY_PLUGINS leaves it out"
            elif errors:
                why = errors[-1]
            elif name in self.store_plugins and self.store_skipped:
                why = self.store_skipped
            else:
                why = "no plugin of that name was found (built in, installed, in the store's trusted " \
                      "plugins/ folder or in --plugins-dir)"
            out.append(f"required plugin {name!r} is not loaded: {why}")
        return out

    # ---- calling -------------------------------------------------------------------------------
    def impls(self, hook_name: str) -> list[tuple[str, Callable[..., Any], list[str]]]:
        """(plugin name, function, argnames) of every implementation of a hook that is not a
        wrapper, in pluggy's call order. To call them, use `callers`."""
        caller = getattr(self.pm.hook, hook_name)
        return [(impl.plugin_name, impl.function, list(impl.argnames)) for impl in
                reversed(caller.get_hookimpls()) if not (impl.hookwrapper or impl.wrapper)]

    def has_impls(self, *hook_names: str) -> bool:
        """Whether any plugin implements (or wraps) one of these hooks."""
        return any(getattr(self.pm.hook, h).get_hookimpls() for h in hook_names)

    def callers(self, hook_name: str) -> list[tuple[str, Caller]]:
        """(plugin name, caller) for each implementation of a hook, in pluggy's call order.

        Each caller is a pluggy HookCaller that runs that one implementation through pluggy,
        wrapped by every wrapper of the hook: call it with all the hook's keyword arguments;
        it returns a list of results (`first_result` takes the answer). Calling them one by one
        keeps each plugin's failure, refusal and time its own. A hook with wrappers only is
        one caller, named after them."""
        hook = getattr(self.pm.hook, hook_name)
        impls = hook.get_hookimpls()
        plain = [i for i in reversed(impls) if not (i.hookwrapper or i.wrapper)]
        if not plain:
            wrappers = [i.plugin_name for i in reversed(impls)]
            return [(",".join(wrappers), hook)] if wrappers else []
        out: list[tuple[str, Caller]] = []
        for impl in plain:
            others = [i.plugin for i in plain if i.plugin is not impl.plugin]
            out.append((impl.plugin_name, self.pm.subset_hook_caller(hook_name, others)))
        return out

    def actions(self) -> dict:
        """Every plugin's automation actions; a name two plugins give goes to the one pluggy
        calls first (tryfirst, else the later loaded: --plugins-dir before the built-ins)."""
        actions: dict = {}
        for name, caller in self.callers("automation_actions"):
            try:
                for found in caller():
                    for key, value in (found or {}).items():
                        actions.setdefault(key, value)
            except Exception as e:
                _warn(f"plugin {name}: automation_actions failed: {_one_line(e)}")
        return actions


def first_result(results: list) -> Any:
    """What one implementation answered, from its caller's list of results (pluggy leaves out
    None; a wrapper may change the list): the first that is not empty, else None."""
    return next((r for r in results if r), None)


def load(view: View | None = None, plugins_dir: str | None = None, builtin: bool = True,
         entry_points: bool = True, local: bool = True, local_skipped: str | None = None) -> Plugins:
    """Load plugins. `view` must be a trusted view (trust.trusted_view: the store branch head,
    never a proposal's): its canonry.yaml says whether its plugins/ load and which plugins are
    required. With `local` False the store's plugins are not loaded (`local_skipped` says why)."""
    plugins = Plugins()
    if builtin and builtin_dir().is_dir():
        plugins.load_dir(str(builtin_dir()), "builtin")
    if entry_points:
        plugins.load_entry_points()
    if view is not None and view.commit is not None:
        plugins.load_store(view, load=local, skipped=local_skipped)
    if plugins_dir:
        plugins.load_dir(plugins_dir, "dir")
    for info in plugins.infos:
        if info.error and info.name not in plugins.required:  # a required one: writes refuse, saying why
            _warn(f"plugin {info.name} ({info.source}) skipped: {info.error}")
    return plugins


def _check_named_after_hooks(pm: pluggy.PluginManager, module) -> None:
    """Each implementation must be a function named after its hook (no `specname=`): `callers`
    sets one plugin's implementation apart from the others by that name."""
    for hook in pm.get_hookcallers(module) or []:
        if not hasattr(module, hook.name):
            fn = next(i.function for i in hook.get_hookimpls() if i.plugin is module)
            raise pluggy.PluginValidationError(
                module, f"{fn.__name__} implements hook {hook.name} (specname): name the function "
                        f"{hook.name}")


def _parse_filter(text: str) -> tuple[set, set]:
    allow, block = set(), set()
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if item.startswith("-"):
            block.add(item[1:])
        else:
            allow.add(item.lstrip("+"))
    return allow, block


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}"[:300]


def _warn(message: str) -> None:
    sys.stderr.write(f"canonry: warning: {message}\n")
