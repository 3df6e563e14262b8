"""The activity feed, the transaction detail panel and the approve undo window, in a real browser against
the real stack: the feed is filled from the events API on load, the panel shows the audit trail
(what, who, when, why), and Approve is only sent after the undo window, the row staying put until then."""
import re
import time

import pytest
from playwright.sync_api import expect

from tests.dashboard_ui.helpers import (
    PASSWORD,
    approve_new,
    create_admin,
    decide,
    pending_row,
    sign_in,
    submit_pending,
    this_week,
)
from tests.stack import Browserless

pytestmark = [pytest.mark.e2e, pytest.mark.needs_postgres, pytest.mark.needs_redis]

UNDO_SECONDS = 5  # the page's default (data-undo-ms on <body>)


def feed_item(page, kind: str, transaction_id: str):
    return page.locator(f'[data-testid="feed-item"][data-type="transaction.{kind}"][data-id="{transaction_id}"]')


def test_the_feed_is_filled_from_the_events_api_on_load_and_a_detail_panel_shows_the_audit_trail(live_stack, browser):
    create_admin("ada")
    week = this_week()
    approve_new("10.00", "EUR", week, reference="INV-OLD")
    refused = submit_pending("99.00", "EUR", week, reference="INV-DUP")
    decide(refused, "rejected", reason="Duplicate of INV-OLD")
    waiting = submit_pending("5.00", "EUR", week, reference="INV-WAIT", description="Office chairs")

    page = browser.new().new_page()
    sign_in(page, live_stack.base_url, "ada")

    # Everything happened before the page opened: the feed still shows it, newest first.
    expect(page.locator("#feed")).to_have_attribute("data-backfilled", "true")
    expect(page.locator('[data-testid="feed-item"]')).to_have_count(5)
    kinds = page.eval_on_selector_all('[data-testid="feed-item"]', "items => items.map((i) => i.dataset.type)")
    assert kinds == [
        "transaction.submitted",  # INV-WAIT
        "transaction.rejected",
        "transaction.submitted",  # INV-DUP
        "transaction.approved",
        "transaction.submitted",  # INV-OLD
    ]
    rejected = feed_item(page, "rejected", refused)
    expect(rejected).to_contain_text("INV-DUP")
    expect(rejected).to_contain_text("by other-admin")
    expect(rejected).to_contain_text("Duplicate of INV-OLD")
    expect(rejected).to_contain_text("€99.00")
    expect(page.locator("#feed-empty")).to_be_hidden()

    # The detail panel: every step with who, when and why.
    rejected.get_by_role("button", name="INV-DUP", exact=True).click()
    panel = page.locator('[data-testid="detail-panel"]')
    expect(panel).to_be_visible()
    expect(panel.locator('[data-testid="audit-trail"]')).to_have_attribute("aria-busy", "false")
    entries = panel.locator('[data-testid="audit-entry"]')
    expect(entries).to_have_count(2)
    assert entries.evaluate_all("items => items.map((i) => i.dataset.type)") == ["TransactionSubmitted", "TransactionRejected"]
    expect(entries.nth(0).locator('[data-testid="audit-who"]')).to_have_text("seed")
    expect(entries.nth(1).locator('[data-testid="audit-who"]')).to_have_text("other-admin")
    expect(entries.nth(1).locator('[data-testid="audit-why"]')).to_have_text("Duplicate of INV-OLD")
    expect(entries.nth(1).locator('[data-testid="audit-when"]')).to_have_text(re.compile(r"^\d{1,2} \w{3} \d{4}, \d\d:\d\d:\d\d$"))
    expect(panel.locator('[data-testid="detail-status"]')).to_have_text("rejected")
    expect(panel.locator('[data-testid="detail-amount"]')).to_have_text("€99.00")
    panel.get_by_role("button", name="Close").click()
    expect(panel).to_be_hidden()

    # From the queue too: a pending transaction has one step so far.
    pending_row(page, waiting).get_by_role("button", name="INV-WAIT", exact=True).click()
    expect(panel.locator('[data-testid="audit-entry"]')).to_have_count(1)
    expect(panel.locator('[data-testid="detail-description"]')).to_have_text("Office chairs")
    expect(panel.locator('[data-testid="detail-status"]')).to_have_text("pending")


def test_approve_waits_out_an_undo_window_with_the_row_in_place_and_undo_sends_nothing(live_stack, browser):
    create_admin("ada")
    week = this_week()
    first = submit_pending("5.00", "EUR", week, reference="INV-FIRST")
    second = submit_pending("6.00", "EUR", week, reference="INV-SECOND")
    rest = Browserless(live_stack.base_url).login("ada", PASSWORD)

    def status(transaction_id: str) -> str:
        return rest.get(f"/api/transactions/{transaction_id}/").json()["status"]

    def middle(button) -> tuple[float, float]:
        button.scroll_into_view_if_needed()  # clicks below go to viewport coordinates
        box = button.bounding_box()
        return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    page = browser.new().new_page()
    sign_in(page, live_stack.base_url, "ada")
    rows = page.locator('[data-testid="pending-row"]')
    expect(rows).to_have_count(2)
    top, below = pending_row(page, second), pending_row(page, first)  # newest first
    assert rows.first.get_attribute("data-id") == second
    top_spot = middle(top.locator("td.actions button").first)
    below_spot = middle(below.locator("td.actions button").first)

    # A double click on the same spot: the second click lands on Undo, not on the next row's Approve.
    undone = time.monotonic()
    page.mouse.click(*top_spot)
    expect(top.locator('[data-testid="undo"]')).to_be_visible()
    page.mouse.click(*top_spot)
    expect(top.locator('[data-testid="approve"]')).to_be_visible()

    # Meanwhile (the two windows overlap, so the test waits out one window, not two), approve the other
    # row and wait: it stays where it is and nothing is sent before its window ends.
    started = time.monotonic()
    below.get_by_role("button", name=re.compile("^Approve")).click()
    expect(below).to_have_class(re.compile(r"\bis-waiting\b"))
    expect(below.locator('[data-testid="undo"]')).to_contain_text("Undo")
    page.wait_for_timeout(2000)
    assert time.monotonic() - started < UNDO_SECONDS - 1, "the machine was too slow to check inside the window"
    assert status(first) == "pending"
    assert rows.nth(1).get_attribute("data-id") == first and rows.first.get_attribute("data-id") == second
    under_pointer = page.evaluate(
        "([x, y]) => { const b = document.elementFromPoint(x, y).closest('button'); return [b.dataset.testid, b.closest('tr').dataset.id]; }",
        list(below_spot),
    )
    assert under_pointer == ["undo", first]
    expect(below).to_have_count(0, timeout=(UNDO_SECONDS + 8) * 1000)
    assert time.monotonic() - started >= UNDO_SECONDS
    assert status(first) == "approved"

    # Past the undone approval's window too: prove nothing is sent late.
    page.wait_for_timeout(max(0, (undone + UNDO_SECONDS + 1 - time.monotonic()) * 1000))
    assert status(second) == "pending"
    expect(rows).to_have_count(1)
    expect(top).to_be_visible()
