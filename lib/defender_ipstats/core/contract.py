"""What the fetching policy asks of its collaborators and promises its callers (structural types).

The backend router and the privileged service talk to a per-IP ``Fetcher`` and a ``HuntingFetcher``
through ``IpFetcher`` only; the fetchers talk to the HTTP clients through ``PerIpClient`` and
``HuntingQueries``, which ``microsoft.defender`` and ``microsoft.graph_hunting`` implement, and to the
host's budget through ``Limiter`` (``splunk.budget``).
"""

from typing import Callable, Dict, List, Optional, Protocol, Union

from .errors import DefenderIpStatsError
from .model import IpStats
from .outcomes import HuntingFailure, QuotaExceeded, Retired, Throttled


class Limiter(Protocol):
    """The host's API budget (``splunk.budget``: sliding windows shared through SQLite, or in memory)."""

    def try_acquire(self) -> float:
        """Take one call of budget and return 0, or return the seconds until one is free."""

    def completed(self) -> None:
        """The calling thread's last call has finished: it counts from now."""

    def release(self) -> None:
        """The calling thread's last place was taken for a call that is not made: it counts no more."""

    def pause_for(self, seconds: float) -> None:
        """Nobody calls before ``seconds`` from now (a 429's Retry-After, a hunting quota answer)."""


class PerIpClient(Protocol):
    """One call of the per-IP statistics endpoint (``microsoft.defender.DefenderClient``)."""

    @property
    def looks_retired(self) -> bool:
        """The endpoint itself seems gone (410, or nothing but 404s so far)."""

    def ip_stats(self, ip: str, lookback_hours: int, retry_gate: Optional[Callable[[float], bool]] = None
                 ) -> Union[IpStats, Throttled, Retired]:
        """Raises DefenderIpStatsError for what concerns the whole search (401 after a fresh token, 403)."""


class HuntingQueries(Protocol):
    """One advanced-hunting query (``microsoft.graph_hunting.HuntingClient``)."""

    def query(self, ips: List[str], lookback_hours: int
              ) -> Union[Dict[str, IpStats], QuotaExceeded, HuntingFailure]:
        """Raises DefenderIpStatsError for what concerns the whole search (401 after a fresh token, 403)."""


class IpFetcher(Protocol):
    """A fetcher: every IP asked for gets an answer; what went wrong for the whole search is said here."""

    fatal: Optional[DefenderIpStatsError]  # an error that ended the lookups (401, 403)
    gave_up: Optional[str]  # why the remaining IPs were not sent (the API kept failing), or None
    rate_limited: int  # IPs answered rate_limited

    @property
    def stopped(self) -> bool:
        """The search was cancelled or finalised: no more calls."""

    @property
    def retry_in(self) -> float:
        """Out of the request's time with budget not free: seconds until it is (0 otherwise)."""

    @property
    def budget_returns_in(self) -> float:
        """Budget ran out beyond the wait allowance: seconds until it comes back (0 otherwise)."""

    def fetch_many(self, ips: List[str]) -> Dict[str, IpStats]:
        """An answer for each of ``ips`` (found, not_seen, invalid, error, rate_limited or pending)."""


class PerIpFetcher(IpFetcher, Protocol):
    client: PerIpClient
