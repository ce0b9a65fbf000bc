"""The bridge protocol (v1) on the Python side: frames, Buffers, and one authenticated
TCP connection to a sidecar.

A frame is one JSON object per line: `{"v": 1, "type", "session", "data"}`. Buffers are
Baileys' BufferJSON (`{"type": "Buffer", "data": "<base64>"}`). Frames of an unknown type
or a newer `v` are logged and skipped (`decode` returns None), never fatal.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

log = logging.getLogger("guiche.plugin.baileys_bridge")

VERSION = 1
#: Inbound media travels inline; allow big lines (a 16 MB file is ~22 MB of base64).
LINE_LIMIT = 64 * 1024 * 1024


def buffer(data: bytes) -> dict[str, str]:
    """Bytes as a Node Buffer in BufferJSON form."""
    return {"type": "Buffer", "data": base64.b64encode(data).decode()}


def encode(type_: str, session: str | None, data: dict[str, Any] | None = None) -> bytes:
    return (
        orjson.dumps({"v": VERSION, "type": type_, "session": session, "data": data or {}}) + b"\n"
    )


def decode(line: bytes | str) -> dict[str, Any] | None:
    """A frame, or None (logged) for what must be ignored: bad JSON, a newer version."""
    try:
        frame = orjson.loads(line)
    except orjson.JSONDecodeError:
        log.warning("bridge: ignored a line that is not JSON")
        return None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        log.warning("bridge: ignored a line that is not a frame")
        return None
    if frame.get("v") != VERSION:
        log.warning("bridge: ignored a frame of protocol version %r", frame.get("v"))
        return None
    if not isinstance(frame.get("data"), dict):
        frame["data"] = {}
    return frame


class BridgeError(Exception):
    """The sidecar cannot be reached, refused our secret, or went away."""


class BridgeConnection:
    """One authenticated connection: `frames()` yields what the sidecar says, `request`
    sends a `send` and waits for its `send_result` (matched by request id)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls, host: str, port: int, secret: str, *, role: str = "client", seconds: float = 5.0
    ) -> BridgeConnection:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=LINE_LIMIT), seconds
            )
        except (OSError, TimeoutError) as exc:
            raise BridgeError(f"sidecar {host}:{port} unreachable: {exc}") from exc
        conn = cls(reader, writer)
        await conn.write("hello", None, {"secret": secret, "role": role})
        try:
            first = await asyncio.wait_for(conn.read(), seconds)
        except TimeoutError as exc:
            await conn.close()
            raise BridgeError("sidecar did not answer hello") from exc
        if first is None or first["type"] != "hello":
            await conn.close()
            raise BridgeError("sidecar refused the shared secret")
        return conn

    async def write(
        self, type_: str, session: str | None, data: dict[str, Any] | None = None
    ) -> None:
        async with self._lock:
            self.writer.write(encode(type_, session, data))
            await self.writer.drain()

    async def read(self) -> dict[str, Any] | None:
        """The next frame; None at end of stream. Ignored lines are skipped."""
        while True:
            try:
                line = await self.reader.readline()
            except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
                raise BridgeError(f"sidecar connection failed: {exc}") from exc
            if not line:
                return None
            frame = decode(line)
            if frame is not None:
                return frame

    async def pump(self, on_frame: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """Read until the sidecar closes: `send_result`s resolve `request`s, everything
        else goes to `on_frame`."""
        try:
            while (frame := await self.read()) is not None:
                if frame["type"] == "send_result":
                    future = self._pending.pop(str(frame["data"].get("request_id")), None)
                    if future is not None and not future.done():
                        future.set_result(frame["data"])
                    continue
                await on_frame(frame)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(BridgeError("sidecar connection closed"))
            self._pending.clear()

    async def request(self, session: str, data: dict[str, Any], seconds: float) -> dict[str, Any]:
        request_id = str(data["request_id"])
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        await self.write("send", session, data)
        try:
            return await asyncio.wait_for(future, seconds)
        finally:
            self._pending.pop(request_id, None)

    @property
    def closed(self) -> bool:
        return self.writer.is_closing()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
