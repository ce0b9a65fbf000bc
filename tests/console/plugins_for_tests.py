"""In-process plugins for the console tests: one adds console pages (the
`guiche_console_pages` hook), one a QR-linked channel type."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from aiohttp import web
from pydantic import BaseModel, Field, SecretStr

from guiche.channels import CAP_QR_SESSION
from guiche.plugin import (
    ChannelSpec,
    ConsolePage,
    PermissionGrant,
    PluginInfo,
    RouteSpec,
    endpoint,
    hookimpl,
)
from guiche.testing import FakeAdapter

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


class QrCredentials(BaseModel):
    """What the setup form asks for (drawn from this model's JSON Schema)."""

    server_url: str = Field(title="Server URL", description="Where the session server runs")
    api_key: SecretStr = Field(title="API key")
    instance: str | None = Field(None, title="Instance")


QR_PNG = (  # a 1×1 PNG stands in for the provider's QR code
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


class QrChannelPlugin:
    """A QR-linked channel type (like Evolution's): the console links its phone through
    `GET /api/v1/plugins/qrfake/channels/{id}/qrcode`."""

    name = "qrfake"
    channel_type = "qrfake"

    def __init__(self) -> None:
        self.connected: set[str] = set()

        class Adapter(FakeAdapter):
            config_model: ClassVar[type[BaseModel]] = QrCredentials
            capabilities: ClassVar[frozenset[str]] = frozenset({CAP_QR_SESSION})

        self.adapter_class = Adapter

    @hookimpl
    def guiche_plugin_info(self) -> PluginInfo:
        return PluginInfo(name=self.name, version="1.0", description="QR-linked test channel")

    @hookimpl
    def guiche_channel_types(self) -> list[ChannelSpec]:
        return [
            ChannelSpec(
                type=self.channel_type,
                adapter=self.adapter_class,
                credentials_model=QrCredentials,
                capabilities=self.adapter_class.capabilities,
                description="QR test channel",
            )
        ]

    @hookimpl
    def guiche_routes(self) -> list[RouteSpec]:
        plugin = self

        @endpoint("channels.manage")
        async def qrcode(request: web.Request) -> dict[str, Any]:
            channel_id = request.match_info["id"]
            if channel_id in plugin.connected:
                return {"channel_id": channel_id, "state": "connected"}
            return {"channel_id": channel_id, "state": "qrcode", "qr_code": QR_PNG}

        return [RouteSpec("GET", "channels/{id}/qrcode", qrcode, name="qrcode")]
