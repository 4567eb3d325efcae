"""Mutation testing of the suite: plausible bugs planted one at a time in a scratch copy of the
repository, each run against the equivalence suite (``ci`` profile). A mutant is *killed* when
some property fails; a survivor is either killed by a new property or explained in the catalogue
as equivalent (the same function, written differently).

    python -m suites.mutation [--only ID ...] [--out reports/mutants]     (make mutants)

Modules: `catalogue` (the planted bugs), `runner` (copy, plant, run, record), `report`.
"""
