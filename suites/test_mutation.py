"""The planted-bug catalogue stays applicable: every mutant's text occurs in its file exactly as
often as it says (so `make mutants` plants what it claims), and the ids are unique."""

from __future__ import annotations

from collections import Counter

import pytest

from suites.mutation.catalogue import MUTANTS, Mutant
from suites.mutation.report import headline
from suites.mutation.runner import ROOT


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.id for m in MUTANTS])
def test_mutant_applies(mutant: Mutant) -> None:
    """The mutant's text is in its file, as often as the catalogue says, and changes it."""
    text = (ROOT / mutant.file).read_text(encoding="utf-8")
    assert text.count(mutant.find) == mutant.count, f"{mutant.id}: {mutant.file} no longer holds its text {mutant.count} time(s)"
    assert mutant.find != mutant.replace


def test_catalogue_ids_unique_and_large_enough() -> None:
    """At least 30 mutants, each id once."""
    ids = Counter(m.id for m in MUTANTS)
    assert len(MUTANTS) >= 30 and max(ids.values()) == 1, ids.most_common(3)


def test_headline_counts_equivalent_mutants_apart() -> None:
    """The kill rate leaves equivalent survivors out of the denominator."""
    doc = {
        "mutants": [
            {"status": "killed"},
            {"status": "survived", "equivalent": "same function"},
            {"status": "survived", "equivalent": None},
            {"status": "not-applied"},
        ]
    }
    assert headline(doc).startswith("1 of 2 killed (50.0%), 1 equivalent, 1 not applied")


def test_default_tests_cover_the_whole_equivalence_suite() -> None:
    """The ordered file list of the mutation runs is every property file, none left out, the
    engine's reruns of them, and the benchmark stopwatch's decision tests."""
    from suites.mutation.runner import DEFAULT_TESTS

    files = {p.relative_to(ROOT).as_posix() for p in (ROOT / "suites" / "equivalence").glob("test_*.py")}
    assert set(DEFAULT_TESTS) == files | {"suites/test_engine.py", "suites/bench/test_stopwatch.py"}


def test_selection_by_id_and_glob() -> None:
    """``--only`` picks ids, ``--match`` globs; both together take the union; neither takes all."""
    from suites.mutation.runner import select

    ids = [m.id for m in select(MUTANTS, ["own-token-last"], ["shifted-*"])]
    assert "own-token-last" in ids and all(i == "own-token-last" or i.startswith("shifted-") for i in ids)
    assert len(ids) >= 3
    assert select(MUTANTS, None, None) == list(MUTANTS)
