"""A fake sidecar speaking the bridge protocol over real TCP: it checks the shared
secret, records what the plugin asks (start, stop, logout, pairing_code, send) and lets
a test push frames to the controller as the real sidecar would. No WhatsApp, no Node."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from guiche_baileys_bridge.wire import decode, encode

SECRET = "fake-sidecar-secret"


@dataclass
class FakeSidecar:
    secret: str = SECRET
    frames: list[dict[str, Any]] = field(default_factory=list)
    controllers: list[asyncio.StreamWriter] = field(default_factory=list)
    owner: dict[str, asyncio.StreamWriter] = field(default_factory=dict)
    send_errors: list[dict[str, Any]] = field(default_factory=list)
    server: asyncio.Server | None = None
    refused: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    @property
    def address(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def start(self) -> FakeSidecar:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        assert self.server is not None
        for writer in self.controllers:
            writer.close()
        self.server.close()
        await self.server.wait_closed()

    def of(self, type_: str, session: str | None = None) -> list[dict[str, Any]]:
        return [
            f
            for f in self.frames
            if f["type"] == type_ and (session is None or f["session"] == session)
        ]

    async def wait_for(
        self, type_: str, session: str | None = None, count: int = 1
    ) -> list[dict[str, Any]]:
        for _ in range(500):
            if len(self.of(type_, session)) >= count:
                return self.of(type_, session)
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {type_} frame for {session}: {self.frames}")

    async def push(self, type_: str, session: str, data: dict[str, Any]) -> None:
        writer = self.owner[session]
        writer.write(encode(type_, session, data))
        await writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = decode(await reader.readline())
        if not hello or hello["type"] != "hello" or hello["data"].get("secret") != self.secret:
            self.refused += 1
            writer.write(encode("error", None, {"code": "unauthorized"}))
            writer.close()
            return
        role = hello["data"].get("role")
        if role == "controller":
            self.controllers.append(writer)
        writer.write(encode("hello", None, {"role": role}))
        while line := await reader.readline():
            frame = decode(line)
            if frame is None:
                continue
            self.frames.append(frame)
            session = frame["session"]
            if frame["type"] == "start":
                self.owner[session] = writer
                writer.write(encode("started", session, {}))
            elif frame["type"] == "send":
                writer.write(encode("send_result", session, self._result(frame["data"])))
            await writer.drain()
        if writer in self.controllers:
            self.controllers.remove(writer)

    def _result(self, data: dict[str, Any]) -> dict[str, Any]:
        if self.send_errors:
            return {"request_id": data["request_id"], "ok": False, "error": self.send_errors.pop(0)}
        key = {"remoteJid": data["to"], "fromMe": True, "id": f"3EB0FAKE{next(self._ids):08d}"}
        return {"request_id": data["request_id"], "ok": True, "key": key, "status": "SERVER_ACK"}
