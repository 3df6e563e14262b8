"""The dashboard page in a real browser against the real stack (uvicorn, Celery worker, PostgreSQL, Redis)."""
import json
import time

import pytest
from playwright.sync_api import expect

from tests.dashboard_ui.helpers import (
    PASSWORD,
    api_cells,
    approve_new,
    chart_value,
    create_admin,
    decide,
    kpi,
    last_seq,
    page_cells,
    painted_pixels,
    pending_row,
    sign_in,
    status,
    submit_pending,
    this_week,
    total,
    week_total,
    weeks_ago,
)
from tests.stack import Browserless

pytestmark = [pytest.mark.e2e, pytest.mark.needs_postgres, pytest.mark.needs_redis]

# The largest amount one transaction may have; ten of them sum past 2^53 minor units, where a
# float would no longer be exact.
HUGE = "9999999999999.99"
HUGE_COUNT = 10


def test_an_admin_signs_in_through_the_form_and_sees_the_seeded_weekly_totals_exactly_in_table_chart_and_kpis(
    live_stack, browser
):
    create_admin("ada")
    week, last = this_week(), weeks_ago(1)
    for _ in range(HUGE_COUNT):
        approve_new(HUGE, "EUR", week)
    approve_new("0.10", "EUR", last)
    approve_new("0.20", "EUR", last)
    approve_new("1200", "JPY", week)
    approve_new("34", "JPY", week)
    approve_new("19.99", "USD", weeks_ago(3))
    submit_pending("500.00", "EUR", week, reference="NOT-YET")  # pending: counted nowhere
    rest = Browserless(live_stack.base_url).login("ada", PASSWORD)
    report = rest.get("/api/analytics/weekly-income/").json()

    page = browser.new().new_page()
    sign_in(page, live_stack.base_url, "ada")

    expect(page).to_have_title("Ledgerpulse")
    eur_now, eur_last = total(*[HUGE] * HUGE_COUNT), total("0.10", "0.20")
    assert eur_now == "99999999999999.90" and eur_last == "0.30"
    assert int(eur_now.replace(".", "")) > 2**53
    expect(week_total(page, week, "EUR")).to_have_attribute("data-value", eur_now)
    expect(week_total(page, week, "EUR")).to_have_attribute("data-count", str(HUGE_COUNT))
    expect(week_total(page, week, "EUR")).to_contain_text("€99,999,999,999,999.90")
    expect(week_total(page, last, "EUR")).to_have_attribute("data-value", "0.30")
    expect(week_total(page, week, "JPY")).to_have_attribute("data-value", "1234")
    expect(week_total(page, weeks_ago(3), "USD")).to_have_attribute("data-value", "19.99")
    expect(week_total(page, weeks_ago(3), "EUR")).to_have_attribute("data-value", "0.00")
    # Every cell, zeros included, is the REST API's string, and nothing more is shown.
    assert page_cells(page) == api_cells(report)
    assert len(report["results"]) == 12 * 3
    expect(last_seq(page)).to_have_attribute("data-value", str(report["as_of"]))

    # The chart: one currency at a time (a switcher for the others), drawn, with the same figures.
    canvas = page.locator('[data-testid="income-chart"]')
    expect(canvas).to_be_visible()
    box = canvas.bounding_box()
    assert box["width"] > 300 and box["height"] > 200
    page.wait_for_function("() => document.querySelector('#chart-box').dataset.drawn === 'true'")
    page.wait_for_timeout(400)  # the 300 ms draw animation
    assert painted_pixels(page) > 2000
    labels = page.evaluate("() => Chart.getChart(document.querySelector('[data-testid=income-chart]')).data.datasets.map(d => d.label)")
    assert labels == ["EUR", "EUR reversed"]  # net bars, and the reversed spans (none here)
    options = page.eval_on_selector_all('[data-testid="currency-option"]', "inputs => inputs.map((i) => i.value)")
    assert options == ["EUR", "JPY", "USD"]
    assert chart_value(page, "EUR", week) == float(eur_now)
    assert chart_value(page, "USD", weeks_ago(3)) == 19.99

    # KPI tiles: exact strings, and a percent change computed on exact minor units.
    expect(kpi(page, "EUR", "this-week")).to_have_attribute("data-value", eur_now)
    expect(kpi(page, "EUR", "last-week")).to_have_attribute("data-value", "0.30")
    # The change compares with last week up to this time of the week, as the dashboard stood then:
    # every event was recorded just now, so there was nothing yet (tests/dashboard_ui/test_chart.py
    # checks a real week-to-date figure).
    expect(kpi(page, "EUR", "change")).to_have_attribute("data-state", "ready")
    expect(kpi(page, "EUR", "last-week-to-date")).to_have_attribute("data-value", "0.00")
    expect(kpi(page, "EUR", "change")).to_have_attribute("data-value", "")
    expect(kpi(page, "JPY", "change")).to_have_attribute("data-value", "")  # nothing last week to compare with
    expect(kpi(page, "JPY", "change")).to_contain_text("New")

    expect(page.locator('[data-testid="pending-row"]')).to_have_count(1)
    expect(page.locator('[data-testid="pending-count"]')).to_have_attribute("data-value", "1")

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{live_stack.base_url}/accounts/login/")
    page.goto(f"{live_stack.base_url}/dashboard/")
    expect(page).to_have_url(f"{live_stack.base_url}/accounts/login/?next=/dashboard/")


def test_an_approval_by_one_admin_reaches_another_admins_table_chart_kpi_and_queue_within_two_seconds_without_reload(
    live_stack, browser
):
    create_admin("ada")
    create_admin("grace")
    week = this_week()
    approve_new("100.00", "EUR", week)
    approve_new("40.00", "EUR", weeks_ago(1))
    keep = submit_pending("5.00", "EUR", week, reference="INV-KEEP")
    target = submit_pending("12.34", "EUR", week, reference="INV-2002")

    first_context = browser.new()
    # This test times the approval itself, so the approver's page sends at once (no undo window;
    # tests/dashboard_ui/test_detail_panel.py covers the window).
    first_context.add_init_script("localStorage.setItem('ledgerpulse.approveUndoMs', '0')")
    first = first_context.new_page()
    second = browser.new().new_page()
    sign_in(first, live_stack.base_url, "ada")
    sign_in(second, live_stack.base_url, "grace")
    for page in (first, second):
        expect(pending_row(page, target)).to_be_visible()
        expect(page.locator('[data-testid="pending-count"]')).to_have_attribute("data-value", "2")
    expect(week_total(second, week, "EUR")).to_have_attribute("data-value", "100.00")
    second.evaluate("() => { window.__sameDocument = true; }")

    started = time.monotonic()
    pending_row(first, target).get_by_role("button", name="Approve").click()

    def left_ms() -> float:
        return max(1.0, 2000 - (time.monotonic() - started) * 1000)

    expect(week_total(second, week, "EUR")).to_have_attribute("data-value", "112.34", timeout=left_ms())
    expect(week_total(second, week, "EUR")).to_have_attribute("data-count", "2", timeout=left_ms())
    expect(pending_row(second, target)).to_have_count(0, timeout=left_ms())
    expect(pending_row(first, target)).to_have_count(0, timeout=left_ms())
    expect(kpi(second, "EUR", "this-week")).to_have_attribute("data-value", "112.34", timeout=left_ms())
    expect(kpi(second, "EUR", "last-week")).to_have_attribute("data-value", "40.00", timeout=left_ms())
    second.wait_for_function(
        """([week]) => {
            const chart = Chart.getChart(document.querySelector('[data-testid="income-chart"]'));
            return chart.data.datasets.find((d) => d.label === 'EUR').data.at(-1) === 112.34;
        }""",
        arg=[str(week)],
        timeout=left_ms(),
    )
    assert chart_value(second, "EUR", week) == 112.34
    expect(second.locator('[data-testid="pending-count"]')).to_have_attribute("data-value", "1", timeout=left_ms())
    assert time.monotonic() - started < 2.0
    assert second.evaluate("() => window.__sameDocument === true"), "the second page reloaded"

    # The untouched row stays in both queues; both feeds show the approval once.
    expect(pending_row(second, keep)).to_be_visible()
    expect(pending_row(first, keep)).to_be_visible()
    for page in (first, second):
        feed = page.locator(f'[data-testid="feed-item"][data-type="transaction.approved"][data-id="{target}"]')
        expect(feed).to_have_count(1)
        expect(feed).to_contain_text("INV-2002")
        expect(feed).to_contain_text("by ada")


def test_after_the_server_restarts_the_page_shows_reconnecting_then_resumes_to_the_apis_exact_totals_and_position(
    live_stack, browser
):
    create_admin("ada")
    week = this_week()
    approve_new("50.00", "EUR", week)
    first = submit_pending("7.25", "EUR", week, reference="INV-A")
    second = submit_pending("3.10", "EUR", week, reference="INV-B")
    dropped = submit_pending("99.99", "USD", weeks_ago(2), reference="INV-C")
    stays = submit_pending("1.00", "USD", week, reference="INV-D")
    rest = Browserless(live_stack.base_url).login("ada", PASSWORD)

    page = browser.new().new_page()
    sent = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(payload)))
    sign_in(page, live_stack.base_url, "ada")
    expect(week_total(page, week, "EUR")).to_have_attribute("data-value", "50.00")
    seq_before = int(last_seq(page).get_attribute("data-value"))
    assert seq_before > 0

    live_stack.processes["uvicorn"].stop()
    expect(status(page)).to_have_attribute("data-state", "reconnecting")
    expect(status(page)).to_contain_text("Reconnecting")

    # Decisions while the page has no socket: two approvals, a rejection, and a new currency.
    decide(first, "approved")
    decide(second, "approved")
    decide(dropped, "rejected", reason="duplicate")
    approve_new("5000", "JPY", week)
    expect(status(page)).to_have_attribute("data-state", "reconnecting")
    expect(week_total(page, week, "EUR")).to_have_attribute("data-value", "50.00")
    expect(pending_row(page, first)).to_be_visible()

    live_stack.start_server("uvicorn2")
    # Full-jitter backoff, capped at 30 s, decides when the next attempt comes.
    expect(status(page)).to_have_attribute("data-state", "connected", timeout=40_000)

    report = rest.get("/api/analytics/weekly-income/").json()
    expect(week_total(page, week, "EUR")).to_have_attribute("data-value", total("50.00", "7.25", "3.10"))
    expect(week_total(page, week, "JPY")).to_have_attribute("data-value", "5000")
    assert page_cells(page) == api_cells(report)
    expect(last_seq(page)).to_have_attribute("data-value", str(report["as_of"]))

    pending = rest.get("/api/transactions/", status="pending").json()["results"]
    assert [t["id"] for t in pending] == [stays]
    expect(page.locator('[data-testid="pending-row"]')).to_have_count(1)
    expect(pending_row(page, stays)).to_be_visible()
    expect(page.locator('[data-testid="pending-count"]')).to_have_attribute("data-value", "1")

    resumes = [json.loads(f) for f in sent if '"resume"' in f]
    assert resumes and resumes[0] == {"type": "resume", "since": seq_before}


def test_going_offline_shows_offline_and_coming_back_converges_to_decisions_made_meanwhile(live_stack, browser):
    create_admin("ada")
    week = this_week()
    approve_new("10.00", "EUR", week)
    waiting = submit_pending("2.50", "EUR", week, reference="INV-OFF")
    rest = Browserless(live_stack.base_url).login("ada", PASSWORD)

    context = browser.new()
    page = context.new_page()
    sign_in(page, live_stack.base_url, "ada")
    context.set_offline(True)
    expect(status(page)).to_have_attribute("data-state", "offline")

    decided = rest.post(f"/api/transactions/{waiting}/approve/", {"reason": "while offline"})
    assert decided.status_code == 200, decided.text
    position = decided.json()["position"]
    assert rest.get("/api/analytics/weekly-income/", min_position=position).status_code == 200
    page.wait_for_timeout(500)
    expect(week_total(page, week, "EUR")).to_have_attribute("data-value", "10.00")  # nothing arrives offline

    context.set_offline(False)
    expect(status(page)).to_have_attribute("data-state", "connected", timeout=5_000)  # at once, no backoff
    report = rest.get("/api/analytics/weekly-income/").json()
    expect(week_total(page, week, "EUR")).to_have_attribute("data-value", "12.50")
    assert page_cells(page) == api_cells(report)
    expect(last_seq(page)).to_have_attribute("data-value", str(report["as_of"]))
    expect(pending_row(page, waiting)).to_have_count(0)


def test_rejecting_asks_for_a_reason_in_a_keyboard_operable_dialog_and_the_row_leaves_the_queue(live_stack, browser):
    create_admin("ada")
    week = this_week()
    approve_new("1.00", "EUR", week)
    older = submit_pending("8.00", "EUR", week, reference="INV-OLD")
    target = submit_pending("30.00", "EUR", week, reference="INV-REJ", description="Office chairs")
    rest = Browserless(live_stack.base_url).login("ada", PASSWORD)

    page = browser.new().new_page()
    sign_in(page, live_stack.base_url, "ada")
    dialog = page.get_by_role("dialog", name="Reject transaction")
    reject = pending_row(page, target).get_by_role("button", name="Reject")

    # Escape cancels: nothing is sent, focus returns to the button.
    reject.focus()
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("INV-REJ")
    reason = dialog.get_by_label("Reason for rejecting")
    expect(reason).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(reject).to_be_focused()
    assert rest.get(f"/api/transactions/{target}/").json()["status"] == "pending"

    page.keyboard.press("Enter")
    expect(reason).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Reject transaction")).to_be_focused()
    page.keyboard.press("Enter")  # no reason yet
    expect(dialog.get_by_role("alert")).to_contain_text("Enter a reason")
    expect(reason).to_have_attribute("aria-invalid", "true")
    expect(reason).to_be_focused()
    assert rest.get(f"/api/transactions/{target}/").json()["status"] == "pending"

    page.keyboard.type("Duplicate of INV-OLD")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    with page.expect_response(lambda r: r.url.endswith(f"/api/transactions/{target}/reject/")) as response:
        page.keyboard.press("Enter")
    assert response.value.status == 200
    position = response.value.json()["position"]
    expect(dialog).to_be_hidden()
    expect(pending_row(page, target)).to_have_count(0)
    expect(pending_row(page, older).get_by_role("button", name="Approve")).to_be_focused()
    decided = rest.get(f"/api/transactions/{target}/").json()
    assert (decided["status"], decided["decision_reason"], decided["decided_by"]) == ("rejected", "Duplicate of INV-OLD", "ada")
    feed = page.locator(f'[data-testid="feed-item"][data-type="transaction.rejected"][data-id="{target}"]')
    expect(feed).to_have_count(1)
    expect(feed).to_contain_text("Duplicate of INV-OLD")
    expect(page.locator('[data-testid="pending-count"]')).to_have_attribute("data-value", "1")
    # Once the page has applied the rejection's position, the week still holds only the approved income.
    as_of = rest.get("/api/analytics/weekly-income/", min_position=position).json()["as_of"]
    expect(last_seq(page)).to_have_attribute("data-value", str(as_of))
    expect(week_total(page, week, "EUR")).to_have_attribute("data-value", "1.00")
    expect(week_total(page, week, "EUR")).to_have_attribute("data-count", "1")


def test_a_52_week_range_is_read_from_the_api_and_live_updates_apply_on_top(live_stack, browser):
    create_admin("ada")
    old_week = weeks_ago(30)
    approve_new("70.00", "USD", old_week)
    approve_new("1.00", "USD", this_week())
    late = submit_pending("0.05", "USD", old_week, reference="INV-LATE")
    rest = Browserless(live_stack.base_url).login("ada", PASSWORD)

    page = browser.new().new_page()
    sign_in(page, live_stack.base_url, "ada")
    expect(page.locator('[data-testid="week-total"]')).to_have_count(12)
    expect(week_total(page, old_week, "USD")).to_have_count(0)

    page.get_by_role("radio", name="52 weeks").check()
    expect(page.locator('[data-testid="week-total"]')).to_have_count(52)
    expect(week_total(page, old_week, "USD")).to_have_attribute("data-value", "70.00")
    expect(page).to_have_url(f"{live_stack.base_url}/dashboard/?weeks=52")
    report = rest.get("/api/analytics/weekly-income/", **{"from": str(weeks_ago(51)), "to": str(this_week())}).json()
    assert page_cells(page) == api_cells(report)
    assert chart_value(page, "USD", old_week) == 70.0

    approved = rest.post(f"/api/transactions/{late}/approve/", {})
    assert approved.status_code == 200, approved.text
    expect(week_total(page, old_week, "USD")).to_have_attribute("data-value", "70.05")
    expect(week_total(page, old_week, "USD")).to_have_attribute("data-count", "2")
    expect(page.locator('[data-testid="range-total"][data-currency="USD"]')).to_have_attribute("data-value", "71.05")
