"""A fresh clone runs its tests alone: nothing under tests/ (or bench/, which the suite
smoke-runs) reads a path outside the repository, such as a `../shared` checkout that
exists only on the authors' machines.

The check reads the code (AST): every path built from `__file__` (`Path(__file__)...
.parent`, `.parents[n]`, `os.path.dirname`, `os.path.join(..., "..")`, `/ "x"`), also
through a module-level name such as `ROOT`, must stay inside the repository; no string
names a sibling of the repository; `".."` is never a component of a path built from
something else.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from tests.conftest import FIXTURES_DIR

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("tests", "bench")

_PATH_CALLS = {"Path", "PurePath", "join", "abspath", "realpath", "normpath", "dirname"}


def _call_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name):
            return func.id
        if isinstance(func, ast.Attribute):
            return func.attr
    return None


class _Paths(ast.NodeVisitor):
    """Evaluates path expressions anchored at `__file__`; collects the ones leaving ROOT."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.names: dict[str, str] = {}
        self.problems: list[str] = []

    def anchored(self, node: ast.AST) -> str | None:
        """The absolute path `node` denotes when it is built from `__file__`, else None."""
        if isinstance(node, ast.Name):
            return str(self.file) if node.id == "__file__" else self.names.get(node.id)
        if isinstance(node, ast.Attribute) and node.attr == "parent":
            base = self.anchored(node.value)
            return os.path.dirname(base) if base else None
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
            if node.value.attr == "parents" and isinstance(node.slice, ast.Constant):
                base = self.anchored(node.value.value)
                if base is None or not isinstance(node.slice.value, int):
                    return None
                return str(Path(base).parents[node.slice.value])
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            base = self.anchored(node.left)
            if base is not None and isinstance(node.right, ast.Constant):
                return os.path.normpath(os.path.join(base, str(node.right.value)))
        name = _call_name(node)
        if isinstance(node, ast.Call) and name is not None:
            if name in ("resolve", "absolute") and isinstance(node.func, ast.Attribute):
                return self.anchored(node.func.value)
            if not node.args:
                return None
            base = self.anchored(node.args[0])
            if base is None:
                return None
            if name in ("Path", "PurePath", "abspath", "realpath", "normpath"):
                return base
            if name == "dirname":
                return os.path.dirname(base)
            if name == "join":
                rest = [arg.value for arg in node.args[1:] if isinstance(arg, ast.Constant)]
                if len(rest) == len(node.args) - 1:
                    return os.path.normpath(os.path.join(base, *map(str, rest)))
        return None

    def outside(self, path: str) -> bool:
        return not Path(os.path.normpath(path)).is_relative_to(ROOT)

    def visit_Assign(self, node: ast.Assign) -> None:
        value = self.anchored(node.value)
        if value is not None:
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self.names[target.id] = value
        self.generic_visit(node)

    def generic_visit(self, node: ast.AST) -> None:
        where = f"{self.file.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
        path = self.anchored(node)
        if path is not None and self.outside(path):
            self.problems.append(f"{where}: {ast.unparse(node)} is {path}, outside the repository")
            return  # one report per expression, not one per enclosing node
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if str(ROOT.parent) + os.sep in text and str(ROOT) not in text:
                self.problems.append(f"{where}: {text!r} names a path beside the repository")
        if (
            path is None
            and (_call_name(node) in _PATH_CALLS or isinstance(node, ast.BinOp))
            and any(
                isinstance(part, ast.Constant)
                and isinstance(part.value, str)
                and ".." in Path(part.value).parts
                for part in ast.iter_child_nodes(node)
            )
        ):
            self.problems.append(f"{where}: {ast.unparse(node)} climbs with '..'")
        super().generic_visit(node)


def violations(source: str, file: Path) -> list[str]:
    visitor = _Paths(file)
    visitor.visit(ast.parse(source))
    return visitor.problems


def scanned_files() -> list[Path]:
    """Every module of tests/ and bench/ but this one (it names outside paths on purpose)."""
    here = Path(__file__).resolve()
    return sorted(
        path for top in SCANNED for path in (ROOT / top).rglob("*.py") if path.resolve() != here
    )


def test_nothing_under_tests_reads_outside_the_repository() -> None:
    problems = [
        problem for file in scanned_files() for problem in violations(file.read_text(), file)
    ]
    assert not problems, "\n".join(problems)


def test_the_check_catches_the_old_sibling_fixture_paths() -> None:
    """The shapes that once read `../shared/fixtures` are reported, each in its own way."""
    file = ROOT / "tests" / "conftest.py"
    cases = {
        'import os\nF = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..",'
        ' "shared", "fixtures"))\n': "outside the repository",
        "from pathlib import Path\nROOT = Path(__file__).resolve().parent.parent\n"
        'F = ROOT.parent / "shared" / "fixtures"\n': "outside the repository",
        "from pathlib import Path\nF = Path(__file__).resolve().parents[2]\n": "outside",
        f"F = {str(ROOT.parent / 'shared' / 'fixtures')!r}\n": "beside the repository",
        'import os\nF = os.path.join(os.getcwd(), "..", "shared")\n': "climbs with '..'",
    }
    for source, expected in cases.items():
        found = violations(source, file)
        assert found and expected in found[0], (source, found)
    inside = 'from pathlib import Path\nF = Path(__file__).parent / "fixtures"\n'
    assert violations(inside, file) == []


def test_fixtures_live_in_the_repository() -> None:
    fixtures = Path(FIXTURES_DIR)
    assert fixtures.is_relative_to(ROOT / "tests")
    assert (fixtures / "README.md").is_file()
    for provider in ("meta", "evolution"):
        assert any((fixtures / provider).glob("webhook_*.json")), provider
