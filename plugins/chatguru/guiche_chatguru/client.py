"""Every HTTP shape of ChatGuru, in one place.

Two surfaces:

- the panel (undocumented, session-cookie auth): `POST /login` (form `email`,
  `password`; the answer sets the `session` cookie), `POST /chatlist/store` (a JSON
  filter body, `page_num` 0-based) and `GET /messages2/{chat_id}/page/{n}` (page 1 is
  the newest). Answers may be labelled text/html: the body is parsed as JSON anyway.
- the documented API v1: `POST /api/v1` with form fields `key`, `account_id`,
  `phone_id`, `action` (`message_send`, `message_status`, `chat_add`); success is
  `result == "success"`, whatever the HTTP status.

Session: log in (or use the configured cookie), keep the cookie, log in again once on a
401/403 or a redirect to the login page, then fail with `ChatGuruAuthError`. 429 and 5xx
are retried with backoff honouring `Retry-After`. Every call first books a slot in the
per-account `guiche.ratelimit` bucket, so concurrent workers never hammer the panel.

The process's pooled httpx client is shared by every company: cookies are always sent
in an explicit header and wiped from the shared jar after each answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from guiche_chatguru.config import ChatGuruCredentials, check_panel_url

log = logging.getLogger("guiche.plugin.chatguru")

SESSION_COOKIE = "session"
MAX_ATTEMPTS = 4
BACKOFF_BASE = 0.5
MAX_RETRY_AFTER = 30.0
#: How long a call may wait for its slot in the account's rate bucket.
MAX_RATE_WAIT = 60.0

CHATLIST_FILTERS: dict[str, Any] = {
    "filter_order_by": "",
    "filter_tag": [],
    "filter_tag_rule": "or",
    "filter_user_rule": "or",
    "filter_user": {"users": [], "groups": [], "noDelegated": False},
    "filter_phone": "",
    "filter_funnel_step": [],
    "filter_status": "",
    "filter_search_number": "",
    "filter_search_name": "",
    "filter_new_messages": "",
    "filter_archived": "",
    "filter_broadcast": "",
    "filter_favorited": "",
    "filter_scheduled": "",
}


class ChatGuruError(Exception):
    """A ChatGuru call failed; `code` says how (shown to operators as is)."""

    code = "chatguru_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class ChatGuruAuthError(ChatGuruError):
    code = "bad_credentials"


class ChatGuruUnreachable(ChatGuruError):
    code = "unreachable"


class ChatGuruShapeError(ChatGuruError):
    code = "unexpected_shape"


class ChatGuruUnavailable(ChatGuruError):
    """Throttled or failing after every retry."""

    code = "upstream_unavailable"


class ChatGuruApiError(ChatGuruError):
    """The documented API answered `result: error`."""

    code = "api_error"


@dataclass
class ChatPage:
    chats: list[dict[str, Any]]
    total: int | None


@dataclass
class ChatGuruClient:
    """One account's calls. `http` is core's pooled client; `limiter` its rate limiter."""

    credentials: ChatGuruCredentials
    http: httpx.AsyncClient
    limiter: Any = None
    rate_key: str = "chatguru"
    requests_per_second: float = 10.0
    cookie: str | None = None
    calls: int = 0
    retries: int = 0
    logins: int = 0
    _login_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.cookie is None and self.credentials.session_cookie is not None:
            self.cookie = self.credentials.session_cookie.get_secret_value() or None
        self.base = check_panel_url(self.credentials.panel_url)
        self.host = urlsplit(self.base).hostname or ""

    # --- the panel --------------------------------------------------------------------

    async def chat_page(self, page_num: int, *, archived: bool = False) -> ChatPage:
        """One page of the chat list (0-based); `archived` is the second pass."""
        body = {"page_num": page_num, **CHATLIST_FILTERS}
        if archived:
            body["filter_archived"] = "True"
        data = await self._panel("POST", "/chatlist/store", json=body)
        chats = data.get("chats") if isinstance(data, dict) else None
        if not isinstance(chats, list):
            raise ChatGuruShapeError(
                "/chatlist/store answered without a `chats` list", details=_shape(data)
            )
        total = data.get("total_chats")
        return ChatPage(
            chats=[chat for chat in chats if isinstance(chat, dict)],
            total=total if isinstance(total, int) else None,
        )

    async def message_page(self, chat_id: str, page: int) -> list[Any]:
        """Items of one message page (1 = newest), chronological inside the page."""
        data = await self._panel("GET", f"/messages2/{chat_id}/page/{page}")
        items = data.get("messages_and_notes") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise ChatGuruShapeError(
                "/messages2 answered without `messages_and_notes`", details=_shape(data)
            )
        return items

    async def login(self) -> None:
        """Log in with email + password and keep the session cookie."""
        creds = self.credentials
        if not (creds.email and creds.password):
            raise ChatGuruAuthError("the session cookie was refused and no login is configured")
        response = await self._send(
            "POST",
            "/login",
            data={"email": creds.email, "password": creds.password.get_secret_value()},
            cookie="",
        )
        cookie = response.cookies.get(SESSION_COOKIE)
        if response.status_code in (401, 403) or not cookie or _to_login(response):
            raise ChatGuruAuthError("ChatGuru refused the email or password")
        self.cookie = cookie
        self.logins += 1

    async def _panel(self, method: str, path: str, **kwargs: Any) -> Any:
        if self.cookie is None:
            async with self._login_lock:
                if self.cookie is None:
                    await self.login()
        used = self.cookie
        response = await self._send(method, path, cookie=used, **kwargs)
        if _expired(response):
            async with self._login_lock:
                if self.cookie == used:  # nobody logged in again meanwhile
                    self.cookie = None
                    await self.login()
            response = await self._send(method, path, cookie=self.cookie, **kwargs)
            if _expired(response):
                raise ChatGuruAuthError("ChatGuru refused the session right after logging in")
        if response.status_code >= 400:
            raise ChatGuruShapeError(
                f"{method} {path} answered HTTP {response.status_code}",
                details={"status": response.status_code},
            )
        return _json(response, path)

    # --- the documented API -------------------------------------------------------------

    async def api(self, action: str, **params: Any) -> dict[str, Any]:
        """Call the documented API (`message_send`, `message_status`, `chat_add`)."""
        creds = self.credentials
        if not (creds.api_key and creds.account_id and creds.phone_id):
            raise ChatGuruApiError("the API key, account id and phone id are not configured")
        form = {
            "key": creds.api_key.get_secret_value(),
            "account_id": creds.account_id,
            "phone_id": creds.phone_id,
            "action": action,
            **{k: str(v) for k, v in params.items() if v is not None},
        }
        response = await self._send("POST", "/api/v1", data=form, cookie="")
        data = _json(response, "/api/v1")
        if not isinstance(data, dict) or data.get("result") != "success":
            description = data.get("description") if isinstance(data, dict) else None
            raise ChatGuruApiError(
                f"ChatGuru API {action}: {description or 'refused'}",
                details={
                    "status": response.status_code,
                    "code": _get(data, "code"),
                    "description": description,
                },
            )
        return data

    async def message_send(self, chat_number: str, text: str) -> dict[str, Any]:
        return await self.api("message_send", chat_number=chat_number, text=text)

    async def message_status(self, message_id: str) -> dict[str, Any]:
        return await self.api("message_status", message_id=message_id)

    async def chat_add(self, chat_number: str, name: str, text: str = "") -> dict[str, Any]:
        return await self.api("chat_add", chat_number=chat_number, name=name, text=text)

    # --- transport ----------------------------------------------------------------------

    async def _send(
        self, method: str, path: str, *, cookie: str | None, **kwargs: Any
    ) -> httpx.Response:
        """One call with rate limit and retries on 429 / 5xx / network errors."""
        session = f"{SESSION_COOKIE}={cookie}" if cookie else ""
        headers = {"Accept": "application/json", "Cookie": session}
        for attempt in range(1, MAX_ATTEMPTS + 1):
            await self._wait_for_slot()
            self.calls += 1
            try:
                response = await self.http.request(
                    method, self.base + path, headers=headers, follow_redirects=False, **kwargs
                )
            except httpx.HTTPError as exc:
                if attempt == MAX_ATTEMPTS:
                    raise ChatGuruUnreachable(
                        f"ChatGuru at {self.host} is unreachable: {type(exc).__name__}"
                    ) from exc
                self.retries += 1
                await asyncio.sleep(BACKOFF_BASE * 2 ** (attempt - 1))
                continue
            finally:
                self._forget_cookies()
            if response.status_code == 429 or response.status_code >= 500:
                if attempt == MAX_ATTEMPTS:
                    raise ChatGuruUnavailable(
                        f"{method} {path} answered HTTP {response.status_code} "
                        f"after {attempt} attempts",
                        details={"status": response.status_code},
                    )
                self.retries += 1
                await asyncio.sleep(_delay(response, attempt))
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _wait_for_slot(self) -> None:
        if self.limiter is None:
            return
        rate = self.requests_per_second
        slot = await self.limiter.reserve(
            self.rate_key, rate=rate, burst=max(1, int(rate)), max_wait=MAX_RATE_WAIT
        )
        if not slot.allowed:
            raise ChatGuruUnavailable("too many ChatGuru calls queued for this account")
        if slot.wait > 0:
            await asyncio.sleep(slot.wait)

    def _forget_cookies(self) -> None:
        """The shared client's jar must never carry one company's session to another."""
        with contextlib.suppress(KeyError, AttributeError):
            self.http.cookies.jar.clear(domain=self.host)
        with contextlib.suppress(KeyError, AttributeError):
            self.http.cookies.jar.clear(domain=self.host + ".local")


def _delay(response: httpx.Response, attempt: int) -> float:
    """`Retry-After` in seconds or as an HTTP date (both are RFC 9110's), at most
    `MAX_RETRY_AFTER`; else exponential backoff."""
    raw = response.headers.get("Retry-After", "").strip()
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(raw)))
    except ValueError:
        pass
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when = email.utils.parsedate_to_datetime(raw)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        wait = (when - dt.datetime.now(dt.UTC)).total_seconds()
        return min(MAX_RETRY_AFTER, max(0.0, wait))
    return BACKOFF_BASE * 2 ** (attempt - 1)


def _to_login(response: httpx.Response) -> bool:
    return response.status_code in (301, 302, 303, 307, 308) and "/login" in response.headers.get(
        "Location", ""
    )


def _expired(response: httpx.Response) -> bool:
    return response.status_code in (401, 403) or _to_login(response)


def _json(response: httpx.Response, path: str) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise ChatGuruShapeError(
            f"{path} did not answer JSON",
            details={"status": response.status_code, "start": response.text[:120]},
        ) from exc


def _get(data: Any, key: str) -> Any:
    return data.get(key) if isinstance(data, dict) else None


def _shape(data: Any) -> dict[str, Any]:
    if isinstance(data, dict):
        return {"keys": sorted(str(key) for key in data)[:20]}
    return {"type": type(data).__name__}
