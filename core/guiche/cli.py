"""The `guiche` command: run modes (run, web, worker, scheduler) and operator chores.

Bad configuration prints one line per invalid variable and exits 2, never a traceback;
an operator error (unknown user, duplicate member) prints one line and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import secrets
import shlex
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from guiche.foundation.config import ConfigError, Settings, load_settings
from guiche.foundation.logs import configure_logging

if TYPE_CHECKING:
    from piccolo.engine.postgres import PostgresEngine

    from guiche.channel_host.demo_channel import DemoChannel

SHUTDOWN_TIMEOUT_SECONDS = 10.0
"""How long the web server waits for in-flight requests after a stop signal."""

T = TypeVar("T")


# --- entry point ---------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, run the command, return the process exit code."""
    import asyncpg

    from guiche.database.migrate import MigrationError
    from guiche.foundation.errors import ApiError
    from guiche.plugin_host.manager import PluginError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(with_plugins=wants_plugin_commands(argv)).parse_args(argv)
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(line, file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except (PluginError, MigrationError, CommandError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except asyncpg.UndefinedTableError as exc:
        print(f"error: database: {exc} (run `guiche migrate` first)", file=sys.stderr)
        return 1
    except asyncpg.PostgresError as exc:
        print(f"error: database: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. the database or Redis refused the connection
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl+C: stop without the graceful steps
        return 130


class CommandError(Exception):
    """An operator mistake a command reports in one line (exit 1)."""


def wants_plugin_commands(argv: Sequence[str]) -> bool:
    """Plugins' commands are loaded only for a command core does not own (or for help),
    so `guiche run` and the chores never import plugins just to parse their arguments."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return first is None or first not in core_commands()


def core_commands() -> frozenset[str]:
    """The commands core registers, read from its own parser (never listed twice)."""
    return frozenset(_core_parser()[1].choices)


def build_parser(*, with_plugins: bool = False) -> argparse.ArgumentParser:
    parser, commands = _core_parser()
    if with_plugins:
        add_plugin_commands(commands)
    return parser


def _core_parser() -> tuple[argparse.ArgumentParser, Any]:
    """The parser with core's commands, and its subcommands action (for plugins' own)."""
    parser = argparse.ArgumentParser(
        prog="guiche",
        description="Guichê: a plugin-based customer-service gateway. "
        "Configuration comes from the environment (see .env.example).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], help: str) -> Any:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    command("run", cmd_run, "all in one process: embedded Postgres when DATABASE_URL is unset")
    command("web", cmd_web, "serve the HTTP API (scale-out: run many behind a load balancer)")
    command("worker", cmd_worker, "run background tasks from Redis (scale-out: run many)")
    command("scheduler", cmd_scheduler, "enqueue periodic tasks (scale-out: run exactly one)")
    command("migrate", cmd_migrate, "apply core's and plugins' database migrations")
    command("plugins", cmd_plugins, "list installed plugins and how many companies use them")
    command("doctor", cmd_doctor, "check the database, storage, Redis, media path and plugins")
    service = command(
        "service", cmd_service, "run plugin services on their own (scale-out): <plugin>.<name>"
    )
    service.add_argument("names", nargs="*", help="services to run (none: list them)")

    new = commands.add_parser("new", help="start a plugin from a working template")
    new_kinds = new.add_subparsers(dest="new_kind", required=True, metavar="KIND")
    new_channel = new_kinds.add_parser(
        "channel", help="a channel plugin that passes the contract suite as generated"
    )
    new_channel.add_argument("name", help="the channel type, e.g. acme_chat")
    new_channel.add_argument("--dir", default=".", help="where to create guiche-<name>/")
    new_channel.set_defaults(handler=cmd_new_channel)

    tenants = commands.add_parser("tenants", help="create and list companies")
    tenant_commands = tenants.add_subparsers(dest="tenants_command", required=True)
    create = tenant_commands.add_parser("create", help="create a company with its owner")
    create.set_defaults(handler=cmd_tenants_create)
    create.add_argument("--name", required=True, help="company name")
    create.add_argument("--owner-email", required=True)
    create.add_argument("--owner-name", default="")
    create.add_argument(
        "--owner-password",
        help="for a new owner; prompted on a terminal, else generated and printed",
    )
    create.add_argument(
        "--platform-admin", action="store_true", help="also make the owner a platform admin"
    )
    listing = tenant_commands.add_parser("list", help="list every company")
    listing.set_defaults(handler=cmd_tenants_list)
    listing.add_argument("--json", action="store_true", help="one JSON array instead of a table")

    users = commands.add_parser("users", help="platform-level user chores")
    user_commands = users.add_subparsers(dest="users_command", required=True)
    for name, value in (("grant-platform-admin", True), ("revoke-platform-admin", False)):
        sub = user_commands.add_parser(name, help=f"{name.split('-')[0]} platform-admin rights")
        sub.add_argument("email")
        sub.set_defaults(handler=cmd_platform_admin, platform_admin=value)
    return parser, commands


def add_plugin_commands(commands: Any) -> None:
    """`guiche <plugin> <name>` for every installed plugin's `guiche_commands`."""
    from guiche.plugin_host.commands import collect_commands
    from guiche.plugin_host.manager import build_plugin_manager
    from guiche.plugin_host.registry import PluginRegistry

    try:
        blocked = load_settings().plugins_blocked
    except ConfigError:
        blocked = []  # the command itself reports the environment's problems
    registry = PluginRegistry.from_manager(build_plugin_manager(blocked=blocked))
    for plugin, specs in sorted(collect_commands(registry).items()):
        if plugin in commands.choices:
            continue  # core's own command keeps its name
        group = commands.add_parser(plugin, help=f"{plugin} plugin commands")
        subcommands = group.add_subparsers(dest=f"{plugin}_command", required=True)
        for name, spec in sorted(specs.items()):
            sub = subcommands.add_parser(name, help=spec.help, description=spec.help)
            if spec.per_company:
                sub.add_argument(  # --tenant: the word operators of the older tools use
                    "--company",
                    "--tenant",
                    dest="company",
                    required=True,
                    metavar="SLUG|ID",
                    help="the company (tenant)",
                )
            if spec.arguments is not None:
                spec.arguments(sub)
            sub.set_defaults(handler=cmd_plugin_command, plugin_command=(plugin, spec))


def settings_for(
    command: str, *, keys: bool = False, redis: bool = False, embedded: bool = False
) -> Settings:
    """Validated settings with logging configured; what `command` needs must be present.

    `embedded`: without DATABASE_URL, the embedded database `guiche run` made under
    GUICHE_DATA_DIR will do (see `with_database`).
    """
    from guiche.database.embedded import EmbeddedPostgres

    settings = load_settings()
    missing = []
    if not settings.database_url and not (
        embedded and EmbeddedPostgres(settings.data_dir).initialized
    ):
        hint = (
            f" (or run `guiche run` once: it creates the embedded database in "
            f"{settings.data_dir / 'pgdata'})"
            if embedded
            else ""
        )
        missing.append(f"DATABASE_URL: required for `guiche {command}`{hint}")
    if keys and settings.secret_key is None:
        missing.append(
            f"GUICHE_SECRET_KEY: required for `guiche {command}` (only `guiche run` makes one)"
        )
    if keys and not settings.encryption_keys:
        missing.append(
            f"GUICHE_ENCRYPTION_KEYS: required for `guiche {command}` "
            "(a Fernet key; only `guiche run` makes one)"
        )
    if redis and not settings.redis_url:
        missing.append(
            f"REDIS_URL: required for `guiche {command}` "
            "(without Redis, `guiche run` runs tasks in-process)"
        )
    if missing:
        raise ConfigError("\n".join(missing))
    configure_logging(settings.log_level, settings.log_json)
    return settings


@contextmanager
def with_database(settings: Settings) -> Iterator[Settings]:
    """`settings` with a database URL: DATABASE_URL, else the embedded Postgres of
    `guiche run` (joined while `guiche run` serves it, else started and stopped again)."""
    if settings.database_url:
        yield settings
        return
    from guiche.database.embedded import EmbeddedPostgres

    with EmbeddedPostgres(settings.data_dir) as embedded:
        yield settings.model_copy(update={"database_url": embedded.start()})


def run_chore(command: str, work: Callable[[Settings], Awaitable[T]]) -> T:
    """Run a one-shot command's coroutine against its database (DATABASE_URL or embedded)."""
    with with_database(settings_for(command, embedded=True)) as settings:
        return asyncio.run(work(settings))


# --- run modes -------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """Embedded Postgres if needed, local keys, migrations, demo company, web + tasks."""
    from guiche.database.embedded import EmbeddedPostgres, local_key_env

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json)
    os.environ.update(local_key_env(settings))
    embedded = None if settings.database_url else EmbeddedPostgres(settings.data_dir)
    try:
        if embedded is not None:
            os.environ["DATABASE_URL"] = embedded.start()
        return asyncio.run(_run_all(load_settings()))
    finally:
        if embedded is not None:
            embedded.stop()


async def _run_all(settings: Settings) -> int:

    from guiche.app import create_app
    from guiche.channel_host.demo_channel import seed_demo_channel
    from guiche.companies.demo import seed_demo
    from guiche.foundation import gc_tuning
    from guiche.http.runner import app_runner
    from guiche.plugin_host.services import run_services, select_services
    from guiche.runtime.services import SERVICES
    from guiche.worker import consume, schedule

    assert settings.database_url
    stop = stop_on_signals()
    await run_migrations(settings.database_url)
    app = create_app(settings)
    runner = app_runner(app, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
    await runner.setup()
    try:
        password = settings.demo_password
        login = await seed_demo(password.get_secret_value() if password else None)
        demo_channel = await seed_demo_channel(app[SERVICES], login.tenant_id)
        await start_site(runner, settings)
        print(login_banner(settings, login.email, login.password, demo_channel), flush=True)
        gc_tuning.tune_after_startup(settings)
        queue = app[SERVICES].tasks
        assert queue is not None
        loops = [schedule(queue.broker, stop)]
        if not queue.in_process:  # REDIS_URL set: consume the stream here too
            loops.append(consume(queue.broker, stop))
        plugin_services = select_services(app[SERVICES].plugins.services)
        loops.append(run_services(app[SERVICES], plugin_services, stop))
        return await run_until_stopped(stop, loops)
    finally:
        await runner.cleanup()


async def start_site(runner: Any, settings: Settings) -> None:
    from aiohttp import web

    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
    except OSError as exc:
        raise CommandError(
            f"cannot listen on {settings.host}:{settings.port} ({exc.strerror or exc})"
        ) from exc


def cmd_web(args: argparse.Namespace) -> int:
    return asyncio.run(_serve_web(settings_for("web", keys=True)))


async def _serve_web(settings: Settings) -> int:

    from guiche.app import create_app
    from guiche.foundation.gc_tuning import tune_after_startup
    from guiche.http.runner import app_runner

    stop = stop_on_signals()
    runner = app_runner(create_app(settings), shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
    await runner.setup()
    try:
        await start_site(runner, settings)
        tune_after_startup(settings)
        print(f"Guichê web listening on {base_url(settings)}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from guiche.worker import run_worker

    settings = settings_for("worker", keys=True, redis=True)
    return asyncio.run(_until_signal(lambda stop: run_worker(settings, stop)))


def cmd_scheduler(args: argparse.Namespace) -> int:
    from guiche.worker import run_scheduler

    settings = settings_for("scheduler", redis=True)
    return asyncio.run(_until_signal(lambda stop: run_scheduler(settings, stop)))


def cmd_service(args: argparse.Namespace) -> int:
    """Run the named plugin services until SIGTERM; without names, list them."""
    from guiche.plugin_host.manager import build_plugin_manager
    from guiche.plugin_host.registry import PluginRegistry
    from guiche.plugin_host.services import UnknownService
    from guiche.worker import run_service

    if not args.names:
        settings = load_settings()
        registry = PluginRegistry.from_manager(
            build_plugin_manager(blocked=settings.plugins_blocked)
        )
        rows = [
            [name, "yes" if spec.with_worker else "no"]
            for name, spec in sorted(registry.services.items())
        ]
        print(format_table(["SERVICE", "IN WORKER"], rows))
        return 0
    settings = settings_for("service", keys=True)
    try:
        return asyncio.run(_until_signal(lambda stop: run_service(settings, stop, args.names)))
    except UnknownService as exc:
        raise CommandError(str(exc.args[0])) from None


def cmd_plugin_command(args: argparse.Namespace) -> int:
    """A plugin's command, with the services open on DATABASE_URL or `guiche run`'s
    embedded database and its keys (Redis when configured: its events reach the web
    processes' sockets)."""
    from guiche.database.embedded import local_key_env

    plugin, spec = args.plugin_command
    command = f"{plugin} {spec.name}"
    settings = load_settings()
    if not settings.database_url:
        os.environ.update(local_key_env(settings))  # the keys `guiche run` keeps
    with with_database(settings_for(command, keys=True, embedded=True)) as ready:
        return asyncio.run(_plugin_command(ready, spec, args))


async def _plugin_command(settings: Settings, spec: Any, args: argparse.Namespace) -> int:
    from guiche.app import build_services
    from guiche.worker import opened_with_tasks

    async with opened_with_tasks(build_services(settings)) as services:
        if spec.per_company:
            args.tenant_id = await company_id(args.company)
        return int(await spec.func(services, args) or 0)


async def company_id(text: str) -> uuid.UUID:
    """A company named by its slug or id; a CommandError when there is none."""
    from guiche.models import Tenant

    try:
        condition = Tenant.id == uuid.UUID(text)
    except ValueError:
        condition = Tenant.slug == text
    row = await Tenant.select(Tenant.id).where(condition).first()
    if row is None:
        raise CommandError(f"no company {text!r} (see `guiche tenants list`)")
    return row["id"]


async def _until_signal(run: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    await run(stop_on_signals())
    return 0


def stop_on_signals() -> asyncio.Event:
    """An event set by the first SIGINT/SIGTERM; a second Ctrl+C interrupts at once."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        stop.set()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    return stop


async def run_until_stopped(stop: asyncio.Event, loops: Sequence[Awaitable[None]]) -> int:
    """Run background loops until `stop`; a loop that dies stops the rest (exit code 1)."""
    tasks = [asyncio.ensure_future(loop) for loop in loops]
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    stopper.cancel()
    failed = [result for result in results if isinstance(result, BaseException)]
    for error in failed:
        print(f"error: background loop failed: {error!r}", file=sys.stderr)
    return 1 if failed else 0


def base_url(settings: Settings) -> str:
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def login_banner(
    settings: Settings, email: str, password: str, demo_channel: DemoChannel | None = None
) -> str:
    url = base_url(settings)
    body = json.dumps({"email": email, "password": password})
    curl = (
        f"curl -s -X POST {url}/api/v1/auth/login "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)}"
    )
    return "\n".join(
        [
            f"Guichê is running at {url}  (API docs: {url}/api/docs)",
            "  company:  Demo",
            f"  email:    {email}",
            f"  password: {password}",
            f"  login:    {curl}",
            *(
                [
                    "A customer writes to the demo's sandbox channel (open the console first):",
                    f"  message:  {demo_channel.curl()}",
                ]
                if demo_channel is not None
                else []
            ),
            "Press Ctrl+C to stop.",
        ]
    )


# --- operator chores ---------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace) -> int:
    async def work(settings: Settings) -> None:
        assert settings.database_url
        await run_migrations(settings.database_url)

    run_chore("migrate", work)
    return 0


async def run_migrations(database_url: str) -> None:
    """Apply pending migrations, printing one line per migration as it is recorded, then
    how many ran (none on a second call) out of how many the database has."""
    from guiche.database.migrate import migrate

    quiet_piccolo()
    applied = await migrate(database_url, on_applied=lambda step: print(step, flush=True))
    total = await _applied_migrations(database_url)
    if applied:
        print(f"Migrations: applied {len(applied)} ({total} in total).", flush=True)
    else:
        print(f"Migrations: database is up to date ({total} applied).", flush=True)


async def _applied_migrations(database_url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        if await conn.fetchval("SELECT to_regclass('migration')") is None:
            return 0
        return int(await conn.fetchval("SELECT count(*) FROM migration"))
    finally:
        await conn.close()


def cmd_plugins(args: argparse.Namespace) -> int:
    """What is installed; with a database (configured or `guiche run`'s embedded one) also
    how many companies enabled each, else the list alone (TENANTS shows "-")."""
    from guiche.app import build_services
    from guiche.database.embedded import EmbeddedPostgres
    from guiche.plugin_host.listing import describe_plugins, format_plugins_table
    from guiche.plugin_host.manager import build_plugin_manager
    from guiche.plugin_host.registry import PluginRegistry

    async def describe(settings: Settings) -> list[dict[str, Any]]:
        quiet_piccolo()
        services = build_services(settings)
        async with pooled(services.db):
            return await describe_plugins(services.plugins)

    settings = load_settings()
    if settings.database_url or EmbeddedPostgres(settings.data_dir).initialized:
        rows = run_chore("plugins", describe)
    else:
        configure_logging("WARNING", settings.log_json)
        manager = build_plugin_manager(blocked=settings.plugins_blocked)
        registry = PluginRegistry.from_manager(manager)
        rows = asyncio.run(describe_plugins(registry, with_counts=False))
    print(format_plugins_table(rows))
    return 0


def cmd_new_channel(args: argparse.Namespace) -> int:
    from guiche.scaffold import ScaffoldError, new_channel_plugin

    try:
        target = new_channel_plugin(args.name, Path(args.dir))
    except ScaffoldError as exc:
        raise CommandError(str(exc)) from None
    print(f"Created {target}. Next:")
    print(f"  cd {target} && pip install -e '.[test]' && pytest")
    print("then make the adapter speak your provider's API (see its README).")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Every check, each with its fix; exit 1 when one failed (warnings are fine)."""
    from guiche.doctor import format_checks, run_checks

    settings = load_settings()
    configure_logging("WARNING", settings.log_json)
    quiet_piccolo()
    checks = asyncio.run(run_checks(settings))
    print(format_checks(checks))
    return 1 if any(check.status == "fail" for check in checks) else 0


def core_engine(settings: Settings) -> PostgresEngine:
    """An engine with core's tables bound to it: chores skip the app factory's imports."""
    from guiche.database.engine import bind_tables, make_engine
    from guiche.models import CORE_TABLES

    assert settings.database_url
    quiet_piccolo()
    engine = make_engine(settings.database_url)
    bind_tables(engine, CORE_TABLES)
    return engine


def quiet_piccolo() -> None:
    """Piccolo logs the server version whenever an engine is made: noise in a chore's output."""
    logging.getLogger("piccolo").setLevel(logging.WARNING)


@asynccontextmanager
async def pooled(engine: PostgresEngine) -> AsyncIterator[PostgresEngine]:
    """A small connection pool for the length of a one-shot command."""
    await engine.start_connection_pool(min_size=1, max_size=2)
    try:
        yield engine
    finally:
        await engine.close_connection_pool()


def cmd_tenants_create(args: argparse.Namespace) -> int:
    return run_chore("tenants create", lambda settings: _tenants_create(settings, args))


async def _tenants_create(settings: Settings, args: argparse.Namespace) -> int:
    from guiche.companies.accounts import create_tenant
    from guiche.models import User

    async with pooled(core_engine(settings)):
        email = args.owner_email.strip().lower()
        existing = await User.raw("SELECT id FROM users WHERE lower(email) = {}", email)
        password, generated = (None, False) if existing else _owner_password(args)
        created = await create_tenant(args.name, email, password, owner_name=args.owner_name or "")
        if args.platform_admin:
            await User.update({User.is_platform_admin: True}).where(User.id == created.owner_id)
    print(f"Created company {args.name.strip()!r}")
    print(f"  id:       {created.tenant_id}")
    print(f"  slug:     {created.slug}")
    print(f"  owner:    {created.owner_email}" + (" (existing user)" if existing else ""))
    if generated:
        print(f"  password: {password}")
    if args.platform_admin:
        print("  platform admin: yes")
    return 0


def _owner_password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated?): the flag, a terminal prompt, or a generated one."""
    if args.owner_password:
        return args.owner_password, False
    if sys.stdin.isatty():
        first = getpass.getpass("Owner password: ")
        if first and first == getpass.getpass("Repeat password: "):
            return first, False
        raise CommandError("passwords are empty or do not match")
    return secrets.token_urlsafe(12), True


def cmd_tenants_list(args: argparse.Namespace) -> int:
    rows = run_chore("tenants list", _tenant_rows)
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    headers = ("SLUG", "NAME", "ID", "MEMBERS", "ACTIVE", "CREATED")
    cells = [
        (
            row["slug"],
            row["name"],
            str(row["id"]),
            str(row["members"]),
            "yes" if row["is_active"] else "no",
            row["created_at"].strftime("%Y-%m-%d %H:%M"),
        )
        for row in rows
    ]
    print(format_table(headers, cells) if cells else "No companies yet.")
    return 0


async def _tenant_rows(settings: Settings) -> list[dict[str, Any]]:
    from guiche.models import Tenant

    async with pooled(core_engine(settings)):
        return await Tenant.raw(
            "SELECT t.id, t.name, t.slug, t.is_active, t.created_at, count(m.id) AS members"
            " FROM tenants t LEFT JOIN memberships m ON m.tenant = t.id"
            " GROUP BY t.id ORDER BY t.created_at, t.id"
        )


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (headers, *rows)
    )


async def notify_user_access_changed(settings: Settings, user_id: uuid.UUID) -> None:
    """Tell the running web processes (over Redis) that a user's access changed; without
    Redis they see it within `GUICHE_CHANNEL_CACHE_TTL_SECONDS` or at the user's next login."""
    from redis.asyncio import Redis

    from guiche.auth.access import USER_ACCESS
    from guiche.realtime.bus import RedisBus, bus_channel

    redis = Redis.from_url(str(settings.redis_url))
    try:
        await RedisBus(redis, bus_channel(settings.database_url)).notify(
            {"cache": USER_ACCESS, "id": str(user_id)}
        )
    except Exception as exc:  # the grant is committed; the cache TTL bounds the delay
        print(f"warning: running processes not notified ({exc})", file=sys.stderr)
    finally:
        await redis.aclose()


def cmd_platform_admin(args: argparse.Namespace) -> int:
    """The only way to change `users.is_platform_admin`: no API grants platform rights."""

    async def update(settings: Settings) -> list[dict[str, Any]]:
        from guiche.models import User

        async with pooled(core_engine(settings)):
            rows = await User.raw(
                "UPDATE users SET is_platform_admin = {} WHERE lower(email) = {} "
                "RETURNING id, email",
                args.platform_admin,
                args.email.strip().lower(),
            )
        if rows and settings.redis_url:  # running processes drop their cached access now
            await notify_user_access_changed(settings, rows[0]["id"])
        return rows

    if not run_chore(f"users {args.users_command}", update):
        raise CommandError(f"no user with email {args.email!r}")
    state = "now" if args.platform_admin else "no longer"
    print(f"{args.email.strip().lower()} is {state} a platform admin")
    return 0


if __name__ == "__main__":  # pragma: no cover - `python -m guiche.cli`
    sys.exit(main())
