"""Alerts room: warning policy, Vietnamese messages, durable outbox, SMS gateways, CAP 1.2."""
