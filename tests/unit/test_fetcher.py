"""Fetching within the budget and the wait allowance, with fake collaborators."""

from fakes import FakeClock as Clock

from defender_ipstats.core.errors import AuthorizationError
from defender_ipstats.core.fetcher import Fetcher, WaitAllowance
from defender_ipstats.core.model import ERROR, FOUND, RATE_LIMITED, SOURCE_API, IpStats
from defender_ipstats.core.outcomes import Throttled
from defender_ipstats.splunk.budget import SlidingWindowLimiter


class Client:
    def __init__(self, script=None):
        self.calls = []
        self.script = list(script or [])

    def ip_stats(self, ip, lookback, retry_gate=None):
        self.calls.append((ip, lookback))
        if self.script:
            item = self.script.pop(0)
            if isinstance(item, Exception):
                raise item
            return item
        return IpStats(ip=ip, status=FOUND, prevalence=1, source=SOURCE_API)


def make(client, per_minute=100, max_wait=60, clock=None):
    clock = clock or Clock()
    limiter = SlidingWindowLimiter([(per_minute, 60), (1500, 3600)], clock=clock)
    return Fetcher(client, limiter, 720, WaitAllowance(max_wait), workers=1, sleep=clock.sleep, clock=clock), clock


def test_one_call_per_ip():
    client = Client()
    fetcher, _ = make(client)
    ips = ["10.0.0.%d" % i for i in range(20)]
    answers = fetcher.fetch_many(ips)
    assert sorted(answers) == sorted(ips) and len(client.calls) == 20


def test_waits_within_maxwait_then_marks_rate_limited():
    client = Client()
    fetcher, clock = make(client, per_minute=5, max_wait=60)
    ips = ["10.0.0.%d" % i for i in range(12)]
    answers = fetcher.fetch_many(ips)
    statuses = [answers[ip].status for ip in ips]
    # 5 now, 5 after waiting ~60 s (the allowance), the rest rate_limited
    assert statuses.count(FOUND) == 10 and statuses.count(RATE_LIMITED) == 2
    assert fetcher.allowance.waited <= 60
    assert "returns in about" in answers[ips[-1]].error


def test_zero_maxwait_never_waits():
    fetcher, clock = make(Client(), per_minute=2, max_wait=0)
    answers = fetcher.fetch_many(["1.1.1.1", "2.2.2.2", "3.3.3.3"])
    assert [a.status for a in answers.values()].count(RATE_LIMITED) == 1
    assert clock.now == 0


def test_429_pauses_and_retries_the_same_ip():
    client = Client([Throttled(10, "quota"), None])
    client.script[1] = IpStats(ip="1.1.1.1", status=FOUND, prevalence=3, source=SOURCE_API)
    fetcher, clock = make(client)
    answers = fetcher.fetch_many(["1.1.1.1"])
    assert answers["1.1.1.1"].status == FOUND
    assert [c[0] for c in client.calls] == ["1.1.1.1", "1.1.1.1"]
    assert clock.now >= 10


def test_429_beyond_maxwait_gives_rate_limited():
    fetcher, _ = make(Client([Throttled(600, "quota")]), max_wait=30)
    answers = fetcher.fetch_many(["1.1.1.1", "2.2.2.2"])
    assert {a.status for a in answers.values()} == {RATE_LIMITED}


def test_403_stops_all_further_calls():
    client = Client([AuthorizationError("Defender refused access (403): Ip.Read.All")])
    fetcher, _ = make(client)
    answers = fetcher.fetch_many(["1.1.1.1", "2.2.2.2", "3.3.3.3"])
    assert len(client.calls) == 1
    assert {a.status for a in answers.values()} == {ERROR}
    assert fetcher.fatal is not None


class RetryingClient(Client):
    """Like the real client whose first attempt meets a 503: it asks the gate before trying again."""

    def __init__(self, backoff=0.75):
        super().__init__()
        self.backoff = backoff

    def ip_stats(self, ip, lookback, retry_gate=None):
        self.calls.append((ip, lookback))
        if retry_gate is not None and retry_gate(self.backoff):
            self.calls.append((ip, lookback))
            return IpStats(ip=ip, status=FOUND, prevalence=1, source=SOURCE_API)
        return IpStats(ip=ip, status=ERROR, source=SOURCE_API, error="Defender API error 503")


def test_a_retry_waits_its_backoff_from_the_allowance_and_takes_budget():
    client = RetryingClient(backoff=0.75)
    fetcher, clock = make(client, per_minute=3, max_wait=10)
    answers = fetcher.fetch_many(["1.1.1.1"])
    assert answers["1.1.1.1"].status == FOUND
    assert len(client.calls) == 2 and clock.now == 0.75 and fetcher.allowance.waited == 0.75
    assert fetcher.limiter.try_acquire() == 0  # 2 of 3 places were taken: the retry took one
    assert fetcher.limiter.try_acquire() > 0


def test_a_retry_is_refused_when_its_backoff_does_not_fit_the_allowance():
    client = RetryingClient(backoff=0.75)
    fetcher, clock = make(client, max_wait=0)
    answers = fetcher.fetch_many(["1.1.1.1"])
    assert answers["1.1.1.1"].status == ERROR and len(client.calls) == 1 and clock.now == 0


def test_a_fetcher_that_never_waits_for_budget_still_retries_within_the_search_allowance():
    clock = Clock()
    limiter = SlidingWindowLimiter([(100, 60)], clock=clock)
    search_allowance = WaitAllowance(5)
    fetcher = Fetcher(RetryingClient(), limiter, 720, WaitAllowance(0), workers=1, sleep=clock.sleep, clock=clock,
                      retry_allowance=search_allowance)
    assert fetcher.fetch_many(["1.1.1.1"])["1.1.1.1"].status == FOUND
    assert search_allowance.waited == 0.75


def test_a_stopped_search_makes_no_more_calls():
    client = Client()
    clock = Clock()
    limiter = SlidingWindowLimiter([(2, 60)], clock=clock)
    asked = []

    def should_stop():
        asked.append(clock.now)
        return clock.now >= 3  # cancelled three seconds into the wait for budget

    fetcher = Fetcher(client, limiter, 720, WaitAllowance(60), workers=1, sleep=clock.sleep, clock=clock,
                      should_stop=should_stop)
    ips = ["10.0.0.%d" % i for i in range(6)]
    answers = fetcher.fetch_many(ips)
    assert len(client.calls) == 2
    assert [answers[ip].status for ip in ips] == [FOUND, FOUND] + [ERROR] * 4
    assert all("cancelled or finalised" in answers[ip].error for ip in ips[2:])
    assert fetcher.stopped and clock.now <= 3 + 1  # noticed within one wait step


def test_gives_up_after_failures_in_a_row():
    from defender_ipstats.core.fetcher import FAILURES_BEFORE_GIVING_UP

    failing = [IpStats(ip="x", status=ERROR, source=SOURCE_API, error="Defender API error 500")] * 20
    client = Client(failing)
    fetcher, _ = make(client)
    answers = fetcher.fetch_many(["10.0.0.%d" % i for i in range(20)])
    assert len(client.calls) == FAILURES_BEFORE_GIVING_UP
    assert fetcher.gave_up and sum("failed 5 times in a row" in a.error for a in answers.values()) == 15


def test_one_success_resets_the_failure_count():
    fail = IpStats(ip="x", status=ERROR, source=SOURCE_API, error="Defender API error 500")
    client = Client([fail] * 4 + [IpStats(ip="y", status=FOUND, prevalence=1, source=SOURCE_API)] + [fail] * 4)
    fetcher, _ = make(client)
    fetcher.fetch_many(["10.0.0.%d" % i for i in range(12)])
    assert len(client.calls) == 12 and fetcher.gave_up is None


def test_every_call_is_stamped_when_it_completed():
    class SlowClient(Client):
        def __init__(self, clock):
            super().__init__()
            self.clock = clock

        def ip_stats(self, ip, lookback, retry_gate=None):
            self.clock.now += 4  # the call takes four seconds to reach the API and come back
            return super().ip_stats(ip, lookback)

    clock = Clock()
    limiter = SlidingWindowLimiter([(1, 60)], clock=clock)
    fetcher = Fetcher(SlowClient(clock), limiter, 720, WaitAllowance(0), workers=1, sleep=clock.sleep, clock=clock)
    fetcher.fetch_many(["1.1.1.1"])
    assert limiter.try_acquire() == 60  # counted from t=4, when it completed, not t=0
