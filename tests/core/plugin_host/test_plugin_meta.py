"""Every hook is documented with its signature and exercised by a test (datasette's checks)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from guiche import hookspecs

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs" / "plugins.md"
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("guiche_"))


def test_the_contract_lists_every_hookspec() -> None:
    assert HOOKS == sorted((*hookspecs.REGISTRATION_HOOKS, *hookspecs.EVENT_HOOKS))


@pytest.mark.parametrize("hook", HOOKS)
def test_plugin_hooks_are_documented(hook: str) -> None:
    shown = [
        args.replace(" ", "")
        for name, args in re.findall(r"\b(guiche_\w+)\(([^)]*)\)", DOCS.read_text())
        if name == hook
    ]
    params = ",".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert shown, f"{hook} is not documented in docs/plugins.md"
    assert params in shown, f"docs show {hook} as {shown}, the hookspec takes ({params})"


@pytest.mark.parametrize("hook", HOOKS)
def test_plugin_hooks_have_tests(hook: str) -> None:
    """A hook counts as tested when a test implements it or invokes it by name."""
    this_file = Path(__file__).resolve()
    sources = [
        path.read_text() for path in (ROOT / "tests").rglob("*.py") if path.resolve() != this_file
    ]
    implemented = re.compile(rf"\bdef {hook}\(")
    invoked = re.compile(rf"[\"']{hook}[\"']")
    assert any(implemented.search(src) or invoked.search(src) for src in sources), (
        f"no test implements or invokes {hook}"
    )
