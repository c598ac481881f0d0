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

# Which figure an answer carries: Defender's own per-IP statistics, or counts from advanced hunting.
# The two never stand in for each other in the cache.
BASIS_IPSTATS = "ipstats"
BASIS_HUNTING = "hunting"
BASIS_OF_SOURCE = {SOURCE_API: BASIS_IPSTATS, SOURCE_HUNTING: BASIS_HUNTING}
# The bases a backend reads, in order of preference.
BASES_OF_BACKEND = {"ipstats": (BASIS_IPSTATS,), "hunting": (BASIS_HUNTING,), "auto": (BASIS_IPSTATS, BASIS_HUNTING)}

# Output field suffixes, in the order they are added to events (prefix + suffix).
OUTPUT_SUFFIXES = ("ip", "prevalence", "first_seen", "last_seen", "status", "source", "basis", "error")


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
    basis: str = ""  # found/not_seen only: BASIS_IPSTATS or BASIS_HUNTING (from the source when fetched)

    def __post_init__(self):
        if self.status not in CACHEABLE_STATUSES:
            basis = ""
        else:
            basis = self.basis or BASIS_OF_SOURCE.get(self.source, "")
        if basis != self.basis:
            object.__setattr__(self, "basis", basis)

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
            self.basis,
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
