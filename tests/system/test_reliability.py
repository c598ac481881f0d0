"""Load, faults and hostile input, over the real protocol and real HTTP against the stand-ins.

Every scenario of the fault matrix (tests/support/faults.py) must keep the same promises: events out =
events in, in order and untouched; nothing wrong in the cache; no secret or token anywhere; no
request to the API but ``/api/ips/<canonical ip>/stats?lookBackHours=<n>``. Then each checks its
own statuses and messages.
"""

import time

import pytest

import faults
from harness import events
from standins import dataset


def assert_reliable(outcome):
    assert outcome.events_out == outcome.events_in > 0
    assert outcome.in_order
    assert outcome.bad_cache_entries == []
    assert outcome.leaks == []
    assert outcome.off_path == []
    for run in outcome.runs:
        assert run.returncode == 0, run.stderr
        assert all("Traceback" not in text for _, text in run.messages)
    # errors and rate-limited lookups are never cached (bad_cache_entries says so too)
    assert {doc["status"] for doc in outcome.cache_documents} <= {"found", "not_seen"}


def enriched(outcome):
    statuses = outcome.statuses()
    return statuses["found"] + statuses["not_seen"]


def valid_ips(outcome):
    """Distinct valid IPs of the scenario's events."""
    ips = set()
    for sent, _ in outcome.batches:
        for event in sent:
            value = event.get("src_ip")
            for item in value if isinstance(value, list) else [value]:
                canonical = faults._canonical(item) if item else None
                if canonical:
                    ips.add(canonical)
    return ips


def test_no_fault(app):
    outcome = faults.baseline(app)
    assert_reliable(outcome)
    assert outcome.api_calls == len(valid_ips(outcome)) and outcome.throttled == 0
    assert set(outcome.statuses()) == {"found", "not_seen", "invalid", ""}
    assert len(outcome.cache_documents) == len(valid_ips(outcome))
    assert outcome.messages() == []


def test_429_storm_pauses_and_retries(app):
    started = time.monotonic()
    outcome = faults.storm_429_injected(app)
    assert_reliable(outcome)
    assert outcome.throttled == 6
    assert set(outcome.statuses()) <= {"found", "not_seen", "rate_limited", "invalid", ""}
    assert time.monotonic() - started >= 1  # the pause of Retry-After: 1 was kept
    # a 429 is not retried on the spot: after the first one, only calls already in flight arrive
    # before its Retry-After (1 s) has passed
    first_429 = min(r.time for r in app.defender.api_requests if r.status == 429)
    later = [r.time - first_429 for r in app.defender.api_requests if r.time > first_429 + 0.5]
    assert later and min(later) >= 0.9


def test_429_from_the_quota_marks_the_rest_rate_limited_with_one_message(app):
    outcome = faults.quota_429(app)
    assert_reliable(outcome)
    statuses = outcome.statuses()
    assert enriched(outcome) >= 5 and statuses["rate_limited"] > 0 and "error" not in statuses
    assert 1 <= outcome.throttled <= faults.FETCH_WORKERS  # calls already in flight, then everyone pauses
    budget = [t for t in outcome.messages("WARN") if "budget ran out" in t]
    distinct_limited = {r["defender_ip"] for r in outcome.records if r["defender_status"] == "rate_limited"}
    assert len(budget) == 1 and "%d IPs were not enriched" % len(distinct_limited) in budget[0]
    assert "budget returns in about" in budget[0] and "UTC" in budget[0]


def test_a_short_500_burst_is_retried_away(app):
    outcome = faults.burst_500(app)
    assert_reliable(outcome)
    assert "error" not in outcome.statuses()
    assert outcome.api_calls == len(valid_ips(outcome)) + 4  # every retry is an API call
    assert app.defender.api_calls(500) == 4


def test_an_api_that_keeps_failing_is_given_up_on(app):
    outcome = faults.burst_503_long(app)
    assert_reliable(outcome)
    assert set(outcome.statuses()) <= {"error", "invalid", ""}
    assert outcome.cache_documents == []
    # a few IPs tried three times each, then the rest not sent at all
    assert outcome.api_calls <= 3 * (5 + faults.FETCH_WORKERS)
    assert any("kept failing" in text for text in outcome.messages("WARN"))
    errors = {r["defender_error"] for r in outcome.records if r["defender_status"] == "error"}
    assert errors <= {"Defender API error 503", "not looked up: the Defender API failed 5 times in a row"}


def test_slow_answers_are_timed_out_and_retried(app):
    outcome = faults.slow_past_timeout(app)
    assert_reliable(outcome)
    assert set(outcome.statuses()) <= {"found", "not_seen", "error", "invalid", ""}
    assert all("timed out" in r["defender_error"] for r in outcome.records if r["defender_status"] == "error")
    assert outcome.api_calls == len(valid_ips(outcome)) + 5  # five attempts timed out, each retried


@pytest.mark.parametrize("scenario, reason", [
    (faults.malformed_json, "malformed JSON"), (faults.schema_invalid_json, "unexpected API answer")])
def test_bad_json_is_an_error_for_that_ip_only(app, scenario, reason):
    outcome = scenario(app)
    assert_reliable(outcome)
    failed = {r["defender_ip"] for r in outcome.records if r["defender_status"] == "error"}
    assert len(failed) == 3
    assert all(reason in r["defender_error"] for r in outcome.records if r["defender_status"] == "error")
    assert len(outcome.cache_documents) == len(valid_ips(outcome)) - 3


def test_a_token_expiring_mid_search_gets_one_fresh_token(app):
    outcome = faults.token_expires_mid_search(app)
    assert_reliable(outcome)
    assert set(outcome.statuses()) == {"found", "not_seen", "invalid", ""}
    assert outcome.notes["unauthorized"] >= 1 and outcome.notes["token_requests"] == 2
    assert outcome.messages() == []


@pytest.mark.parametrize("scenario, what", [(faults.kv_store_500, "500"), (faults.kv_store_hangs, "timed out"),
                                            (faults.splunkd_401, "401")])
def test_kv_store_trouble_costs_one_warning(app, scenario, what):
    started = time.monotonic()
    outcome = scenario(app)
    assert_reliable(outcome)
    assert set(outcome.statuses()) == {"found", "not_seen", "invalid", ""}
    warnings = outcome.messages("WARN")
    assert len(warnings) == 1 and "KV store" in warnings[0] and what in warnings[0], warnings
    assert outcome.messages("ERROR") == []
    assert outcome.api_calls == len(valid_ips(outcome))
    assert time.monotonic() - started < 40


@pytest.mark.parametrize("scenario", [faults.cancelled_midway, faults.finalised_midway])
def test_a_stopped_search_stops_calling_the_api_and_lets_events_through(app, scenario):
    outcome = scenario(app)
    assert_reliable(outcome)
    assert outcome.api_calls == 10  # the budget of the minute; then it waited, and was stopped
    assert outcome.notes["stop_to_end"] is not None and outcome.notes["stop_to_end"] < 10
    answered = {r["defender_ip"] for r in outcome.records if r["defender_status"] in ("found", "not_seen")}
    assert len(answered) == 10 and "rate_limited" not in outcome.statuses()
    stopped = [r for r in outcome.records if r["defender_status"] == "error"]
    assert stopped and all("cancelled or finalised" in r["defender_error"] for r in stopped)
    assert outcome.runs[0].metrics["defenderipstats.waited"][0] < 15


@pytest.mark.slow
def test_four_searches_at_once_share_the_budget_without_a_single_429(app):
    """600 cold IPs in 4 processes against 100 calls a minute: 100 at once, 100 more when the minute
    has passed (maxwait 70 s), the rest rate_limited, and the API never says 429."""
    outcome = faults.four_searches_at_once(app)
    assert_reliable(outcome)
    assert outcome.throttled == 0
    statuses = outcome.statuses()
    assert enriched(outcome) == outcome.api_calls == 200
    assert statuses["rate_limited"] == 400 and "error" not in statuses
    assert len(outcome.cache_documents) == 200
    for run in outcome.runs:  # each search says once how many of its IPs were not enriched
        limited = sum(1 for r in run.records if r["defender_status"] == "rate_limited")
        budget = [t for lvl, t in run.messages if "budget ran out" in t]
        assert len(budget) == 1 and "%d IPs were not enriched" % limited in budget[0]


def test_a_429_pauses_every_search_on_the_host(app):
    app.defender.set_limits(rate_per_minute=3)
    first = app.search(["field=src_ip", "maxwait=0", "backend=ipstats"], [events(dataset.ips(6, seed=120))])
    assert app.defender.throttled >= 1  # Retry-After ~60 s, past maxwait
    calls = app.defender.api_calls()
    second = app.search(["field=src_ip", "maxwait=0", "backend=ipstats"], [events(dataset.ips(6, seed=121))])
    assert app.defender.api_calls() == calls  # another process: paused too, not one call
    assert {r["defender_status"] for r in second.records} == {"rate_limited"}
    assert [t for lvl, t in second.messages if "budget ran out: 6 IPs" in t]
    assert first.returncode == second.returncode == 0


@pytest.mark.parametrize("fault, message", [
    (dict(path_regex=r"configs/conf-defenderipstats$|conf-defenderipstats/", status=401),
     "splunkd rejected the search's session (401)"),
    (dict(path_regex=r"configs/conf-defenderipstats/settings", status=500), "read defenderipstats.conf"),
    (dict(path_regex=r"storage/passwords", status=503), "read the client secret: splunkd answered 503"),
    (dict(path_regex=r"storage/passwords", status=0), "splunkd did not answer storage"),
])
def test_splunkd_failing_at_start_is_one_clear_error(app, fault, message):
    app.splunkd.inject_fault(**fault)
    run = app.search(["field=src_ip"], [events(["10.0.0.1"])])
    assert len(run.errors) == 1 and message in run.errors[0], run.messages
    assert "Traceback" not in run.errors[0] and app.defender.api_calls() == 0
    assert app.leaks([run]) == []


def test_an_unknown_session_is_one_clear_error(app):
    run = app.search(["field=src_ip"], [events(["10.0.0.1"])], session_key="not-a-session")
    assert len(run.errors) == 1 and "splunkd rejected the search's session (401)" in run.errors[0]


def test_summary_log_line_and_job_inspector_metrics_agree(app):
    app.settings(log_level="DEBUG")
    app.defender.inject(503)
    sent = events(faults.workload(130))
    run = app.search(["field=src_ip", "backend=ipstats"], [sent[:20], sent[20:]])
    metrics = {name.split(".", 1)[1]: value for name, value in run.metrics.items()}
    line = [ln for ln in app.log_text().splitlines() if "sid=" in ln and "api_calls=" in ln][-1]
    logged = dict(item.split("=", 1) for item in line.split(" - ", 1)[1].split())
    assert metrics["api_calls"][1] == int(logged["api_calls"]) == app.defender.api_calls()
    assert metrics["retries"][1] == int(logged["retries"]) == 1
    assert metrics["events"][2:] == [len(sent), len(sent)] and int(logged["events"]) == len(sent)
    for name in ("distinct_ips", "cache_hits", "throttled", "errors", "rate_limited"):
        assert metrics[name][1] == int(logged[name])
    assert float(logged["waited_s"]) == metrics["waited"][0] and float(logged["duration_s"]) >= 0
    assert logged["sid"] and app.leaks([run]) == []


def test_hostile_field_values_never_leave_the_one_api_path(app):
    """10,000 field values drawn by Hypothesis (unicode, ../, %2e, ?, #, spaces, CRLF, very long strings,
    multivalue mixes), 250 per chunk through one search: no crash, every event out in order, and every
    request the Defender stand-in received is /api/ips/<canonical ip>/stats?lookBackHours=720."""
    values = faults.hostile_values(10_000)
    outcome = faults.hostile_input(app, values)
    assert_reliable(outcome)
    run = outcome.runs[0]
    assert run.errors == [] and outcome.throttled == 0
    expected_ips = set()
    for value, record in zip(values, run.records):
        items = value if isinstance(value, list) else [value]
        expected = [faults.expected_ip(item) for item in items]
        expected_ips.update(ip for ip in expected if ip)
        got = record["defender_ip"] if isinstance(value, list) else [record["defender_ip"]]
        assert got == expected, value
        statuses = record["defender_status"] if isinstance(value, list) else [record["defender_status"]]
        for item, ip, status in zip(items, expected, statuses):
            if ip:
                assert status == dataset.status_of(ip, 720), item
            else:
                assert status == ("invalid" if item else ""), item
    requested = [faults.API_PATH.fullmatch(r.path).group("ip") for r in app.defender.api_requests]
    assert sorted(requested) == sorted(expected_ips)  # each valid IP once, nothing else
    assert sum(len(v) if isinstance(v, list) else 1 for v in values) >= 10_000


def test_a_search_cancelled_during_a_service_request_stops_its_calls_inside_that_request(app):
    """The service watches the caller's job while it calls Defender, not only between two requests: with
    slow answers, one request would make every call of the search before the search could stop it."""
    app.defender.inject("slow:0.8", times=500)
    sid = app.new_sid()
    faults._when(lambda: app.defender.api_calls() >= 8, lambda: app.splunkd.cancel_job(sid))
    ips = dataset.ips(60, status="found", seed=199)
    run = app.search(["field=src_ip", "backend=ipstats", "maxwait=60"], [events(ips)], sid=sid)
    assert run.returncode == 0 and len(run.records) == 60
    assert app.defender.api_calls() <= 30  # a poll of the job (every 3 s) and the calls in flight, then none
    stopped = [r for r in run.records if r["defender_status"] == "error"]
    assert len(stopped) >= 30 and all("cancelled or finalised" in r["defender_error"] for r in stopped)
    requests = [line for line in app.log_text().splitlines()
                if " defender_ipstats.usage - usage request=lookup " in line]
    assert len(requests) == 1, requests  # all of it within the one request
