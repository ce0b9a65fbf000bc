"""Guichê plugin `baileys_bridge`: WhatsApp Web numbers through a Node sidecar running
Baileys (`../sidecar`), linked by QR code or pairing code.

Registered from the entry point `baileys_bridge = "guiche_baileys_bridge"`; built only
on Guichê's public plugin API. The channel type is `baileys`; the service
`baileys_bridge.bridge` runs the sessions.
"""

from __future__ import annotations

from guiche.plugin import (
    ChannelSpec,
    PermissionGrant,
    PluginInfo,
    RouteSpec,
    ServiceSpec,
    hookimpl,
)
from guiche_baileys_bridge.adapter import BaileysAdapter
from guiche_baileys_bridge.bridge import run_bridge
from guiche_baileys_bridge.config import CHANNEL_TYPE, BaileysConfig, OperatorSettings
from guiche_baileys_bridge.routes import (
    CONNECT_PATH,
    LOGOUT_PATH,
    PAIRING_PATH,
    PERMISSION,
    QR_PNG_PATH,
    QRCODE_PATH,
    SESSION_PATH,
    connect,
    logout,
    pairing_code,
    qr_code,
    qr_png,
    session_state,
)

NAME = "baileys_bridge"
VERSION = "1.0.0"


@hookimpl
def guiche_plugin_info() -> PluginInfo:
    return PluginInfo(
        name=NAME,
        version=VERSION,
        description="WhatsApp Web numbers through a Baileys sidecar (QR or pairing code)",
        operator_settings=OperatorSettings,
    )


@hookimpl
def guiche_channel_types() -> list[ChannelSpec]:
    return [
        ChannelSpec(
            type=CHANNEL_TYPE,
            adapter=BaileysAdapter,
            credentials_model=BaileysConfig,
            capabilities=BaileysAdapter.capabilities,
            description="WhatsApp Web (Baileys) session linked by QR code",
        )
    ]


@hookimpl
def guiche_permissions() -> list[PermissionGrant]:
    return [
        PermissionGrant(
            PERMISSION,
            ("owner", "admin", "supervisor"),
            "See a WhatsApp Web session's state and QR code, pair or log out its phone",
        )
    ]


@hookimpl
def guiche_routes() -> list[RouteSpec]:
    return [
        RouteSpec("GET", SESSION_PATH, session_state, name="session"),
        RouteSpec("GET", QR_PNG_PATH, qr_png, name="qr_png"),
        RouteSpec("GET", QRCODE_PATH, qr_code, name="qrcode"),
        RouteSpec("POST", PAIRING_PATH, pairing_code, name="pairing_code"),
        RouteSpec("POST", LOGOUT_PATH, logout, name="logout"),
        RouteSpec("POST", CONNECT_PATH, connect, name="connect"),
    ]


@hookimpl
def guiche_services() -> list[ServiceSpec]:
    return [ServiceSpec("bridge", run_bridge)]


@hookimpl
def guiche_piccolo_app() -> str:
    return "guiche_baileys_bridge.piccolo_app"


__all__ = ["CHANNEL_TYPE", "BaileysAdapter", "BaileysConfig"]
