"""Build the wheel, install it in a fresh venv, and migrate a fresh database with it.

Proves what an operator gets from `pip install guiche`: core's migrations ship inside the
wheel (in the source tree `core/guiche/piccolo_migrations` is a symlink to the top-level
`piccolo_migrations/`), the `guiche` command works without the source tree, a second
`guiche migrate` is a no-op, the first-party plugins load from the wheel, and `guiche
new channel` finds its templates.
Needs DATABASE_URL (any database on the server to use: a fresh one is created beside it
and dropped). Run by `make wheel-check` and the test suite.
"""

from __future__ import annotations

import asyncio
import configparser
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".git", ".venv", ".guiche", "build", "dist", ".pytest_cache", ".ruff_cache"}
EXPECTED_TABLES = ("tenants", "users", "memberships", "messages", "message_keys", "migration")


class CheckFailed(Exception):
    pass


def main() -> int:
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        print("wheel check: DATABASE_URL is required (the server to migrate on)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="guiche-wheel-"))
    try:
        wheel = build_wheel(work)
        migrations = check_wheel_contents(wheel)
        print(f"wheel check: {wheel.name} ships {len(migrations)} core migration(s)")
        guiche = install_in_fresh_venv(wheel, work / "venv")
        check_migrate(guiche, database_url, work, wheel_plugins(wheel))
        check_scaffold(guiche, work)
    except CheckFailed as exc:
        print(f"wheel check FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("wheel check: OK")
    return 0


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise CheckFailed(f"{' '.join(cmd)} exited {result.returncode}:\n{result.stderr[-4000:]}")
    return result


def build_wheel(work: Path) -> Path:
    """Build from a copy of the tree (symlinks kept), so stale build/ files cannot leak in."""
    source = work / "src"
    shutil.copytree(ROOT, source, symlinks=True, ignore=lambda _dir, names: SKIP_DIRS & set(names))
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(work / "dist"), str(source)])
    wheels = list((work / "dist").glob("guiche-*.whl"))
    if len(wheels) != 1:
        raise CheckFailed(f"expected one wheel, found {wheels}")
    return wheels[0]


def check_wheel_contents(wheel: Path) -> list[str]:
    """Every file in piccolo_migrations/ must be in the wheel as guiche/piccolo_migrations/."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = {
        f"guiche/piccolo_migrations/{path.name}"
        for path in (ROOT / "piccolo_migrations").glob("*.py")
    }
    missing = sorted(expected - names)
    if missing:
        raise CheckFailed(f"wheel lacks migration files: {missing}")
    migrations = sorted(
        name
        for name in names
        if name.startswith("guiche/piccolo_migrations/guiche_") and name.endswith(".py")
    )
    if not migrations:
        raise CheckFailed("wheel has no guiche/piccolo_migrations/guiche_*.py")
    return migrations


def check_scaffold(guiche: Path, work: Path) -> None:
    """`guiche new channel` works from the wheel: its templates ship as package data."""
    run([str(guiche), "new", "channel", "probe", "--dir", str(work)])
    expected = ("pyproject.toml", "README.md", "guiche_probe/adapter.py", "tests/test_contract.py")
    missing = [name for name in expected if not (work / "guiche-probe" / name).is_file()]
    if missing:
        raise CheckFailed(f"guiche new channel from the wheel lacks {missing}")


def install_in_fresh_venv(wheel: Path, venv: Path) -> Path:
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)])
    return venv / "bin" / "guiche"


def summary(output: str) -> str:
    """The `Migrations: ...` summary (one line per migration applied comes above it)."""
    return next((line for line in output.splitlines() if line.startswith("Migrations:")), "?")


def wheel_plugins(wheel: Path) -> list[str]:
    """Entry-point names in the wheel's `guiche.plugins` group."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt"))
        parser = configparser.ConfigParser(delimiters=("=",))
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(archive.read(name).decode())
    return list(parser["guiche.plugins"]) if parser.has_section("guiche.plugins") else []


def check_migrate(guiche: Path, database_url: str, work: Path, plugins: list[str]) -> None:
    name = f"guiche_wheel_{secrets.token_hex(4)}"
    asyncio.run(_admin(database_url, f'CREATE DATABASE "{name}"'))
    try:
        url = with_database(database_url, name)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(DATABASE_URL=url, GUICHE_LOG_JSON="false")
        first = run([str(guiche), "migrate"], env=env, cwd=work).stdout
        if "applied" not in first or "up to date" in first:
            raise CheckFailed(f"first migrate did not apply anything: {first!r}")
        missing = asyncio.run(_missing_tables(url))
        if missing:
            raise CheckFailed(f"tables missing after migrate: {missing}")
        second = run([str(guiche), "migrate"], env=env, cwd=work).stdout
        if "up to date" not in second:
            raise CheckFailed(f"second migrate was not a no-op: {second!r}")
        print(f"wheel check: {summary(first)} then {summary(second)}")
        listing = run([str(guiche), "plugins"], env=env, cwd=work).stdout
        listed = {line.split()[0] for line in listing.splitlines()[1:] if line.strip()}
        missing = sorted(set(plugins) - listed)
        if missing:
            raise CheckFailed(f"first-party plugins not loaded from the wheel: {missing}")
        print(f"wheel check: plugins loaded: {', '.join(sorted(plugins)) or 'none'}")
    finally:
        asyncio.run(_admin(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def with_database(url: str, name: str) -> str:
    path, sep, query = url.partition("?")
    base, _, _ = path.rpartition("/")
    return f"{base}/{name}{sep}{query}"


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _missing_tables(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    finally:
        await conn.close()
    present = {row["table_name"] for row in rows}
    return [table for table in EXPECTED_TABLES if table not in present]


if __name__ == "__main__":
    sys.exit(main())
