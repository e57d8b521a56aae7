from __future__ import annotations

import csv
import io
import json
import re

from billing_strategies import fixed_history, identity_new, identity_new_doc

from core.canonical import BillingHistory
from reconciler.projection import reconcile_users
from reconciler.render import CSV_COLUMNS, render, render_html, render_json, side_by_side
from reconciler.report import Report


def _report(dirty: bool = True) -> Report:
    histories = {u: fixed_history(u) for u in ("u1", "u2")}
    news = {u: identity_new(h) for u, h in histories.items()}
    if dirty:
        doc = identity_new_doc(histories["u2"])
        doc["customer"]["email"] = "<script>alert(1)</script>"
        doc["refunds"] = []
        news["u2"] = BillingHistory.model_validate(doc)
    return reconcile_users(
        sorted(histories),
        load_legacy=lambda u: (histories[u], None),
        load_new=news.__getitem__,
        scope_kind="cohort",
        scope_value="pilot",
        created_by="cli:test",
        cohort_of=lambda u: "pilot",
    )


def test_json_has_the_documented_shape() -> None:
    body = json.loads(render_json(_report()))
    assert body["schema_version"] == 1
    assert set(body) == {
        "schema_version",
        "report",
        "clean",
        "summary",
        "population_violations",
        "results_truncated",
        "users",
    }
    assert body["report"]["scope"] == {"kind": "cohort", "value": "pilot"}
    assert body["clean"] is False
    s = body["summary"]
    assert (s["users_checked"], s["users_clean"], s["users_with_differences"]) == (2, 1, 1)
    assert s["by_kind"] == {"changed": 1, "missing": 1}
    assert {(g["kind"], g["record_type"], g["field"]) for g in s["by_field"]} == {
        ("changed", "customer", "email"),
        ("missing", "refund", None),
    }
    assert all(1 <= len(g["examples"]) <= 3 for g in s["by_field"])
    user = next(u for u in body["users"] if u["user_id"] == "u2")
    assert set(user["differences"][0]) == {
        "kind",
        "user_id",
        "record_type",
        "record_id",
        "field",
        "legacy_value",
        "new_value",
        "rule",
    }
    assert [v["invariant"] for v in body["population_violations"]] == ["cohort_refund_sum"]


def test_clean_report_json() -> None:
    body = json.loads(render(_report(dirty=False), "json"))
    assert body["clean"] is True and body["summary"]["differences"] == 0


def test_csv_one_row_per_difference() -> None:
    rows = list(csv.DictReader(io.StringIO(render(_report(), "csv"))))
    assert tuple(rows[0]) == CSV_COLUMNS
    diffs = [r for r in rows if r["kind"] != "violation"]
    assert {(r["user_id"], r["kind"], r["record_type"], r["field"]) for r in diffs} == {
        ("u2", "changed", "customer", "email"),
        ("u2", "missing", "refund", ""),
    }
    assert any(r["kind"] == "violation" and r["record_type"] == "refund_sum" for r in rows)


def test_table_groups_by_kind_and_field() -> None:
    text = render(_report(), "table")
    assert "customer.email" in text and "refund" in text and "DIFFERENCES FOUND" in text
    assert "refund_sum" in text
    assert "CLEAN" in render(_report(dirty=False), "table")


def test_html_is_self_contained_escaped_and_side_by_side() -> None:
    page = render_html(_report())
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?https?://""", page)
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "<link" not in page and "@import" not in page
    assert 'class="changed"' in page or 'class="removed"' in page
    assert "Ada &lt;b&gt;Lovelace&lt;/b&gt;" in page
    assert page.count('<h2 id="u-') == 2


def test_side_by_side_alignment_and_folding() -> None:
    left = [f"line {i}" for i in range(20)]
    right = [*left[:10], "changed", *left[11:], "added"]
    rows = side_by_side(left, right, context=2)
    tags = [r.tag for r in rows]
    assert tags.count("changed") == 1 and tags.count("added") == 1
    assert "skip" in tags
    changed = next(r for r in rows if r.tag == "changed")
    assert (changed.left, changed.right, changed.left_no, changed.right_no) == (
        "line 10",
        "changed",
        11,
        11,
    )


def test_table_does_not_interpret_markup_in_values() -> None:
    report = _report()
    report.created_by = "cli:[bold]x[/bold]"
    assert "cli:[bold]x[/bold]" in render(report, "table")
