"""Payment transactions: the read model, the commands that decide them, their REST API."""
