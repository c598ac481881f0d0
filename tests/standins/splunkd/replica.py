"""A search head cluster's KV store as replicas that lag: the captain's data and every change to it, in order.

Splunk: "In a search head cluster, when a node receives a write request, the KV store delegates the
write to the KV store captain, while the KV store keeps read requests local" (Splexicon, "KV store
captain"); the other members' KV stores replicate the captain's data (a MongoDB replica set: each
secondary applies the primary's oplog in order, some time behind it). So every write, from any member,
is applied at once to the captain's data (an insert whose ``_key`` is taken answers 409 at once,
whatever any member reads), and a read on a member that is not the captain sees the collection as it
was ``lag`` seconds ago: every change older than that, in order, none newer, not even the member's own
writes (they went to the captain and come back through replication). The captain reads its own data.
A fixed lag is the simplest model of that; Splunk documents no bound on it.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Deque, Dict, Tuple

_ABSENT = object()


class JournaledCollection(dict):
    """One collection's documents on the captain (``_key`` -> document), with the recent changes kept so
    that a replica's view ``lag`` seconds behind can be rebuilt (``as_of``)."""

    def __init__(self, clock: Callable[[], float], keep: Callable[[], float]):
        super().__init__()
        self._clock = clock
        self._keep = keep  # how far back a view may be asked for (the cluster's lag)
        self._journal: Deque[Tuple[float, str, Any]] = collections.deque()  # (when, key, value before)

    def _note(self, key: str) -> None:
        now = self._clock()
        self._journal.append((now, key, dict.get(self, key, _ABSENT)))
        horizon = now - self._keep() - 1.0
        while self._journal and self._journal[0][0] < horizon:
            self._journal.popleft()

    def __setitem__(self, key, value) -> None:
        self._note(key)
        super().__setitem__(key, value)

    def __delitem__(self, key) -> None:
        self._note(key)
        super().__delitem__(key)

    def pop(self, key, *default):
        if key in self:
            self._note(key)
        return super().pop(key, *default)

    def clear(self) -> None:
        for key in list(self):
            self._note(key)
        super().clear()

    def as_of(self, when: float) -> Dict[str, Any]:
        """The documents as they were at ``when``: today's, with every later change undone, newest first."""
        view = dict(self)
        for at, key, before in reversed(self._journal):
            if at <= when:
                break
            if before is _ABSENT:
                view.pop(key, None)
            else:
                view[key] = before
        return view


class ReplicatedData(dict):
    """Every collection of the cluster's KV store, ``(app, collection)`` -> ``JournaledCollection``."""

    def __init__(self, clock: Callable[[], float], lag: Callable[[], float]):
        super().__init__()
        self._clock = clock
        self._lag = lag

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = JournaledCollection(self._clock, self._lag)
        return self[key]
