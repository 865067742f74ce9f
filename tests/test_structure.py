"""The package's shape: imports form no cycle, the engine never imports the server, and the
server's four layers import only downward. Read from the source (ast), so no import hides
from it: function-level ones count, and so do those under `if TYPE_CHECKING:`, since a module
that needs another's names for its annotations depends on it as much as one that calls it."""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "copyspec_lsp")
LAYERS = ("wire", "handlers", "flow", "adapters")
"""The server's layers, top to bottom: each imports only the ones after it."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source: str, modules: set[str], name: str) -> set[str]:
    """The modules of ours that `source` (module `name`) imports, anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def imports() -> dict[str, set[str]]:
    """Each of our modules and the modules of ours it imports."""
    modules = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    return {name: imported(path.read_text(encoding="utf-8"), set(modules), name)
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan): each is a set of
    modules that import each other, directly or through the others."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[frozenset[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        for target in sorted(graph[name]):
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            component = {stack.pop()}
            while name not in component:
                component.add(stack.pop())
            if len(component) > 1:
                found.append(frozenset(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return found


def test_an_import_for_annotations_only_counts() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import pkg.a\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.b import Thing\n"
        "def later():\n"
        "    from pkg import c\n"
    )
    modules = {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d"}
    assert imported(source, modules, "pkg.d") == {"pkg", "pkg.a", "pkg.b", "pkg.c"}


def test_cycles_are_found_through_other_modules() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"d"}}
    assert cycles(graph) == [frozenset({"a", "b", "c"})]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    found = [sorted(c) for c in cycles(imports())]
    assert not found, f"import cycles: {found}"


def layer(name: str) -> int | None:
    """The index in LAYERS of a server module's layer; None outside the layers (the
    package's `__init__` and `__main__`, the entry point that starts the top one)."""
    parts = name.split(".")
    if parts[0] != "copyspec_lsp" or len(parts) < 2 or parts[1] not in LAYERS:
        return None
    return LAYERS.index(parts[1])


def test_every_server_module_is_in_a_layer() -> None:
    loose = [name for name in imports() if name.startswith("copyspec_lsp.")
             and layer(name) is None and name != "copyspec_lsp.__main__"]
    assert not loose, f"server modules outside the layers {LAYERS}: {loose}"


def test_the_layers_import_only_downward() -> None:
    upward = [
        f"{name} -> {target}"
        for name, targets in imports().items() if (own := layer(name)) is not None
        for target in targets if (other := layer(target)) is not None and other < own
    ]
    assert not upward, f"imports into a higher layer: {upward}"


def test_the_engine_knows_nothing_of_the_server() -> None:
    for name, targets in imports().items():
        if name.startswith("engine"):
            assert not [t for t in targets if t.startswith("copyspec_lsp")], name


def test_one_engine_thread_and_one_session_cache_serve_the_lsp_and_copyspec_serve() -> None:
    """The language server's model host and each `copyspec serve` replica run turns on the
    same engine-thread class and keep sessions in the same LRU; no other module runs the model
    on a thread pool of its own."""
    graph = imports()
    for user in ("copyspec_lsp.adapters.model_host", "engine.serve.engine"):
        assert "engine.engine_thread" in graph[user], user
    for user in ("copyspec_lsp.adapters.conversations", "engine.serve.engine"):
        assert "engine.session_cache" in graph[user], user
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            source = path.read_text(encoding="utf-8")
            assert "ThreadPoolExecutor" not in source and "run_in_executor" not in source, path


def test_the_refine_trace_follows_one_refine_down_the_layers_to_the_decode_loop() -> None:
    """scripts/refine_trace.py, which measures how many files a refine crosses, on a real
    server: its trace starts at the handler, goes down every layer to the engine's decode loop
    and copy proposer, and every server file it lists is in a layer."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from refine_trace import crossed
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    files = crossed(str(ROOT / "engine" / "models" / "demo"))
    assert files[0] == os.path.join("copyspec_lsp", "handlers", "methods.py")
    for needed in ("copyspec_lsp/flow/refine.py", "copyspec_lsp/adapters/model_host.py",
                   "engine/session.py", "engine/decode.py", "engine/proposers/copy.py"):
        assert os.path.join(*needed.split("/")) in files, needed
    server = [Path(f).parts for f in files if f.startswith("copyspec_lsp")]
    assert all(len(parts) == 3 and parts[1] in LAYERS for parts in server), server
