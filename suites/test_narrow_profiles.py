"""No false alarms by construction: correct implementations with the narrowest capabilities
(`suites.narrow_implementations`: one form, one metric, one kernel, one dtype, shape-aware
checks) see every equivalence property either pass or skip with a named reason.

One pytest subprocess runs every property file against all the profiles (``--impl`` repeated,
``-k narrow_`` keeps the tests that take an implementation) under the ``ci`` profile, capped at a
few examples per property (``--max-examples-cap``): what matters here is that no property calls
an implementation outside what it declared or blames it for a case it refused, which shows in
the first examples; the full runs of the properties are the suite's own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from suites.implementations import Capabilities, ReferenceImplementation
from suites.mutation.runner import ROOT
from suites.narrow_implementations import PROFILES

EQ = "suites/equivalence"
#: Examples per property in this pass.
CAP = 3
#: Property files whose shape-less capability checks are not yet converted (their calls of
#: `skip_outside` pass no ``shapes``): deselected until they pass the shapes they use.
PENDING_SHAPES: tuple[str, ...] = ()

_SKIP_LINE = re.compile(r"^SKIPPED \[\d+\] (?P<where>[^:]+:\d+): (?P<reason>.*)$")


@pytest.fixture(scope="module")
def narrow_run() -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pytest", EQ, "-q", "-p", "no:cacheprovider", "--benchmark-disable", "-rsfExp",
           "-k", "narrow_", "--max-examples-cap", str(CAP)]
    for profile in PROFILES:
        cmd += ["--impl", f"suites.narrow_implementations:{profile.__name__}"]
    for path in PENDING_SHAPES:
        cmd += ["--deselect", path]
    env = {**os.environ, "HYPOTHESIS_PROFILE": "ci", "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)


def test_every_property_passes_or_skips_for_every_narrow_profile(narrow_run: subprocess.CompletedProcess[str]) -> None:
    """0 failures and 0 errors (an implementation raising counts as one) over every profile."""
    out = narrow_run.stdout
    assert narrow_run.returncode == 0, f"a false alarm on a correct narrow implementation\n{out[-8000:]}\n{narrow_run.stderr[-2000:]}"
    summary = out.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary


def test_every_profile_runs_some_property(narrow_run: subprocess.CompletedProcess[str]) -> None:
    """Each profile is exercised, not skipped whole: some property passes on it."""
    passed = [line for line in narrow_run.stdout.splitlines() if line.startswith("PASSED ")]
    for profile in PROFILES:
        assert any(f"[{profile.name}" in line for line in passed), f"{profile.name}: no property ran"


def test_every_skip_names_its_reason(narrow_run: subprocess.CompletedProcess[str]) -> None:
    """Every skip says why: the implementation's name and what it does not support (or the
    property's own precondition), never Hypothesis' bare "Unable to satisfy assumptions"."""
    skips = [m for line in narrow_run.stdout.splitlines() if (m := _SKIP_LINE.match(line))]
    assert skips, narrow_run.stdout[-3000:]
    names = tuple(p.name for p in PROFILES)
    for m in skips:
        reason = m.group("reason")
        assert "Unable to satisfy" not in reason and "Unsatisfiable" not in reason, m.group(0)
        precondition = "faiss" in reason or reason.startswith("needs a CUDA device")  # the property's own, named
        assert reason.startswith(names) or precondition, f"skip without a named reason: {m.group(0)}"


class _NoSibling(ReferenceImplementation):
    """Accepts the leak property's configurations but none of their one-knob siblings: position
    basis with chebyshev distances, integer coordinates, offset slots, a kernel_size, every
    candidate."""

    name = "no_sibling"
    capabilities = Capabilities(
        forms=("image",), bases=("position",), metrics=("chebyshev",), coordinates=("integer",), candidates=("all",),
        slot_orders=("offset",), dtypes=("float64",), devices=("cpu",),
        check=lambda config, shapes: None if config.kernel_size is not None else "needs a kernel_size",
    )


def test_a_property_whose_second_configuration_is_always_refused_is_skipped() -> None:
    """The leak property checks a configuration, then its sibling: an example counts as accepted
    only when both are within the capabilities, so an implementation that admits no sibling gets
    a skip naming the reason, not Hypothesis' "Unable to satisfy assumptions"."""
    from suites.equivalence import test_invariants
    from suites.equivalence._common import capability_filtering
    from suites.strategies import steering

    impl = _NoSibling()
    with pytest.raises(pytest.skip.Exception) as info:
        with steering(impl.capabilities), capability_filtering(impl.name, 40):
            test_invariants.test_calls_do_not_leak_into_each_other(impl=impl, device="cpu")
    assert str(info.value.msg).startswith("no_sibling: no example within its capabilities ("), info.value.msg


def test_every_skip_outside_call_passes_shapes() -> None:
    """Every `skip_outside` call in the property files passes the ``shapes`` it will use (a
    shape-aware ``check`` must never see a case without them); files listed in
    `PENDING_SHAPES` excepted (and deselected from the narrow run) until they do."""
    import ast

    missing: list[str] = []
    for path in sorted((ROOT / EQ).glob("test_*.py")):
        rel = path.relative_to(ROOT).as_posix()
        calls = [n for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "skip_outside"]
        without = [f"{rel}:{n.lineno}" for n in calls if not any(kw.arg == "shapes" for kw in n.keywords)]
        if rel in PENDING_SHAPES:
            assert without, f"{rel} passes shapes everywhere now: remove it from PENDING_SHAPES"
        else:
            missing += without
    assert not missing, f"skip_outside calls without shapes: {missing}"
