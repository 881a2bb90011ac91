"""Checking the connection URLs the services' settings take."""

from __future__ import annotations

from urllib.parse import urlsplit


def optional_url(value: str | None, schemes: tuple[str, ...], example: str, unset: str) -> str | None:
    """`value` if it is a URL of one of `schemes`, None if empty; else a ValueError that shows
    `example` and says what leaving it unset does (`unset`)."""
    if not value:
        return None
    try:
        scheme = urlsplit(value).scheme
    except ValueError as exc:
        raise ValueError(f"is not a URL: {exc}") from None
    if scheme not in schemes:
        raise ValueError(f"must be a {', '.join(s + '://' for s in schemes)} URL, e.g. {example} ({unset})")
    return value
