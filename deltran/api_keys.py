"""API keys: high-entropy random tokens, shown once, stored as SHA-256 digests.

A fast digest is right here (unlike passwords): the key has 256 bits of entropy, so
brute force is hopeless, and a slow hash on every request would cap the gateway.
"""

import hashlib
import secrets


def generate_key() -> str:
    return secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
