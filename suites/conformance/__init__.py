"""Conformance reports for implementations under test (issue: third-party implementations).

``python -m suites.conformance --impl SPEC [--impl SPEC ...] --out reports/conformance`` runs the
equivalence properties that apply to each implementation in a pytest subprocess and writes
``<out>/<name>/results.jsonl``, ``matrix.csv`` and ``summary.md`` (and ``<out>/comparison.md``
for two or more). Modules, one job each:

- `plugin`: the pytest plugin that logs every test's start and finish as JSON lines;
- `records`: reading and folding that log;
- `failures`: the fields of the suite's failure messages, the kind of a failure;
- `runner`: the subprocess loop (crashes, hangs, resume);
- `report`: the Markdown and CSV reports;
- `cli` (``__main__``): the command line.

Docs: docs/testing-your-implementation.md.
"""
