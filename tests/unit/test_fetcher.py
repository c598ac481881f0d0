"""Fetching within the budget and the wait allowance, with fake collaborators."""

from defender_ipstats.client import Throttled
from defender_ipstats.errors import AuthorizationError
from defender_ipstats.fetcher import Fetcher, WaitAllowance
from defender_ipstats.model import ERROR, FOUND, RATE_LIMITED, SOURCE_API, IpStats
from defender_ipstats.ratelimit import SlidingWindowLimiter


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class Client:
    def __init__(self, script=None):
        self.calls = []
        self.script = list(script or [])

    def ip_stats(self, ip, lookback):
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
