"""Requests aiohttp's parser refuses before the app sees them (an 8 KiB+ request line or
header) still get the API's JSON error shape from the runner `guiche web` uses."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from guiche.http.runner import app_runner


async def _raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return status, headers, body


async def test_an_overlong_request_line_is_a_json_400() -> None:
    app = web.Application()
    runner = app_runner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: Any = runner.addresses[0][1]
    try:
        path = "/api/v1/notes?cursor=" + "x" * 9000
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        status, headers, body = await _raw_exchange(port, request)
        header = "X-Big: " + "y" * 9000
        h_status, _, h_body = await _raw_exchange(
            port, f"GET / HTTP/1.1\r\nHost: x\r\n{header}\r\n\r\n".encode()
        )
    finally:
        await runner.cleanup()

    assert status == 400 and headers["content-type"].startswith("application/json")
    assert b'"code":"malformed_http_request"' in body
    assert h_status in (400, 431) and b'"malformed_http_request"' in h_body
