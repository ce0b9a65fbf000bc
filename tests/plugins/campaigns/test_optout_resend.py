"""Opt-out (keywords, API, import), replies, and resending to the failed only."""

from __future__ import annotations

from guiche_campaigns import store

from guiche.channels import PermanentSendError

from .conftest import BASE, csv_of, fetch, ledger_rows, settle, text_message


async def test_an_opt_out_keyword_opts_out_answers_and_is_never_sent(
    client, make_shop, fake_plugin, post_webhook
):
    shop = await make_shop()
    campaign = await shop.create(client)
    await shop.csv(client, campaign["id"], csv_of(3))
    inbound = text_message("  Cancelár! ", phone="5511910000001")
    assert (await post_webhook(shop.channel, [inbound])).status == 200
    await settle(client)
    [reply] = fake_plugin.provider.sent
    assert reply.to.phone == "+5511910000001" and "não receberá" in reply.text
    optouts = await shop.get(client, f"opt-outs?channel_id={shop.channel.id}")
    assert [(o["phone"], o["source"]) for o in optouts["items"]] == [("+5511910000001", "keyword")]

    await shop.act(client, campaign["id"], "start")
    await settle(client)
    phones = [m.to.phone for m in fake_plugin.provider.sent[1:]]
    assert sorted(phones) == ["+5511910000000", "+5511910000002"]
    states = {r["phone"]: r["state"] for r in await ledger_rows(campaign["id"])}
    assert states["+5511910000001"] == "opted_out"

    # a later campaign counts the opted-out phone at import and skips it
    later = await shop.create(client)
    added = await shop.csv(client, later["id"], csv_of(3))
    assert (added["added"], added["opted_out"]) == (2, 1)


async def test_not_a_keyword_is_a_reply_and_the_api_manages_opt_outs(
    client, make_shop, fake_plugin, post_webhook
):
    shop = await make_shop()
    campaign = await shop.create(client)
    await shop.csv(client, campaign["id"], csv_of(2))
    await shop.act(client, campaign["id"], "start")
    await settle(client)
    inbound = text_message("quero sair dessa lista? me liga", phone="5511910000000")
    assert (await post_webhook(shop.channel, [inbound])).status == 200
    await settle(client)
    assert len(fake_plugin.provider.sent) == 2  # no confirmation: not a keyword
    states = {r["phone"]: r["state"] for r in await ledger_rows(campaign["id"])}
    assert states == {"+5511910000000": "replied", "+5511910000001": "sent"}

    resp = await client.post(
        f"{BASE}/opt-outs",
        json={"channel_id": str(shop.channel.id), "phones": ["(11) 91000-0001", "abc"]},
        headers=shop.headers,
    )
    body = await resp.json()
    assert (body["added"], body["invalid"]) == (1, 1)
    [row] = [r for r in await ledger_rows(campaign["id"]) if r["phone"] == "+5511910000001"]
    assert row["opted_out_at"] is None  # a finished campaign's ledger is history
    resp = await client.post(
        f"{BASE}/opt-outs/import?channel_id={shop.channel.id}",
        data=b"phone\n+5511910000009\n",
        headers={**shop.headers, "Content-Type": "text/csv"},
    )
    assert (await resp.json())["added"] == 1
    resp = await client.delete(
        f"{BASE}/opt-outs?channel_id={shop.channel.id}&phone=%2B5511910000009",
        headers=shop.headers,
    )
    assert resp.status == 204
    listed = await shop.get(client, f"opt-outs?channel_id={shop.channel.id}")
    assert [o["phone"] for o in listed["items"]] == ["+5511910000001"]
    report = await shop.get(client, f"campaigns/{campaign['id']}/report")
    assert report["counts"]["replied"] == 1 and report["reply_rate"] == 0.5


async def test_resend_failed_runs_again_over_the_failed_only(client, make_shop, fake_plugin):
    shop = await make_shop()
    campaign = await shop.create(client)
    await shop.csv(client, campaign["id"], csv_of(5))
    fake_plugin.provider.fail_next(
        PermanentSendError("number not on WhatsApp", code="not_on_whatsapp"),
        PermanentSendError("number not on WhatsApp", code="not_on_whatsapp"),
    )
    await shop.act(client, campaign["id"], "start")
    await settle(client)
    rows = await ledger_rows(campaign["id"])
    failed = sorted(r["phone"] for r in rows if r["state"] == "failed")
    assert len(failed) == 2 and len(fake_plugin.provider.sent) == 3
    reasons = [store.loads(r["reason"]) for r in rows if r["state"] == "failed"]
    assert {reason["code"] for reason in reasons} == {"not_on_whatsapp"}
    page = await shop.get(client, f"campaigns/{campaign['id']}/ledger?state=failed")
    assert sorted(i["phone"] for i in page["items"]) == failed

    again = await shop.act(client, campaign["id"], "resend-failed")
    assert again["run"] == 2 and again["counts"]["pending"] == 2
    await settle(client)
    resent = sorted(m.to.phone for m in fake_plugin.provider.sent[3:])
    assert resent == failed
    run2 = [r for r in await ledger_rows(campaign["id"]) if r["run"] == 2]
    assert {r["state"] for r in run2} == {"sent"}
    body = await shop.get(client, f"campaigns/{campaign['id']}")
    assert body["status"] == "finished"
    await shop.act(client, campaign["id"], "resend-failed", status=409)
    report = await shop.get(client, f"campaigns/{campaign['id']}/report")
    assert report["runs"] == 2 and report["counts"]["failed"] == 2 and report["counts"]["sent"] == 5
    assert await fetch("SELECT 1 FROM campaign_targets WHERE run = 3") == []


async def test_opt_outs_belong_to_one_company(client, make_shop, post_webhook):
    mine = await make_shop()
    theirs = await make_shop()
    resp = await client.post(
        f"{BASE}/opt-outs",
        json={"channel_id": str(mine.channel.id), "phones": ["+5511910000000"]},
        headers=theirs.headers,
    )
    assert resp.status == 422  # not their channel
    resp = await client.post(
        f"{BASE}/opt-outs",
        json={"channel_id": str(mine.channel.id), "phones": ["+5511910000000"]},
        headers=mine.headers,
    )
    assert resp.status == 200
    listed = await theirs.get(client, f"opt-outs?channel_id={mine.channel.id}")
    assert listed["items"] == []
    resp = await client.delete(
        f"{BASE}/opt-outs?channel_id={mine.channel.id}&phone=%2B5511910000000",
        headers=theirs.headers,
    )
    assert resp.status == 204
    listed = await mine.get(client, f"opt-outs?channel_id={mine.channel.id}")
    assert [o["phone"] for o in listed["items"]] == ["+5511910000000"]
    # their customer's keyword on their channel opts out nobody of mine
    inbound = text_message("SAIR", phone="5511910000001")
    assert (await post_webhook(theirs.channel, [inbound])).status == 200
    await settle(client)
    listed = await mine.get(client, f"opt-outs?channel_id={mine.channel.id}")
    assert [o["phone"] for o in listed["items"]] == ["+5511910000000"]
