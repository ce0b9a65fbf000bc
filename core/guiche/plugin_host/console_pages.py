"""Pages plugins add to the web console (`guiche_console_pages`), collected and checked.

A page is an ES module in a folder of the plugin's own package, served by core at
`/console/plugins/<plugin>/<file>`; the console lists the pages of the plugins the
caller's company enabled (`GET /api/v1/console/pages`) and mounts the module's default
export into its main area. Checked at start-up like every registration hook, so a
bad page fails with the plugin's name instead of a blank screen later.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from guiche.plugin_host.manager import PluginError
from guiche.specs import ConsolePage

if TYPE_CHECKING:
    from guiche.plugin_host.registry import PluginRegistry

HOOK = "guiche_console_pages"
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def collect_console_pages(registry: PluginRegistry) -> dict[str, list[ConsolePage]]:
    """Every plugin's pages by plugin name; a PluginError naming the plugin on a bad one."""
    pages: dict[str, list[ConsolePage]] = {}
    hook = getattr(registry.pm.hook, HOOK, None)
    if hook is None:
        return pages
    for impl in hook.get_hookimpls():
        plugin = impl.plugin_name
        try:
            value = impl.function()
        except Exception as exc:
            raise PluginError(f"Plugin {plugin!r}: {HOOK}() raised {exc!r}") from exc
        items = [value] if isinstance(value, ConsolePage) else list(value or ())
        seen: set[str] = set()
        for page in items:
            _check(plugin, page, seen)
        pages[plugin] = items
    return pages


def _check(plugin: str, page: object, seen: set[str]) -> None:
    if not isinstance(page, ConsolePage):
        raise PluginError(
            f"Plugin {plugin!r}: {HOOK}() must return ConsolePage items, got {type(page).__name__}"
        )
    if not _SLUG.match(page.slug) or page.slug in seen:
        raise PluginError(
            f"Plugin {plugin!r}: console page slug {page.slug!r} is invalid or repeated"
        )
    seen.add(page.slug)
    if not _FILE.match(page.module) or not (Path(page.static_dir) / page.module).is_file():
        raise PluginError(
            f"Plugin {plugin!r}: console page {page.slug!r}: module {page.module!r} "
            f"not found in {page.static_dir}"
        )
