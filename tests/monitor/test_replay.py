"""Offline replay on the real Linux sample: the sshd brute-force alerts, checked against a plain reading of the file;
and `bookwarden monitor replay` / `monitor rules` as an operator runs them (no database)."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import datetime

from typer.testing import CliRunner

from bookwarden import cli
from bookwarden.monitor.parse.reader import Format
from bookwarden.monitor.replay import replay
from bookwarden.monitor.sigma.load import builtin_paths, load
from tests.monitor.helpers import LOGS

LINUX = LOGS / "Linux_2k.log"


def expected_brute_force(lines: list[str], threshold: int = 5, span: int = 120) -> list[dict]:
    """The alerts, computed from the text alone.

    In this file every failed sshd authentication left PAM lines only (no `Failed password`, no `Invalid user`):
    each `sshd(pam_unix)[pid]: authentication failure ... rhost=X` line is one attempt from X (its `check pass`
    line is part of the same attempt). Then, per address, in time order: an alert opens at an attempt that has
    `threshold` attempts (itself included) at most `span` seconds before it; it takes every later attempt that
    comes at most `span` seconds after the previous one; it counts from the oldest attempt of its opening window.
    """
    assert not any("Failed password" in line or "Invalid user" in line for line in lines)
    times: dict[str, list[datetime]] = defaultdict(list)
    for line in lines:
        found = re.match(
            r"^(\w{3} [ \d]\d \d\d:\d\d:\d\d) combo sshd\(pam_unix\)\[\d+\]: authentication failure;.* rhost=(\S+)",
            line,
        )
        if found:
            times[found.group(2)].append(datetime.strptime(f"2005 {found.group(1)}", "%Y %b %d %H:%M:%S"))
    alerts = []
    for address, moments in times.items():
        moments.sort()
        current = None
        for k, moment in enumerate(moments):
            if current is not None and (moment - current["last_seen"]).total_seconds() <= span:
                current["last_seen"], current["count"] = moment, current["count"] + 1
                continue
            if current is not None:
                alerts.append(current)
                current = None
            window = [m for m in moments[: k + 1] if (moment - m).total_seconds() <= span]
            if len(window) >= threshold:
                current = {
                    "source_address": address,
                    "first_seen": window[0],
                    "last_seen": moment,
                    "count": len(window),
                }
        if current is not None:
            alerts.append(current)
    return sorted(alerts, key=lambda a: (a["first_seen"], a["source_address"]))


def as_expected(alert) -> dict:
    return {
        "source_address": alert.source_address,
        "first_seen": alert.first_seen.replace(tzinfo=None),
        "last_seen": alert.last_seen.replace(tzinfo=None),
        "count": alert.count,
    }


def test_the_sshd_brute_force_alerts_of_the_linux_sample_are_exactly_the_expected_ones():
    lines = LINUX.read_text().splitlines()
    result = replay(lines, Format.SYSLOG, load(builtin_paths()), year=2005)
    found = [as_expected(a) for a in result.alerts if a.rule == "sshd_brute_force"]
    expected = expected_brute_force(lines)
    assert len(expected) >= 30  # the sample is full of them: the comparison is not vacuous
    assert sorted(found, key=lambda a: (a["first_seen"], a["source_address"])) == expected
    assert all(alert.severity == "high" and alert.final for alert in result.alerts)
    assert result.unparsed == [] and result.events == 2000


def test_tuning_the_brute_force_rule_changes_the_alerts_as_the_plain_reading_says():
    lines = LINUX.read_text().splitlines()
    ruleset = load(builtin_paths(), {"sshd_brute_force": {"gte": 12, "timespan": "30s"}})
    found = [as_expected(a) for a in replay(lines, Format.SYSLOG, ruleset, year=2005).alerts]
    expected = expected_brute_force(lines, threshold=12, span=30)
    assert 0 < len(expected) < len(expected_brute_force(lines))
    assert sorted(found, key=lambda a: (a["first_seen"], a["source_address"])) == expected


def test_a_modern_auth_log_brute_force_counts_attempts_not_lines():
    # Four attempts from one address leave twelve lines: no alert at 5 per 120 s. A fifth attempt raises it.
    guess = (
        "Mar  1 12:00:{s:02d} h sshd[{pid}]: Invalid user {user} from 203.0.113.7 port {pid}\n"
        "Mar  1 12:00:{s:02d} h sshd[{pid}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 "
        "tty=ssh ruser= rhost=203.0.113.7\n"
        "Mar  1 12:00:{s:02d} h sshd[{pid}]: Failed password for invalid user {user} from 203.0.113.7 port {pid} ssh2\n"
    )
    ruleset = load(builtin_paths())

    def log(count: int, users) -> list[str]:
        return "".join(guess.format(s=s, pid=100 + s, user=users(s)) for s in range(count)).splitlines()

    assert replay(log(4, lambda s: "admin"), Format.SYSLOG, ruleset).alerts == []
    (alert,) = replay(log(5, lambda s: "admin"), Format.SYSLOG, ruleset).alerts
    assert (alert.rule, alert.count, alert.source_address, alert.lines) == (
        "sshd_brute_force",
        5,
        "203.0.113.7",
        (1, 4, 7, 10, 13),
    )
    # Five different names from one address are also a dictionary of accounts.
    spread = replay(log(5, lambda s: f"u{s}"), Format.SYSLOG, ruleset).alerts
    assert sorted(a.rule for a in spread) == ["sshd_brute_force", "sshd_user_enumeration"]


runner = CliRunner()


def test_the_replay_command_prints_one_json_line_per_alert_then_a_summary():
    result = runner.invoke(cli.app, ["monitor", "replay", str(LINUX), "--format", "syslog", "--year", "2005"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    *alerts, summary = lines
    assert summary["summary"] is True and summary["lines"] == 2000 and summary["unparsed"] == 0
    assert summary["alerts"] == len(alerts) == summary["alerts_by_rule"]["sshd_brute_force"]
    assert len(alerts) == len(expected_brute_force(LINUX.read_text().splitlines()))
    for alert in alerts:
        assert {"rule", "severity", "source_address", "first_seen", "last_seen", "count"} <= alert.keys()
        assert alert["rule"] == "sshd_brute_force" and alert["count"] >= 5
        assert datetime.fromisoformat(alert["first_seen"]) <= datetime.fromisoformat(alert["last_seen"])


def test_replay_takes_more_rules_and_tuning(tmp_path):
    result = runner.invoke(
        cli.app,
        [
            "monitor",
            "replay",
            str(LINUX),
            "--year",
            "2005",
            "--rules",
            str(tmp_path),
            "--tune",
            "sshd_brute_force.gte=50",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["alerts_by_rule"] == {"sshd_brute_force": 1}  # one address tried 80 times in a row


def test_replay_refuses_bad_options_with_a_clear_error(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("Mar  1 12:00:00 h sshd[1]: Server listening on 0.0.0.0 port 22.\n")
    bad_format = runner.invoke(cli.app, ["monitor", "replay", str(log), "--format", "xml"])
    assert bad_format.exit_code == 2 and "none of syslog, jsonl" in bad_format.output
    bad_tune = runner.invoke(cli.app, ["monitor", "replay", str(log), "--tune", "nothing.gte=3"])
    assert bad_tune.exit_code == 2 and "nothing" in bad_tune.output
    shapeless = runner.invoke(cli.app, ["monitor", "replay", str(log), "--tune", "gte"])
    assert shapeless.exit_code == 2 and "RULE.KEY=VALUE" in shapeless.output
    missing = runner.invoke(cli.app, ["monitor", "replay", str(tmp_path / "nope.log")])
    # The message wraps at the terminal's width, inside a long path too (pytest-xdist's are longer).
    assert missing.exit_code == 2 and "nope.log" in missing.output.replace("\n", "")


def test_refused_rules_are_listed_on_stderr_at_load_and_by_monitor_rules(tmp_path):
    (tmp_path / "odd.yml").write_text(
        "title: odd\nname: odd\nlogsource:\n  product: linux\ndetection:\n  sel:\n    a|wide: x\n  condition: sel\n"
    )
    log = tmp_path / "empty.log"
    log.write_text("")
    replayed = runner.invoke(cli.app, ["monitor", "replay", str(log), "--rules", str(tmp_path / "odd.yml")])
    assert replayed.exit_code == 0
    assert "rule refused" in replayed.stderr and "odd" in replayed.stderr and "binary" in replayed.stderr
    assert json.loads(replayed.stdout.splitlines()[-1])["rules"]["refused"] == 1
    listed = runner.invoke(cli.app, ["monitor", "rules", "--rules", str(tmp_path), "--format", "json"])
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    (odd,) = [row for row in rows if row["state"] == "refused"]
    assert odd["rule"] == "odd" and "binary" in odd["reason"]
    assert {"rule": "sshd_brute_force", "state": "loaded (event_count)"}.items() <= next(
        row for row in rows if row["rule"] == "sshd_brute_force"
    ).items()
    assert any(row["state"] == "loaded" and row["rule"] == "host_fim_change" for row in rows)  # fed by FIM scans


def test_the_monitor_commands_run_offline_with_their_reason():
    assert cli.OFFLINE_COMMANDS[("monitor", "replay")]
    assert cli.OFFLINE_COMMANDS[("monitor", "rules")]
