"""One model with a status column, and the endpoint that updates it."""
