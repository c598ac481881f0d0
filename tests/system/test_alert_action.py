"""The alert action "Defender IP statistics", run exactly as splunkd runs a custom alert action.

splunkd starts ``<python> $SPLUNK_HOME/etc/apps/<app>/bin/<stanza>.py --execute``, writes the JSON
payload to its stdin (payload_format = json) and logs each stderr line to splunkd.log (component
sendmodalert); the triggering search's results are a gzipped CSV (``results_file``) in which a
multivalue field also has a ``__mv_<field>`` column (``$a$;$b$``, ``$$`` for ``$``). Exit status 0 is
success. (Splunk docs: "Create a custom alert action script", "Custom alert action configuration
payload".) The action here talks to the splunkd stand-in over real HTTP, to the app's lookup service
(the persistent REST handler) for the settings and the IPs. Its events are stash files in
$SPLUNK_HOME/var/spool/splunk, read back here as Splunk_SA_CIM's batch input, props and transforms
for ``stash_common_action_model`` index them; its status lines are read as Incident Review reads them.
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

from defender_ipstats.search import alert, alert_service, cam
from harness import APP, APP_ROOT, COMMAND_PYTHON
from standins import dataset
from standins.splunkd import parse_conf_file
from users import ANALYST, add_analyst_and_plain_user

SCRIPT = os.path.join(APP_ROOT, "bin", "defenderipstats_alert.py")
CIM_APP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "support", "fixtures",
                       "Splunk_SA_CIM")
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
              argv=("--execute",), raw_stdin=None, python=COMMAND_PYTHON, sid=None, with_cim=True):
    """Run the alert action as splunkd does for a triggered alert of ``username``, on a search head with
    Splunk_SA_CIM (unless ``with_cim`` is false)."""
    if with_cim:
        splunkd.add_app("Splunk_SA_CIM", CIM_APP)
    sid = sid or "scheduler__%s__search__RMD5a1b2c3d4e5f6_at_1764201600_%d" % (
        username, int(time.time() * 1000) % 100000)
    os.makedirs(spool(tmp_path), exist_ok=True)  # Splunk's own folder: the action does not make it
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
    run = AlertRun(completed, sid)
    run.session_key = payload["session_key"]
    return run


def lookup_requests(splunkd):
    return [r for r in splunkd.requests if r.path.endswith("/defenderipstats/lookup")]


def assert_one_clean_error(run, *fragments):
    assert "Traceback" not in run.stderr and run.returncode != 0, run.stderr
    errors = run.level("ERROR")
    assert len(errors) == 1, run.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def spool(tmp_path):
    return os.path.join(str(tmp_path), "splunk_home", "var", "spool", "splunk")


def stash_files(tmp_path):
    folder = spool(tmp_path)
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


# What Splunk_SA_CIM declares for stash_common_action_model (inputs.conf: a batch input for
# ...stash_common_action_model; props.conf: HEADER_MODE = firstline, this LINE_BREAKER, TIME_PREFIX the
# id line, MAX_TIMESTAMP_LOOKAHEAD = 25; transforms.conf: orig_action_name, orig_sid, orig_rid as
# indexed fields from the id line, the sourcetype from it, then the id line dropped from _raw).
CAM_LINE_BREAKER = re.compile(r"(\r?\n==##~~##~~  1E8N3D4E6V5E7N2T9 ~~##~~##==\r?\n)")
CAM_HEADER = re.compile(r"\*{3}SPLUNK\*{3} (.*)")
CAM_IDLINE = re.compile(r"(?s)^\*{3}Common\sAction\sModel\*{3}([^\n]+)\n(.*)")
CAM_ID_FIELD = r"\*{3}Common\sAction\sModel\*{3}.*%s=\"([^\"]+)"
KV_PAIR = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _unescape(value):
    return re.sub(r"\\(.)", r"\1", value)


def indexed_stash(tmp_path):
    """The events Splunk makes of the stash files in the spool folder, with their index-time and
    search-time (KV_MODE = auto) fields, in the order written."""
    events = []
    for name in stash_files(tmp_path):
        assert re.fullmatch(r"\d{10}_\d+\.stash_common_action_model", name), name
        text = open(os.path.join(spool(tmp_path), name), encoding="utf-8").read()
        chunks = CAM_LINE_BREAKER.split(text)[::2]
        header = CAM_HEADER.fullmatch(chunks[0])
        assert header and "\n" not in chunks[0], chunks[0]
        meta = dict(re.findall(r'(\w+)="([^"]*)"', header.group(1)))
        for chunk in chunks[1:]:
            idline = CAM_IDLINE.match(chunk)
            assert idline, chunk[:200]
            event = dict(meta)
            for key in ("orig_action_name", "orig_sid", "orig_rid", "sourcetype"):
                found = re.search(CAM_ID_FIELD % key, chunk.split("\n", 1)[0])
                if found:
                    event[key] = found.group(1)
            raw = idline.group(2)
            stamp = re.match(r"\d{10}(\.\d+)?", raw[:25])
            assert stamp, raw[:50]
            event["_time"] = float(stamp.group(0))
            event["_raw"] = raw
            event["fields"] = {k: _unescape(v) for k, v in KV_PAIR.findall(raw)}
            events.append(event)
    return events


def status_log(tmp_path):
    path = os.path.join(str(tmp_path), "splunk_home", "var", "log", "splunk", "defenderipstats_alert_modalert.log")
    return open(path, encoding="utf-8").read().splitlines() if os.path.exists(path) else []


# A modalert log line as Splunk_SA_CIM's Incident Review views read it (sourcetype
# modular_alerts:<action>, KV extraction of the sendmodaction pairs).
STATUS_LINE = re.compile(r'^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\+0000) '
                         r'(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) '
                         r'sendmodaction - (?P<pairs>\w+="(?:[^"\\]|\\.)*"(?: \w+="(?:[^"\\]|\\.)*")*)$')


def parsed_status(tmp_path):
    lines = []
    for line in status_log(tmp_path):
        match = STATUS_LINE.match(line)
        assert match, line
        fields = {k: _unescape(v) for k, v in KV_PAIR.findall(match.group("pairs"))}
        lines.append(dict(fields, _level=match.group("level")))
    return lines


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
    # The spec's drilldown tokens: $sid$ and $rid$ are the action's events' orig_sid and orig_rid.
    assert re.search(r"orig_sid%3D%22\$sid\$%22.*orig_rid%3D%22\$rid\$%22", cam["drilldown_uri"])
    assert "$orig_sid$" not in cam["drilldown_uri"] and "sourcetype%3D%22defenderipstats%3Aenrichment" in cam[
        "drilldown_uri"]
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
    assert lookup_requests(splunkd) == [] and stash_files(tmp_path) == []


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
    assert lookup_requests(splunkd) == [] and stash_files(tmp_path) == []


def test_the_results_file_is_read_as_splunkd_writes_it(tmp_path):
    path = str(tmp_path / "results.csv.gz")
    write_results(path, [{"dest": ["192.0.2.1", "2001:DB8::1"], "n": "1"}, {"dest": "192.0.2.2"},
                         {"dest": ["weird$value", "192.0.2.3"]}, {"n": "2"}])
    rows = alert.field_values(path, "dest", cam.Invocation({"sid": "1.2"}, alert.ACTION_NAME))
    assert len(rows) == 4 and [row.ids.rid for row in rows] == ["0", "1", "2", "3"]
    assert [v for row in rows for v in row.values] == ["192.0.2.1", "2001:DB8::1", "192.0.2.2", "weird$value",
                                                       "192.0.2.3"]


def test_a_missing_service_asks_for_a_restart(app, tmp_path):
    """Before splunkd has loaded the app's restmap.conf, the lookup endpoint answers 404."""
    saved = app.splunkd._layer(("app", APP, "default")).pop("restmap", None)
    try:
        run = run_alert(app.splunkd, tmp_path, {}, [{"dest": "192.0.2.1"}])
    finally:
        if saved is not None:
            app.splunkd._layer(("app", APP, "default"))["restmap"] = saved
    assert_one_clean_error(run, "lookup service is not loaded", "restart Splunk")
    assert len(lookup_requests(app.splunkd)) == 1 and stash_files(tmp_path) == []


class ScriptedService:
    """The lookup service's answers, scripted per request, to check the client's loop on ``pending``
    (the contract: IPs not done within a request's 30 s bound come back in ``pending``: ask again)."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.forms = []

    def post(self, path, owner=None, app=None, **form):
        assert path == alert_service.LOOKUP_PATH and owner == "nobody" and app == APP
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
    client = alert_service.LookupService(service, config, sleep=sleeps.append)
    results, pending = client.resolve(["192.0.2.1", "192.0.2.2", "192.0.2.3"])
    assert set(results) == {"192.0.2.1", "192.0.2.2", "192.0.2.3"} and pending == []
    assert [f["ips"] for f in service.forms] == ["192.0.2.1,192.0.2.2,192.0.2.3", "192.0.2.2,192.0.2.3",
                                                 "192.0.2.2,192.0.2.3"]
    assert all(f["backend"] == "hunting" and f["cache"] == "use" and "sid" not in f for f in service.forms)
    assert len(sleeps) == 1 and client.account == "acme" and client.messages == [("WARN", "budget")]

    # A service that never finishes: the client stops at its deadline and reports the rest pending.
    now = [0.0]
    never = ScriptedService([{"results": {}, "pending": ["192.0.2.9"]}] * 50)
    client = alert_service.LookupService(never, config, clock=lambda: now[0],
                                 sleep=lambda s: now.__setitem__(0, now[0] + 30))
    results, pending = client.resolve(["192.0.2.9"], deadline_s=100)
    assert results == {} and pending == ["192.0.2.9"] and len(never.forms) == 4


def test_more_than_5000_ips_go_in_requests_of_at_most_5000():
    config = alert.Config.from_payload({"field": "dest"})
    ips = ["10.%d.%d.%d" % (i // 65536, (i // 256) % 256, i % 256) for i in range(12000)]
    service = ScriptedService([{"results": {ip: _stats(ip) for ip in chunk}, "pending": []}
                               for chunk in (ips[:5000], ips[5000:10000], ips[10000:])])
    results, pending = alert_service.LookupService(service, config).resolve(ips)
    assert len(results) == 12000 and not pending
    assert [len(f["ips"].split(",")) for f in service.forms] == [5000, 5000, 2000]


# -- the result events, as the common action model writes them ---------------------------------------
def test_an_alert_enriches_every_ip_through_the_service_and_writes_events(app, tmp_path):
    app.settings(alert_indexes="main; risk_enrichment")
    ips = dataset.ips(3, status="found", seed=131) + dataset.ips(1, status="not_seen", seed=131)
    rows = [{"dest": ips[0], "count": "4"}, {"dest": [ips[1], ips[2]], "count": "2"}, {"dest": ips[3]},
            {"dest": ips[0]}, {"dest": "not-an-ip"}]
    run = run_alert(app.splunkd, tmp_path, {"field": "dest", "index": "risk_enrichment"}, rows)
    assert run.returncode == 0, run.stderr
    assert not run.level("ERROR") and "Traceback" not in run.stderr
    requests = lookup_requests(app.splunkd)
    assert requests and all(r.username == "admin" and r.status == 200 for r in requests)
    events = indexed_stash(tmp_path)
    assert [e["fields"]["ip"] for e in events] == [dataset.canonical(ip) for ip in ips]
    for ip, event, rid in zip(ips, events, ["0", "1", "1", "2"]):
        expected = dataset.ip_stats(dataset.canonical(ip), 720)
        assert event["fields"]["prevalence"] == str(expected["organizationPrevalence"])
        assert (event["index"], event["sourcetype"], event["source"]) == (
            "risk_enrichment", alert.SOURCETYPE, "defenderipstats_alert:Rare destinations")
        assert (event["orig_action_name"], event["orig_sid"], event["orig_rid"]) == ("defenderipstats_alert",
                                                                                     run.sid, rid)
        assert event["fields"]["search_name"] == "Rare destinations" and event["fields"]["sid"] == run.sid
        assert event["host"] == app.splunkd.server_name and event["fields"]["orig_owner"] == "admin"
    assert events[3]["fields"]["status"] == "not_seen" and events[0]["fields"]["action_status"] == "success"
    summary = run.level("INFO")[-1]
    assert "ips=4" in summary and "not_ip=1" in summary
    assert not os.listdir(os.path.join(str(tmp_path), "splunk_home", "var", "run", "TA-defender-ipstats", "spool"))
    assert not app.leaks()


def test_a_results_file_with_a_1_mb_cell_and_multivalue_fields(app, tmp_path):
    """splunkd writes whole _raw and values() cells: far above Python's default CSV field limit."""
    ips = dataset.ips(3, status="found", seed=139)
    big = "x" * (1024 * 1024)
    rows = [{"_raw": big, "dest": [ips[0], ips[1]], "tags": ["a$b", "c"]}, {"_raw": "short", "dest": ips[2]}]
    run = run_alert(app.splunkd, tmp_path, {"field": "dest"}, rows)
    assert run.returncode == 0 and not run.level("ERROR"), run.stderr
    assert [e["fields"]["ip"] for e in indexed_stash(tmp_path)] == [dataset.canonical(ip) for ip in ips]
    assert [e["orig_rid"] for e in indexed_stash(tmp_path)] == ["0", "0", "1"]


def test_an_analyst_with_only_the_apps_role_runs_it_adhoc_from_incident_review(app, tmp_path):
    """ES runs an ad hoc adaptive response as the analyst (sendalert in a search of their own, so no
    scheduler sid and no search_name) on the notable's fields, orig_sid/orig_rid and rid included."""
    add_analyst_and_plain_user(app.splunkd)
    assert "edit_tcp" not in app.splunkd.capabilities_of(ANALYST)
    app.settings(alert_indexes="main;security_enrichment")
    ip = dataset.ips(1, status="found", seed=137)[0]
    notable_sid = "scheduler__admin_U0EtVGhyZWF0SW50ZWxsaWdlbmNl__RMD5abc_at_1764201000_42"
    rows = [{"dest": ip, "orig_sid": notable_sid, "orig_rid": "3", "rid": "0",
             "search_name": "Risk - Rare destination"}]
    run = run_alert(app.splunkd, tmp_path, {"field": "dest", "index": "security_enrichment"}, rows,
                    username=ANALYST, sid="1764201700.4242",
                    payload_overrides={"search_name": "", "app": "SplunkEnterpriseSecuritySuite"})
    assert run.returncode == 0, run.stderr
    assert {r.username for r in lookup_requests(app.splunkd)} == {ANALYST}
    [event] = indexed_stash(tmp_path)
    assert (event["index"], event["sourcetype"], event["source"]) == (
        "security_enrichment", alert.SOURCETYPE, "defenderipstats_alert:adhoc")
    assert (event["orig_sid"], event["orig_rid"], event["orig_action_name"]) == (notable_sid, "3", alert.ACTION_NAME)
    fields = event["fields"]
    assert fields["ip"] == dataset.canonical(ip) and fields["status"] == "found" and fields["rid"] == "0"
    assert fields["orig_search_name"] == "Risk - Rare destination" and fields["sid"] == "1764201700.4242"
    assert "search_name" not in fields and fields["orig_owner"] == ANALYST
    statuses = parsed_status(tmp_path)
    assert {(s["action_mode"], s["user"], s["sid"]) for s in statuses} == {("adhoc", ANALYST, "1764201700.4242")}
    assert statuses[-1]["action_status"] == "success"
    assert not app.leaks()


def test_an_index_not_in_alert_indexes_is_refused_and_nothing_is_written(app, tmp_path):
    ip = dataset.ips(1, status="found", seed=149)[0]
    run = run_alert(app.splunkd, tmp_path, {"field": "dest", "index": "notable"}, [{"dest": ip}])
    error = assert_one_clean_error(run, "'notable'", "alert_indexes", "main", "nothing was written")
    assert run.returncode == alert.EXIT_CONFIGURATION and "Traceback" not in run.stderr
    assert stash_files(tmp_path) == []
    assert [r.method for r in lookup_requests(app.splunkd)] == ["GET"]  # the settings only: no lookup spent
    last = parsed_status(tmp_path)[-1]
    assert (last["action_status"], last["signature"], last["_level"]) == ("failure", error, "ERROR")


def test_without_splunk_sa_cim_nothing_is_written(app, tmp_path):
    """Without the add-on that declares stash_common_action_model, splunkd would index the file as text."""
    run = run_alert(app.splunkd, tmp_path, {"field": "dest"}, [{"dest": dataset.ips(1, seed=157)[0]}],
                    with_cim=False)
    assert_one_clean_error(run, "Splunk_SA_CIM", "Nothing was written")
    assert stash_files(tmp_path) == [] and lookup_requests(app.splunkd) == []


def test_status_lines_parse_as_incident_review_reads_them(app, tmp_path):
    ips = dataset.ips(2, status="found", seed=151)
    rows = [{"dest": ips[0]}, {"dest": "intranet"}, {"dest": [ips[0], ips[1]]}]
    run = run_alert(app.splunkd, tmp_path, {"field": "dest"}, rows,
                    payload_overrides={"search_name": 'Rare "destinations" \\ weekly'})
    assert run.returncode == 0, run.stderr
    statuses = parsed_status(tmp_path)  # every line matches the anchored pattern
    assert len(statuses) == 3 + 3 + 1
    for line in statuses:
        assert (line["action_name"], line["app"], line["user"], line["sid"]) == (
            "defenderipstats_alert", "search", "admin", run.sid)
        assert (line["search_name"], line["digest_mode"], line["action_mode"]) == (
            'Rare "destinations" \\ weekly', "1", "saved")
    invoked, done, final = statuses[:3], statuses[3:6], statuses[6]
    assert [(s["signature"], s["rid"]) for s in invoked] == [("Invoking modular action", r) for r in "012"]
    assert all("action_status" not in s for s in invoked)
    assert [(s["rid"], s["action_status"]) for s in done] == [("0", "success"), ("1", "failure"), ("2", "success")]
    assert (final["signature"], final["action_status"], final["event_count"]) == (
        "Successfully created splunk events", "success", "2")
    assert run.session_key not in "\n".join(status_log(tmp_path))  # no session key in the log


def test_per_result_alerting_and_header_values_follow_the_model(tmp_path):
    invocation = cam.Invocation({"sid": "rt_scheduler__admin__search__x_at_1", "result_id": 7,
                                 "results_file": "/d/per_result_alert/tmp_7.csv.gz"}, alert.ACTION_NAME)
    assert (invocation.digest_mode, invocation.action_mode) == (0, "saved")
    assert invocation.ids_of({"rid": "0"}, 0).rid == "7"
    event = cam.stash_event("a", 'x"y', "", "st", cam.kv_raw(1.5, [("error", 'line one\nline "two"'), ("n", None)]))
    assert event == '***Common Action Model*** orig_action_name="a" orig_sid="x_y" sourcetype="st"\n' \
                    '1.500, error="line one line \\"two\\""'
    assert CAM_LINE_BREAKER.search(cam.kv_raw(1.0, [("v", "a" + cam.BREAKER + "b")])) is None  # one event stays one


def test_the_run_function_never_prints_a_traceback_on_unexpected_failures(tmp_path):
    """A bug deep inside (here: a connect() that raises) is one ERROR line and exit 1."""
    path = str(tmp_path / "results.csv.gz")
    write_results(path, [{"dest": "192.0.2.1"}])
    payload = {"session_key": "k", "server_uri": "http://127.0.0.1:1", "results_file": path,
               "configuration": {"field": "dest", "index": "main"}}
    err = io.StringIO()

    def broken_connect(uri, key):
        raise RuntimeError("boom")

    code = alert.run(["x", "--execute"], io.StringIO(json.dumps(payload)), err, broken_connect,
                     splunk_home=str(tmp_path / "splunk_home"))
    assert code == alert.EXIT_FAILED
    assert err.getvalue().splitlines() == ["ERROR Unexpected failure: RuntimeError: boom"]


def test_a_status_log_that_cannot_be_written_is_one_warning_in_splunkd_log(tmp_path):
    home = tmp_path / "splunk_home"
    (home / "var" / "log").mkdir(parents=True)
    (home / "var" / "log" / "splunk").write_text("not a folder")
    path = str(tmp_path / "results.csv.gz")
    write_results(path, [{"dest": "intranet"}])
    payload = {"session_key": "k", "server_uri": "http://127.0.0.1:1", "results_file": path,
               "configuration": {"field": "dest"}}
    err = io.StringIO()
    code = alert.run(["x", "--execute"], io.StringIO(json.dumps(payload)), err, None, splunk_home=str(home))
    lines = err.getvalue().splitlines()
    assert code == alert.EXIT_OK and "Traceback" not in err.getvalue()
    assert lines[-1].startswith("WARN The action's status log: could not write ") and len(lines) == 2, lines
