"""The server-rendered page and its assets, through Django's test client (no browser, no live stack)."""
import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders

STATIC = Path(__file__).resolve().parents[2] / "dashboard_ui" / "static" / "dashboard_ui"


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_the_login_page_and_back_to_the_dashboard_after(client):
    response = client.get("/dashboard/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/dashboard/"


def test_a_signed_in_user_without_staff_status_does_not_get_the_dashboard(client, plain_user):
    client.force_login(plain_user)
    response = client.get("/dashboard/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    login = client.get(response["Location"])
    assert "not a staff account" in login.content.decode()


def test_staff_get_the_page_with_its_hooks_a_csrf_cookie_and_only_local_scripts(client, admin_user):
    client.force_login(admin_user)
    response = client.get("/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<title>Ledgerpulse</title>" in html
    assert response.cookies["csrftoken"].value
    for hook in ('data-testid="connection-status"', 'data-testid="last-seq"', 'data-testid="pending-count"', 'data-testid="income-chart"'):
        assert hook in html
    assert 'data-can-decide="true"' in html
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', html)
    assert scripts == ["/static/dashboard_ui/vendor/chart.umd.min.js", "/static/dashboard_ui/js/dashboard.js"]
    assert not re.search(r'(src|href)="(https?:)?//', html), "no CDN or other remote asset"
    assert 'action="/accounts/logout/"' in html and 'method="post"' in html


def test_staff_without_the_decide_permission_get_disabled_decision_buttons(client, staff_user):
    client.force_login(staff_user)
    response = client.get("/dashboard/")
    assert response.status_code == 200
    assert 'data-can-decide="false"' in response.content.decode()


@pytest.mark.django_db
def test_the_login_page_labels_its_fields_and_keeps_the_next_url(client):
    html = client.get("/accounts/login/?next=/dashboard/").content.decode()
    assert '<label for="id_username">' in html and 'id="id_username"' in html
    assert '<label for="id_password">' in html and 'id="id_password"' in html
    assert 'name="next" value="/dashboard/"' in html
    assert "dashboard_ui/css/app.css" in html


def test_the_chart_library_is_vendored_with_its_license_and_version_note():
    library = STATIC / "vendor" / "chart.umd.min.js"
    head = library.read_text()[:200]
    version = re.search(r"Chart\.js v(4\.\d+\.\d+)", head)
    assert version, head
    assert "MIT License" in (STATIC / "vendor" / "chart.js-LICENSE.md").read_text()
    assert f"Chart.js {version.group(1)}" in (STATIC / "vendor" / "README.md").read_text()
    assert "sourceMappingURL" not in library.read_text()[-300:]


@pytest.mark.parametrize(
    "asset", ["dashboard_ui/vendor/chart.umd.min.js", "dashboard_ui/js/dashboard.js", "dashboard_ui/css/app.css"]
)
def test_page_assets_are_found_by_the_static_finders(asset):
    assert finders.find(asset), asset


def test_our_modules_import_only_relative_local_files():
    for module in (STATIC / "js").glob("*.js"):
        for target in re.findall(r'^import .* from "([^"]+)";', module.read_text(), flags=re.M):
            assert target.startswith("./") and (module.parent / target).is_file(), (module.name, target)
