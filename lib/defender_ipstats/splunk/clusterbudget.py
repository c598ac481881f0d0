"""One API budget for every member of a search head cluster: numbered call slots in the KV store.

A search head cluster shares one KV store (a replica set whose writes go through its primary), so
the budget lives there. The calls of one budget (an API and one app registration in one tenant)
are numbered 0, 1, 2, ... cluster-wide; call ``n`` is the document ``<api>|<registration>|<n>``.
Inserting a ``_key`` that exists answers 409 on every member, so each number is taken once.

Call ``n`` may be made only when, for every window of ``count`` calls per ``seconds``, call
``n - count`` was stamped at least ``seconds + SLACK`` ago. That is the sliding window the API
enforces, with no boundary effect: of any ``count + 1`` calls, two have numbers a multiple of
``count`` apart, and the checks along the numbers between them put at least ``seconds`` between
the two. Design and limits: docs/cluster-budget.md.

``ClusterWindowLimiter`` is a ``core.contract.Limiter``; ``budget_for`` picks the limiter for this server.
"""

import logging
import random
import threading
import time
from collections import deque
from typing import Callable, Iterable, Optional, Sequence, Tuple

from .budget import MAX_PAUSE, host_limiter, normalised_limits, registration_key
from .slotstore import BudgetStoreUnavailable, SlotStore, cluster_members, number_or_none, span_text

# A call reaches the API within this long of taking its slot, or its slot is stamped again when it
# completes (``completed``); the next call counting on it waits this much longer.
SLACK = 1.0
# Slots claimed in one round, at most; one after a lull, twice the last while rounds follow closely.
MAX_BATCH = 4
# A claimed slot not used within this long is given up: its stamp would no longer say when its call went.
RESERVE_TTL = 15.0
# Calls other members may number between two of this member's reads that the read still covers.
LOOKAHEAD = 32
# Slots are deleted this long after they stop counting in every window (now and then, by any member).
CLEANUP_EVERY = 60.0
# A member that lost a number waits up to this long (at random) before reading again, not chasing the winner.
CONFLICT_BACKOFF = 0.05
# A member that fell back to its share tries the KV store again this often.
PROBE_EVERY = 30.0


class ClusterWindowLimiter:
    """The windows and the 429 pause of one budget, shared by every member through the KV store.

    ``host`` is this member's share of the budget on this host (every limit divided by the number of
    members, ``ratelimit.host_limiter``): every call is stamped there too, and it is the budget when
    the KV store fails (the member's own recent calls already count against it, so the members'
    shares never add up to more than the limit). When the KV store answers again, the member leaves
    a marker in it (``<budget>|handover``) until which every member takes each call from both: a
    numbered slot and its share. Once the calls made on shares alone are out of every window, the
    numbered slots alone hold the limit again.
    """

    def __init__(self, store: SlotStore, budget: str, limits: Iterable[Tuple[int, float]], host, members: int,
                 clock: Callable[[], float] = time.time, logger: Optional[logging.Logger] = None,
                 say: Optional[Callable[[str, str], None]] = None, max_batch: int = MAX_BATCH, label: str = ""):
        self.store = store
        self.label = label  # whose budget this is (a user's share): on every slot, for the setup page
        self.budget = budget
        self.limits = normalised_limits(limits)
        self.longest = self.limits[-1][1] if self.limits else 0.0
        self.host = host
        self.members = members
        self.clock = clock
        self.logger = logger or logging.getLogger("defender_ipstats")
        self.say = say
        self.max_batch = max(1, max_batch)
        self._lock = threading.RLock()
        self._mine = threading.local()
        self._reserve = deque()  # (number, stamp) claimed and not yet used, oldest first
        self._batch = 1
        self._last_round = float("-inf")
        self._last_seen: Optional[int] = None  # highest call number read from the store
        self._not_before = float("-inf")  # no slot is free before then (from the last read)
        self._paused_until = float("-inf")
        self._handover_until = float("-inf")  # a marker in the store: calls take a slot and a share
        self._fallen_back = False  # the KV store failed: this member keeps to its share
        self._share_from = float("-inf")  # ...from then on (see _on_share)
        self._next_probe = float("-inf")
        self._next_cleanup = float("-inf")
        self.claimed = 0
        self.conflicts = 0
        self.given_up = 0  # slots claimed and never used

    # -- keys and documents -------------------------------------------------------------
    def _key(self, number: int) -> str:
        return "%s|%d" % (self.budget, number)

    @property
    def _pause_key(self) -> str:
        return self.budget + "|pause"

    @property
    def _share_key(self) -> str:
        return self.budget + "|handover"

    def _slot(self, number: int, stamp: float) -> dict:
        slot = {"_key": self._key(number), "budget": self.budget, "n": number, "at": stamp,
                "expires": stamp + self.longest + SLACK}
        return dict(slot, user=self.label) if self.label else slot

    @property
    def on_share(self) -> bool:
        """True while this member keeps to its share of the budget on this host (alone, or in a handover)."""
        return self._fallen_back or self.clock() < self._handover_until

    # -- the limiter interface ------------------------------------------------------------
    def try_acquire(self) -> float:
        with self._lock:
            now = self.clock()
            self._mine.slot = None
            if now < self._paused_until:
                return self._paused_until - now
            if self._fallen_back and now >= self._next_probe:
                self._probe(now)
            if self._fallen_back:
                return self._on_share(self.host.try_acquire)
            share_wait = self._handover_wait(now)
            if share_wait > 0:
                return share_wait
            slot = self._take_reserved(now)
            if slot is None:
                if now < self._not_before:
                    return self._not_before - now
                try:
                    wait = self._claim()
                except BudgetStoreUnavailable as error:
                    self._fall_back(error)
                    return self._on_share(self.host.try_acquire)
                if wait > 0:
                    return wait
                slot = self._take_reserved(self.clock())
                if slot is None:
                    return SLACK
            self._mine.slot = slot
            self.host.record()  # this member's share counts every call it makes
            return 0.0

    def completed(self) -> None:
        slot = getattr(self._mine, "slot", None)
        self._mine.slot = None
        self.host.completed()
        if slot is None:
            return
        number, stamp = slot
        now = self.clock()
        if now - stamp <= SLACK:
            return
        with self._lock:  # the call took long: it counts from now, for every member
            if self._fallen_back:
                return
            try:
                self.store.save([self._slot(number, now)])
            except BudgetStoreUnavailable as error:
                self._fall_back(error)

    def release(self) -> None:
        """The slot taken was not used: its document goes (if the KV store fails, it stays counted)."""
        slot, self._mine.slot = getattr(self._mine, "slot", None), None
        self.host.release()
        with self._lock:
            if slot is None or self._fallen_back:
                return
            try:
                self.store.delete({"_key": self._key(slot[0])})
            except BudgetStoreUnavailable as error:
                self._fall_back(error)

    def pause_for(self, seconds: float) -> None:
        with self._lock:
            now = self.clock()
            until = now + min(max(0.0, float(seconds)), MAX_PAUSE)
            self._paused_until = max(self._paused_until, until)
            self.host.pause_for(seconds)
            if self._fallen_back:
                return
            try:
                self.store.save([{"_key": self._pause_key, "pause_of": self.budget, "until": self._paused_until,
                                  "expires": self._paused_until + SLACK}])
            except BudgetStoreUnavailable as error:
                self._fall_back(error)

    def available_in(self) -> float:
        with self._lock:
            now = self.clock()
            if now < self._paused_until:
                return self._paused_until - now
            if self._fallen_back:
                return self._on_share(self.host.available_in)
            share_wait = self._handover_wait(now)
            if share_wait > 0:
                return share_wait
            if any(now - stamp <= RESERVE_TTL for _, stamp in self._reserve):
                return 0.0
            if now < self._not_before:
                return self._not_before - now
            try:
                return max(0.0, self._claim(take=False))
            except BudgetStoreUnavailable as error:
                self._fall_back(error)
                return self._on_share(self.host.available_in)

    # -- claiming -------------------------------------------------------------------------
    def _take_reserved(self, now: float) -> Optional[Tuple[int, float]]:
        while self._reserve:
            number, stamp = self._reserve.popleft()
            if now - stamp <= RESERVE_TTL:
                return number, stamp
            self.given_up += 1
            self._batch = 1
        return None

    def _read(self, base: int, span: int):
        """One round trip: the highest number, the pause and share markers, and the slots the next
        ``span`` numbers after ``base`` count on."""
        queries = [
            {"query": {"budget": self.budget}, "sort": "n:-1", "limit": 1, "fields": "n"},
            {"query": {"$or": [{"_key": self._pause_key}, {"_key": self._share_key}]}},
        ]
        for count, _ in self.limits:
            queries.append({"query": {"budget": self.budget, "n": {"$gte": base + 1 - count,
                                                                    "$lte": base + span - count}},
                            "fields": "n,at", "limit": span})
        pages = self.store.find(queries)
        highest = max([number_or_none(doc.get("n")) for doc in pages[0]] + [-1])
        markers = {doc.get("_key"): number_or_none(doc.get("until"), float) for doc in pages[1]}
        stamps = {}
        for page in pages[2:]:
            for doc in page:
                number, at = number_or_none(doc.get("n")), number_or_none(doc.get("at"), float)
                if number is not None and at is not None:
                    stamps[number] = max(at, stamps.get(number, at))
        return highest, markers, stamps

    def _claim(self, take: bool = True) -> float:
        """Claim up to a batch of slots into the reserve (or, ``take=False``, only look):
        0 when at least one was claimed, else the seconds until one is free."""
        self._clean_up_now_and_then()
        span = self.max_batch + LOOKAHEAD
        for _ in range(3):  # other members may run ahead of what one read covers
            base = self._last_seen if self._last_seen is not None else -1
            highest, markers, stamps = self._read(base, span)
            now = self.clock()
            self._note_markers(markers, now)
            if now < self._paused_until:
                return self._paused_until - now
            share_wait = self._handover_wait(now)  # a handover the read just found
            if share_wait > 0:
                return share_wait
            self._last_seen = max(highest, base)
            if highest > base + LOOKAHEAD:
                continue
            return self._claim_from(highest, base + span, stamps, take)
        return SLACK  # the others keep running ahead: try again shortly

    def _claim_from(self, highest: int, last_covered: int, stamps, take: bool) -> float:
        """Claim numbers from ``highest + 1`` on; ``stamps``: the slots read that they count on."""
        claimed = 0
        now = self.clock()
        if take:  # claims in quick succession: calls are wanted in a stream, claim more at once
            self._batch = min(self.max_batch, self._batch * 2) if now - self._last_round < SLACK else 1
            self._last_round = now
        wanted = self._batch
        number = highest + 1
        while number <= last_covered and claimed < wanted:
            now = self.clock()
            wait = self._wait_for(number, highest, stamps, now)
            if wait > 0:
                if claimed == 0:
                    self._not_before = now + wait
                    return wait
                break
            if not take:
                return 0.0
            if self.store.insert(self._slot(number, now)):
                self._reserve.append((number, now))
                stamps[number] = now
                claimed += 1
                self.claimed += 1
            else:  # another member took it, at a time this read does not know
                self.conflicts += 1
                if claimed == 0:
                    backoff = random.uniform(0.0, CONFLICT_BACKOFF)
                    self._not_before = self.clock() + backoff
                    return backoff
                break
            self._last_seen = max(self._last_seen or -1, number)
            number += 1
        return 0.0 if claimed else SLACK / 4

    def _wait_for(self, number: int, highest: int, stamps, now: float) -> float:
        """Seconds until call ``number`` fits every window.

        It counts on call ``number - count`` of each window: below 0 or gone (only the cleanup deletes
        slots, once they count in no window) it holds nothing back; taken after the read by another
        member, its time is unknown: read again shortly.
        """
        wait = 0.0
        for count, seconds in self.limits:
            counted_on = number - count
            if counted_on in stamps:
                wait = max(wait, stamps[counted_on] + seconds + SLACK - now)
            elif counted_on > highest:
                wait = max(wait, SLACK / 4)
        return wait

    def _clean_up_now_and_then(self) -> None:
        now = self.clock()
        if now >= self._next_cleanup:
            self._next_cleanup = now + CLEANUP_EVERY
            self.store.delete({"expires": {"$lt": now}})

    # -- the member's share ---------------------------------------------------------------
    def _note_markers(self, markers, now: float) -> None:
        pause = markers.get(self._pause_key)
        if pause is not None and pause > now:
            self._paused_until = max(self._paused_until, min(pause, now + MAX_PAUSE))
        handover = markers.get(self._share_key)
        if handover is not None and handover > now:
            handover = min(handover, now + self.longest + SLACK)
            if handover > self._handover_until:
                self._handover_until = handover
                self._reserve.clear()  # claimed before the handover was known: not used
                self.logger.info("budget %s: until %s every call takes a slot and this member's share "
                                 "(calls made on shares during a KV store outage are still in the windows)",
                                 self.budget, time.strftime("%H:%M:%S", time.gmtime(handover)))

    def _handover_wait(self, now: float) -> float:
        """In a handover, the seconds until this member's share admits a call (0 outside one)."""
        if now >= self._handover_until:
            return 0.0
        return self.host.available_in()

    def _on_share(self, ask) -> float:
        """On the member's share, not before the calls numbered before the outage are out of the shortest
        window: the members may have spent unevenly, and one under its share would add to one over it."""
        wait = self._share_from - self.clock()
        return wait if wait > 0 else ask()

    def _fall_back(self, error: Exception) -> None:
        if not self._fallen_back:
            self._fallen_back = True
            self._share_from = self.clock() + (self.limits[0][1] if self.limits else 0.0) + SLACK
            self._next_probe = self.clock() + PROBE_EVERY
            self._reserve.clear()
            share = ", ".join("%d per %s" % (count, span_text(seconds)) for count, seconds in self.host.limits)
            self.logger.warning("budget %s: the cluster's budget in the KV store is unavailable (%s); this member "
                                "keeps to its share of the API budget (%s, 1/%d of it) until the KV store answers",
                                self.budget, error, share, self.members)
            if self.say is not None:
                self.say("WARN", "The search head cluster's shared Defender API budget (KV store) is unavailable "
                                 "(%s): this search head keeps to its share of the budget (1/%d of it, %s) until the "
                                 "KV store answers again." % (error, self.members, share))

    def _probe(self, now: float) -> None:
        """Back in the KV store: leave the handover marker, until which every call takes a numbered slot
        and its member's share (so the windows that still hold calls made on shares alone stay within
        the limit: every member within its share), then number calls again."""
        self._next_probe = now + PROBE_EVERY
        until = now + self.longest + SLACK  # every call made on this member's share alone is older
        try:
            pages = self.store.find([{"query": {"_key": self._share_key}}])
            for doc in pages[0]:
                until = max(until, number_or_none(doc.get("until"), float) or until)
            self.store.save([{"_key": self._share_key, "handover_of": self.budget, "until": until,
                              "expires": until + SLACK}])
        except BudgetStoreUnavailable:
            return
        self._fallen_back = False
        self._handover_until = max(self._handover_until, until)
        self.logger.info("budget %s: the KV store answers again; until %s every call takes a slot and its "
                         "member's share", self.budget, time.strftime("%H:%M:%S", time.gmtime(until)))


# -- which budget for this server -----------------------------------------------------------
def budget_for(api: str, tenant_id: str, client_id: str, limits: Sequence[Tuple[int, float]], service,
               splunk_home: Optional[str] = None, logger: Optional[logging.Logger] = None,
               say: Optional[Callable[[str, str], None]] = None, max_batch: Optional[int] = None,
               label: str = ""):
    """The limiter for ``api`` and one app registration on this server.

    On a search head cluster member: the budget every member shares in the KV store, with this
    member's share on the host (every limit divided by the number of members) as the fallback.
    Elsewhere: the host's budget, exactly as ``ratelimit.host_limiter``. ``max_batch``: 1 for a user's share.
    """
    logger = logger or logging.getLogger("defender_ipstats")
    members = cluster_members(service, logger) if service is not None else 0
    if not members:
        return host_limiter(api, tenant_id, client_id, limits, splunk_home=splunk_home, logger=logger, label=label)
    share = [(max(1, int(count) // members), seconds) for count, seconds in limits]
    host = host_limiter(api + "-member-share", tenant_id, client_id, share, splunk_home=splunk_home, logger=logger)
    budget = "%s|%s" % (api, registration_key(tenant_id, client_id))
    return ClusterWindowLimiter(SlotStore(service), budget, limits, host, members, logger=logger, say=say,
                                max_batch=max_batch or MAX_BATCH, label=label)
