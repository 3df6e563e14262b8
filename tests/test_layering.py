"""The one-way data flow, as imports: realtime knows no domain package; nothing imports dashboard_ui or the tests."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["core", "transactions", "analytics", "realtime", "dashboard_ui"]


def imports_of(package: str, *, skip: tuple[str, ...] = ()) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        if path.name in skip:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
    return found


def test_realtime_imports_no_domain_package():
    assert not imports_of("realtime") & {"transactions", "analytics", "dashboard_ui"}


@pytest.mark.parametrize("package", [p for p in PACKAGES if p != "dashboard_ui"])
def test_nothing_imports_the_dashboard_page(package):
    assert "dashboard_ui" not in imports_of(package)


def test_core_imports_no_app_built_on_it_outside_the_entry_points():
    # asgi.py and urls.py compose the apps; everything else in core is reached by the apps,
    # and reaches them only through settings strings (snapshot provider, projection lag).
    assert not imports_of("core", skip=("asgi.py", "urls.py")) & {"transactions", "analytics", "realtime", "dashboard_ui"}


def test_transactions_do_not_reach_into_analytics_or_realtime():
    assert not imports_of("transactions") & {"analytics", "realtime", "dashboard_ui"}


@pytest.mark.parametrize("package", ["scripts", "bench", *PACKAGES])
def test_it_keeps_the_tests_out_of_what_ships_and_what_measures(package):
    # The chaos soak and the benchmarks start the stack and inject faults with scripts/ (stack.py, faults.py);
    # the tests import those, never the other way round.
    assert "tests" not in imports_of(package)
