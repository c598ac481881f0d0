"""backend=hunting and backend=auto end to end: the command over protocol v2, Graph on the stand-in."""

import pytest

from harness import OUTPUT_SUFFIXES, events, expected_fields
from standins import dataset
from standins import defender as d

NAMES = ["defender_" + s for s in OUTPUT_SUFFIXES]


@pytest.fixture
def hunting_app(app):
    app.configure_account(graph_url=app.defender.base_url)
    return app


def without_source(record):
    return {name: record[name] for name in NAMES if name != "defender_source"}


def test_hunting_matches_the_per_ip_backend_on_the_dataset(hunting_app):
    app = hunting_app
    app.settings(rate_per_minute="10000", rate_per_hour="100000")
    app.defender.set_limits(rate_per_minute=10000, rate_per_hour=100000)
    ips = dataset.ips(150, seed=40, family="mixed")
    values = ips + ["::ffff:" + ips[0], "nonsense", ""]
    hunted = app.search(["field=src_ip", "backend=hunting", "cache=off"], [events(values)])
    assert hunted.errors == []
    assert app.defender.hunting.calls() == 1 and app.defender.api_calls() == 0
    per_ip = app.search(["field=src_ip", "backend=ipstats", "cache=off"], [events(values)])
    for a, b in zip(hunted.records, per_ip.records):
        assert without_source(a) == without_source(b)
    for record, value in zip(hunted.records, ips):
        assert record["defender_source"] == "hunting"
        assert without_source(record) == without_source(expected_fields(value))


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
    assert {r["defender_status"] for r in run.records} <= {"found", "not_seen"}


def test_auto_uses_per_ip_for_a_few_and_hunting_for_many(hunting_app):
    app = hunting_app
    few = dataset.ips(5, seed=43)
    run = app.search(["field=src_ip", "backend=auto"], [events(few)])
    assert {r["defender_source"] for r in run.records} == {"api"}
    many = dataset.ips(300, seed=44)
    run = app.search(["field=src_ip", "backend=auto"], [events(many)])
    assert {r["defender_source"] for r in run.records} == {"hunting"}
    assert app.defender.api_calls() == 5 and app.defender.hunting.calls() == 1


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


@pytest.mark.parametrize("fault, reason", [(500, "Graph API error 500"), ("malformed", "malformed JSON"),
                                           (400, "hunting query rejected")])
def test_hunting_faults_are_errors_and_never_cached(hunting_app, fault, reason):
    app = hunting_app
    app.defender.hunting.inject(fault)
    run = app.search(["field=src_ip", "backend=hunting"], [events(dataset.ips(3, seed=48))])
    assert {r["defender_status"] for r in run.records} == {"error"}
    assert reason in run.records[0]["defender_error"]
    assert app.cache_documents() == []


def test_hunting_requests_carry_only_canonical_ips(hunting_app):
    app = hunting_app
    values = ["010.1.1.1", "1.2.3.4\r\nX: y", '1.2.3.4")', "::FFFF:10.9.8.7", "2001:DB8:0:0::5", "fe80::1%eth0"]
    app.search(["field=src_ip", "backend=hunting"], [events(values)])
    (record,) = app.defender.hunting.requests
    assert record.status == 200
    assert record.ips == ["10.9.8.7", "::ffff:10.9.8.7", "2001:db8::5", "fe80::1"]
