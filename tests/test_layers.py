"""The package's import structure: no cycle, no upward import, and the torch-free entry points.

Layers, lowest first; a module may import its own layer and the ones below, never above
(function-level imports count too: an upward import inside a function is still a cycle
waiting to happen). docs/api.md shows the same picture.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "gaze_attention"
PKG = "gaze_attention"

LAYERS = [
    {"constants", "errors", "fsio", "runlock", "video"},  # leaves: the standard library (video: PyAV)
    {"data", "estimators"},  # data: torch-free except dataset / transforms / tvl1
    {"models"},
    {"losses", "bias"},  # the training objective and the estimator study, over a model's heads
    {"engine"},
    {"viz"},
    {"demo", "commands", "cli", "__main__", "__init__"},
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every gaze_attention module a file imports, at any depth of its code."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(PKG))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith(PKG):
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if (SRC.parent / Path(*sub.split("."))).with_suffix(".py").is_file()
                          or (SRC.parent / Path(*sub.split(".")) / "__init__.py").is_file() else base)
    found.discard(me)
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in SRC.rglob("*.py")}


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py: add its package there")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _graph_without_package_inits(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    # A package's __init__ re-exports its modules: importing `gaze_attention.data` from a
    # submodule of it is not a cycle of code, only of names. Count edges to real modules.
    return {m: {d for d in deps if not (SRC.parent / Path(*d.split(".")) / "__init__.py").is_file()}
            for m, deps in graph.items()}


def test_no_import_cycle() -> None:
    assert _cycles(_graph_without_package_inits(_graph())) == []


def test_no_upward_import() -> None:
    upward = [f"{m} -> {d}" for m, deps in sorted(_graph().items()) for d in sorted(deps)
              if d.startswith(PKG + ".") and _layer(d) > _layer(m)]
    assert upward == []


def test_the_layer_check_sees_a_cycle_and_an_upward_import() -> None:
    g = {"gaze_attention.data.a": {"gaze_attention.data.b"}, "gaze_attention.data.b": {"gaze_attention.data.a"}}
    assert _cycles(g) == [["gaze_attention.data.a", "gaze_attention.data.b"]]
    assert _layer("gaze_attention.engine.train") > _layer("gaze_attention.errors")


TORCH_FREE = [
    "import gaze_attention",
    "import gaze_attention.cli",
    "import gaze_attention.constants, gaze_attention.errors",
    "import gaze_attention.data.prepare",
    "import gaze_attention.data.store",
    "import gaze_attention.data.begaze, gaze_attention.data.egtea",
]


@pytest.mark.parametrize("code", TORCH_FREE)
def test_entry_points_do_not_import_torch(code: str) -> None:
    check = f"{code}\nimport sys\nassert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:5]"
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_help_of_every_command_does_not_import_torch() -> None:
    code = (
        "import sys\nfrom gaze_attention.cli import COMMANDS, main\n"
        "for argv in [['--help']] + [[c, '--help'] for c in COMMANDS]:\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "assert 'torch' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
