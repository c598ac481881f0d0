"""The alert action "Defender IP statistics", run exactly as splunkd runs a custom alert action.

splunkd starts ``<python> $SPLUNK_HOME/etc/apps/<app>/bin/<stanza>.py --execute``, writes the JSON
payload to its stdin (payload_format = json) and logs each stderr line to splunkd.log (component
sendmodalert); the triggering search's results are a gzipped CSV (``results_file``) in which a
multivalue field also has a ``__mv_<field>`` column (``$a$;$b$``, ``$$`` for ``$``). Exit status 0 is
success. (Splunk docs: "Create a custom alert action script", "Custom alert action configuration
payload".) The action here talks to the splunkd stand-in over real HTTP: the app's lookup service
(the lead's persistent REST handler) for the IPs, receivers/simple for the events.
"""

import csv
import gzip
import io
import json
import os
import re
import subprocess
import time

import pytest

from defender_ipstats.search import alert
from defender_ipstats.splunk.rest import connect
from harness import APP, APP_ROOT, COMMAND_PYTHON
from standins import dataset
from standins.splunkd import parse_conf_file

SCRIPT = os.path.join(APP_ROOT, "bin", "defenderipstats_alert.py")
STANZA = "defenderipstats_alert"


def conf(name):
    return parse_conf_file(os.path.join(APP_ROOT, "default", name + ".conf"))


def write_results(path, rows):
    """A results file as splunkd writes it: gzipped CSV, multivalues joined by newlines in the
    field's own column and encoded in its __mv_ column."""
    fields = []
    for row in rows:
        for name in row:
            if name not in fields:
                fields.append(name)
    columns = []
    for name in fields:
        columns += [name, "__mv_" + name]
    with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            cells = []
            for name in fields:
                value = row.get(name, "")
                if isinstance(value, list):
                    cells += ["\n".join(value), ";".join("$%s$" % v.replace("$", "$$") for v in value)]
                else:
                    cells += [value, ""]
            writer.writerow(cells)


class AlertRun:
    def __init__(self, completed, sid):
        self.returncode = completed.returncode
        self.stderr = completed.stderr
        self.stdout = completed.stdout
        self.sid = sid
        self.lines = [line for line in completed.stderr.splitlines() if line.strip()]

    def level(self, level):
        return [line[len(level) + 1:] for line in self.lines if line.startswith(level + " ")]


def run_alert(splunkd, tmp_path, configuration, rows, username="admin", payload_overrides=None,
              argv=("--execute",), raw_stdin=None, python=COMMAND_PYTHON):
    """Run the alert action as splunkd does for a triggered alert of ``username``."""
    sid = "scheduler__%s__search__RMD5a1b2c3d4e5f6_at_1764201600_%d" % (username, int(time.time() * 1000) % 100000)
    dispatch = os.path.join(str(tmp_path), "splunk_home", "var", "run", "splunk", "dispatch", sid)
    os.makedirs(dispatch, exist_ok=True)
    results_file = os.path.join(dispatch, "results.csv.gz")
    write_results(results_file, rows)
    settings = dict(conf("alert_actions")[STANZA])
    params = {k[len("param."):]: v for k, v in settings.items() if k.startswith("param.")}
    params.update(configuration)
    payload = {
        "app": "search",
        "owner": username,
        "results_file": results_file,
        "results_link": "http://splunk-standin:8000/app/search/search?sid=%s" % sid,
        "search_uri": "/servicesNS/%s/search/saved/searches/Rare%%20destinations" % username,
        "server_host": splunkd.server_name,
        "server_uri": splunkd.base_url,
        "session_key": splunkd.new_session_key(username),
        "sid": sid,
        "search_name": "Rare destinations",
        "configuration": params,
        "result": rows[0] if rows else {},
    }
    payload.update(payload_overrides or {})
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["SPLUNK_HOME"] = os.path.join(str(tmp_path), "splunk_home")
    stdin = raw_stdin if raw_stdin is not None else json.dumps(payload)
    completed = subprocess.run([python, SCRIPT] + list(argv), input=stdin, capture_output=True, text=True,
                               env=env, cwd=dispatch, timeout=300)
    return AlertRun(completed, sid)


def lookup_requests(splunkd):
    return [r for r in splunkd.requests if r.path.endswith("/defenderipstats/lookup")]


def assert_one_clean_error(run, *fragments):
    assert "Traceback" not in run.stderr and run.returncode != 0, run.stderr
    errors = run.level("ERROR")
    assert len(errors) == 1, run.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


# -- configuration of the action --------------------------------------------------------------------
def test_the_action_is_declared_for_alerts_and_for_enterprise_security():
    stanza = conf("alert_actions")[STANZA]
    assert stanza["is_custom"] == "1" and stanza["label"] == "Defender IP statistics"
    assert stanza["payload_format"] == "json"
    assert os.path.isfile(SCRIPT)
    assert os.path.isfile(os.path.join(APP_ROOT, "default", "data", "ui", "alerts", STANZA + ".html"))
    cam = json.loads(stanza["param._cam"])
    assert cam["supports_adhoc"] is True and cam["field_name_params"] == ["param.field"]
    assert {"category", "task", "subject", "technology"} <= set(cam)
    html = open(os.path.join(APP_ROOT, "default", "data", "ui", "alerts", STANZA + ".html"), encoding="utf-8").read()
    params = set(re.findall(r'name="action\.%s\.param\.(\w+)"' % STANZA, html))
    spec = open(os.path.join(APP_ROOT, "README", "alert_actions.conf.spec"), encoding="utf-8").read()
    documented = set(re.findall(r"^param\.(\w+) =", spec, re.M))
    assert params <= documented and documented <= {k[len("param."):] for k in stanza if k.startswith("param.")}
    # Offered in every app's alerts (and ES), changed by admins only.
    meta = parse_conf_file(os.path.join(APP_ROOT, "metadata", "default.meta"))
    assert meta["alert_actions/%s" % STANZA]["export"] == "system"
    assert meta["alert_actions/%s" % STANZA]["access"].replace(" ", "") == "read:[*],write:[admin,sc_admin]"


@pytest.mark.parametrize("configuration, fragments", [
    ({"field": ""}, ["No IP field configured", "param.field"]),
    ({"field": "dest ip"}, ["param.field is not a field name"]),
    ({"index": "_internal"}, ["param.index is not a usable index name"]),
    ({"account": "../etc"}, ["param.account is not an account name"]),
    ({"lookback_hours": "721"}, ["lookback_hours must be a whole number from 1 to 720"]),
    ({"backend": "graph"}, ["param.backend must be one of ipstats, hunting, auto"]),
    ({"field": "src_ip"}, ["The results have no field 'src_ip'", "dest"]),
])
def test_bad_configuration_is_one_clear_error_line_and_no_lookup(splunkd, tmp_path, configuration, fragments):
    run = run_alert(splunkd, tmp_path, configuration, [{"dest": "192.0.2.1", "count": "3"}])
    assert_one_clean_error(run, *fragments)
    assert run.returncode == alert.EXIT_CONFIGURATION
    assert lookup_requests(splunkd) == [] and splunkd.received == []


def test_only_the_execute_mode_runs(splunkd, tmp_path):
    run = run_alert(splunkd, tmp_path, {}, [{"dest": "192.0.2.1"}], argv=("--validate",))
    assert run.returncode != 0 and run.level("FATAL") and "Traceback" not in run.stderr
    assert lookup_requests(splunkd) == []


def test_a_payload_that_is_not_json_names_payload_format(splunkd, tmp_path):
    run = run_alert(splunkd, tmp_path, {}, [{"dest": "192.0.2.1"}], raw_stdin="<alert><configuration/></alert>")
    assert_one_clean_error(run, "payload_format = json")


def test_an_unreadable_results_file_is_one_error(splunkd, tmp_path):
    run = run_alert(splunkd, tmp_path, {}, [{"dest": "192.0.2.1"}],
                    payload_overrides={"results_file": str(tmp_path / "gone.csv.gz")})
    assert_one_clean_error(run, "Could not read the search results")


def test_results_without_ips_end_quietly_without_calling_the_service(splunkd, tmp_path):
    run = run_alert(splunkd, tmp_path, {}, [{"dest": "intranet.example"}, {"dest": ""}, {"count": "1"}])
    assert run.returncode == 0, run.stderr
    assert run.level("INFO") and "No IP in field 'dest'" in run.level("INFO")[0]
    assert lookup_requests(splunkd) == [] and splunkd.received == []


def test_the_results_file_is_read_as_splunkd_writes_it(tmp_path):
    path = str(tmp_path / "results.csv.gz")
    write_results(path, [{"dest": ["192.0.2.1", "2001:DB8::1"], "n": "1"}, {"dest": "192.0.2.2"},
                         {"dest": ["weird$value", "192.0.2.3"]}, {"n": "2"}])
    values, rows = alert.field_values(path, "dest")
    assert rows == 4
    assert values == ["192.0.2.1", "2001:DB8::1", "192.0.2.2", "weird$value", "192.0.2.3"]


def test_a_missing_service_asks_for_a_restart(app, tmp_path):
    """Before splunkd has loaded the app's restmap.conf, the lookup endpoint answers 404."""
    saved = app.splunkd._layer(("app", APP, "default")).pop("restmap", None)
    try:
        run = run_alert(app.splunkd, tmp_path, {}, [{"dest": "192.0.2.1"}])
    finally:
        if saved is not None:
            app.splunkd._layer(("app", APP, "default"))["restmap"] = saved
    assert_one_clean_error(run, "lookup service is not loaded", "restart Splunk")
    assert len(lookup_requests(app.splunkd)) == 1 and app.splunkd.received == []


class ScriptedService:
    """The lookup service's answers, scripted per request, to check the client's loop on ``pending``
    (the contract: IPs not done within a request's 30 s bound come back in ``pending``: ask again)."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.forms = []

    def post(self, path, owner=None, app=None, **form):
        assert path == alert.LOOKUP_PATH and owner == "nobody" and app == APP
        self.forms.append(form)
        body = json.dumps(self.answers.pop(0)).encode("utf-8")

        class Response:
            pass

        response = Response()
        response.body = io.BytesIO(body)
        return response


def _stats(ip):
    return {"ip": ip, "status": "found", "prevalence": 1, "source": "hunting"}


def test_the_client_asks_again_for_pending_ips_and_stops_at_its_deadline():
    config = alert.Config.from_payload({"field": "dest", "backend": "hunting"})
    service = ScriptedService([
        {"account": "acme", "lookback_hours": 720, "results": {"192.0.2.1": _stats("192.0.2.1")},
         "pending": ["192.0.2.2", "192.0.2.3"], "messages": [["WARN", "budget"]]},
        {"account": "acme", "lookback_hours": 720, "results": {}, "pending": ["192.0.2.2", "192.0.2.3"]},
        {"account": "acme", "lookback_hours": 720, "results": {"192.0.2.2": _stats("192.0.2.2"),
                                                               "192.0.2.3": _stats("192.0.2.3")}, "pending": []},
    ])
    sleeps = []
    client = alert.LookupService(service, config, sleep=sleeps.append)
    results, pending = client.resolve(["192.0.2.1", "192.0.2.2", "192.0.2.3"])
    assert set(results) == {"192.0.2.1", "192.0.2.2", "192.0.2.3"} and pending == []
    assert [f["ips"] for f in service.forms] == ["192.0.2.1,192.0.2.2,192.0.2.3", "192.0.2.2,192.0.2.3",
                                                 "192.0.2.2,192.0.2.3"]
    assert all(f["backend"] == "hunting" and f["cache"] == "use" and "sid" not in f for f in service.forms)
    assert len(sleeps) == 1 and client.account == "acme" and client.messages == [("WARN", "budget")]

    # A service that never finishes: the client stops at its deadline and reports the rest pending.
    now = [0.0]
    never = ScriptedService([{"results": {}, "pending": ["192.0.2.9"]}] * 50)
    client = alert.LookupService(never, config, clock=lambda: now[0],
                                 sleep=lambda s: now.__setitem__(0, now[0] + 30))
    results, pending = client.resolve(["192.0.2.9"], deadline_s=100)
    assert results == {} and pending == ["192.0.2.9"] and len(never.forms) == 4


def test_more_than_5000_ips_go_in_requests_of_at_most_5000():
    config = alert.Config.from_payload({"field": "dest"})
    ips = ["10.%d.%d.%d" % (i // 65536, (i // 256) % 256, i % 256) for i in range(12000)]
    service = ScriptedService([{"results": {ip: _stats(ip) for ip in chunk}, "pending": []}
                               for chunk in (ips[:5000], ips[5000:10000], ips[10000:])])
    results, pending = alert.LookupService(service, config).resolve(ips)
    assert len(results) == 12000 and not pending
    assert [len(f["ips"].split(",")) for f in service.forms] == [5000, 5000, 2000]


# -- the result events --------------------------------------------------------------------------------
def _pcre_to_python(pattern):
    return re.sub(r"\(\?<(?=[A-Za-z])", "(?P<", pattern)


def indexed_events(record):
    """The events Splunk makes of one receivers/simple body with the sourcetype's props.conf."""
    props = conf("props")[alert.SOURCETYPE]
    assert props["SHOULD_LINEMERGE"] == "false"
    breaker = re.compile(_pcre_to_python(props["LINE_BREAKER"]))
    events, start = [], 0
    for match in breaker.finditer(record["body"]):
        events.append(record["body"][start:match.start(1)])
        start = match.end(1)
    events.append(record["body"][start:])
    events = [e for e in events if e.strip()]
    prefix = re.compile(_pcre_to_python(props["TIME_PREFIX"]))
    for event in events:
        found = prefix.search(event)
        assert found, event
        stamp = event[found.end():found.end() + int(props["MAX_TIMESTAMP_LOOKAHEAD"])]
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}", stamp), stamp
    return [json.loads(e) for e in events]


def test_result_events_are_written_through_receivers_simple_one_per_ip(splunkd):
    config = alert.Config.from_payload({"field": "dest_ip", "index": "security_enrichment"})
    payload = {"sid": "scheduler__admin__search__RMD5x_at_1", "search_name": "Rare destinations", "app": "search",
               "owner": "admin"}
    results = {"192.0.2.1": {"ip": "192.0.2.1", "status": "found", "prevalence": 2,
                             "first_seen": "2026-11-30T10:00:00Z", "last_seen": "2026-12-01T09:00:00Z",
                             "source": "api", "error": ""},
               "192.0.2.2": {"ip": "192.0.2.2", "status": "not_seen", "prevalence": 0, "source": "cache"}}
    ips = ["192.0.2.2", "192.0.2.1", "192.0.2.3"]
    events = alert.result_events(ips, results, config, payload, "acme", 720, 1764201600.5)
    service = connect(splunkd.base_url, splunkd.new_session_key("admin"))
    alert.write_events(service, events, config.index, "defenderipstats_alert:Rare destinations")
    [record] = splunkd.received
    assert (record["index"], record["sourcetype"], record["source"]) == (
        "security_enrichment", "defenderipstats:enrichment", "defenderipstats_alert:Rare destinations")
    indexed = indexed_events(record)
    assert [e["ip"] for e in indexed] == ips
    assert indexed[1]["prevalence"] == 2 and indexed[1]["first_seen"] == "2026-11-30T10:00:00Z"
    assert indexed[1]["action_status"] == "success" and indexed[0]["status"] == "not_seen"
    assert indexed[2]["status"] == "rate_limited" and indexed[2]["action_status"] == "failure"
    for event in indexed:
        assert event["orig_sid"] == payload["sid"] and event["src_field"] == "dest_ip"
        assert event["account"] == "acme" and event["vendor_product"] == "Microsoft Defender for Endpoint"
        assert event["orig_owner"] == "admin" and event["app"] == "search"


def test_writing_events_without_edit_tcp_names_the_capability(splunkd):
    splunkd.add_user("analyst", "pw", roles=["defenderipstats_user"])
    service = connect(splunkd.base_url, splunkd.new_session_key("analyst"))
    with pytest.raises(alert.ActionError) as refused:
        alert.write_events(service, ['{"time": "2026-12-01T00:00:00.000+0000", "ip": "192.0.2.1"}'], "main", "x")
    assert "edit_tcp" in str(refused.value) and splunkd.received == []


# -- end to end through the app's lookup service (the lead's persistent REST handler) ------------------
def test_an_alert_enriches_every_ip_through_the_service_and_writes_events(app, tmp_path):
    ips = dataset.ips(3, status="found", seed=131) + dataset.ips(1, status="not_seen", seed=131)
    rows = [{"dest": ips[0], "count": "4"}, {"dest": [ips[1], ips[2]], "count": "2"}, {"dest": ips[3]},
            {"dest": ips[0]}, {"dest": "not-an-ip"}]
    run = run_alert(app.splunkd, tmp_path, {"field": "dest", "index": "risk_enrichment"}, rows)
    assert run.returncode == 0, run.stderr
    assert not run.level("ERROR") and "Traceback" not in run.stderr
    requests = lookup_requests(app.splunkd)
    assert requests and all(r.username == "admin" and r.status == 200 for r in requests)
    records = [r for r in app.splunkd.received if r["sourcetype"] == alert.SOURCETYPE]
    events = [e for record in records for e in indexed_events(record)]
    assert [e["ip"] for e in events] == [dataset.canonical(ip) for ip in ips]
    for ip, event in zip(ips, events):
        expected = dataset.ip_stats(dataset.canonical(ip), 720)
        assert event["prevalence"] == expected["organizationPrevalence"]
        assert event["orig_sid"] == run.sid and event["orig_search_name"] == "Rare destinations"
    assert {r["index"] for r in records} == {"risk_enrichment"}
    summary = run.level("INFO")[-1]
    assert "ips=4" in summary and "not_ip=1" in summary
    assert not app.leaks()


def test_an_unknown_account_is_one_clear_error_from_the_service(app, tmp_path):
    run = run_alert(app.splunkd, tmp_path, {"account": "nosuchaccount"}, [{"dest": "192.0.2.1"}])
    error = assert_one_clean_error(run)
    assert "nosuchaccount" in error
    assert app.splunkd.received == []


def test_an_owner_without_the_apps_capability_gets_a_clear_error(app, tmp_path):
    app.splunkd.add_user("someone", "pw", roles=["user"])
    run = run_alert(app.splunkd, tmp_path, {}, [{"dest": "192.0.2.1"}], username="someone")
    assert_one_clean_error(run, "defenderipstats_user")
    assert app.splunkd.received == []


def test_as_an_adaptive_response_adhoc_from_incident_review(app, tmp_path):
    """ES runs an ad hoc adaptive response with a results file of the notable's fields, including
    orig_sid/orig_rid, and the action's param.* as configuration."""
    ip = dataset.ips(1, status="found", seed=137)[0]
    rows = [{"dest": ip, "orig_sid": "scheduler__admin_U0EtVGhyZWF0SW50ZWxsaWdlbmNl__RMD5abc_at_1", "orig_rid": "0",
             "rid": "0"}]
    run = run_alert(app.splunkd, tmp_path, {"field": "dest", "index": "main"}, rows,
                    payload_overrides={"search_name": "", "app": "SplunkEnterpriseSecuritySuite"})
    assert run.returncode == 0, run.stderr
    [record] = [r for r in app.splunkd.received if r["sourcetype"] == alert.SOURCETYPE]
    assert record["source"] == "defenderipstats_alert:adhoc"
    [event] = indexed_events(record)
    assert event["ip"] == dataset.canonical(ip) and event["status"] == "found" and event["orig_rid"] == "0"


def test_the_run_function_never_prints_a_traceback_on_unexpected_failures(tmp_path):
    """A bug deep inside (here: a connect() that raises) is one ERROR line and exit 1."""
    path = str(tmp_path / "results.csv.gz")
    write_results(path, [{"dest": "192.0.2.1"}])
    payload = {"session_key": "k", "server_uri": "http://127.0.0.1:1", "results_file": path,
               "configuration": {"field": "dest", "index": "main"}}
    err = io.StringIO()

    def broken_connect(uri, key):
        raise RuntimeError("boom")

    code = alert.run(["x", "--execute"], io.StringIO(json.dumps(payload)), err, broken_connect)
    assert code == alert.EXIT_FAILED
    assert err.getvalue().splitlines() == ["ERROR Unexpected failure: RuntimeError: boom"]
