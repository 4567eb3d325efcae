"""The reference with its selection engine fixed, as implementations the sweep can time next to
``reference`` in one run (``CONVNN_SELECT_ENGINE``, docs/semantics.md, "Routes"):

    python -m suites.bench --preset default --impl reference --impl suites.bench.engines:PureTorch

``PureTorch`` selects with ``torch.topk`` on the score blocks (the engine off), ``Heaps`` with
faiss's heaps on them, ``Fused`` with the fused search wherever it can express the call.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from suites.implementations import ReferenceImplementation

ENGINE_ENV = "CONVNN_SELECT_ENGINE"


@contextmanager
def _engine(name: str) -> Iterator[None]:
    before = os.environ.get(ENGINE_ENV)
    os.environ[ENGINE_ENV] = name
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENGINE_ENV, None)
        else:
            os.environ[ENGINE_ENV] = before


def _fixed(name: str, engine: str) -> type[ReferenceImplementation]:
    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        def call(self: ReferenceImplementation, *args: Any, **kwargs: Any) -> Any:
            with _engine(engine):
                return method(self, *args, **kwargs)

        return call

    return type(
        name,
        (ReferenceImplementation,),
        {
            "name": f"reference-{engine}",
            "convnn": wrap(ReferenceImplementation.convnn),
            "attention": wrap(ReferenceImplementation.attention),
            "neighbours": wrap(ReferenceImplementation.neighbours),
        },
    )


PureTorch = _fixed("PureTorch", "torch")
Heaps = _fixed("Heaps", "heap")
Fused = _fixed("Fused", "faiss")
