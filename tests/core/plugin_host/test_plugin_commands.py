"""The `guiche_commands` hook: plugins' CLI commands collected and checked, parsed only
when the CLI is asked for a command core does not own."""

from __future__ import annotations

from typing import Any

import pytest

from guiche.cli import build_parser, wants_plugin_commands
from guiche.plugin import CommandSpec, PluginInfo, hookimpl
from guiche.plugin_host.commands import collect_commands
from guiche.plugin_host.manager import PluginError, build_plugin_manager
from guiche.plugin_host.registry import PluginRegistry


class Cmds:
    def __init__(self, name: str, specs: list[Any]) -> None:
        self.name, self.specs = name, specs

    @hookimpl
    def guiche_plugin_info(self) -> PluginInfo:
        return PluginInfo(name=self.name, version="1")

    @hookimpl
    def guiche_commands(self) -> list[Any]:
        return self.specs


async def does(services: Any, args: Any) -> int:
    return 0


def collected(*plugins: Cmds) -> dict[str, dict[str, CommandSpec]]:
    extra = [(plugin.name, plugin) for plugin in plugins]
    return collect_commands(PluginRegistry.from_manager(build_plugin_manager(extra=extra)))


def test_commands_are_grouped_by_plugin() -> None:
    found = collected(Cmds("a", [CommandSpec("sync", "s", does)]), Cmds("b", []))
    assert set(found["a"]) == {"sync"} and "b" not in found
    assert "catalog" in found["chatguru"]  # an installed first-party plugin's


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([CommandSpec("go", "", does), CommandSpec("go", "", does)], "invalid or repeated"),
        ([CommandSpec("Bad Name", "", does)], "invalid or repeated"),
        ([CommandSpec("sync", "", lambda services, args: 0)], "async def"),
        (["not a spec"], "CommandSpec items"),
    ],
)
def test_bad_commands_fail_naming_the_plugin(specs: list[Any], message: str) -> None:
    with pytest.raises(PluginError, match=f"'bad'.*{message}"):
        collected(Cmds("bad", specs))


def test_core_commands_never_load_plugins() -> None:
    assert not wants_plugin_commands(["run"])
    assert not wants_plugin_commands(["--help", "tenants", "list"])
    assert wants_plugin_commands(["chatguru", "catalog"])
    assert wants_plugin_commands([])  # bare `guiche`: the usage lists every command
    usage = build_parser(with_plugins=True).format_help()
    assert "chatguru" in usage
    assert "chatguru" not in build_parser().format_help()
    args = build_parser(with_plugins=True).parse_args(
        ["chatguru", "catalog", "--company", "loja"]
    )
    assert args.company == "loja" and args.plugin_command[1].name == "catalog"
