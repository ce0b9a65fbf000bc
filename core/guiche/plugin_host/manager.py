"""Building the plugin manager: entry points in, loud failures out.

Built by the app/worker factory (never a module global), so tests can build one with
extra in-process plugins and every process validates the same set at start-up.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

import pluggy

from guiche import hookspecs
from guiche.specs import PROJECT

ENTRY_POINT_GROUP = "guiche.plugins"


class PluginError(Exception):
    """A plugin cannot be loaded; the message names it."""


def build_plugin_manager(
    *, blocked: Iterable[str] = (), extra: Iterable[tuple[str, Any]] = ()
) -> pluggy.PluginManager:
    """Load every `guiche.plugins` entry point (minus the block-list) and validate the hooks."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in blocked:
        pm.set_blocked(name)
    seen: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if pm.is_blocked(ep.name):
            continue
        if ep.name in seen:
            if seen[ep.name] == ep.value:  # the same distribution found twice on sys.path
                continue
            raise PluginError(f"Duplicate plugin name {ep.name!r}: {seen[ep.name]} and {ep.value}")
        seen[ep.name] = ep.value
        try:
            module = ep.load()
        except Exception as exc:
            raise PluginError(f"Plugin {ep.name!r} ({ep.value}) failed to load: {exc!r}") from exc
        _register(pm, ep.name, module)
    for name, obj in extra:
        if pm.is_blocked(name):
            continue
        if pm.has_plugin(name) or name in seen:
            raise PluginError(f"Duplicate plugin name {name!r}")
        _register(pm, name, obj)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"Plugin {pm.get_name(exc.plugin)!r} is invalid: {exc}") from exc
    return pm


def _register(pm: pluggy.PluginManager, name: str, obj: Any) -> None:
    try:
        pm.register(obj, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"Plugin {name!r} is invalid: {exc}") from exc
    except ValueError as exc:
        raise PluginError(f"Plugin {name!r} could not be registered: {exc}") from exc
