"""The bearer key: with `--api-key` (or T2_API_KEY), every API route needs `Authorization: Bearer KEY`."""

from __future__ import annotations

import hmac


def authorized(header: str | None, key: str | None) -> bool:
    """Whether an Authorization header carries the key (always, when the server has none).
    Compared in constant time, so the answer's timing tells nothing about the key."""
    if key is None:
        return True
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())
