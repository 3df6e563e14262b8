"""The income chart and the KPI tiles in a real browser against the real stack: one currency at a time as
bars on a labelled axis (remembered, present on a phone), week-to-date comparison, money shown once,
the freshness stamp and the CSV export of the visible range."""
import math
import re
from datetime import datetime, time, timedelta, timezone
from unittest import mock

import pytest
from playwright.sync_api import expect

from tests.dashboard_ui.conftest import in_thread
from tests.dashboard_ui.helpers import (
    PASSWORD,
    approve_new,
    create_admin,
    kpi,
    last_seq,
    pending_row,
    sign_in,
    submit_pending,
    this_week,
    weeks_ago,
)
from tests.stack import Browserless

pytestmark = [pytest.mark.e2e, pytest.mark.needs_postgres, pytest.mark.needs_redis]

CHART = """() => {
    const chart = Chart.getChart(document.querySelector('[data-testid="income-chart"]'));
    return {
        type: chart.config.type,
        labels: chart.data.datasets.map((d) => d.label),
        yAxes: Object.keys(chart.scales).filter((id) => chart.scales[id].axis === 'y'),
        title: chart.options.scales.y.title.display ? chart.options.scales.y.title.text : null,
        axisWidth: chart.scales.y.width,
        ticks: chart.scales.y.ticks.length,
    };
}"""


def approve_recorded_before(amount: str, currency: str, occurred_at: datetime, recorded_at: datetime) -> int:
    """Submit and approve with the event store's clock at `recorded_at` (a week-old event); returns the position."""

    def run():
        from transactions import services

        with mock.patch("django.utils.timezone.now", return_value=recorded_at):
            txn = services.transaction_submit(amount=amount, currency=currency, occurred_at=occurred_at, actor="seed")
            return services.transaction_approve(transaction_id=txn.id, actor="seed-approver", reason="seed").position

    return in_thread(run)


def drawn(page) -> dict:
    page.wait_for_function("() => document.querySelector('#chart-box').dataset.drawn === 'true'")
    return page.evaluate(CHART)


def test_the_chart_shows_one_currency_as_bars_on_its_own_titled_axis_remembered_across_reloads_and_on_a_phone(
    live_stack, browser
):
    from decimal import Decimal

    create_admin("ada")
    week, last = this_week(), weeks_ago(1)
    last_start = datetime.combine(last, time(0, 0), tzinfo=timezone.utc)
    elapsed = datetime.now(timezone.utc) - datetime.combine(week, time(0, 0), tzinfo=timezone.utc)
    # Last week, 40.00 had been approved by this time of the week; 60.00 more came later.
    approve_recorded_before(Decimal("40.00"), "EUR", last_start + timedelta(seconds=1), last_start + elapsed / 2)
    approve_new("60.00", "EUR", last)
    approve_new("50.00", "EUR", week)
    approve_new("1.234", "KWD", week)
    approve_new("19.99", "USD", week)
    kwd = submit_pending("2.5", "KWD", week, reference="INV-KWD")

    context = browser.new()
    page = context.new_page()
    lookups = []
    page.on("request", lambda request: "/api/events/" in request.url and "limit=1&" in request.url + "&" and lookups.append(request.url))
    sign_in(page, live_stack.base_url, "ada")

    chart = drawn(page)
    assert chart["type"] == "bar"
    assert chart["labels"] == ["EUR", "EUR reversed"] and chart["yAxes"] == ["y"]  # net bars, reversed spans
    assert chart["title"] == "Income per week (EUR)"
    assert chart["axisWidth"] > 20 and chart["ticks"] >= 2
    options = page.eval_on_selector_all('[data-testid="currency-option"]', "inputs => inputs.map((i) => i.value)")
    assert options == ["EUR", "KWD", "USD"]
    expect(page.locator('[data-testid="income-chart"]')).to_have_attribute("aria-label", re.compile(r"in EUR"))

    # Week to date: this week so far against last week up to the same time, not the whole of last week.
    expect(kpi(page, "EUR", "change")).to_have_attribute("data-state", "ready")
    expect(kpi(page, "EUR", "this-week")).to_have_attribute("data-value", "50.00")
    expect(kpi(page, "EUR", "last-week-to-date")).to_have_attribute("data-value", "40.00")
    expect(kpi(page, "EUR", "last-week")).to_have_attribute("data-value", "100.00")
    expect(kpi(page, "EUR", "change")).to_have_attribute("data-value", "25.0")
    expect(kpi(page, "EUR", "change")).to_contain_text("+25.0%")
    # The moment a week ago is found by binary search on the event feed: about log2(events) one-event reads.
    events = int(last_seq(page).get_attribute("data-value"))
    assert 0 < len(lookups) <= math.ceil(math.log2(events)) + 1, (len(lookups), events)

    # KWD: the code once, three decimals, in the tile and in the queue.
    expect(kpi(page, "KWD", "this-week")).to_have_text("KWD\u00a01.234")
    amount = pending_row(page, kwd).locator("td.amt")
    expect(amount).to_have_text("KWD\u00a02.500")
    assert "KWD KWD" not in page.locator("body").inner_text().replace("\u00a0", " ")

    # Freshness as a time of day, no event number.
    expect(last_seq(page)).to_have_text(re.compile(r"^\s*Updated\s+\d\d:\d\d:\d\d\s*$"))
    assert "Event #" not in page.locator("body").inner_text()

    # The choice of currency is remembered by this browser.
    page.locator('[data-testid="currency-option"][value="KWD"]').check()
    page.wait_for_function("() => Chart.getChart(document.querySelector('[data-testid=income-chart]')).data.datasets[0].label === 'KWD'")
    assert drawn(page)["title"] == "Income per week (KWD)"
    page.reload()
    chart = drawn(page)
    assert chart["labels"] == ["KWD", "KWD reversed"] and chart["title"] == "Income per week (KWD)"
    expect(page.locator('[data-testid="currency-option"][value="KWD"]')).to_be_checked()

    # A phone keeps the axis and its title.
    # Signed in with the laptop's session cookie only (its own, empty localStorage, as a new browser would have): another
    # sign-in through the form proves nothing new and costs a password hash.
    phone = browser.new(
        390, 844, device_scale_factor=2, is_mobile=True, has_touch=True, storage_state={"cookies": context.cookies(), "origins": []}
    ).new_page()
    phone.goto(f"{live_stack.base_url}/dashboard/")
    expect(phone).to_have_url(f"{live_stack.base_url}/dashboard/")
    chart = drawn(phone)
    assert chart["type"] == "bar" and chart["labels"] == ["EUR", "EUR reversed"]
    assert chart["title"] == "Income per week (EUR)"
    assert chart["axisWidth"] > 20 and chart["ticks"] >= 2


def test_the_csv_export_downloads_exactly_the_weeks_on_screen(live_stack, browser):
    create_admin("ada")
    approve_new("12.50", "EUR", this_week())
    approve_new("7.00", "EUR", weeks_ago(20))
    rest = Browserless(live_stack.base_url).login("ada", PASSWORD)

    page = browser.new().new_page()
    sign_in(page, live_stack.base_url, "ada")
    for weeks in (12, 26):
        page.locator(f'input[name="range"][value="{weeks}"]').check()
        expect(page.locator('[data-testid="week-total"][data-currency="EUR"]')).to_have_count(weeks)
        with page.expect_download() as info:
            page.get_by_role("link", name="Export CSV").click()
        download = info.value
        rows = download.path().read_text().strip().splitlines()
        first = str(weeks_ago(weeks - 1))
        assert rows[0] == "week_start,currency,total,count,gross,reversed,reversed_count,net"
        assert [r.split(",")[0] for r in rows[1:]] == [str(weeks_ago(n)) for n in range(weeks - 1, -1, -1)]
        expected = rest.get("/api/analytics/weekly-income/", **{"from": first, "to": str(this_week()), "format": "csv"})
        assert rows == expected.text.strip().splitlines()
    assert f"{weeks_ago(20)},EUR,7.00,1,7.00,0.00,0,7.00" in rows
