"""Figures that never mix: Defender's per-IP statistics and advanced hunting's counts, end to end.

An admin's ``backend=ipstats`` figures must survive a role holder's ``backend=hunting cache=refresh``
sent straight to the service, and the shipped cache warmer (its own command call, from
savedsearches.conf); ``auto`` takes the fresh ``ipstats`` answer; each row says which figure it
carries (``defender_basis``).
"""

import os

from restcalls import call_json
from spl import commands, expand_macros, split_args

from harness import APP, APP_ROOT, events, expected_fields
from standins import dataset, device_events
from standins.splunkd import parse_conf_file
from users import ANALYST, ANALYST_PW, add_analyst_and_plain_user

WARMER = "Defender IP stats - Cache warmer"


def _conf(name):
    return parse_conf_file(os.path.join(APP_ROOT, "default", name + ".conf"))


def _warmer_args():
    search = expand_macros(_conf("savedsearches")[WARMER]["search"], _conf("macros"))
    [args] = [text for name, text in commands(search) if name == "defenderipstats"]
    return split_args(args)


def _ipstats_figures(ip):
    fields = expected_fields(ip)
    return fields["defender_prevalence"], fields["defender_status"]


def test_ipstats_figures_survive_a_hunting_refresh_and_the_warmer(app):
    add_analyst_and_plain_user(app.splunkd)
    app.configure_account(graph_url=app.defender.base_url)
    app.settings(default_account="contoso")
    # IPs whose hunting count differs from Defender's prevalence: a mix would show.
    ips = [ip for ip in dataset.ips(60, status="found", seed=181)
           if (device_events.expected(ip, 720) or {}).get("devices") not in (None, int(_ipstats_figures(ip)[0]))][:5]
    assert len(ips) == 5
    admin = app.search(["field=src_ip", "backend=ipstats"], [events(ips)])
    assert admin.errors == [] and app.defender.api_calls() == 5
    assert {r["defender_basis"] for r in admin.records} == {"ipstats"}

    status, answer = call_json(app, ANALYST, ANALYST_PW, "POST", "/servicesNS/nobody/%s/defenderipstats/lookup" % APP,
                               ips=",".join(ips), backend="hunting", cache="refresh", max_wait="0")
    assert status == 200, answer
    assert {answer["results"][ip]["status"] for ip in ips} == {"found"}
    warmer = app.search(_warmer_args(), [[{"dest": ip, "connections": "3", "sources": "1"} for ip in ips]])
    assert warmer.errors == [] and {r["defender_basis"] for r in warmer.records} == {"hunting"}
    assert app.defender.hunting.calls() >= 1 and app.defender.api_calls() == 5

    for backend in ("ipstats", "auto"):
        again = app.search(["field=src_ip", "backend=" + backend], [events(ips)])
        assert again.errors == [] and app.defender.api_calls() == 5, backend  # served from the cache
        assert [(r["defender_prevalence"], r["defender_status"]) for r in again.records] == \
            [_ipstats_figures(ip) for ip in ips], backend
        assert {(r["defender_source"], r["defender_basis"]) for r in again.records} == {("cache", "ipstats")}
    hunted = app.search(["field=src_ip", "backend=hunting"], [events(ips)])
    assert [int(r["defender_prevalence"]) for r in hunted.records] == \
        [device_events.expected(ip, 720)["devices"] for ip in ips]
    assert {(r["defender_source"], r["defender_basis"]) for r in hunted.records} == {("cache", "hunting")}
    # The published lookup keeps Defender's own figure.
    published = {d["ip"]: d for d in app.splunkd.kv_documents("defenderipstats_published", app=APP)}
    assert {published[ip]["basis"] for ip in ips} == {"ipstats"}
    assert [str(published[ip]["prevalence"]) for ip in ips] == [_ipstats_figures(ip)[0] for ip in ips]
