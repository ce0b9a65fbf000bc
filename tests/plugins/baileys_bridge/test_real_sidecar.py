"""The real Node sidecar (started by the bridge service itself, with its fake Baileys
socket: BRIDGE_FAKE_SOCKET=1) driven QR → open → inbound → reply → ack through
Guichê's API and WebSocket; then the sidecar is killed mid-session and the restarted
service resumes the session from the stored auth state, without a QR."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
from guiche_baileys_bridge.config import OperatorSettings
from guiche_baileys_bridge.sealing import unseal
from guiche_baileys_bridge.tables import BaileysSession
from guiche_baileys_bridge.wire import BridgeConnection

from guiche.plugin import load_channel
from guiche.runtime.services import SERVICES
from tests.core.realtime.conftest import connect

from .conftest import Setup, eventually, fetch, settle

SIDECAR = Path(__file__).resolve().parents[3] / "plugins" / "baileys_bridge" / "sidecar"
pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (SIDECAR / "node_modules").is_dir(),
    reason="needs node and the sidecar's npm dependencies (make sidecar)",
)
PHONE_JID = "5511987654321@s.whatsapp.net"


async def lease(channel_id: uuid.UUID) -> dict[str, Any] | None:
    rows = await BaileysSession.raw(
        "SELECT * FROM baileys_sessions WHERE channel_id = {} AND owner <> ''", channel_id
    )
    return rows[0] if rows and rows[0]["address"] else None


async def dial(client: Any, setup: Setup, row: dict[str, Any]) -> BridgeConnection:
    """A client connection to the sidecar with the secret the lease row seals."""
    loaded = await load_channel(client.server.app[SERVICES], setup.channel_id)
    assert loaded is not None
    secret = unseal(loaded.info, row["secret_encrypted"])
    assert secret
    host, _, port = row["address"].rpartition(":")
    return await BridgeConnection.open(host, int(port), secret)


async def fake(conn: BridgeConnection, session: str, events: dict[str, Any]) -> None:
    await conn.write("fake", session, {"events": events})


async def test_real_sidecar_end_to_end_and_restart_without_qr(
    client, setup: Setup, run_bridge, monkeypatch
):
    monkeypatch.setenv("BRIDGE_FAKE_SOCKET", "1")
    settings = OperatorSettings.model_validate(
        {"GUICHE_BAILEYS_POLL_SECONDS": 0.05, "GUICHE_BAILEYS_SIDECAR_DIR": str(SIDECAR)}
    )
    session = setup.session
    socket = await connect(client, setup.company.owner)
    running = run_bridge(settings)
    row = await eventually(lambda: lease(setup.channel_id), seconds=20)
    conn = await dial(client, setup, row)
    await eventually(lambda: _has_auth(setup.channel_id))  # fresh creds stored at once

    await fake(conn, session, {"connection.update": {"qr": "2@real-sidecar-qr"}})
    qr = await asyncio.wait_for(socket.next("channel.qr"), 10)
    assert qr["data"]["qr"] == "2@real-sidecar-qr"
    await fake(conn, session, {"connection.update": {"connection": "open"}})
    await eventually(lambda: _state(setup.channel_id, "connected"))
    await asyncio.wait_for(socket.next("channel.state", state="connected"), 10)

    inbound_key = {"remoteJid": PHONE_JID, "fromMe": False, "id": "REALIN1"}
    upsert = {
        "type": "notify",
        "messages": [
            {
                "key": inbound_key,
                "message": {"conversation": "Oi, tudo bem?"},
                "messageTimestamp": 1741961100,
                "pushName": "Ana",
            }
        ],
    }
    await fake(conn, session, {"messages.upsert": upsert})
    new = await asyncio.wait_for(socket.next("message.new"), 10)
    conversation = new["data"]["conversation_id"]
    resp = await client.post(
        f"/api/v1/conversations/{conversation}/messages",
        json={"type": "text", "text": "Tudo ótimo!"},
        headers=setup.headers,
    )
    assert resp.status == 202, await resp.text()
    reply_id = uuid.UUID((await resp.json())["id"])
    await settle(client)
    [reply] = await eventually(lambda: _sent(reply_id))
    provider_id = reply["provider_message_id"]
    assert provider_id.startswith("3EB0")
    await fake(
        conn,
        session,
        {
            "messages.update": [
                {
                    "key": {"remoteJid": PHONE_JID, "fromMe": True, "id": provider_id},
                    "update": {"status": 4},
                }
            ]
        },
    )
    await eventually(lambda: _status(reply_id, "read"))
    await asyncio.wait_for(socket.next("message.status", status="read"), 10)
    await conn.close()

    # the sidecar dies mid-session: the service fails, a new one resumes from the DB
    stored = (await _has_auth(setup.channel_id))["auth_encrypted"]
    sidecar = running.bridge.sidecar
    assert sidecar is not None and sidecar.process is not None
    os.kill(sidecar.process.pid, signal.SIGKILL)
    with pytest.raises(Exception, match="sidecar went away"):
        await asyncio.wait_for(running.task, 10)
    assert (
        await BaileysSession.raw(
            "SELECT owner FROM baileys_sessions WHERE channel_id = {}", setup.channel_id
        )
    )[0]["owner"] == ""
    run_bridge(settings)
    row = await eventually(lambda: _new_lease(setup.channel_id, sidecar.address), seconds=20)
    conn = await dial(client, setup, row)
    await fake(conn, session, {"connection.update": {"connection": "open"}})
    await eventually(lambda: _state(setup.channel_id, "connected"))
    assert (await _has_auth(setup.channel_id))["auth_encrypted"] != ""
    shown = await (
        await client.get(
            f"/api/v1/plugins/baileys_bridge/channels/{session}/session", headers=setup.headers
        )
    ).json()
    assert shown["qr"] is None and shown["state"] == "connected"
    assert stored  # the same session went on with the keys stored before the crash
    await conn.close()


async def _has_auth(channel_id: uuid.UUID) -> dict[str, Any] | None:
    rows = await BaileysSession.raw(
        "SELECT * FROM baileys_sessions WHERE channel_id = {}", channel_id
    )
    return rows[0] if rows and rows[0]["auth_encrypted"] else None


async def _new_lease(channel_id: uuid.UUID, old: str) -> dict[str, Any] | None:
    row = await lease(channel_id)
    return row if row and row["address"] != old else None


async def _state(channel_id: uuid.UUID, state: str) -> bool:
    rows = await fetch("SELECT state FROM channels WHERE id = {}", channel_id)
    return rows[0]["state"] == state


async def _sent(message_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await fetch("SELECT * FROM messages WHERE id = {} AND status = 'sent'", message_id)
    return rows


async def _status(message_id: uuid.UUID, status: str) -> bool:
    rows = await fetch("SELECT status FROM messages WHERE id = {}", message_id)
    return rows[0]["status"] == status
