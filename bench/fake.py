"""Realistic, deterministic fake patrons (no third-party faker: the values only need to look and
size like real ones so ciphertext lengths and row widths match production)."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST = _words(
    "Ada Alan Grace Linus Margaret Dennis Barbara Ken Frances Edsger Radia John Katherine Tim Hedy "
    "Claude Sophie Niklaus Mary Donald Shafi Leslie Anita Whitfield Jean Guido Yukihiro Bjarne Lynn "
    "Carlos Lucia Mateo Amara Kwame Ngozi Priya Arjun Mei Hiroshi Olga Ivan Fatima Omar Sven Ingrid "
    "Aoife Siobhan Tomasz Zofia Elif Mehmet Noa Yosef Camille Luc Beatriz Joao Wei Ying Anh Minh"
)
LAST = _words(
    "Lovelace Turing Hopper Torvalds Hamilton Ritchie Liskov Thompson Allen Dijkstra Perlman McCarthy "
    "Johnson Berners-Lee Lamarr Shannon Wilson Wirth Jackson Knuth Goldwasser Lamport Borg Diffie "
    "Sammet Rossum Matsumoto Stroustrup Conway Garcia Fernandez Rossi Okafor Mensah Adeyemi Sharma "
    "Patel Chen Tanaka Ivanova Petrov Haddad Nasser Larsen Johansson Murphy O'Brien Kowalski Nowak "
    "Yilmaz Demir Cohen Levi Dubois Martin Silva Santos Wang Li Nguyen Tran"
)
STREETS = _words(
    "Main Oak Maple Cedar Elm Washington Lake Hill Park Pine College University Library Church "
    "Mill River Market Station Orchard Meadow Chestnut Highland Sunset Willow"
)
SUFFIXES = ("Street", "Avenue", "Road", "Lane", "Drive", "Court", "Place", "Boulevard", "Way")
CITIES = (
    ("Springfield", "IL"), ("Madison", "WI"), ("Ann Arbor", "MI"), ("Berkeley", "CA"),
    ("Cambridge", "MA"), ("Austin", "TX"), ("Boulder", "CO"), ("Ithaca", "NY"),
    ("Chapel Hill", "NC"), ("Eugene", "OR"), ("Burlington", "VT"), ("Athens", "GA"),
)
AFFILIATIONS = (
    "Undergraduate student, Faculty of Arts and Sciences",
    "Undergraduate student, School of Engineering",
    "Graduate student, Department of History",
    "Graduate student, School of Public Health",
    "Doctoral candidate, Department of Physics",
    "Faculty, Department of Computer Science",
    "Faculty, School of Law",
    "Staff, University Library",
    "Staff, Office of the Registrar",
    "Alumni",
    "Visiting scholar",
    "Community borrower",
)
EPOCH = date(1940, 1, 1)
BIRTH_SPAN_DAYS = (date(2007, 12, 31) - EPOCH).days


def luhn_digit(digits: str) -> str:
    """Check digit of the mod-10 scheme Codabar library barcodes use."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def patron(rng: random.Random, tenant_no: int, serial: int, domain: str) -> dict[str, Any]:
    """One patron's values as `PatronCreate.model_dump()` would give them (birth_date a date).

    `serial` is unique per tenant and keeps institutional ids and barcodes unique, as the
    tenant's unique blind indexes require.
    """
    first, last = rng.choice(FIRST), rng.choice(LAST)
    city, state = rng.choice(CITIES)
    body = f"2{1000 + tenant_no:04d}{serial:08d}"
    return {
        "name": f"{first} {last}",
        "email": f"{first}.{last}{serial % 1000}@{domain}".lower().replace("'", ""),
        "phone": f"+1 ({rng.randint(201, 989)}) 555-{rng.randint(0, 9999):04d}",
        "postal_address": (
            f"{rng.randint(1, 9999)} {rng.choice(STREETS)} {rng.choice(SUFFIXES)}, "
            f"Apt {rng.randint(1, 40)}, {city}, {state} {rng.randint(10000, 99999)}"
        ),
        "institutional_id": f"U{tenant_no:02d}{serial:07d}",
        "affiliation": rng.choice(AFFILIATIONS),
        "birth_date": EPOCH + timedelta(days=rng.randrange(BIRTH_SPAN_DAYS)),
        "barcode": body + luhn_digit(body),
    }
