"""The client's session handling, backoff and rate limit, on an httpx MockTransport."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from guiche_chatguru.client import (
    ChatGuruApiError,
    ChatGuruAuthError,
    ChatGuruClient,
    ChatGuruShapeError,
    ChatGuruUnavailable,
)
from guiche_chatguru.config import ChatGuruCredentials

from guiche.ratelimit import MemoryRateLimiter

from .fake_chatguru import load

PANEL = "https://s20.chatguru.app"
LIST = load("chatlist_page1.json")


def credentials(**overrides: Any) -> ChatGuruCredentials:
    values = {
        "panel_url": PANEL,
        "email": "a@b.c",
        "password": "pw",
        "api_key": "k",
        "account_id": "acc",
        "phone_id": "ph",
    }
    values.update(overrides)
    return ChatGuruCredentials.model_validate(values)


def make(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> ChatGuruClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return ChatGuruClient(credentials(**kwargs.pop("creds", {})), http, **kwargs)


def logged_in(request: httpx.Request) -> httpx.Response | None:
    if request.url.path == "/login":
        return httpx.Response(302, headers={"Location": "/", "Set-Cookie": "session=abc; Path=/"})
    return None


async def test_retry_after_is_honoured_then_it_works() -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "0.2"}), httpx.Response(503)]

    def handler(request: httpx.Request) -> httpx.Response:
        if (login := logged_in(request)) is not None:
            return login
        assert request.headers["Cookie"] == "session=abc"
        return answers.pop(0) if answers else httpx.Response(200, json=LIST)

    client = make(handler)
    started = time.monotonic()
    page = await client.chat_page(0)
    assert len(page.chats) == 3 and page.total == 3
    assert time.monotonic() - started >= 0.2
    assert client.retries == 2


async def test_throttled_for_good_is_a_clear_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return logged_in(request) or httpx.Response(500, headers={"Retry-After": "0"})

    with pytest.raises(ChatGuruUnavailable, match="HTTP 500 after 4 attempts"):
        await make(handler).chat_page(0)


async def test_expired_session_logs_in_once_more_then_fails() -> None:
    logins = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal logins
        if request.url.path == "/login":
            logins += 1
            return logged_in(request)  # type: ignore[return-value]
        return httpx.Response(302, headers={"Location": "/login"})

    with pytest.raises(ChatGuruAuthError, match="right after logging in"):
        await make(handler).chat_page(0)
    assert logins == 2


async def test_a_refused_cookie_without_login_is_bad_credentials() -> None:
    client = make(
        lambda request: httpx.Response(401),
        creds={"email": None, "password": None, "session_cookie": "old"},
    )
    with pytest.raises(ChatGuruAuthError):
        await client.message_page("c1", 1)


async def test_not_json_and_missing_fields_are_shape_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if (login := logged_in(request)) is not None:
            return login
        if "messages2" in request.url.path:
            return httpx.Response(200, json={"cst": "x"})
        return httpx.Response(200, text="<html>maintenance</html>")

    client = make(handler)
    with pytest.raises(ChatGuruShapeError, match="did not answer JSON"):
        await client.chat_page(0)
    with pytest.raises(ChatGuruShapeError, match="messages_and_notes"):
        await client.message_page("c1", 1)


async def test_the_rate_limit_spaces_calls() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return logged_in(request) or httpx.Response(200, json=LIST)

    client = make(handler, limiter=MemoryRateLimiter(), rate_key="t", requests_per_second=20)
    started = time.monotonic()
    await asyncio.gather(*(client.chat_page(0) for _ in range(30)))
    # 31 calls (with the login) at 20/s after a burst of 20: at least half a second
    assert time.monotonic() - started >= 0.45


async def test_documented_api_shapes() -> None:
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        form = dict(httpx.QueryParams(request.content.decode()))
        seen.append(form)
        if form["action"] == "message_send":
            return httpx.Response(201, json=load("api_message_send_ok.json"))
        return httpx.Response(400, json=load("api_error.json"))

    client = make(handler)
    sent = await client.message_send("5511987654321", "Olá")
    assert sent["message_id"] == "c36ea2af419e2b676e6e12f9"
    assert seen[0] == {
        "key": "k",
        "account_id": "acc",
        "phone_id": "ph",
        "action": "message_send",
        "chat_number": "5511987654321",
        "text": "Olá",
    }
    with pytest.raises(ChatGuruApiError, match="phone_id inválido"):
        await client.message_status("x")
    with pytest.raises(ChatGuruApiError, match="not configured"):
        await make(handler, creds={"api_key": None}).chat_add("55", "Ana")


async def test_session_cookies_never_stay_in_the_shared_jar() -> None:
    client = make(lambda request: logged_in(request) or httpx.Response(200, json=LIST))
    await client.chat_page(0)
    assert client.cookie == "abc"
    assert len(client.http.cookies.jar) == 0


def test_retry_after_as_an_http_date_is_honoured() -> None:
    import datetime as dt
    import email.utils

    from guiche_chatguru.client import MAX_RETRY_AFTER, _delay

    def wait(value: str) -> float:
        return _delay(httpx.Response(429, headers={"Retry-After": value}), attempt=1)

    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    assert 3.0 <= wait(email.utils.format_datetime(soon, usegmt=True)) <= 5.0
    late = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert wait(email.utils.format_datetime(late, usegmt=True)) == MAX_RETRY_AFTER
    assert wait("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # already past: at once
    assert wait("7") == 7.0
    assert wait("soon") > 0  # unreadable: backoff


async def test_a_companys_accounts_share_one_request_budget() -> None:
    import uuid

    from guiche_chatguru.adapter import rate_key

    tenant = uuid.uuid4()
    assert rate_key(tenant) == rate_key(tenant) != rate_key(uuid.uuid4())
