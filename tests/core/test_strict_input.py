"""Input is parsed as strictly as docs/api.md says: JSON, query integers and dates, free text, request ids."""
import base64
import json
import uuid
from urllib.parse import parse_qs, urlencode, urlsplit
from datetime import timedelta

import pytest
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils import timezone

from core import eventstore
from core.middleware import RequestIdMiddleware
from tests.factories import approved, project_all, submit
from transactions.models import Transaction

pytestmark = pytest.mark.django_db
PROBLEM = "application/problem+json"
GOOD = {"amount": "12.50", "currency": "EUR", "occurred_at": "2026-11-18T09:30:00+01:00", "reference": "INV-7"}


def post_json(api, path, raw: str, **headers):
    return api.post(path, data=raw.encode(), content_type="application/json", **headers)


def create(api, **overrides):
    return api.post("/api/transactions/", {**GOOD, **overrides}, format="json")


def fields_of(response, status=400):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    return [error["field"] for error in response.json().get("errors", [])]


# --- JSON bodies ---------------------------------------------------------------


def test_a_duplicate_key_is_a_400_naming_the_key_and_stores_nothing(api):
    response = post_json(api, "/api/transactions/", '{"amount": "1.00", "currency": "EUR", "amount": "1000.00"}')
    assert fields_of(response) == ["amount"]
    body = response.json()
    assert body["code"] == "parse_error" and '"amount"' in body["detail"]
    assert not Transaction.objects.exists()


def test_a_duplicate_key_in_a_nested_object_is_refused_too(api):
    txn = submit()
    response = post_json(api, f"/api/transactions/{txn.id}/approve/", '{"reason": "ok", "x": {"a": 1, "a": 2}}')
    assert fields_of(response) == ["a"]


@pytest.mark.parametrize("number", ["1e3", "1E+3", "12.5e0", "1250e-2", "1.0E2"])
def test_an_amount_written_with_an_exponent_is_a_400_on_amount(api, number):
    response = post_json(api, "/api/transactions/", f'{{"amount": {number}, "currency": "EUR"}}')
    assert fields_of(response) == ["amount"]
    assert "exponent" in response.json()["errors"][0]["message"]
    assert not Transaction.objects.exists()


def test_an_amount_without_an_exponent_is_still_read_exactly(api):
    response = post_json(api, "/api/transactions/", '{"amount": 12.50, "currency": "EUR"}')
    assert response.status_code == 201, response.content
    assert response.json()["amount"] == "12.50"


@pytest.mark.parametrize("number", ["2e0", "2.0", "2E+0", '"2.0"', '" 2"', '"\u0662"', "true"])
def test_expected_version_is_never_an_integer_in_disguise(api, number):
    txn = submit()
    response = post_json(api, f"/api/transactions/{txn.id}/approve/", f'{{"expected_version": {number}}}')
    assert fields_of(response) == ["expected_version"]
    assert Transaction.objects.get(pk=txn.id).status == "pending"


def test_expected_version_as_an_integer_or_ascii_digits_is_accepted(api):
    txn = submit()
    response = post_json(api, f"/api/transactions/{txn.id}/approve/", '{"expected_version": "1"}')
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_stay_refused(api, literal):
    response = post_json(api, "/api/transactions/", f'{{"amount": {literal}, "currency": "EUR"}}')
    assert response.status_code == 400 and response.json()["code"] == "parse_error"


def test_json_nested_too_deeply_is_a_400_not_a_500(api):
    response = post_json(api, "/api/transactions/", "[" * 100_000 + "]" * 100_000)
    assert response.status_code == 400 and response.json()["code"] == "parse_error"


def test_an_amount_too_long_for_decimal_arithmetic_is_a_400_not_a_500(api):
    assert fields_of(create(api, amount="9" * 100)) == ["amount"]
    assert fields_of(post_json(api, "/api/transactions/", '{"amount": ' + "9" * 100 + ', "currency": "JPY"}')) == ["amount"]


@pytest.mark.parametrize("amount", ["\u0661\u0662", "\uff11\uff12", "\u00a012.50", "12.50 ", "+12.50", "1e3", "12,50"])
def test_amount_strings_are_plain_ascii_decimals(api, amount):
    assert fields_of(create(api, amount=amount)) == ["amount"]


# --- every bad field at once --------------------------------------------------------


def test_every_bad_field_is_listed_at_once(api):
    response = create(
        api,
        amount="-1",
        currency="ZZZ",
        reference="INV\u202eFDP.exe",
        description="a\x00b",
        occurred_at="0001-01-01T00:00:00Z",
    )
    assert sorted(fields_of(response)) == ["amount", "currency", "description", "occurred_at", "reference"]
    assert not Transaction.objects.exists() and eventstore.read_all() == []


def test_the_amounts_decimal_places_are_checked_even_when_another_field_failed(api):
    # Serializer.validate() never runs once a field failed: the currency check must not live there.
    response = create(api, amount="12.505", reference="x" * 141)
    assert sorted(fields_of(response)) == ["amount", "reference"]
    assert "2 decimal places" in next(e["message"] for e in response.json()["errors"] if e["field"] == "amount")


def test_the_amount_limit_is_checked_alongside_other_errors(api):
    response = create(api, amount="10000000000000.00", description="\u2066")
    assert sorted(fields_of(response)) == ["amount", "description"]


def test_an_amount_is_not_blamed_for_a_bad_currency(api):
    assert fields_of(create(api, amount="12.505", currency="ZZZ")) == ["currency"]


# --- text ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("reference", "INV\u202eFDP.exe"),
        ("reference", "INV-7\nINV-8"),
        ("reference", "INV\t7"),
        ("reference", "INV-7\x1f"),
        ("description", "paid\u200f"),
        ("description", "bell\x07"),
        ("description", "\x1b[31mred"),
    ],
)
def test_control_and_bidi_characters_are_refused_in_text(api, field, value):
    assert fields_of(create(api, **{field: value})) == [field]
    assert not Transaction.objects.exists()


def test_a_description_may_hold_line_breaks_and_tabs(api):
    response = create(api, description="line one\r\nline two\tindented")
    assert response.status_code == 201, response.content
    assert response.json()["description"] == "line one\r\nline two\tindented"


@pytest.mark.parametrize("decision", ["approve", "reject"])
@pytest.mark.parametrize("reason", ["ok\u202e", "ok\x00", "\x08ok", 12])
def test_a_decisions_reason_is_clean_text(api, decision, reason):
    txn = submit()
    response = api.post(f"/api/transactions/{txn.id}/{decision}/", {"reason": reason}, format="json")
    assert fields_of(response) == ["reason"]
    assert Transaction.objects.get(pk=txn.id).status == "pending"


def test_a_reason_may_span_lines(api):
    txn = submit()
    response = api.post(f"/api/transactions/{txn.id}/reject/", {"reason": "duplicate of\n\tINV-6"}, format="json")
    assert response.status_code == 200 and response.json()["decision_reason"] == "duplicate of\n\tINV-6"


# --- occurred_at -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        # A stable id: the value changes with the clock, and pytest-xdist workers must collect the same ids.
        pytest.param((timezone.now() + timedelta(days=3650)).isoformat(), id="ten-years-ahead"),
        "\u0662\u0660\u0662\u0666-11-18T09:30:00+01:00",
        "\uff12\uff10\uff12\uff16-11-18T09:30:00Z",
        "2026-11-18T09:30:00+01:00\u00a0",
    ],
)
def test_occurred_at_outside_the_window_or_not_ascii_is_a_400_on_occurred_at(api, value):
    assert fields_of(create(api, occurred_at=value)) == ["occurred_at"]


# --- integer query parameters --------------------------------------------------------------

# Each spells a value that is valid in ASCII ({n}), so only the spelling can be at fault.
DISGUISED_INTEGERS = [
    "{arabic}",
    "{fullwidth}",
    "{n}.0",
    "\u00a0{n}",
    " {n}",
    "{n} ",
    "+{n}",
    "0{n}.",
    "{n}e0",
    "{n}_0",
]
ARABIC = str.maketrans("0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669")
FULLWIDTH = str.maketrans("0123456789", "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19")


@pytest.mark.parametrize("template", DISGUISED_INTEGERS)
@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/api/events/", "after"),
        ("/api/events/", "limit"),
        ("/api/analytics/weekly-income/", "at"),
        ("/api/analytics/weekly-income/", "min_position"),
        ("/api/transactions/", "limit"),
    ],
)
def test_integer_query_parameters_take_ascii_digits_only(api, path, param, template):
    submit()
    project_all()
    n = eventstore.last_position() if path.startswith("/api/analytics/") else 5
    assert api.get(path, {param: str(n)}).status_code == 200
    value = template.format(n=n, arabic=str(n).translate(ARABIC), fullwidth=str(n).translate(FULLWIDTH))
    assert fields_of(api.get(path, {param: value})) == [param]


@pytest.mark.parametrize("value", ["\u00b2", "-1"])
def test_a_page_size_is_not_a_superscript_or_negative(api, value):
    # str.isdigit() is True for "\u00b2".
    assert fields_of(api.get("/api/transactions/", {"limit": value})) == ["limit"]


@pytest.mark.parametrize(("path", "param"), [("/api/events/", "after"), ("/api/analytics/weekly-income/", "at")])
def test_a_position_beyond_bigint_is_a_400_not_a_database_error(api, path, param):
    assert fields_of(api.get(path, {param: "9" * 25})) == [param]


def test_ascii_digits_still_work(api):
    submit()
    assert api.get("/api/events/", {"after": "0", "limit": "1"}).status_code == 200
    assert api.get("/api/transactions/", {"limit": "007"}).status_code == 200


# --- a parameter given twice -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "param", "first", "second"),
    [
        ("/api/transactions/", "currency", "EUR", "USD"),
        ("/api/transactions/", "limit", "5", "50"),
        ("/api/events/", "after", "0", "9"),
        ("/api/analytics/weekly-income/", "currency", "EUR", "USD"),
        ("/api/analytics/weekly-income/", "from", "2026-01-05", "2026-06-01"),
        ("/api/analytics/review-queue/", "to", "2026-01-05", "2026-06-01"),
    ],
)
def test_a_query_parameter_given_twice_is_a_400_naming_it_not_the_last_value_silently(api, path, param, first, second):
    submit()
    assert api.get(path, {param: second}).status_code == 200  # each value alone is fine
    response = api.get(f"{path}?{param}={first}&{param}={second}")
    assert fields_of(response) == [param]
    assert "given 2 times" in response.json()["errors"][0]["message"]


# --- dates and datetimes --------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"to": "0001-01-01"},
        {"from": "9999-12-31"},
        {"from": "1899-12-31", "to": "1900-01-08"},
        {"to": "9999-12-25"},
        {"from": "9999-12-24"},
        {"from": "\uff12\uff10\uff12\uff16-11-16"},
        {"from": "\u0662\u0660\u0662\u0666-11-16"},
        {"from": "2026-1-5"},
        {"from": "20261116"},
        {"from": "2026-11-16\u00a0"},
        {"to": "2026-11-16T00:00:00"},
    ],
)
def test_dates_outside_the_window_or_not_ascii_are_a_400_naming_the_parameter(api, params):
    response = api.get("/api/analytics/weekly-income/", params)
    assert fields_of(response) == [next(iter(params))], response.content


@pytest.mark.parametrize("params", [{"to": "1900-01-01"}, {"from": "1900-01-01"}, {"to": "9999-12-24"}, {"from": "9999-10-08"}, {"from": "9999-12-20", "to": "9999-12-24"}])
def test_the_edges_of_the_date_window_answer(api, params):
    response = api.get("/api/analytics/weekly-income/", params)
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("value", ["\u0662\u0660\u0662\u0666-11-18T09:30:00Z", "2026-11-18T09:30:00Z\u00a0", "2026-11-18T09:30:00Z\n", " 2026-11-18"])
def test_datetime_filters_take_ascii_only(api, value):
    assert fields_of(api.get("/api/transactions/", {"occurred_after": value})) == ["occurred_after"]


@pytest.mark.parametrize("value", ["1e3", "\u0661\u0662", "NaN", "12.5 ", "Infinity"])
def test_amount_filters_take_plain_ascii_decimals(api, value):
    assert fields_of(api.get("/api/transactions/", {"amount_min": value})) == ["amount_min"]


def test_a_forged_cursor_with_a_bad_position_is_a_400(api):
    cursor = base64.b64encode(b"p=not-a-date&r=0").decode()
    assert fields_of(api.get("/api/transactions/", {"cursor": cursor})) == ["cursor"]


# --- request ids ------------------------------------------------------------------------------


def run_middleware(**headers):
    seen = {}

    def view(request):
        seen["request"] = request
        return HttpResponse("ok")

    response = RequestIdMiddleware(view)(RequestFactory().get("/api/events/", headers=headers))
    return seen["request"], response


def test_the_request_id_is_generated_by_the_server_even_when_the_client_sends_one():
    request, response = run_middleware(**{"X-Request-ID": "client-chosen-id"})
    assert request.id != "client-chosen-id"
    assert uuid.UUID(hex=request.id).version == 4 and len(request.id) == 32
    assert response["X-Request-ID"] == request.id
    assert request.client_request_id == "client-chosen-id"


@pytest.mark.parametrize("value", ["", "has space", "x" * 129, "caf\u00e9", "a/b"])
def test_a_malformed_client_request_id_is_dropped(value):
    request, _ = run_middleware(**{"X-Request-ID": value})
    assert request.client_request_id is None
    assert len(request.id) == 32


def test_two_requests_never_share_an_id():
    first, _ = run_middleware(**{"X-Request-ID": "same"})
    second, _ = run_middleware(**{"X-Request-ID": "same"})
    assert first.id != second.id and first.client_request_id == second.client_request_id == "same"


def test_the_events_request_id_is_the_servers_and_the_clients_is_stored_apart(api):
    response = api.post("/api/transactions/", GOOD, format="json", headers={"X-Request-ID": "mine-123"})
    assert response.status_code == 201
    [event] = eventstore.read_all()
    assert event.metadata["request_id"] == response["X-Request-ID"] != "mine-123"
    assert event.metadata["client_request_id"] == "mine-123"


def test_a_malformed_client_request_id_never_reaches_the_log(api):
    response = api.post("/api/transactions/", GOOD, format="json", headers={"X-Request-ID": "x" * 129})
    assert response.status_code == 201
    [event] = eventstore.read_all()
    assert "client_request_id" not in event.metadata and "x" * 129 not in json.dumps(event.metadata)


# --- found in review: input that slipped past the rules above ---------------------------------


def cursor_for(position: str) -> str:
    return base64.b64encode(urlencode({"p": position}).encode()).decode()


def test_it_follows_the_cursors_it_hands_out(api):
    for n in range(3):
        submit(amount=f"{n + 1}.00")
    page = api.get("/api/transactions/", {"limit": 1}).json()
    cursor = parse_qs(urlsplit(page["next"]).query)["cursor"][0]
    position = parse_qs(base64.b64decode(cursor).decode())["p"][0]
    assert position.endswith("+00:00")  # the API's own cursors carry UTC as +00:00
    assert api.get(page["next"]).status_code == 200


@pytest.mark.parametrize(
    "position",
    ["2026-01-01T00:00:00-16:00", "2026-01-01T00:00:00+16:00", "2026-01-01 00:00:00+01:00", "2026-01-01 00:00:00", "2026-01-01"],
)
def test_it_refuses_a_cursor_whose_position_is_not_a_utc_instant_it_could_have_handed_out(api, position):
    submit()
    assert fields_of(api.get("/api/transactions/", {"cursor": cursor_for(position)})) == ["cursor"]


@pytest.mark.parametrize(("query", "param"), [("at=4&at=1", "at"), ("min_position=99&min_position=1", "min_position"), ("at=&at=1", "at")])
def test_it_refuses_a_position_given_twice_on_weekly_income_rather_than_taking_the_last(api, query, param):
    for _ in range(4):
        submit()
    project_all()
    response = api.get(f"/api/analytics/weekly-income/?{query}")
    assert fields_of(response) == [param]
    assert "given 2 times; give it once" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize("param", ["occurred_after", "occurred_before"])
def test_it_refuses_a_datetime_filter_without_an_offset_instead_of_reading_it_in_server_time(api, param):
    assert fields_of(api.get("/api/transactions/", {param: "2026-01-01T00:00:00"})) == [param]
    assert api.get("/api/transactions/", {param: "2026-01-01T00:00:00+01:00"}).status_code == 200


@pytest.mark.parametrize("reason", ["\u200b", "\u2800", "\u3164", "\ufeff", " \u200b\u00a0\u2060 ", "\ufe0f"])
@pytest.mark.parametrize("decision", ["reject", "reverse"])
def test_it_refuses_a_reason_that_only_looks_written(api, decision, reason):
    txn = approved(actor="other").transaction if decision == "reverse" else submit()
    before = Transaction.objects.get(pk=txn.id).status
    assert fields_of(api.post(f"/api/transactions/{txn.id}/{decision}/", {"reason": reason}, format="json")) == ["reason"]
    assert Transaction.objects.get(pk=txn.id).status == before


def test_it_still_takes_a_short_reason_in_any_script(api):
    txn = submit()
    assert api.post(f"/api/transactions/{txn.id}/reject/", {"reason": "\u91cd\u590d"}, format="json").status_code == 200


@pytest.mark.parametrize("separator", ["\u2028", "\u2029"])
def test_it_keeps_a_reference_on_one_line_unicode_separators_included(api, separator):
    assert fields_of(create(api, reference=f"INV-1{separator}PAID")) == ["reference"]
    assert not Transaction.objects.exists()


@pytest.mark.parametrize("code", ["\u0131nr", "\uff25\uff35\uff32", "\u0415UR"])
def test_it_takes_only_three_ascii_letters_as_a_currency(api, code):
    assert fields_of(create(api, currency=code)) == ["currency"]
    assert fields_of(api.get("/api/transactions/", {"currency": code})) == ["currency"]
    assert fields_of(api.get("/api/analytics/weekly-income/", {"currency": code})) == ["currency"]
    assert not Transaction.objects.exists()


def test_it_refuses_an_unknown_field_on_create_instead_of_defaulting_what_was_misspelt(api):
    response = create(api, ocurred_at="2025-01-06T10:00:00Z")
    assert fields_of(response) == ["ocurred_at"]
    assert not Transaction.objects.exists()


def test_it_names_an_unknown_field_together_with_the_other_faults(api):
    assert sorted(fields_of(create(api, amount="0", colour="red"))) == ["amount", "colour"]


# --- unknown query parameters ----------------------------------------------------------


@pytest.mark.parametrize("path, misspelt", [
    ("/api/transactions/", "ocurred_after"),
    ("/api/events/", "afer"),
    ("/api/analytics/weekly-income/", "min_postion"),
    ("/api/analytics/review-queue/", "form"),
])
def test_it_names_a_query_parameter_the_endpoint_does_not_take_instead_of_ignoring_it(api, path, misspelt):
    response = api.get(path, {misspelt: "2026-11-01T00:00:00Z"})

    assert fields_of(response) == [misspelt]
    assert "unknown parameter" in response.json()["errors"][0]["message"]


def test_weekly_income_names_an_unknown_parameter_even_after_a_valid_query_of_the_same_shape(api):
    asked = {"from": "2026-11-02", "to": "2026-11-16"}
    assert api.get("/api/analytics/weekly-income/", asked).status_code == 200

    assert fields_of(api.get("/api/analytics/weekly-income/", {**asked, "curency": "EUR"})) == ["curency"]


def test_format_is_taken_everywhere_a_list_is_read(api):
    assert api.get("/api/transactions/", {"format": "json", "limit": 1}).status_code == 200
    assert api.get("/api/analytics/weekly-income/", {"format": "csv"}).status_code == 200
