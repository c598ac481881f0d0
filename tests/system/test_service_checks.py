"""Protections of the privileged service that no other test would miss if they went.

- the service's own dedupe of a request's IPs (a caller listing an IP many times pays once);
- the hunting budget's hourly window (not only its per-minute one);
- the connection test names the proxy's host only, never its stored credentials.
"""

import json

from restcalls import call, call_json

from harness import ACCOUNT, APP
from standins import dataset
from standins.proxy import ConnectProxy
from users import ANALYST, ANALYST_PW, add_analyst_and_plain_user

LOOKUP = "/servicesNS/nobody/%s/defenderipstats/lookup" % APP
PROXY_USER, PROXY_PASSWORD = "svc-proxy", "proxy-Pa55word!"


def test_an_ip_a_request_lists_many_times_costs_one_call(app):
    add_analyst_and_plain_user(app.splunkd)
    ip, other = dataset.ips(2, status="found", seed=211)
    status, answer = call_json(app, ANALYST, ANALYST_PW, "POST", LOOKUP, ips=",".join([ip] * 50 + [other, ip]),
                               backend="ipstats", max_wait="0", cache="off")
    assert status == 200 and set(answer["results"]) == {ip, other}
    assert app.defender.api_calls() == 2


def test_the_hunting_budget_holds_its_hourly_window(app):
    add_analyst_and_plain_user(app.splunkd)
    app.configure_account(graph_url=app.defender.base_url)
    app.settings(hunting_rate_per_minute="45", hunting_rate_per_hour="2", user_share_percent="100")
    for seed in (212, 213):
        status, answer = call_json(app, ANALYST, ANALYST_PW, "POST", LOOKUP, ips=",".join(dataset.ips(3, seed=seed)),
                                   backend="hunting", max_wait="0")
        assert status == 200 and {r["source"] for r in answer["results"].values()} == {"hunting"}, answer
    status, answer = call_json(app, ANALYST, ANALYST_PW, "POST", LOOKUP, ips=",".join(dataset.ips(3, seed=214)),
                               backend="hunting", max_wait="0")
    assert {r["status"] for r in answer["results"].values()} == {"rate_limited"}
    assert answer["budget_returns_in"] > 3000 and app.defender.hunting.calls() == 2


def test_the_connection_test_names_the_proxy_host_not_its_credentials(app):
    with ConnectProxy(credentials=(PROXY_USER, PROXY_PASSWORD)) as proxy:
        app.configure_account(proxy_url=proxy.url)
        app.set_proxy_credentials(ACCOUNT, PROXY_USER, PROXY_PASSWORD)
        status, body = call(app, "admin", "changeme", "POST",
                            "/servicesNS/nobody/%s/defenderipstats/accounts/%s/test" % (APP, ACCOUNT))
        assert proxy.count() >= 1
    answer = json.loads(body)
    assert status == 200 and answer["ok"] is True and "through the proxy" in answer["message"], answer
    assert PROXY_PASSWORD not in body and PROXY_USER not in body
