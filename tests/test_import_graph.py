"""No module of sharebert imports itself through others, at any level (function-level imports too)."""

from __future__ import annotations

import ast
from pathlib import Path


def _package_imports() -> dict[str, set[str]]:
    """module -> the sharebert modules it imports (at any level, TYPE_CHECKING blocks included)."""
    root = Path(__file__).resolve().parents[1] / "sharebert"
    graph = {}
    for path in root.rglob("*.py"):
        package = ".".join(path.relative_to(root.parent).parts[:-1])
        name = package if path.stem == "__init__" else f"{package}.{path.stem}"
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level else ""
                module = ".".join(filter(None, [base, node.module]))
                targets |= {f"{module}.{alias.name}" for alias in node.names} | {module}
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
        graph[name] = targets
    return {name: {t for t in targets if t in graph and t != name} for name, targets in graph.items()}


def test_no_import_cycle_in_the_package():
    graph = _package_imports()
    assert "sharebert.pipeline.prepare.config" in graph["sharebert.pipeline.prepare.output"]
    assert "sharebert.trainer.pretrain.cli" in graph["sharebert.cli"]
    visiting, done = [], set()

    def visit(module):
        if module in visiting:
            raise AssertionError("import cycle: " + " -> ".join([*visiting[visiting.index(module) :], module]))
        if module not in done:
            visiting.append(module)
            for target in sorted(graph[module]):
                visit(target)
            visiting.pop()
            done.add(module)

    for module in sorted(graph):
        visit(module)
