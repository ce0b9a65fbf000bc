"""`guiche.plugin.publish_event`: a plugin's own event is recorded in the tenant's log
(resync and log readers see it), reaches that tenant's sockets live, never another
tenant's, and may not impersonate one of core's event types."""

from __future__ import annotations

import pytest

from guiche.foundation.errors import ValidationFailed
from guiche.plugin import publish_event
from guiche.runtime.services import SERVICES
from tests.conftest import login

from .conftest import connect


async def test_plugin_event_is_logged_and_reaches_only_its_tenant(client, make_company):
    company = await make_company()
    other = await make_company()
    mine = await connect(client, company.owner)
    theirs = await connect(client, other.owner)
    services = client.server.app[SERVICES]

    recorded = await publish_event(
        services, company.tenant_id, "campaign.progress", {"sent": 3, "total": 10}
    )

    frame = await mine.next("campaign.progress")
    assert frame["data"] == {"sent": 3, "total": 10} and frame["seq"] == recorded.seq
    assert not [f for f in await theirs.drain() if f.get("type") == "campaign.progress"]
    headers = await login(client, company.owner)
    resp = await client.get(f"/api/v1/events?after={recorded.seq - 1}", headers=headers)
    logged = [e for e in (await resp.json())["items"] if e["type"] == "campaign.progress"]
    assert [e["data"]["sent"] for e in logged] == [3]
    resp = await client.get(
        f"/api/v1/events?after={recorded.seq - 1}", headers=await login(client, other.owner)
    )
    assert not [e for e in (await resp.json())["items"] if e["type"] == "campaign.progress"]


@pytest.mark.parametrize("bad", ["message.new", "channel.state", "Campaign.Progress", "progress"])
async def test_core_types_and_malformed_names_are_refused(client, make_company, bad):
    company = await make_company()
    services = client.server.app[SERVICES]
    with pytest.raises(ValidationFailed):
        await publish_event(services, company.tenant_id, bad, {})
