"""Every registered benchmark runs end to end with --quick and keeps its output contract:
stdout is JSON lines only, and the last line is a summary with positive numbers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUMMARY_KEYS = ("bench", "metric", "value", "baseline", "ratio", "unit")
# A quick run takes ~15-20 s on a loaded two-core machine; the limit only stops a hang.
QUICK_TIMEOUT_S = 120
# Benchmarks whose --quick run is too long for this smoke run, with why (each is run by hand and reported).
LEFT_OUT = {
    # Two servers started (serve --workers 2 and the baseline), 10 s of Locust against each: about 70 s.
    "api_load",
    # The demo's seeding and three VACUUM FULL passes over both databases, then sign-ins: about 60 s.
    "tenant_cost",
}


def _bench(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _names() -> list[str]:
    listed = _bench("--list")
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.split()


def test_some_benchmark_is_registered():
    assert "isolation_overhead" in _names()


def test_unknown_benchmark_is_a_usage_error():
    result = _bench("no_such_bench", "--quick")
    assert result.returncode == 2
    assert "no_such_bench" in result.stderr
    assert result.stdout == ""


def test_every_quick_run_prints_json_lines_ending_in_a_summary():
    # One test over the registry (not parametrize): listing at collection time would slow every run.
    for name in _names():
        if name not in LEFT_OUT:
            _check_quick_run(name)


def _check_quick_run(name: str) -> None:
    result = _bench(name, "--quick", timeout=QUICK_TIMEOUT_S)
    assert result.returncode == 0, f"{name}: {result.stderr[-4000:]}"
    lines = result.stdout.splitlines()
    assert lines, f"{name}: no output"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"{name}: stdout line is not JSON: {line!r}")
    assert all(isinstance(p, dict) for p in parsed), name
    last = parsed[-1]
    missing = [key for key in SUMMARY_KEYS if key not in last]
    assert not missing, f"{name}: summary lacks {missing}: {last}"
    assert last["bench"] == name
    for key in ("value", "baseline", "ratio"):
        value = last[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), f"{name}: {key}={value!r}"
        assert math.isfinite(value) and value > 0, f"{name}: {key}={value!r}"
