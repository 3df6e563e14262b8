"""Helpers for the dashboard browser tests: seeding through the real commands, signing in, reading the page."""
from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from playwright.sync_api import Page, expect

from tests.dashboard_ui.conftest import in_thread

PASSWORD = "dashboard-password-123"


def this_week() -> date:
    from analytics.selectors import current_week_start

    return current_week_start()


def weeks_ago(n: int) -> date:
    return this_week() - timedelta(weeks=n)


def inside(week: date) -> datetime:
    """A moment inside `week` (UTC, as the stack is configured), never in the future."""
    moment = datetime.combine(week + timedelta(days=2), time(12, 0), tzinfo=timezone.utc)
    return min(moment, datetime.now(timezone.utc))


def total(*amounts: str) -> str:
    """The server's string for a sum: Decimal keeps the currency's digits ("0.10" + "0.20" -> "0.30")."""
    return str(sum((Decimal(a) for a in amounts[1:]), Decimal(amounts[0])))


def create_admin(username: str):
    from tests.stack import create_live_user

    return in_thread(create_live_user, username, PASSWORD)


def approve_new(amount: str, currency: str, week: date, reference: str = ""):
    """Submit and approve through the commands; returns the decision's position."""

    def run():
        from transactions import services

        txn = services.transaction_submit(
            amount=Decimal(amount), currency=currency, occurred_at=inside(week), reference=reference, actor="seed"
        )
        return services.transaction_approve(transaction_id=txn.id, actor="seed-approver", reason="seed").position

    return in_thread(run)


def approved_transaction(amount: str, currency: str, week: date, reference: str = "") -> str:
    """Submit (as "seed") and approve (as "seed-approver") through the commands; returns the transaction id."""

    def run():
        from transactions import services

        txn = services.transaction_submit(
            amount=Decimal(amount), currency=currency, occurred_at=inside(week), reference=reference, actor="seed"
        )
        services.transaction_approve(transaction_id=txn.id, actor="seed-approver", reason="seed")
        return str(txn.id)

    return in_thread(run)


def submit_pending(amount: str, currency: str, week: date, reference: str = "", description: str = "") -> str:
    def run():
        from transactions import services

        txn = services.transaction_submit(
            amount=Decimal(amount),
            currency=currency,
            occurred_at=inside(week),
            reference=reference,
            description=description,
            actor="seed",
        )
        return str(txn.id)

    return in_thread(run)


def decide(transaction_id: str, status: str, reason: str = "decided while the page was away") -> int:
    def run():
        from transactions import services

        command = services.transaction_approve if status == "approved" else services.transaction_reject
        return command(transaction_id=transaction_id, actor="other-admin", reason=reason).position

    return in_thread(run)


def sign_in(page: Page, base_url: str, username: str, password: str = PASSWORD) -> None:
    """Through the real login form, starting from the dashboard URL; waits for the live connection."""
    page.goto(f"{base_url}/dashboard/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/dashboard/$"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base_url}/dashboard/")
    expect(status(page)).to_have_attribute("data-state", "connected")


def status(page: Page):
    return page.locator('[data-testid="connection-status"]')


def week_total(page: Page, week: date | str, currency: str):
    return page.locator(f'[data-testid="week-total"][data-week="{week}"][data-currency="{currency}"]')


def pending_row(page: Page, transaction_id: str):
    return page.locator(f'[data-testid="pending-row"][data-id="{transaction_id}"]')


def kpi(page: Page, currency: str, part: str):
    return page.locator(f'[data-testid="kpi"][data-currency="{currency}"] [data-testid="kpi-{part}"]')


def last_seq(page: Page):
    return page.locator('[data-testid="last-seq"]')


def show_currency(page: Page, currency: str) -> None:
    """Pick `currency` in the chart's switcher (when there is a choice) and wait until the chart draws it."""
    option = page.locator(f'[data-testid="currency-option"][value="{currency}"]')
    if option.count() and not option.is_checked():
        option.check()
    page.wait_for_function(
        """(currency) => {
            const chart = window.Chart && window.Chart.getChart(document.querySelector('[data-testid="income-chart"]'));
            return chart && chart.data.datasets[0] && chart.data.datasets[0].label === currency;
        }""",
        arg=currency,
    )


def chart_value(page: Page, currency: str, week: date | str):
    """The number the chart draws for (week, currency), showing that currency first; None when there is no such point."""
    show_currency(page, currency)
    return page.evaluate(
        """([currency, week]) => {
            const chart = window.Chart && window.Chart.getChart(document.querySelector('[data-testid="income-chart"]'));
            if (!chart) return null;
            const weeks = [...document.querySelectorAll('[data-testid="week-total"]')].map((td) => td.dataset.week);
            const ordered = [...new Set(weeks)].sort();
            const index = ordered.indexOf(week);
            const dataset = chart.data.datasets.find((d) => d.label === currency);
            return dataset && index >= 0 ? dataset.data[index] : null;
        }""",
        [currency, str(week)],
    )


def page_cells(page: Page) -> dict[tuple[str, str], tuple[str, int]]:
    """Every weekly cell the table shows: (week, currency) -> (data-value, data-count)."""
    cells = page.eval_on_selector_all(
        '[data-testid="week-total"]',
        "tds => tds.map((td) => [td.dataset.week, td.dataset.currency, td.dataset.value, td.dataset.count])",
    )
    return {(week, currency): (value, int(count)) for week, currency, value, count in cells}


def api_cells(report: dict) -> dict[tuple[str, str], tuple[str, int]]:
    return {(r["week_start"], r["currency"]): (r["total"], r["count"]) for r in report["results"]}


def painted_pixels(page: Page) -> int:
    """How many pixels of the chart canvas are not transparent: 0 for a canvas nothing drew on."""
    return page.evaluate(
        """() => {
            const canvas = document.querySelector('[data-testid="income-chart"]');
            const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            let painted = 0;
            for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) painted += 1;
            return painted;
        }"""
    )
