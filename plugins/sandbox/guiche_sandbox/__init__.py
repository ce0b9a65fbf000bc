"""Guichê plugin `sandbox`: a channel with no provider, for trying Guichê end to end.

`guiche run` gives the demo company one sandbox channel and prints the `curl` that posts
a customer's message to it. Built only on the public plugin API.
"""

from __future__ import annotations

from guiche.plugin import ChannelSpec, PluginInfo, hookimpl
from guiche_sandbox.adapter import (
    CHANNEL_TYPE,
    SECRET_HEADER,
    SandboxAdapter,
    SandboxConfig,
)

__all__ = ["CHANNEL_TYPE", "SECRET_HEADER", "SandboxAdapter", "SandboxConfig"]


@hookimpl
def guiche_plugin_info() -> PluginInfo:
    return PluginInfo(
        name="sandbox",
        version="1.0.0",
        description="A channel with no provider: post customers' messages to its webhook",
    )


@hookimpl
def guiche_channel_types() -> list[ChannelSpec]:
    return [
        ChannelSpec(
            CHANNEL_TYPE,
            SandboxAdapter,
            SandboxConfig,
            SandboxAdapter.capabilities,
            "Sandbox (no provider: messages posted to its webhook)",
        )
    ]
