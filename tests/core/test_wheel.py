"""The built wheel installs into a fresh venv and its `guiche migrate` sets up a database.

Slow (builds the wheel, installs its dependencies): it guards what no source-tree test
can, namely that the migrations reach the wheel through the piccolo_migrations symlink.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "wheel_check.py"


def test_wheel_installs_and_migrates(database_url: str) -> None:
    if not os.environ.get("DATABASE_URL"):
        pytest.skip("DATABASE_URL is not set: the wheel check migrates on that server")
    env = {**os.environ, "DATABASE_URL": database_url}
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "core migration(s)" in result.stdout
    assert "wheel check: OK" in result.stdout
