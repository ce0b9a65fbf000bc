"""Calls to one Evolution server: the `apikey` header, the address policy, and errors
turned into one typed exception that says whether trying again may help."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import orjson

from guiche.channels import ChannelError
from guiche_evolution.config import EvolutionConfig
from guiche_evolution.netpolicy import TargetNotAllowed, check_target
from guiche_evolution.values import error_reason

DEFAULT_TIMEOUT = 15.0
SEND_TIMEOUT = 60.0  # a media send uploads the file to WhatsApp before answering


class EvolutionError(ChannelError):
    """An Evolution call failed. `status` is the HTTP status (None: no answer), `body`
    the decoded error body, `retryable` whether the same call may succeed later."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int | None = None,
        body: Any = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, details={"status": status} if status else {})
        self.status = status
        self.body = body
        self.retryable = retryable
        self.retry_after = retry_after


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _decode(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:500]


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what it was raised from, outermost first (cycles cut)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def transport_error(exc: httpx.HTTPError) -> EvolutionError:
    """No answer: "could not connect" or "did not answer in time", by the real cause.

    The process client's transport (httpx-aiohttp) reports a refused or failed connect
    as `httpx.ConnectTimeout`, so the httpx class alone would call a server that is down
    "slow"; the aiohttp/OS error it was raised from says which it was. Both are retried.
    """
    chain = _causes(exc)
    # A timeout is an asyncio/aiohttp TimeoutError underneath, or httpx's own (no cause).
    if any(
        isinstance(item, TimeoutError)
        or (isinstance(item, httpx.TimeoutException) and item.__cause__ is None)
        for item in chain
    ):
        return EvolutionError(
            "the Evolution server did not answer in time", code="timeout", retryable=True
        )
    os_errors = [item for item in chain if isinstance(item, OSError)]
    os_errors += [e for item in chain if isinstance(e := getattr(item, "os_error", None), OSError)]
    if any(isinstance(item, ConnectionRefusedError) for item in os_errors):
        reason = "connection refused"
    elif os_errors:
        reason = os_errors[-1].strerror or str(os_errors[-1]) or type(os_errors[-1]).__name__
    elif isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        reason = str(exc) or type(exc).__name__
    else:
        return EvolutionError(
            f"the Evolution server is unreachable: {type(exc).__name__}",
            code="unreachable",
            retryable=True,
        )
    return EvolutionError(
        f"could not connect to the Evolution server ({reason})", code="unreachable", retryable=True
    )


class EvolutionClient:
    """One channel's view of its Evolution server."""

    def __init__(self, http: httpx.AsyncClient | None, config: EvolutionConfig) -> None:
        self.http = http
        self.config = config

    def instance_path(self, action: str) -> str:
        return f"/{action}/{quote(self.config.instance_name, safe='')}"

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        seconds: float = DEFAULT_TIMEOUT,
    ) -> Any:
        """The decoded JSON answer of a 2xx, else `EvolutionError` (`seconds` bounds the call)."""
        if self.http is None:
            raise EvolutionError("no HTTP client configured", code="no_http_client")
        base = self.config.server_url
        try:
            await check_target(base)
        except TargetNotAllowed as exc:
            raise EvolutionError(
                f"the Evolution server URL is not allowed: {exc}", code="target_not_allowed"
            ) from None
        try:
            response = await self.http.request(
                method,
                base + path,
                json=json,
                headers={"apikey": self.config.api_key.get_secret_value()},
                timeout=seconds,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc) from None
        body = _decode(response)
        status = response.status_code
        if status < 300:
            return body
        reason = error_reason(body) or response.reason_phrase or "error"
        raise EvolutionError(
            f"Evolution answered {status}: {reason}",
            code=f"http_{status}",
            status=status,
            body=body,
            retryable=status >= 500 or status in (408, 425, 429),
            retry_after=_retry_after(response),
        )
