"""Charts as SVG, drawn by pygal, fit for a page under a strict Content-Security-Policy.

One module for every chart: the console pages and the downloadable security report draw with it, so
both carry the same palette (chosen for contrast) and neither carries a script.

pygal puts a `<style>` and a `<script>` inside every chart and names its rules after a random id. The
page's policy runs no inline script and applies no inline style, so the script goes, the style goes to
a stylesheet the page links (`stylesheet()`, the same for every chart drawn with `STYLE`), and the rules
name the class every chart carries instead of its id. No tooltips (they need the script): the values
are printed on the chart and listed in a table beside it, which also serves screen readers.
"""

from __future__ import annotations

import math
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
    "print_zeroes": False,
    "truncate_label": -1,
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
    """A bar chart of counts (stacked when asked), the values printed on the bars, as an SVG element."""
    chart = (pygal.StackedBar if stacked else pygal.Bar)(
        **_CONFIG, title=title, x_labels=labels, y_labels=_counts_axis(series, stacked), print_values=True
    )
    for name, values in series.items():
        chart.add(name, values)
    return _fit(chart.render(is_unicode=True), title)


def per_day(title: str, labels: list[str], series: dict[str, list[int]]) -> str:
    """Counts per day as bars, one day label in five (the table beside the chart holds every number)."""
    chart = pygal.Bar(
        **_CONFIG,
        title=title,
        x_labels=labels,
        y_labels=_counts_axis(series, False),
        x_label_rotation=40,
        show_minor_x_labels=False,
        x_labels_major_every=5,
    )
    for name, values in series.items():
        chart.add(name, values)
    return _fit(chart.render(is_unicode=True), title)


def counts(title: str, named: dict[str, int]) -> str:
    """One horizontal bar per name (kinds of things, not days), the values printed on the bars."""
    chart = pygal.HorizontalBar(**_CONFIG, title=title, print_values=True)
    for name, value in named.items():
        chart.add(name, value)
    return _fit(chart.render(is_unicode=True), title)


def _counts_axis(series: dict[str, list[int]], stacked: bool) -> list[int]:
    """Whole numbers on the y axis, about five of them: counts have no fractions."""
    columns = zip(*series.values(), strict=True) if series else iter(())
    top = max((sum(c) if stacked else max(c) for c in columns), default=0)
    step = max(1, math.ceil(top / 5))
    return list(range(0, max(top, 1) + step, step))


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
