"""`bookwarden monitor`: replay a log file through the rules; list the rules loaded and refused.

Both run offline (OFFLINE below): they read local files, write nothing, touch no database and no tenant's data, so
an investigator runs them on any machine, as an auditor runs `audit verify-bundle`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from bookwarden.console import err, fail
from bookwarden.core.config import get_settings
from bookwarden.monitor.parse.reader import Format
from bookwarden.monitor.replay import replay
from bookwarden.monitor.sigma.load import Ruleset, builtin_paths, load

monitor_app = typer.Typer(name="monitor", help="Security monitoring: rules, replay of log files.", no_args_is_help=True)
groups = (monitor_app,)

RulesOption = Annotated[
    list[Path] | None,
    typer.Option("--rules", help="more Sigma rule files or folders (repeatable), beside the built-in pack"),
]
TuneOption = Annotated[
    list[str] | None,
    typer.Option(
        "--tune",
        help="RULE.KEY=VALUE: a correlation's window or threshold, e.g. sshd_brute_force.gte=8, "
        "sshd_brute_force.timespan=60s (repeatable; adds to BOOKWARDEN_MONITOR_TUNING)",
    ),
]
BuiltinOption = Annotated[bool, typer.Option("--builtin/--no-builtin", help="load the built-in rule pack")]


@monitor_app.command("replay")
def monitor_replay(
    file: Annotated[Path, typer.Argument(help="a log file, read from start to end")],
    fmt: Annotated[str, typer.Option("--format", help="syslog, jsonl, apache-error or apache-access")] = "syslog",
    year: Annotated[
        int | None, typer.Option(min=1970, max=9999, help="year of RFC 3164 stamps (default: this year)")
    ] = None,
    rules: RulesOption = None,
    tune: TuneOption = None,
    builtin: BuiltinOption = True,
) -> None:
    """Run FILE through parsing and every rule in event time; print one JSON line per alert, then a summary line.

    Rules that cannot be evaluated are listed on stderr with the reason. Needs no database and no permission
    (declares none, records nothing): it reads only the files named.
    """
    try:
        chosen = Format(fmt)
    except ValueError:
        raise fail(f"--format: {fmt!r} is none of {', '.join(f.value for f in Format)}") from None
    ruleset = _ruleset(rules, tune, builtin)
    try:
        with file.open(encoding="utf-8", errors="replace") as lines:
            result = replay(lines, chosen, ruleset, year)
    except OSError as exc:
        raise fail(f"{file}: {exc.strerror or exc}") from None
    for alert in result.alerts:
        print(json.dumps(alert.as_json()))
    print(json.dumps(result.summary(ruleset)))
    for unparsed in result.unparsed[:20]:
        err.print(f"line {unparsed.line_number} not parsed: {unparsed.reason}", markup=False, highlight=False)
    if len(result.unparsed) > 20:
        err.print(f"... and {len(result.unparsed) - 20} more lines not parsed")


@monitor_app.command("rules")
def monitor_rules(
    rules: RulesOption = None,
    tune: TuneOption = None,
    builtin: BuiltinOption = True,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """List the rules loaded (and whether a log source we parse feeds them) and the rules refused, with the reason."""
    ruleset = _ruleset(rules, tune, builtin, quiet=True)
    rows: list[dict[str, Any]] = (
        [
            {
                "rule": d.key,
                "title": d.title,
                "state": "loaded" if d.fed else "loaded, no source yet",
                "level": d.level,
                "path": str(d.path) if d.path else None,
                "alerts": d.output,
            }
            for d in ruleset.detections
        ]
        + [
            {
                "rule": c.key,
                "title": c.title,
                "state": f"loaded ({c.kind.name.lower()})",
                "level": c.level,
                "path": str(c.path) if c.path else None,
                "alerts": True,
            }
            for c in ruleset.correlations
        ]
        + [
            {
                "rule": r.key,
                "title": r.title,
                "state": "refused",
                "reason": r.reason,
                "path": str(r.path) if r.path else None,
            }
            for r in ruleset.refused
        ]
    )
    if fmt == "json":
        for row in rows:
            print(json.dumps(row))
        return
    if fmt != "table":
        raise fail(f"--format: {fmt!r} is none of table, json")
    for row in rows:
        reason = f"  {row['reason']}" if "reason" in row else ""
        print(f"{row['state']:<24} {row['rule'] or '-':<40} {row['title'] or ''}{reason}")
    summary = ruleset.summary()
    err.print(", ".join(f"{count} {name.replace('_', ' ')}" for name, count in summary.items()))


# Commands that run with no database at all, so declare no permission and leave no event, each with its reason.
OFFLINE = {
    ("monitor", "replay"): "runs a log file through the rules anywhere, reading only the files named",
    ("monitor", "rules"): "lists the rules a replay would load and refuse, reading only rule files",
}


def _ruleset(rules: list[Path] | None, tune: list[str] | None, builtin: bool, quiet: bool = False) -> Ruleset:
    tuning: dict[str, dict[str, Any]] = {name: dict(values) for name, values in get_settings().monitor_tuning.items()}
    for given in tune or []:
        name_key, equals, value = given.partition("=")
        name, dot, key = name_key.rpartition(".")
        if not (equals and dot and name and key and value):
            raise fail(f"--tune: {given!r} is not RULE.KEY=VALUE (e.g. sshd_brute_force.gte=8)")
        tuning.setdefault(name, {})[key] = int(value) if value.isdigit() else value
    paths = (builtin_paths() if builtin else []) + list(rules or [])
    for path in rules or []:
        if not path.exists():
            raise fail(f"--rules: {path} does not exist")
    try:
        ruleset = load(paths, tuning)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if not quiet:
        for refused in ruleset.refused:
            where = f"{refused.path}: " if refused.path else ""
            err.print(
                f"rule refused: {where}{refused.key or refused.title}: {refused.reason}", markup=False, highlight=False
            )
    sys.stdout.flush()
    return ruleset
