"""Outgoing notifications: Standard Webhooks signatures, the SSRF guard and one HTTP delivery.

Knows nothing of runs or the database: :mod:`aidp.app.webhooks` decides what to send, when, and
records what happened."""
