"""Property-based run of the whole REST API against its own OpenAPI schema (schemathesis, in-process)."""
import os

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error, positive_data_acceptance
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from rest_framework_simplejwt.tokens import RefreshToken

pytestmark = pytest.mark.django_db

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
# Every call carries the staff token (call_and_validate's headers, which the ignored_auth check knows as
# the caller's). A generated Authorization header would only be replaced, yet a case negated there
# counted as negative as a whole: an otherwise valid request (?limit={"5": ...} is ?limit=5 on the
# wire, which schemathesis excuses unless another location is negated) was then "accepted negative data".
schema.config.generation.update(with_security_parameters=False)
MAX_EXAMPLES = 60
# The security schemes' parameters (core/api.py): sent by the test, never generated.
SECURITY_PARAMETERS = frozenset({"Authorization", "sessionid"})


def test_the_schema_is_valid_openapi_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert (tmp_path / "schema.yaml").read_text().startswith("openapi: 3")


@pytest.fixture
def in_test_transaction():
    """As Django's test client does: requests must not close the test's connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def staff_token(admin_user, in_test_transaction, monkeypatch):
    monkeypatch.setattr("analytics.api.MIN_POSITION_WAIT_SECONDS", 0.05)
    from django.core.cache import cache

    cache.clear()  # the token endpoint's throttle must not leak between examples
    return str(RefreshToken.for_user(admin_user).access_token)


@pytest.fixture
def exercised(request):
    """Requests made by this operation's run. Hypothesis calls the test body once per example with the
    same fixture values, so the check runs when it is done with the operation (at teardown): every
    operation gets at least MAX_EXAMPLES requests (the fuzzing phase alone makes that many; the schema's
    examples and schemathesis' coverage phase add more), unless an example already failed the test."""
    run = {"requests": 0, "failed": False, "has_inputs": True}
    yield run
    # An operation without parameters or a body (the security ones are not generated) has one request
    # to send: Hypothesis stops once it has sent it a few times.
    if not run["failed"]:
        assert run["requests"] >= (MAX_EXAMPLES if run["has_inputs"] else 1), (
            f"{request.node.name} made only {run['requests']} requests, fewer than {MAX_EXAMPLES}: "
            "the run did not exercise this operation"
        )


@schema.parametrize()
# Under CI the examples are derandomized, so a landing never depends on luck; locally
# every run explores new inputs (and Hypothesis remembers the ones that failed).
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=os.environ.get("CI") == "true")
def test_every_operation_answers_within_its_schema_and_never_5xx(case, staff_token, exercised):
    exercised["requests"] += 1
    exercised["has_inputs"] = bool(case.operation.body) or any(
        parameter.name not in SECURITY_PARAMETERS for parameter in case.operation.iter_parameters()
    )
    try:
        # Every check but two. positive_data_acceptance: a schema cannot say which well-formed
        # currency codes ISO 4217 assigns, so "ZZZ" is schema-valid and still, rightly, a 400.
        # not_a_server_error counts the documented 503 of a min_position not yet reached;
        # the assertion below allows exactly that one 5xx and no other.
        response = case.call_and_validate(
            headers={"Authorization": f"Bearer {staff_token}"}, excluded_checks=[positive_data_acceptance, not_a_server_error]
        )
        if response.status_code >= 500:
            assert response.status_code == 503 and response.json()["code"] == "projection_behind", response.text
    except BaseException:
        exercised["failed"] = True
        raise
