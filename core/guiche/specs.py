"""The specs plugins hand to core (and core's hook marker): plain data, at the bottom of
the layers so that core's domain (channel runtime, routing, tasks) reads them without
importing the plugin host. Plugins import them from `guiche.plugin`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from guiche.channels import ChannelAdapter

PROJECT = "guiche"
API_VERSION = 1

hookimpl = pluggy.HookimplMarker(PROJECT)

#: What `message_media` tells a plugin about a stored file.
MEDIA_FIELDS = ("id", "mime_type", "size", "filename", "sha256", "created_at")


@dataclass(frozen=True)
class PluginInfo:
    """What a plugin says about itself. `name` must equal its entry-point name."""

    name: str
    version: str
    description: str = ""
    api_version: int = API_VERSION
    settings_model: type[BaseModel] | None = None
    requires: tuple[str, ...] = ()
    operator_settings: type[BaseSettings] | None = None
    """The deployment-wide environment variables the plugin reads, as one pydantic-settings
    model (`guiche.foundation.config.env_names` lists them; `.env.example` must name each)."""


@dataclass(frozen=True)
class RouteSpec:
    """A plugin route, mounted under `/api/v1/plugins/<plugin>/<path>` and tenant-gated.

    Decorate `handler` with `guiche.plugin.endpoint(...)` to declare its permission.
    """

    method: str
    path: str
    handler: Callable[..., Awaitable[Any]]
    name: str | None = None


@dataclass(frozen=True)
class WebhookRouteSpec:
    """A provider-facing route under `/webhooks/<plugin>/<path>`: no user auth, no gating."""

    method: str
    path: str
    handler: Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class TaskSpec:
    """A background task registered on the broker as `<plugin>.<name>`.

    `func` is `async def`; it gets the kicked (JSON) arguments, plus `services=` (the
    process's `Services`) when it declares a parameter by that name. Delivery is
    at-least-once: make it idempotent. `schedule`: e.g. `({"interval": 5},)` or
    `({"cron": "*/10 * * * *"},)`, run by the one scheduler.
    """

    name: str
    func: Callable[..., Awaitable[Any]]
    schedule: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ChannelSpec:
    """A channel type a plugin provides: its `guiche.channels.ChannelAdapter` subclass, the
    pydantic model of its credentials, and capabilities (e.g. CAP_CUSTOMER_CARE_WINDOW)."""

    type: str
    adapter: type[ChannelAdapter]
    credentials_model: type[BaseModel]
    capabilities: frozenset[str] = field(default_factory=frozenset)
    description: str = ""


@dataclass(frozen=True)
class RoutingDecision:
    """What `guiche_route_inbound` returns: the department to queue in, or a bot taking it."""

    department_id: uuid.UUID | None = None
    bot: bool = False


@dataclass(frozen=True)
class Caller:
    """Who called a plugin's route: a person signed in to a company (`user_id`, `role`)
    or that company's API key (`api_key_id`; no person). `permissions` are the caller's
    grants, core's and plugins' (`PermissionGrant`)."""

    tenant_id: uuid.UUID
    role: str
    permissions: frozenset[str]
    user_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None

    @property
    def is_user(self) -> bool:
        return self.user_id is not None

    def can(self, permission: str) -> bool:
        return permission in self.permissions


@dataclass(frozen=True)
class ServiceSpec:
    """A long-running plugin service (a socket client, a child process's supervisor),
    registered as `<plugin>.<name>`.

    `func(services, stop)` is `async def` and runs until the `asyncio.Event` `stop` is
    set, then returns; core restarts it with backoff when it raises. `guiche run` runs
    every service; `guiche worker` runs those with `with_worker` (so a scaled-out
    deployment gets one per worker: services must coordinate, e.g. with leases);
    `guiche service <plugin>.<name>` runs one on its own.
    """

    name: str
    func: Callable[..., Awaitable[None]]
    with_worker: bool = True


@dataclass(frozen=True)
class CommandSpec:
    """An operator command a plugin adds to the `guiche` CLI: `guiche <plugin> <name>`.

    `arguments(parser)` adds its argparse options; `func(services, args)` is `async def`
    and returns the exit code. It runs with the services open on `DATABASE_URL` (else
    `guiche run`'s embedded database), like a web process: events it publishes reach the
    companies' sockets, tasks it kicks go to the workers (in-process without Redis).
    With `per_company`, core adds `--company SLUG|ID` and passes the company's id as
    `args.tenant_id` (an unknown company is a one-line error). Ctrl+C cancels `func`
    (`asyncio.CancelledError`): clean up, then let it propagate (exit 130).
    """

    name: str
    help: str
    func: Callable[..., Awaitable[int]]
    arguments: Callable[[Any], None] | None = None
    per_company: bool = True


@dataclass(frozen=True)
class ConsolePage:
    """One console page a plugin adds.

    `slug` names it in the URL (`#/p/<plugin>/<slug>`); `title` is shown in the menu,
    `titles` overrides it per language (`{"pt-BR": "Relatórios"}`); `static_dir` is a
    folder in the plugin's package whose files are served publicly (no secrets there);
    `module` is the ES module in it whose default export, `mount(element, console)`,
    draws the page; `permission`, when set, hides the page from callers without it.
    """

    slug: str
    title: str
    static_dir: Path
    module: str = "page.js"
    titles: dict[str, str] = field(default_factory=dict)
    permission: str | None = None
