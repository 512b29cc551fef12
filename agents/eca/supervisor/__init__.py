"""Supervision of placed agents: start, watch, restart with back-off, stop."""
