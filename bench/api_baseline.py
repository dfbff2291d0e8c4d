"""The baseline of `python -m bench api_load`: the same HTTP stack (FastAPI, uvicorn, 2 workers) answering
the same paths with the same JSON shapes from bare SQL: no authentication, no row-level security, no
decryption, no audit. The rows are plaintext copies of the patrons (`bare_patrons`) and bare tables for
the loans and searches written; the Authorization header is ignored.

Served as `uvicorn bench.api_baseline:from_environment --factory`, with BENCH_BASELINE_URL the app
role's database URL.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException
from sqlalchemy import create_engine, text

from bookwarden.core.config import Settings

PATRON_COLUMNS = (
    "id, name, email, phone, postal_address, institutional_id, affiliation, birth_date, barcode, status, "
    "created_at, updated_at"
)


def from_environment() -> FastAPI:
    # The app's own pool size: the same number of connections a Bookwarden worker opens.
    engine = create_engine(os.environ["BENCH_BASELINE_URL"], pool_size=Settings.model_fields["pool_size"].default)
    app = FastAPI()

    def one(sql: str, **params: Any) -> dict[str, Any] | None:
        with engine.begin() as conn:
            row = conn.execute(text(sql), params).mappings().first()
        return dict(row) if row is not None else None

    @app.get("/api/v1/patrons/{patron_id}")
    def read(patron_id: uuid.UUID):
        found = one(f"SELECT {PATRON_COLUMNS} FROM bare_patrons WHERE id = :id", id=str(patron_id))
        if found is None:
            raise HTTPException(404)
        return found

    @app.get("/api/v1/patrons")
    def listed(limit: int = 20):
        with engine.begin() as conn:
            rows = conn.execute(
                text(f"SELECT {PATRON_COLUMNS} FROM bare_patrons ORDER BY id LIMIT :n"),
                {"n": limit},
            ).mappings()
            return {"items": [dict(r) for r in rows], "next_cursor": None}

    @app.post("/api/v1/patrons/lookup")
    def lookup(body: dict[str, str]):
        with engine.begin() as conn:
            rows = conn.execute(
                text(f"SELECT {PATRON_COLUMNS} FROM bare_patrons WHERE email = :v"),
                {"v": body["value"]},
            ).mappings()
            return [dict(r) for r in rows]

    @app.get("/api/v1/loans")
    def loans(limit: int = 20):
        with engine.begin() as conn:
            rows = conn.execute(text("SELECT * FROM bare_loans ORDER BY id LIMIT :n"), {"n": limit}).mappings()
            return {"items": [dict(r) for r in rows], "next_cursor": None}

    @app.post("/api/v1/loans", status_code=201)
    def lend(body: dict[str, str]):
        row = {"id": str(uuid.uuid4()), "item_title": None, "returned_at": None, **body}
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO bare_loans (id, patron_id, item_id, item_title, borrowed_at, due_at, returned_at) "
                    "VALUES (:id, :patron_id, :item_id, :item_title, :borrowed_at, :due_at, :returned_at)"
                ),
                row,
            )
        return row

    @app.post("/api/v1/searches", status_code=201)
    def search(body: dict[str, str]):
        row = {"id": str(uuid.uuid4()), "searched_at": datetime.now(UTC).isoformat(), **body}
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO bare_searches (id, patron_id, query, searched_at) "
                    "VALUES (:id, :patron_id, :query, :searched_at)"
                ),
                row,
            )
        return row

    return app
