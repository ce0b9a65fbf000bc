"""A small fake Evolution API v2 server (aiohttp) for tests: the endpoints the plugin calls,
the `apikey` guard, scripted failures, and a record of every request it answered."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# The fixtures' tiny PNG, as Evolution sends it (a data: URI).
QR_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
QR_TEXT = "2@fake-qr-code,abc,def"
NOT_STARTED = "Cannot read properties of undefined (reading 'onWhatsApp')"


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeEvolution:
    """State of the fake server: instances by name, scripted failures, recorded calls."""

    global_key: str = "global-key-0123456789"
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    failures: list[tuple[str, int, Any]] = field(default_factory=list)
    sent_event: asyncio.Event = field(default_factory=asyncio.Event)
    #: Awaited with (key id, request body) before a send is answered, as Evolution posts
    #: its `send.message` webhook while the send call is still open.
    on_send: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None

    def fail_next(self, path_part: str, status: int, body: Any) -> None:
        """The next request whose path contains `path_part` answers `status` with `body`."""
        self.failures.append((path_part, status, body))

    def calls_to(self, path_part: str) -> list[Call]:
        return [call for call in self.calls if path_part in call.path]

    def connect(self, name: str) -> None:
        """Simulate the phone scanning the QR."""
        self.instances[name]["state"] = "open"

    def _authorised(self, request: web.Request, name: str | None) -> bool:
        key = request.headers.get("apikey")
        if key == self.global_key:
            return True
        return name is not None and name in self.instances and self.instances[name]["token"] == key

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        self.calls.append(Call(request.method, request.path, dict(request.headers), body))
        for index, (part, status, answer) in enumerate(self.failures):
            if part in request.path:
                del self.failures[index]
                return web.json_response(answer, status=status)
        parts = request.path.strip("/").split("/")
        name = parts[2] if len(parts) > 2 else None
        # Evolution 2.3.6's guard order: the instance exists (404) / the name is free
        # (403), and only then the key (401).
        if request.path == "/instance/create":
            created = (body or {}).get("instanceName")
            if created in self.instances:
                return _error(403, "Forbidden", [f'This name "{created}" is already in use.'])
        elif request.path == "/instance/fetchInstances":
            return self._fetch(request)
        elif name is None or name not in self.instances:
            return _error(404, "Not Found", [f'The "{name}" instance does not exist'])
        if not self._authorised(request, name):
            return _error(401, "Unauthorized", "Unauthorized")
        if request.path == "/instance/create":
            return self._create(body or {})
        handler = {
            ("POST", "webhook", "set"): self._webhook_set,
            ("GET", "instance", "connect"): self._connect,
            ("GET", "instance", "connectionState"): self._state,
            ("DELETE", "instance", "logout"): self._logout,
            ("DELETE", "instance", "delete"): self._delete,
            ("POST", "message", "sendText"): self._send,
            ("POST", "message", "sendMedia"): self._send,
            ("POST", "message", "sendSticker"): self._send,
            ("POST", "chat", "getBase64FromMediaMessage"): self._media,
        }.get((request.method, parts[0], parts[1]))
        if handler is None:
            return _error(404, "Not Found", ["no such route"])
        response = handler(name, body or {})
        if self.on_send is not None and parts[0] == "message" and response.status == 201:
            await self.on_send(json.loads(response.body)["key"]["id"], body or {})
        return response

    def _fetch(self, request: web.Request) -> web.Response:
        """`fetchInstances`: the global key sees every instance, a token only its own."""
        key, name = request.headers.get("apikey"), request.query.get("instanceName")
        if key == self.global_key:
            if name and name not in self.instances:
                return _error(404, "Not Found", [f'Instance "{name}" not found'])
            names = [name] if name else list(self.instances)
        else:
            names = [n for n, i in self.instances.items() if i["token"] == key and n == (name or n)]
            if not names:
                return _error(401, "Unauthorized", "Unauthorized")
        return web.json_response(
            [
                {
                    "id": self.instances[n]["id"],
                    "name": n,
                    "connectionStatus": self.instances[n]["state"],
                    "integration": self.instances[n]["body"].get("integration"),
                    "token": self.instances[n]["token"],
                }
                for n in names
            ]
        )

    def _state(self, name: str, body: dict[str, Any]) -> web.Response:
        return web.json_response(
            {"instance": {"instanceName": name, "state": self.instances[name]["state"]}}
        )

    def _create(self, body: dict[str, Any]) -> web.Response:
        name = body["instanceName"]
        token = body.get("token") or uuid.uuid4().hex.upper()
        self.instances[name] = {
            "id": str(uuid.uuid4()),
            "token": token,
            "state": "close",
            "webhook": None,
            "body": body,
        }
        return web.json_response(
            {
                "instance": {"instanceName": name, "instanceId": str(uuid.uuid4())},
                "hash": token,
                "settings": {},
            },
            status=201,
        )

    def _webhook_set(self, name: str, body: dict[str, Any]) -> web.Response:
        hook = body.get("webhook")
        if not isinstance(hook, dict) or "url" not in hook or "enabled" not in hook:
            return _error(400, "Bad Request", [['instance requires property "webhook"']])
        self.instances[name]["webhook"] = hook
        return web.json_response({"id": "wh1", **hook}, status=201)

    def _connect(self, name: str, body: dict[str, Any]) -> web.Response:
        instance = self.instances[name]
        if instance["state"] == "open":
            return web.json_response({"instance": {"instanceName": name, "state": "open"}})
        instance["state"] = "connecting"
        return web.json_response(
            {"pairingCode": None, "code": QR_TEXT, "base64": QR_PNG, "count": 1}
        )

    def _logout(self, name: str, body: dict[str, Any]) -> web.Response:
        instance = self.instances[name]
        if instance["state"] == "close":
            return _error(400, "Bad Request", [f'The "{name}" instance is not connected'])
        instance["state"] = "close"
        return web.json_response({"status": "SUCCESS", "error": False})

    def _delete(self, name: str, body: dict[str, Any]) -> web.Response:
        if self.instances[name]["state"] == "open":
            return _error(400, "Bad Request", [f'The "{name}" instance needs to be disconnected'])
        del self.instances[name]
        return web.json_response({"status": "SUCCESS", "error": False})

    def _send(self, name: str, body: dict[str, Any]) -> web.Response:
        state = self.instances[name]["state"]
        if state != "open":  # Evolution 2.3.6's answers (tests/fixtures/evolution/real-2.3.6)
            reason = "Connection Closed" if state == "connecting" else NOT_STARTED
            return web.json_response(
                {"status": 500, "error": "Internal Server Error", "response": {"message": reason}},
                status=500,
            )
        number = str(body.get("number", ""))
        key_id = "3EB0" + uuid.uuid4().hex[:18].upper()
        self.sent_event.set()
        return web.json_response(
            {
                "key": {
                    "remoteJid": number if "@" in number else f"{number}@s.whatsapp.net",
                    "fromMe": True,
                    "id": key_id,
                },
                "status": "PENDING",
                "message": {"conversation": body.get("text", "")},
                "messageTimestamp": 1741958950,
            },
            status=201,
        )

    def _media(self, name: str, body: dict[str, Any]) -> web.Response:
        return web.json_response(
            {
                "mediaType": "imageMessage",
                "mimetype": "image/png",
                "base64": base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode(),
            },
            status=201,
        )

    async def wait_sent(self, count: int = 1, within: float = 10.0) -> list[Call]:
        async with asyncio.timeout(within):
            while len(self.calls_to("/message/send")) < count:
                self.sent_event.clear()
                await self.sent_event.wait()
        return self.calls_to("/message/send")


def _error(status: int, error: str, message: Any) -> web.Response:
    return web.json_response(
        {"status": status, "error": error, "response": {"message": message}}, status=status
    )
