"""`guiche doctor`: check what a deployment needs and say how to fix what is missing.

Each check is independent (one failing does not hide the others) and reports `ok`,
`warn` (works, but not as intended for production) or `fail` (something will not
work), with the fix on the next line. Checks: configuration and keys, the database and
its migrations, the storage of `messages` (TimescaleDB or plain, with the compression
policy's runs, from `guiche.database.timescale.storage_report`), pg_trgm, Redis, the media
storage path and the installed plugins.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from guiche.foundation.config import Settings

Status = Literal["ok", "warn", "fail"]
TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None


async def run_checks(settings: Settings) -> list[Check]:
    checks = [_keys(settings)]
    checks += await _database(settings)
    checks.append(await _redis(settings))
    checks.append(_storage_path(settings))
    checks.append(_plugins(settings))
    return checks


def format_checks(checks: list[Check]) -> str:
    width = max(len(check.name) for check in checks)
    lines = []
    for check in checks:
        lines.append(f"{check.status.upper():4}  {check.name.ljust(width)}  {check.detail}")
        if check.fix:
            lines.append(f"{'':4}  {'':{width}}  fix: {check.fix}")
    failed = sum(check.status == "fail" for check in checks)
    warned = sum(check.status == "warn" for check in checks)
    lines.append(f"{failed} failed, {warned} warnings, {len(checks) - failed - warned} ok")
    return "\n".join(lines)


def _keys(settings: Settings) -> Check:
    missing = [
        name
        for name, value in (
            ("GUICHE_SECRET_KEY", settings.secret_key),
            ("GUICHE_ENCRYPTION_KEYS", settings.encryption_keys),
        )
        if not value
    ]
    if not missing:
        return Check("keys", "ok", "GUICHE_SECRET_KEY and GUICHE_ENCRYPTION_KEYS are set")
    return Check(
        "keys",
        "warn",
        f"{' and '.join(missing)} not set: only `guiche run` works (it generates them)",
        "set them for `guiche web` / `guiche worker` (an encryption key: python -c "
        '"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())")',
    )


async def _database(settings: Settings) -> list[Check]:
    import asyncpg

    if not settings.database_url:
        return [
            Check(
                "database",
                "warn",
                "DATABASE_URL is not set: only `guiche run` works (embedded PostgreSQL)",
                "set DATABASE_URL=postgresql://user:password@host:5432/dbname for scale-out",
            )
        ]
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=TIMEOUT_SECONDS)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return [
            Check(
                "database",
                "fail",
                f"cannot connect: {exc}",
                "start PostgreSQL or correct DATABASE_URL",
            )
        ]
    try:
        version = await conn.fetchval("SHOW server_version")
        checks = [Check("database", "ok", f"PostgreSQL {version}")]
        checks.append(await _migrations(conn))
        if await conn.fetchval("SELECT to_regclass('messages')") is not None:
            checks.append(await _messages_storage(conn))
            checks.append(await _trigram(conn))
        return checks
    finally:
        await conn.close()


def _core_migration_ids() -> set[str]:
    package = importlib.import_module("guiche.piccolo_migrations")
    ids = set()
    for module in pkgutil.iter_modules(package.__path__):
        found = getattr(importlib.import_module(f"{package.__name__}.{module.name}"), "ID", None)
        if found:
            ids.add(found)
    return ids


async def _migrations(conn: Any) -> Check:
    wanted = _core_migration_ids()
    applied: set[str] = set()
    if await conn.fetchval("SELECT to_regclass('migration')") is not None:
        rows = await conn.fetch("SELECT name FROM migration WHERE app_name = 'guiche'")
        applied = {row["name"] for row in rows}
    pending = sorted(wanted - applied)
    if not pending:
        return Check("migrations", "ok", f"core's {len(wanted)} migrations applied")
    return Check(
        "migrations",
        "fail",
        f"{len(pending)} of core's {len(wanted)} migrations not applied (first: {pending[0]})",
        "run `guiche migrate` (once per deployment, before starting web/worker)",
    )


async def _messages_storage(conn: Any) -> Check:
    from guiche.database import timescale

    report = await timescale.storage_report(conn)
    if report["flavor"] == "postgres":
        decision = await timescale.server_decision(conn)
        if decision.use:  # the server could, but the table was created before
            return Check(
                "storage",
                "warn",
                "messages is a plain table although timescaledb is available now",
                "convert it by hand: CREATE EXTENSION timescaledb; SELECT create_hypertable("
                "'messages', 'created_at', chunk_time_interval => interval '7 days', "
                "create_default_indexes => false, migrate_data => true) — then see "
                "docs/architecture.md, section 5",
            )
        fix = None
        if "not preloaded" in report["reason"]:
            fix = (
                "add timescaledb to shared_preload_libraries and restart PostgreSQL before "
                "the first `guiche migrate` of a new database"
            )
        return Check(
            "storage", "warn" if fix else "ok", f"plain PostgreSQL table: {report['reason']}", fix
        )
    policy = report["policy"] or {}
    compression = report["compression"]
    detail = (
        f"TimescaleDB {report['version']} ({report['license']}): chunks of "
        f"{report['chunk_interval']}, {report['chunks']} chunks; compression "
        + (
            f"segmented by {compression['segmentby']}, ordered by {compression['orderby']}"
            if compression["enabled"]
            else "off"
        )
        + (
            f"; policy after {policy['compress_after']}, last run "
            f"{policy['last_run_status'] or 'never'}"
            f"{' at ' + policy['last_run_started_at'] if policy.get('last_run_started_at') else ''}"
            f", {policy['total_failures'] or 0} failures"
            if policy
            else ""
        )
    )
    if report["problems"]:
        return Check(
            "storage",
            "warn",
            f"{detail}. Problems: {'; '.join(report['problems'])}",
            "see timescaledb_information.job_errors; a community (TSL) build of TimescaleDB "
            "is needed for compression",
        )
    return Check("storage", "ok", detail)


async def _trigram(conn: Any) -> Check:
    if await conn.fetchval("SELECT to_regclass('contacts_name_trgm_idx')") is not None:
        return Check("pg_trgm", "ok", "trigram index on contact names")
    return Check(
        "pg_trgm",
        "warn",
        "no pg_trgm: contact name search uses a lower(name) prefix index",
        "install PostgreSQL's contrib package (pg_trgm) before the first migration",
    )


async def _redis(settings: Settings) -> Check:
    if not settings.redis_url:
        return Check(
            "redis",
            "warn",
            "REDIS_URL is not set: tasks, events and rate limits stay in one process "
            "(`guiche run` only)",
            "set REDIS_URL=redis://host:6379/0 for `guiche web` / `worker` / `scheduler`",
        )
    from redis.asyncio import Redis

    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=TIMEOUT_SECONDS)
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            info = await redis.info("server")
    except Exception as exc:  # any failure of the client: refused, auth, timeout
        return Check(
            "redis",
            "fail",
            f"cannot reach Redis: {type(exc).__name__}: {exc}",
            "start Redis or correct REDIS_URL",
        )
    finally:
        await redis.aclose()
    return Check("redis", "ok", f"Redis {info.get('redis_version', '?')}")


def _storage_path(settings: Settings) -> Check:
    root = Path(settings.media_root)
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == root and not root.is_dir():
        return Check(
            "media storage",
            "fail",
            f"{root} exists but is not a directory",
            "point GUICHE_STORAGE_PATH at a directory",
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        return Check(
            "media storage",
            "fail",
            f"{existing} is not writable by this user, so {root} cannot hold media",
            f"mkdir -p {root} and give this user write access (or set GUICHE_STORAGE_PATH)",
        )
    state = "writable" if existing == root else f"created on first upload (under {existing})"
    return Check("media storage", "ok", f"{root}: {state}")


def _plugins(settings: Settings) -> Check:
    from guiche.plugin_host.manager import PluginError, build_plugin_manager
    from guiche.plugin_host.registry import PluginRegistry

    try:
        registry = PluginRegistry.from_manager(
            build_plugin_manager(blocked=settings.plugins_blocked)
        )
    except PluginError as exc:
        return Check(
            "plugins",
            "fail",
            str(exc),
            "fix or uninstall that plugin, or list it in GUICHE_PLUGINS_BLOCKED",
        )
    names = [f"{name} {info.version}" for name, info in sorted(registry.infos.items())]
    blocked = ", ".join(settings.plugins_blocked)
    blocked = f"; blocked: {blocked}" if blocked else ""
    return Check("plugins", "ok", f"{', '.join(names) or 'none installed'}{blocked}")
