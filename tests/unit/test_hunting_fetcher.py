"""The hunting fetcher's policy with a fake hunting client and a real limiter on a fake clock.

Cancellation, an exhausted budget, the service's request bound (deadline, may_wait) and the quota
streak, as the per-IP fetcher handles them (both wait through core.gate.BudgetGate).
"""

import inspect

import pytest
from fakes import FakeClock as Clock

from defender_ipstats.core.contract import IpFetcher
from defender_ipstats.core.fetcher import Fetcher
from defender_ipstats.core.gate import STOPPED_REASON, WaitAllowance
from defender_ipstats.core.hunting_fetcher import HuntingFetcher, in_batches_of
from defender_ipstats.core.model import ERROR, FOUND, NOT_SEEN, PENDING, RATE_LIMITED, SOURCE_HUNTING, IpStats
from defender_ipstats.core.outcomes import HuntingFailure, QuotaExceeded
from defender_ipstats.splunk.budget import SlidingWindowLimiter

IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


class HuntingClient:
    """Answers each query from ``script`` (an answer, or a callable of the batch), else every IP found."""

    def __init__(self, script=()):
        self.script = list(script)
        self.asked = []

    def query(self, ips, lookback_hours):
        self.asked.append(list(ips))
        if self.script:
            answer = self.script.pop(0)
            return answer(ips) if callable(answer) else answer
        return {ip: IpStats(ip=ip, status=FOUND, prevalence=1, source=SOURCE_HUNTING) for ip in ips}


def make(script=(), per_minute=45, max_wait=600.0, batch=1, **options):
    clock = Clock()
    limiter = SlidingWindowLimiter([(per_minute, 60.0)], clock=clock)
    client = HuntingClient(script)
    fetcher = HuntingFetcher(client, limiter, 24, WaitAllowance(max_wait), split=in_batches_of(batch),
                             sleep=clock.sleep, clock=clock, **options)
    return fetcher, client, clock


def statuses(answers):
    return [answers[ip].status for ip in IPS]


def test_a_search_cancelled_while_waiting_for_budget_stops_and_says_so():
    clock_box = {}
    fetcher, client, clock = make(per_minute=1, should_stop=lambda: clock_box["clock"].now >= 5)
    clock_box["clock"] = clock
    answers = fetcher.fetch_many(IPS)
    assert client.asked == [["10.0.0.1"]]  # the other batches never went out
    assert statuses(answers) == [FOUND, ERROR, ERROR]
    assert answers["10.0.0.2"].error == STOPPED_REASON and answers["10.0.0.2"].source == SOURCE_HUNTING
    assert fetcher.stopped and fetcher.rate_limited == 0
    assert 5 <= clock.now <= 6  # noticed within one wait step
    assert fetcher.allowance.waited == pytest.approx(clock.now)


def test_a_cancelled_search_asks_nothing_even_when_budget_is_free():
    fetcher, client, _ = make(should_stop=lambda: True)
    answers = fetcher.fetch_many(IPS)
    assert client.asked == [] and fetcher.stopped
    assert {a.error for a in answers.values()} == {STOPPED_REASON}


def test_a_search_cancelled_during_a_server_error_backoff_is_reported_as_cancelled():
    clock_box = {}
    failure = HuntingFailure("Graph API error 503", retryable=True)
    fetcher, client, clock = make([failure], should_stop=lambda: clock_box["clock"].now >= 1)
    clock_box["clock"] = clock
    answers = fetcher.fetch_many(IPS[:1])
    assert len(client.asked) == 1 and fetcher.stopped
    assert answers["10.0.0.1"].error == STOPPED_REASON  # not the 503 it was backing off from


def test_budget_used_up_beyond_maxwait_answers_rate_limited_with_when_it_returns():
    fetcher, client, clock = make(per_minute=1, max_wait=10)
    answers = fetcher.fetch_many(IPS)
    assert statuses(answers) == [FOUND, RATE_LIMITED, RATE_LIMITED] and len(client.asked) == 1
    assert "hunting budget used up; it returns in about 60 s" == answers["10.0.0.2"].error
    assert fetcher.rate_limited == 2 and fetcher.budget_returns_in == pytest.approx(60)
    assert clock.now == 0 and not fetcher.stopped


def test_a_service_request_that_may_not_wait_leaves_the_rest_pending_with_retry_in():
    fetcher, client, clock = make(per_minute=1, may_wait=False)
    answers = fetcher.fetch_many(IPS)
    assert statuses(answers) == [FOUND, PENDING, PENDING] and len(client.asked) == 1
    assert fetcher.retry_in == pytest.approx(60) and fetcher.rate_limited == 0 and clock.now == 0


def test_no_query_waits_past_the_request_deadline():
    fetcher, client, clock = make(per_minute=1, deadline=30.0)
    answers = fetcher.fetch_many(IPS)
    assert statuses(answers) == [FOUND, PENDING, PENDING] and len(client.asked) == 1
    assert 29 <= clock.now <= 30 and fetcher.retry_in == pytest.approx(60 - clock.now)


def test_the_quota_streak_carried_from_earlier_requests_ends_the_batch():
    quota = QuotaExceeded(429, 5.0, "Too many requests")
    fetcher, client, _ = make([quota], quota_streak=3)
    answers = fetcher.fetch_many(IPS[:1])
    assert answers["10.0.0.1"].status == RATE_LIMITED and "4 times in a row" in answers["10.0.0.1"].error
    assert fetcher.quota_streak == 4 and len(client.asked) == 1


def test_an_answer_ends_the_quota_streak_and_the_pause_is_shared():
    quota = QuotaExceeded(429, 5.0, "Too many requests")
    fetcher, client, clock = make([quota], quota_streak=1)
    answers = fetcher.fetch_many(IPS[:1])
    assert answers["10.0.0.1"].status == FOUND and fetcher.quota_streak == 0
    assert len(client.asked) == 2 and clock.now == pytest.approx(5.0)  # waited out the Retry-After
    assert fetcher.limiter.try_acquire() == 0  # the pause is over for every search on the host


def test_the_quota_streak_limit_is_a_parameter():
    quota = QuotaExceeded(400, 1.0, "exceeded the allowed limits")  # a pause within the allowance
    fetcher, client, _ = make([quota, quota], max_quota_answers=1)
    answers = fetcher.fetch_many(IPS[:1])
    assert answers["10.0.0.1"].status == RATE_LIMITED and len(client.asked) == 2


def test_batches_come_from_the_split_in_order():
    fetcher, client, _ = make(batch=2, script=[lambda ips: {ip: IpStats(ip=ip, status=NOT_SEEN, prevalence=0,
                                                                            source=SOURCE_HUNTING) for ip in ips}])
    answers = fetcher.fetch_many(IPS)
    assert client.asked == [IPS[:2], IPS[2:]] and statuses(answers) == [NOT_SEEN, NOT_SEEN, FOUND]


def _contract_members():
    members = set(getattr(IpFetcher, "__annotations__", {}))
    members |= {name for name, _ in inspect.getmembers(IpFetcher) if not name.startswith("_")}
    return members


@pytest.mark.parametrize("build", [
    lambda: make()[0],
    lambda: Fetcher(HuntingClient(), SlidingWindowLimiter([(1, 60.0)]), 24, WaitAllowance(0)),
])
def test_both_fetchers_keep_the_fetcher_contract(build):
    fetcher = build()
    members = _contract_members()
    assert {"fatal", "gave_up", "rate_limited", "stopped", "retry_in", "budget_returns_in", "fetch_many"} <= members
    for name in members:
        assert hasattr(fetcher, name), name
    assert fetcher.fatal is None and fetcher.gave_up is None and fetcher.stopped is False
