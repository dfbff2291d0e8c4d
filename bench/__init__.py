"""Benchmarks: `python -m bench NAME [--quick]`, `python -m bench --list`.

A benchmark is a module `bench/<name>.py` with `run(quick: bool) -> Iterator[dict]`; each dict
it yields becomes one JSON line on stdout and the last one is its summary (see harness.summary).
Modules without a `run` (the harness, data generators) are helpers, not benchmarks.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any

BenchFn = Callable[[bool], Iterator[dict[str, Any]]]


class UnknownBench(LookupError):
    pass


def names() -> list[str]:
    """Every registered benchmark, sorted."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        if callable(getattr(importlib.import_module(f"{__name__}.{info.name}"), "run", None)):
            found.append(info.name)
    return sorted(found)


def load(name: str) -> BenchFn:
    # Check against the registry first so a name like "harness" or "../x" never imports as a bench.
    if name not in names():
        raise UnknownBench(name)
    return importlib.import_module(f"{__name__}.{name}").run
