"""The plugin manager: loads plugins once, from four places, each reported and isolated.

1. built-in plugins (the `plugins/` folder shipped with canonry),
2. installed packages' entry points in group `canonry`,
3. the store's own `plugins/*.py`, read from the store branch — only when its canonry.yaml
   says `trust_local_plugins: true` (nothing from a branch under review runs implicitly),
4. a folder given with `canonry --plugins-dir DIR` (or `plugins_dir=` in the API).

CANONRY_PLUGINS filters by name: `a,b` loads only a and b; `-c` blocks c; both can mix.
A plugin that fails to import or register is reported and skipped; the rest load.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pluggy

from canonry.automation import hookspecs

__all__ = ["PluginInfo", "Plugins", "builtin_dir", "call", "load"]


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
    def __init__(self):
        self.pm = pluggy.PluginManager("canonry")
        self.pm.add_hookspecs(hookspecs)
        self.infos: list[PluginInfo] = []
        self._filter = _parse_filter(os.environ.get("CANONRY_PLUGINS", ""))

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
            self.pm.check_pending()
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

    def load_store(self, view) -> None:
        """The store's plugins/*.py at the view's commit, if the store trusts local plugins."""
        if view.commit is None or not view.exists("canonry.yaml"):
            return
        config = view.store_config()
        if not config.get("trust_local_plugins", False):
            return
        for name in view.names("plugins"):
            if name.endswith(".py") and not name.startswith("_"):
                entry = view.storage.lookup(view.root, f"plugins/{name}")
                code = view.storage.blob(entry[1]).decode("utf-8")
                self.load_file(f"<store>/plugins/{name}", "store", name[:-3], code)

    # ---- calling -------------------------------------------------------------------------------
    def impls(self, hook_name: str):
        """(plugin name, function, argnames) of every implementation of a hook."""
        caller = getattr(self.pm.hook, hook_name)
        return [(impl.plugin_name, impl.function, impl.argnames) for impl in caller.get_hookimpls()]

    def has_impls(self, *hook_names: str) -> bool:
        return any(self.impls(h) for h in hook_names)

    def actions(self) -> dict:
        actions: dict = {}
        for name, fn, _argnames in self.impls("automation_actions"):
            try:
                actions.update(fn() or {})
            except Exception as e:
                _warn(f"plugin {name}: automation_actions failed: {_one_line(e)}")
        return actions


def call(fn, argnames, **kwargs):
    """Call a hook implementation with just the keyword arguments it declares."""
    return fn(**{k: v for k, v in kwargs.items() if k in argnames})


def load(view=None, plugins_dir: str | None = None, builtin: bool = True,
         entry_points: bool = True) -> Plugins:
    plugins = Plugins()
    if builtin and builtin_dir().is_dir():
        plugins.load_dir(str(builtin_dir()), "builtin")
    if entry_points:
        plugins.load_entry_points()
    if view is not None:
        plugins.load_store(view)
    if plugins_dir:
        plugins.load_dir(plugins_dir, "dir")
    for info in plugins.infos:
        if info.error:
            _warn(f"plugin {info.name} ({info.source}) skipped: {info.error}")
    return plugins


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
