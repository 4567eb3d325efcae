"""Benchmark reports: pytest-benchmark JSON files (one or many hosts) → one tidy DataFrame →
CSV, a Markdown summary with ratios to the baselines, matplotlib figures and one
self-contained HTML page. Reads files only; needs pandas and matplotlib, not torch."""
