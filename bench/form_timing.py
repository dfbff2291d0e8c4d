"""The request form's answer time with a patron matched and with none: what an enumerating caller sees.

Through the HTTP app in process (the route, the throttle, the lookup, the commit), an identifier
that names a patron with an address on file (match: a request row, a sealed code mail and their
events) against one that names nobody (no match: a decoy code). Each form from an address of its
own, as an enumerator spreading over many would. Both paths alternate, so drift hits both alike, and
run twice: with the module's ANSWER_FLOOR as deployed, and with the floor at 0 (what the answers
would show without it). Reported per path and run: median and p95; and the gap between the two
medians. The summary is the match's median answer time against the no-match one, with the floor
(ratio 1.0 when nothing tells them apart), and the same ratio and both gaps without it.
"""

from __future__ import annotations

import ipaddress
import statistics
import time
from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient

from bench import harness
from bookwarden.api.app import create_app
from bookwarden.core.config import Settings
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.library import records as library
from bookwarden.library.schemas import PatronCreate
from bookwarden.privacy.requests import form as request_form
from bookwarden.tenancy import service as tenancy

NAME = "form_timing"
FORM = "/api/v1/privacy/requests/form"
ON_FILE = "ann.onfile@bench.example"


def run(quick: bool) -> Iterator[dict[str, Any]]:
    forms = 4 if quick else 40  # per path and run
    with harness.bench_env() as env:
        with platform_session(env.db) as session:
            tenant_id = tenancy.create_tenant(session, env.db.keyring, env.home, "bench", "Bench University").id
        with tenant_session(env.db, tenant_id) as session:
            library.create(session, library.PATRONS, PatronCreate(name="Ann Patron", email=ON_FILE))
        app = create_app(env.db, Settings(home=env.home))
        addresses = (str(ipaddress.IPv4Address(0x0A000000 + n)) for n in range(1, 1_000_000))
        base = {"institution": "bench", "kind": "access", "by": "email"}
        values = {"match": ON_FILE, "no_match": "nobody@bench.example"}
        floor = request_form.ANSWER_FLOOR
        for value in values.values():  # warm up (templates, pools, prepared plans): not what is measured
            TestClient(app, base_url="https://testserver", client=(next(addresses), 50000)).post(
                FORM, json={**base, "value": value}
            )
        gaps, medians_by_run = {}, {}
        for label, chosen in (("with_floor", floor), ("without_floor", 0.0)):
            request_form.ANSWER_FLOOR = chosen
            seconds: dict[str, list[float]] = {"match": [], "no_match": []}
            try:
                for _ in range(forms):
                    for path, value in values.items():
                        client = TestClient(app, base_url="https://testserver", client=(next(addresses), 50000))
                        started = time.perf_counter()
                        answer = client.post(FORM, json={**base, "value": value})
                        seconds[path].append(time.perf_counter() - started)
                        assert answer.status_code == 202, answer.text
            finally:
                request_form.ANSWER_FLOOR = floor
            medians = {path: statistics.median(s) for path, s in seconds.items()}
            gaps[label] = abs(medians["match"] - medians["no_match"])
            medians_by_run[label] = medians
            yield {
                "bench": NAME,
                "event": "measured",
                "run": label,
                "floor_s": chosen,
                "forms_per_path": forms,
                **{f"{path}_median_s": round(m, 4) for path, m in medians.items()},
                **{f"{path}_p95_s": round(_p95(s), 4) for path, s in seconds.items()},
                "gap_s": round(gaps[label], 4),
                "load_average_1m": harness.load_average(),
            }
        floored, bare = medians_by_run["with_floor"], medians_by_run["without_floor"]
        yield harness.summary(
            NAME,
            "match_median_answer_s",
            floored["match"],
            floored["no_match"],  # ratio 1.0: a match answers no later than no match
            "s",
            floor_s=floor,
            gap_with_floor_us=round(gaps["with_floor"] * 1e6),
            gap_without_floor_us=round(gaps["without_floor"] * 1e6),
            ratio_without_floor=round(bare["match"] / bare["no_match"], 4),
            load_average_1m=harness.load_average(),
        )


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
