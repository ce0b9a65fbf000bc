"""Fixtures for the plugin-system tests: enabling a plugin for a tenant straight in the DB
(for runner tests that do not go through the HTTP API)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from guiche.models import TenantPlugin

EnablePlugin = Callable[..., Awaitable[None]]


@pytest.fixture
def enable_plugin() -> EnablePlugin:
    async def enable(
        tenant_id: uuid.UUID,
        plugin: str,
        settings: dict[str, Any] | None = None,
        *,
        enabled: bool = True,
    ) -> None:
        await TenantPlugin.raw(
            "INSERT INTO tenant_plugins (tenant, plugin, enabled, settings) "
            "VALUES ({}, {}, {}, {}::jsonb) ON CONFLICT (tenant, plugin) DO UPDATE "
            "SET enabled = EXCLUDED.enabled, settings = EXCLUDED.settings",
            tenant_id,
            plugin,
            enabled,
            orjson.dumps(settings or {}).decode(),
        )

    return enable
