"""The value objects every other module speaks: one IP's statistics and its status."""

from dataclasses import dataclass
from typing import Optional

FOUND = "found"
NOT_SEEN = "not_seen"
INVALID = "invalid"
RATE_LIMITED = "rate_limited"
ERROR = "error"
# Internal only, never output nor cached: the privileged service ran out of its request's time before
# it could look the IP up; the search asks again.
PENDING = "pending"

SOURCE_API = "api"
SOURCE_HUNTING = "hunting"
SOURCE_CACHE = "cache"

CACHEABLE_STATUSES = frozenset((FOUND, NOT_SEEN))

# Output field suffixes, in the order they are added to events (prefix + suffix).
OUTPUT_SUFFIXES = ("ip", "prevalence", "first_seen", "last_seen", "status", "source", "error")


@dataclass(frozen=True)
class IpStats:
    """What the app knows about one canonical IP for one account and look-back."""

    ip: str
    status: str
    prevalence: Optional[int] = None
    first_seen: Optional[str] = None
    last_seen: Optional[str] = None
    source: str = ""
    error: str = ""
    fetched_at: Optional[float] = None

    @property
    def cacheable(self) -> bool:
        return self.status in CACHEABLE_STATUSES

    def output_values(self):
        """The values of the output fields, as strings, in OUTPUT_SUFFIXES order."""
        return (
            self.ip,
            "" if self.prevalence is None else str(self.prevalence),
            self.first_seen or "",
            self.last_seen or "",
            self.status,
            self.source,
            self.error,
        )


def invalid(value: str = "") -> IpStats:
    return IpStats(ip="", status=INVALID)


def failed(ip: str, reason: str, source: str = SOURCE_API) -> IpStats:
    return IpStats(ip=ip, status=ERROR, source=source, error=reason)


def rate_limited(ip: str, reason: str, source: str = SOURCE_API) -> IpStats:
    return IpStats(ip=ip, status=RATE_LIMITED, source=source, error=reason)


def pending(ip: str) -> IpStats:
    return IpStats(ip=ip, status=PENDING)
