"""What a caller may send to ``defenderipstats/lookup``, checked against what it may be.

Every value comes from the caller (a search, an alert action, or anyone holding the app's role with
curl): each is parsed, range-checked and refused with one clear message (HTTP 400) when it is not what
the command itself would send. Nothing a caller sends changes the service's own state: the budgets,
the quota back-off and the cache are the service's.
"""

import math
from dataclasses import dataclass
from typing import Dict, Tuple

from ..core.errors import ConfigurationError
from ..core.lookup import normalise_ip
from ..core.settings import BACKENDS, CACHE_MODES, LOOKBACK_RANGE, MAX_WAIT_LIMIT, parse_choice, parse_int
from .usage import check_sid

MAX_IPS = 5000
# What the search carries from one request to the next for the routing of ``auto``, with the values
# each may take: the per-IP endpoint answered as retired; hunting is not permitted; the per-IP
# endpoint's 200s and 404s so far in the search.
STATE_LIMITS = {"retired": 1, "no_hunting": 1, "ok_200": 10 ** 7, "nf_404": 10 ** 7}
STATE_KEYS = tuple(STATE_LIMITS)


@dataclass(frozen=True)
class LookupParams:
    lookback_hours: int
    backend: str
    cache: str
    max_wait: float
    ips: Tuple[str, ...]
    not_canonical: Tuple[str, ...]
    sid: str
    state: Dict[str, int]

    @classmethod
    def parse(cls, params: dict, settings) -> "LookupParams":
        lookback = parse_int("lookback_hours", params.get("lookback_hours") or settings.lookback_hours,
                             *LOOKBACK_RANGE, what="a number of hours")
        backend = parse_choice("backend", params.get("backend") or settings.backend, BACKENDS)
        cache = parse_choice("cache", params.get("cache") or "use", CACHE_MODES)
        raw = [item.strip() for item in str(params.get("ips") or "").split(",") if item.strip()]
        if len(raw) > MAX_IPS:
            raise ConfigurationError("At most %d IPs per lookup request, not %d." % (MAX_IPS, len(raw)))
        ips, not_canonical = [], []
        for item in dict.fromkeys(raw):  # the service's own dedupe: an IP asked twice costs once
            (ips if normalise_ip(item) == item else not_canonical).append(item)
        state = {key: parse_int(key, params.get(key) or "0", 0, high, where="state ")
                 for key, high in STATE_LIMITS.items()}
        return cls(lookback, backend, cache, _max_wait(params.get("max_wait")), tuple(ips), tuple(not_canonical),
                   check_sid(params.get("sid")), state)


def _max_wait(value) -> float:
    text = str(value or "0").strip()
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_WAIT_LIMIT:
        raise ConfigurationError("max_wait must be a number of seconds from 0 to %d, not %r."
                                 % (MAX_WAIT_LIMIT, text[:40]))
    return seconds
