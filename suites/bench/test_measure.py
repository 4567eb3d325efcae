"""The measuring machinery itself: the verdict catches a wrong result, ambiguous queries are
left out, CPU peak memory sees a known allocation, the journal resumes, FLOPs add up."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from suites import tolerance
from suites.bench import journal, measure
from suites.bench.cases import Case, build
from suites.bench.presets import PRESETS, get_preset
from suites.implementations import load_implementation
from suites.inputs import randn


def test_verdict_passes_the_op_and_fails_a_perturbed_output() -> None:
    """conv2d's own output is ✓ against its float64 gold; the same output with one element off
    by 1e-3 is ✗."""
    work = build(Case("conv2d", "position", 9, 8, C=8, B=2), None)
    out = work.output()
    assert work.base is not None
    base = work.base()
    ok = measure.verdict(out, work.gold(), base, None, work.reduction, "float32")
    assert ok["verdict"] == "✓", ok
    bad = out.clone()
    bad[0, 0, 0, 0] += 1e-3
    wrong = measure.verdict(bad, work.gold(), base, None, work.reduction, "float32")
    assert wrong["verdict"] == "✗" and wrong["error"] == pytest.approx(1e-3, rel=1e-2)


def test_verdict_bound_is_the_suites_bound_and_records_the_precision_settings() -> None:
    """The benchmark's bound is `suites.tolerance.bound` (one error model); the verdict says
    whether TF32 was allowed."""
    work = build(Case("conv2d", "position", 9, 8, C=8, B=2), None)
    assert work.base is not None
    out, gold, base = work.output(), work.gold(), work.base()
    v = measure.verdict(out, gold, base, None, work.reduction, "float32")
    base_err = float((base.double() - gold).abs().max())
    assert v["bound"] == pytest.approx(tolerance.bound(base_err, gold, torch.float32, work.reduction))
    assert v["floor"] == pytest.approx(tolerance.floor(gold, torch.float32, work.reduction))
    assert isinstance(v["allow_tf32_cudnn"], bool) and isinstance(v["allow_tf32_matmul"], bool)


def test_inputs_come_from_the_seeded_factory_and_the_row_names_their_seeds() -> None:
    case = Case("reference", "position", 9, 6, C=4, B=2, seed=5)
    work = build(case, load_implementation("reference"))
    assert work.seeds == {"x": 5, "weight": 6, "bias": 7, "grad_out": 8}
    assert torch.equal(work.inputs["x"], randn((2, 4, 6, 6), 5, torch.float32))


def test_process_peak_sees_a_transient_allocation() -> None:
    """Peak RSS over a block that touches 64 MiB and frees it is at least 60 MiB above the
    start (the tensor high-water mark cannot see what the allocator keeps; RSS does)."""
    with measure.ProcessPeak() as rss:
        a = torch.ones(16 * 2**20)  # 64 MiB, every page written
        del a
    assert rss.peak - rss.start >= 60 * 2**20, (rss.start, rss.peak, rss.method)
    assert rss.method


def test_ambiguous_queries_are_left_out_of_the_comparison() -> None:
    """An error confined to queries marked ambiguous does not fail the verdict; the compared
    fraction says how many were left out."""
    gold = torch.zeros(1, 3, 4, dtype=torch.float64)
    out = torch.zeros(1, 3, 4)
    out[0, 1] = 5.0
    ambiguous = torch.tensor([[False, True, False]])
    v = measure.verdict(out, gold, None, ambiguous, 4, "float32")
    assert v["verdict"] == "✓" and v["compared_fraction"] == pytest.approx(2 / 3)
    assert measure.verdict(out, gold, None, None, 4, "float32")["verdict"] == "✗"


def test_cpu_peak_memory_sees_a_known_allocation() -> None:
    """A call that holds 8 MiB and 4 MiB at once peaks at no less than 12 MiB."""

    def call() -> None:
        a = torch.ones(2 * 2**20)  # 8 MiB
        b = torch.ones(2**20)  # 4 MiB
        del a, b

    peak, method = measure.peak_memory(call, "cpu")
    assert peak is not None and 12 * 2**20 <= peak < 14 * 2**20, (peak, method)


def test_noise_warning_threshold() -> None:
    assert measure.noise_warning(1.0, 0.05) is None
    assert "IQR/median" in (measure.noise_warning(1.0, 0.2) or "")


def test_flops_of_a_3x3_conv_and_of_dense_attention() -> None:
    conv = Case("conv2d", "position", 9, 32, C=64, B=8)
    assert measure.flops(conv) == (2.0 * 8 * 1024 * 9 * 64 * 64,) * 2
    sdpa = Case("sdpa", "attention", 1024, 32, C=64, B=8, direction="forward+backward")
    assert measure.flops(sdpa)[1] == 3 * 4.0 * 8 * 1024 * 1024 * 64


def test_dense_naive_equals_the_reference_on_unambiguous_queries() -> None:
    """The research-code baseline computes the reference's feature mode."""
    case = Case("dense-naive", "feature", 4, 6, C=8, B=2, dtype="float64")
    work = build(case, None)
    v = measure.verdict(work.output(), work.gold(), None, work.ambiguous(), work.reduction, "float64")
    assert v["verdict"] == "✓", v


def test_journal_resumes_and_retries(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal.append(path, {"type": "start", "id": "a"})
    journal.append(path, {"type": "row", "row": {"param": "a", "extra_info": {"status": "ok"}}})
    journal.append(path, {"type": "start", "id": "b"})
    journal.append(path, {"type": "row", "row": {"param": "b", "extra_info": {"status": "crashed"}}})
    with path.open("a") as fh:
        fh.write('{"type": "row", "row": {"par')  # a kill mid-write
    records = journal.read(path)
    assert journal.done_ids(records) == {"a", "b"}
    assert journal.done_ids(records, ("crashed",)) == {"a"}
    assert journal.started_ids(records) == {"a", "b"}


def test_default_preset_holds_the_rows_of_every_bar() -> None:
    ids = {c.id for c in get_preset("default").cases("cpu", ("reference",))}
    for side in (8, 16, 32, 56, 64):
        assert f"reference-feature-k9-{side}x{side}-C64-B8-float32-cpu-fwd" in ids
        assert f"sdpa-attention-k{side * side}-{side}x{side}-C64-B8-float32-cpu-fwd" in ids
    assert "dense-naive-feature-k9-56x56-C64-B8-float32-cpu-fwd" in ids
    for side in (32, 56):
        assert f"conv2d-position-k9-{side}x{side}-C64-B8-float32-cpu-fwdbwd" in ids
    assert "dense-naive-feature-k9-64x64-C64-B16-float32-cpu-fwd" in ids
    assert "sdpa-math-attention-k1024-32x32-C64-B8-float32-cpu-fwd" in ids
    assert set(PRESETS) == {"smoke", "default", "canonical", "full", "tiny"}
    preset = get_preset("default")
    for bar in preset.bars:  # every bar has ConvNN rows and baseline rows in the preset
        convnn = [c for c in preset.cases("cpu") if c.implementation == "reference" and c.mode == bar.mode
                  and c.direction == bar.direction and c.B == bar.B and (bar.k is None or c.k == bar.k)
                  and (bar.sides is None or c.side in bar.sides)]
        assert convnn, bar.name
        assert any(c.implementation == bar.baseline and c.side == convnn[0].side and c.B == bar.B
                   for c in preset.cases("cpu")), bar.name


def test_every_registry_implementation_case_builds() -> None:
    """Each smoke case builds with the reference implementation (no shape or mode mismatch)."""
    impl = load_implementation("reference")
    for case in get_preset("smoke").cases("cpu", ("reference",)):
        work = build(case, impl if case.implementation == "reference" else None)
        assert work.output().shape[0] == case.B
