"""The readable pages: the security report (with SVG charts drawn by pygal) and the evidence document.

Jinja2 with autoescaping: every value from data is escaped. The charts are pygal's SVG with its script
elements taken out of the tree before serialising (pygal always adds its tooltip configuration as a
script): the pages carry no script at all, so they open safely as a download and under a strict CSP.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import pygal
from markupsafe import Markup

from bookwarden.reports.security import headline

TEMPLATES = Path(__file__).parent / "templates"
STYLE = pygal.style.Style(
    background="white",
    plot_background="white",
    font_family="system-ui, sans-serif",
    colors=("#2f6f4f", "#b03a2e", "#d68910", "#7d3c98", "#5d6d7e"),
)


@lru_cache(maxsize=1)
def _pages() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )


def _svg(chart: pygal.graph.graph.Graph) -> Markup:
    """The chart's SVG without scripts (pygal's tooltips need them; a report page runs none)."""
    tree = chart.render_tree()
    for parent in list(tree.iter()):
        for child in list(parent):
            if isinstance(child.tag, str) and child.tag.rsplit("}", 1)[-1] == "script":
                parent.remove(child)
    text = tree if isinstance(tree, str) else ET.tostring(tree, encoding="unicode")
    return Markup(text)  # noqa: S704 - built by pygal from our numbers, labels escaped by the serialiser


def _config(title: str) -> dict[str, Any]:
    return {
        "title": title,
        "style": STYLE,
        "js": [],
        "disable_xml_declaration": True,
        "width": 800,
        "height": 320,
        "legend_at_bottom": True,
        "print_values": False,
    }


def sign_in_chart(data: dict[str, Any]) -> Markup:
    chart = pygal.StackedBar(**_config("Sign-ins per day"), x_label_rotation=45)
    chart.x_labels = [day["day"][-2:] for day in data["days"]]
    for column, label in (
        ("succeeded", "succeeded"),
        ("failed", "failed password"),
        ("second_factor_failed", "failed second factor"),
        ("throttled", "throttled"),
        ("locked", "lockouts"),
    ):
        chart.add(label, [day[column] for day in data["days"]])
    return _svg(chart)


def bar_chart(title: str, counts: dict[str, int]) -> Markup:
    chart = pygal.HorizontalBar(**_config(title))
    for name, value in counts.items():
        chart.add(name, value)
    return _svg(chart)


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
    return _pages().get_template("security_report.html").render(report=report, sections=sections)


def evidence_html(signed: dict[str, Any]) -> str:
    return _pages().get_template("evidence.html").render(signed=signed, evidence=signed["evidence"])
