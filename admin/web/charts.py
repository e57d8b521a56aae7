"""Small server-rendered SVG charts: no JavaScript, no CDN, allowed by the strict CSP.

Colours come from presentation attributes and classes in admin.css (no inline
``style``, which the CSP forbids). Every chart carries a ``<title>``/``<desc>`` for
screen readers and the page shows the same numbers as text next to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from markupsafe import Markup

W, H = 640, 220
PAD_L, PAD_R, PAD_T, PAD_B = 52, 12, 12, 28


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    tone: str  # good | bad | info | warn | neutral (a class in admin.css)
    points: Sequence[tuple[float, float]]  # (x, y); x is seconds since the chart's start


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    for step in (1, 2, 2.5, 5):
        for mag in range(-4, 12):
            candidate = step * 10**mag
            if candidate >= value:
                return float(candidate)
    return float(value)


def _x_label(seconds: float, start: datetime | None, span: float) -> str:
    if start is None:
        return f"{seconds:.0f}s"
    from datetime import timedelta

    fmt = "%H:%M:%S" if span < 600 else "%H:%M" if span < 2 * 86400 else "%m-%d %H:%M"
    return (start + timedelta(seconds=seconds)).strftime(fmt)


def line_chart(
    title: str,
    series: Sequence[Series],
    *,
    y_format: Callable[[float], str] = lambda v: f"{v:g}",
    y_max: float | None = None,
    start: datetime | None = None,
    chart_id: str = "",
    integer: bool = False,
) -> Markup:
    """A line chart; ``integer``: counts, so the y axis has whole-number ticks only."""
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points]
    x_hi = max(xs) if xs and max(xs) > 0 else 1.0
    top = y_max if y_max is not None else _nice_max(max(ys) if ys else 0.0)
    if integer:
        top = float(max(4, -(-int(max(ys or [0])) // 4) * 4))
    iw, ih = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def px(x: float) -> float:
        return PAD_L + iw * (x / x_hi)

    def py(y: float) -> float:
        return PAD_T + ih * (1 - min(y, top) / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="{chart_id}-t"'
        f' id="{chart_id}" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
    ]
    for i in range(5):  # horizontal grid and y labels
        value = top * i / 4
        y = py(value)
        parts.append(
            f'<line class="grid" x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="axis" x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(y_format(value))}</text>"
        )
    for i in range(5):  # x labels
        x = x_hi * i / 4
        parts.append(
            f'<text class="axis" x="{px(x):.1f}" y="{H - 8}" text-anchor="middle">'
            f"{escape(_x_label(x, start, x_hi))}</text>"
        )
    if not ys:
        parts.append(
            f'<text class="axis" x="{W / 2}" y="{H / 2}" text-anchor="middle">no data yet</text>'
        )
    for s in series:
        if not s.points:
            continue
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
        parts.append(
            f'<polyline class="line {escape(s.tone)}" points="{path}">'
            f"<title>{escape(s.label)}</title></polyline>"
        )
    parts.append("</svg>")
    legend = "".join(f'<span class="key {escape(s.tone)}">{escape(s.label)}</span>' for s in series)
    body = f'<figure class="chartbox">{"".join(parts)}<figcaption>{legend}</figcaption></figure>'
    return Markup(body)  # noqa: S704 - every interpolated text went through escape()


def bar_chart(
    title: str,
    bars: Sequence[tuple[str, float, float, str]],
    *,
    value_format: Callable[[float, float], str],
    chart_id: str = "",
) -> Markup:
    """Horizontal bars ``(label, used, capacity, tone)``: share of a budget in use."""
    row = 28
    height = max(1, len(bars)) * row + 8
    label_w = 150
    iw = W - label_w - 150
    parts = [
        f'<svg class="chart bars" viewBox="0 0 {W} {height}" role="img"'
        f' aria-labelledby="{chart_id}-t" id="{chart_id}" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
    ]
    for i, (label, used, capacity, tone) in enumerate(bars):
        y = 4 + i * row
        share = 0.0 if capacity <= 0 else max(0.0, min(1.0, used / capacity))
        parts.append(f'<text class="axis" x="0" y="{y + 17}">{escape(label)}</text>')
        parts.append(f'<rect class="track" x="{label_w}" y="{y + 4}" width="{iw}" height="16"/>')
        parts.append(
            f'<rect class="bar {escape(tone)}" x="{label_w}" y="{y + 4}"'
            f' width="{iw * share:.1f}" height="16"/>'
        )
        parts.append(
            f'<text class="axis" x="{label_w + iw + 8}" y="{y + 17}">'
            f"{escape(value_format(used, capacity))}</text>"
        )
    if not bars:
        parts.append('<text class="axis" x="0" y="20">no limiter configured</text>')
    parts.append("</svg>")
    body = f'<figure class="chartbox">{"".join(parts)}</figure>'
    return Markup(body)  # noqa: S704 - every interpolated text went through escape()
