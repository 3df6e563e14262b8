"""Full-page screenshots at a laptop and a phone size, written to test-artifacts/ for a human to look at
(docs/img/dashboard.png and dashboard-mobile.png are copies of the two viewport shots), plus the layout
facts a screenshot review would check: nothing wider than the phone, chart beside table. The stack runs
with dual control, so the demo has rows awaiting a second approval, and seed_demo reverses a few."""
import pytest
from playwright.sync_api import expect

from tests.dashboard_ui.helpers import create_admin, last_seq, sign_in, status
from tests.stack import Browserless

pytestmark = [pytest.mark.e2e, pytest.mark.needs_postgres, pytest.mark.needs_redis]

DEMO_USER, DEMO_PASSWORD = "admin", "ledgerpulse-demo"


def caught_up(rest: Browserless) -> int:
    """Wait until the projection has applied every event so far; returns that position."""
    position = 0
    while page := rest.get("/api/events/", after=position, limit=1000).json()["results"]:
        position = page[-1]["position"]
    report = rest.get("/api/analytics/weekly-income/", min_position=position)
    assert report.status_code == 200, report.text
    return report.json()["as_of"]


def all_waiting(rest: Browserless) -> list[dict]:
    """Every transaction waiting for a decision (pending or awaiting a second approval), newest first."""
    rows = []
    for status in ("pending", "awaiting_second_approval"):
        rows += rest.get("/api/transactions/", status=status, limit=200).json()["results"]
    return sorted(rows, key=lambda t: (t["created_at"], t["id"]), reverse=True)


@pytest.mark.seed_demo("--transactions", "150", "--seed", "7")  # run while the stack boots (tests/dashboard_ui/conftest.py)
def test_the_dashboard_reads_well_at_1280x800_and_390x844_and_screenshots_are_written(
    dual_control_stack, dual_control_browser, artifacts
):
    live_stack, browser = dual_control_stack, dual_control_browser
    create_admin("grace")
    rest = Browserless(live_stack.base_url).login("grace", "dashboard-password-123")
    # More pending than the snapshot's 20 newest, whatever the decisions below, so "Show older" has work.
    for n in range(6):
        created = rest.post("/api/transactions/", {"amount": f"{120 + n}.50", "currency": "EUR", "reference": f"INV-9{n:04d}", "description": "Consulting retainer"})
        assert created.status_code == 201, created.text
    caught_up(rest)

    login_page = browser.new(1280, 800).new_page()
    login_page.goto(f"{live_stack.base_url}/accounts/login/")
    login_page.screenshot(path=artifacts / "login-1280x800.png", full_page=True)

    wide = browser.new(1280, 800).new_page()
    sign_in(wide, live_stack.base_url, DEMO_USER, DEMO_PASSWORD)
    # The phone shares the laptop's session cookie (nothing of its localStorage, as a new browser): the form was just
    # used, and another password hash would only add a second of server CPU.
    narrow = browser.new(
        390, 844, device_scale_factor=2, is_mobile=True, has_touch=True, storage_state={"cookies": wide.context.cookies(), "origins": []}
    ).new_page()
    narrow.goto(f"{live_stack.base_url}/dashboard/")
    expect(narrow).to_have_url(f"{live_stack.base_url}/dashboard/")
    expect(status(narrow)).to_have_attribute("data-state", "connected")

    # Some live activity while both pages watch, so the feed and the flashes are real.
    # Small enough for one approval each (under the dual-control threshold).
    pending = [t for t in rest.get("/api/transactions/", status="pending", limit=50).json()["results"] if t["currency"] != "EUR"][:3]
    assert len(pending) == 3
    for txn, action, body in zip(pending, ("approve", "approve", "reject"), ({}, {}, {"reason": "Duplicate invoice"})):
        decided = rest.post(f"/api/transactions/{txn['id']}/{action}/", body)
        assert decided.status_code == 200, decided.text
    as_of = caught_up(rest)
    for page in (wide, narrow):
        expect(last_seq(page)).to_have_attribute("data-value", str(as_of))
        # The feed was filled from the events API on load (the seeded history), then got the 3 decisions live.
        expect(page.locator('[data-testid="feed-item"]')).to_have_count(50)
        for txn, kind in zip(pending, ("approved", "approved", "rejected")):
            expect(page.locator(f'[data-testid="feed-item"][data-type="transaction.{kind}"][data-id="{txn["id"]}"]')).to_have_count(1)
        expect(status(page)).to_have_attribute("data-state", "connected")
        page.wait_for_function("() => document.querySelector('#chart-box').dataset.drawn === 'true'")
    # Settled: no update flash or toast still animating (the connection dot pulses for ever) and the chart drawn.
    for page in (wide, narrow):
        page.wait_for_function(
            """() => document.getAnimations().every((a) => a.effect.getTiming().iterations === Infinity)
                && !Chart.animator.running(Chart.getChart(document.querySelector('[data-testid="income-chart"]')))"""
        )

    wide.screenshot(path=artifacts / "dashboard-1280x800.png", full_page=True)
    wide.screenshot(path=artifacts / "dashboard-1280x800-viewport.png")  # docs/img/dashboard.png
    narrow.screenshot(path=artifacts / "dashboard-390x844.png", full_page=True)
    narrow.screenshot(path=artifacts / "dashboard-390x844-viewport.png")
    narrow.locator(".card--chart").scroll_into_view_if_needed()
    # The chart card just under the sticky top bar.
    narrow.evaluate(
        "() => window.scrollBy(0, document.querySelector('.card--chart').getBoundingClientRect().top"
        " - document.querySelector('.topbar').getBoundingClientRect().height - 8)"
    )
    narrow.screenshot(path=artifacts / "dashboard-390x844-chart.png")  # docs/img/dashboard-mobile.png
    login_narrow = browser.new(390, 844, device_scale_factor=2, is_mobile=True).new_page()
    login_narrow.goto(f"{live_stack.base_url}/accounts/login/")
    login_narrow.screenshot(path=artifacts / "login-390x844.png", full_page=True)
    for name in ("dashboard-1280x800", "dashboard-390x844", "login-1280x800", "login-390x844"):
        assert (artifacts / f"{name}.png").stat().st_size > 20_000, name

    # Wide: KPIs, then the chart with the table beside it, the queue with the feed beside it.
    chart = wide.locator(".card--chart").bounding_box()
    table = wide.locator(".card--table").bounding_box()
    assert table["x"] > chart["x"] + chart["width"] - 1 and abs(table["y"] - chart["y"]) < 1
    assert chart["y"] + chart["height"] <= 800, "the chart is above the fold at 1280x800"
    assert wide.evaluate("document.documentElement.scrollWidth") <= 1280

    # Narrow: one column, nothing sticks out, the chart keeps a readable size, buttons are touch-sized.
    assert narrow.evaluate("document.documentElement.scrollWidth") <= 390
    overflowing = narrow.evaluate(
        """() => [...document.querySelectorAll('main *, header *')]
            .filter((el) => el.getClientRects().length && !el.closest('.table-scroll, .visually-hidden'))
            .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 0.5)
            .map((el) => el.outerHTML.slice(0, 80))"""
    )
    assert overflowing == []
    canvas = narrow.locator('[data-testid="income-chart"]').bounding_box()
    assert canvas["width"] >= 320 and canvas["height"] >= 220
    buttons = narrow.locator('[data-testid="pending-row"] td.actions button')
    assert buttons.count() > 0
    for index in range(min(buttons.count(), 6)):
        box = buttons.nth(index).bounding_box()
        assert box["height"] >= 36 and box["width"] >= 120
    # The weekly table fits the phone without sideways scrolling for the demo's three currencies.
    assert narrow.evaluate("(() => { const s = document.querySelector('.table-scroll'); return s.scrollWidth <= s.clientWidth; })()")

    # The queue shows the snapshot's newest rows first; older ones page in from the REST API on request.
    count = int(wide.locator('[data-testid="pending-count"]').get_attribute("data-value"))
    all_pending = all_waiting(rest)
    assert any(t["status"] == "awaiting_second_approval" for t in all_pending)
    assert count == len(all_pending) > wide.locator('[data-testid="pending-row"]').count()
    wide.get_by_role("button", name="Show older pending").click()
    expect(wide.locator('[data-testid="pending-row"]')).to_have_count(count)
    shown = wide.eval_on_selector_all('[data-testid="pending-row"]', "rows => rows.map((r) => r.dataset.id)")
    assert shown == [t["id"] for t in all_pending]  # newest first, as the API orders them
    expect(wide.get_by_role("button", name="Show older pending")).to_be_hidden()
