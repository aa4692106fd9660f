"""A bank's webhook endpoint for tests: the demo's (cli/webhook_receiver.py)."""

from cli.webhook_receiver import Receiver

__all__ = ["Receiver"]
