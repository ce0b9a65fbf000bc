"""Opening `/ws`: access token in the query, in the first frame, or an API key header."""

from __future__ import annotations

import datetime as dt

import aiohttp
import orjson
import pytest

from guiche.auth.tokens import issue_access_token

from .conftest import Socket, connect, open_socket, token_of


async def test_query_token_opens_a_socket_that_says_who_it_is(client, make_company):
    company = await make_company()
    agent = await company.add("agent")

    socket = await connect(client, agent)

    assert socket.ready["user_id"] == str(agent.user_id)
    assert socket.ready["tenant_id"] == str(company.tenant_id)
    assert socket.ready["role"] == "agent"
    assert isinstance(socket.ready["last_seq"], int)
    assert (await socket.command("ping"))["type"] == "pong"


@pytest.mark.parametrize("token", ["not-a-jwt", ""])
async def test_bad_query_token_is_refused_before_the_upgrade(client, token):
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await client.ws_connect(f"/ws?token={token}")
    assert caught.value.status == 401


async def test_expired_token_is_refused(client, make_company, settings):
    company = await make_company()
    stale = issue_access_token(
        settings,
        user_id=company.owner.user_id,
        tenant_id=company.tenant_id,
        role="owner",
        platform_admin=False,
        now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2),
    )
    resp = await client.get(f"/ws?token={stale}")
    assert resp.status == 401
    assert (await resp.json())["error"]["message"] == "Access token expired"


async def test_first_frame_auth(client, make_company):
    company = await make_company()
    token = await token_of(client, company.owner)
    ws = await client.ws_connect("/ws")
    socket = Socket(ws)

    await ws.send_str(orjson.dumps({"type": "auth", "id": "a1", "token": token}).decode())

    ready = await socket.next("ready")
    assert ready["id"] == "a1" and ready["user_id"] == str(company.owner.user_id)


async def test_first_frame_with_a_bad_token_closes_4401(client):
    ws = await client.ws_connect("/ws")
    await ws.send_str('{"type": "auth", "token": "forged"}')
    assert await Socket(ws).close_code() == 4401
    assert ws.close_code == 4401


async def test_a_command_before_auth_closes_4401(client):
    ws = await client.ws_connect("/ws")
    await ws.send_str('{"type": "ping"}')
    assert await Socket(ws).close_code() == 4401


async def test_no_auth_frame_in_time_closes_4401(make_client, fake_plugin):
    client = await make_client(
        extra_plugins=((fake_plugin.name, fake_plugin),), ws_auth_timeout_seconds=0.2
    )
    ws = await client.ws_connect("/ws")
    assert await Socket(ws).close_code() == 4401


async def test_socket_closes_4401_when_its_token_expires(client, make_company, settings):
    company = await make_company()
    ttl = 60
    token = issue_access_token(
        settings,
        user_id=company.owner.user_id,
        tenant_id=company.tenant_id,
        role="owner",
        platform_admin=False,
        ttl_seconds=ttl,
        now=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ttl - 2),
    )
    socket = await open_socket(client, token)
    assert await socket.close_code() == 4401


async def test_reauth_extends_the_socket_and_must_be_the_same_user(client, make_company):
    company = await make_company()
    agent = await company.add("agent")
    socket = await connect(client, company.owner)

    fresh = await socket.command("auth", token=await token_of(client, company.owner))
    other = await socket.command("auth", token=await token_of(client, agent))

    assert fresh["type"] == "ack" and fresh["expires_at"]
    assert other["type"] == "error" and other["error"]["code"] == "token_mismatch"


async def test_api_key_header_opens_a_socket(client, make_company, auth_headers):
    company = await make_company()
    created = await client.post(
        "/api/v1/api-keys", json={"name": "crm"}, headers=await auth_headers(company.owner)
    )
    key = (await created.json())["key"]

    ws = await client.ws_connect("/ws", headers={"x-api-key": key})
    socket = Socket(ws)
    ready = await socket.next("ready")

    assert ready["tenant_id"] == str(company.tenant_id) and ready["user_id"] is None
    presence = await socket.command("presence", status="online")
    assert presence["error"]["code"] == "not_a_user"


async def test_malformed_and_unknown_commands_get_error_frames(client, make_company):
    company = await make_company()
    socket = await connect(client, company.owner)

    await socket.ws.send_str("not json")
    bad_json = await socket.next("error")
    unknown = await socket.command("dance")
    await socket.ws.send_str('{"type": ["not", "a", "name"]}')
    unhashable = await socket.next("error")
    invalid = await socket.command("conversation.join", conversation_id="nope")

    assert bad_json["error"]["code"] == "invalid_json"
    assert unknown["error"]["code"] == unhashable["error"]["code"] == "unknown_command"
    assert invalid["error"]["code"] == "validation_error"
    assert invalid["error"]["details"][0]["field"] == "conversation_id"


async def test_bearer_header_opens_a_socket_and_a_bad_one_is_a_json_401(client, make_company):
    """`/ws` runs outside the middlewares: it reads header credentials and answers its
    refusals before the upgrade itself, in the API's JSON error shape."""
    company = await make_company()
    agent = await company.add("agent")
    bearer = {"Authorization": f"Bearer {await token_of(client, agent)}"}
    ws = await client.ws_connect("/ws", headers=bearer)
    ready = orjson.loads((await ws.receive()).data)
    assert ready["type"] == "ready" and ready["user_id"] == str(agent.user_id)
    await ws.close()

    for headers in ({"Authorization": "Bearer nope"}, {"Authorization": "Basic x"},
                    {"x-api-key": "gk_unknown"}):
        resp = await client.get("/ws", headers=headers)
        assert resp.status == 401, headers
        error = (await resp.json())["error"]
        assert error["code"] and error["message"]


async def test_an_open_socket_holds_no_middleware_frame(client, make_company):
    """The handler's task awaits the socket directly: none of the seven middlewares'
    coroutines stays suspended for the socket's life (~3.5 KiB each socket before)."""
    import gc
    import inspect

    company = await make_company()
    socket = await connect(client, await company.add("agent"))
    assert (await socket.command("ping"))["type"] == "pong"
    middlewares = [
        c for c in gc.get_objects()
        if inspect.iscoroutine(c) and c.cr_frame is not None
        and c.cr_code.co_name.endswith("_middleware")
    ]
    assert middlewares == []
