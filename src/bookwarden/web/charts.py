"""Charts as SVG, drawn by pygal, fit for a page under a strict Content-Security-Policy.

pygal puts a `<style>` and a `<script>` inside every chart and names its rules after a random id. The
page's policy runs no inline script and applies no inline style, so the script goes, the style goes to
a stylesheet the page links (`stylesheet()`, the same for every chart drawn with `STYLE`), and the rules
name the class every chart carries instead of its id. No tooltips (they need the script): the values
are printed on the chart and listed in a table beside it, which also serves screen readers.
"""

from __future__ import annotations

import re
from functools import cache
from html import escape, unescape

import pygal
from pygal.style import Style

# Dark enough on white for text (WCAG AA), told apart by more than hue where two series meet.
STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#1f2328",
    foreground_strong="#1f2328",
    foreground_subtle="#57606a",
    colors=("#0b5cad", "#b3261e", "#1a7f37", "#8250df", "#9a6700"),
    font_family="system-ui, sans-serif",
    title_font_size=16,
    label_font_size=13,
    major_label_font_size=13,
    legend_font_size=13,
    value_font_size=12,
)
_CONFIG = {
    "style": STYLE,
    "js": [],
    "disable_xml_declaration": True,
    "print_values": True,
    "width": 720,
    "height": 320,
    "legend_at_bottom": True,
    "show_y_guides": True,
}
_STYLE_ELEMENT = re.compile(r"<style[^>]*>(.*?)</style>", re.S)
_SCRIPT_ELEMENT = re.compile(r"<script[^>]*>.*?</script>", re.S)
_STYLE_ATTRIBUTE = re.compile(r'\sstyle="[^"]*"')
_TOOLTIP = re.compile(r'<g [^>]*class="plot tooltip-overlay">.*?</g></g>', re.S)
_CHART_ID = re.compile(r"#chart-[0-9a-f-]{36}")
_COMMENT = re.compile(r"<!--.*?-->", re.S)


def bars(title: str, labels: list[str], series: dict[str, list[int]], *, stacked: bool = False) -> str:
    """A bar chart (stacked when asked) as an SVG element to place in a page."""
    chart = (pygal.StackedBar if stacked else pygal.Bar)(**_CONFIG, title=title, x_labels=labels)
    for name, values in series.items():
        chart.add(name, values)
    return _fit(chart.render(is_unicode=True), title)


def line(title: str, labels: list[str], series: dict[str, list[int]]) -> str:
    """A line chart (counts over days) as an SVG element to place in a page."""
    chart = pygal.Line(
        **_CONFIG,
        title=title,
        x_labels=labels,
        x_label_rotation=40,
        show_minor_x_labels=False,
        x_labels_major_every=max(1, len(labels) // 10),
        dots_size=3,
    )
    for name, values in series.items():
        chart.add(name, values)
    return _fit(chart.render(is_unicode=True), title)


def _fit(svg: str, title: str) -> str:
    svg = _COMMENT.sub("", _SCRIPT_ELEMENT.sub("", _STYLE_ELEMENT.sub("", svg)))
    svg = _STYLE_ATTRIBUTE.sub("", _TOOLTIP.sub("", svg))
    svg = re.sub(r'\sid="chart-[0-9a-f-]{36}"', "", svg, count=1)
    # One image to assistive technology: the table beside the chart holds the numbers.
    return svg.replace("<svg ", f'<svg role="img" aria-label="{escape(title)}" focusable="false" ', 1)


@cache
def stylesheet() -> str:
    """The rules of every chart drawn here (they depend on the style only), naming the charts' class."""
    chart = pygal.Bar(**_CONFIG)
    for n in range(len(STYLE.colors)):  # a rule per series colour
        chart.add(str(n), [1])
    found = _STYLE_ELEMENT.findall(chart.render(is_unicode=True))
    # The rules were escaped as XML text inside the SVG ("&gt;"); a stylesheet holds them as they are.
    return _CHART_ID.sub(".pygal-chart", unescape("\n".join(found)))
