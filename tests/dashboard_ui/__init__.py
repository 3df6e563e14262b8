"""Browser tests for the dashboard page (Playwright + Debian Chromium) and its scripts."""
