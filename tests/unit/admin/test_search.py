"""Search by every key type; keyset pagination."""

from __future__ import annotations

import pytest

from admin.web.search import index_invoice_numbers, search
from core.db import transaction
from tests.unit.admin.conftest import add_user


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("alice@example.test", "u_1"),
        ("ALI", "u_1"),
        ("martin", "u_1"),  # substring of the name
        ("Bob St", "u_2"),
        ("u_2", "u_2"),
    ],
)
def test_search_by_email_name_and_id(admin, query, expected):
    with admin.ctx.sessions() as s:
        ids = [h.user_id for h in search(s, query).hits]
    assert expected in ids


def test_search_by_customer_ids_and_invoice_number(admin):
    with admin.ctx.sessions() as s:
        from multiplexer.models import Route

        r1, r2 = s.get(Route, "u_1"), s.get(Route, "u_2")
        # both fakes number their customers alike, so one id can match a user on each side
        assert "u_1" in [h.user_id for h in search(s, r1.new_customer_id).hits]
        assert "u_2" in [h.user_id for h in search(s, r2.legacy_customer_id).hits]
    with transaction(admin.ctx.sessions) as s:
        index_invoice_numbers(s, "u_2", "legacy", ["INV-0042", None])
        index_invoice_numbers(s, "u_2", "legacy", ["INV-0042"])  # idempotent
    with admin.ctx.sessions() as s:
        assert [h.user_id for h in search(s, "inv-0042").hits] == ["u_2"]


def test_exact_id_jumps_to_the_user_page(admin):
    c = admin.login("support")
    resp = c.get("/admin/search?q=u_2", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/admin/users/u_2"
    page = c.get("/admin/search?q=example.test")
    assert "u_1" in page.text and "u_4" in page.text
    assert "No user matches" in c.get("/admin/search?q=zzzz").text


def test_keyset_pagination_without_offset(admin):
    for i in range(30):
        add_user(
            admin.ctx,
            admin.new,
            f"p_{i:02d}",
            system="new",
            email=f"page{i:02d}@example.test",
            name=f"Page {i}",
        )
    seen: list[str] = []
    after = None
    with admin.ctx.sessions() as s:
        while True:
            page = search(s, "page", after=after, limit=7)
            seen += [h.user_id for h in page.hits]
            if page.next_after is None:
                break
            after = page.next_after
    assert seen == [f"p_{i:02d}" for i in range(30)]
    c = admin.login("support")
    first = c.get("/admin/search?q=page")
    assert "after=p_24" in first.text  # 25 per page, cursor is the last user id


def test_like_wildcards_are_literal(admin):
    with admin.ctx.sessions() as s:
        assert search(s, "%").hits == [] and search(s, "_").hits == []
