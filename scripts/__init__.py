"""Operational scripts: the real stack's launcher (scripts/stack.py) and the chaos soak (scripts/chaos.py)."""
