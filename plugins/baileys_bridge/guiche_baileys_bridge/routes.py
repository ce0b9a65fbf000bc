"""The operator's view of a session: state and QR (JSON), the QR as a PNG, a pairing
code instead of the QR, and logging the phone out."""

from __future__ import annotations

import base64
import datetime as dt
import io
import uuid
from typing import Any

import segno
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from guiche.plugin import NotFound, endpoint, load_channel, plugin_context
from guiche_baileys_bridge import store
from guiche_baileys_bridge.config import CHANNEL_TYPE

PERMISSION = "baileys_bridge.session"
SESSION_PATH = "channels/{id}/session"
QR_PNG_PATH = "channels/{id}/qr.png"
PAIRING_PATH = "channels/{id}/pairing-code"
LOGOUT_PATH = "channels/{id}/logout"
CONNECT_PATH = "channels/{id}/connect"
#: The route the web console's "Link phone" dialog reads for any QR-linked channel type.
QRCODE_PATH = "channels/{id}/qrcode"


class SessionOut(BaseModel):
    channel_id: uuid.UUID
    state: str
    detail: str = ""
    me: str | None = None
    #: The raw QR string (draw it yourself, or GET .../qr.png).
    qr: str | None = None
    qr_at: str | None = None
    pairing_code: str | None = None
    last_event_at: str | None = None
    running: bool = False


class QrCodeOut(BaseModel):
    """The console's QR shape (shared with evolution): `qr_code` is a base64 PNG."""

    channel_id: uuid.UUID
    state: str
    detail: str = ""
    qr_code: str | None = None
    qr_text: str | None = None
    pairing_code: str | None = None


class PairingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: str = Field(pattern=r"^\+?\d{10,15}$")


async def _channel(request: web.Request) -> Any:
    ctx = await plugin_context(request)
    try:
        channel_id = uuid.UUID(request.match_info["id"])
    except ValueError:
        raise NotFound("channel not found", code="channel_not_found") from None
    loaded = await load_channel(ctx.services, channel_id, tenant_id=ctx.tenant_id)
    if loaded is None or loaded.info.type != CHANNEL_TYPE:
        raise NotFound("channel not found", code="channel_not_found")
    return loaded


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


@endpoint(PERMISSION, response=SessionOut, summary="A Baileys session's state and QR")
async def session_state(request: web.Request) -> SessionOut:
    loaded = await _channel(request)
    row = await store.load(loaded.info.id)
    if row is None:
        return SessionOut(channel_id=loaded.info.id, state="connecting", detail="starting")
    lease = row["lease_until"]
    return SessionOut(
        channel_id=loaded.info.id,
        state=row["state"],
        detail=row["detail"],
        me=row["me"] or None,
        qr=row["qr"] or None,
        qr_at=_iso(row["qr_at"]),
        pairing_code=row["pairing_code"] or None,
        last_event_at=_iso(row["last_event_at"]),
        running=bool(row["owner"]) and lease is not None and lease > dt.datetime.now(dt.UTC),
    )


def _png(qr: str) -> bytes:
    out = io.BytesIO()
    segno.make_qr(qr, error="l").save(out, kind="png", scale=6, border=2)
    return out.getvalue()


@endpoint(PERMISSION, summary="The QR code to scan, as a PNG image", errors=(404,))
async def qr_png(request: web.Request) -> web.Response:
    loaded = await _channel(request)
    row = await store.load(loaded.info.id)
    if row is None or not row["qr"]:
        raise NotFound("no QR code to scan right now", code="qr_not_available")
    return web.Response(body=_png(row["qr"]), content_type="image/png")


@endpoint(PERMISSION, response=QrCodeOut, summary="State and QR (base64 PNG) for the console")
async def qr_code(request: web.Request) -> QrCodeOut:
    loaded = await _channel(request)
    row = await store.load(loaded.info.id)
    if row is None:
        return QrCodeOut(channel_id=loaded.info.id, state="connecting", detail="starting")
    qr = row["qr"] or None
    return QrCodeOut(
        channel_id=loaded.info.id,
        state=row["state"],
        detail=row["detail"] or "",
        qr_code=base64.b64encode(_png(qr)).decode() if qr and row["state"] != "connected" else None,
        qr_text=qr,
        pairing_code=row["pairing_code"] or None,
    )


@endpoint(
    PERMISSION, body=PairingIn, summary="Link the phone with a pairing code instead of the QR"
)
async def pairing_code(request: web.Request, body: PairingIn) -> dict[str, Any]:
    loaded = await _channel(request)
    phone = body.phone.lstrip("+")
    await store.set_command(loaded.info.id, loaded.info.tenant_id, f"pairing:{phone}")
    return {"channel_id": str(loaded.info.id), "requested": True}


@endpoint(PERMISSION, summary="Log the phone out (a new QR is needed to link it again)")
async def logout(request: web.Request) -> dict[str, Any]:
    loaded = await _channel(request)
    await store.set_command(loaded.info.id, loaded.info.tenant_id, "logout")
    return {"channel_id": str(loaded.info.id), "requested": True}


@endpoint(PERMISSION, summary="Start a session that ended (logged out, banned): a new QR")
async def connect(request: web.Request) -> dict[str, Any]:
    loaded = await _channel(request)
    await store.set_command(loaded.info.id, loaded.info.tenant_id, "")
    return {"channel_id": str(loaded.info.id), "requested": True}
