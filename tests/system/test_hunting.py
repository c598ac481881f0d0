"""backend=hunting and backend=auto end to end: the command over protocol v2, Graph on the stand-in,
which runs the app's KQL over its own DeviceNetworkEvents (tests/standins/kql.py, device_events.py).

The figures hunting must give are computed here from the table's rows (``device_events.expected``),
independently of any KQL; the per-IP endpoint's answers (the dataset) must agree with them on the
status and the times, and may not on the count (distinct devices is not organisation prevalence).
"""

import datetime as dt
import re

import msal
import pytest
import requests

from defender_ipstats.core.outcomes import HuntingFailure, QuotaExceeded
from defender_ipstats.microsoft.graph_hunting import MAX_QUERY_CHARS, QUERY_TIMEOUT, HuntingClient, batches, build_query
from harness import OUTPUT_SUFFIXES, events
from standins import dataset, device_events
from standins import defender as d
from standins.hunting import MAX_QUERY_CHARS as STANDIN_MAX_QUERY_CHARS

NAMES = ["defender_" + s for s in OUTPUT_SUFFIXES]
WORST_IPV4 = ["%d.%d.%d.%d" % (100 + i % 156, 100 + i // 156 % 156, 200 + i // 24336, 255) for i in range(5000)]


@pytest.fixture
def hunting_app(app):
    app.configure_account(graph_url=app.defender.base_url)
    return app


def ticks(text):
    """Ticks since the epoch of an ISO 8601 time with 0 to 7 fractional digits."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,7}))?Z", text)
    assert match, text
    seconds = (dt.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S") - dt.datetime(1970, 1, 1)).total_seconds()
    return int(seconds) * 10 ** 7 + int((match.group(2) or "").ljust(7, "0"))


def assert_answers_the_table(record, value, lookback_hours):
    ip = dataset.canonical(value)
    want = device_events.expected(ip, lookback_hours)
    assert record["defender_ip"] == ip and record["defender_source"] == "hunting" and record["defender_error"] == ""
    if want is None:
        assert (record["defender_status"], record["defender_prevalence"]) == ("not_seen", "0")
        assert record["defender_first_seen"] == record["defender_last_seen"] == ""
        return
    assert record["defender_status"] == "found"
    assert int(record["defender_prevalence"]) == want["devices"]
    assert (ticks(record["defender_first_seen"]), ticks(record["defender_last_seen"])) == (want["first"], want["last"])


@pytest.mark.parametrize("lookback_hours", [720, 24])
def test_hunting_answers_what_the_events_table_holds(hunting_app, lookback_hours):
    app = hunting_app
    app.settings(rate_per_minute="10000", rate_per_hour="100000")
    app.defender.set_limits(rate_per_minute=10000, rate_per_hour=100000)
    ips = dataset.ips(150, seed=40, family="mixed")
    values = ips + ["::ffff:" + ips[0], "nonsense", ""]
    options = ["field=src_ip", "cache=off", "lookbackhours=%d" % lookback_hours]
    hunted = app.search(options + ["backend=hunting"], [events(values)])
    assert hunted.errors == []
    assert app.defender.hunting.calls() == 1 and app.defender.api_calls() == 0
    for record, value in zip(hunted.records, values[:151]):
        assert_answers_the_table(record, value, lookback_hours)
    if lookback_hours == 720:
        assert {r["defender_prevalence"] for r in hunted.records[:150]} - {"0", "1", "2", "3"}  # not all tiny
    assert any("." in r["defender_last_seen"] for r in hunted.records)  # Graph's 7-digit fractions came through
    # the per-IP endpoint agrees on what was seen and when it was last seen; the count is another figure
    per_ip = app.search(options + ["backend=ipstats"], [events(values)])
    for a, b in zip(hunted.records, per_ip.records):
        assert a["defender_status"] == b["defender_status"]
        if a["defender_status"] == "found":
            assert ticks(a["defender_last_seen"]) == ticks(b["defender_last_seen"])
            assert 1 <= int(a["defender_prevalence"]) <= int(b["defender_prevalence"])
            if lookback_hours == 720:
                assert ticks(a["defender_first_seen"]) == ticks(b["defender_first_seen"])
    assert [r["defender_status"] for r in hunted.records[-2:]] == [r["defender_status"] for r in per_ip.records[-2:]]


def test_hunting_results_are_cached_with_their_backend(hunting_app):
    app = hunting_app
    ips = dataset.ips(20, seed=41)
    app.search(["field=src_ip", "backend=hunting"], [events(ips)])
    docs = app.cache_documents()
    assert len(docs) == 20 and {doc["source"] for doc in docs} == {"hunting"}
    again = app.search(["field=src_ip", "backend=hunting"], [events(ips)])
    assert {r["defender_source"] for r in again.records} == {"cache"}
    assert app.defender.hunting.calls() == 1


def test_five_thousand_cold_ips_in_five_calls(hunting_app):
    app = hunting_app
    ips = dataset.ips(5000, seed=42)
    chunks = [events(ips[i:i + 2500]) for i in range(0, 5000, 2500)]
    run = app.search(["field=src_ip", "backend=hunting"], chunks, timeout=120)
    assert run.errors == [] and len(run.records) == 5000
    assert app.defender.hunting.calls() <= 5
    assert {r["defender_status"] for r in run.records} <= {"found", "not_seen"}, \
        {r["defender_error"] for r in run.records}


def test_worst_case_ips_stay_within_the_query_length(hunting_app):
    app = hunting_app
    chunks = [events(WORST_IPV4[i:i + 2500]) for i in range(0, 5000, 2500)]
    run = app.search(["field=src_ip", "backend=hunting", "cache=off"], chunks, timeout=120)
    assert run.errors == [] and {r["defender_status"] for r in run.records} <= {"found", "not_seen"}
    records = app.defender.hunting.requests
    assert {r.status for r in records} == {200} and 3 <= len(records) <= 5
    assert max(len(r.query) for r in records) <= MAX_QUERY_CHARS == STANDIN_MAX_QUERY_CHARS


def test_auto_uses_per_ip_for_a_few_and_hunting_for_many(hunting_app):
    app = hunting_app
    few = dataset.ips(5, seed=43)
    run = app.search(["field=src_ip", "backend=auto"], [events(few)])
    assert {r["defender_source"] for r in run.records} == {"api"}
    assert not [text for _, text in run.messages if "distinct devices" in text]
    many = dataset.ips(300, seed=44)
    run = app.search(["field=src_ip", "backend=auto"], [events(many[:150]), events(many[150:])])
    assert {r["defender_source"] for r in run.records} == {"hunting"}
    assert app.defender.api_calls() == 5 and app.defender.hunting.calls() == 2
    notes = [text for level, text in run.messages if "distinct devices" in text]
    assert len(notes) == 1 and "prevalence" in notes[0]  # said once, at the switch


@pytest.mark.parametrize("retired_status", [410, 404])
def test_auto_keeps_enriching_when_the_per_ip_endpoint_is_retired(hunting_app, retired_status):
    app = hunting_app
    app.defender.set_retired(retired_status)
    ips = dataset.ips(30, seed=45)
    chunks = [events(ips[:10]), events(ips[10:])]
    run = app.search(["field=src_ip", "backend=auto"], chunks)
    assert [r["defender_status"] for r in run.records] == [dataset.status_of(ip) for ip in ips]
    assert {r["defender_source"] for r in run.records} == {"hunting"}
    warnings = [text for level, text in run.messages if level == "WARN"]
    assert len(warnings) == 1 and "retired" in warnings[0]
    assert run.errors == []


def test_ipstats_backend_says_when_the_endpoint_is_retired(hunting_app):
    app = hunting_app
    app.defender.set_retired(410)
    run = app.search(["field=src_ip", "backend=ipstats"], [events(dataset.ips(3, seed=46))])
    assert {r["defender_status"] for r in run.records} == {"error"}
    assert len(run.errors) == 1 and "backend=hunting" in run.errors[0]


def test_hunting_without_the_graph_permission(hunting_app):
    app = hunting_app
    app.defender.set_roles(d.DEFAULT_CLIENT_ID, [d.IP_READ_ALL])
    ips = dataset.ips(80, seed=47)
    run = app.search(["field=src_ip", "backend=hunting"], [events(ips)])
    assert len(run.errors) == 1 and "ThreatHunting.Read.All" in run.errors[0]
    assert {r["defender_status"] for r in run.records} == {"error"}
    auto = app.search(["field=src_ip", "backend=auto", "cache=off"], [events(ips)])
    warnings = [text for level, text in auto.messages if level == "WARN"]
    assert len(warnings) == 1 and "ThreatHunting.Read.All" in warnings[0]
    assert {r["defender_source"] for r in auto.records} == {"api"}


@pytest.mark.parametrize("fault, times, reason", [(500, 2, "Graph API error 500"), (503, 2, "Graph API error 503"),
                                                  ("malformed", 1, "malformed JSON"),
                                                  (400, 1, "hunting query rejected")])
def test_hunting_faults_are_errors_and_never_cached(hunting_app, fault, times, reason):
    app = hunting_app
    app.defender.hunting.inject(fault, times=times)
    run = app.search(["field=src_ip", "backend=hunting"], [events(dataset.ips(3, seed=48))])
    assert {r["defender_status"] for r in run.records} == {"error"}
    assert reason in run.records[0]["defender_error"]
    assert app.cache_documents() == []
    assert app.defender.hunting.calls() == times


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_server_error_is_retried_once(hunting_app, status):
    app = hunting_app
    app.defender.hunting.inject(status)
    ips = dataset.ips(40, seed=49)
    run = app.search(["field=src_ip", "backend=hunting"], [events(ips)])
    assert [r["defender_status"] for r in run.records] == [dataset.status_of(ip) for ip in ips]
    assert [r.status for r in app.defender.hunting.requests] == [status, 200]


@pytest.mark.parametrize("fault", [429, "quota"])
def test_quota_answers_wait_for_retry_after_then_succeed(hunting_app, fault):
    app = hunting_app
    app.defender.hunting.inject(fault, retry_after="2")
    ips = dataset.ips(40, seed=50)
    run = app.search(["field=src_ip", "backend=hunting"], [events(ips)])
    assert run.errors == []
    assert [r["defender_status"] for r in run.records] == [dataset.status_of(ip) for ip in ips]
    first, second = app.defender.hunting.requests
    assert (first.status, second.status) == (429 if fault == 429 else 400, 200)
    assert second.time - first.time >= 1.9  # Retry-After was honoured


@pytest.mark.parametrize("fault", [429, "quota"])
def test_quota_answers_pause_every_search_and_are_never_cached(hunting_app, fault):
    app = hunting_app
    app.defender.hunting.inject(fault, retry_after=None)  # no Retry-After: a whole 15-minute CPU cycle
    ips = dataset.ips(30, seed=51)
    run = app.search(["field=src_ip", "backend=hunting", "maxwait=0"], [events(ips)])
    assert {r["defender_status"] for r in run.records} == {"rate_limited"}
    assert "quota" in run.records[0]["defender_error"]
    assert app.cache_documents() == []
    # another search, at once: the shared limiter is paused, so it does not call Graph
    again = app.search(["field=src_ip", "backend=hunting", "maxwait=0"], [events(ips)])
    assert {r["defender_status"] for r in again.records} == {"rate_limited"}
    assert app.defender.hunting.calls() == 1 and app.cache_documents() == []


def test_quota_answers_that_go_on_end_as_rate_limited(hunting_app):
    app = hunting_app
    app.defender.hunting.inject("quota", times=10, retry_after="1")
    run = app.search(["field=src_ip", "backend=hunting"], [events(dataset.ips(10, seed=52))])
    assert {r["defender_status"] for r in run.records} == {"rate_limited"}
    assert app.defender.hunting.calls() == 4 and app.cache_documents() == []


@pytest.mark.parametrize("mode", ["off", "refresh"])
def test_each_ip_is_in_one_hunting_query_per_search_however_the_chunks_carry_it(hunting_app, mode):
    app = hunting_app
    app.settings(refresh_min_age="0")  # nothing in the cache counts as young: only the search's memory helps
    ips = dataset.ips(110, seed=19)
    chunks = [ips[:50], ips[30:80] + ips[:10], ips[60:], ips[::-1]]
    run = app.search(["field=src_ip", "backend=hunting", "cache=%s" % mode], [events(c) for c in chunks])
    assert run.errors == [] and len(run.records) == sum(len(c) for c in chunks)
    wanted = set(ips)
    asked = [ip for request in app.defender.hunting.requests for ip in request.ips if ip in wanted]
    assert sorted(asked) == sorted(ips)
    assert app.defender.hunting.calls() == 3  # the last chunk brings no new IP: no query at all
    for record in run.records:
        assert_answers_the_table(record, record["src_ip"], 720)


def test_hunting_requests_carry_only_canonical_ips(hunting_app):
    app = hunting_app
    values = ["010.1.1.1", "1.2.3.4\r\nX: y", '1.2.3.4")', "::FFFF:10.9.8.7", "2001:DB8:0:0::5", "fe80::1%eth0"]
    app.search(["field=src_ip", "backend=hunting"], [events(values)])
    (record,) = app.defender.hunting.requests
    assert record.status == 200
    assert record.ips == ["10.9.8.7", "::ffff:10.9.8.7", "2001:db8::5", "fe80::1"]


# -- the hunting client on its own, over HTTPS to the stand-in ----------------------------------------

class GraphTokens:
    def __init__(self, standin):
        self.app = msal.ConfidentialClientApplication(
            d.DEFAULT_CLIENT_ID, client_credential=d.DEFAULT_SECRET, authority=standin.authority(),
            instance_discovery=False, verify=standin.ca_bundle)

    def token(self):
        return self.app.acquire_token_for_client(scopes=[d.GRAPH_SCOPE])["access_token"]

    def invalidate(self, token):
        pass


@pytest.fixture
def graph_client(defender, monkeypatch):
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    session = requests.Session()
    session.verify = defender.ca_bundle

    def make(timeout=QUERY_TIMEOUT):
        return HuntingClient(defender.base_url, GraphTokens(defender), session, timeout=timeout)
    return make


def test_the_client_timeout_is_just_above_graphs_three_minutes(defender, graph_client):
    # the query runs as a job (service/hunting_jobs.py): Graph's own timeout answer, not the client's, ends it
    assert 180 < QUERY_TIMEOUT <= 200
    defender.hunting.inject("slow", delay=2.5)
    answer = graph_client(timeout=1).query(["10.0.0.1"], 24)
    assert isinstance(answer, HuntingFailure) and "timed out" in answer.reason and not answer.retryable


def test_the_largest_batch_of_worst_case_ips_is_accepted(defender, graph_client):
    worst_ipv6 = ["fd12:3456:%x:%x:abcd:ef01:2345:%x" % (0x1000 + i, 0x2000 + i, 0x3000 + i) for i in range(2500)]
    for ips in (WORST_IPV4[:2500], worst_ipv6):
        batch = batches(ips)[0]
        assert len(batch) < len(ips)  # the length, not the count, cut this batch
        assert len(build_query(ips, 720)) > STANDIN_MAX_QUERY_CHARS  # 2,500 of them would be too long
        answer = graph_client().query(batch, 720)
        assert isinstance(answer, dict) and set(answer) == set(batch)
    assert [r.status for r in defender.hunting.requests] == [200, 200]


@pytest.mark.parametrize("fault, retry_after, expected", [(429, "7", 7.0), (429, None, None), ("quota", "3", 3.0),
                                                          ("quota", None, None)])
def test_quota_answers_are_recognised(defender, graph_client, fault, retry_after, expected):
    defender.hunting.inject(fault, retry_after=retry_after)
    answer = graph_client().query(["10.0.0.1"], 24)
    assert isinstance(answer, QuotaExceeded) and answer.retry_after == expected


def test_an_ordinary_bad_request_is_not_a_quota_answer(defender, graph_client):
    defender.hunting.inject(400)
    answer = graph_client().query(["10.0.0.1"], 24)
    assert isinstance(answer, HuntingFailure) and not answer.retryable
