"""Reading a failed test: the fields the equivalence suite's messages carry (`suites.tolerance`:
``[property] what``, the errors and bound, the worst element, ``case: ...``, ``replay: ...``)
and what kind of failure it was.

Everything here works on text, so a message from another suite simply yields fewer fields.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_FLOAT = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|inf|nan)"
_HEAD = re.compile(r"^\[(?P<property>[^\]\n]+)\] (?P<what>[^\n]*)", re.MULTILINE)
_ERRORS = re.compile(
    rf"cand error (?P<cand>{_FLOAT}) > bound (?P<bound>{_FLOAT}) = {_FLOAT} \* base error (?P<base>{_FLOAT})"
    rf" \+ floor (?P<floor>{_FLOAT})"
)
_WORST = re.compile(r"^\s*((?:worst|first)\b[^\n]*)$", re.MULTILINE)
_CASE = re.compile(r"^\s*case: (?P<case>[^\n]*)$", re.MULTILINE)
_KIND = re.compile(r"^\s*kind: (?P<kind>[a-z-]+)\s*$", re.MULTILINE)
_REPLAY = re.compile(r"^\s*replay: (?P<replay>[^\n]*)$", re.MULTILINE)
_SEED = re.compile(r"\bseed['\"]?\s*[=:]\s*(?P<seed>\d+)")
_BLOB = re.compile(r"@reproduce_failure\([^)\n]*\)")
_FALSIFYING = re.compile(r"^Falsifying (?:explicit )?example:.*?(?=^\S|\Z)", re.MULTILINE | re.DOTALL)

#: Words in an assertion's headline and the kind of failure they mean, first match wins.
_KINDS = (
    (r"\bshapes?\b", "shape"),
    (r"\bdtypes?\b", "dtype"),
    (r"\bnan\b", "nan"),
    (r"\bbitwise\b", "nondeterministic"),
    (r"\btop-\d|\bselect", "selection"),
)
#: Exception type names of a failed check (``assert``, ``pytest.fail``), not of the code under test.
CHECK_TYPES = ("AssertionError", "Failed")
#: Exception type names that mean "out of memory".
OOM_TYPES = ("MemoryError", "OutOfMemoryError")


def parse_message(text: str) -> dict[str, Any]:
    """The suite's fields found in ``text`` (a failure message or a whole traceback).

    Keys, each present only when found: property, what, max_error (cand error), base_error,
    bound, floor, worst, case, seed, replay, blob (Hypothesis' ``@reproduce_failure``),
    falsifying (Hypothesis' ``Falsifying example: ...`` block).
    """
    out: dict[str, Any] = {}
    if m := _HEAD.search(text):
        out["property"], out["what"] = m["property"], m["what"].strip()
    if m := _ERRORS.search(text):
        out["max_error"], out["base_error"] = float(m["cand"]), float(m["base"])
        out["bound"], out["floor"] = float(m["bound"]), float(m["floor"])
    if m := _KIND.search(text):
        out["kind"] = m["kind"]
    if m := _WORST.search(text):
        out["worst"] = m.group(1).strip()
    if m := _CASE.search(text):
        out["case"] = m["case"].strip()
        if s := _SEED.search(m["case"]):
            out["seed"] = int(s["seed"])
    if m := _REPLAY.search(text):
        out["replay"] = m["replay"].strip()
    if m := _BLOB.search(text):
        out["blob"] = m.group(0)
    if m := _FALSIFYING.search(text):
        out["falsifying"] = m.group(0).strip()
    return out


def failure_kind(exc_type: str, message: str) -> str:
    """One word for what went wrong: ``oom``, ``no-error`` (an expected error was not raised),
    ``raised`` (the code under test threw), or, for a failed check, ``shape``, ``dtype``,
    ``nan``, ``nondeterministic``, ``selection`` or ``mismatch`` (values beyond the error bound)."""
    if exc_type in OOM_TYPES:
        return "oom"
    if message.startswith("DID NOT RAISE"):
        return "no-error"
    if exc_type not in CHECK_TYPES:
        return "raised"
    parsed = parse_message(message)
    if "kind" in parsed:  # the suite's messages say it themselves
        return str(parsed["kind"])
    what = parsed.get("what", message.split("\n", 1)[0])
    for pattern, kind in _KINDS:
        if re.search(pattern, what, re.IGNORECASE):
            return kind
    return "mismatch"


def replay_line(nodeid: str, specs: Sequence[str], profile: str, *, pythonpath: str | None = None) -> str:
    """A command that reruns one test alone, for failures that carry no replay line of their own
    (a timeout, a crash: the suite never got to write its message): `suites.tolerance.replay_line`."""
    from suites.tolerance import replay_line as suite_replay_line

    return suite_replay_line(nodeid, [part for s in specs for part in ("--impl", s)], profile, pythonpath=pythonpath)
