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
from .clustershare import SLACK, MemberShare
from .slotnumbers import KnownNumbers
from .slotstore import BudgetStoreUnavailable, SlotStore, cluster_members, number_or_none

# Slots claimed in one round, at most; one after a lull, twice the last while rounds follow closely.
MAX_BATCH = 4
# A claimed slot not used within this long is given up: its stamp would no longer say when its call went.
RESERVE_TTL = 15.0
# Calls other members may number between two of this member's reads that the read still covers.
LOOKAHEAD = 32
# Slots are deleted this long after they stop counting in every window (now and then, by any member).
CLEANUP_EVERY = 60.0
# A member that lost a number tries the next ones, up to this many in a round (its reads may lag behind
# the winner's numbers), then waits up to CONFLICT_BACKOFF (at random) before reading again.
CHASE = 4
CONFLICT_BACKOFF = 0.05


class ClusterWindowLimiter(MemberShare):
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
        self._known = KnownNumbers(self.longest + SLACK)  # taken numbers, whether or not reads show them yet
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
            self._known.mine(number, now)
            if self._fallen_back:
                return
            try:
                self.store.save([self._slot(number, now)])
            except BudgetStoreUnavailable as error:
                self._fall_back(error)

    def release(self) -> None:
        """The slot taken was not used: its document stays, without a stamp (a hole below the highest
        number would read as a slot not seen yet; if the KV store fails, it stays counted)."""
        slot, self._mine.slot = getattr(self._mine, "slot", None), None
        self.host.release()
        with self._lock:
            if slot is None or self._fallen_back:
                return
            self._known.forget_mine(slot[0])
            try:
                released = {"_key": self._key(slot[0]), "budget": self.budget, "n": slot[0],
                            "expires": slot[1] + self.longest + SLACK}
                self.store.save([released])
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
            known = self._known.highest
            base = known if known is not None else -1
            highest, markers, stamps = self._read(base, span)
            now = self.clock()
            if highest >= 0:
                self._known.taken(highest, now)
            self._note_markers(markers, now)
            if now < self._paused_until:
                return self._paused_until - now
            share_wait = self._handover_wait(now)  # a handover the read just found
            if share_wait > 0:
                return share_wait
            if highest > base + LOOKAHEAD:
                continue
            return self._claim_from(highest, base + span, stamps, take)
        return SLACK  # the others keep running ahead: try again shortly

    def _claim_from(self, highest: int, last_covered: int, stamps, take: bool) -> float:
        """Claim numbers from the highest known taken + 1 on (``highest``: the read's); ``stamps``: the
        slots read that they count on."""
        claimed = 0
        now = self.clock()
        if take:  # claims in quick succession: calls are wanted in a stream, claim more at once
            self._batch = min(self.max_batch, self._batch * 2) if now - self._last_round < SLACK else 1
            self._last_round = now
        wanted = self._batch
        lost = 0
        number = max(highest, self._known.highest if self._known.highest is not None else -1) + 1
        while number <= last_covered and claimed < wanted:
            now = self.clock()
            wait, unseen = self._wait_for(number, highest, stamps, now)
            if wait > 0:
                if claimed == 0:
                    if unseen:  # a slot not seen yet may turn out older, or given back: read again soon
                        wait = min(wait, SLACK)
                    self._not_before = now + wait
                    return wait
                break
            if not take:
                return 0.0
            if self.store.insert(self._slot(number, now)):
                self._reserve.append((number, now))
                self._known.mine(number, now)
                claimed += 1
                self.claimed += 1
            else:  # the captain says another member took it (whatever this member's reads show)
                self._known.taken(number, self.clock())
                self.conflicts += 1
                lost += 1
                if claimed == 0 and lost < CHASE:  # a lagging read cannot show where the others are: try on
                    number += 1
                    continue
                if claimed == 0:
                    backoff = random.uniform(0.0, CONFLICT_BACKOFF)
                    self._not_before = self.clock() + backoff
                    return backoff
                break
            number += 1
        return 0.0 if claimed else SLACK / 4

    def _wait_for(self, number: int, highest: int, stamps, now: float) -> Tuple[float, bool]:
        """Seconds until call ``number`` fits every window, and whether a slot not seen yet says so.

        It counts on call ``number - count`` of each window. Below 0 it holds nothing back; read, or
        this member's own, it holds back until its stamp is a window old. Missing from the read though
        at or below the read's ``highest``, it is gone: a replica applies the captain's writes in order
        and the highest is read first, so only a delete (the clean-up once it counts in no window, or
        a slot given back unused) hides it. Above the read's highest it is taken but not seen yet
        (reads lag): stamped no later than when this member first knew it was taken, it holds back
        until that is a window old.
        """
        wait, unseen = 0.0, False
        for count, seconds in self.limits:
            counted_on = number - count
            if counted_on < 0:
                continue
            stamp = max(stamps.get(counted_on, float("-inf")), self._known.own.get(counted_on, float("-inf")))
            guessed = stamp == float("-inf") and counted_on > highest
            if guessed:
                since = self._known.known_since(counted_on)
                stamp = now if since is None else since
            this_wait = stamp + seconds + SLACK - now
            if this_wait > wait:
                wait, unseen = this_wait, guessed
        return wait, unseen

    def _clean_up_now_and_then(self) -> None:
        now = self.clock()
        if now >= self._next_cleanup:
            self._next_cleanup = now + CLEANUP_EVERY
            self.store.delete({"expires": {"$lt": now}})


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
