"""JobWatcher against the splunkd stand-in's search/jobs: is the search still wanted?"""

from defender_ipstats.splunk import rest as splunkd_rest
from defender_ipstats.splunk.jobwatch import JobWatcher


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def watcher(splunkd, sid, clock, username="admin"):
    service = splunkd_rest.connect(splunkd.base_url, splunkd.new_session_key(username), timeout=5)
    return JobWatcher(service, sid, interval=3.0, clock=clock)


def polls(splunkd, sid):
    return splunkd.count(path_contains="search/jobs/" + sid)


def test_asks_at_most_once_per_interval_and_stops_on_finalize(splunkd):
    splunkd.create_job("1.1")
    clock = Clock()
    watch = watcher(splunkd, "1.1", clock)
    assert [watch.should_stop() for _ in range(5)] == [False] * 5
    assert polls(splunkd, "1.1") == 1
    splunkd.finalize_job("1.1")
    assert watch.should_stop() is False  # not asked again yet
    clock.now += 3
    assert watch.should_stop() is True and watch.stopped_because == "finalised"
    clock.now += 30
    assert watch.should_stop() is True and polls(splunkd, "1.1") == 2  # settled: no more questions


def test_a_job_that_disappears_was_cancelled(splunkd):
    splunkd.create_job("1.2")
    clock = Clock()
    watch = watcher(splunkd, "1.2", clock)
    assert watch.should_stop() is False
    splunkd.cancel_job("1.2")
    clock.now += 3
    assert watch.should_stop() is True and watch.stopped_because == "cancelled"


def test_unclear_answers_never_stop_a_search(splunkd):
    clock = Clock()
    never_seen = watcher(splunkd, "no-such-job", clock)  # e.g. a context without a job: keep going
    assert never_seen.should_stop() is False
    splunkd.create_job("1.3")
    watch = watcher(splunkd, "1.3", clock)
    assert watch.should_stop() is False
    splunkd.inject_fault(r"search/jobs", status=500, times=1)
    clock.now += 3
    assert watch.should_stop() is False
    splunkd.inject_fault(r"search/jobs", status=0, times=1)  # connection dropped
    clock.now += 3
    assert watch.should_stop() is False
    splunkd.inject_fault(r"search/jobs", status=401, times=1)
    clock.now += 3
    assert watch.should_stop() is False
    clock.now += 3
    assert watch.should_stop() is False and watch.polls == 5


def test_another_users_job_is_not_visible_and_not_taken_for_cancelled(splunkd):
    splunkd.add_user("analyst", roles=["user"])
    splunkd.create_job("1.4", owner="admin")
    clock = Clock()
    watch = watcher(splunkd, "1.4", clock, username="analyst")
    assert watch.should_stop() is False
    clock.now += 3
    assert watch.should_stop() is False
