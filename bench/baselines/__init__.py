"""What a user would pick instead of Ledgerpulse's fan-out, served to the same load client (bench/fanout.py)."""
