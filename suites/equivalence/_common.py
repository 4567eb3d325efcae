"""Helpers shared by the property files: devices, dtypes, capability filtering, PyTorch
baselines and gradients."""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume
from hypothesis.control import current_build_context, currently_in_test_context
from hypothesis.errors import Unsatisfiable

from convnn_ref.config import ConvNNConfig
from suites import tolerance
from suites.implementations import LOWEST_INDEX, Implementation, Shapes
from suites.pytest_plugin import reseed_global_rngs
from suites.strategies import DTYPES, ConvCase, GeneralCase, steered_dtypes
from suites.ties import image_score_gain

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])  # cpu always; cuda when present
dtypes = steered_dtypes(DTYPES)
LOW_DTYPES = (torch.float16, torch.bfloat16)
#: Capability rejections, with no example accepted yet, after which a property is skipped whole.
MAX_REJECTIONS = 200


@dataclass
class CapabilityLog:
    """One test's capability filtering: the reasons examples were rejected, and how many were
    accepted. An example counts as accepted only once it is over and no capability check of it
    refused: a property that checks two configurations (a call and its sibling) accepts an
    example only when both are within the capabilities."""

    reasons: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    #: Rejections, with no example accepted yet, after which the property is skipped whole.
    max_rejections: int = MAX_REJECTIONS
    #: The example now running (its Hypothesis build context), and whether a capability check of
    #: it passed / refused.
    current: object = None
    passed: bool = False
    refused: bool = False

    def enter(self, example: object) -> None:
        """Note a capability check of ``example``; an earlier example is settled first."""
        if example is not self.current:
            self.settle()
            self.current, self.passed, self.refused = example, False, False

    def settle(self) -> None:
        """Count the current example as accepted when a check passed and none refused."""
        if self.current is not None and self.passed and not self.refused:
            self.accepted += 1
        self.current, self.passed, self.refused = None, False, False

    def skip_reason(self, name: str) -> str:
        """The skip message: the most frequent reasons, most frequent first."""
        top = "; ".join(r for r, _ in self.reasons.most_common(3))
        return f"{name}: no example within its capabilities ({top})"


_log: ContextVar[CapabilityLog | None] = ContextVar("capability_log", default=None)


@contextmanager
def capability_filtering(name: str, max_rejections: int = MAX_REJECTIONS) -> Iterator[CapabilityLog]:
    """Scope of one test call: collects `skip_outside`'s rejections, and turns Hypothesis'
    `Unsatisfiable` (every example rejected) into a skip with the capability reasons."""
    log = CapabilityLog(max_rejections=max_rejections)
    token = _log.set(log)
    try:
        yield log
    except Unsatisfiable:
        log.settle()
        if log.accepted or not log.reasons:
            raise
        pytest.skip(log.skip_reason(name))
    finally:
        _log.reset(token)


def skip_outside(
    impl: Implementation,
    config: ConvNNConfig,
    *,
    form: str,
    dtype: torch.dtype,
    device: str,
    shapes: Shapes | None = None,
    **kw: object,
) -> None:
    """Reject an example outside the implementation's capabilities; then put the global RNGs in
    their fixed state, so that the example computes the same wherever it runs (a whole suite, a
    replay line, a ``@reproduce_failure`` blob).

    Inside ``@given`` this filters the one example (`hypothesis.assume`): the property goes on
    with the next. The whole test is skipped, with the reason, only when its fixed structure
    cannot apply (form or device) or when no example at all has been within the capabilities
    (`MAX_REJECTIONS` rejections in a row from the start, or Hypothesis found none: see
    `capability_filtering`). Outside ``@given`` it skips the test.
    """
    caps = impl.capabilities
    structural = None
    if form not in caps.forms:
        structural = f"form {form!r} not supported (supports {caps.forms})"
    elif device.split(":")[0] not in caps.devices:
        structural = f"device {device} not supported (supports {caps.devices})"
    reason = structural or caps.reason(config, form=form, dtype=dtype, device=device, shapes=shapes, **kw)  # type: ignore[arg-type]
    if structural is not None or not currently_in_test_context():
        if reason is not None:
            pytest.skip(f"{impl.name}: {reason}")
    else:
        reject(impl, reason)
    reseed_global_rngs()


def reject(impl: Implementation, reason: str | None) -> None:
    """Filter the current example out when ``reason`` is not None, counting the reason (see
    `skip_outside`); a no-op for None."""
    log = _log.get()
    if log is not None and currently_in_test_context():
        log.enter(current_build_context())
    if reason is None:
        if log is not None:
            log.passed = True
        return
    if log is not None:
        log.refused = True
        log.reasons[reason.split(":", 1)[0]] += 1
        if not log.accepted and log.reasons.total() >= log.max_rejections:
            pytest.skip(log.skip_reason(impl.name))
    assume(False)


#: Error-convention findings of the current test (see `expect_named_error`).
_conventions: ContextVar[list[str] | None] = ContextVar("conventions", default=None)


@contextmanager
def convention_log() -> Iterator[list[str]]:
    """Scope of one test call: collects `expect_named_error`'s error-convention findings (the
    plugin turns them into an xfail with the first one as its reason)."""
    found: list[str] = []
    token = _conventions.set(found)
    try:
        yield found
    finally:
        _conventions.reset(token)


def expect_named_error(
    impl: Implementation,
    prop: str,
    call: Callable[[], object],
    errors: type[Exception] | tuple[type[Exception], ...],
    names: str,
    *,
    case: object = None,
) -> None:
    """``call()`` must refuse its invalid input with one of ``errors`` whose message matches the
    regex ``names`` (the argument and the constraint). Accepting the input fails (kind
    ``no-error``). Refusing it with another exception, or a message that names nothing, is an
    *error convention* finding: a failure for implementations that declare ``named_errors``,
    otherwise recorded and reported apart (xfailed) without hiding any other verdict."""
    try:
        call()
    except errors as exc:
        if re.search(names, str(exc)):
            return
        detail = f"raised {type(exc).__name__} whose message does not match {names!r}: {str(exc)[:200]}"
    except Exception as exc:  # the implementation's own error
        wanted = " or ".join(e.__name__ for e in (errors if isinstance(errors, tuple) else (errors,)))
        detail = f"raised {type(exc).__name__} ({str(exc)[:200]}) where the contract asks for {wanted} matching {names!r}"
    else:
        raise AssertionError(tolerance.describe(prop, case, "invalid input accepted", [], kind="no-error"))
    if impl.capabilities.named_errors:
        raise AssertionError(tolerance.describe(prop, case, "invalid input refused with another error", [detail], kind="error-convention"))
    found = _conventions.get()
    if found is None:
        pytest.xfail(f"error convention: {impl.name} {detail}")
    found.append(f"error convention: {impl.name} {detail}")


def claims_tie_rule(impl: Implementation) -> bool:
    """The implementation declares the canonical tie rule (lower index first)."""
    return impl.capabilities.tie_rule == LOWEST_INDEX


def require_tie_rule(impl: Implementation) -> None:
    """Tie properties hold only implementations that declare the canonical rule to it."""
    if not claims_tie_rule(impl):
        pytest.skip(f"{impl.name}: does not declare the canonical tie rule (tie_rule={impl.capabilities.tie_rule!r})")


def options(impl: Implementation, **values: object) -> dict[str, object]:
    """The keyword options of a call the implementation declares (``capabilities.options``);
    None values are left out."""
    return {k: v for k, v in values.items() if v is not None and k in impl.capabilities.options}


def torch_conv(case: ConvCase, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.conv{1,2,3}d`` of the case, in the tensors' dtype and device."""
    conv = (F.conv1d, F.conv2d, F.conv3d)[case.dims - 1]
    with warnings.catch_warnings():  # 'same' with even kernels: PyTorch warns about a padded copy
        warnings.simplefilter("ignore", UserWarning)
        return conv(
            x, weight, bias, stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups
        )


def promote(tensors: Mapping[str, torch.Tensor | None]) -> dict[str, torch.Tensor | None]:
    """float64 CPU copies (gold inputs: the test-dtype values, promoted)."""
    return {n: None if t is None else t.detach().to("cpu", torch.float64) for n, t in tensors.items()}


def unmoved_score_gain(case: GeneralCase, tensors: Mapping[str, torch.Tensor | None]) -> float:
    """The floor's score gain (`suites.tolerance.floor`) for a property with a perturbed gold: the
    perturbation moves the inputs but not the coordinates an implementation computes itself, so
    the gain counts only when the scores mix such coordinates in (0 otherwise)."""
    if not case.computed_unit_terms:
        return 0.0
    return image_score_gain(tensors["x"], case.config, generator=case.generator())  # type: ignore[arg-type]


def gold_pair(
    fn: Callable[..., torch.Tensor], tensors: Mapping[str, torch.Tensor | None], seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``fn`` on the promoted inputs (gold) and on the promoted inputs perturbed by a few ulps
    (`suites.tolerance.perturb`): what float64 rounding alone may cost on this input."""
    with torch.no_grad():
        return fn(**promote(tensors)), fn(**tolerance.perturb(tensors, seed))


def with_grads(
    fn: Callable[..., torch.Tensor], tensors: Mapping[str, torch.Tensor | None], seed: int, dtype: torch.dtype,
    *, requires_grad: tuple[str, ...] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
    """Run ``fn(**tensors)`` with every tensor requiring grad, backpropagate a seeded random
    cotangent (drawn in float64, rounded to the test ``dtype``, then cast to the output's dtype,
    so gold and cand see the same values). Returns the output and the gradients by name."""
    wanted = tensors.keys() if requires_grad is None else requires_grad
    leaves = {n: None if t is None else t.detach().clone().requires_grad_(n in wanted) for n, t in tensors.items()}
    out = fn(**leaves)
    g = torch.Generator().manual_seed(seed + 11)
    cot = torch.randn(out.shape, generator=g, dtype=torch.float64).to(dtype).to(out.dtype).to(out.device)
    out.backward(cot)
    return out.detach(), {n: None if t is None or n not in wanted else t.grad for n, t in leaves.items()}


def image_shapes(x: torch.Tensor) -> Shapes:
    """The `Shapes` of an image-form input ``(B, C, *S)`` as it is (a malformed one included:
    missing axes read as 1), for `skip_outside`."""
    dims = tuple(x.shape)
    batch = dims[0] if len(dims) > 0 else 1
    channels = dims[1] if len(dims) > 1 else 1
    return Shapes(form="image", batch=batch, channels=channels, spatial=dims[2:] or (1,))


def attention_shapes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> Shapes:
    """The `Shapes` of a sequence-form call ``q (B, Nq, D)``, ``k (B, Nk, D)``, ``v (B, Nk, Dv)``
    as given (missing axes read as 1), for `skip_outside`."""

    def axis(t: torch.Tensor, i: int) -> int:
        return t.shape[i] if t.dim() > i else 1

    return Shapes(
        form="attention", batch=axis(q, 0), nq=axis(q, 1), nk=axis(k, 1), dim=axis(q, 2), vdim=axis(v, 2),
        self_attention=q is k,
    )
