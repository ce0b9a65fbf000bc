"""The `guiche` command, run as an operator runs it: a subprocess with an environment.

`guiche run` is exercised end to end with DATABASE_URL unset: embedded Postgres,
migrations, demo login over HTTP, the chores on its embedded database, log format by
terminal, SIGINT, no Postgres left behind, and the README's example of what it prints.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from guiche.auth.passwords import verify_password
from guiche.cli import main
from tests.conftest import with_database

GUICHE = str(Path(sys.executable).with_name("guiche"))
ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 180.0  # first start runs initdb and the migrations
STOP_TIMEOUT = 60.0


def cli_env(**overrides: str | None) -> dict[str, str]:
    """The caller's environment minus Guichê settings, plus `overrides` (None removes)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GUICHE_") and key not in ("DATABASE_URL", "REDIS_URL")
    }
    env["GUICHE_LOG_JSON"] = "false"
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def guiche(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GUICHE, *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


@pytest.fixture
def db_env(database_url: str) -> Callable[..., dict[str, str]]:
    def make(**overrides: str | None) -> dict[str, str]:
        return cli_env(DATABASE_URL=database_url, **overrides)

    return make


async def fetch_user(database_url: str, email: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchrow(
            "SELECT id, password_hash, is_platform_admin FROM users WHERE lower(email) = $1",
            email,
        )
    finally:
        await conn.close()


def unique_email(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.test"


# --- configuration errors ------------------------------------------------------------


def test_bad_env_exits_2_with_one_line_per_variable() -> None:
    result = guiche("migrate", env=cli_env(GUICHE_PORT="http", REDIS_URL="http://127.0.0.1:6379"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert sorted(line.split(":", 1)[0] for line in lines) == ["GUICHE_PORT", "REDIS_URL"]
    assert "Traceback" not in result.stderr


def test_web_requires_keys_and_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in ("DATABASE_URL", "GUICHE_SECRET_KEY", "GUICHE_ENCRYPTION_KEYS"):
        monkeypatch.delenv(key, raising=False)
    assert main(["web"]) == 2
    names = [line.split(":", 1)[0] for line in capsys.readouterr().err.splitlines()]
    assert names == ["DATABASE_URL", "GUICHE_SECRET_KEY", "GUICHE_ENCRYPTION_KEYS"]


def test_worker_and_scheduler_require_redis(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("GUICHE_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("GUICHE_ENCRYPTION_KEYS", "unused-here")
    monkeypatch.delenv("REDIS_URL", raising=False)
    for command in ("worker", "scheduler"):
        assert main([command]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"REDIS_URL: required for `guiche {command}`"), err


# --- operator chores ------------------------------------------------------------------


def test_tenants_create_and_list(db_env: Callable[..., dict[str, str]]) -> None:
    name = f"Loja {uuid.uuid4().hex[:8]}"
    email = unique_email("owner")
    created = guiche(
        "tenants",
        "create",
        "--name",
        name,
        "--owner-email",
        email,
        "--owner-name",
        "Dona",
        "--owner-password",
        "a-long-password",
        env=db_env(),
    )
    assert created.returncode == 0, created.stderr
    assert "password:" not in created.stdout  # given, not generated: never echoed
    slug = next(line.split()[-1] for line in created.stdout.splitlines() if "slug:" in line)

    listed = guiche("tenants", "list", "--json", env=db_env())
    assert listed.returncode == 0, listed.stderr
    rows = {row["slug"]: row for row in json.loads(listed.stdout)}
    assert rows[slug]["name"] == name
    assert rows[slug]["members"] == 1

    table = guiche("tenants", "list", env=db_env())
    assert table.stdout.splitlines()[0].split() == [
        "SLUG", "NAME", "ID", "MEMBERS", "ACTIVE", "CREATED",
    ]  # fmt: skip
    assert any(line.startswith(slug) for line in table.stdout.splitlines())


async def test_tenants_create_generates_a_password_when_not_given(
    database_url: str, db_env: Callable[..., dict[str, str]]
) -> None:
    email = unique_email("gen")
    result = guiche("tenants", "create", "--name", "Gerada", "--owner-email", email, env=db_env())
    assert result.returncode == 0, result.stderr
    password = next(line.split()[-1] for line in result.stdout.splitlines() if "password:" in line)
    user = await fetch_user(database_url, email)
    assert user is not None and verify_password(user["password_hash"], password)
    assert user["is_platform_admin"] is False


async def test_platform_admin_is_granted_and_revoked_by_cli(
    database_url: str, db_env: Callable[..., dict[str, str]]
) -> None:
    email = unique_email("root")
    created = guiche(
        "tenants",
        "create",
        "--name",
        "Plataforma",
        "--owner-email",
        email,
        "--owner-password",
        "a-long-password",
        "--platform-admin",
        env=db_env(),
    )
    assert created.returncode == 0, created.stderr
    user = await fetch_user(database_url, email)
    assert user is not None and user["is_platform_admin"] is True

    revoked = guiche("users", "revoke-platform-admin", email.upper(), env=db_env())
    assert revoked.returncode == 0, revoked.stderr
    assert (await fetch_user(database_url, email))["is_platform_admin"] is False

    granted = guiche("users", "grant-platform-admin", email, env=db_env())
    assert granted.returncode == 0, granted.stderr
    assert (await fetch_user(database_url, email))["is_platform_admin"] is True


def test_unknown_user_is_one_line_error(db_env: Callable[..., dict[str, str]]) -> None:
    result = guiche("users", "grant-platform-admin", unique_email("nobody"), env=db_env())
    assert result.returncode == 1
    assert result.stderr.startswith("error: no user with email")
    assert "Traceback" not in result.stderr


def test_plugins_lists_installed(db_env: Callable[..., dict[str, str]]) -> None:
    result = guiche("plugins", env=db_env())
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first == "No plugins installed." or first.split()[:2] == ["NAME", "VERSION"]


def test_plugins_lists_installed_without_any_database(tmp_path: Path) -> None:
    """No DATABASE_URL and no embedded database yet: the list, without company counts."""
    result = guiche(
        "plugins", env=cli_env(DATABASE_URL=None, GUICHE_DATA_DIR=str(tmp_path / "nothing"))
    )
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "VERSION", "TENANTS"]
    meta = next(row.split() for row in rows if row.startswith("meta_cloud"))
    assert meta[2] == "-"
    assert not (tmp_path / "nothing").exists()  # nothing was started or created


async def test_migrate_twice_is_a_no_op(database_url: str) -> None:
    name = f"guiche_cli_{uuid.uuid4().hex[:8]}"
    fresh = with_database(database_url, name)
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        first = guiche("migrate", env=cli_env(DATABASE_URL=fresh))
        assert first.returncode == 0, first.stderr
        assert "Migrations: applied" in first.stdout
        second = guiche("migrate", env=cli_env(DATABASE_URL=fresh))
        assert second.returncode == 0, second.stderr
        assert "Migrations: database is up to date" in second.stdout
        conn = await asyncpg.connect(fresh)
        try:
            tables = {
                row["tablename"] for row in await conn.fetch("SELECT tablename FROM pg_tables")
            }
        finally:
            await conn.close()
        assert {"tenants", "users", "messages", "message_keys"} <= tables
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# --- guiche run -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Terminal:
    """A pseudo-terminal for a child's stderr, drained by a thread (a full pty blocks it)."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.output = bytearray()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every writer closed the slave side
                return
            if not chunk:
                return
            self.output.extend(chunk)

    def text(self) -> str:
        return self.output.decode(errors="replace").replace("\r\n", "\n")

    def close(self) -> None:
        os.close(self.slave)
        self._reader.join(timeout=5)
        os.close(self.master)


async def start_run(
    data_dir: Path, port: int, *, stderr: int | None = None
) -> tuple[asyncio.subprocess.Process, dict[str, str], list[str]]:
    """Start `guiche run` (GUICHE_LOG_JSON unset); return it, the login it printed (email,
    password, url) and every stdout line up to "Press Ctrl+C to stop."."""
    env = cli_env(GUICHE_DATA_DIR=str(data_dir), GUICHE_PORT=str(port), GUICHE_LOG_JSON=None)
    log = stderr_log(data_dir)
    with log.open("ab") as file:
        proc = await asyncio.create_subprocess_exec(
            GUICHE,
            "run",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=file if stderr is None else stderr,
        )
    assert proc.stdout is not None
    login: dict[str, str] = {}
    lines: list[str] = []
    async with asyncio.timeout(START_TIMEOUT):
        while not lines or lines[-1] != "Press Ctrl+C to stop.":
            line = (await proc.stdout.readline()).decode()
            if not line:
                code = await proc.wait()
                raise AssertionError(f"guiche run exited {code}:\n{log.read_text()[-3000:]}")
            lines.append(line.rstrip("\n"))
            if line.startswith("Guichê is running at "):
                login["url"] = line.split()[4]
            for key in ("email", "password"):
                if line.strip().startswith(f"{key}:"):
                    login[key] = line.split()[-1]
    return proc, login, lines


def stderr_log(data_dir: Path) -> Path:
    return data_dir.parent / "stderr.log"


async def stop_run(proc: asyncio.subprocess.Process) -> int:
    proc.send_signal(signal.SIGINT)
    async with asyncio.timeout(STOP_TIMEOUT):
        await proc.communicate()
    return proc.returncode if proc.returncode is not None else -1


async def post_login(login: dict[str, str]) -> dict[str, object]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{login['url']}/api/v1/auth/login",
            json={"email": login["email"], "password": login["password"]},
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()
        body: dict[str, object] = await resp.json()
        return body


async def demo_message_arrives(lines: list[str], token: str, url: str) -> None:
    """The printed `message:` curl, run as printed, puts a customer's message in the demo
    company's pending conversations."""
    command = next(line.split("message:", 1)[1] for line in lines if "message:" in line)
    ran = await asyncio.to_thread(
        subprocess.run, ["sh", "-c", command], capture_output=True, text=True, timeout=30
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["messages"] == 1, ran.stdout
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{url}/api/v1/conversations?category=pending",
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()
        [conversation] = (await resp.json())["items"]
    assert conversation["channel"]["type"] == "sandbox"
    assert conversation["last_message"]["body"] == "Olá! Meu pedido chegou?"


def postgres_processes(pgdata: Path) -> list[int]:
    import psutil

    pids = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and any(str(pgdata) in part for part in cmdline):
            pids.append(proc.pid)
    return pids


def readme_run_example() -> list[str]:
    """The README's block of what `guiche run` prints on a first start."""
    blocks = re.findall(r"```text\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)
    block = next(block for block in blocks if "Guichê is running at" in block)
    return block.rstrip("\n").split("\n")


DEMO_WEBHOOK = re.compile(r"/webhooks/sandbox/([0-9a-f-]{36}) -H 'X-Guiche-Webhook-Secret: (\S+)'")


def demo_channel_of(lines: list[str]) -> tuple[str, str]:
    """The demo channel's id and webhook secret, from the printed `message:` curl."""
    found = next(DEMO_WEBHOOK.search(line) for line in lines if line.strip().startswith("message:"))
    assert found is not None
    return found[1], found[2]


def assert_readme_shows(lines: list[str], login: dict[str, str], port: int) -> None:
    """The README's example is what a first start prints, but for the password, the port
    and the demo channel's id and secret."""
    example = readme_run_example()
    shown = next(line.split()[-1] for line in example if line.strip().startswith("password:"))
    replacements = [
        (login["password"], shown),
        (f"127.0.0.1:{port}", "127.0.0.1:8080"),
        *zip(demo_channel_of(lines), demo_channel_of(example), strict=True),
    ]
    printed = []
    for line in lines:
        for old, new in replacements:
            line = line.replace(old, new)
        printed.append(line)
    assert printed == example, (
        "README.md's `guiche run` example differs from what a first start prints; "
        "paste this block:\n" + "\n".join(printed)
    )


def chore(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """A one-shot command with DATABASE_URL unset and `guiche run`'s data directory."""
    return guiche(*args, env=cli_env(GUICHE_DATA_DIR=str(data_dir)))


def tenant_slugs(data_dir: Path) -> set[str]:
    listed = chore("tenants", "list", "--json", data_dir=data_dir)
    assert listed.returncode == 0, listed.stderr
    return {row["slug"] for row in json.loads(listed.stdout)}


def chores_on_the_running_database(data_dir: Path) -> str:
    """Every chore finds the embedded database `guiche run` serves; returns a new slug."""
    assert chore("migrate", data_dir=data_dir).stdout.startswith(
        "Migrations: database is up to date"
    )
    email = unique_email("second")
    created = chore(
        "tenants", "create", "--name", "Segunda Loja", "--owner-email", email,
        "--owner-password", "a-long-password", data_dir=data_dir,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    slug = next(line.split()[-1] for line in created.stdout.splitlines() if "slug:" in line)
    assert {"demo", slug} <= tenant_slugs(data_dir)
    granted = chore("users", "grant-platform-admin", email, data_dir=data_dir)
    assert granted.returncode == 0, granted.stderr
    revoked = chore("users", "revoke-platform-admin", email, data_dir=data_dir)
    assert revoked.stdout.strip() == f"{email} is no longer a platform admin"
    plugins = chore("plugins", data_dir=data_dir)
    assert plugins.returncode == 0 and plugins.stdout.split()[:2] == ["NAME", "VERSION"]
    return slug


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


HUMAN_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) +[\w.]+ ")


async def test_run_embedded_end_to_end(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    pgdata = (data_dir / "pgdata").resolve()
    port = free_port()

    # Before any `guiche run`, a chore says how to get a database and creates nothing.
    missing = chore("tenants", "list", data_dir=data_dir)
    assert missing.returncode == 2
    assert missing.stderr.startswith("DATABASE_URL: required for `guiche tenants list`")
    assert "guiche run" in missing.stderr and not data_dir.exists()

    proc, login, lines = await start_run(data_dir, port)
    try:
        assert login["url"] == f"http://127.0.0.1:{port}"
        assert login["email"] == "admin@demo.guiche.local"
        tokens = await post_login(login)
        assert tokens["access_token"]
        assert tokens["tenant"]["slug"] == "demo"  # type: ignore[index]
        await demo_message_arrives(lines, str(tokens["access_token"]), login["url"])
        assert postgres_processes(pgdata), "embedded postgres should be running"
        slug = chores_on_the_running_database(data_dir)
        assert postgres_processes(pgdata), "a chore must not stop the server guiche run uses"
    finally:
        code = await stop_run(proc)
    assert code == 0
    assert_readme_shows(lines, login, port)
    # stderr is a file, not a terminal: JSON lines (GUICHE_LOG_JSON unset).
    logged = json_lines(stderr_log(data_dir).read_text())
    assert {"embedded postgres ready", "embedded postgres stopped"} <= {e["msg"] for e in logged}
    assert not (pgdata / "postmaster.pid").exists()
    assert postgres_processes(pgdata) == []
    for name in ("secret_key", "encryption_key"):
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600

    # With guiche run stopped, a chore starts the embedded server and stops it again.
    assert slug in tenant_slugs(data_dir)
    assert postgres_processes(pgdata) == []

    # A second start reuses the data: same keys, same demo company, a fresh password,
    # nothing left to migrate; on a terminal it logs human lines.
    secret = (data_dir / "secret_key").read_text()
    demo_channel = demo_channel_of(lines)
    terminal = Terminal()
    try:
        proc, again, lines = await start_run(data_dir, port, stderr=terminal.slave)
        try:
            assert lines[0].startswith("Migrations: database is up to date (")
            assert again["password"] != login["password"]
            assert demo_channel_of(lines) == demo_channel  # the same channel, same secret
            tokens_again = await post_login(again)
            assert tokens_again["tenant"] == tokens["tenant"]
        finally:
            code = await stop_run(proc)
    finally:
        terminal.close()
    assert code == 0
    human = [line for line in terminal.text().splitlines() if line.strip()]
    assert any("guiche.database.embedded embedded postgres ready pgdata=" in line for line in human)
    assert human and all(HUMAN_LINE.match(line) for line in human), human
    assert (data_dir / "secret_key").read_text() == secret
    assert postgres_processes(pgdata) == []


# --- embedded mode pieces --------------------------------------------------------------


async def test_demo_seed_is_idempotent_and_applies_the_password(client: Any) -> None:
    from guiche.companies.demo import DEMO_EMAIL, seed_demo

    first = await seed_demo("demo-password-one")
    second = await seed_demo("demo-password-two")
    assert second.tenant_id == first.tenant_id
    assert second.created is False

    async def status(password: str) -> int:
        resp = await client.post(
            "/api/v1/auth/login", json={"email": DEMO_EMAIL, "password": password}
        )
        return int(resp.status)

    assert await status("demo-password-two") == 200
    assert await status("demo-password-one") == 401


def test_dead_pgserver_handles_are_forgotten(tmp_path: Path) -> None:
    """A run killed with SIGKILL leaves its pid behind; it must not keep Postgres alive."""
    from guiche.database.embedded import _forget_dead_handles

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    handles = tmp_path / ".handle_pids.json"
    handles.write_text(json.dumps([dead.pid, os.getpid()]))
    _forget_dead_handles(tmp_path)
    assert json.loads(handles.read_text()) == [os.getpid()]


def test_local_keys_are_made_once_and_private(tmp_path: Path) -> None:
    from guiche.database.embedded import local_key

    path = tmp_path / "secret_key"
    first = local_key(path, lambda: "first-value")
    again = local_key(path, lambda: "second-value")
    assert first == again == "first-value"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
