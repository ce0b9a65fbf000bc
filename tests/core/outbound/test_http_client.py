"""The process's outbound client (`services.http`): httpx's API over aiohttp's transport.

Everything here runs against real local aiohttp servers, through the client the app
builds: timeouts (a server that never answers), the Graph client's multipart upload and
capped media download, proxies from the environment, closing the aiohttp session; and
the client's per-request log lines kept out of an INFO log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import ClientSession, ClientTimeout, web
from guiche_meta_cloud import client as graph_module
from guiche_meta_cloud.client import GraphClient
from guiche_meta_cloud.config import MetaCloudConfig
from httpx_aiohttp import AiohttpTransport

from guiche.channels import PermanentSendError, RetryableSendError
from guiche.foundation.logs import PER_CALL_LOGGERS, configure_logging
from guiche.provider_http.client import TIMEOUT, outbound_client
from tests.core.outbound.conftest import services_of_client

CHUNK = b"x" * 4096


@pytest.fixture
async def hung_server(aiohttp_server: Any) -> AsyncIterator[str]:
    """An aiohttp server that accepts requests and never answers (until the test ends)."""
    release = asyncio.Event()

    async def never(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="too late")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", never)
    server = await aiohttp_server(app)
    try:
        yield str(server.make_url("/"))
    finally:
        release.set()


@pytest.fixture
async def media_server(aiohttp_server: Any) -> str:
    """Serves `/small` (one chunk), `/endless` (chunks until the client hangs up) and
    `/upload`, which echoes the multipart form it received."""

    async def small(request: web.Request) -> web.Response:
        return web.Response(body=CHUNK, content_type="image/jpeg")

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        await response.prepare(request)
        while True:  # a connection reset ends it once the client stops reading
            await response.write(CHUNK)

    async def upload(request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        assert isinstance(upload, web.FileField)
        return web.json_response(
            {
                "id": "media-1",
                "type": form["type"],
                "filename": upload.filename,
                "size": len(upload.file.read()),
                "auth": request.headers.get("Authorization"),
            }
        )

    app = web.Application()
    app.router.add_get("/small", small)
    app.router.add_get("/endless", endless)
    app.router.add_post("/v26.0/{number}/media", upload)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


def graph_config(base_url: str) -> MetaCloudConfig:
    return MetaCloudConfig(
        phone_number_id="1234567890",
        waba_id="9876543210",
        access_token="token-for-tests",
        graph_base_url=base_url,
    )


async def test_the_apps_client_is_httpx_over_aiohttp_with_the_configured_timeout(
    client: Any, media_server: str
) -> None:
    http = services_of_client(client).http
    assert isinstance(http, httpx.AsyncClient)
    transport = http._transport  # no public accessor; the point of this test
    assert isinstance(transport, AiohttpTransport)
    assert http.timeout == TIMEOUT == httpx.Timeout(15.0, connect=5.0)

    response = await http.get(f"{media_server}/small")

    assert response.status_code == 200 and response.content == CHUNK
    assert isinstance(transport.client, ClientSession)  # the request went through aiohttp


async def test_httpx_timeouts_reach_aiohttp(
    client: Any, media_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the transport hands aiohttp for our Timeout(15, connect=5): a per-read limit of
    15 s, 5 s to connect, 15 s to get a pooled connection (guards a library upgrade)."""
    http = services_of_client(client).http
    await http.get(f"{media_server}/small")  # the aiohttp session exists from here
    session = http._transport.client
    seen: list[ClientTimeout] = []
    request = session.request

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["timeout"])
        return request(*args, **kwargs)

    monkeypatch.setattr(session, "request", spy)

    await http.get(f"{media_server}/small")

    assert seen == [ClientTimeout(sock_connect=5.0, sock_read=15.0, connect=15.0)]


async def test_a_server_that_never_answers_times_out(client: Any, hung_server: str) -> None:
    http = services_of_client(client).http

    with pytest.raises(httpx.ReadTimeout):  # a TimeoutException: adapters retry it
        await http.post(hung_server + "messages", json={}, timeout=httpx.Timeout(0.3))


async def test_graph_calls_to_a_hung_server_become_a_retryable_timeout(hung_server: str) -> None:
    async with outbound_client(timeout=httpx.Timeout(0.3)) as http:
        graph = GraphClient(http, graph_config(hung_server.rstrip("/")))
        with pytest.raises(RetryableSendError) as raised:
            await graph.call("POST", "1234567890/messages", json={"to": "5511"})
    assert raised.value.code == "timeout"


async def test_media_download_is_capped_and_the_client_stays_usable(
    client: Any, media_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(graph_module, "MAX_DOWNLOAD_BYTES", 16 * len(CHUNK))
    graph = GraphClient(services_of_client(client).http, graph_config(media_server))

    async with asyncio.timeout(30):  # an unenforced cap would read the endless body forever
        with pytest.raises(PermanentSendError) as raised:
            await graph.download(f"{media_server}/endless")
        data, content_type = await graph.download(f"{media_server}/small")

    assert raised.value.code == "media_too_large"
    assert (data, content_type) == (CHUNK, "image/jpeg")


async def test_multipart_media_upload_goes_through(client: Any, media_server: str) -> None:
    graph = GraphClient(services_of_client(client).http, graph_config(media_server))
    body = b"\x89PNG" + bytes(range(256)) * 64

    answer = await graph.call(
        "POST",
        "1234567890/media",
        data={"messaging_product": "whatsapp", "type": "image/png"},
        files={"file": ("photo.png", body, "image/png")},
    )

    assert answer == {
        "id": "media-1",
        "type": "image/png",
        "filename": "photo.png",
        "size": len(body),
        "auth": "Bearer token-for-tests",
    }


async def test_proxies_from_the_environment_are_used(
    aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`HTTP_PROXY` is honoured (httpx mounts an aiohttp transport per proxy), `NO_PROXY` too."""
    seen: list[str] = []

    async def proxy(request: web.Request) -> web.Response:
        seen.append(request.host)
        return web.Response(text="via proxy")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    server = await aiohttp_server(app)
    monkeypatch.setenv("HTTP_PROXY", str(server.make_url("/")))
    monkeypatch.setenv("NO_PROXY", "direct.invalid")

    async with outbound_client() as http:
        response = await http.get("http://graph.invalid/v26.0/me")
        # Not proxied: the name does not resolve. (httpx-aiohttp 0.2 reports any aiohttp
        # connection error as ConnectTimeout, see guiche.provider_http.client: hence the base
        # class.)
        with pytest.raises(httpx.TransportError):
            await http.get("http://direct.invalid/v26.0/me")

    assert (response.status_code, response.text) == (200, "via proxy")
    assert seen == ["graph.invalid"]


async def test_app_shutdown_closes_the_aiohttp_session(make_client: Any, media_server: str) -> None:
    client = await make_client()
    http = services_of_client(client).http
    await http.get(f"{media_server}/small")
    session = http._transport.client
    assert isinstance(session, ClientSession) and not session.closed

    await client.close()  # the app's cleanup: close_resources

    assert session.closed


async def test_the_jar_keeps_cookies_set_by_answers_and_only_those(aiohttp_server: Any) -> None:
    """The jar is read into only when an answer carries `Set-Cookie` (it costs a urllib
    round of wrappers per answer otherwise): what an answer sets is kept and sent back,
    an answer without one leaves the jar as it was, and a jar set wholesale still works."""

    async def login(request: web.Request) -> web.Response:
        response = web.Response(text="ok")
        response.set_cookie("session", "s1")
        return response

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"cookie": request.headers.get("Cookie")})

    app = web.Application()
    app.router.add_post("/login", login)
    app.router.add_get("/echo", echo)
    server = await aiohttp_server(app)
    http = outbound_client()
    try:
        assert (await http.get(str(server.make_url("/echo")))).json() == {"cookie": None}
        assert len(http.cookies.jar) == 0
        await http.post(str(server.make_url("/login")))
        assert http.cookies.get("session") == "s1"
        answer = await http.get(str(server.make_url("/echo")))
        assert answer.json() == {"cookie": "session=s1"}
        assert http.cookies.get("session") == "s1"
        http.cookies = {"other": "o1"}
        answer = await http.get(str(server.make_url("/echo")))
        assert answer.json() == {"cookie": "other=o1"}
        await http.post(str(server.make_url("/login")))
        assert http.cookies.get("session") == "s1"
    finally:
        await http.aclose()


async def test_closing_the_client_closes_the_aiohttp_session(media_server: str) -> None:
    http = outbound_client()
    await http.get(f"{media_server}/small")
    session = http._transport.client
    assert isinstance(session, ClientSession) and not session.closed

    await http.aclose()

    assert session.closed


@pytest.mark.parametrize(
    ("level", "shown"), [("INFO", logging.WARNING), ("WARNING", logging.WARNING), ("DEBUG", 0)]
)
def test_the_clients_per_request_log_lines_are_quiet_unless_debug(level: str, shown: int) -> None:
    """httpx logs each request and taskiq each task at INFO: two lines per send at INFO."""
    root = logging.getLogger()
    before = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in PER_CALL_LOGGERS}
    try:
        configure_logging(level)
        assert {name: logging.getLogger(name).level for name in PER_CALL_LOGGERS} == {
            "httpx": shown,
            "httpcore": shown,
            "taskiq.receiver": shown,
        }
        for name in ("httpx", "taskiq.receiver.receiver"):  # where the per-call lines come from
            assert logging.getLogger(name).isEnabledFor(logging.INFO) is (level == "DEBUG")
    finally:
        for handler in list(root.handlers):
            if handler not in before[0]:
                root.removeHandler(handler)
        root.setLevel(before[1])
        for name, saved in levels.items():
            logging.getLogger(name).setLevel(saved)
