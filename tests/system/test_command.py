"""The command end to end: a subprocess speaking protocol v2, real HTTP to the stand-ins."""

import math

import pytest

from defender_ipstats.service.lookups import FETCH_WORKERS
from harness import ACCOUNT, OUTPUT_SUFFIXES, events, expected_fields
from standins import dataset

NAMES = ["defender_" + s for s in OUTPUT_SUFFIXES]


def assert_passthrough(sent, received):
    """Events out = events in, in order, each with its own fields untouched."""
    assert len(received) == len(sent)
    for before, after in zip(sent, received):
        for key, value in before.items():
            assert after.get(key) == value, (key, before, after)


def test_enriches_every_event_then_serves_the_cache(app):
    found = dataset.ips(6, status="found", seed=1)
    unseen = dataset.ips(3, status="not_seen", seed=1)
    v6 = dataset.ips(2, status="found", seed=1, family=6)
    values = (found + unseen + v6 + [found[0], "::ffff:" + found[1], "not-an-ip", "", None,
                                      v6[0].upper(), "fe80::1%eth0", "fe80::1%"])
    sent = events(values)
    run = app.search(["field=src_ip"], [sent])
    assert run.returncode == 0, run.stderr
    assert run.errors == []
    assert_passthrough(sent, run.records)
    for record in run.records:
        assert all(name in record for name in NAMES)
    distinct = set(found + unseen + v6 + ["fe80::1"])
    assert app.defender.api_calls() == len(distinct)
    for record, value in zip(run.records, values):
        if value in ("", None):
            assert all(record[name] == "" for name in NAMES)
        elif value in ("not-an-ip", "fe80::1%"):  # an empty zone id is no zone id: no API call
            assert record["defender_status"] == "invalid" and record["defender_ip"] == ""
        else:
            assert {n: record[n] for n in NAMES} == expected_fields(value)

    # The second identical search is answered from the KV store, with no API call.
    app.defender.reset_counters()
    again = app.search(["field=src_ip"], [sent])
    assert app.defender.api_calls() == 0
    assert again.errors == []
    for first, second in zip(run.records, again.records):
        if first["defender_status"] in ("found", "not_seen"):
            assert second["defender_source"] == "cache"
            assert {n: second[n] for n in NAMES if n != "defender_source"} == \
                   {n: first[n] for n in NAMES if n != "defender_source"}


def test_multivalue_fields_are_looked_up_value_by_value(app):
    a, b = dataset.ips(2, status="found", seed=2)
    sent = [{"dest": [a, "bogus", b]}, {"dest": [b]}, {"dest": a}]
    run = app.search(["field=dest", "prefix=dst_"], [sent])
    assert run.errors == []
    first = run.records[0]
    assert first["dest"] == [a, "bogus", b]
    assert first["dst_ip"] == [a, "", b]
    assert first["dst_status"] == ["found", "invalid", "found"]
    assert first["dst_prevalence"][0] == expected_fields(a)["defender_prevalence"]
    assert run.records[2]["dst_ip"] == a
    assert app.defender.api_calls() == 2


def test_kv_store_round_trips_per_chunk_and_calls_per_distinct_ip(app):
    ips = dataset.ips(1200, seed=3)
    chunks = [events(ips[:700] * 2), events(ips[500:1200]), events([])]
    app.settings(rate_per_minute="100000", rate_per_hour="1000000")
    app.defender.set_limits(rate_per_minute=100000, rate_per_hour=1000000)
    app.splunkd.reset_requests()
    run = app.search(["field=src_ip", "backend=ipstats"], chunks)
    assert run.returncode == 0 and run.errors == []
    assert len(run.records) == 1400 + 700
    assert app.defender.api_calls() == 1200  # calls = distinct valid cold IPs
    kv = [r for r in app.splunkd.requests if "storage/collections/data" in r.path]
    misses = [700, 500]
    # The search: one read per chunk with IPs, never a write. The privileged service, per request: one
    # read (another search may have answered meanwhile), the writes in batches of 1,000, and the
    # published lookup's (one batch per 1,000, and once per handler process clearing an old default).
    assert len([r for r in kv if r.username == "admin"]) == 2
    assert not [r for r in kv if r.username == "admin" and "batch_find" not in r.path]
    assert len([r for r in kv if r.username == "splunk-system-user"]) <= \
        sum(1 + 2 * math.ceil(m / 1000) for m in misses) + 1
    docs = app.cache_documents()
    assert len(docs) == 1200
    assert {d["status"] for d in docs} <= {"found", "not_seen"}


def test_lookback_hours_reaches_the_api_and_keys_the_cache(app):
    ip = dataset.ips(1, status="found", seed=4)[0]
    run = app.search(["field=src_ip", "lookbackhours=24"], [events([ip])])
    assert [r.path for r in app.defender.api_requests] == ["/api/ips/%s/stats?lookBackHours=24" % ip]
    assert {n: run.records[0][n] for n in NAMES} == expected_fields(ip, 24)
    app.search(["field=src_ip", "lookbackhours=720"], [events([ip])])
    assert app.defender.api_calls() == 2  # another look-back is another cache entry
    assert sorted(d["lookback_hours"] for d in app.cache_documents()) == [24, 720]


@pytest.mark.parametrize("mode, calls_second, cached", [("refresh", 1, 1), ("off", 1, 0)])
def test_cache_modes(app, mode, calls_second, cached):
    ip = dataset.ips(1, status="found", seed=5)[0]
    if mode == "refresh":
        app.settings(refresh_min_age="0")  # every cached answer counts as old (see the test below)
        app.search(["field=src_ip"], [events([ip])])
        app.defender.reset_counters()
    run = app.search(["field=src_ip", "cache=%s" % mode], [events([ip])])
    assert run.records[0]["defender_source"] == "api"
    assert app.defender.api_calls() == calls_second
    assert len(app.cache_documents()) == cached


def test_refresh_reuses_answers_younger_than_refresh_min_age(app):
    ips = dataset.ips(3, status="found", seed=18)
    first = app.search(["field=src_ip", "cache=refresh"], [events(ips)])
    assert app.defender.api_calls() == 3
    app.defender.reset_counters()
    again = app.search(["field=src_ip", "cache=refresh"], [events(ips)])  # within the default 300 s
    assert app.defender.api_calls() == 0
    assert again.errors == []
    assert [r["defender_source"] for r in again.records] == ["cache"] * 3
    assert [{n: r[n] for n in NAMES if n != "defender_source"} for r in again.records] == \
           [{n: r[n] for n in NAMES if n != "defender_source"} for r in first.records]
    import time

    fetched = {d["ip"]: float(d["fetched_at"]) for d in app.cache_documents()}
    app.settings(refresh_min_age="1")
    time.sleep(1.2)
    app.defender.reset_counters()
    later = app.search(["field=src_ip", "cache=refresh"], [events(ips)])
    assert app.defender.api_calls() == 3  # older than refresh_min_age now: fetched again
    assert [r["defender_source"] for r in later.records] == ["api"] * 3
    assert all(float(d["fetched_at"]) > fetched[d["ip"]] for d in app.cache_documents())  # and written


@pytest.mark.parametrize("mode, refresh_min_age", [("off", None), ("refresh", "0"), ("refresh", None),
                                                   ("use", None)])
def test_one_lookup_per_ip_per_search_however_the_chunks_carry_it(app, mode, refresh_min_age):
    """110 distinct IPs over 4 chunks cost 110 calls in every cache mode: a later chunk reuses what the
    search has (with refresh_min_age=0 nothing in the cache counts as young, only the search's memory)."""
    ips = dataset.ips(110, seed=17)
    settings = dict(rate_per_minute="100000", rate_per_hour="1000000")
    if refresh_min_age is not None:
        settings["refresh_min_age"] = refresh_min_age
    app.settings(**settings)
    app.defender.set_limits(rate_per_minute=100000, rate_per_hour=1000000)
    chunks = [ips[:50], ips[30:80] + ips[:10], ips[60:], ips[::-1]]
    sent = [events(chunk) for chunk in chunks]
    run = app.search(["field=src_ip", "backend=ipstats", "cache=%s" % mode], sent + [events([])])
    assert run.returncode == 0 and run.errors == []
    assert app.defender.api_calls() == 110
    assert_passthrough([e for chunk in sent for e in chunk], run.records)
    for record in run.records:  # the same answer in every chunk, as first fetched
        assert {n: record[n] for n in NAMES} == expected_fields(record["src_ip"])
    assert len(app.cache_documents()) == (0 if mode == "off" else 110)


def test_stale_cache_entries_are_fetched_again(app):
    ip = dataset.ips(1, status="found", seed=6)[0]
    app.settings(cache_ttl="1")
    app.search(["field=src_ip"], [events([ip])])
    import time

    time.sleep(1.2)
    app.defender.reset_counters()
    run = app.search(["field=src_ip"], [events([ip])])
    assert run.records[0]["defender_source"] == "api"
    assert app.defender.api_calls() == 1


def test_not_seen_as_404_is_not_seen(splunkd, tmp_path):
    from harness import AppHarness
    from standins.defender import DefenderStandin

    with DefenderStandin(not_seen_mode="404") as defender:
        app = AppHarness(splunkd, defender, tmp_path)
        app.configure_account()
        ip = dataset.ips(1, status="not_seen", seed=7)[0]
        run = app.search(["field=src_ip"], [events([ip])])
        assert run.records[0]["defender_status"] == "not_seen"
        assert run.records[0]["defender_prevalence"] == "0"
        assert [d["status"] for d in app.cache_documents()] == ["not_seen"]


# -- search-level problems: one readable error, no traceback -------------------------------
@pytest.mark.parametrize("args, message", [
    ([], 'A value for "field" is required'),
    (["field=src_ip", "lookbackhours=0"], "lookbackhours must be a number of hours from 1 to 720"),
    (["field=src_ip", "lookbackhours=9999"], "from 1 to 720"),
    (["field=src_ip", "cache=sometimes"], "cache must be one of use|refresh|off"),
    (["field=src_ip", "maxwait=soon"], "maxwait must be a number of seconds"),
    (["field=src_ip", "bogus=1"], "Unrecognized option: bogus=1"),
    (["field=src_ip", "account=nobody"], "Unknown account 'nobody'. Configured accounts: contoso"),
    (["field=src_ip", "backend=sideways"], "backend must be one of ipstats|hunting|auto"),
])
def test_bad_options_are_one_clear_error(app, args, message):
    run = app.search(args, [events(["10.0.0.1"])])
    assert len(run.errors) == 1, run.messages
    assert message in run.errors[0]
    assert "Traceback" not in run.errors[0] and 'File "' not in run.errors[0]
    assert app.defender.api_calls() == 0


def test_no_account_configured(bare_app):
    run = bare_app.search(["field=src_ip"], [events(["10.0.0.1"])])
    assert len(run.errors) == 1
    assert "No Defender account is configured" in run.errors[0]


def test_missing_secret(bare_app):
    from standins import defender as d

    bare_app.set_stanza("defenderipstats_accounts", "soc", tenant_id=d.DEFAULT_TENANT,
                        client_id=d.DEFAULT_CLIENT_ID, api_url=bare_app.defender.base_url)
    run = bare_app.search(["field=src_ip", "account=soc"], [events(["10.0.0.1"])])
    assert len(run.errors) == 1
    assert "No client secret is stored for account 'soc'" in run.errors[0]


def test_wrong_secret_lets_events_through_with_one_error(app):
    app.set_secret(ACCOUNT, "not-the-secret")
    values = dataset.ips(5, seed=8)
    sent = events(values)
    run = app.search(["field=src_ip"], [sent])
    assert_passthrough(sent, run.records)
    assert {r["defender_status"] for r in run.records} == {"error"}
    assert {r["defender_error"] for r in run.records} == {"authentication failed"}
    assert len(run.errors) == 1 and "client secret is wrong" in run.errors[0]
    assert app.defender.api_calls() == 0
    assert app.cache_documents() == []


def test_missing_permission_names_ip_read_all(app):
    from standins import defender as d

    app.defender.set_roles(d.DEFAULT_CLIENT_ID, [])
    run = app.search(["field=src_ip"], [events(dataset.ips(40, seed=9))])
    assert len(run.errors) == 1
    assert "Ip.Read.All" in run.errors[0] and "admin consent" in run.errors[0]
    assert app.defender.api_calls() <= FETCH_WORKERS  # the first 403 stops further calls (bar those in flight)
    assert {r["defender_status"] for r in run.records} == {"error"}


# -- API faults --------------------------------------------------------------------------
@pytest.mark.parametrize("fault, reason", [
    (500, "Defender API error 500"),
    (503, "Defender API error 503"),
    ("malformed", "malformed JSON"),
    ("schema_invalid", "unexpected API answer"),
])
def test_api_faults_mark_the_ip_error_and_are_never_cached(app, fault, reason):
    bad, good = dataset.ips(2, status="found", seed=10)
    app.defender.inject(fault, times=3 if isinstance(fault, int) else 1)  # a 5xx is tried three times
    run = app.search(["field=src_ip", "cache=use"], [events([bad])])
    assert run.records[0]["defender_status"] == "error"
    assert reason in run.records[0]["defender_error"]
    assert app.cache_documents() == []
    again = app.search(["field=src_ip"], [events([bad, good])])
    assert [r["defender_status"] for r in again.records] == ["found", "found"]


def test_slow_api_times_out_as_error(app):
    app.configure_account(timeout="1")
    app.defender.inject("slow:3", times=3)  # every attempt times out
    run = app.search(["field=src_ip"], [events(dataset.ips(1, seed=11))])
    assert run.records[0]["defender_status"] == "error"
    assert "timed out" in run.records[0]["defender_error"]


def test_expired_token_gets_one_fresh_token(app):
    ips = dataset.ips(3, status="found", seed=12)
    app.defender.inject("expire_tokens", times=1)
    run = app.search(["field=src_ip"], [events(ips)])
    assert [r["defender_status"] for r in run.records] == ["found"] * 3
    assert len(app.defender.token_requests) == 2  # one at the start, one fresh after the 401s


def test_429_is_waited_out_within_maxwait(app):
    app.defender.set_limits(rate_per_minute=2)
    app.settings(rate_per_minute="100")  # the app thinks it has budget: the stand-in says no
    ips = dataset.ips(3, status="found", seed=13)
    run = app.search(["field=src_ip", "maxwait=0", "backend=ipstats"], [events(ips)])
    statuses = [r["defender_status"] for r in run.records]
    assert statuses.count("found") == 2 and statuses.count("rate_limited") == 1
    limited = [r for r in run.records if r["defender_status"] == "rate_limited"][0]
    assert "returns in about" in limited["defender_error"]
    assert any("budget" in text for level, text in run.messages if level == "WARN")
    assert all(d["status"] != "rate_limited" for d in app.cache_documents())


def test_own_budget_is_respected_without_a_429(app):
    app.settings(rate_per_minute="3")
    ips = dataset.ips(5, seed=14)
    run = app.search(["field=src_ip", "maxwait=0", "backend=ipstats"], [events(ips)])
    statuses = [r["defender_status"] for r in run.records]
    assert statuses.count("rate_limited") == 2
    assert app.defender.api_calls() == 3
    assert app.defender.api_calls(status=429) == 0


def test_a_later_chunk_asks_again_for_rate_limited_ips_only(app):
    """Budget may return while a search runs: its rate_limited IPs are asked again by a later chunk (here
    the budget is still out, so they stay rate_limited at no API call); the answered ones never are."""
    app.settings(rate_per_minute="3")
    ips = dataset.ips(5, seed=20)
    app.splunkd.reset_requests()
    run = app.search(["field=src_ip", "maxwait=0", "backend=ipstats"], [events(ips), events(ips[::-1])])
    first, second = run.records[:5], {r["src_ip"]: r for r in run.records[5:]}
    limited = [r["src_ip"] for r in first if r["defender_status"] == "rate_limited"]
    assert len(limited) == 2 and app.defender.api_calls() == 3
    for record in first:
        assert {n: second[record["src_ip"]][n] for n in NAMES} == {n: record[n] for n in NAMES}
    posts = [r.params.get("ips") for r in app.splunkd.requests
             if r.method == "POST" and r.path.endswith("defenderipstats/lookup")]
    assert posts == [",".join(ips), ",".join(ip for ip in ips[::-1] if ip in limited)]


def test_kv_store_failure_costs_one_warning_not_the_search(app):
    app.splunkd.inject_fault(r"storage/collections/data", status=500)
    ips = dataset.ips(3, status="found", seed=15)
    run = app.search(["field=src_ip"], [events(ips), events(ips)])
    assert [r["defender_status"] for r in run.records] == ["found"] * 6
    warnings = [t for level, t in run.messages if level == "WARN"]
    assert len(warnings) == 1 and "KV store" in warnings[0]


def test_secret_and_tokens_never_leak(app):
    from standins import defender as d

    app.settings(log_level="DEBUG")
    app.defender.inject(500, times=1)
    run = app.search(["field=src_ip"], [events(dataset.ips(10, seed=16) + ["junk"])])
    secrets = [d.DEFAULT_SECRET] + list(app.defender.issued_tokens)
    assert app.defender.issued_tokens
    haystacks = [repr(run.records), repr(run.messages), run.stderr, app.log_text(), repr(app.cache_documents())]
    import os

    for folder, _, files in os.walk(app.splunk_home):
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                haystacks.append(handle.read().decode("utf-8", "replace"))
    for secret in secrets:
        assert not any(secret in text for text in haystacks)
    assert "summary" in app.log_text() or "api_calls=" in app.log_text()
