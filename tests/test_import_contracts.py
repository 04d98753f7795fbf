"""Issue 17, item 5: import contracts, checked on the source (imports inside functions included), so a layer
cannot quietly start depending on the one above it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "minilm_deploy"


def imports_of(path: Path) -> set[str]:
    """Every project module `path` imports, anywhere in the file (module level, functions, TYPE_CHECKING)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.update(f"{base}.{alias.name}" for alias in node.names)
            found.add(base)
    return {name for name in found if name.startswith("minilm_deploy")}


def violations(importer: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted((PACKAGE / importer.replace("minilm_deploy.", "").replace(".", "/")).rglob("*.py")):
        for name in sorted(imports_of(path)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                out.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    return out


def test_the_scanner_sees_imports_inside_functions(tmp_path):
    source = PACKAGE / "pipeline.py"  # imports the stages inside functions only
    assert any(name.startswith("minilm_deploy.export") for name in imports_of(source))


def test_runtime_imports_nothing_of_the_exporter():
    assert violations("minilm_deploy.runtime", ("minilm_deploy.export",)) == []


def test_models_import_nothing_of_distillation():
    assert violations("minilm_deploy.models", ("minilm_deploy.distill",)) == []


def test_nothing_outside_the_cli_imports_it():
    """`__main__.py` files are command-line entry points (`python -m minilm_deploy[.distill]`): they may."""
    offenders = [v for top in sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name not in ("cli", "__pycache__"))
                 for v in violations(f"minilm_deploy.{top}", ("minilm_deploy.cli",)) if "__main__.py" not in v]
    top_level = [f"{p.name} imports {n}" for p in PACKAGE.glob("*.py") if p.name != "__main__.py"
                 for n in imports_of(p) if n.startswith("minilm_deploy.cli")]
    assert offenders + top_level == []


def test_data_imports_only_errors_and_itself():
    """`data/` reads local files and rows; names (zoo:, hub:, glue/) are resolved by `sources.py` alone."""
    offenders = [f"{path.relative_to(PACKAGE.parent)} imports {name}" for path in sorted((PACKAGE / "data").rglob("*.py"))
                 for name in sorted(imports_of(path))
                 if name != "minilm_deploy" and not name.startswith(("minilm_deploy.data", "minilm_deploy.errors"))]
    assert offenders == []


def test_only_sources_reads_zoo_names():
    """`zoo:` is parsed in one module (the resolver); the zoo itself and the CLI's `zoo` command aside."""
    readers = sorted(str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py")
                     if '"zoo:' in p.read_text(encoding="utf-8") and "startswith" in p.read_text(encoding="utf-8")
                     and not p.is_relative_to(PACKAGE / "zoo"))
    assert readers == ["minilm_deploy/sources.py"]


def test_no_import_cycles_even_through_imports_inside_functions():
    """Issue 17 found data.tasks → zoo.registry → … → data.corpus → data.tasks, hidden by function-level imports.
    Every project import (module level or inside a function) is an edge; the graph has no cycle."""
    modules = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
               for p in PACKAGE.rglob("*.py")}

    def target(name: str) -> str | None:  # `from minilm_deploy.x import f` → module minilm_deploy.x
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name if name in modules and name != "minilm_deploy" else None

    graph = {m: {t for n in imports_of(p) if (t := target(n)) and t != m} for m, p in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(graph[module]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
