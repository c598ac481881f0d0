"""One search's memory of the answers it already has: a later chunk never asks for them again.

Splunk hands a search's events over in chunks, and the same IP turns up in many of them. Without this
memory every chunk would send its IPs to the service again, which, with ``cache=refresh`` or
``cache=off``, looks them up again: one search would pay several times for one IP. With it, an IP is
looked up at most once per search in every cache mode, and a chunk whose IPs are all known makes no
request at all (not even the KV store read of ``cache=use``).

The memory is bounded: it keeps the answers of the MAX_ANSWERS IPs seen most recently and forgets the
least recently seen beyond that. An IP forgotten and seen again is resolved as a new one: with
``cache=use`` from the KV store cache (no API call while the answer there is fresh), with
``cache=refresh`` from the cache when that answer is younger than ``refresh_min_age``, with
``cache=off`` by asking again.

``rate_limited`` (and ``pending``) answers are not kept: budget may return while the search runs, so
a later chunk that carries the IP asks again (the service answers at once, without an API call, while
the budget is still out). Errors are kept for the rest of the search, so that a failing lookup is not
paid again chunk after chunk; they are never cached beyond the search, and the next search asks again.
"""

from collections import OrderedDict
from typing import Callable, Dict, List

from ..core.model import PENDING, RATE_LIMITED, IpStats

# An answer kept here is its IpStats (the IP, two ISO timestamps, a few short words) and its place in
# the order: about 700 bytes (900 on Python 3.9), so 40,000 answers stay under 40 MB.
MAX_ANSWERS = 40_000
NOT_KEPT = frozenset((RATE_LIMITED, PENDING))


class SearchMemo:
    """``resolve(ips) -> {ip: IpStats}`` in front of the search's own ``resolve``: known IPs are
    answered from memory (one dict hit each), the others are resolved and remembered."""

    def __init__(self, resolve: Callable[[List[str]], Dict[str, IpStats]], max_answers: int = MAX_ANSWERS):
        self._resolve = resolve
        self._answers: OrderedDict[str, IpStats] = OrderedDict()
        self.max_answers = max(1, max_answers)
        self.reused = 0  # answers a chunk took from memory
        self.forgotten = 0  # answers dropped to keep within max_answers

    def __len__(self) -> int:
        return len(self._answers)

    def resolve(self, ips: List[str]) -> Dict[str, IpStats]:
        known = self._answers
        answers: Dict[str, IpStats] = {}
        missing: List[str] = []
        for ip in ips:
            stats = known.get(ip)
            if stats is None:
                missing.append(ip)
            else:
                answers[ip] = stats
                known.move_to_end(ip)
        self.reused += len(answers)
        if not missing:
            return answers
        fetched = self._resolve(missing)
        for ip in missing:
            stats = fetched.get(ip)
            if stats is not None and stats.status not in NOT_KEPT:
                known[ip] = stats
        overflow = len(known) - self.max_answers
        if overflow > 0:
            self.forgotten += overflow
            for _ in range(overflow):
                known.popitem(last=False)
        answers.update(fetched)
        return answers
