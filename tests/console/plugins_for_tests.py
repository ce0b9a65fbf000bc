"""An in-process plugin that adds a console page (the `guiche_console_pages` hook)."""

from __future__ import annotations

from pathlib import Path

from guiche.plugin import ConsolePage, PermissionGrant, PluginInfo, hookimpl

BOARD_DIR = Path(__file__).parent / "board_console"


class BoardPlugin:
    name = "boardplug"

    @hookimpl
    def guiche_plugin_info(self) -> PluginInfo:
        return PluginInfo(name=self.name, version="1.0", description="A console page for tests")

    @hookimpl
    def guiche_permissions(self) -> list[PermissionGrant]:
        return [PermissionGrant("boardplug.secret", ("owner",), "See the secret page")]

    @hookimpl
    def guiche_console_pages(self) -> list[ConsolePage]:
        return [
            ConsolePage("board", "Board", BOARD_DIR, titles={"pt-BR": "Quadro"}),
            ConsolePage("secret", "Secret", BOARD_DIR, permission="boardplug.secret"),
        ]


class BrokenPagePlugin:
    """Declares a page whose module does not exist: start-up must fail naming it."""

    name = "brokenpage"

    @hookimpl
    def guiche_plugin_info(self) -> PluginInfo:
        return PluginInfo(name=self.name, version="1.0")

    @hookimpl
    def guiche_console_pages(self) -> list[ConsolePage]:
        return [ConsolePage("gone", "Gone", BOARD_DIR, module="missing.js")]
