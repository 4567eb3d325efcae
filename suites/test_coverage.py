"""The argument coverage table (docs/coverage.md, `suites.coverage`): every argument of every
public function and constructor has a row with a property that draws it and the range; no blank
cell, no stale cell, no property named that does not exist, and the committed page is current,
so a new argument cannot arrive unseen."""

from __future__ import annotations

import re
from pathlib import Path

from suites import coverage

SUITES = Path(__file__).resolve().parent


def _defined_tests() -> set[str]:
    names: set[str] = set()
    for path in SUITES.rglob("test_*.py"):
        names.update(re.findall(r"^def (test_\w+)\(", path.read_text(encoding="utf-8"), flags=re.M))
    return names


def test_every_argument_has_a_property_and_a_range() -> None:
    """No blank cell: a new argument (or public callable) needs its cells in suites/coverage.py."""
    blank = [f"{name}.{arg}" for name, arg, _, props, span in coverage.rows() if not props.strip() or not span.strip()]
    assert not blank, f"arguments without a property or a range in suites/coverage.py: {blank}"


def test_no_cell_for_an_argument_that_is_gone() -> None:
    """Every cell belongs to an argument of a public callable."""
    present = {(name, arg) for name, arg, *_ in coverage.rows()}
    stale = [f"{name}.{arg}" for name, cells in coverage.COVERAGE.items() for arg in cells if (name, arg) not in present]
    assert not stale, f"cells for arguments that no public signature has: {stale}"


def test_every_named_property_exists() -> None:
    """The properties a cell names are test functions of the suites."""
    defined = _defined_tests()
    missing = sorted({p.strip() for *_, props, _ in coverage.rows() for p in props.split(",")} - defined)
    assert not missing, f"cells name properties that do not exist: {missing}"


def test_committed_page_is_current() -> None:
    """docs/coverage.md is what `python -m suites.coverage` renders now."""
    assert coverage.PAGE.read_text(encoding="utf-8") == coverage.render(), "docs/coverage.md is stale: run python -m suites.coverage"
