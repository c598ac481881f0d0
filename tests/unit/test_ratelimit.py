"""The in-process sliding windows and 429 pauses, on a fake clock."""

from defender_ipstats.ratelimit import SlidingWindowLimiter


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_per_minute_window_frees_slots_as_they_age():
    clock = Clock()
    limiter = SlidingWindowLimiter([(3, 60), (100, 3600)], clock=clock)
    assert [limiter.try_acquire() for _ in range(3)] == [0, 0, 0]
    assert limiter.try_acquire() == 60
    clock.now += 59.5
    assert abs(limiter.try_acquire() - 0.5) < 1e-9
    clock.now += 0.5
    assert limiter.try_acquire() == 0


def test_hourly_window_binds_too():
    clock = Clock()
    limiter = SlidingWindowLimiter([(100, 60), (5, 3600)], clock=clock)
    for _ in range(5):
        assert limiter.try_acquire() == 0
        clock.now += 61
    wait = limiter.try_acquire()
    assert abs(wait - (3600 - 5 * 61)) < 1e-6


def test_pause_blocks_everyone_until_it_ends():
    clock = Clock()
    limiter = SlidingWindowLimiter([(100, 60)], clock=clock)
    limiter.pause_for(30)
    assert limiter.try_acquire() == 30
    clock.now += 30
    assert limiter.try_acquire() == 0
