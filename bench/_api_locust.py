"""The Locust users of `python -m bench api_load` (a leading underscore: the bench registry never imports
it, since importing Locust patches the standard library for gevent).

Read from the JSON file named by BENCH_API_LOAD_DATA: per institution its slug, an API token, patron ids
and e-mail addresses, and portal sign-ins. BENCH_API_LOAD_BASELINE=1 leaves out what the baseline app
cannot do (sign-ins, privacy requests). Only a 5xx answer or a transport error is a failure; other
statuses are counted by Locust under their own names.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from datetime import UTC, datetime, timedelta

from locust import HttpUser, between, task

DATA = json.loads(open(os.environ["BENCH_API_LOAD_DATA"]).read())  # noqa: SIM115
BASELINE = os.environ.get("BENCH_API_LOAD_BASELINE") == "1"
FULL_ONLY = 0 if BASELINE else 1


def _check(response) -> None:
    if response.status_code == 0 or response.status_code >= 500:
        response.failure(f"status {response.status_code}")
    else:
        response.success()


class Staff(HttpUser):
    """A library's systems calling the API with its token: reads most, writes some, people sign in now and then."""

    wait_time = between(0, 0.01)

    def on_start(self) -> None:
        self.tenant = random.choice(DATA["tenants"])
        self.client.headers["Authorization"] = f"Bearer {self.tenant['token']}"

    def _patron(self) -> str:
        return random.choice(self.tenant["patron_ids"])

    def _call(self, method: str, path: str, name: str, **kw) -> None:
        with self.client.request(method, path, name=name, catch_response=True, **kw) as response:
            _check(response)

    @task(40)
    def read_patron(self) -> None:
        self._call("GET", f"/api/v1/patrons/{self._patron()}", "GET /api/v1/patrons/{id}")

    @task(10)
    def lookup(self) -> None:
        body = {"by": "email", "value": random.choice(self.tenant["emails"])}
        self._call("POST", "/api/v1/patrons/lookup", "POST /api/v1/patrons/lookup", json=body)

    @task(8)
    def list_patrons(self) -> None:
        self._call("GET", "/api/v1/patrons?limit=20", "GET /api/v1/patrons")

    @task(5)
    def list_loans(self) -> None:
        self._call("GET", "/api/v1/loans?limit=20", "GET /api/v1/loans")

    @task(15)
    def lend(self) -> None:
        now = datetime.now(UTC)
        body = {
            "patron_id": self._patron(),
            "item_id": f"item-{uuid.uuid4().hex[:8]}",
            "borrowed_at": now.isoformat(),
            "due_at": (now + timedelta(days=21)).isoformat(),
        }
        self._call("POST", "/api/v1/loans", "POST /api/v1/loans", json=body)

    @task(15)
    def search(self) -> None:
        body = {"patron_id": self._patron(), "query": random.choice(("dune", "history of rome", "knitting", "rust"))}
        self._call("POST", "/api/v1/searches", "POST /api/v1/searches", json=body)

    @task(3 * FULL_ONLY)
    def sign_in(self) -> None:
        self._sign_in()

    @task(1 * FULL_ONLY)
    def privacy_request(self) -> None:
        client = self._sign_in()
        if client is not None:
            with client.post(
                "/api/v1/privacy/me/requests",
                json={"kind": "access"},
                headers={"X-Requested-With": "fetch"},
                name="POST /api/v1/privacy/me/requests",
                catch_response=True,
            ) as response:
                _check(response)

    def _sign_in(self):
        # A fresh cookie jar each time: a person signing in, not the token-carrying system.
        from locust.clients import HttpSession

        username, password = random.choice(self.tenant["logins"])
        client = HttpSession(self.host, self.environment.events.request, self)
        with client.post(
            "/api/v1/auth/login",
            json={"institution": self.tenant["slug"], "username": username, "password": password},
            headers={"X-Requested-With": "fetch"},
            name="POST /api/v1/auth/login",
            catch_response=True,
        ) as response:
            _check(response)
            return client if response.status_code == 200 else None
