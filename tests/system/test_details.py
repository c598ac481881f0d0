"""``| defenderipdetails`` end to end: the command over protocol v2 (a generating command), the app's
service (``defenderipstats/details``) in the splunkd stand-in, Graph on the Defender stand-in running the
app's KQL over its own DeviceNetworkEvents.

What the command must show is computed here from the table's rows (``device_events.expected_details``),
independently of any KQL: the devices (most recent first), their events and direction, the distinct
devices per day and the IP's overall figures, IPv4-mapped rows counted as the IPv4.
"""

import datetime as dt
import json
import os

import pytest
from restcalls import call_json

from harness import APP, APP_ROOT
from protocol import run_command
from standins import dataset, device_events
from standins import defender as d
from users import ANALYST, ANALYST_PW, PLAIN, PLAIN_PW, add_analyst_and_plain_user

COMMAND = os.path.join(APP_ROOT, "bin", "defenderipdetails.py")
TIER2, TIER2_PW = "tier2", "tier2-pw"


@pytest.fixture
def hunting_app(app):
    app.configure_account(graph_url=app.defender.base_url)
    app.settings(hunting_rate_per_minute="1000", hunting_rate_per_hour="10000")
    return app


def details(app, args, username="admin"):
    """Run ``| defenderipdetails <args>`` as ``username``, as splunkd runs a generating command."""
    env = dict(os.environ, SPLUNK_HOME=app.splunk_home)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "HTTPS_PROXY", "https_proxy"):
        env.pop(name, None)
    sid = app.new_sid()
    dispatch = os.path.join(app.dispatch, sid)
    os.makedirs(dispatch, exist_ok=True)
    return run_command(COMMAND, list(args), [], python=app.python, env=env, cwd=dispatch, timeout=120,
                       splunkd_uri=app.splunkd.base_url, sid=sid, username=username, owner=username,
                       session_key=app.splunkd.new_session_key(username), command="defenderipdetails")


def ticks(text):
    seconds, _, fraction = text.rstrip("Z").partition(".")
    whole = (dt.datetime.strptime(seconds, "%Y-%m-%dT%H:%M:%S") - dt.datetime(1970, 1, 1)).total_seconds()
    return int(whole) * 10 ** 7 + int(fraction.ljust(7, "0") if fraction else 0)


def day_of(day_ticks):
    return (dt.datetime(1970, 1, 1) + dt.timedelta(seconds=day_ticks // 10 ** 7)).strftime("%Y-%m-%d")


def seen_ip(family, seed, mapped=False):
    """An IP of ``family`` with events in the last 720 hours (for IPv4, with IPv4-mapped rows when asked)."""
    for ip in dataset.ips(400, seed=seed, family=4 if family == "v4" else 6):
        rows = device_events.rows_for(ip)
        if len({row["DeviceId"] for row in rows}) >= 2 and \
                (not mapped or any(row["RemoteIP"].startswith("::ffff:") for row in rows)):
            return ip
    raise AssertionError("no such IP in the dataset")


def assert_shows_the_table(run, ip, hours, source="hunting"):
    want = device_events.expected_details(ip, hours)
    assert run.errors == [], run.errors
    devices = [r for r in run.records if r["row_type"] == "device"]
    days = [r for r in run.records if r["row_type"] == "day"]
    assert len(devices) + len(days) == len(run.records)
    assert [r["device_id"] for r in devices] == [w["device_id"] for w in want["devices"]]
    for row, w in zip(devices, want["devices"]):
        assert row["device_name"] == w["device_name"]
        assert (ticks(row["first_seen"]), ticks(row["last_seen"])) == (w["first"], w["last"])
        assert int(row["connections"]) == w["connections"] and row["direction"] == w["direction"]
        assert row["device_url"] == "https://security.microsoft.com/machines/v2/%s/overview" % w["device_id"]
    assert {r["day"]: int(r["devices"]) for r in days} == {day_of(k): v for k, v in want["days"].items()}
    for row in run.records:
        assert row["ip"] == ip and row["source"] == source and int(row["lookback_hours"]) == hours
        assert int(row["ip_devices"]) == want["ip_devices"]
        assert (ticks(row["ip_first_seen"]), ticks(row["ip_last_seen"])) == (want["first"], want["last"])


@pytest.mark.parametrize("family, hours", [("v4", 720), ("v6", 720), ("v4", 168)])
def test_the_devices_and_days_are_what_the_events_hold(hunting_app, family, hours):
    app = hunting_app
    ip = seen_ip(family, seed=500, mapped=family == "v4")
    run = details(app, ["ip=" + ip, "lookbackhours=%d" % hours])
    assert_shows_the_table(run, ip, hours)
    assert app.defender.hunting.calls() == 1 and app.defender.api_calls() == 0
    query = app.defender.hunting.requests[0].query
    assert ('"::ffff:%s"' % ip in query) == (family == "v4")


def test_an_ipv4_mapped_spelling_is_the_ipv4(hunting_app):
    ip = seen_ip("v4", seed=501, mapped=True)
    run = details(hunting_app, ["ip=::ffff:" + ip])
    assert_shows_the_table(run, ip, 720)


def test_private_and_link_local_ips_are_investigated(hunting_app):
    app = hunting_app
    for ip in ("10.20.30.40", "fe80::1"):
        run = details(app, ["ip=" + ip])
        assert run.errors == []
        assert app.defender.hunting.requests[-1].status == 200 and ip in app.defender.hunting.requests[-1].query
        assert_shows_the_table(run, ip, 720)
        if not run.records:  # the table holds no event of it: said once, not an error
            assert any("no device of the organisation communicated with " + ip in text for _, text in run.messages)


def test_a_second_call_within_details_ttl_makes_no_query(hunting_app):
    app = hunting_app
    ip = seen_ip("v6", seed=502)
    first = details(app, ["ip=" + ip])
    assert_shows_the_table(first, ip, 720)
    second = details(app, ["ip=" + ip])
    assert_shows_the_table(second, ip, 720, source="cache")
    assert app.defender.hunting.calls() == 1
    details(app, ["ip=" + ip, "lookbackhours=24"])  # another look-back is another answer
    assert app.defender.hunting.calls() == 2
    kept = app.splunkd.kv_documents("defenderipstats_details", app=APP)
    assert len(kept) == 2 and all(json.loads(doc["answer"])["ip"] == ip for doc in kept)
    assert app.leaks([first, second]) == []
    secrets = [d.DEFAULT_SECRET] + list(app.defender.issued_tokens)
    assert not [s for s in secrets if s in repr(kept)]  # nor in the answers kept
    app.settings(details_ttl="0")  # 0: every investigation queries again
    details(app, ["ip=" + ip])
    assert app.defender.hunting.calls() == 3


@pytest.mark.parametrize("value", ["nonsense", "10.0.0.256", "fe80::1%", "1.2.3.4; | delete"])
def test_an_invalid_ip_makes_no_call(hunting_app, value):
    app = hunting_app
    app.splunkd.reset_requests()
    run = details(app, ["ip=" + value])
    assert len(run.errors) == 1 and "ip must be an IPv4 or IPv6 address" in run.errors[0], run.errors
    assert app.splunkd.count() == 0  # checked in the search process: not even a request to splunkd
    assert "Traceback" not in run.stderr + repr(run.messages)
    assert run.records == [] and app.defender.hunting.calls() == 0 and len(app.defender.token_requests) == 0
    status, body = call_json(app, "admin", "changeme", "POST", "/servicesNS/nobody/%s/defenderipstats/details" % APP,
                             ip=value)
    assert status == 400 and "ip must be" in body["error"] and app.defender.hunting.calls() == 0


@pytest.mark.parametrize("value", ["0", "721", "24h"])
def test_a_bad_lookback_is_one_error_and_no_request(hunting_app, value):
    app = hunting_app
    app.splunkd.reset_requests()
    run = details(app, ["ip=10.1.2.3", "lookbackhours=" + value])
    assert len(run.errors) == 1 and "lookbackhours must be a number of hours from 1 to 720" in run.errors[0], \
        run.errors
    assert run.records == [] and app.splunkd.count() == 0 and "Traceback" not in run.stderr


def test_a_missing_graph_permission_is_one_readable_error(hunting_app):
    app = hunting_app
    app.defender.set_roles(d.DEFAULT_CLIENT_ID, [d.IP_READ_ALL])
    run = details(app, ["ip=" + seen_ip("v4", seed=503)])
    assert len(run.errors) == 1 and "ThreatHunting.Read.All" in run.errors[0], run.errors
    assert run.records == [] and "Traceback" not in run.stderr
    assert app.splunkd.kv_documents("defenderipstats_details", app=APP) == []  # errors are never kept


def test_a_quota_pause_beyond_max_wait_says_when_it_returns(hunting_app):
    app = hunting_app
    app.settings(max_wait="0")
    app.defender.hunting.inject(429, retry_after="120")
    run = details(app, ["ip=" + seen_ip("v4", seed=504)])
    assert len(run.errors) == 1 and "quota" in run.errors[0] and "about" in run.errors[0], run.errors
    assert app.splunkd.kv_documents("defenderipstats_details", app=APP) == []


def test_pending_is_asked_again_until_max_wait(hunting_app):
    app = hunting_app
    ip = seen_ip("v4", seed=505)
    app.defender.hunting.inject(429, retry_after="2")  # the pause is shorter than max_wait: asked again
    run = details(app, ["ip=" + ip])
    assert_shows_the_table(run, ip, 720)
    assert app.defender.hunting.calls() == 2


def test_still_pending_after_max_wait_says_to_run_it_again(hunting_app):
    app = hunting_app
    app.settings(max_wait="2")
    # the service's request loses 4 s before its query (a slow credential read): past its own time
    # bound, it answers pending; the command's max_wait is over before it could ask again
    app.splunkd.inject_fault(r"storage/passwords", status=None, delay=4.0, times=1)
    ip = seen_ip("v4", seed=511)
    run = details(app, ["ip=" + ip])
    assert run.records == [] and len(run.errors) == 1, run.errors
    assert "still running or waiting for budget; run the search again in a few minutes" in run.errors[0]
    assert app.defender.hunting.calls() == 0
    app.splunkd.clear_faults()
    assert_shows_the_table(details(app, ["ip=" + ip]), ip, 720)  # and so it does, later


def test_an_analyst_without_the_accounts_role_gets_nothing(hunting_app):
    app = hunting_app
    add_analyst_and_plain_user(app.splunkd)
    app.splunkd.add_user(TIER2, TIER2_PW, roles=["defenderipstats_user", "soc_tier2"])
    app.configure_account("restricted", allowed_roles="soc_tier2", graph_url=app.defender.base_url)
    ip = seen_ip("v6", seed=506)
    allowed = details(app, ["ip=" + ip, "account=restricted"], username=TIER2)
    assert_shows_the_table(allowed, ip, 720)
    assert app.defender.hunting.calls() == 1
    refused = details(app, ["ip=" + ip, "account=restricted"], username=ANALYST)
    assert refused.records == [] and len(refused.errors) == 1 and "restricted" in refused.errors[0]
    path = "/servicesNS/nobody/%s/defenderipstats/details" % APP
    status, body = call_json(app, ANALYST, ANALYST_PW, "POST", path, account="restricted", ip=ip)
    assert status == 400 and body["kind"] == "configuration" and "devices" not in body  # as for a lookup
    status, body = call_json(app, PLAIN, PLAIN_PW, "POST", path, account="restricted", ip=ip)
    assert status == 403 and "devices" not in (body or {})
    for user, password in ((ANALYST, ANALYST_PW), (PLAIN, PLAIN_PW), (TIER2, TIER2_PW)):
        status, body = call_json(app, user, password, "GET", "/servicesNS/nobody/%s/storage/collections/data/"
                                 "defenderipstats_details" % APP)
        assert status in (403, 404) or body == [], (user, status, body)
    assert app.defender.hunting.calls() == 1  # the cache answered the allowed user only; nobody else asked


def test_the_usage_line_counts_the_query_for_the_dashboard(hunting_app):
    import splunklog

    from standins.splunkd import parse_conf_file

    app = hunting_app
    ip = seen_ip("v6", seed=508)
    details(app, ["ip=" + ip])
    details(app, ["ip=" + ip])
    sourcetype = parse_conf_file(os.path.join(APP_ROOT, "default", "props.conf"))["defenderipstats:log"]
    lines = [splunklog.fields(r, sourcetype) for r in splunklog.events(app.log_text(), sourcetype)]
    usage = [(f["user"], f["account"], f["hunting_calls"], f["cache_writes"], f["outcome"])
             for f in lines if f.get("request") == "details"]
    assert usage == [("admin", "contoso", "1", "1", "ok"), ("admin", "contoso", "0", "0", "ok")]
    overview = open(os.path.join(APP_ROOT, "default", "data", "ui", "views", "defenderipstats_overview.xml"),
                    encoding="utf-8").read()
    assert overview.count("(request=lookup OR request=details)\n| timechart span=1h sum(hunting_calls)") == 1


def test_the_purge_removes_expired_answers_and_the_command_still_uses_the_rest(hunting_app):
    import time

    from spl import app_pipeline

    from standins.splunkd import parse_conf_file

    app = hunting_app
    fresh, stale = seen_ip("v6", seed=509), seen_ip("v4", seed=510)
    details(app, ["ip=" + fresh])
    details(app, ["ip=" + stale])
    [old] = [doc for doc in app.splunkd.kv_documents("defenderipstats_details", app=APP) if doc["ip"] == stale]
    app.splunkd.kv_insert("defenderipstats_details", [dict(old, fetched_at=time.time() - 3601)], app=APP)
    conf = lambda name: parse_conf_file(os.path.join(APP_ROOT, "default", name + ".conf"))  # noqa: E731
    search = conf("savedsearches")["Defender IP stats - Purge expired IP details"]["search"]
    app_pipeline(app.admin, APP, conf("transforms"), conf("collections")).run(search)
    kept = app.splunkd.kv_documents("defenderipstats_details", app=APP)
    assert [doc["ip"] for doc in kept] == [fresh]
    assert_shows_the_table(details(app, ["ip=" + fresh]), fresh, 720, source="cache")  # still whole and usable
    assert app.defender.hunting.calls() == 2
