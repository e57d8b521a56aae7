"""Renderers: terminal table, JSON (documented, schema_version 1), CSV, one-page HTML.

The HTML page is self-contained (inline CSS, no scripts, no external assets)
and every value goes through Jinja2 autoescaping: billing data is untrusted
text (a customer can name themselves ``<script>``).
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reconciler.findings import Difference
from reconciler.report import Report, UserResult
from reconciler.view import pretty_lines

FORMATS = ("table", "json", "csv", "html")
CSV_COLUMNS = (
    "user_id",
    "cohort",
    "kind",
    "record_type",
    "record_id",
    "field",
    "legacy_value",
    "new_value",
    "rule",
)


def render(report: Report, fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return {"table": render_table, "json": render_json, "csv": render_csv, "html": render_html}[
        fmt
    ](report)


def _short(value: Any, limit: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _example(d: Difference) -> str:
    where = f"{d.user_id} {d.record_type} {d.record_id}"
    if d.kind == "changed":
        return f"{where}: {_short(d.legacy_value)} → {_short(d.new_value)}"
    if d.kind == "unmapped_field":
        return f"{where}: {_short(d.legacy_value)}"
    if d.kind == "duplicate":
        return f"{where}: new ids {_short(d.new_value)}"
    return where


def render_table(report: Report, *, width: int = 140) -> str:
    """Grouped by kind and field, with counts and up to three examples each."""
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    s = report.summary
    scope = f"{report.scope_kind}" + (f" {report.scope_value}" if report.scope_value else "")
    header = (
        f"Reconciliation of {scope} by {report.created_by} at {report.created_at:%Y-%m-%d %H:%M}Z:"
        f" {s.users_checked} users checked, {s.users_clean} clean, "
        f"{s.users_with_differences} with findings"
        + (f", {s.users_skipped} skipped" if s.users_skipped else "")
    )
    console.print(escape(header))
    if s.by_field:
        table = Table(title="Differences by kind and field", show_lines=False)
        for col in ("kind", "record.field", "count", "examples"):
            table.add_column(col, overflow="fold")
        for group in s.to_dict()["by_field"]:
            key = (group["kind"], group["record_type"], group["field"] or "")
            examples = "\n".join(_example(d) for d in s.examples.get(key, []))
            label = group["record_type"] + (f".{group['field']}" if group["field"] else "")
            table.add_row(group["kind"], escape(label), str(group["count"]), escape(examples))
        console.print(table)
    violations = [v for r in report.results for v in r.violations] + report.population_violations
    if s.by_invariant or report.population_violations:
        table = Table(title="Invariant violations")
        for col in ("invariant", "count", "examples"):
            table.add_column(col, overflow="fold")
        counts = dict(s.by_invariant)
        for v in report.population_violations:
            counts[v.invariant] = counts.get(v.invariant, 0) + 1
        for name, count in sorted(counts.items()):
            shown = [v.message for v in violations if v.invariant == name][:3]
            table.add_row(name, str(count), escape("\n".join(shown)))
        console.print(table)
    console.print("CLEAN" if report.clean else "DIFFERENCES FOUND")
    return console.export_text()


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def render_csv(report: Report) -> str:
    """One row per difference; invariant violations as rows of kind ``violation``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in report.results:
        for d in r.differences:
            writer.writerow(
                [
                    d.user_id,
                    r.cohort or "",
                    str(d.kind),
                    d.record_type,
                    d.record_id,
                    d.field or "",
                    _cell(d.legacy_value),
                    _cell(d.new_value),
                    d.rule,
                ]
            )
        for v in r.violations:
            writer.writerow(
                [
                    v.user_id or "",
                    r.cohort or "",
                    "violation",
                    v.invariant,
                    v.subject,
                    "",
                    _cell(v.legacy_value),
                    _cell(v.new_value),
                    "invariant",
                ]
            )
    for v in report.population_violations:
        writer.writerow(
            [
                "",
                v.cohort or "",
                "violation",
                v.invariant,
                v.subject,
                "",
                _cell(v.legacy_value),
                _cell(v.new_value),
                "invariant",
            ]
        )
    return buf.getvalue()


# --- HTML -------------------------------------------------------------------------

CONTEXT = 3


@dataclass(frozen=True, slots=True)
class Row:
    tag: str  # equal | removed | added | changed | skip
    left_no: int | None
    left: str
    right_no: int | None
    right: str


def side_by_side(left: list[str], right: list[str], *, context: int = CONTEXT) -> list[Row]:
    """git-style aligned rows; long unchanged runs fold to ``context`` lines each side."""
    rows: list[Row] = []
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            n = i2 - i1
            keep = range(n) if n <= 2 * context + 1 else [*range(context), *range(n - context, n)]
            for pos, k in enumerate(keep):
                if n > 2 * context + 1 and pos == context:
                    rows.append(Row("skip", None, f"⋯ {n - 2 * context} unchanged lines", None, ""))
                rows.append(Row("equal", i1 + k + 1, left[i1 + k], j1 + k + 1, right[j1 + k]))
        elif tag == "replace":
            for k in range(max(i2 - i1, j2 - j1)):
                li, rj = i1 + k, j1 + k
                rows.append(
                    Row(
                        "changed",
                        li + 1 if li < i2 else None,
                        left[li] if li < i2 else "",
                        rj + 1 if rj < j2 else None,
                        right[rj] if rj < j2 else "",
                    )
                )
        elif tag == "delete":
            rows.extend(Row("removed", i + 1, left[i], None, "") for i in range(i1, i2))
        else:
            rows.extend(Row("added", None, "", j + 1, right[j]) for j in range(j1, j2))
    return rows


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>twinbill reconciliation {{ scope }}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1b1f24}
h1{font-size:1.3rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #d0d7de;padding:2px 6px;vertical-align:top;text-align:left}
.badge{padding:2px 8px;border-radius:10px;color:#fff}
.clean{background:#1a7f37}.dirty{background:#cf222e}
table.diff{width:100%;table-layout:fixed;font:12px/1.35 ui-monospace,monospace}
table.diff td{border:none;white-space:pre-wrap;word-break:break-all}
table.diff col.no{width:3.5em}
table.diff td.no{color:#6e7781;text-align:right;user-select:none;padding-right:.5em}
tr.removed td.l{background:#ffebe9}tr.added td.r{background:#dafbe1}
tr.changed td.l{background:#fff1c2}tr.changed td.r{background:#fff1c2}
tr.skip td{color:#6e7781;background:#f6f8fa;text-align:center}
</style></head><body>
<h1>Reconciliation: {{ scope }}
 <span class="badge {{ 'clean' if report.clean else 'dirty' }}">{{ 'clean' if report.clean
 else 'differences found' }}</span></h1>
<p>By {{ report.created_by }} at {{ created_at }}. {{ s.users_checked }} users checked,
{{ s.users_clean }} clean, {{ s.users_with_differences }} with findings,
{{ s.differences }} differences, {{ s.violations }} invariant violations.</p>
{% if groups %}<h2>Summary by kind and field</h2>
<table><tr><th>kind</th><th>record.field</th><th>count</th></tr>
{% for g in groups %}<tr><td>{{ g.kind }}</td><td>{{ g.record_type }}{% if g.field %}.{{ g.field
}}{% endif %}</td><td>{{ g.count }}</td></tr>{% endfor %}</table>{% endif %}
{% for v in report.population_violations %}<p class="badge dirty">{{ v.message }}</p>{% endfor %}
{% for u in users %}<h2 id="u-{{ loop.index }}">User {{ u.result.user_id }}
{% if u.result.cohort %}(cohort {{ u.result.cohort }}){% endif %}
 <span class="badge {{ 'clean' if u.result.clean else 'dirty' }}">{{ 'clean' if u.result.clean
 else u.result.differences|length ~ ' differences' }}</span></h2>
{% if u.result.differences or u.result.violations %}<table>
<tr><th>kind</th><th>record</th><th>field</th><th>legacy</th><th>new</th><th>rule</th></tr>
{% for d in u.result.differences %}<tr><td>{{ d.kind }}</td><td>{{ d.record_type }} {{ d.record_id
}}</td><td>{{ d.field or '' }}</td><td>{{ cell(d.legacy_value) }}</td><td>{{ cell(d.new_value)
}}</td><td>{{ d.rule }}</td></tr>{% endfor %}
{% for v in u.result.violations %}<tr><td>violation</td><td>{{ v.subject }}</td><td>{{ v.invariant
}}</td><td>{{ cell(v.legacy_value) }}</td><td>{{ cell(v.new_value) }}</td><td>{{ v.message
}}</td></tr>{% endfor %}</table>{% endif %}
{% if u.rows %}<table class="diff"><colgroup><col class="no"><col><col class="no"><col>\
</colgroup><tr><th></th><th>legacy (snapshot)</th><th></th><th>new</th></tr>
{% for r in u.rows %}<tr class="{{ r.tag }}"><td class="no">{{ r.left_no or '' }}</td>
<td class="l">{{ r.left }}</td><td class="no">{{ r.right_no or '' }}</td>
<td class="r">{{ r.right }}</td></tr>
{% endfor %}</table>{% endif %}
{% endfor %}
</body></html>
"""

_env = Environment(autoescape=True, keep_trailing_newline=True)  # noqa: S701 - autoescape is on
_template = _env.from_string(_PAGE)


def _user_rows(result: UserResult) -> list[Row]:
    if result.legacy_view is None and result.new_view is None:
        return []
    return side_by_side(pretty_lines(result.legacy_view or {}), pretty_lines(result.new_view or {}))


def render_html(report: Report) -> str:
    scope = report.scope_kind + (f" {report.scope_value}" if report.scope_value else "")
    return _template.render(
        report=report,
        scope=scope,
        s=report.summary,
        created_at=report.created_at.strftime("%Y-%m-%d %H:%M:%SZ"),
        groups=report.summary.to_dict()["by_field"],
        users=[{"result": r, "rows": _user_rows(r)} for r in report.results],
        cell=_cell,
    )
