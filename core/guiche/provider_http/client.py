"""The process's outbound HTTP client: httpx's API over aiohttp's client.

Plugins receive it as `services.http`, an `httpx.AsyncClient` (tests swap in
`httpx.MockTransport`), so httpx stays the API. Its *transport* is aiohttp's, through
`httpx-aiohttp`: httpx's own (httpcore) capped one worker at ~340 requests/s on the
benchmark machine, where the same loop on aiohttp reaches thousands (bench/README.md,
"send").

How httpx's settings reach aiohttp (`httpx_aiohttp.AiohttpTransport`): the timeout's
`connect` is aiohttp's `sock_connect`, `read` its `sock_read` (per read, like httpx),
`pool` its `connect` (waiting for a pooled connection plus connecting); aiohttp has no
write timeout, so a send is also bounded by the sender's own deadline
(`send_timeout_seconds`). `Limits.max_connections` is the connector's `limit`; proxies
come from httpx (`trust_env`: `HTTPS_PROXY`, `NO_PROXY`...), each mounted on its own
transport. Closing the client closes the aiohttp sessions.

Known difference: httpx-aiohttp 0.2 maps every aiohttp connection error (refused, DNS,
reset) to `httpx.ConnectTimeout`, not `ConnectError`. Both are `TransportError`s and
adapters retry both; only the error code a plugin derives (e.g. "timeout" rather than
"network") is less precise.

The cookie jar (`SetCookieJar`) is read into only for answers that set a cookie.

Every request goes through `send()`, where the per-channel provider call log
(`guiche.provider_http.call_log`) observes it: status, latency, or the exception raised.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import httpx
from httpx_aiohttp import HttpxAiohttpClient

from guiche.provider_http.call_log import CallRecorder

TIMEOUT = httpx.Timeout(15.0, connect=5.0)
"""Per operation; a hung provider is cut after 15 s without data, a dead host after 5 s."""


class SetCookieJar(httpx.Cookies):
    """The client's cookie jar, read into only when an answer sets a cookie: httpx hands
    every response to `http.cookiejar` through urllib request and response wrappers,
    about 60 of the ~425 µs of client CPU a request costs, for answers that nearly never
    carry `Set-Cookie` (the jar ignores RFC 2965's `Set-Cookie2`)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            super().extract_cookies(response)


class RecordingClient(HttpxAiohttpClient):
    """httpx's client whose every request is offered to the provider call log."""

    def __init__(self, *, recorder: CallRecorder | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.recorder = recorder
        self._cookies = SetCookieJar(self._cookies)

    @property
    def cookies(self) -> httpx.Cookies:
        return self._cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._cookies = SetCookieJar(cookies)

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        recorder = self.recorder
        if recorder is None:
            return await super().send(request, **kwargs)
        started = dt.datetime.now(dt.UTC)
        clock = time.perf_counter()
        try:
            response = await super().send(request, **kwargs)
        except BaseException as exc:
            recorder.observe(
                request, started=started, elapsed=time.perf_counter() - clock, error=exc
            )
            raise
        recorder.observe(
            request, started=started, elapsed=time.perf_counter() - clock, response=response
        )
        return response


def outbound_client(
    *,
    timeout: httpx.Timeout = TIMEOUT,
    recorder: CallRecorder | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """A pooled client; create it inside the running event loop, `aclose()` it at shutdown.
    `recorder` logs the calls made inside a `provider_call` scope; `transport` replaces
    aiohttp's (tests)."""
    return RecordingClient(recorder=recorder, timeout=timeout, transport=transport)
