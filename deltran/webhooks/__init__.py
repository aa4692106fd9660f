"""Webhooks: where a bank's events may be delivered, how they are signed, and their delivery."""
