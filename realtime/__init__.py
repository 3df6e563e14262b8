"""Realtime: the dashboard websocket, its auth, and publishing to the admin_dashboard group."""
