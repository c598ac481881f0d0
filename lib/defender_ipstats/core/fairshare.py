"""A fair share of a budget: no single user spends more than ``user_share_percent`` of its hourly limit.

``FairShareLimiter`` puts a user's own budget (``personal``: a share of the hourly limit, in any rolling
hour) in front of the budget everyone shares (``shared``: the per-minute and hourly limits, first come,
first served). A call takes a place in both, or in neither: when the shared budget refuses, the user's
place is given back. Both are ``Limiter``s (``core.contract``) with ``release``; where the budgets live
(the host's SQLite, a search head cluster's KV store) is the caller's choice.
"""

import hashlib
import math
from typing import List, Optional, Sequence, Tuple

MAX_PERCENT = 100


def user_share(limits: Sequence[Tuple[int, float]], percent: int) -> Optional[List[Tuple[int, float]]]:
    """The limits of one user's own budget: ``percent`` of the hourly (longest) limit, rounded up so a
    share is never 0; None when the share is the whole budget (100 %): nothing to add."""
    if percent >= MAX_PERCENT or not limits:
        return None
    count, seconds = max(limits, key=lambda limit: limit[1])
    return [(max(1, int(math.ceil(count * percent / 100.0))), seconds)]


def user_budget(api: str, user: str) -> str:
    """The name of ``user``'s own budget of ``api`` (file names, KV store keys): a digest, nothing readable."""
    return "%s-user-%s" % (api, hashlib.sha256(str(user).encode("utf-8")).hexdigest()[:16])


class FairShareLimiter:
    """One user's calls against ``personal`` (their share) and ``shared`` (everyone's budget)."""

    def __init__(self, shared, personal, user: str, percent: int):
        self.shared = shared
        self.personal = personal
        self.user = user
        self.percent = percent
        self.over_share = False  # the last refusal came from the user's share, not the shared budget

    @property
    def limits(self):
        return getattr(self.shared, "limits", [])

    def try_acquire(self) -> float:
        everyone = self.shared.available_in()  # a full shared budget takes no place in the user's share:
        if everyone > 0:  # a place taken and given back is spent in a cluster (docs/cluster-budget.md)
            mine = self.personal.available_in()
            self.over_share = mine > 0
            return max(mine, everyone)
        wait = self.personal.try_acquire()
        if wait > 0:
            self.over_share = True
            return wait
        wait = self.shared.try_acquire()
        if wait > 0:
            self.personal.release()  # no call: the user's place is theirs again
            self.over_share = False
            return wait
        self.over_share = False
        return 0.0

    def completed(self) -> None:
        self.shared.completed()
        self.personal.completed()

    def release(self) -> None:
        self.shared.release()
        self.personal.release()

    def pause_for(self, seconds: float) -> None:
        self.shared.pause_for(seconds)  # a 429 or a quota answer concerns everyone

    def available_in(self) -> float:
        mine, everyone = self.personal.available_in(), self.shared.available_in()
        self.over_share = mine > 0 and mine >= everyone
        return max(mine, everyone)
