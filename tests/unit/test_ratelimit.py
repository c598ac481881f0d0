"""The in-process sliding windows and 429 pauses, on a fake clock."""

from defender_ipstats.splunk.budget import SlidingWindowLimiter


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


# -- the pure window arithmetic ---------------------------------------------------------------
def test_seconds_until_free_names_the_call_whose_departure_frees_a_place():
    from defender_ipstats.splunk.budget import seconds_until_free

    assert seconds_until_free([], [(1, 60)], 100.0) == 0
    assert seconds_until_free([10.0, 20.0, 30.0], [(3, 60)], 40.0) == 30.0
    assert seconds_until_free([10.0, 20.0, 30.0], [(2, 60)], 40.0) == 40.0  # the 2nd most recent: 20 + 60 - 40
    assert seconds_until_free([10.0, 20.0, 30.0], [(3, 60), (100, 3600)], 71.0) == 0


def test_a_call_counts_from_when_it_completed():
    clock = Clock()
    limiter = SlidingWindowLimiter([(1, 60)], clock=clock)
    assert limiter.try_acquire() == 0
    clock.now += 5  # e.g. a token request and a TLS handshake before the call reached the API
    limiter.completed()
    clock.now += 56
    assert abs(limiter.try_acquire() - 4) < 1e-9  # 60 s after completion, not after acquisition
    assert abs(limiter.available_in() - 4) < 1e-9


# -- shared by the processes of a host ----------------------------------------------------------
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

from defender_ipstats.splunk.budget import (  # noqa: E402
    SharedWindowLimiter,
    host_limiter,
    registration_key,
    state_folder,
)

LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "lib")


def _python(code: str, *args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=LIB)
    return subprocess.Popen([sys.executable, "-c", code] + [str(a) for a in args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


GRABBER = """
import sys, threading, time
from defender_ipstats.splunk.budget import SharedWindowLimiter
path, start = sys.argv[1], float(sys.argv[2])
limiter = SharedWindowLimiter(path, [(50, 60), (1000, 3600)])
granted = []
def grab():
    while time.time() < start:
        time.sleep(0.001)
    mine = 0
    for _ in range(40):
        if limiter.try_acquire() == 0:
            mine += 1
            limiter.completed()
    granted.append(mine)
threads = [threading.Thread(target=grab) for _ in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]
print(sum(granted))
"""


def test_processes_together_never_exceed_a_window(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    start = time.time() + 1.0  # all start grabbing at the same moment
    children = [_python(GRABBER, path, start) for _ in range(4)]
    granted = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        granted.append(int(out))
    assert sum(granted) == 50  # 4 processes x 3 threads x 40 tries: exactly the window, no lost update
    assert SharedWindowLimiter(path, [(50, 60)]).try_acquire() > 50


HOLDER = """
import sys, time
from defender_ipstats.splunk.budget import SharedWindowLimiter
limiter = SharedWindowLimiter(sys.argv[1], [(1, 60)])
with limiter._transaction() as db:
    db.execute("INSERT INTO calls (at) VALUES (?)", (time.time(),))
    print("holding", flush=True)
    time.sleep(120)
"""


def test_a_killed_process_leaves_no_stale_lock_and_no_half_written_call(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    impatient = SharedWindowLimiter(path, [(1, 60)], busy_timeout=0.2)
    child = _python(HOLDER, path)
    try:
        assert child.stdout.readline().strip() == "holding"
        # The lock is real: while the other process holds it, nobody spends budget it cannot check.
        assert impatient.try_acquire() == pytest.approx(1.0)
    finally:
        child.kill()
        child.communicate(timeout=10)
    started = time.monotonic()
    limiter = SharedWindowLimiter(path, [(1, 60)])
    assert limiter.try_acquire() == 0  # the killed transaction was rolled back: its call never counted
    assert time.monotonic() - started < 2
    assert limiter.try_acquire() > 59


PAUSED = """
import sys
from defender_ipstats.splunk.budget import SharedWindowLimiter
print(SharedWindowLimiter(sys.argv[1], [(100, 60)]).try_acquire())
"""


def test_a_429_pause_holds_every_process(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    SharedWindowLimiter(path, [(100, 60)]).pause_for(30)
    child = _python(PAUSED, path)
    out, err = child.communicate(timeout=30)
    assert 28 < float(out) <= 30, err


def test_shared_windows_on_a_fake_clock(tmp_path):
    clock = Clock()
    limiter = SharedWindowLimiter(str(tmp_path / "s.sqlite"), [(3, 60), (5, 3600)], clock=clock)
    assert [limiter.try_acquire() for _ in range(3)] == [0, 0, 0]
    assert limiter.try_acquire() == 60
    clock.now += 60
    assert [limiter.try_acquire() for _ in range(2)] == [0, 0]
    assert limiter.try_acquire() == pytest.approx(3600 - 60)  # the hourly window binds now
    limiter.pause_for(10 ** 6)  # an absurd Retry-After is capped at the longest window
    assert limiter.available_in() == pytest.approx(3600)


def test_a_clock_set_back_does_not_freeze_the_windows(tmp_path):
    clock = Clock()
    limiter = SharedWindowLimiter(str(tmp_path / "s.sqlite"), [(1, 60)], clock=clock)
    assert limiter.try_acquire() == 0
    clock.now -= 7200  # the wall clock jumps two hours back
    assert limiter.try_acquire() == pytest.approx(60)  # the call counts as made now, not two hours ahead


def test_a_damaged_state_file_is_started_afresh(tmp_path, caplog):
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    limiter = SharedWindowLimiter(str(path), [(1, 60)])
    assert limiter.try_acquire() == 0 and limiter.try_acquire() > 59
    assert "damaged" in caplog.text


def test_host_limiter_is_keyed_by_registration_and_lives_under_var_run(tmp_path):
    home = str(tmp_path / "splunk")
    a = host_limiter("ipstats", "Contoso.onmicrosoft.com", "AAAA-1", [(1, 60)], splunk_home=home)
    b = host_limiter("ipstats", "contoso.onmicrosoft.com ", "aaaa-1", [(1, 60)], splunk_home=home)
    assert isinstance(a, SharedWindowLimiter) and a.path == b.path
    assert os.path.dirname(a.path) == state_folder(home) == os.path.join(home, "var", "run", "TA-defender-ipstats")
    assert registration_key("contoso.onmicrosoft.com", "aaaa-1") in a.path and "contoso" not in a.path
    assert a.try_acquire() == 0 and b.try_acquire() > 59  # two account names, one budget
    other = host_limiter("ipstats", "contoso.onmicrosoft.com", "bbbb-2", [(1, 60)], splunk_home=home)
    assert other.path != a.path and other.try_acquire() == 0


def test_host_limiter_falls_back_to_the_process_when_the_folder_is_unusable(tmp_path, caplog):
    blocker = tmp_path / "splunk"
    blocker.write_text("a file where the folder should be")
    limiter = host_limiter("ipstats", "t", "c", [(1, 60)], splunk_home=str(blocker))
    assert isinstance(limiter, SlidingWindowLimiter)
    assert "cannot share the API budget" in caplog.text
    assert isinstance(host_limiter("ipstats", "t", "c", [(1, 60)], splunk_home=""), SlidingWindowLimiter)
