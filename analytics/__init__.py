"""Weekly income: the pandas projection of approved transactions, its tasks and its API."""
