"""A fair budget: no single user spends more than ``user_share_percent`` of an account's hourly budget.

Attacked as an analyst with the app's role, with the command and with direct calls to the service: once
the analyst's share of the hour is spent, more is refused (``rate_limited``, saying it is the user's
share), while another user's search still completes within what remains.
"""

import re

import pytest
from restcalls import call_json

from harness import APP, events, expected_fields
from standins import dataset
from users import ANALYST, ANALYST_PW, add_analyst_and_plain_user


def _post(app, user, password, **form):
    status, answer = call_json(app, user, password, "POST", "/servicesNS/nobody/%s/defenderipstats/lookup" % APP,
                               **form)
    assert status == 200, answer
    return answer


@pytest.mark.parametrize("maxwait", ["0", "2"])  # refused in the service, or after waiting in the search
def test_one_user_spends_at_most_the_share_and_another_still_gets_the_rest(app, maxwait):
    add_analyst_and_plain_user(app.splunkd)
    app.settings(rate_per_minute="100", rate_per_hour="20", user_share_percent="50")
    ips = dataset.ips(30, status="found", seed=191)
    greedy = app.search(["field=src_ip", "backend=ipstats", "maxwait=" + maxwait], [events(ips[:15])],
                        username=ANALYST)
    statuses = sorted(r["defender_status"] for r in greedy.records)  # which 10 got the calls: the workers' race
    assert statuses == ["found"] * 10 + ["rate_limited"] * 5 and app.defender.api_calls() == 10
    share_spent = re.compile(r"your share of the hourly API budget is used up \(user_share_percent = 50 %\); "
                             r"it returns in about 3[0-6]\d\d s")  # when the analyst's first call of the hour leaves it
    assert all(share_spent.fullmatch(r["defender_error"]) for r in greedy.records
               if r["defender_status"] == "rate_limited")
    assert any("Your share of the Defender API budget" in text for _, text in greedy.messages), greedy.messages
    # Straight to the service, with other IPs and another look-back: nothing more.
    for hours in ("1", "24"):
        answer = _post(app, ANALYST, ANALYST_PW, ips=",".join(ips[15:18]), backend="ipstats", lookback_hours=hours,
                       cache="refresh", max_wait="0")
        assert {answer["results"][ip]["status"] for ip in ips[15:18]} == {"rate_limited"}
        assert all("user_share_percent = 50 %" in answer["results"][ip]["error"] for ip in ips[15:18])
        assert answer["share"] == {"user": ANALYST, "percent": 50} and answer["budget_returns_in"] > 3000
    assert app.defender.api_calls() == 10
    # The admin's search still completes, within what remains of the hour.
    other = app.search(["field=src_ip", "backend=ipstats", "maxwait=0"], [events(ips[18:28])])
    assert other.errors == [] and app.defender.api_calls() == 20
    for record, ip in zip(other.records, ips[18:28]):
        assert {k: record[k] for k in expected_fields(ip)} == expected_fields(ip)


def test_an_admin_may_let_one_user_spend_the_whole_budget(app):
    add_analyst_and_plain_user(app.splunkd)
    app.settings(rate_per_minute="100", rate_per_hour="20", user_share_percent="100")
    ips = dataset.ips(20, status="found", seed=192)
    run = app.search(["field=src_ip", "backend=ipstats", "maxwait=0"], [events(ips)], username=ANALYST)
    assert {r["defender_status"] for r in run.records} == {"found"} and app.defender.api_calls() == 20


def test_the_hunting_budget_is_shared_fairly_too(app):
    add_analyst_and_plain_user(app.splunkd)
    app.configure_account(graph_url=app.defender.base_url)
    app.settings(hunting_rate_per_minute="45", hunting_rate_per_hour="4", user_share_percent="50")
    for seed in (193, 194):  # one query each: the analyst's share of 4 an hour is 2
        run = app.search(["field=src_ip", "backend=hunting", "maxwait=0"], [events(dataset.ips(5, seed=seed))],
                         username=ANALYST)
        assert {r["defender_source"] for r in run.records} == {"hunting"}
    refused = app.search(["field=src_ip", "backend=hunting", "maxwait=0"], [events(dataset.ips(5, seed=195))],
                         username=ANALYST)
    assert {r["defender_status"] for r in refused.records} == {"rate_limited"}
    assert all("your share of the hourly hunting budget" in r["defender_error"] for r in refused.records)
    assert app.defender.hunting.calls() == 2
    other = app.search(["field=src_ip", "backend=hunting", "maxwait=0"], [events(dataset.ips(5, seed=195))])
    assert {r["defender_source"] for r in other.records} == {"hunting"} and app.defender.hunting.calls() == 3


def test_the_setup_pages_figures_say_what_each_user_spent_this_hour(app):
    add_analyst_and_plain_user(app.splunkd)
    app.configure_account(graph_url=app.defender.base_url)
    app.settings(rate_per_hour="40", user_share_percent="50")
    app.search(["field=src_ip", "backend=ipstats"], [events(dataset.ips(7, status="found", seed=196))],
               username=ANALYST)
    app.search(["field=src_ip", "backend=ipstats"], [events(dataset.ips(3, status="found", seed=197))])
    app.search(["field=src_ip", "backend=hunting"], [events(dataset.ips(4, seed=198))], username=ANALYST)
    status, answer = call_json(app, "admin", "changeme", "GET", "/servicesNS/nobody/%s/defenderipstats/accounts" % APP)
    [account] = answer["accounts"]
    assert account["spend"] == {"ipstats": {ANALYST: 7, "admin": 3}, "hunting": {ANALYST: 1}}
    assert app.defender.api_calls() == 10 and app.defender.hunting.calls() == 1
