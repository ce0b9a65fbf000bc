"""Core's layers import one way (docs/architecture.md, "Layers").

Every import of every module under `core/guiche` counts — at the top, inside functions
and under `TYPE_CHECKING` — resolved to the module it names. A module may import its own
layer or a lower one, never a higher one; and the packages (a package, or a module at
the root of `guiche`) form no cycle, whatever their layers. Failures name file:line.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from guiche import PUBLIC_MODULES

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"

#: Bottom to top. A unit is a package or a module at the root of `guiche`.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "vocabulary",
        frozenset(
            {
                "guiche",
                "guiche.channels",
                "guiche.contract",
                "guiche.database",
                "guiche.foundation",
                "guiche.models",
                "guiche.piccolo_app",
                "guiche.piccolo_migrations",
                "guiche.provider_http",
                "guiche.ratelimit",
                "guiche.specs",
                "guiche.tenancy",
            }
        ),
    ),
    (
        "domain",
        frozenset(
            {
                "guiche.auth",
                "guiche.channel_host",
                "guiche.companies",
                "guiche.contacts",
                "guiche.conversations",
                "guiche.inbound",
                "guiche.media",
                "guiche.outbound",
                "guiche.realtime",
                "guiche.routing",
                "guiche.runtime",
            }
        ),
    ),
    ("http kit", frozenset({"guiche.http"})),
    (
        "plugin host",
        frozenset(
            {
                "guiche.hookspecs",
                "guiche.plugin",
                "guiche.plugin_host",
                "guiche.tasks",
                "guiche.testing",
            }
        ),
    ),
    (
        "edges",
        frozenset(
            {
                "guiche.api",
                "guiche.app",
                "guiche.cli",
                "guiche.console",
                "guiche.doctor",
                "guiche.piccolo_conf",
                "guiche.scaffold",
                "guiche.web",
                "guiche.websocket",
                "guiche.worker",
            }
        ),
    ),
)
LAYER_OF = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}
LAYER_NAME = [name for name, _ in LAYERS]
#: The web layer and the database models, which the public modules never import.
NOT_FOR_PUBLIC = ("guiche.web", "guiche.api", "guiche.websocket", "guiche.app", "guiche.models")


def core_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted((CORE / "guiche").rglob("*.py")):
        parts = list(path.relative_to(CORE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = core_modules()


def unit_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _resolve(name: str) -> str | None:
    """The core module an import names (`from guiche.x import y` may name module x.y)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, core module) for every import in `path`, relative ones resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] or [base]
        else:
            continue
        for name in names:
            if name == "guiche" or name.startswith("guiche."):
                target = _resolve(name)
                if target is not None and target != module:
                    yield node.lineno, target


def edges() -> Iterator[tuple[str, str, str]]:
    """(file:line, importing module, imported module) across core."""
    for module, path in MODULES.items():
        for line, target in imports_of(module, path):
            yield f"{path.relative_to(ROOT)}:{line}", module, target


def test_every_unit_has_a_layer() -> None:
    missing = sorted({unit_of(m) for m in MODULES} - set(LAYER_OF))
    assert not missing, f"place these in LAYERS (and docs/architecture.md): {missing}"


def test_no_layer_imports_a_higher_one() -> None:
    offending = [
        f"{where}: {module} ({LAYER_NAME[LAYER_OF[unit_of(module)]]}) imports {target}"
        f" ({LAYER_NAME[LAYER_OF[unit_of(target)]]})"
        for where, module, target in edges()
        if LAYER_OF.get(unit_of(target), 0) > LAYER_OF.get(unit_of(module), 0)
    ]
    assert not offending, "imports against the layers:\n" + "\n".join(offending)


def test_packages_form_no_cycle() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    where: dict[tuple[str, str], str] = {}
    for line, module, target in edges():
        a, b = unit_of(module), unit_of(target)
        if a != b:
            graph[a].add(b)
            where.setdefault((a, b), line)
    cycles = [c for c in _strongly_connected(graph) if len(c) > 1]
    report = [
        " ↔ ".join(sorted(cycle))
        + "\n"
        + "\n".join(
            f"    {where[(a, b)]}: {a} → {b}"
            for a in sorted(cycle)
            for b in sorted(graph[a] & set(cycle))
        )
        for cycle in cycles
    ]
    assert not cycles, "import cycles between packages:\n" + "\n".join(report)


def test_public_modules_never_import_the_web_layer_or_models() -> None:
    offending = [
        f"{where}: {module} imports {target}"
        for where, module, target in edges()
        if module in PUBLIC_MODULES
        and any(target == banned or target.startswith(banned + ".") for banned in NOT_FOR_PUBLIC)
    ]
    assert not offending, "public modules reaching into internals:\n" + "\n".join(offending)


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    nodes = sorted(set(graph) | {b for targets in graph.values() for b in targets})
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    item = stack.pop()
                    on_stack.discard(item)
                    component.append(item)
                    if item == node:
                        break
                found.append(component)
    return found


def test_the_check_finds_a_cycle_it_is_shown() -> None:
    """The cycle test is not vacuous: the tangles of issue 14 would fail it."""
    tangled = {
        "guiche.routing": {"guiche.inbound"},
        "guiche.inbound": {"guiche.outbound"},
        "guiche.outbound": {"guiche.inbound", "guiche.channel_host.runtime"},
        "guiche.channel_host.runtime": {"guiche.inbound"},
    }
    cycles = [sorted(c) for c in _strongly_connected(tangled) if len(c) > 1]
    assert cycles == [["guiche.channel_host.runtime", "guiche.inbound", "guiche.outbound"]]
