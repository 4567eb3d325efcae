"""No false alarms: implementations that differ from the reference only in legal ways
(`suites.correct_variants`) pass every property they declare, on the property files where they
differ; and the variant that breaks exact ties the other way while *claiming* the canonical rule
(`suites.faulty_implementations.WrongTieRule`) is caught by the tie properties.

Each run is a pytest subprocess under the ``ci`` profile, as a user's ``--impl`` run would be.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from suites.mutation.runner import ROOT

EQ = "suites/equivalence"
#: variant -> the property files (and -k filter) where it differs from the reference.
VARIANTS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "OtherTieOrder": ((f"{EQ}/test_oracle.py", f"{EQ}/test_kvt.py", f"{EQ}/test_invariants.py"), None),
    "FoldedScale": ((f"{EQ}/test_attention.py", f"{EQ}/test_kvt.py", f"{EQ}/test_gradients.py", f"{EQ}/test_oracle.py"), "attention or kvt or sdpa or cross"),
    "ReversedSums": ((f"{EQ}/test_convolution.py", f"{EQ}/test_oracle.py", f"{EQ}/test_gradients.py"), "not attention"),
    "Float64Inside": ((f"{EQ}/test_convolution.py", f"{EQ}/test_attention.py", f"{EQ}/test_oracle.py"), "not ties"),
    "OwnErrors": ((f"{EQ}/test_validation.py",), None),
}


def _pytest(spec: str, paths: tuple[str, ...], keyword: str | None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pytest", *paths, "--impl", spec, "-q", "-p", "no:cacheprovider", "--benchmark-disable", "-rfE"]
    if keyword:
        cmd += ["-k", keyword]
    env = {**os.environ, "HYPOTHESIS_PROFILE": "ci", "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_correct_variant_passes_everything_it_declares(variant: str) -> None:
    """A correct variant: no property fails (skips only outside its capabilities; its own
    exceptions for bad input are error-convention xfails)."""
    paths, keyword = VARIANTS[variant]
    proc = _pytest(f"suites.correct_variants:{variant}", paths, keyword)
    assert proc.returncode == 0, f"{variant}: a false alarm\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    assert " passed" in proc.stdout, proc.stdout[-2000:]


def test_claiming_the_tie_rule_and_breaking_it_is_caught() -> None:
    """WrongTieRule sends exact ties to the higher index while declaring the canonical rule: the
    tie properties fail with a mismatch (and the plain properties, tie-free, pass)."""
    proc = _pytest("suites.faulty_implementations:WrongTieRule", (f"{EQ}/test_oracle.py",), "canonical_rule")
    assert proc.returncode == 1, proc.stdout[-4000:]
    assert "test_feature_ties_follow_the_canonical_rule" in proc.stdout and "kind: mismatch" in proc.stdout, proc.stdout[-4000:]
    plain = _pytest("suites.faulty_implementations:WrongTieRule", (f"{EQ}/test_oracle.py",), "image_form or attention_form")
    assert plain.returncode == 0, plain.stdout[-4000:]
