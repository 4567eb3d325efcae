"""The selection engine (faiss) against the pure PyTorch path: both must be the reference.

``CONVNN_SELECT_ENGINE`` chooses the engine of the feature and hybrid bases' selection (auto,
faiss, heap, torch; docs/semantics.md, "Routes"). Under ``auto`` only maps with at least 2048
candidates use faiss's fused search, so the equivalence suite's small inputs run on the pure
path (its float32 blocks shortlisted by faiss's heaps); here the key properties of the suite run
again with the fused search forced on every input it can express (float64 too: it shortlists in
float32 and decides the set and the order exactly) and with the heaps forced, and a few direct
checks pin down the tie rule, the automatic choice by size and the fallback without faiss.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import convnn_ref as cr
from suites.equivalence import test_invariants, test_kvt, test_oracle, test_padded_features
from suites.implementations import ReferenceImplementation

ENGINE_ENV = "CONVNN_SELECT_ENGINE"
ROOT = Path(__file__).resolve().parents[1]

try:
    import faiss  # noqa: F401

    HAVE_FAISS = True
except ImportError:
    HAVE_FAISS = False

needs_faiss = pytest.mark.skipif(not HAVE_FAISS, reason="faiss is not installed (pip install faiss-cpu)")

#: The equivalence properties that select by feature score, rerun with the engine forced on.
IMAGE_PROPERTIES = (
    test_oracle.test_image_form_vs_oracle,
    test_oracle.test_feature_basis_vs_oracle_low_precision,
    test_oracle.test_random_candidates_vs_oracle,
    test_oracle.test_grid_candidates_vs_oracle,
    test_oracle.test_hybrid_vs_oracle,
    test_oracle.test_forced_self_vs_oracle,
    test_oracle.test_feature_ties_follow_the_canonical_rule,
    test_invariants.test_batch_independence,
    test_invariants.test_output_does_not_depend_on_the_budget,
)
ATTENTION_PROPERTIES = (
    test_oracle.test_attention_form_vs_oracle,
    test_oracle.test_attention_ties_follow_the_canonical_rule,
    test_kvt.test_kvt_matches_paper,
    test_kvt.test_kvt_neighbours_are_topk,
)


#: The properties rerun with the heaps forced (float32 and half precision inputs use them).
HEAP_PROPERTIES = (
    test_oracle.test_feature_basis_vs_oracle_low_precision,
    test_oracle.test_attention_form_vs_oracle,
    test_kvt.test_kvt_matches_paper,
    test_kvt.test_kvt_neighbours_are_topk,
)


@needs_faiss
@pytest.mark.parametrize("prop", IMAGE_PROPERTIES + ATTENTION_PROPERTIES, ids=lambda p: p.__name__)
def test_equivalence_properties_with_the_engine_forced(prop, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The property holds with ``CONVNN_SELECT_ENGINE=faiss`` (the same examples as the suite)."""
    monkeypatch.setenv(ENGINE_ENV, "faiss")
    prop(impl=ReferenceImplementation(), device="cpu")


@needs_faiss
@pytest.mark.parametrize("prop", HEAP_PROPERTIES, ids=lambda p: p.__name__)
def test_equivalence_properties_with_the_heaps_forced(prop, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The property holds with ``CONVNN_SELECT_ENGINE=heap``."""
    monkeypatch.setenv(ENGINE_ENV, "heap")
    prop(impl=ReferenceImplementation(), device="cpu")


@needs_faiss
def test_padded_feature_bases_with_the_engine_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENGINE_ENV, "faiss")
    test_padded_features.test_padded_feature_bases_match_the_oracle()


def _selection(x: torch.Tensor, config: cr.ConvNNConfig, engine: str, monkeypatch: pytest.MonkeyPatch) -> torch.Tensor:
    monkeypatch.setenv(ENGINE_ENV, engine)
    return cr.neighbours(x, config, generator=torch.Generator().manual_seed(3)).index


@needs_faiss
def test_exact_ties_go_to_the_lower_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """Six one-channel tokens +-1: every cosine is +-1, ties everywhere. faiss alone returns equal
    scores in an order of its own (its knn: [5, 3, 2, 0]); the engine hands such rows to the tie rule."""
    x = torch.tensor([1.0, -1, 1, 1, -1, 1]).reshape(1, 1, 6)
    for k in (1, 2, 3, 4):
        config = cr.ConvNNConfig(k=k, basis="feature", similarity="cosine")
        pure = _selection(x, config, "torch", monkeypatch).tolist()
        assert _selection(x, config, "faiss", monkeypatch).tolist() == pure
        assert _selection(x, config, "heap", monkeypatch).tolist() == pure
    config = cr.ConvNNConfig(k=3, basis="feature", similarity="cosine")
    assert _selection(x, config, "faiss", monkeypatch)[0, 0].tolist() == [0, 2, 3]


@needs_faiss
@pytest.mark.parametrize("similarity", ["cosine", "euclidean", "dot", "scaled_dot"])
@pytest.mark.parametrize("self_slot", ["candidate", "forced"])
@pytest.mark.parametrize("candidates", ["all", "random"])
def test_engine_selects_what_the_pure_path_selects(
    similarity: str, self_slot: str, candidates: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a 48x48 map (above the fused search's automatic threshold) with duplicated tokens and
    scaled copies (exact ties inside and across the k-th place): the heaps select bit for bit
    what the pure path selects; the fused search (auto and forced) too, except on queries where
    two of the pure path's k+1 best scores are within float32 rounding of each other but not
    equal (there the pure path's float32 order is rounding noise and the fused search orders by
    float64 scores; the suite's properties judge those)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 48, 48, generator=g)
    flat = x.view(2, 8, -1)
    flat[:, :, 100:140] = flat[:, :, 0:40]  # exact duplicates
    flat[:, :, 200:240] = 2 * flat[:, :, 0:40]  # scaled copies: exact cosine ties
    kw: dict[str, object] = {"k": 9, "basis": "feature", "similarity": similarity, "self_slot": self_slot}
    if candidates == "random":
        kw.update(candidates="random", num_candidates=2100)
    config = cr.ConvNNConfig(**kw)  # type: ignore[arg-type]
    pure = _selection(x, config, "torch", monkeypatch)
    assert torch.equal(_selection(x, config, "heap", monkeypatch), pure)
    monkeypatch.setenv(ENGINE_ENV, "torch")
    score = cr.neighbours(x, config.replace(k=10), generator=torch.Generator().manual_seed(3)).score
    gaps = (score[..., :-1] - score[..., 1:]).abs()
    rounding = 1e-5 * score.abs().amax(dim=-1, keepdim=True)
    near = ((gaps > 0) & (gaps < rounding)).any(dim=-1)
    assert float(near.float().mean()) < 0.05
    for engine in ("auto", "faiss"):
        fused = _selection(x, config, engine, monkeypatch)
        assert torch.equal(fused[~near], pure[~near]), engine


@needs_faiss
def test_engine_output_matches_the_pure_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The layer's output (selection, recomputed scores with autograd, aggregation) agrees."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, 48, 48, generator=g, requires_grad=True)
    w = torch.randn(5, 6, 9, generator=g, requires_grad=True)
    config = cr.ConvNNConfig(k=9, basis="feature", similarity="cosine", rho="softmax")
    outs = []
    for engine in ("torch", "auto"):
        monkeypatch.setenv(ENGINE_ENV, engine)
        y = cr.convnn(x, w, None, config)
        gx, gw = torch.autograd.grad(y.square().sum(), (x, w))
        outs.append((y, gx, gw))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_unknown_engine_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENGINE_ENV, "annoy")
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match=ENGINE_ENV):
        cr.neighbours(x, cr.ConvNNConfig(k=3, basis="feature"))


def test_without_faiss_the_pure_path_selects() -> None:
    """With faiss unimportable: ``auto`` selects on the pure path (the same neighbours),
    ``faiss`` is an error that says what to install."""
    script = textwrap.dedent(
        """
        import os, sys
        sys.modules["faiss"] = None  # import faiss -> ImportError
        import torch, convnn_ref as cr
        x = torch.randn(1, 4, 48, 48, generator=torch.Generator().manual_seed(0))
        config = cr.ConvNNConfig(k=9, basis="feature")
        os.environ["CONVNN_SELECT_ENGINE"] = "auto"
        auto = cr.neighbours(x, config).index
        os.environ["CONVNN_SELECT_ENGINE"] = "torch"
        assert torch.equal(auto, cr.neighbours(x, config).index)
        for forced in ("faiss", "heap"):
            os.environ["CONVNN_SELECT_ENGINE"] = forced
            try:
                cr.neighbours(x, config)
            except RuntimeError as exc:
                assert "faiss-cpu" in str(exc), exc
            else:
                raise AssertionError("forcing a missing engine must fail")
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != ENGINE_ENV}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr
