"""Which backend answers the cold IPs: the per-IP endpoint, advanced hunting, or both (auto).

``auto`` uses the per-IP endpoint while a chunk's cold IPs are few and its budget lasts; it
turns to hunting when there are many, when the per-IP budget is used up, and for good when the
per-IP endpoint answers as retired. Without the Graph permission it stays on the per-IP
endpoint and says so once.
"""

from typing import Callable, Dict, List, Optional

from .contract import IpFetcher, PerIpFetcher
from .errors import AuthenticationError, AuthorizationError
from .fetcher import RETIRED_REASON
from .model import FOUND, NOT_SEEN, RATE_LIMITED, SOURCE_API, SOURCE_HUNTING, IpStats

# More cold IPs than this in one chunk cost more per-IP calls than one hunting query is worth.
AUTO_HUNTING_THRESHOLD = 50
# Said once, when auto first answers from hunting: the figures mean something else there.
SWITCH_NOTE = ("Some IPs were looked up with advanced hunting (defender_source=hunting): there defender_prevalence "
               "counts the distinct devices with a network event to the IP in DeviceNetworkEvents within the "
               "look-back, which can differ from the per-IP endpoint's organisation prevalence.")


class BackendRouter:
    def __init__(self, mode: str, say: Callable[[str, str], None], per_ip: Optional[PerIpFetcher] = None,
                 per_ip_no_wait: Optional[PerIpFetcher] = None, hunting: Optional[IpFetcher] = None,
                 threshold: int = AUTO_HUNTING_THRESHOLD):
        self.mode = mode
        self.say = say
        self.per_ip = per_ip  # a Fetcher that may wait within maxwait
        self.per_ip_no_wait = per_ip_no_wait  # the same client and budget, never waiting (auto)
        self.hunting = hunting  # a HuntingFetcher, or None
        self.threshold = threshold
        self.hunting_usable = hunting is not None
        self.per_ip_retired = False
        self.switch_noted = False

    def fetch_many(self, ips: List[str]) -> Dict[str, IpStats]:
        if self.mode == "ipstats":
            answers = self.per_ip.fetch_many(ips)
            if self._per_ip_gone():
                self.say("ERROR", "The per-IP statistics endpoint answered as retired: use backend=hunting or "
                                  "backend=auto (Microsoft Graph, permission ThreatHunting.Read.All).")
            return answers
        if self.mode == "hunting":
            answers = self.hunting.fetch_many(ips)
            if self.hunting.fatal is not None:
                self.say("ERROR", str(self.hunting.fatal))
            return answers
        return self._auto(ips)

    # -- auto -----------------------------------------------------------------------
    def _auto(self, ips):
        if self.hunting_usable and (self.per_ip_retired or len(ips) > self.threshold):
            answers = self._hunt(ips)
            if answers is not None:
                return answers
        answers = self.per_ip_no_wait.fetch_many(ips)
        if self._per_ip_gone() and not self.per_ip_retired:
            self.per_ip_retired = True
            if self.hunting_usable:
                self.say("WARN", "The per-IP statistics endpoint answered as retired; this search continues "
                                 "with advanced hunting (Microsoft Graph).")
        spill = [ip for ip in ips if self._needs_another_try(answers[ip])]
        if spill:
            retry = self._hunt(spill)
            if retry is None and not self.per_ip_retired:
                retry = self.per_ip.fetch_many([ip for ip in spill if answers[ip].status == RATE_LIMITED])
            answers.update(retry or {})
        return answers

    def _needs_another_try(self, stats: IpStats) -> bool:
        if stats.status == RATE_LIMITED or stats.error == RETIRED_REASON:
            return True
        # after a run of 404s the "not seen" answers may come from a retired endpoint
        return self.per_ip_retired and stats.status == NOT_SEEN and stats.source == SOURCE_API

    def _per_ip_gone(self) -> bool:
        return self.per_ip is not None and self.per_ip.client.looks_retired

    def _hunt(self, ips) -> Optional[Dict[str, IpStats]]:
        if not self.hunting_usable:
            return None
        answers = self.hunting.fetch_many(ips)
        fatal = self.hunting.fatal
        if isinstance(fatal, (AuthorizationError, AuthenticationError)):
            self.hunting_usable = False
            self.say("WARN", "Advanced hunting is not available to this app registration (%s); staying on the "
                             "per-IP endpoint. Hunting needs the Microsoft Graph application permission "
                             "ThreatHunting.Read.All." % ("403" if isinstance(fatal, AuthorizationError)
                                                          else "sign-in failed"))
            return None
        if not self.switch_noted and any(stats.source == SOURCE_HUNTING and stats.status in (FOUND, NOT_SEEN)
                                         for stats in answers.values()):
            self.switch_noted = True
            self.say("INFO", SWITCH_NOTE)
        return answers
