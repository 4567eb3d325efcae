"""The conformance runner (`suites.conformance`) on the deliberately faulty implementations of
`suites.faulty_implementations`, with the four small properties of `suites/conformance/smoke.py`.

One runner invocation (the module fixture) runs every implementation, two at a time; the tests
read what it wrote. Resume and the settings check run on copies of its output.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from suites import tolerance
from suites.conformance import cli, failures, records, report
from suites.conformance.runner import ROOT

SMOKE = "suites/conformance/smoke.py"
FAULTY = "suites.faulty_implementations"
TIMEOUT_S = 10
CONV2D, CONV1D, DENSE, TIES = "test_conv2d_padded", "test_conv1d_unpadded", "test_attention_dense", "test_attention_ties"
ALL = (CONV2D, CONV1D, DENSE, TIES)

#: name -> (--impl spec, {property: (status, kind)}); properties not listed must pass. WrongShape,
#: NaNOutput and OutOfMemory are left out to keep this file within its CI budget (each
#: implementation costs a pytest process); `test_failure_kind_of_the_suites_messages` covers how
#: their failures are told apart.
EXPECTED: dict[str, tuple[str, dict[str, tuple[str, str | None]]]] = {
    "reference": ("reference", {}),
    "torch-ops": ("torch-ops", {TIES: ("skipped", None)}),
    "flipped-taps": (f"{FAULTY}:FlippedTaps", {CONV2D: ("failed", "mismatch"), CONV1D: ("failed", "mismatch")}),
    "off-by-one-padding": (f"{FAULTY}:OffByOnePadding", {CONV2D: ("failed", "mismatch")}),
    "wrong-softmax-axis": (f"{FAULTY}:WrongSoftmaxAxis", {DENSE: ("failed", "mismatch")}),
    "wrong-tie-rule": (f"{FAULTY}:WrongTieRule", {TIES: ("failed", "mismatch")}),
    "raises": (f"{FAULTY}:Raises", {p: ("failed", "raised") for p in ALL}),
    "hangs": (f"{FAULTY}:Hangs", {DENSE: ("timeout", None)}),
    "segfaults": (f"{FAULTY}:Segfaults", {CONV2D: ("crashed", None)}),
    "wrong-dtype": (f"{FAULTY}:WrongDtype", {CONV2D: ("failed", "dtype"), CONV1D: ("failed", "dtype")}),
}
WRONG_VALUES = ("flipped-taps", "off-by-one-padding", "wrong-softmax-axis", "wrong-tie-rule")


#: pytest options of the runs: no assertion rewriting (the properties raise their own messages;
#: rewriting costs each pytest process about two seconds of CPU).
PYTEST_ARGS = ("--", "--assert=plain")


def _run(out: Path, *specs: str, extra: tuple[str, ...] = ()) -> int:
    args = ["--out", str(out), "--properties", SMOKE, "--timeout", str(TIMEOUT_S), "--hypothesis-profile", "ci", "--no-modes"]
    for spec in specs:
        args += ["--impl", spec]
    return cli.main([*args, *extra, *PYTEST_ARGS])


def _matrix(directory: Path) -> dict[str, dict[str, str]]:
    """matrix.csv rows by property name (the test function's name)."""
    with open(directory / "matrix.csv", encoding="utf-8") as fh:
        return {row["property"].split("::")[-1]: row for row in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """Every implementation of `EXPECTED` through one runner invocation."""
    out = tmp_path_factory.mktemp("conformance")
    rc = _run(out, *(spec for spec, _ in EXPECTED.values()), extra=("--jobs", "2"))
    return out, rc


@pytest.mark.parametrize("name", list(EXPECTED))
def test_statuses_per_property(smoke_run: tuple[Path, int], name: str) -> None:
    """Each implementation's matrix gives every property the expected status and failure kind."""
    out, _ = smoke_run
    expected = EXPECTED[name][1]
    rows = _matrix(out / name)
    assert set(rows) == set(ALL), f"{name}: properties {sorted(rows)}"
    for prop in ALL:
        status, kind = expected.get(prop, ("passed", None))
        got = (rows[prop]["status"], rows[prop]["kind"] or None)
        assert got == (status, kind), f"{name} {prop}: got {got}, expected {(status, kind)}; row {rows[prop]}"


@pytest.mark.parametrize("name", WRONG_VALUES)
def test_wrong_values_come_with_counterexample_and_replay(smoke_run: tuple[Path, int], name: str) -> None:
    """A wrong value is reported with its error against the bound, the case, and a replay line
    that names the test and the implementation; the summary repeats them."""
    out, _ = smoke_run
    spec, expected = EXPECTED[name]
    rows = _matrix(out / name)
    summary = (out / name / "summary.md").read_text()
    for prop in expected:
        row = rows[prop]
        assert float(row["max_error"]) > float(row["bound"]) > 0.0
        assert "seed" in row["case"] and row["worst"].startswith("worst element")
        assert f"{prop}[{name}]" in row["replay"] and f"--impl {spec}" in row["replay"]
        assert int(row["examples"]) >= 1
        assert f"### `smoke.py::{prop}`: failed (mismatch)" in summary
        assert row["replay"] in summary


def test_reference_and_skips(smoke_run: tuple[Path, int]) -> None:
    """The reference passes everything, with its measured errors; torch-ops skips what it does not
    declare, with the reason."""
    out, _ = smoke_run
    assert "**Every applicable property holds** (4 passed" in (out / "reference" / "summary.md").read_text()
    for prop, row in _matrix(out / "reference").items():  # passes report their worst error too
        assert 0.0 <= float(row["max_error"]) <= float(row["bound"]), f"{prop}: {row}"
    ties = _matrix(out / "torch-ops")[TIES]
    assert ties["reason"] == "torch-ops: SDPA covers only scaled_dot + softmax + sum"
    assert "| torch-ops: SDPA covers only scaled_dot + softmax + sum | 1 |" in (out / "torch-ops" / "summary.md").read_text()


def test_hang_is_a_timeout_and_the_run_goes_on(smoke_run: tuple[Path, int]) -> None:
    """The hanging case is stopped at the per-case limit; the next properties still run."""
    out, _ = smoke_run
    rows = _matrix(out / "hangs")
    assert rows[DENSE]["status"] == "timeout"
    assert float(rows[DENSE]["duration_s"]) < TIMEOUT_S + 5
    assert f"{DENSE}[hangs]" in rows[DENSE]["replay"] and "--impl suites.faulty_implementations:Hangs" in rows[DENSE]["replay"]
    assert rows[TIES]["status"] == "passed"  # runs after the hang


def test_segfault_is_recorded_and_the_run_resumes(smoke_run: tuple[Path, int]) -> None:
    """A SIGSEGV kills the pytest process; the runner records the test as crashed with the
    process' last output and finishes the other properties in a new process."""
    out, _ = smoke_run
    log = records.read(out / "segfaults" / "results.jsonl")
    crashed = [r for r in log if r.get("status") == "crashed"]
    assert [r["nodeid"].split("::")[-1] for r in crashed] == [f"{CONV2D}[segfaults]"]
    assert "SIGSEGV" in crashed[0]["reason"] and "Segmentation fault" in crashed[0]["message"]
    assert "in convnn" in crashed[0]["message"]  # faulthandler's stack names the implementation's frame
    assert crashed[0]["replay"].endswith("--impl suites.faulty_implementations:Segfaults")
    assert sum(r["event"] == "session" for r in log) == 2
    assert "crashed" in (out / "segfaults" / "summary.md").read_text()


def test_comparison_and_exit_status(smoke_run: tuple[Path, int]) -> None:
    """Two or more implementations give comparison.md, one column each; failures exit 1."""
    out, rc = smoke_run
    text = (out / "comparison.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| property"))
    assert header.count("|") == len(EXPECTED) + 2
    assert all(f"`{name}`" in header for name in EXPECTED)
    assert "**crashed**" in text and "**timeout**" in text and "skipped [1]" in text
    assert rc == 1


def test_rerun_of_a_complete_run_redoes_nothing(smoke_run: tuple[Path, int], tmp_path: Path) -> None:
    """The same command again only rebuilds the reports."""
    out, _ = smoke_run
    shutil.copytree(out / "reference", tmp_path / "reference")
    before = (tmp_path / "reference" / "results.jsonl").read_text()
    assert _run(tmp_path, "reference") == 0
    assert (tmp_path / "reference" / "results.jsonl").read_text() == before


def test_interrupted_run_resumes_where_it_stopped(smoke_run: tuple[Path, int], tmp_path: Path) -> None:
    """A log cut after the first finished test (as if the runner had been killed) resumes with the
    other tests only, and ends with the same statuses."""
    out, _ = smoke_run
    name, (spec, _) = "off-by-one-padding", EXPECTED["off-by-one-padding"]
    lines = (out / name / "results.jsonl").read_text().splitlines()
    first_finish = next(i for i, line in enumerate(lines) if json.loads(line)["event"] == "finish")
    (tmp_path / name).mkdir()
    (tmp_path / name / "results.jsonl").write_text("\n".join(lines[: first_finish + 1]) + "\n")
    first = json.loads(lines[first_finish])["nodeid"]
    assert _run(tmp_path, spec) == 1
    log = records.read(tmp_path / name / "results.jsonl")
    assert sum(r["event"] == "start" and r["nodeid"] == first for r in log) == 1
    assert {p: r["status"] for p, r in _matrix(tmp_path / name).items()} == {p: r["status"] for p, r in _matrix(out / name).items()}


def test_resume_with_other_settings_is_refused(smoke_run: tuple[Path, int], tmp_path: Path) -> None:
    """Mixing two runs' settings in one log is an error that points at --fresh."""
    out, _ = smoke_run
    shutil.copytree(out / "reference", tmp_path / "reference")
    args = ["--out", str(tmp_path), "--properties", SMOKE, "--impl", "reference", "--timeout", "99", *PYTEST_ARGS]
    assert cli.main(args) == cli.COULD_NOT_RUN


# ----------------------------------------------------------------------------- no subprocess


def test_parse_message_reads_the_suites_failure_message() -> None:
    """The fields of a message made by suites.tolerance come back out of its text."""
    gold = torch.zeros(2, 3, dtype=torch.float64)
    cand = gold.clone()
    cand[1, 2] = 0.5
    with pytest.raises(AssertionError) as info:
        tolerance.check("prop_x", cand, gold, gold, dtype=torch.float64, reduction=4, case={"seed": 17})
    fields = failures.parse_message(str(info.value))
    assert fields["property"] == "prop_x" and fields["what"] == "output differs from gold"
    assert fields["max_error"] == 0.5 and fields["base_error"] == 0.0 and fields["bound"] > 0
    assert fields["worst"].startswith("worst element at index (1, 2)")
    assert fields["seed"] == 17 and "python -m pytest" in fields["replay"]
    assert failures.failure_kind("AssertionError", str(info.value)) == "mismatch"


def _message(cand: torch.Tensor) -> str:
    gold = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(AssertionError) as info:
        tolerance.check("p", cand, gold, gold, dtype=torch.float64, reduction=1, case=None)
    return str(info.value)


def test_failure_kind_of_the_suites_messages() -> None:
    """Failures are told apart by the exception type and the suite's headline: a wrong shape, a
    NaN, a selection, out of memory, an exception of the implementation."""
    assert failures.failure_kind("AssertionError", _message(torch.zeros(2, 4, dtype=torch.float64))) == "shape"
    assert failures.failure_kind("AssertionError", _message(torch.full((2, 3), float("nan"), dtype=torch.float64))) == "nan"
    assert failures.failure_kind("AssertionError", _message(torch.zeros(2, 3, dtype=torch.float32))) == "dtype"
    selection = tolerance.describe("p", None, "selected set differs from the top-k on an unambiguous row", [], kind="selection")
    assert failures.failure_kind("AssertionError", selection) == "selection"
    bitwise = tolerance.describe("p", None, "output: not bitwise equal", [], kind="mismatch")
    assert failures.failure_kind("AssertionError", bitwise) == "mismatch"  # the message's kind line, not its words
    assert failures.failure_kind("OutOfMemoryError", "CUDA out of memory") == "oom"
    assert failures.failure_kind("RuntimeError", "no kernel image") == "raised"
    assert failures.failure_kind("Failed", "DID NOT RAISE <class 'ValueError'>") == "no-error"


def test_log_survives_a_torn_line_and_finds_the_unfinished_test(tmp_path: Path) -> None:
    """A crash mid-write leaves a partial last line: it is ignored, and the test started in the
    latest session without a finish is the one that was running."""
    log = tmp_path / "results.jsonl"
    for rec in (
        {"event": "session"},
        {"event": "collected", "nodeids": ["a", "b", "c"]},
        {"event": "start", "nodeid": "a"},
        {"event": "finish", "nodeid": "a", "status": "passed"},
        {"event": "start", "nodeid": "b"},
    ):
        records.append(log, rec)
    with open(log, "a") as fh:
        fh.write('{"event": "finish", "nodeid": "b", "sta')
    state = records.summarize(records.read(log))
    assert state.unfinished == ["b"] and state.remaining() == ["b", "c"] and not state.complete
    rows = report.load(tmp_path).rows
    assert [r["status"] for r in rows] == ["passed", "not run", "not run"]


def test_runner_internals_are_not_collected(pytestconfig: pytest.Config) -> None:
    """``pytest suites`` never collects the faulty implementations or the runner's modules."""
    patterns = pytestconfig.getini("python_files")
    internal = [ROOT / "suites" / "faulty_implementations.py", *(ROOT / "suites" / "conformance").glob("*.py")]
    assert len(internal) > 5
    for path in internal:
        assert not any(fnmatch.fnmatch(path.name, p) for p in patterns), path


def test_replay_line_keeps_the_impl_options_before_the_comment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside the ci profile the replay line ends in a comment; the --impl options come before it."""
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "dev")
    monkeypatch.setattr(tolerance, "_replay_options", ["--impl", "pkg.mod:Impl"])
    line = tolerance.replay_command()
    command, _, comment = line.partition("#")
    assert "--impl pkg.mod:Impl" in command and "not derandomized" in comment
    assert failures.parse_message(f"  replay: {line}")["replay"] == line


def test_failure_modes_are_searched_one_knob_at_a_time(tmp_path: Path) -> None:
    """A property failing for one similarity only is searched again per similarity: the report
    says which values fail (each with its own counterexample) and which pass."""
    spec = f"{FAULTY}:EuclideanAsDot"
    args = [
        "--out", str(tmp_path), "--impl", spec, "--properties", "suites/equivalence/test_oracle.py",
        "-k", "test_attention_form_vs_oracle", "--timeout", "120", "--hypothesis-profile", "ci", *PYTEST_ARGS,
    ]
    assert cli.main(args) == 1
    rows = report.load(tmp_path / "euclidean-as-dot").rows
    (row,) = [r for r in rows if r["status"] == "failed"]
    modes = {m["pin"]: m for m in row["modes"]}
    assert modes["similarity=euclidean"]["status"] == "failed", modes
    assert all(modes[f"similarity={s}"]["status"] == "passed" for s in ("cosine", "dot", "scaled_dot")), modes
    assert "similarity=euclidean" in (tmp_path / "euclidean-as-dot" / "summary.md").read_text()


ADAPTER = '''
import dataclasses

import torch

from suites.implementations import ReferenceImplementation


class Noisy(ReferenceImplementation):
    """The reference plus noise from torch's global RNG (against the contract)."""

    name = "noisy-adapter"
    capabilities = dataclasses.replace(ReferenceImplementation.capabilities, options=())

    def attention(self, q, k, v, config, *, allowed=None, generator=None):
        y = super().attention(q, k, v, config, allowed=allowed, generator=generator)
        return y + 1e-3 * torch.randn(y.shape, dtype=y.dtype)
'''


def test_replay_line_reproduces_an_out_of_tree_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An adapter in the user's own directory, drawing from the global RNG: the conformance run
    finds a failure, and its replay line, run from that directory, fails again on the same case."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "my_adapter.py").write_text(ADAPTER, encoding="utf-8")
    monkeypatch.chdir(project)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    args = [
        "--out", str(tmp_path / "out"), "--impl", "my_adapter:Noisy", "--properties", "suites/equivalence/test_attention.py",
        "-k", "test_sdpa_exact", "--timeout", "120", "--no-modes", *PYTEST_ARGS,
    ]
    assert cli.main(args) == 1
    (row,) = [r for r in report.load(tmp_path / "out" / "noisy-adapter").rows if r["status"] == "failed"]
    replay = row["replay"]
    assert "--impl my_adapter:Noisy" in replay and "-p suites.pytest_plugin" in replay and "PYTHONPATH=" in replay, replay
    command = replay.replace(" python -m pytest ", f" {sys.executable} -m pytest ", 1)  # this environment's python
    proc = subprocess.run(command, shell=True, cwd=project, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert f"case: {row['case']}" in proc.stdout, (row["case"], proc.stdout[-3000:])
