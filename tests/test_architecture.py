"""The layout keeps its promises: no import circles, imports point down the layers, the CLI
starts without torch, and the extension never reaches into the backend."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import spatia

ROOT = Path(spatia.__file__).resolve().parent  # backend/spatia
REPO = ROOT.parents[1]

# Each package may import only from the layers below it (and itself).
LAYERS = {
    "spatia.cameras": 0, "spatia.formats": 1, "spatia.engine": 2,
    "spatia.demo": 3, "spatia.service": 3, "spatia.eval": 4, "spatia.batch": 4, "spatia.cli": 5,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path = ROOT, prefix: str = "spatia") -> dict[str, set[str]]:
    """module -> the project modules it imports, at any depth of the file (lazy imports count)."""
    modules = {_module_name(p): p for p in root.rglob("*.py") if "__pycache__" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                # `from pkg import mod` imports pkg.mod when it is a module
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target.startswith(prefix) and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a cycle to break.

    A package's __init__ that re-exports its own modules is not a cycle of the design, so edges
    from a module to its own ancestors' __init__ are ignored."""
    def ancestors(name):
        parts = name.split(".")
        return {".".join(parts[:i]) for i in range(1, len(parts))}

    edges = {n: {t for t in ts if t not in ancestors(n)} for n, ts in graph.items()}
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _layer(name: str) -> tuple[str, int] | None:
    for package, level in LAYERS.items():
        if name == package or name.startswith(package + "."):
            return package, level
    return None


def test_no_import_cycles_in_the_backend():
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_point_down_the_layers():
    wrong = []
    for name, targets in import_graph().items():
        source = _layer(name)
        for target in targets:
            goal = _layer(target)
            if source and goal and goal[0] != source[0] and goal[1] >= source[1]:
                wrong.append(f"{name} -> {target}")
    assert wrong == []


def test_the_engine_never_imports_the_extension():
    offenders = []
    for path in (ROOT / "engine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "spatia_blender"]
    assert offenders == []


def test_shared_camera_math_needs_only_numpy():
    code = ("import sys; sys.modules['bpy'] = None; sys.modules['torch'] = None\n"
            "import spatia_geometry.camera_math\n"
            "assert 'spatia' not in sys.modules and 'spatia_blender' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_the_command_line_starts_without_torch():
    code = ("import sys, contextlib, io\n"
            "from spatia.cli.main import build_parser\n"
            "parser = build_parser()\n"
            "for command in [None, 'demo', 'generate', 'serve', 'models', 'cameras', 'eval', 'batch', 'objects']:\n"
            "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "        parser.parse_args(([command] if command else []) + ['--help'])\n"
            "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'fastapi', 'scipy', 'bpy', 'cv2') if m in sys.modules)\n"
            "assert heavy == [], heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_engine_functions_stay_readable():
    """No function of the engine runs over 80 lines, and the world (state and versions) over 300."""
    long = []
    for path in (ROOT / "engine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.relative_to(ROOT)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []
    assert len((ROOT / "engine" / "world.py").read_text(encoding="utf-8").splitlines()) <= 300
