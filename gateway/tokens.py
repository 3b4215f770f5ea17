"""API tokens are kept and compared only as hashes: one hashing rule for settings and the API."""

from __future__ import annotations

import hashlib


def hash_token(token: str) -> str:
    """sha256 of the token: tokens are long random strings, so no salt or stretching."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
