"""The hunting query text, its batches and the parsing of Graph's answer, without servers."""

import random
import re

import pytest
from fakes import FakeClock

from defender_ipstats.core.hunting_fetcher import MAX_BATCH_IPS, QUOTA_CYCLE_SECONDS, quota_delay
from defender_ipstats.core.outcomes import HuntingFailure, QuotaExceeded
from defender_ipstats.microsoft.graph_hunting import MAX_QUERY_CHARS, QUERY_BUDGET, HuntingClient, batches, build_query


def test_query_lists_canonical_ips_and_the_mapped_ipv4_form():
    query = build_query(["10.0.0.1", "2001:db8::1"], 24)
    assert "ago(24h)" in query
    assert 'in~ ("10.0.0.1", "::ffff:10.0.0.1", "2001:db8::1")' in query
    assert "count()" in query and "dcount" not in query  # exact distinct devices


@pytest.mark.parametrize("bad", ['10.0.0.1") | take 1 //', "2001:DB8::1", "::ffff:1.2.3.4", "1.2.3.4 ", ""])
def test_query_refuses_anything_but_canonical_ips(bad):
    with pytest.raises(ValueError):
        build_query(["10.0.0.1", bad], 720)
    with pytest.raises(ValueError):
        batches(["10.0.0.1", bad])


@pytest.mark.parametrize("hours", [0, 721, -5])
def test_query_refuses_lookback_out_of_range(hours):
    with pytest.raises(ValueError):
        build_query(["10.0.0.1"], hours)


def test_query_text_has_only_safe_characters():
    query = build_query(["10.%d.%d.1" % (i, j) for i in range(3) for j in range(3)], 720)
    assert re.fullmatch(r'[A-Za-z0-9 |()"=~:.,>!_-]+', query.replace("\n", ""))


def worst_ipv4(n):
    return ["%d.%d.%d.%d" % (100 + i % 156, 100 + i // 156 % 156, 200 + i // 24336, 255) for i in range(n)]


def worst_ipv6(n):
    return ["fd12:3456:%x:%x:abcd:ef01:2345:%x" % (0x1000 + i, 0x2000 + i, 0x3000 + i) for i in range(n)]


@pytest.mark.parametrize("ips", [worst_ipv4(5000), worst_ipv6(5000), [ip for pair in zip(worst_ipv4(2500),
                                                                                         worst_ipv6(2500))
                                                                      for ip in pair]],
                         ids=["ipv4 three-digit octets", "ipv6 full length", "both"])
def test_worst_case_batches_stay_within_the_budget(ips):
    assert {len(ip) for ip in ips} <= {15, 39}  # the longest canonical forms
    cut = batches(ips)
    assert [ip for batch in cut for ip in batch] == ips  # every IP once, in order
    for batch in cut:
        for hours in (1, 720):
            assert len(build_query(batch, hours)) <= QUERY_BUDGET < MAX_QUERY_CHARS
    assert len(cut) <= 3  # 5,000 worst-case IPs: 3 queries
    assert all(len(build_query(batch + [ips[0]], 720)) > QUERY_BUDGET for batch in cut[:-1])  # filled up


def test_short_ips_are_cut_by_count():
    ips = ["1.1.%d.%d" % (i // 250, i % 250) for i in range(6000)]
    assert [len(b) for b in batches(ips)] == [MAX_BATCH_IPS, MAX_BATCH_IPS, 1000]


def test_random_ipv4_batches_are_large():
    rng = random.Random(7)
    ips = ["%d.%d.%d.%d" % (rng.randint(1, 223), rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254))
           for _ in range(5000)]
    assert len(batches(ips)) == 3


def test_quota_delay_uses_retry_after_else_waits_out_a_whole_cpu_cycle():
    assert quota_delay(QuotaExceeded(429, 7.0, "")) == 7.0
    assert quota_delay(QuotaExceeded(400, None, "")) == QUOTA_CYCLE_SECONDS == 900.0  # Graph's 15-minute cycle
    assert quota_delay(QuotaExceeded(429, None, "")) == QUOTA_CYCLE_SECONDS


# -- parsing Graph's answer: a minimal stand-in for requests.Response (status, headers, json()) ----------

class Answer:
    def __init__(self, status, body, headers=None):
        self.status_code, self._body, self.headers = status, body, headers or {}

    def json(self):
        if isinstance(self._body, Exception):
            raise self._body
        return self._body


def interpret(ips, status, body, headers=None):
    return HuntingClient("https://graph.example", None, None, clock=lambda: 1000.0)._interpret(
        ips, Answer(status, body, headers))


def row(ip, count, first, last):
    return {"RemoteIP": ip, "DeviceCount": count, "FirstSeen": first, "LastSeen": last}


def test_duplicate_and_mapped_rows_are_merged():
    answers = interpret(["10.0.0.1", "2001:db8::1", "10.0.0.2"], 200, {"schema": [], "results": [
        row("::ffff:10.0.0.1", 3, "2026-11-20T10:00:00.1234567Z", "2026-11-21T10:00:00Z"),
        row("10.0.0.1", 5, "2026-11-20T10:00:00.1234566Z", "2026-11-20T11:00:00Z"),
        row("10.0.0.1", 5, "2026-11-20T10:00:00.1234566Z", "2026-11-20T11:00:00Z"),
        row("2001:DB8::1", 2, "2026-11-26T01:02:03.5Z", "2026-11-26T01:02:03.9000001Z"),
        row("2001:db8::1", 1, "2026-11-26T01:02:03.45Z", "2026-11-26T01:02:03.9Z"),
        row("192.0.2.99", 9, None, None),  # not asked for: ignored
    ]})
    assert set(answers) == {"10.0.0.1", "2001:db8::1", "10.0.0.2"}
    first = answers["10.0.0.1"]
    assert (first.status, first.prevalence) == ("found", 5)
    assert (first.first_seen, first.last_seen) == ("2026-11-20T10:00:00.1234566Z", "2026-11-21T10:00:00Z")
    second = answers["2001:db8::1"]
    assert second.prevalence == 2
    # 7-digit fractions compared as times, not as text: .45 is earlier than .5, .9000001 later than .9
    assert (second.first_seen, second.last_seen) == ("2026-11-26T01:02:03.45Z", "2026-11-26T01:02:03.9000001Z")
    assert (answers["10.0.0.2"].status, answers["10.0.0.2"].prevalence) == ("not_seen", 0)
    assert {a.source for a in answers.values()} == {"hunting"}


@pytest.mark.parametrize("status, message, headers, expected", [
    (429, "Too many requests", {"Retry-After": "12"}, QuotaExceeded(429, 12.0, "Too many requests")),
    (429, "Too many requests", {}, QuotaExceeded(429, None, "Too many requests")),
    (400, "Query execution has exceeded the allowed limits (80DA0003)", {},
     QuotaExceeded(400, None, "Query execution has exceeded the allowed limits (80DA0003)")),
])
def test_quota_answers(status, message, headers, expected):
    assert interpret(["10.0.0.1"], status, {"error": {"message": message}}, headers) == expected


@pytest.mark.parametrize("status, retryable", [(400, False), (404, False), (500, True), (503, True), (504, True)])
def test_other_failures(status, retryable):
    answer = interpret(["10.0.0.1"], status, {"error": {"message": "Syntax error"}})
    assert isinstance(answer, HuntingFailure) and answer.retryable is retryable


@pytest.mark.parametrize("body", [ValueError("not JSON"), {"results": [{"RemoteIP": "10.0.0.1"}]},
                                  {"results": [{"RemoteIP": "10.0.0.1", "DeviceCount": -1}]}])
def test_malformed_answers_are_failures(body):
    assert isinstance(interpret(["10.0.0.1"], 200, body), HuntingFailure)


# -- the fetcher's policy, with a fake client and limiter and a fake clock ----------------------------------

class FakeLimiter:
    def __init__(self, clock):
        self.clock, self.paused_until, self.pauses = clock, 0.0, []

    def try_acquire(self):
        return max(0.0, self.paused_until - self.clock.now)

    def completed(self):
        pass

    def pause_for(self, seconds):
        self.pauses.append(seconds)
        self.paused_until = self.clock.now + seconds


class ScriptedClient:
    def __init__(self, answers):
        self.answers, self.asked = list(answers), 0

    def query(self, ips, hours):
        self.asked += 1
        answer = self.answers.pop(0)
        return answer(ips) if callable(answer) else answer


def fetcher(answers, max_wait=3600.0, should_stop=None):
    from defender_ipstats.core.fetcher import WaitAllowance
    from defender_ipstats.core.hunting_fetcher import HuntingFetcher

    clock = FakeClock()
    limiter = FakeLimiter(clock)
    client = ScriptedClient(answers)
    return HuntingFetcher(client, limiter, 24, WaitAllowance(max_wait), sleep=clock.sleep, clock=clock,
                          should_stop=should_stop), client, limiter, clock


def found(ips):
    from defender_ipstats.core.model import FOUND, IpStats

    return {ip: IpStats(ip=ip, status=FOUND, prevalence=1, source="hunting") for ip in ips}


def test_quota_answers_without_retry_after_pause_a_whole_cpu_cycle_through_the_shared_limiter():
    quota = QuotaExceeded(400, None, "exceeded the allowed limits")
    f, client, limiter, clock = fetcher([quota, quota, found])
    answers = f.fetch_many(["10.0.0.1"])
    assert answers["10.0.0.1"].status == "found" and client.asked == 3
    assert limiter.pauses == [QUOTA_CYCLE_SECONDS, QUOTA_CYCLE_SECONDS]
    assert clock.now == pytest.approx(2 * QUOTA_CYCLE_SECONDS) and f.allowance.waited == pytest.approx(clock.now)


def test_a_quota_pause_longer_than_maxwait_ends_as_rate_limited():
    f, client, limiter, clock = fetcher([QuotaExceeded(429, 120.0, "")], max_wait=60)
    answers = f.fetch_many(["10.0.0.1", "10.0.0.2"])
    assert {a.status for a in answers.values()} == {"rate_limited"} and client.asked == 1
    assert "quota" in answers["10.0.0.1"].error and limiter.pauses == [120.0] and clock.now == 0


def test_a_server_error_is_retried_once_and_only_once():
    failure = HuntingFailure("Graph API error 503", retryable=True)
    f, client, _, clock = fetcher([failure, found])
    assert f.fetch_many(["10.0.0.1"])["10.0.0.1"].status == "found" and clock.now == pytest.approx(2.0)
    f, client, _, _ = fetcher([failure, failure, found])
    assert f.fetch_many(["10.0.0.1"])["10.0.0.1"].status == "error" and client.asked == 2


def test_a_cancelled_search_makes_no_more_calls():
    f, client, _, _ = fetcher([found], should_stop=lambda: True)
    answers = f.fetch_many(["10.0.0.1"])
    assert answers["10.0.0.1"].status == "error" and client.asked == 0 and f.stopped
