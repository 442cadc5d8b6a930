"""The import graph of `bench/` has no cycle: every import statement counts, function-local
ones included (a cycle held apart by local imports is still a cycle). Edges go from a module to
the module it names (`from bench.a import b` names `bench.a.b` when that is a module); the
registries' dynamic imports of their own plugin modules are not statements and do not count."""

import ast
from pathlib import Path

import bench

ROOT = Path(bench.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ROOT.parent / rel).with_suffix(".py").is_file() or (ROOT.parent / rel).is_dir()


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        me = _module_name(path)
        edges = graph.setdefault(me, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" if _exists(f"{node.module}.{a.name}")
                         else node.module for a in node.names]  # fmt: skip
            else:
                continue
            edges |= {n for n in names if n.split(".")[0] == "bench" and n != me}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_bench_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_data_never_plot_and_metrics_never_import_data():
    graph = import_graph()
    for mod, edges in graph.items():
        if mod.startswith(("bench.datasets", "bench.metrics")):
            assert not {e for e in edges if e.startswith(("bench.plots", "bench.report"))}, mod
        if mod.startswith("bench.metrics"):
            assert not {e for e in edges if e.startswith("bench.datasets")}, mod
