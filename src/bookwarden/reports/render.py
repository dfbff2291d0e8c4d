"""The readable pages: the security report (with SVG charts drawn by pygal) and the evidence document.

Jinja2 with autoescaping: every value from data is escaped. The charts come from `core/charts.py`, as on
the console pages: pygal's SVG with its script removed and its rules in the page's own stylesheet, so the
pages carry no script at all and open safely as a download and under a strict CSP.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from bookwarden.core import charts
from bookwarden.reports.security import headline

TEMPLATES = Path(__file__).parent / "templates"


@lru_cache(maxsize=1)
def _pages() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )


def _chart(svg: str) -> Markup:
    return Markup(svg)  # noqa: S704 - drawn by pygal from our numbers, its labels escaped, its script removed


def sign_in_chart(data: dict[str, Any]) -> Markup:
    columns = (
        ("succeeded", "succeeded"),
        ("failed", "failed password"),
        ("second_factor_failed", "failed second factor"),
        ("throttled", "throttled"),
        ("locked", "lockouts"),
    )
    labels = [day["day"][-2:] for day in data["days"]]
    series = {label: [day[column] for day in data["days"]] for column, label in columns}
    return _chart(charts.bars("Sign-ins per day", labels, series, stacked=True))


def bar_chart(title: str, named: dict[str, int]) -> Markup:
    return _chart(charts.counts(title, named))


def _charts(entry: dict[str, Any]) -> list[Markup]:
    if not entry["available"]:
        return []
    data = entry["data"]
    if entry["key"] == "sign_ins":
        return [sign_in_chart(data)]
    if entry["key"] == "entitlement_changes" and data["by_action"]:
        return [bar_chart("Entitlement changes by kind", data["by_action"])]
    if entry["key"] == "alerts":
        return [bar_chart("Alerts by severity", data["by_severity"])]
    if entry["key"] == "incidents" and data["opened"]:
        return [bar_chart("Incidents opened, by severity", data["by_severity"])]
    if entry["key"] == "privacy_requests":
        t = data["totals"]
        counts = {
            "answered on time": t.get("answered_on_time", 0),
            "answered late": t.get("answered_late", 0),
            "open, within deadline": t.get("open_at_end", 0) - t.get("open_past_deadline", 0),
            "open, past deadline": t.get("open_past_deadline", 0),
        }
        return [bar_chart("Privacy requests against their deadlines", counts)]
    if entry["key"] == "backups":
        counts = {"drills passed": data["drills_passed"], "drills failed": data["drills_failed"]}
        counts |= {f"{kind} backups": sum(c.values()) for kind, c in data["backups"].items()}
        return [bar_chart("Backups and drills", counts)]
    return []


def report_html(report: dict[str, Any]) -> str:
    sections = [
        {
            **entry,
            "charts": _charts(entry),
            "headline": headline(entry["key"], entry["data"]) if entry["available"] else "",
        }
        for entry in report["sections"]
    ]
    # A download opens on its own, so the charts' rules travel inside it (no script, styles only).
    rules = Markup(charts.stylesheet())  # noqa: S704 - generated from our fixed style, no data in it
    return _pages().get_template("security_report.html").render(report=report, sections=sections, chart_rules=rules)


def evidence_html(signed: dict[str, Any]) -> str:
    return _pages().get_template("evidence.html").render(signed=signed, evidence=signed["evidence"])
