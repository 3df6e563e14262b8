"""Fixtures shared by the core tests."""
import pytest
from django.core.cache import cache


@pytest.fixture
def fresh_throttle():
    """An empty cache before and after: throttles and lockout counters never leak between tests."""
    cache.clear()
    yield
    cache.clear()
