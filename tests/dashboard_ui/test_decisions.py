"""Corrections and four-eyes control on the dashboard, in real browsers against the real stack (with dual
control on for EUR at 1,000): reversing from the feed and the detail panel reaches a second browser's bars
and table live; a selection is approved in one bulk request, refused rows stay selected with the reason;
the 403s read as sentences; rows awaiting a second approval say who approved first; the review-queue
tiles follow the decisions."""
import pytest
from playwright.sync_api import expect

from tests.dashboard_ui.helpers import (
    PASSWORD,
    approved_transaction,
    create_admin,
    pending_row,
    sign_in,
    submit_pending,
    this_week,
    week_total,
)
from tests.stack import Browserless

pytestmark = [pytest.mark.e2e, pytest.mark.needs_postgres, pytest.mark.needs_redis]

# Violations of the Content-Security-Policy, collected in the page (the dialogs and the hatched bars included).
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""
NO_UNDO_WINDOW = "localStorage.setItem('ledgerpulse.approveUndoMs', '0')"


@pytest.fixture
def pages(dual_control_stack, dual_control_browser):
    """`pages(username)`: a new browser context (its own cookies) signed in as `username`, without the undo window."""

    def open_page(username: str, **size):
        context = dual_control_browser.new(**size)
        context.add_init_script(RECORD_VIOLATIONS)
        context.add_init_script(NO_UNDO_WINDOW)
        page = context.new_page()
        sign_in(page, dual_control_stack.base_url, username)
        return page

    return open_page


def violations(page):
    return page.evaluate("window.__cspViolations")


def chart_point(page, index: int = -1):
    """What the chart draws for a week (default the newest): the net bar and the reversed span ([net, gross] or None)."""
    return page.evaluate(
        """(index) => {
            const chart = Chart.getChart(document.querySelector('[data-testid="income-chart"]'));
            const at = (data) => data.at(index);
            return [at(chart.data.datasets[0].data), at(chart.data.datasets[1].data)];
        }""",
        index,
    )


def feed_item(page, kind: str, transaction_id: str):
    return page.locator(f'[data-testid="feed-item"][data-type="transaction.{kind}"][data-id="{transaction_id}"]')


def rq(page, tile: str):
    return page.locator(f'[data-testid="rq-{tile}"]')


def test_it_reverses_from_the_feed_and_the_detail_panel_and_another_browser_sees_net_bars_and_columns_change_live(
    dual_control_stack, pages
):
    create_admin("ada")
    create_admin("grace")
    week = this_week()
    keep = approved_transaction("100.00", "EUR", week, reference="INV-KEEP")
    refund = approved_transaction("40.00", "EUR", week, reference="INV-REFUND")
    ada, grace = pages("ada"), pages("grace")
    for page in (ada, grace):
        expect(week_total(page, week, "EUR")).to_have_attribute("data-value", "140.00")
        expect(page.locator('[data-testid="week-reversed"]')).to_have_count(0)  # no reversal: net only

    # From the live feed: the reason is required, asked in a dialog (not window.prompt).
    feed_item(ada, "approved", refund).locator('[data-testid="reverse"]').click()
    dialog = ada.locator('[data-testid="reverse-dialog"]')
    expect(dialog).to_be_visible()
    expect(dialog.locator("#reverse-summary")).to_contain_text("INV-REFUND · €40.00")
    expect(ada.get_by_label("Reason for reversing")).to_be_focused()
    ada.locator('[data-testid="reverse-confirm"]').click()
    expect(ada.locator('[data-testid="reverse-error"]')).to_contain_text("Enter a reason")
    ada.get_by_label("Reason for reversing").fill("Customer refund")
    ada.locator('[data-testid="reverse-confirm"]').click()
    expect(dialog).to_be_hidden()

    # The other browser: the bar is the net, the reversal a span from net to gross, the table gains columns.
    cell = week_total(grace, week, "EUR")
    expect(cell).to_have_attribute("data-value", "100.00")
    expect(cell).to_have_attribute("data-gross", "140.00")
    expect(cell).to_have_attribute("data-reversed", "40.00")
    expect(grace.locator(f'[data-testid="week-reversed"][data-week="{week}"][data-currency="EUR"]')).to_have_attribute("data-value", "40.00")
    expect(grace.locator(f'[data-testid="week-gross"][data-week="{week}"][data-currency="EUR"]')).to_have_attribute("data-value", "140.00")
    grace.wait_for_function("() => Chart.getChart(document.querySelector('[data-testid=income-chart]')).data.datasets[0].data.at(-1) === 100")
    assert chart_point(grace) == [100, [100, 140]]
    expect(grace.locator("#chart-legend")).to_be_visible()
    expect(feed_item(grace, "reversed", refund)).to_contain_text("Customer refund")
    expect(feed_item(grace, "reversed", refund)).to_contain_text("by ada")
    expect(grace.locator('[data-testid="kpi"][data-currency="EUR"] [data-testid="kpi-reversed"]')).to_have_attribute("data-value", "40.00")
    # The approval can no longer be reversed, on either page.
    for page in (ada, grace):
        expect(feed_item(page, "approved", refund).locator('[data-testid="reverse"]')).to_be_hidden()
        expect(feed_item(page, "approved", refund).locator('[data-testid="reversed-mark"]')).to_be_visible()

    # From the detail panel: the panel shows the new status and the reversal in the audit trail.
    feed_item(ada, "approved", keep).locator('[data-testid="open-detail"]').click()
    panel = ada.locator('[data-testid="detail-panel"]')
    expect(panel.locator('[data-testid="detail-status"]')).to_have_text("approved")
    panel.locator('[data-testid="reverse"]').click()
    ada.get_by_label("Reason for reversing").fill("Approved by mistake")
    ada.locator('[data-testid="reverse-confirm"]').click()
    expect(panel.locator('[data-testid="detail-status"]')).to_have_text("reversed by ada")
    expect(panel.locator('[data-testid="audit-entry"][data-type="TransactionReversed"] [data-testid="audit-why"]')).to_have_text("Approved by mistake")
    expect(panel.locator('[data-testid="reverse"]')).to_be_hidden()

    expect(cell).to_have_attribute("data-value", "0.00")
    expect(cell).to_have_attribute("data-reversed", "140.00")
    rest = Browserless(dual_control_stack.base_url).login("grace", PASSWORD)
    row = next(r for r in rest.get("/api/analytics/weekly-income/", currency="EUR").json()["results"] if r["week_start"] == str(week))
    assert (row["net"], row["gross"], row["reversed"], row["total"]) == ("0.00", "140.00", "140.00", "0.00")
    assert violations(ada) == [] and violations(grace) == []


def test_the_queue_decides_a_selection_in_bulk_says_why_rows_were_refused_and_marks_second_approvals(dual_control_stack, pages):
    create_admin("ada")
    create_admin("grace")
    week = this_week()
    b1 = submit_pending("10.00", "EUR", week, reference="INV-B1")
    b2 = submit_pending("20.00", "EUR", week, reference="INV-B2")
    b3 = submit_pending("30.00", "USD", week, reference="INV-B3", description="Hosting")
    other = submit_pending("5.00", "EUR", week, reference="PO-9")
    big = submit_pending("5000.00", "EUR", week, reference="BIG-1")
    rest = Browserless(dual_control_stack.base_url).login("ada", PASSWORD)
    mine = rest.post("/api/transactions/", {"amount": "40.00", "currency": "EUR", "reference": "INV-B4"}).json()["id"]
    ada, grace = pages("ada"), pages("grace")

    expect(rq(ada, "pending")).to_have_attribute("data-value", "6")
    expect(rq(ada, "median")).to_have_attribute("data-value", "")  # no decision yet this week
    # The oldest pending one's age ticks on the page between updates.
    age = int(rq(ada, "oldest").get_attribute("data-value"))
    ada.wait_for_function("(age) => Number(document.querySelector('[data-testid=rq-oldest]').dataset.value) > age", arg=age)

    # Search (reference, description or amount) and the currency filter narrow what is shown and selectable.
    search = ada.locator('[data-testid="pending-search"]')
    search.fill("INV-B")
    expect(ada.locator('[data-testid="pending-row"]')).to_have_count(4)
    ada.locator('[data-testid="pending-currency"]').select_option("USD")
    expect(ada.locator('[data-testid="pending-row"]')).to_have_count(1)
    expect(pending_row(ada, b3)).to_be_visible()
    search.fill("hosting")
    expect(pending_row(ada, b3)).to_be_visible()
    ada.locator('[data-testid="pending-currency"]').select_option("")
    search.fill("5000")
    expect(ada.locator('[data-testid="pending-row"]')).to_have_count(1)
    expect(pending_row(ada, big)).to_be_visible()
    search.fill("INV-B")
    expect(ada.locator('[data-testid="pending-row"]')).to_have_count(4)

    # Select all shown, approve in one request: ada's own submission is refused and stays selected, with why.
    ada.locator('[data-testid="select-all"]').check()
    expect(ada.locator('[data-testid="selection-count"]')).to_have_attribute("data-value", "4")
    with ada.expect_request(lambda r: r.url.endswith("/api/transactions/bulk-decisions/")) as sent:
        ada.locator('[data-testid="bulk-approve"]').click()
    assert sent.value.header_value("idempotency-key")
    assert sorted(d["id"] for d in sent.value.post_data_json["decisions"]) == sorted([b1, b2, b3, mine])
    for txn in (b1, b2, b3):
        expect(pending_row(ada, txn)).to_have_count(0)
        expect(pending_row(grace, txn)).to_have_count(0)
    refused = pending_row(ada, mine)
    expect(refused.locator('[data-testid="row-problem"]')).to_contain_text("You submitted INV-B4 yourself, so you cannot approve it")
    expect(refused.locator('[data-testid="select-row"]')).to_be_checked()
    expect(ada.locator('[data-testid="selection-count"]')).to_have_attribute("data-value", "1")
    # The same refusal for the row's own Approve button: a sentence in the row and in a message, not an error code.
    refused.locator('[data-testid="approve"]').click()
    expect(ada.locator("#toasts")).to_contain_text("You submitted INV-B4 yourself, so you cannot approve it: another admin has to.")
    expect(refused.locator('[data-testid="row-problem"]')).to_contain_text("You can still reject (withdraw) it.")
    # The review queue moved, on both pages: fewer pending, and a median time to decision this week.
    for page in (ada, grace):
        expect(rq(page, "pending")).to_have_attribute("data-value", "3")
        expect(rq(page, "median")).not_to_have_attribute("data-value", "")
    expect(week_total(grace, week, "USD")).to_have_attribute("data-value", "30.00")

    # A submitter may still withdraw: reject the selection with one reason.
    ada.locator('[data-testid="bulk-reject"]').click()
    ada.locator('[data-testid="reject-reason"]').fill("Withdrawn: duplicate of INV-B2")
    ada.locator('[data-testid="reject-confirm"]').click()
    expect(pending_row(ada, mine)).to_have_count(0)
    expect(pending_row(grace, mine)).to_have_count(0)
    search.fill("")

    # Four eyes on a large amount: the first approval keeps the row, marked on every page with who gave it.
    pending_row(ada, big).locator('[data-testid="approve"]').click()
    for page in (ada, grace):
        mark = pending_row(page, big).locator('[data-testid="awaiting-mark"]')
        expect(mark).to_have_attribute("data-first-approver", "ada")
        expect(mark).to_contain_text("1st approval by ada")
    pending_row(ada, big).locator('[data-testid="approve"]').click()
    expect(pending_row(ada, big).locator('[data-testid="row-problem"]')).to_contain_text(
        "You already gave BIG-1 its first approval"
    )
    expect(week_total(grace, week, "EUR")).to_have_attribute("data-value", "30.00")  # B1 + B2: BIG-1 counts only when complete
    pending_row(grace, big).locator('[data-testid="approve"]').click()
    for page in (ada, grace):
        expect(pending_row(page, big)).to_have_count(0)
        expect(week_total(page, week, "EUR")).to_have_attribute("data-value", "5030.00")
        expect(rq(page, "pending")).to_have_attribute("data-value", "1")
    expect(pending_row(ada, other)).to_be_visible()
    assert violations(ada) == [] and violations(grace) == []
