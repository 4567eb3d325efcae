"""The dependency rules of DESIGN.md, enforced by parsing every import (``ast``, nothing is
imported): the oracle stands alone, fast code never reaches the oracle, the definitions never
reach the routes, reports stand alone, suites use the public and testing APIs only."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "convnn_ref"

#: Modules that define the semantics (DESIGN.md, rule 3): they never import the fast routes.
SEMANTIC = ("config", "positions", "scores", "candidates", "select", "aggregate", "table", "validation", "window")

#: What the suites may import from the package (DESIGN.md, rule 5).
SUITE_API = {"convnn_ref", "convnn_ref.config", "convnn_ref.testing"}

#: The package's submodules, as `module.attribute` access could reach them too.
SUBMODULES = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | {"fast"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every module ``path`` imports; ``from a import b`` yields both
    ``a`` and ``a.b`` (b may be a submodule). Relative imports are resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _top(module: str) -> str:
    return module.split(".")[0]


def _is_stdlib(module: str) -> bool:
    return _top(module) in sys.stdlib_module_names or _top(module) == "__future__"


def _is_module(module: str) -> bool:
    """True when ``module`` names a module or package of this project (not one of its attributes)."""
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _violations(files: list[Path], bad: object) -> list[str]:
    found = []
    for path in files:
        for line, module in imports(path):
            if bad(module):  # type: ignore[operator]
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return sorted(set(found))


def test_oracle_imports_only_the_config() -> None:
    """convnn_ref/naive.py imports convnn_ref.config, torch and the standard library only."""

    def bad(module: str) -> bool:
        if _is_stdlib(module) or _top(module) == "torch":
            return False
        return not (module == "convnn_ref.config" or module.startswith("convnn_ref.config."))

    assert _violations([PACKAGE / "naive.py"], bad) == []


def test_fast_code_never_imports_the_oracle() -> None:
    """Nothing under convnn_ref/fast/ imports the oracle, directly or through the testing API."""

    def bad(module: str) -> bool:
        return any(module == m or module.startswith(m + ".") for m in ("convnn_ref.naive", "convnn_ref.testing"))

    files = _files("convnn_ref/fast")
    assert files, "convnn_ref/fast/ holds no module"
    assert _violations(files, bad) == []


def test_definitions_never_import_the_routes() -> None:
    """The semantic modules never import convnn_ref.fast."""
    files = [PACKAGE / f"{name}.py" for name in SEMANTIC]
    assert _violations(files, lambda m: m == "convnn_ref.fast" or m.startswith("convnn_ref.fast.")) == []


def test_reports_import_neither_the_package_nor_the_suites() -> None:
    """reports/ reads JSON; it imports neither convnn_ref nor suites."""
    files = _files("reports")
    assert files
    assert _violations(files, lambda m: _top(m) in ("convnn_ref", "suites")) == []


def _suite_offenders() -> list[str]:
    def bad(module: str) -> bool:
        return _top(module) == "convnn_ref" and _is_module(module) and module not in SUITE_API

    found = _violations(_files("suites"), bad)
    # Attribute access reaches internal modules too: `convnn_ref.positions.resolve_geometry`.
    for path in _files("suites"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in ("convnn_ref", "cr")
                and node.attr in SUBMODULES - {"config", "testing"}
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} uses {node.value.id}.{node.attr}")
    return sorted(set(found))


def test_suites_use_the_public_and_testing_apis() -> None:
    """Modules under suites/ import convnn_ref, convnn_ref.config and convnn_ref.testing only."""
    offenders = _suite_offenders()
    assert offenders == [], "suites reach internal modules:\n  " + "\n  ".join(offenders)


def test_the_import_parser_sees_what_it_must() -> None:
    """Control: the parser resolves relative imports and `from a import b` submodules."""
    found = {m for _, m in imports(PACKAGE / "fast" / "routes.py")}
    assert {"convnn_ref.select", "convnn_ref.fast.plan", "convnn_ref.aggregate"} <= found
    assert {m for _, m in imports(ROOT / "reports" / "__main__.py")} >= {"reports.cli"}
