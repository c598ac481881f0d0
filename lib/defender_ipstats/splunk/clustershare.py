"""A cluster budget's member on its own share: when the KV store fails, and on the way back.

Mixed into ``clusterbudget.ClusterWindowLimiter`` (its state: ``host``, the member's share of the
budget on this host, which counts every call the member makes, numbered or not; ``_fallen_back``,
``_share_from``, ``_handover_until``, ``_next_probe``). Design: docs/cluster-budget.md, "KV store
unavailable".
"""

import time

from .budget import MAX_PAUSE
from .slotstore import BudgetStoreUnavailable, number_or_none, span_text

# A call reaches the API within this long of taking its slot, or its slot is stamped again when it
# completes (``completed``); the next call counting on it waits this much longer.
SLACK = 1.0
# A member that fell back to its share tries the KV store again this often.
PROBE_EVERY = 30.0


class MemberShare:
    @property
    def on_share(self) -> bool:
        """True while this member keeps to its share of the budget on this host (alone, or in a handover)."""
        return self._fallen_back or self.clock() < self._handover_until

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
