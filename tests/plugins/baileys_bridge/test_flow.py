"""The `baileys` channel end to end through the real app and the bridge service, with a
fake sidecar on real TCP: start → auth stored encrypted → QR (JSON, PNG, `channel.qr`
event, channel state) → open → inbound (text, image into core storage) → reply (quoted)
→ acks → logged out; restarts resume with the stored auth; tenancy of the routes."""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

import orjson
from guiche_baileys_bridge.adapter import SECRET_HEADER
from guiche_baileys_bridge.bridge import start_sidecar
from guiche_baileys_bridge.config import OperatorSettings
from guiche_baileys_bridge.tables import BaileysSession

from guiche.plugin import decrypt_json, load_channel
from guiche.runtime.services import SERVICES
from tests.conftest import login

from .conftest import Setup, eventually, fetch, load, operator_settings, settle


async def channel_state(channel_id: uuid.UUID) -> str:
    return (await fetch("SELECT state FROM channels WHERE id = {}", channel_id))[0]["state"]


async def session_row(channel_id: uuid.UUID) -> dict[str, Any]:
    return (
        await BaileysSession.raw("SELECT * FROM baileys_sessions WHERE channel_id = {}", channel_id)
    )[0]


async def events_of(tenant_id: uuid.UUID, type_: str) -> list[dict[str, Any]]:
    rows = await fetch(
        "SELECT data FROM events WHERE tenant = {} AND type = {} ORDER BY seq", tenant_id, type_
    )
    return [
        orjson.loads(row["data"]) if isinstance(row["data"], str) else row["data"] for row in rows
    ]


async def messages_of(channel_id: uuid.UUID) -> list[dict[str, Any]]:
    return await fetch(
        "SELECT * FROM messages WHERE channel = {} ORDER BY created_at, id", channel_id
    )


async def test_qr_open_inbound_reply_acks_and_logout(
    client, setup: Setup, fake_sidecar, run_bridge
):
    services = client.server.app[SERVICES]
    session = setup.session
    running = run_bridge(operator_settings(fake_sidecar.address))
    [start] = await fake_sidecar.wait_for("start", session)
    assert start["data"]["auth"] is None  # a new channel: Baileys makes fresh creds
    assert start["data"]["options"]["pace_ms"] == 0

    # the sidecar reports its auth state: stored encrypted, never in clear
    auth = {"creds": {"noiseKey": {"private": {"type": "Buffer", "data": "c2VjcmV0"}}}, "keys": {}}
    await fake_sidecar.push("auth", session, auth)
    row = await eventually(lambda: _with_auth(setup.channel_id))
    assert "c2VjcmV0" not in row["auth_encrypted"]
    assert decrypt_json(services, row["auth_encrypted"]) == auth

    # a QR: raw string and PNG through the API, a channel.qr event, the channel's state
    qr = load("bridge_qr.json")["data"]
    await fake_sidecar.push("qr", session, qr)
    url = f"/api/v1/plugins/baileys_bridge/channels/{session}"
    shown = await eventually(lambda: _json_if(client, f"{url}/session", setup.headers, "qr"))
    assert shown["qr"] == qr["qr"] and shown["state"] == "qr_required" and shown["running"]
    png = await client.get(f"{url}/qr.png", headers=setup.headers)
    assert png.status == 200 and png.content_type == "image/png"
    assert (await png.read()).startswith(b"\x89PNG")
    # the console's "Link phone" dialog reads the shape every QR channel answers
    console_qr = await (await client.get(f"{url}/qrcode", headers=setup.headers)).json()
    assert console_qr["state"] == "qr_required" and console_qr["qr_text"] == qr["qr"]
    assert base64.b64decode(console_qr["qr_code"]).startswith(b"\x89PNG")
    [event] = await eventually(lambda: events_of(setup.company.tenant_id, "channel.qr"))
    assert event["qr"] == qr["qr"] and event["channel_id"] == session
    await eventually(lambda: _state_is(setup.channel_id, "qr_required"))

    # the phone scans it
    await fake_sidecar.push("connection", session, load("bridge_connection_open.json")["data"])
    await eventually(lambda: _state_is(setup.channel_id, "connected"))
    shown = await (await client.get(f"{url}/session", headers=setup.headers)).json()
    assert (shown["me"], shown["qr"]) == ("5511912345678", None)
    assert shown["last_event_at"] is not None
    assert (await client.get(f"{url}/qr.png", headers=setup.headers)).status == 404
    linked = await (await client.get(f"{url}/qrcode", headers=setup.headers)).json()
    assert (linked["state"], linked["qr_code"]) == ("connected", None)

    # a customer writes; the agent replies quoting it
    await fake_sidecar.push("message", session, load("bridge_message_text.json")["data"])
    [inbound] = await eventually(lambda: messages_of(setup.channel_id))
    assert (inbound["direction"], inbound["body"]) == ("in", "Vocês abrem no sábado?")
    [contact] = await fetch("SELECT * FROM contacts WHERE id = {}", inbound["contact"])
    assert (contact["phone"], contact["name"]) == ("+5511987654321", "Ana Beatriz Souza")
    resp = await client.post(
        f"/api/v1/conversations/{inbound['conversation']}/messages",
        json={"type": "text", "text": "Abrimos sim!", "reply_to_message_id": str(inbound["id"])},
        headers=setup.headers,
    )
    assert resp.status == 202, await resp.text()
    reply_id = uuid.UUID((await resp.json())["id"])
    await settle(client)
    [send] = fake_sidecar.of("send", session)
    assert send["data"]["to"] == "5511987654321@s.whatsapp.net"
    assert send["data"]["content"] == {"text": "Abrimos sim!"}
    assert send["data"]["quoted"]["key"]["id"] == "3A4D0BC3C466A3E715AC"
    assert send["data"]["request_id"] == str(reply_id)
    [reply] = await fetch("SELECT * FROM messages WHERE id = {}", reply_id)
    assert reply["status"] == "sent" and reply["provider_message_id"].startswith("3EB0FAKE")

    # acks move it forward only
    for status, code in (("READ", 4), ("DELIVERY_ACK", 3)):
        ack = load("bridge_ack.json")["data"]
        ack.update(status=status, status_code=code)
        ack["key"]["id"] = reply["provider_message_id"]
        await fake_sidecar.push("ack", session, ack)
    await eventually(lambda: _status_is(reply_id, "read"))

    # an image: its bytes land in core storage
    await fake_sidecar.push("message", session, load("bridge_message_image.json")["data"])
    image = await eventually(lambda: _media_message(setup.channel_id))
    media = await client.get(f"/api/v1/messages/{image['id']}/media", headers=setup.headers)
    assert media.status == 200
    stored = await media.json()
    assert (stored["mime_type"], stored["size"]) == ("image/jpeg", 159)
    assert stored["sha256"] == load("bridge_message_image.json")["data"]["media"]["sha256"]
    data = await client.get(stored["download_url"], headers=setup.headers)
    assert (await data.read()).startswith(b"\xff\xd8")

    # logged out from the phone: state, alert, keys dropped, lease released
    await fake_sidecar.push("connection", session, load("bridge_connection_close.json")["data"])
    await eventually(lambda: _state_is(setup.channel_id, "qr_required"))
    [alert] = await eventually(lambda: events_of(setup.company.tenant_id, "channel.alert"))
    assert (alert["status_code"], alert["reason"]) == (401, "loggedOut")
    row = await eventually(lambda: _released(setup.channel_id))
    assert row["auth_encrypted"] == ""
    await asyncio.sleep(0.3)  # several rounds: an ended session is not restarted alone
    assert len(fake_sidecar.of("start", session)) == 1
    assert (await session_row(setup.channel_id))["owner"] == ""

    # the operator asks for a new QR
    resp = await client.post(f"{url}/connect", headers=setup.headers)
    assert resp.status == 200
    [_, again] = await fake_sidecar.wait_for("start", session, count=2)
    assert again["data"]["auth"] is None
    await running.halt()


async def test_a_restarted_bridge_resumes_the_session_with_its_stored_auth(
    client, setup: Setup, fake_sidecar, run_bridge
):
    first = run_bridge(operator_settings(fake_sidecar.address))
    await fake_sidecar.wait_for("start", setup.session)
    auth = {
        "creds": {"me": {"id": "5511912345678:1@s.whatsapp.net"}},
        "keys": {"session": {"a": 1}},
    }
    await fake_sidecar.push("auth", setup.session, auth)
    await eventually(lambda: _with_auth(setup.channel_id))
    await first.halt()
    assert fake_sidecar.of("stop", setup.session)  # stopped, not logged out
    assert (await session_row(setup.channel_id))["owner"] == ""
    run_bridge(operator_settings(fake_sidecar.address))
    starts = await fake_sidecar.wait_for("start", setup.session, count=2)
    assert starts[1]["data"]["auth"] == auth  # no new QR needed


async def test_a_wrong_secret_never_starts_anything(client, setup: Setup, fake_sidecar, run_bridge):
    running = run_bridge(
        operator_settings(fake_sidecar.address, GUICHE_BAILEYS_SIDECAR_SECRET="wrong")
    )
    await eventually(lambda: _refused(fake_sidecar))
    assert not fake_sidecar.of("start", setup.session)
    await running.halt()


async def test_routes_are_tenant_scoped_and_need_their_permission(
    client, setup: Setup, make_company, fake_sidecar, run_bridge
):
    url = f"/api/v1/plugins/baileys_bridge/channels/{setup.session}/session"
    other = await make_company()
    other_headers = await login(client, other.owner)
    await client.put(
        "/api/v1/plugins/baileys_bridge", json={"enabled": True}, headers=other_headers
    )
    resp = await client.get(url, headers=other_headers)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "channel_not_found"
    bad = await client.get(
        "/api/v1/plugins/baileys_bridge/channels/not-a-uuid/session", headers=setup.headers
    )
    assert bad.status == 404
    agent = await setup.company.add("agent")
    resp = await client.get(url, headers=await login(client, agent))
    assert resp.status == 403


async def test_pairing_code_and_logout_reach_the_sidecar(
    client, setup: Setup, fake_sidecar, run_bridge
):
    run_bridge(operator_settings(fake_sidecar.address))
    await fake_sidecar.wait_for("start", setup.session)
    url = f"/api/v1/plugins/baileys_bridge/channels/{setup.session}"
    resp = await client.post(
        f"{url}/pairing-code", json={"phone": "+5511912345678"}, headers=setup.headers
    )
    assert resp.status == 200, await resp.text()
    [pairing] = await fake_sidecar.wait_for("pairing_code", setup.session)
    assert pairing["data"]["phone"] == "5511912345678"
    await fake_sidecar.push("pairing_code", setup.session, {"code": "ABCD1234"})
    shown = await eventually(
        lambda: _json_if(client, f"{url}/session", setup.headers, "pairing_code")
    )
    assert shown["pairing_code"] == "ABCD1234"
    [event] = await eventually(lambda: events_of(setup.company.tenant_id, "channel.pairing_code"))
    assert event == {"channel_id": setup.session, "code": "ABCD1234"}
    bad = await client.post(f"{url}/pairing-code", json={"phone": "x"}, headers=setup.headers)
    assert bad.status == 422
    assert (await client.post(f"{url}/logout", headers=setup.headers)).status == 200
    await fake_sidecar.wait_for("logout", setup.session)


async def test_send_errors_are_typed(client, setup: Setup, fake_sidecar, run_bridge):
    run_bridge(operator_settings(fake_sidecar.address))
    await fake_sidecar.wait_for("start", setup.session)
    await fake_sidecar.push("message", setup.session, load("bridge_message_text.json")["data"])
    [inbound] = await eventually(lambda: messages_of(setup.channel_id))
    fake_sidecar.send_errors.append(load("bridge_send_result_error.json")["data"]["error"])
    resp = await client.post(
        f"/api/v1/conversations/{inbound['conversation']}/messages",
        json={"type": "text", "text": "Oi"},
        headers=setup.headers,
    )
    reply_id = uuid.UUID((await resp.json())["id"])
    await settle(client)
    [reply] = await fetch("SELECT * FROM messages WHERE id = {}", reply_id)
    assert reply["status"] == "failed"


async def _with_auth(channel_id: uuid.UUID) -> dict[str, Any] | None:
    rows = await BaileysSession.raw(
        "SELECT * FROM baileys_sessions WHERE channel_id = {}", channel_id
    )
    return rows[0] if rows and rows[0]["auth_encrypted"] else None


async def _released(channel_id: uuid.UUID) -> dict[str, Any] | None:
    row = await session_row(channel_id)
    return row if row["owner"] == "" else None


async def _json_if(client: Any, url: str, headers: dict[str, str], field: str) -> Any:
    body = await (await client.get(url, headers=headers)).json()
    return body if body.get(field) else None


async def _state_is(channel_id: uuid.UUID, state: str) -> bool:
    return await channel_state(channel_id) == state


async def _status_is(message_id: uuid.UUID, status: str) -> bool:
    [row] = await fetch("SELECT status FROM messages WHERE id = {}", message_id)
    return row["status"] == status


async def _media_message(channel_id: uuid.UUID) -> dict[str, Any] | None:
    rows = await fetch("SELECT * FROM messages WHERE channel = {} AND type = 'image'", channel_id)
    return rows[0] if rows else None


async def _refused(fake: Any) -> bool:
    return fake.refused > 0


async def test_history_and_append_are_imported_without_notifications(
    client, setup: Setup, fake_sidecar, run_bridge
):
    run_bridge(operator_settings(fake_sidecar.address))
    await fake_sidecar.wait_for("start", setup.session)
    old = load("bridge_message_text.json")["data"]
    old["upsert_type"] = "append"
    old["message"]["key"]["id"] = "HISTORY0001"
    await fake_sidecar.push("message", setup.session, old)
    batch = []
    for n in range(3):
        item = load("bridge_message_text.json")["data"]["message"]
        item["key"]["id"] = f"HISTORY010{n}"
        item["messageTimestamp"] = 1741900000 + n
        batch.append(item)
    await fake_sidecar.push("history", setup.session, {"messages": batch, "is_latest": True})
    rows = await eventually(lambda: _count_at_least(setup.channel_id, 4))
    assert {r["provider_message_id"] for r in rows} >= {"HISTORY0001", "HISTORY0100"}
    assert not await events_of(setup.company.tenant_id, "message.new")


async def test_a_missing_node_is_said_clearly(caplog, tmp_path) -> None:
    settings = OperatorSettings.model_validate(
        {"GUICHE_BAILEYS_NODE": "no-such-node-binary", "GUICHE_BAILEYS_SIDECAR_DIR": str(tmp_path)}
    )
    assert await start_sidecar(settings) is None
    assert "`no-such-node-binary` is not on the PATH" in caplog.text
    assert "GUICHE_BAILEYS_SIDECAR_ADDRESS" in caplog.text


async def _count_at_least(channel_id: uuid.UUID, count: int) -> list[dict[str, Any]] | None:
    rows = await messages_of(channel_id)
    return rows if len(rows) >= count else None


async def test_deactivating_the_channel_logs_the_phone_out(
    client, setup: Setup, fake_sidecar, run_bridge
):
    run_bridge(operator_settings(fake_sidecar.address))
    await fake_sidecar.wait_for("start", setup.session)
    await fake_sidecar.push("auth", setup.session, {"creds": {"x": 1}, "keys": {}})
    await eventually(lambda: _with_auth(setup.channel_id))
    resp = await client.delete(f"/api/v1/channels/{setup.session}", headers=setup.headers)
    assert resp.status == 204
    await fake_sidecar.wait_for("logout", setup.session)
    row = await eventually(lambda: _released(setup.channel_id))
    assert row["auth_encrypted"] == ""


async def test_frames_pushed_to_cores_webhook_route_need_the_channel_secret(client, setup: Setup):
    loaded = await load_channel(client.server.app[SERVICES], setup.channel_id)
    assert loaded is not None and loaded.info.webhook_secret
    url = f"/webhooks/baileys/{setup.session}"
    body = orjson.dumps(load("bridge_message_text.json"))
    headers = {"Content-Type": "application/json", SECRET_HEADER: "wrong"}
    assert (await client.post(url, data=body, headers=headers)).status == 401
    headers[SECRET_HEADER] = loaded.info.webhook_secret
    resp = await client.post(url, data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    [message] = await messages_of(setup.channel_id)
    assert message["body"] == "Vocês abrem no sábado?"
