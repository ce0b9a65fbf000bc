"""A campaign on a real `meta_cloud` channel against the fake Graph API: free text is
refused for cold contacts (24-hour rule), templates go, Meta's status webhooks and an
opt-out keyword reach the ledger."""

from __future__ import annotations

from typing import Any

from guiche_campaigns import store

from tests.conftest import login
from tests.plugins.meta_cloud.conftest import (  # noqa: F401 - fixtures, used by name
    FIXTURE_PHONE_ID,
    client,
    fixture_bytes,
    graph,
    make_meta_channel,
    now_ts,
    post_channel_webhook,
    rewrite,
    settle,
    unique_phone_id,
    with_timestamps,
)

from .conftest import BASE, ledger_rows

FIXTURE_WAMIDS = (  # the ids in webhook_status_delivered.json and webhook_status_read.json
    "wamid.HBgNNTUxMTk3NjU0MzIxMBUCABIYFDlCM0JCM0Y5NDM2OEU4QjE2NDk3AA==",
    "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDlENjVBNUUxMEExQkJFODExMjI0AA==",
)
TEMPLATE = {
    "type": "template",
    "template": {
        "name": "oferta",
        "language": "pt_BR",
        "components": [
            {"type": "body", "parameters": [{"type": "text", "value": "{{first_name}}"}]}
        ],
    },
}
CSV = "phone,name\n5511976543210,Ana Souza\n(11) 98765-4321,Bruno Lima\n"


async def _campaign(app: Any, headers: dict, channel_id: Any, content: dict) -> str:
    resp = await app.post(
        f"{BASE}/campaigns",
        json={
            "name": "Oferta",
            "channel_id": str(channel_id),
            "content": content,
            "rate_per_minute": 6000,
            "jitter": 0,
        },
        headers=headers,
    )
    assert resp.status == 201, await resp.text()
    campaign_id = (await resp.json())["id"]
    resp = await app.post(
        f"{BASE}/campaigns/{campaign_id}/targets/import",
        data=CSV.encode(),
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert (await resp.json())["added"] == 2
    resp = await app.post(f"{BASE}/campaigns/{campaign_id}/start", headers=headers)
    assert resp.status == 200, await resp.text()
    await settle(app)
    return campaign_id


async def test_a_template_campaign_on_meta_cloud_end_to_end(
    client,  # noqa: F811 - the imported fixtures, requested by name
    graph,  # noqa: F811
    make_company,
    make_meta_channel,  # noqa: F811
):
    company = await make_company()
    phone_id = unique_phone_id()
    channel_id = await make_meta_channel(company, phone_number_id=phone_id)
    headers = await login(client, company.owner)
    resp = await client.put(
        "/api/v1/plugins/campaigns",
        json={"enabled": True, "settings": {"channel_rate_per_minute": 60_000.0}},
        headers=headers,
    )
    assert resp.status == 200

    cold = await _campaign(client, headers, channel_id, {"type": "text", "text": "Oi"})
    assert graph.sends() == []
    rows = await ledger_rows(cold)
    assert {store.loads(r["reason"])["code"] for r in rows} == {"outside_customer_care_window"}

    campaign_id = await _campaign(client, headers, channel_id, TEMPLATE)
    sends = graph.sends()
    assert sorted(s["to"] for s in sends) == ["5511976543210", "5511987654321"]
    assert {s["type"] for s in sends} == {"template"}
    names = {s["template"]["components"][0]["parameters"][0]["text"] for s in sends}
    assert names == {"Ana", "Bruno"}

    ana = next(s for s in sends if s["to"] == "5511976543210")
    wamid = graph.sent_wamids[sends.index(ana)]
    for name in ("webhook_status_delivered.json", "webhook_status_read.json"):
        ids = dict.fromkeys(FIXTURE_WAMIDS, wamid)
        body = rewrite(fixture_bytes(name), **ids, **{FIXTURE_PHONE_ID: phone_id})
        body = with_timestamps(body, now_ts())
        assert (await post_channel_webhook(client, channel_id, body)).status == 200
    await settle(client)
    states = {r["phone"]: r["state"] for r in await ledger_rows(campaign_id)}
    assert states == {"+5511976543210": "read", "+5511987654321": "sent"}
    resp = await client.get(f"{BASE}/campaigns/{campaign_id}/report", headers=headers)
    report = await resp.json()
    assert report["delivery_rate"] == 0.5 and report["read_rate"] == 0.5
    # Meta reports pricing (billable, category), not an amount
    [cost] = report["cost"]
    assert (cost["billable_messages"], cost["categories"]) == (1, ["utility"])

    # Bruno answers PARAR: opted out on this channel, confirmed (inside his window now)
    inbound = rewrite(
        with_timestamps(fixture_bytes("webhook_text.json"), now_ts()),
        **{
            "Oi, boa tarde! Comprei dia 10/03 e o pedido #4512 ainda não chegou. Podem"
            " verificar?": "Parar",
            FIXTURE_PHONE_ID: phone_id,
        },
    )
    assert (await post_channel_webhook(client, channel_id, inbound)).status == 200
    await settle(client)
    confirmation = graph.sends()[-1]
    assert confirmation["to"] == "5511987654321" and confirmation["type"] == "text"
    [bruno] = [r for r in await ledger_rows(campaign_id) if r["phone"] == "+5511987654321"]
    assert bruno["state"] == "replied" and bruno["opted_out_at"] is None  # finished: history
    resp = await client.get(f"{BASE}/opt-outs?channel_id={channel_id}", headers=headers)
    assert [o["phone"] for o in (await resp.json())["items"]] == ["+5511987654321"]
