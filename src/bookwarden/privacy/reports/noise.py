"""Differential-privacy noise for publisher reports, from OpenDP.

The released vector is every published cell's patron count followed by its loan count. Before
noise, each patron's part in it is bounded (publisher_reports.py): at most `max_cells` cells per
patron in one report, at most `max_loans` of their loans counted in one cell. Adding or removing
one patron then moves the vector by at most max_cells * (1 + max_loans) in L1 distance: one per
cell in the patron counts, `max_loans` per cell in the loan counts. That bound is the sensitivity
(`d_in`) OpenDP's privacy map turns into epsilon.

The mechanism is OpenDP's Laplace measurement on integers, which is the discrete Laplace
(two-sided geometric) mechanism: exact integer sampling, no floating-point side channel. The
epsilon recorded and debited is the one the measurement's own privacy map gives for `d_in`, never
the number asked for: OpenDP rounds conservatively, so the two may differ in the last bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

MECHANISM = "discrete_laplace"
MECHANISM_NONE = "none"


@cache
def _dp() -> Any:
    # Imported on first use: OpenDP loads a native library that only noised reports need.
    import opendp.prelude as dp

    # The Laplace measurement on integers is in OpenDP's "contrib" set (vetted code, not yet proven).
    dp.enable_features("contrib")
    return dp


def sensitivity(max_cells: int, max_loans: int) -> int:
    """L1 sensitivity of (patron counts, loan counts) when one patron is added or removed."""
    return max_cells * (1 + max_loans)


def measurement(scale: float) -> Any:
    """OpenDP's discrete Laplace measurement on a vector of integer counts, at `scale`."""
    dp = _dp()
    space = dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int)
    return space >> dp.m.then_laplace(scale=scale)


@dataclass(frozen=True)
class Mechanism:
    scale: float
    d_in: int
    epsilon: float  # from the measurement's privacy map at d_in
    _measurement: Any

    def release(self, counts: list[int]) -> list[int]:
        return list(self._measurement(counts)) if counts else []


def build(epsilon: float, d_in: int) -> Mechanism:
    """The mechanism spending at most `epsilon` for a vector of sensitivity `d_in`."""
    scale = d_in / epsilon
    built = measurement(scale)
    if built.map(d_in) > epsilon:
        # Rounding took it a hair over: search for the smallest scale whose map stays within epsilon.
        scale = _dp().binary_search_param(measurement, d_in=d_in, d_out=epsilon)
        built = measurement(scale)
    spent = float(built.map(d_in))
    if spent > epsilon:  # the map is what is debited: it must never exceed what was asked
        raise RuntimeError(f"OpenDP's map gives epsilon {spent!r} for a request of {epsilon!r}")
    return Mechanism(scale=scale, d_in=d_in, epsilon=spent, _measurement=built)
