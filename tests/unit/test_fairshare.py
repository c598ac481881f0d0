"""A user's fair share in front of the shared budget, on a fake clock and on the host's SQLite."""

import pytest
from fakes import FakeClock

from defender_ipstats.core.fairshare import FairShareLimiter, user_share
from defender_ipstats.splunk.budget import SharedWindowLimiter, SlidingWindowLimiter

LIMITS = [(100, 60.0), (20, 3600.0)]


def test_a_share_is_a_percentage_of_the_hourly_limit_never_zero_and_none_at_100():
    assert user_share(LIMITS, 50) == [(10, 3600.0)]
    assert user_share([(100, 60.0), (1500, 3600.0)], 33) == [(495, 3600.0)]
    assert user_share([(3, 3600.0)], 10) == [(1, 3600.0)]  # rounded up: a user always gets a call
    assert user_share(LIMITS, 100) is None


def _users(clock, shared, percent=50):
    return {name: FairShareLimiter(shared, SlidingWindowLimiter(user_share(LIMITS, percent), clock=clock),
                                   name, percent) for name in ("alice", "bob")}


def test_one_user_spends_at_most_the_share_and_the_rest_stays_for_the_others():
    clock = FakeClock(1000.0)
    shared = SlidingWindowLimiter(LIMITS, clock=clock)
    users = _users(clock, shared)
    alice = [users["alice"].try_acquire() for _ in range(15)]
    assert alice[:10] == [0.0] * 10 and all(wait > 3000 for wait in alice[10:])
    assert users["alice"].over_share
    bob = [users["bob"].try_acquire() for _ in range(12)]
    assert bob[:10] == [0.0] * 10 and all(wait > 0 for wait in bob[10:])
    assert shared.available_in() > 0  # 20 calls: the hourly limit itself
    clock.now += 3600.5
    assert users["alice"].try_acquire() == 0.0 and not users["alice"].over_share  # a rolling hour


def test_a_call_the_shared_budget_refuses_costs_the_user_nothing():
    clock = FakeClock(1000.0)
    shared = SlidingWindowLimiter([(2, 60.0), (20, 3600.0)], clock=clock)
    users = _users(clock, shared)
    assert [users["alice"].try_acquire() for _ in range(2)] == [0.0, 0.0]
    for _ in range(50):  # the per-minute limit, first come first served: refused, and given back
        assert users["alice"].try_acquire() > 0 and not users["alice"].over_share
    clock.now += 61
    assert [users["alice"].try_acquire() for _ in range(2)] == [0.0, 0.0]
    assert users["alice"].personal.available_in() == 0.0  # 4 calls of the 10 spent, not 54


def test_a_429_pause_holds_everyone():
    clock = FakeClock(1000.0)
    shared = SlidingWindowLimiter(LIMITS, clock=clock)
    users = _users(clock, shared)
    users["alice"].pause_for(30)
    assert users["bob"].try_acquire() == pytest.approx(30)


def test_release_on_the_hosts_shared_state(tmp_path):
    clock = FakeClock(1000.0)
    limiter = SharedWindowLimiter(str(tmp_path / "user.sqlite"), [(1, 3600.0)], clock=clock)
    assert limiter.try_acquire() == 0.0
    assert limiter.try_acquire() > 0
    limiter.release()  # the thread's last place: the first one (the refusal took none)
    assert limiter.try_acquire() == 0.0
    other = SharedWindowLimiter(str(tmp_path / "user.sqlite"), [(1, 3600.0)], clock=clock)
    assert other.try_acquire() > 0  # another process sees the place taken again
