"""Operator commands plugins add to the CLI (`guiche_commands`), collected and checked.

`guiche <plugin> <name> ...` runs one (see `guiche.cli`). Collected only when the CLI
is asked for a command it does not own, so core's own commands never import plugins.
"""

from __future__ import annotations

import inspect
import re
from typing import TYPE_CHECKING

from guiche.plugin_host.manager import PluginError
from guiche.specs import CommandSpec

if TYPE_CHECKING:
    from guiche.plugin_host.registry import PluginRegistry

HOOK = "guiche_commands"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


def collect_commands(registry: PluginRegistry) -> dict[str, dict[str, CommandSpec]]:
    """Every plugin's commands (plugin → name → spec); a PluginError naming the plugin
    on a bad one."""
    found: dict[str, dict[str, CommandSpec]] = {}
    hook = getattr(registry.pm.hook, HOOK, None)
    if hook is None:
        return found
    for impl in hook.get_hookimpls():
        plugin = impl.plugin_name
        try:
            value = impl.function()
        except Exception as exc:
            raise PluginError(f"Plugin {plugin!r}: {HOOK}() raised {exc!r}") from exc
        items = [value] if isinstance(value, CommandSpec) else list(value or ())
        commands: dict[str, CommandSpec] = {}
        for spec in items:
            if not isinstance(spec, CommandSpec):
                raise PluginError(
                    f"Plugin {plugin!r}: {HOOK}() must return CommandSpec items, "
                    f"got {type(spec).__name__}"
                )
            if not _NAME.match(spec.name) or spec.name in commands:
                raise PluginError(
                    f"Plugin {plugin!r}: command name {spec.name!r} is invalid or repeated"
                )
            if not inspect.iscoroutinefunction(spec.func):
                raise PluginError(f"Plugin {plugin!r}: command {spec.name!r} must be async def")
            commands[spec.name] = spec
        if commands:
            found[plugin] = commands
    return found
