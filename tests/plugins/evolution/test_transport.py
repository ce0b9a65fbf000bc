"""No answer from the Evolution server, through the process's real HTTP client
(httpx over aiohttp): a refused connection is "could not connect", not a timeout."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import pytest
from aiohttp import web
from guiche_evolution.adapter import EvolutionAdapter, ProvisioningError
from guiche_evolution.client import EvolutionError

from guiche.channels import ChannelInfo, OutboundMessage, Recipient, RetryableSendError
from guiche.plugin import outbound_client

from .conftest import make_config


def free_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def adapter_for(server_url: str, http: Any) -> EvolutionAdapter:
    info = ChannelInfo(id=uuid.uuid4(), tenant_id=uuid.uuid4(), type="evolution", name="Loja")
    return EvolutionAdapter(info, make_config(server_url=server_url), http=http)


def text() -> OutboundMessage:
    return OutboundMessage(
        message_id=uuid.uuid4(), to=Recipient(phone="+5511987654321"), kind="text", text="Oi"
    )


@pytest.fixture
async def http() -> Any:
    client = outbound_client()
    yield client
    await client.aclose()


async def test_a_refused_connection_is_could_not_connect(http, allow_private):
    adapter = adapter_for(f"http://127.0.0.1:{free_port()}", http)
    with pytest.raises(RetryableSendError) as sent:
        await adapter.send(text())
    assert sent.value.code == "unreachable"
    assert "could not connect" in sent.value.message
    assert "connection refused" in sent.value.message
    with pytest.raises(ProvisioningError) as provisioned:
        await adapter.provision()
    assert "could not connect to the Evolution server" in provisioned.value.message
    assert "in time" not in provisioned.value.message


async def test_a_server_that_never_answers_is_a_timeout(aiohttp_server, http, allow_private):
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hang)
    server = await aiohttp_server(app)
    adapter = adapter_for(str(server.make_url("")).rstrip("/"), http)
    with pytest.raises(EvolutionError) as info:
        await adapter.client.call("POST", "/instance/create", seconds=0.2)
    assert info.value.code == "timeout"
    assert "did not answer in time" in info.value.message
