"""The suite's pytest plugin: Hypothesis profiles, the implementation under test (``--impl``)
and its fixture, per-test capability steering and error measurement, and a fixed global RNG.

The repository's root ``conftest.py`` loads it; anywhere else (an installed convnn-ref, an
adapter in your own repository) load it by name: ``python -m pytest -p suites.pytest_plugin
--pyargs suites.equivalence --impl my_module:MyImpl``.

Profiles (``HYPOTHESIS_PROFILE`` or ``--hypothesis-profile``; ``dev`` by default):
- ``dev``: 20 examples, random;
- ``ci``: 100 examples, derandomized (the same examples on every run of the same toolchain), no
  example database, failure blobs printed: what ``make verify`` runs;
- ``nightly``: 1000 examples, random (``--hypothesis-seed`` fixes them).
``filter_too_much`` is not a health *error*: examples outside an implementation's capabilities
are filtered one by one, and a property none of whose examples fits ends as a skip with the
reason (`suites.equivalence._common`).
"""

from __future__ import annotations

import os
import random
from collections.abc import Generator, Iterator

import pytest
import torch
from hypothesis import HealthCheck, Verbosity, settings

settings.register_profile("dev", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
settings.register_profile(
    "ci",
    max_examples=100,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.register_profile(
    "nightly",
    max_examples=1000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    verbosity=Verbosity.normal,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

#: The seed of torch's and Python's global RNGs at the start of every test and every example.
GLOBAL_SEED = 0

#: The implementations of this session by spec: one instance each, shared by all their tests.
IMPLEMENTATIONS = pytest.StashKey[dict[str, object]]()

#: Errors raised by implementations' ``teardown()`` while the conformance recorder runs: it
#: reports them itself (as ``teardown-error`` records) instead of as a test error.
TEARDOWN_ERRORS = pytest.StashKey[list[tuple[str, str]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--impl",
        action="append",
        default=None,
        help="implementation under test: a built-in name (reference, torch-ops), an entry point, or module:object; repeatable",
    )
    parser.addoption(
        "--max-examples-cap",
        type=int,
        default=None,
        help="at most this many examples per property, whatever its profile or settings say (a quick pass over every property)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--max-examples-cap N``: every collected property runs at most N examples (its own
    ``@settings`` included); a property then also gives up on filtering sooner, so one whose
    examples are all outside an implementation's capabilities ends as a skip sooner."""
    cap = config.getoption("--max-examples-cap")
    if not cap:
        return
    for item in items:
        fn = getattr(item, "obj", None)
        own = getattr(fn, "_hypothesis_internal_use_settings", None)
        if own is not None and own.max_examples > cap:
            fn._hypothesis_internal_use_settings = settings(own, max_examples=cap)  # type: ignore[union-attr]


def pytest_configure(config: pytest.Config) -> None:
    """Failure messages print a replay line; it must carry this run's --impl options."""
    from suites.tolerance import set_replay_options

    specs = config.getoption("--impl") or []
    set_replay_options([part for s in specs for part in ("--impl", s)])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "impl" in metafunc.fixturenames:
        specs = metafunc.config.getoption("--impl") or [os.environ.get("IMPL", "reference")]
        from suites.implementations import load_implementation

        loaded = metafunc.config.stash.setdefault(IMPLEMENTATIONS, {})
        impls = [loaded[s] if s in loaded else loaded.setdefault(s, load_implementation(s)) for s in specs]
        ids = [str(getattr(i, "name", s)) for i, s in zip(impls, specs)]
        metafunc.parametrize("impl", impls, ids=ids, scope="session", indirect=True)


@pytest.fixture(scope="session")
def impl(request: pytest.FixtureRequest) -> Iterator[object]:
    """The implementation under test (parametrized by ``--impl``); its ``teardown()`` runs after its tests."""
    implementation = request.param
    yield implementation
    teardown = getattr(implementation, "teardown", None)
    if not callable(teardown):
        return
    try:
        teardown()
    except Exception as exc:
        if not request.config.pluginmanager.has_plugin("conformance-recorder"):
            raise
        errors = request.config.stash.setdefault(TEARDOWN_ERRORS, [])
        errors.append((str(getattr(implementation, "name", implementation)), repr(exc)))


def reseed_global_rngs() -> None:
    """Put torch's and Python's global RNGs in a fixed state: code that draws from them (against
    the contract) then draws the same in a whole run, a single test and a replayed example."""
    torch.manual_seed(GLOBAL_SEED)
    random.seed(GLOBAL_SEED)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Around every test call: fix the global RNGs, steer the strategies by the implementation's
    capabilities, turn "no example within them" into a skip, record the worst passing error
    measurement (``max_error``, ``base_error``, ``bound``, per dtype) as the test's properties,
    and report error-convention findings of an otherwise passing test as an xfail."""
    from suites import tolerance
    from suites.equivalence._common import MAX_REJECTIONS, capability_filtering, convention_log
    from suites.strategies import pin_consulted, steering

    reseed_global_rngs()
    pinned: list[bool] = []
    pin_token = pin_consulted.set(pinned)
    impl = getattr(item, "funcargs", {}).get("impl")
    caps = getattr(impl, "capabilities", None)
    name = str(getattr(impl, "name", "implementation"))
    cap = item.config.getoption("--max-examples-cap")
    limit = MAX_REJECTIONS if not cap else min(MAX_REJECTIONS, 10 * cap)  # a quick pass gives up sooner
    try:
        with steering(caps), capability_filtering(name, limit), tolerance.measuring() as measured, convention_log() as conventions:
            result = yield
    finally:
        pin_consulted.reset(pin_token)
        item.user_properties.append(("pin_consulted", bool(pinned)))
    item.user_properties.extend(measured.properties())
    if conventions:  # the test passed otherwise: report the convention finding apart
        pytest.xfail(f"{conventions[0]}" + (f" (and {len(conventions) - 1} more)" if len(conventions) > 1 else ""))
    return result
