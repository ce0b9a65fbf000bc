"""The bridge service (`baileys_bridge.bridge`): runs the sessions of active `baileys`
channels on a sidecar and turns what the sidecar says into Guichê's data.

One per process that runs services (`guiche run`, each `guiche worker`, or `guiche
service baileys_bridge.bridge`). Each takes a lease per session in `baileys_sessions`
before starting it, renews it while the session runs and gives it up on stop, so the
sessions spread over the bridges, never run twice, and a dead bridge's sessions move
once its leases expire. Without `GUICHE_BAILEYS_SIDECAR_ADDRESS` the bridge starts its
own sidecar (`node src/server.js`) when the first Baileys channel is active.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import shutil
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from guiche.channels import ConnectionState, LoadedChannel, MessageType, WebhookBatch
from guiche.plugin import (
    ApiError,
    CredentialsUnreadable,
    active_channels,
    decrypt_json,
    encrypt_json,
    import_history,
    ingest_batch,
    message_media,
    publish_event,
)
from guiche_baileys_bridge import store
from guiche_baileys_bridge.config import CHANNEL_TYPE, BaileysConfig, OperatorSettings
from guiche_baileys_bridge.parse import (
    connection_update,
    inbound_message,
    is_final_close,
    qr_update,
    status_update,
)
from guiche_baileys_bridge.sealing import seal
from guiche_baileys_bridge.wire import BridgeConnection, BridgeError

log = logging.getLogger("guiche.plugin.baileys_bridge")

NODE_MISSING = (
    "baileys_bridge: a Baileys channel is active but `{node}` is not on the PATH; install "
    "Node 20+ (then `npm ci` in {dir}) or point GUICHE_BAILEYS_SIDECAR_ADDRESS at a "
    "running sidecar"
)
GONE_GRACE_SECONDS = 2.0
#: `baileys_sessions.command` of a session that ended for good (logged out, banned,
#: replaced): not started again until the operator asks (`POST .../connect`).
MEDIA_TYPES = frozenset(
    {
        MessageType.IMAGE,
        MessageType.AUDIO,
        MessageType.VIDEO,
        MessageType.DOCUMENT,
        MessageType.STICKER,
    }
)


@dataclass
class Sidecar:
    host: str
    port: int
    secret: str
    address: str  # what other processes dial
    process: asyncio.subprocess.Process | None = None

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()  # SIGTERM: the sidecar flushes auth and exits 0
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def start_sidecar(settings: OperatorSettings) -> Sidecar | None:
    """Start `node src/server.js` on a free port; None (logged) when it cannot be."""
    node = shutil.which(settings.node)
    directory = Path(settings.sidecar_dir)
    if node is None:
        log.error(NODE_MISSING.format(node=settings.node, dir=directory))
        return None
    if not (directory / "node_modules").is_dir():
        log.error(
            "baileys_bridge: the sidecar's dependencies are missing: run `npm ci` in %s "
            "(or set GUICHE_BAILEYS_SIDECAR_DIR)",
            directory,
        )
        return None
    secret = secrets.token_urlsafe(32)
    env = {
        **os.environ,
        "BRIDGE_SECRET": secret,
        "BRIDGE_HOST": settings.listen_host,
        "BRIDGE_PORT": "0",
        "BRIDGE_EXIT_WITH_PARENT": "1",  # it holds our pipe: no orphan if we are killed
    }
    process = await asyncio.create_subprocess_exec(
        node,
        str(directory / "src" / "server.js"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = b""
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        port = int(orjson.loads(line)["listening"]["port"])
    except (TimeoutError, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        log.error("baileys_bridge: the sidecar did not start (it said %r)", line[:200])
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        return None
    host = settings.listen_host
    advertised = settings.advertise_host or (
        socket.gethostname() if host in ("0.0.0.0", "::") else host
    )
    dial = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    log.info("baileys_bridge: sidecar started", extra={"pid": process.pid, "port": port})
    return Sidecar(dial, port, secret, f"{advertised}:{port}", process)


def external_sidecar(settings: OperatorSettings) -> Sidecar:
    host, _, port = settings.sidecar_address.rpartition(":")
    return Sidecar(host, int(port), settings.sidecar_secret, settings.sidecar_address)


class Bridge:
    """One controller connection to one sidecar and the sessions this process leases."""

    def __init__(self, services: Any, settings: OperatorSettings) -> None:
        self.services = services
        self.settings = settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.running: dict[uuid.UUID, LoadedChannel] = {}
        self.gone: dict[uuid.UUID, float] = {}  # running, but no longer active since
        self.sidecar: Sidecar | None = None
        self.conn: BridgeConnection | None = None

    # --- the loop ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.settings.sidecar_address or await active_channels(self.services, CHANNEL_TYPE):
                break
            await _wait(stop, self.settings.poll_seconds)
        if stop.is_set():
            return
        sidecar = (
            external_sidecar(self.settings)
            if self.settings.sidecar_address
            else await start_sidecar(self.settings)
        )
        if sidecar is None:  # logged; look again later (node installed, npm ci run)
            await _wait(stop, 60)
            return
        self.sidecar = sidecar
        try:
            self.conn = await BridgeConnection.open(
                sidecar.host, sidecar.port, sidecar.secret, role="controller"
            )
            pump = asyncio.create_task(self.conn.pump(self.on_frame))
            stopper = asyncio.create_task(stop.wait())
            try:
                while not stop.is_set() and not pump.done():
                    await self.reconcile()
                    await asyncio.wait(
                        {pump, stopper},
                        timeout=self.settings.poll_seconds,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
            finally:
                stopper.cancel()
                await self.stop_all()
                await self.conn.close()
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, BridgeError):
                    await pump
            if not stop.is_set():
                raise BridgeError("the sidecar went away")
        finally:
            await sidecar.stop()

    async def reconcile(self) -> None:
        """Start leased sessions of active channels, stop the rest, run commands."""
        active = {
            loaded.info.id: loaded for loaded in await active_channels(self.services, CHANNEL_TYPE)
        }
        loop = asyncio.get_running_loop()
        for channel_id in [cid for cid in self.running if cid not in active]:
            # Core deactivates the row, then calls `disconnect()` (which asks for a
            # logout): give it a moment so a deactivation unlinks the phone.
            gone = self.gone.setdefault(channel_id, loop.time())
            if loop.time() - gone < GONE_GRACE_SECONDS:
                continue
            self.gone.pop(channel_id, None)
            row = await store.load(channel_id)
            unlink = row is None or row["command"] == "logout"
            await self.stop_session(channel_id, logout=unlink)
        for channel_id in [cid for cid in self.gone if cid in active]:
            self.gone.pop(channel_id, None)
        held = await store.renew(self.owner, list(self.running), self.settings.lease_seconds)
        for channel_id in [cid for cid in self.running if cid not in held]:
            log.warning("baileys_bridge: lease lost", extra={"channel_id": str(channel_id)})
            await self.stop_session(channel_id, release=False)
        for channel_id, loaded in active.items():
            if channel_id not in self.running:
                await self.try_start(loaded)
        for channel_id, command in await store.take_commands(self.owner):
            await self.run_command(channel_id, command)

    async def try_start(self, loaded: LoadedChannel) -> None:
        assert self.sidecar is not None and self.conn is not None
        info = loaded.info
        known = await store.load(info.id)
        if known is not None and known["command"] == store.HALT:
            return  # ended (logged out, banned): waits for the operator's connect
        taken = await store.acquire(
            info.id,
            info.tenant_id,
            self.owner,
            self.sidecar.address,
            seal(info, self.sidecar.secret),
            self.settings.lease_seconds,
        )
        if not taken:
            return
        row = await store.load(info.id) or {}
        auth = None
        if row.get("auth_encrypted"):
            try:
                auth = decrypt_json(self.services, row["auth_encrypted"])
            except CredentialsUnreadable:
                log.error("baileys_bridge: stored session unreadable: a new QR is needed")
        config = loaded.adapter.config
        assert isinstance(config, BaileysConfig)
        self.running[info.id] = loaded
        await self.conn.write(
            "start", str(info.id), {"auth": auth, "options": config.sidecar_options()}
        )
        log.info("baileys_bridge: session started", extra={"channel_id": str(info.id)})

    async def stop_session(
        self, channel_id: uuid.UUID, *, logout: bool = False, release: bool = True
    ) -> None:
        self.running.pop(channel_id, None)
        if self.conn is not None and not self.conn.closed:
            with contextlib.suppress(ConnectionError, BridgeError):
                await self.conn.write("logout" if logout else "stop", str(channel_id), {})
        if logout:
            await store.clear_auth(channel_id)
        if release:
            await store.release(self.owner, channel_id)

    async def end_session(self, channel_id: uuid.UUID, *, clear_auth: bool) -> None:
        """Stop a session that is over; no bridge restarts it until the operator does."""
        await self.stop_session(channel_id, release=False)
        await store.end(self.owner, channel_id, clear_auth=clear_auth)

    async def stop_all(self) -> None:
        for channel_id in list(self.running):
            await self.stop_session(channel_id)

    async def run_command(self, channel_id: uuid.UUID, command: str) -> None:
        if channel_id not in self.running or self.conn is None:
            return
        if command == "logout":
            await self.conn.write("logout", str(channel_id), {})
            await store.clear_auth(channel_id)
        elif command.startswith("pairing:"):
            await self.conn.write("pairing_code", str(channel_id), {"phone": command[8:]})

    # --- what the sidecar says ---------------------------------------------------------

    async def on_frame(self, frame: dict[str, Any]) -> None:
        try:
            channel_id = uuid.UUID(str(frame.get("session")))
        except ValueError:
            if frame["type"] == "error":
                log.warning("baileys_bridge: sidecar error %s", frame["data"])
            return
        loaded = self.running.get(channel_id)
        if loaded is None:
            return
        try:
            await self.handle(loaded, frame["type"], frame["data"])
        except Exception:
            log.exception(
                "baileys_bridge: frame failed",
                extra={"channel_id": str(channel_id), "type": frame["type"]},
            )

    async def handle(self, loaded: LoadedChannel, kind: str, data: dict[str, Any]) -> None:
        info, services = loaded.info, self.services
        now = dt.datetime.now(dt.UTC)
        await store.touch(info.id, now)
        if kind == "auth":
            await store.save_auth(info.id, self.owner, encrypt_json(services, data))
        elif kind == "qr":
            update = qr_update(data, now=now)
            await store.record(info.id, qr=update.qr_code or "", qr_at=now, state="qr_required")
            await ingest_batch(services, loaded, WebhookBatch(connection=[update]))
            await publish_event(
                services,
                info.tenant_id,
                "channel.qr",
                {
                    "channel_id": str(info.id),
                    "qr": update.qr_code,
                    "attempt": data.get("attempt"),
                    "expires_in_s": data.get("expires_in_s"),
                },
            )
        elif kind == "pairing_code":
            await store.record(info.id, pairing_code=str(data.get("code") or ""))
            await publish_event(
                services,
                info.tenant_id,
                "channel.pairing_code",
                {"channel_id": str(info.id), "code": data.get("code")},
            )
        elif kind == "connection":
            await self.on_connection(loaded, data, now)
        elif kind == "message":
            await self.on_message(loaded, data, now)
        elif kind == "history":
            messages = [
                m
                for item in data.get("messages") or []
                if isinstance(item, dict)
                and (m := inbound_message({"message": item}, accept_groups=self._groups(loaded)))
            ]
            if messages:
                await import_history(services, loaded, messages)
        elif kind == "ack":
            status = status_update(data, now=now)
            if status is not None:
                await ingest_batch(services, loaded, WebhookBatch(statuses=[status]))
        elif kind == "session_stopped":
            await self.end_session(info.id, clear_auth=False)
        elif kind == "error":
            log.warning(
                "baileys_bridge: sidecar error %s", data, extra={"channel_id": str(info.id)}
            )
            if data.get("code") == "session_busy":  # another controller still runs it
                self.running.pop(info.id, None)
                await store.release(self.owner, info.id)

    def _groups(self, loaded: LoadedChannel) -> bool:
        config = loaded.adapter.config
        return isinstance(config, BaileysConfig) and config.accept_groups

    async def on_connection(
        self, loaded: LoadedChannel, data: dict[str, Any], now: dt.datetime
    ) -> None:
        info = loaded.info
        update = connection_update(data, now=now)
        if update is None:
            return
        fields: dict[str, Any] = {"state": update.state.value, "detail": update.detail}
        if update.state is ConnectionState.CONNECTED:
            fields.update(qr="", pairing_code="", me=update.me or "")
        await store.record(info.id, **fields)
        await ingest_batch(self.services, loaded, WebhookBatch(connection=[update]))
        if update.state in (ConnectionState.QR_REQUIRED, ConnectionState.UNHEALTHY):
            last = data.get("last_disconnect") or {}
            await publish_event(
                self.services,
                info.tenant_id,
                "channel.alert",
                {
                    "channel_id": str(info.id),
                    "state": update.state.value,
                    "detail": update.detail,
                    "status_code": last.get("status_code"),
                    "reason": last.get("reason"),
                },
            )
        if is_final_close(data):
            # Logged out: the keys are dead. No endless QRs for a phone nobody scans:
            # the session waits for POST .../connect.
            await self.end_session(info.id, clear_auth=update.state is ConnectionState.QR_REQUIRED)

    async def on_message(
        self, loaded: LoadedChannel, data: dict[str, Any], now: dt.datetime
    ) -> None:
        message = inbound_message(data, accept_groups=self._groups(loaded), now=now)
        if message is None:
            return
        if data.get("upsert_type") != "notify":  # history catching up: no notifications
            await import_history(self.services, loaded, [message])
            return
        outcome = await ingest_batch(self.services, loaded, WebhookBatch(messages=[message]))
        if message.type in MEDIA_TYPES and message.media and message.media.data_base64:
            for message_id in outcome.stored:  # into core storage while we have the bytes
                try:
                    await message_media(self.services, loaded.info.tenant_id, message_id)
                except ApiError as exc:
                    log.warning("baileys_bridge: media not stored: %s", exc.message)


async def run_bridge(services: Any, stop: asyncio.Event) -> None:
    """The `bridge` service: runs until `stop`; raises when the sidecar dies (core
    restarts it, and a new sidecar resumes every session from its stored auth)."""
    await Bridge(services, OperatorSettings()).run(stop)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
