"""The admin dashboard page: a client of the public REST and websocket APIs."""
