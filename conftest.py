"""The suite's pytest setup lives in `suites.pytest_plugin` (Hypothesis profiles, ``--impl``, the
implementation fixture, capability steering); this file only loads it for runs from the
repository's root. Tests live in suites/."""

pytest_plugins = ("suites.pytest_plugin",)
