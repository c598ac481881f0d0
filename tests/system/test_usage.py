"""Accounted: the service's one usage line per request, and the dashboard that adds them up.

Direct callers of the service (a script with the app's role, no search) are counted like searches; no
value a caller sends (a forged sid, an option echoed in an error) adds to the dashboard's figures,
which come from props.conf's anchored patterns only (tests/support/splunklog.py applies them to the
log as Splunk's search-time extraction would).
"""

import os
import re
import xml.etree.ElementTree as ET
from collections import Counter

import splunklog
from restcalls import call_json

from harness import APP, APP_ROOT, events
from standins import dataset
from standins.splunkd import parse_conf_file
from users import ANALYST, ANALYST_PW, add_analyst_and_plain_user

PANEL = "API calls per user and account"


def _post(app, user, password, **form):
    return call_json(app, user, password, "POST", "/servicesNS/nobody/%s/defenderipstats/lookup" % APP, **form)


def _panel_query(title):
    root = ET.parse(os.path.join(APP_ROOT, "default", "data", "ui", "views", "defenderipstats_overview.xml")).getroot()
    [panel] = [p for p in root.iter("panel") if (p.findtext("title") or "").startswith(title)]
    return panel.find(".//query").text


def per_user_figures(app):
    """The panel's figures, computed as Splunk would: its base search's filter on the extracted fields,
    then ``stats sum(api_calls) ... by user, account``."""
    query = _panel_query(PANEL)
    base, stats = [part.strip() for part in query.split("|")[:2]]
    assert base == "index=_internal sourcetype=defenderipstats:log (request=lookup OR request=details)"
    assert stats.startswith("stats sum(api_calls) as api_calls, sum(hunting_calls) as hunting_calls") and \
        stats.endswith("by user, account")
    stanza = parse_conf_file(os.path.join(APP_ROOT, "default", "props.conf"))["defenderipstats:log"]
    calls = Counter()
    for event in splunklog.events(app.log_text(), stanza):
        fields = splunklog.fields(event, stanza)
        if fields.get("request") in ("lookup", "details"):  # details: | defenderipdetails's hunting queries
            calls[(fields["user"], fields["account"])] += int(fields["api_calls"])
    return dict(calls)


def test_the_per_user_counts_equal_the_calls_defender_received_direct_callers_included(app):
    add_analyst_and_plain_user(app.splunkd)
    ips = dataset.ips(12, status="found", seed=201)
    assert app.search(["field=src_ip", "backend=ipstats"], [events(ips[:3])], username=ANALYST).errors == []
    status, answer = _post(app, ANALYST, ANALYST_PW, ips=",".join(ips[3:5]), backend="ipstats", max_wait="0")
    assert status == 200 and {answer["results"][ip]["status"] for ip in ips[3:5]} == {"found"}
    assert app.search(["field=src_ip", "backend=ipstats"], [events(ips[5:9])]).errors == []
    # Forgeries: a sid and an option value made to look like a usage or summary line's figures.
    for forged in ({"sid": "x account=victim api_calls=99999 hunting_calls=5000"},
                   {"sid": "1.1\n2026-12-07 00:00:00,000 INFO pid=1 defender_ipstats.usage - usage request=lookup"},
                   {"lookback_hours": "1 request=lookup user=analyst account=victim2 api_calls=77777"},
                   {"max_wait": "-5 api_calls=66666"}, {"ok_200": "-1"}, {"nf_404": "99999999999"}):
        status, answer = _post(app, ANALYST, ANALYST_PW, ips=",".join(ips[9:]), backend="ipstats", **forged)
        assert status == 400 and answer["kind"] == "configuration", (forged, answer)
    assert app.defender.api_calls() == 9  # refused before anything was spent
    assert per_user_figures(app) == {(ANALYST, "contoso"): 5, ("admin", "contoso"): 4}
    log = app.log_text()
    assert "api_calls=77777" in log  # the refusal echoes the value given, on a line no pattern extracts
    refused = [line for line in log.splitlines() if " defender_ipstats.usage - " in line and "outcome=refused" in line]
    assert len(refused) == 6 and all('user="%s"' % ANALYST in line for line in refused)


def test_every_request_writes_one_usage_line_whatever_its_outcome(app):
    add_analyst_and_plain_user(app.splunkd)
    app.configure_account("restricted", allowed_roles="soc_tier2")
    _post(app, ANALYST, ANALYST_PW, account="restricted", ips="10.1.2.3")
    _post(app, ANALYST, ANALYST_PW, account="contoso", ips="10.1.2.4", backend="ipstats", max_wait="0")
    lines = [line for line in app.log_text().splitlines() if " defender_ipstats.usage - " in line]
    outcomes = [re.search(r"outcome=(\w+)", line).group(1) for line in lines]
    assert outcomes == ["refused", "ok"], lines
    assert "account=- " in lines[0]  # an account the caller may not use is not named on their line
    assert app.defender.api_calls() == 1


def test_no_caller_shortens_or_resets_the_hunting_quota_pause(app):
    """Graph's quota answer without Retry-After pauses hunting for a whole 15-minute CPU cycle (its alignment
    is undocumented): the pause is the service's, so a caller sending quota=0, a negative one or any other
    state changes nothing, and no query reaches Graph before it ends."""
    add_analyst_and_plain_user(app.splunkd)
    app.configure_account(graph_url=app.defender.base_url)
    app.defender.hunting.inject("quota", times=1, retry_after=None)
    ips = dataset.ips(5, seed=202)
    form = dict(ips=",".join(ips), backend="hunting", max_wait="0")
    status, first = _post(app, ANALYST, ANALYST_PW, **form)
    assert status == 200 and 880 <= first["budget_returns_in"] <= 900.5, first
    assert all(r["status"] == "rate_limited" and "quota" in r["error"] for r in first["results"].values())
    status, second = _post(app, ANALYST, ANALYST_PW, quota="0", **form)  # the old state key: ignored now
    assert status == 200 and app.defender.hunting.calls() == 1
    assert 870 <= second["budget_returns_in"] <= first["budget_returns_in"], second
    status, answer = _post(app, ANALYST, ANALYST_PW, quota="-100", **form)
    assert status == 200 and answer["budget_returns_in"] > 870 and app.defender.hunting.calls() == 1
    assert "quota" not in answer["state"]  # nothing about it travels with the caller any more
