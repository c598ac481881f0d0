"""Answers of the Microsoft APIs that the fetching policy reacts to (the HTTP clients produce them).

Besides these, a client answers ``IpStats`` (found, not seen, invalid, error) or raises a
``DefenderIpStatsError`` that concerns the whole search (401 after a fresh token, 403).
"""

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Retired:
    """The per-IP endpoint answered as retired (410, or a run of 404s with no 200 at all)."""

    status: int
    message: str


@dataclass(frozen=True)
class Throttled:
    """A 429 of the per-IP endpoint: try again after ``retry_after`` seconds."""

    retry_after: float
    message: str


@dataclass(frozen=True)
class QuotaExceeded:
    """Graph refused a hunting query for the tenant's quota (429, or 400 "exceeded the allowed limits").

    ``retry_after``: the answer's Retry-After in seconds, or None when it had none.
    """

    status: int
    retry_after: Optional[float]
    message: str


@dataclass(frozen=True)
class HuntingFailure:
    """A failed hunting query: every IP of the batch gets ``reason``; ``retryable`` for a 5xx."""

    reason: str
    retryable: bool = False
