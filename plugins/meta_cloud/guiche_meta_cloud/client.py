"""A thin Graph API client over the process's pooled httpx client.

Every call carries the channel's bearer token and maps failures to the contract's typed
errors (see `errors`): timeouts and network errors are retryable, Graph errors are
decided by their code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx

from guiche.channels import PermanentSendError, RetryableSendError
from guiche.plugin import outbound_client
from guiche_meta_cloud.config import MetaCloudConfig
from guiche_meta_cloud.errors import graph_error_body, map_graph_error

#: Meta's largest media (documents) is 100 MB; anything longer is not a WhatsApp file.
MAX_DOWNLOAD_BYTES = 100 * 1024 * 1024


class GraphClient:
    def __init__(self, http: httpx.AsyncClient | None, config: MetaCloudConfig) -> None:
        self.http = http
        self.config = config

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.secret('access_token')}"}

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[httpx.AsyncClient]:
        """The injected pooled client; a short-lived one only when none was injected."""
        if self.http is not None:
            yield self.http
            return
        async with outbound_client() as client:  # core's configuration, short-lived
            yield client

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """`method` on `{base}/{version}/{path}` (or an absolute URL); the JSON answer."""
        url = path if path.startswith(("http://", "https://")) else self.config.graph_url(path)
        try:
            async with self._client() as client:
                response = await client.request(
                    method,
                    url,
                    json=json,
                    params=params,
                    data=data,
                    files=files,
                    headers=self._auth,
                )
        except httpx.TimeoutException:
            raise RetryableSendError("Graph API timed out", code="timeout") from None
        except httpx.TransportError as exc:
            raise RetryableSendError(
                f"Graph API unreachable: {type(exc).__name__}", code="network"
            ) from None
        if response.status_code >= 400 or graph_error_body(response.content) is not None:
            raise map_graph_error(response.status_code, response.content, response.headers)
        try:
            body = response.json()
        except ValueError:
            raise RetryableSendError(
                "Graph API answered with a body that is not JSON", code="bad_response"
            ) from None
        if not isinstance(body, dict):
            raise PermanentSendError(
                "Graph API answered with an unexpected body", code="bad_response"
            )
        return body

    async def download(self, url: str) -> tuple[bytes, str | None]:
        """A media URL's bytes (bearer token required by Meta) and content type."""
        try:
            async with (
                self._client() as client,
                client.stream("GET", url, headers=self._auth) as response,
            ):
                if response.status_code >= 400:
                    content = await response.aread()
                    raise map_graph_error(response.status_code, content, response.headers)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_DOWNLOAD_BYTES:
                        raise PermanentSendError(
                            "media larger than WhatsApp allows", code="media_too_large"
                        )
                    chunks.append(chunk)
                return b"".join(chunks), response.headers.get("content-type")
        except httpx.TimeoutException:
            raise RetryableSendError("media download timed out", code="timeout") from None
        except httpx.TransportError as exc:
            raise RetryableSendError(
                f"media download failed: {type(exc).__name__}", code="network"
            ) from None
