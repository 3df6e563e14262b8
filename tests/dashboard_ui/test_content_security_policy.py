"""The Content-Security-Policy holds in a real browser: no violation on the dashboard, the sign-in page or Swagger UI."""
import pytest
from playwright.sync_api import expect

from tests.dashboard_ui.helpers import approve_new, create_admin, sign_in, submit_pending, this_week

pytestmark = [pytest.mark.e2e, pytest.mark.needs_postgres, pytest.mark.needs_redis]

# Collected in the page itself: a violation of any directive, with what was blocked.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


def violations(page):
    return page.evaluate("window.__cspViolations || []")


def test_it_shows_the_live_dashboard_and_swagger_ui_without_a_single_policy_violation(live_stack, browser):
    create_admin("csp")
    approve_new("12.50", "EUR", this_week())
    submit_pending("3.00", "USD", this_week(), reference="CSP-PENDING")
    context = browser.new()
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    console_errors = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)

    sign_in(page, live_stack.base_url, "csp")
    tile = page.locator('[data-testid="kpi"][data-currency="EUR"]')
    expect(tile).to_be_visible()
    # Settled: the tiles are redrawn once last week's figure at this time has been read.
    expect(tile.locator('[data-testid="kpi-change"]')).to_have_attribute("data-state", "ready")
    # The tiles' colours are set from script: through the CSSOM, which the policy allows.
    assert tile.evaluate("el => getComputedStyle(el).getPropertyValue('--accent').trim()") != ""
    expect(page.locator('[data-testid="pending-row"]').get_by_text("CSP-PENDING")).to_be_visible()
    assert violations(page) == []

    docs = context.new_page()
    docs.goto(f"{live_stack.base_url}/api/docs/")
    # The inline script ran (it builds the UI) and the inline style applied.
    expect(docs.locator(".swagger-ui .info .title")).to_contain_text("Ledgerpulse API")
    assert docs.evaluate("getComputedStyle(document.body).margin") == "0px"
    assert violations(docs) == []
    assert not [text for text in console_errors if "Content Security Policy" in text], console_errors
