"""Project-wide pytest setup: Hypothesis profiles, the implementation-under-test option and
fixture, and the device list. Tests live in suites/."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, Verbosity, settings

# Three tiers (SPEC §5). HYPOTHESIS_PROFILE or --hypothesis-profile picks one; `dev` by default.
settings.register_profile("dev", max_examples=20, deadline=None)
settings.register_profile(
    "ci",
    max_examples=100,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "nightly",
    max_examples=1000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    verbosity=Verbosity.normal,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--impl",
        action="append",
        default=None,
        help="implementation under test: a built-in name (reference, torch-ops), an entry point, or module:object; repeatable",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Failure messages print a replay line; it must carry this run's --impl options."""
    from suites.tolerance import set_replay_options

    specs = config.getoption("--impl") or []
    set_replay_options([part for s in specs for part in ("--impl", s)])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "impl" in metafunc.fixturenames:
        specs = metafunc.config.getoption("--impl") or [os.environ.get("IMPL", "reference")]
        from suites.implementations import load_implementation

        impls = [load_implementation(s) for s in specs]
        metafunc.parametrize("impl", impls, ids=[i.name for i in impls], scope="session")


def available_devices() -> list[str]:
    """cpu always; cuda when a device is present."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
