"""What one member knows of a cluster budget's call numbers without trusting its reads.

A member's KV store reads are served by its own replica, which may lag behind the KV captain
(docs/cluster-budget.md): a slot taken a moment ago by another member, or by this one, may not be
in a read yet. What the member does know for sure: a number is taken once the captain said so (its
own insert went in, or answered 409), or once a read showed it or a higher one (numbers are taken in
order). A taken number's call was stamped no later than the moment the member first knew the number
was taken, so a slot it cannot see yet counts as taken from then on, never as gone.
"""

import collections
from typing import Optional


class KnownNumbers:
    """The highest call number this member knows is taken, since when each was known, and the
    member's own slots (number -> stamp) while they may still count in a window."""

    def __init__(self, keep_for: float):
        self.keep_for = keep_for  # longer than any window: older knowledge holds nothing back
        self._marks = collections.deque()  # (highest known, since when), both increasing
        self._forgotten = -1  # numbers at or below this were known more than keep_for ago
        self.own = {}  # number -> stamp of the slots this member took

    @property
    def highest(self) -> Optional[int]:
        return self._marks[-1][0] if self._marks else (self._forgotten if self._forgotten >= 0 else None)

    def taken(self, number: int, now: float) -> None:
        """``number`` (and so every number below it) is taken, as of ``now``."""
        highest = self.highest
        if highest is None or number > highest:
            self._marks.append((number, now))
        while len(self._marks) > 1 and self._marks[0][1] < now - self.keep_for:
            self._forgotten = max(self._forgotten, self._marks.popleft()[0])

    def mine(self, number: int, stamp: float) -> None:
        self.own[number] = stamp
        self.taken(number, stamp)
        for old in [n for n, at in self.own.items() if at < stamp - self.keep_for]:
            del self.own[old]

    def forget_mine(self, number: int) -> None:
        self.own.pop(number, None)

    def known_since(self, number: int) -> Optional[float]:
        """When this member first knew ``number`` was taken: its call was stamped no later. None when it
        does not know (above the highest); ``-inf`` when that was more than ``keep_for`` ago."""
        if number <= self._forgotten:
            return float("-inf")
        for highest, since in self._marks:
            if highest >= number:
                return since
        return None
