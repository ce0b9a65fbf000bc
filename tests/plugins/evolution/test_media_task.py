"""The media task's refusal path logs its warning (it used a key logging reserves)."""

from __future__ import annotations

import logging
import uuid

from guiche_evolution.media import store_media

from guiche.runtime.services import SERVICES

from .test_flow import client, setup  # noqa: F401  (fixtures)


async def test_media_not_stored_is_a_warning_not_a_crash(
    client,  # noqa: F811
    setup,  # noqa: F811
    caplog,
):
    services = client.server.app[SERVICES]
    missing = str(uuid.uuid4())  # message_media answers NotFound, an ApiError
    with caplog.at_level(logging.WARNING, logger="guiche.plugin.evolution"):
        await store_media(str(setup.company.tenant_id), str(setup.channel_id), missing, services)
    [record] = [r for r in caplog.records if r.getMessage() == "inbound media not stored"]
    assert record.message_id == missing
    assert record.code == "not_found"
