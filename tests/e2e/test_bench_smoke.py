"""Every registered benchmark runs end to end with --quick and keeps its output contract:
stdout is JSON lines only, and the last line is a summary with positive numbers.

Each runs in its own process, as `python -m bench` does. All but the first of a shard use this test
run's PostgreSQL (the harness's BOOKWARDEN_BENCH_DATABASE_URL) instead of starting one of their own:
starting and stopping a server is the same code for every benchmark, so one per shard exercises it.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import harness

ROOT = Path(__file__).resolve().parents[2]
SUMMARY_KEYS = ("bench", "metric", "value", "baseline", "ratio", "unit")
# A quick run takes ~15-20 s on a two-core machine, a few times that when other tests run beside it (the
# backup bench's went past two minutes so): the limit only stops a hang.
QUICK_TIMEOUT_S = 300
# Benchmarks whose --quick run is too long for this smoke run, with why (each is run by hand and reported).
LEFT_OUT = {
    # Two servers started (serve --workers 2 and the baseline), 10 s of Locust against each: about 70 s.
    "api_load",
    # The demo's seeding and three VACUUM FULL passes over both databases, then sign-ins: about 60 s.
    "tenant_cost",
}


# The registry in parts that pytest-xdist runs side by side (one test over all would be the suite's longest).
SHARDS = 4


def _bench(*args: str, timeout: float = 60, server: str | None = None) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ)
    environ.pop(harness.DATABASE_URL_ENV, None)
    if server is not None:
        environ[harness.DATABASE_URL_ENV] = server
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@functools.cache  # once per test process: listing imports every benchmark
def _names() -> tuple[str, ...]:
    listed = _bench("--list")
    assert listed.returncode == 0, listed.stderr
    return tuple(listed.stdout.split())


def test_some_benchmark_is_registered():
    assert "isolation_overhead" in _names()


def test_unknown_benchmark_is_a_usage_error():
    result = _bench("no_such_bench", "--quick")
    assert result.returncode == 2
    assert "no_such_bench" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("shard", range(SHARDS))
def test_every_quick_run_prints_json_lines_ending_in_a_summary(shard, admin_url):
    # Shards, not one test per name: listing the registry imports every benchmark (Locust among them),
    # which would slow the collection of every test run.
    names = [name for name in _names() if name not in LEFT_OUT][shard::SHARDS]
    assert names, f"shard {shard} of {SHARDS} has no benchmark: fewer shards"
    # The benchmarks' roles take a password of their own master key: only a server that trusts its
    # local connections (the embedded one) is shared; a configured one is left alone.
    shared = None if os.environ.get("BOOKWARDEN_TEST_DATABASE_URL") else admin_url.render_as_string(hide_password=False)
    for n, name in enumerate(names):
        _check_quick_run(name, server=shared if n else None)


def _check_quick_run(name: str, server: str | None) -> None:
    result = _bench(name, "--quick", timeout=QUICK_TIMEOUT_S, server=server)
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
