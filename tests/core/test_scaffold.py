"""`guiche new channel NAME`: the generated plugin is lint-clean, loads into Guichê and
passes the strict contract suite as generated."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import login

GUICHE = str(Path(sys.executable).with_name("guiche"))
RUFF = str(Path(sys.executable).with_name("ruff"))


def _run(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    parent = tmp_path_factory.mktemp("scaffold")
    result = _run(GUICHE, "new", "channel", "acme_chat", "--dir", str(parent))
    assert result.returncode == 0, result.stderr
    return parent / "guiche-acme-chat"


def test_the_generated_plugin_has_a_package_tests_and_an_entry_point(generated: Path) -> None:
    assert (generated / "guiche_acme_chat" / "adapter.py").is_file()
    assert (generated / "tests" / "test_contract.py").is_file()
    pyproject = (generated / "pyproject.toml").read_text()
    assert 'acme_chat = "guiche_acme_chat"' in pyproject
    assert "$" not in "".join(path.read_text() for path in generated.rglob("*.py"))


def test_the_generated_plugin_is_lint_clean(generated: Path) -> None:
    lint = _run(
        RUFF,
        "check",
        "--isolated",
        "--select",
        "E,F,W,I,B,UP",
        "--line-length",
        "100",
        ".",
        cwd=generated,
    )
    assert lint.returncode == 0, lint.stdout


def test_the_generated_plugin_passes_the_contract_suite_as_generated(generated: Path) -> None:
    result = _run(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        cwd=generated,
        PYTHONPATH=str(generated),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed" not in result.stdout


async def test_the_generated_plugin_loads_into_guiche(
    generated: Path, make_client: Any, make_company: Any
) -> None:
    sys.path.insert(0, str(generated))
    try:
        module = importlib.import_module("guiche_acme_chat")
        client = await make_client(extra_plugins=(("acme_chat", module),))
        company = await make_company()
        resp = await client.get("/api/v1/plugins", headers=await login(client, company.owner))
        assert resp.status == 200
        assert "acme_chat" in {item["name"] for item in (await resp.json())["items"]}
    finally:
        sys.path.remove(str(generated))


@pytest.mark.parametrize("name", ["Acme", "1acme", "a", "acme-chat"])
def test_a_bad_name_is_a_one_line_error(tmp_path: Path, name: str) -> None:
    result = _run(GUICHE, "new", "channel", name, "--dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_directory_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "guiche-acme").mkdir()
    result = _run(GUICHE, "new", "channel", "acme", "--dir", str(tmp_path))
    assert result.returncode == 1
    assert "already exists" in result.stderr
