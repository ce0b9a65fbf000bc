"""Who may import what: plugins and examples use only Guichê's public modules, and core
never imports a plugin. Every import counts, inside functions and under TYPE_CHECKING
too; a failure names the file and line."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from guiche import PUBLIC_MODULES

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_TREES = [
    path
    for base in ("plugins", "examples")
    for path in sorted((ROOT / base).glob("*/guiche_*"))
    if path.is_dir()
]
PLUGIN_PACKAGES = {path.name for path in PLUGIN_TREES}


def imports(tree_root: Path) -> Iterator[tuple[str, str]]:
    """(file:line, imported module) for every import under `tree_root`."""
    for path in sorted(tree_root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield where, alias.name
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "guiche":  # `from guiche import channels`
                    for alias in node.names:
                        yield where, f"guiche.{alias.name}"
                else:
                    yield where, node.module


def _is_guiche(module: str) -> bool:
    return module == "guiche" or module.startswith("guiche.")


def _public(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in PUBLIC_MODULES)


def test_plugins_and_examples_import_only_the_public_modules() -> None:
    assert PLUGIN_TREES, "expected first-party plugins and examples"
    offending = [
        f"{where}: imports {module}"
        for tree in PLUGIN_TREES
        for where, module in imports(tree)
        if _is_guiche(module) and not _public(module)
    ]
    assert not offending, "internal modules used by plugins:\n" + "\n".join(offending)


def test_core_never_imports_a_plugin() -> None:
    offending = [
        f"{where}: imports {module}"
        for where, module in imports(ROOT / "core" / "guiche")
        if module.split(".")[0] in PLUGIN_PACKAGES
    ]
    assert not offending, "core depends on a plugin:\n" + "\n".join(offending)


def test_the_public_modules_exist() -> None:
    for name in PUBLIC_MODULES:
        assert (ROOT / "core" / Path(*name.split("."))).with_suffix(".py").is_file(), name
