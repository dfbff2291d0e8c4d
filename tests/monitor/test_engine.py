"""The engine's index of rules by a required value changes which rules it tries, never what matches."""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import UTC, datetime, timedelta

from bookwarden.monitor.parse.reader import Format
from bookwarden.monitor.replay import replay
from bookwarden.monitor.sigma.load import Ruleset, builtin_paths, load
from tests.monitor.helpers import LOGS, SIGMAHQ, detection, event, run

LINUX = LOGS / "Linux_2k.log"


def unindexed(ruleset: Ruleset) -> Ruleset:
    return dataclasses.replace(
        ruleset, detections=[dataclasses.replace(d, requirement=None) for d in ruleset.detections]
    )


def test_a_required_value_is_found_from_the_condition(tmp_path):
    one = detection(tmp_path, "sel:\n  action: Role.Granted\n  user|contains: x\ncondition: sel", "one")
    assert one.detections[0].requirement == ("action", frozenset({"role.granted"}))
    listed = detection(tmp_path, "sel:\n  action:\n    - a.b\n    - c.d\ncondition: sel", "listed")
    assert listed.detections[0].requirement == ("action", frozenset({"a.b", "c.d"}))
    for number, body in enumerate(
        [
            "sel:\n  action|contains: a\ncondition: sel",
            "sel:\n  action: 'a*'\ncondition: sel",
            "sel:\n  action: a\ncondition: not sel",
            "a:\n  action: x\nb:\n  user: y\ncondition: a or b",
            "keywords:\n  - x\ncondition: keywords",
        ]
    ):
        assert detection(tmp_path, body, f"none{number}").detections[0].requirement is None, body
    # Case-insensitive, as Sigma strings are: the index agrees with the predicate.
    _, final = run(one, [event(0, action="ROLE.GRANTED", user="xx"), event(1, action="role.granted", user="y")])
    assert [a.rule for a in final] == ["one"]


def test_indexed_and_unindexed_engines_raise_the_same_alerts():
    paths = builtin_paths() + ([SIGMAHQ] if SIGMAHQ.is_dir() else [])
    ruleset = load(paths)
    assert sum(d.requirement is not None for d in ruleset.detections) >= 20
    rng = random.Random(7)
    start = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    actions = [
        "auth.sign_in.failed",
        "AUTH.SIGN_IN.FAILED",
        "patron.viewed",
        "role.granted",
        "access.denied",
        "request.failed",
        "audit.verified",
        "mfa.removed",
        "password.reset.requested",
    ]
    records = [
        json.dumps(
            {
                "time": (start + timedelta(seconds=i)).isoformat(),
                "action": rng.choice(actions),
                "outcome": rng.choice(["failed", "succeeded", "denied"]),
                "source_address": f"192.0.2.{rng.randrange(4)}",
                "target_id": f"acc-{rng.randrange(12)}",
                "actor_id": f"acc-{rng.randrange(12)}",
                "actor_kind": rng.choice(["account", "operator"]),
                "details": {"problem": "not-found", "approval_id": "a"},
            }
        )
        for i in range(3000)
    ]
    corpora = [(records, Format.JSONL, None)]
    if LINUX.is_file():
        corpora.append((LINUX.read_text().splitlines(), Format.SYSLOG, 2005))
    for lines, fmt, year in corpora:
        fast = replay(lines, fmt, ruleset, year).alerts
        slow = replay(lines, fmt, unindexed(ruleset), year).alerts
        assert fast == slow and len(fast) > 10, fmt
