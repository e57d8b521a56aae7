"""The readiness report as a terminal table, JSON, or one self-contained HTML page.

The HTML charts are server-rendered SVG (stacked bars: ready / deferred by preflight /
blocked by unmapped features), so the page needs no script and no CDN: it opens from
a file, a mail attachment or an air-gapped laptop. Every value goes through Jinja2
autoescaping (facet values come from billing data).
"""

from __future__ import annotations

import json
from typing import Any

from jinja2 import Environment
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from migration.readiness import Readiness

FORMATS = ("table", "json", "html")
BAR_WIDTH = 420


def render_json(r: Readiness) -> str:
    return json.dumps(r.as_dict(), indent=2, sort_keys=True, default=str) + "\n"


def print_table(r: Readiness, console: Console) -> None:
    console.print(
        f"[bold]readiness[/] of {r.users} legacy users at {r.generated_at:%Y-%m-%d %H:%M} UTC: "
        f"[green]{r.ready} migrate today[/], [yellow]{sum(r.deferred.values())} deferred[/], "
        f"[red]{r.with_unmapped} with unmapped features[/]"
        + (f", {r.not_assessed} never assessed" if r.not_assessed else "")
    )
    if r.findings():
        console.print("[bold]what will go wrong if we start tomorrow[/]")
        for line in r.findings():
            console.print(f"  • {escape(line)}", highlight=False)
    table = Table("facet", "bucket", "users", "ready", "deferred (top reason)", "unmapped (top)")
    last = None
    for b in r.buckets:
        top_d = b.deferred.most_common(1)
        top_u = b.unmapped.most_common(1)
        table.add_row(
            b.facet if b.facet != last else "",
            escape(b.value),
            str(b.users),
            str(b.ready),
            f"{sum(b.deferred.values())} ({escape(top_d[0][0])})" if top_d else "0",
            f"{sum(b.unmapped.values())} ({escape(top_u[0][0])})" if top_u else "0",
            end_section=False,
        )
        last = b.facet
    console.print(table)


def _charts(r: Readiness) -> list[dict[str, Any]]:
    """Per facet: one row per bucket with the bar segments' widths (px)."""
    charts: dict[str, dict[str, Any]] = {}
    widest = max((b.users for b in r.buckets), default=1) or 1
    for b in r.buckets:
        deferred = sum(b.deferred.values())
        blocked = max(b.users - b.ready - deferred, 0)  # unmapped only (never assessed too)
        scale = BAR_WIDTH / widest
        chart = charts.setdefault(b.facet, {"facet": b.facet, "rows": []})
        chart["rows"].append(
            {
                "value": b.value,
                "users": b.users,
                "ready": b.ready,
                "deferred": deferred,
                "blocked": blocked,
                "w_ready": round(b.ready * scale, 1),
                "w_deferred": round(deferred * scale, 1),
                "w_blocked": round(blocked * scale, 1),
                "reasons": ", ".join(f"{k}: {v}" for k, v in b.deferred.most_common(3)),
                "unmapped": ", ".join(f"{k}: {v}" for k, v in b.unmapped.most_common(3)),
            }
        )
    for chart in charts.values():
        chart["height"] = 22 * len(chart["rows"]) + 6
    return list(charts.values())


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>twinbill readiness — {{ r.users }} legacy users</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2rem;color:#222;max-width:70rem}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin-top:2rem}
.kpi{display:inline-block;margin-right:2rem}.kpi b{font-size:1.6rem;display:block}
.ready{fill:#2e7d32;color:#2e7d32}.deferred{fill:#f9a825;color:#b07800}
.blocked{fill:#c62828;color:#c62828}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left;vertical-align:top}
svg text{font-size:12px;fill:#222} .muted{color:#666}
</style></head><body>
<h1>What will go wrong if we start tomorrow</h1>
<p class="muted">{{ r.users }} users on legacy, as of
{{ r.generated_at.strftime('%Y-%m-%d %H:%M') }} UTC. Verdicts are those of the last
<code>twinbill users sync</code>; preflight rules are the migration's own.</p>
<div class="kpi ready"><b>{{ r.ready }}</b>migrate today</div>
<div class="kpi deferred"><b>{{ deferred }}</b>deferred by preflight</div>
<div class="kpi blocked"><b>{{ unmapped_users }}</b>with unmapped features</div>
{% if r.not_assessed %}<div class="kpi"><b>{{ r.not_assessed }}</b>never assessed</div>{% endif %}
<h2>Findings</h2>
{% if findings %}<ol>{% for f in findings %}<li>{{ f }}</li>{% endfor %}</ol>
{% else %}<p>Nothing: every user can migrate today.</p>{% endif %}
<h2>Buckets</h2>
<p><span class="ready">■ ready</span> <span class="deferred">■ deferred</span>
<span class="blocked">■ unmapped features</span></p>
{% for c in charts %}
<h3>{{ c.facet }}</h3>
<svg role="img" aria-label="{{ c.facet }}" width="{{ bar + 260 }}" height="{{ c.height }}">
{% for row in c.rows %}{% set y = loop.index0 * 22 + 2 %}
<text x="0" y="{{ y + 14 }}">{{ row.value }}</text>
<g transform="translate(120,{{ y }})">
<rect class="ready" width="{{ row.w_ready }}" height="18">
<title>ready: {{ row.ready }}</title></rect>
<rect class="deferred" x="{{ row.w_ready }}" width="{{ row.w_deferred }}" height="18">
<title>deferred: {{ row.deferred }} {{ row.reasons }}</title></rect>
<rect class="blocked" x="{{ row.w_ready + row.w_deferred }}" width="{{ row.w_blocked }}"
 height="18"><title>unmapped: {{ row.blocked }} {{ row.unmapped }}</title></rect>
<text x="{{ row.w_ready + row.w_deferred + row.w_blocked + 6 }}" y="14">
{{ row.users }} ({{ row.ready }} ready)</text>
</g>{% endfor %}
</svg>
{% endfor %}
<h2>Deferred by preflight</h2>
<table><tr><th>reason</th><th>users</th><th>e.g.</th></tr>
{% for reason, n in r.deferred.most_common() %}<tr><td>{{ reason }}</td><td>{{ n }}</td>
<td>{{ r.examples.get('deferred:' ~ reason, []) | join(', ') }}</td></tr>{% endfor %}</table>
<h2>Unmapped features</h2>
<table><tr><th>feature</th><th>users</th><th>e.g.</th></tr>
{% for f, n in r.unmapped.most_common() %}<tr><td>{{ f }}</td><td>{{ n }}</td>
<td>{{ r.examples.get('unmapped:' ~ f, []) | join(', ') }}</td></tr>{% endfor %}</table>
</body></html>
"""

_ENV = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)


def render_html(r: Readiness) -> str:
    return _ENV.from_string(_PAGE).render(
        r=r,
        charts=_charts(r),
        findings=r.findings(),
        deferred=sum(r.deferred.values()),
        unmapped_users=r.with_unmapped,
        bar=BAR_WIDTH,
    )
