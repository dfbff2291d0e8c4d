"""`python -m bench dsar --quick` keeps working: it seeds, exports, erases and reports both against the bare read."""

from __future__ import annotations

import json

from tests.e2e.test_bench_smoke import QUICK_TIMEOUT_S, _bench


def test_the_dsar_bench_runs_quick_and_reports_export_and_erasure():
    result = _bench("dsar", "--quick", timeout=QUICK_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-4000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    events = {line.get("event"): line for line in lines}
    summary = lines[-1]
    assert summary["bench"] == "dsar" and summary["metric"] == "export_seconds"
    assert summary["value"] > 0 and summary["baseline"] > 0 and summary["erasure_seconds"] > 0
    assert events["seeded"]["tenant_rows"] == 20_000
    assert events["export"]["records"] >= 2 * 1_000  # the activity rows and their audit events
    assert events["erasure"]["rows_erased"] > 1_000 and events["erasure"]["rows_left_about_subject"] == 0
