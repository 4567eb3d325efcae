"""The catalogue of planted bugs: each a small textual change to the reference a real port
could make. ``find`` must occur exactly ``count`` times in ``file`` (a test in ``make verify``
checks it, so the catalogue follows the code); every occurrence is replaced.

A mutant the suite cannot kill because it computes the same function is marked with
``equivalent`` (why it is the same function); every other survivor is a blind spot to close.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    """One planted bug: replace ``find`` by ``replace`` in ``file`` (repository-relative)."""

    id: str
    file: str
    find: str
    replace: str
    what: str
    count: int = 1
    equivalent: str | None = None


MUTANTS: tuple[Mutant, ...] = ()
