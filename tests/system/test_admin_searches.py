"""What is the admins' stays the admins': the shipped searches that write, the app's own defaults,
the command's risk flag, the dashboard's Submit, and no role the app has no business creating.

Checked against the splunkd stand-in as splunkd checks a saved search (read access lists and
dispatches it; anyone else is told it does not exist), and on the shipped files.
"""

import json
import os
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import pytest
from restcalls import call

from harness import ACCOUNT, APP, APP_ROOT, events, expected_fields
from standins import dataset
from standins.splunkd import parse_conf_file
from users import ANALYST, ANALYST_PW, PLAIN, PLAIN_PW, add_analyst_and_plain_user

WRITING = ("Defender IP stats - Purge expired cache entries",
           "Defender IP stats - Purge expired restricted cache entries",
           "Defender IP stats - Rebuild the published lookup", "Defender IP stats - Cache warmer")
EXAMPLE = "Defender IP stats - Rare destination (prevalence 3 or less)"


@pytest.fixture
def users_app(app):
    add_analyst_and_plain_user(app.splunkd)
    return app


def _saved(name=""):
    return "/servicesNS/nobody/%s/saved/searches%s" % (APP, "/" + urllib.parse.quote(name, safe="") if name else "")


def _listed(app, user, password):
    status, body = call(app, user, password, "GET", _saved(), count="0")
    assert status == 200, body
    return {entry["name"] for entry in json.loads(body)["entry"]}


@pytest.mark.parametrize("user,password", [(ANALYST, ANALYST_PW), (PLAIN, PLAIN_PW)])
def test_a_user_can_neither_see_nor_run_the_searches_that_write(users_app, user, password):
    app = users_app
    listed = _listed(app, user, password)
    assert EXAMPLE in listed  # the example alerts stay every user's
    assert not listed & set(WRITING)
    for name in WRITING:
        assert call(app, user, password, "GET", _saved(name))[0] == 404
        status, body = call(app, user, password, "POST", _saved(name) + "/dispatch")
        assert status == 404 and "Could not find object" in body, (name, status, body)
    assert not [job for job in app.splunkd._jobs.values() if job.get("savedsearch") in WRITING]


def test_the_admin_sees_and_runs_them(users_app):
    app = users_app
    assert set(WRITING) <= _listed(app, "admin", "changeme")
    for name in WRITING:
        status, body = call(app, "admin", "changeme", "POST", _saved(name) + "/dispatch")
        assert status == 201 and json.loads(body)["sid"], body


def test_a_foreign_default_stanza_disables_no_account(users_app):
    app = users_app
    app.splunkd.add_app("other_app")
    app.splunkd.set_conf("defenderipstats_accounts", "default", app="other_app", layer="default", disabled="1",
                         timeout="1", auth="certificate")
    app.splunkd.set_meta("other_app", "", export="system")
    ips = dataset.ips(2, status="found", seed=181)
    run = app.search(["field=src_ip", "backend=ipstats"], [events(ips)], username=ANALYST)
    assert run.returncode == 0 and run.errors == [], run.errors
    for record, ip in zip(run.records, ips):
        assert {k: record[k] for k in expected_fields(ip)} == expected_fields(ip)
    # every key an account reads is set by the app's own [default], so no other app's fills it in
    shipped = parse_conf_file(os.path.join(APP_ROOT, "default", "defenderipstats_accounts.conf"))["default"]
    assert shipped["disabled"] == "0"
    assert app.splunkd.conf("defenderipstats_accounts", ACCOUNT)["disabled"] == "0"


def test_the_command_is_marked_risky():
    commands = parse_conf_file(os.path.join(APP_ROOT, "default", "commands.conf"))
    assert commands["defenderipstats"]["is_risky"] == "true"


def test_the_dashboard_runs_nothing_before_submit():
    root = ET.parse(os.path.join(APP_ROOT, "default", "data", "ui", "views", "defenderipstats_overview.xml")).getroot()
    fieldsets = root.findall("fieldset")
    assert fieldsets and all(f.get("autoRun", "false") == "false" for f in fieldsets)
    # no input runs a search on change either: a link's form.<token>=... waits for Submit
    assert [i.get("token") for i in root.iter("input") if i.get("searchWhenChanged") == "true"] == []


def test_no_sc_admin_role_is_created_on_enterprise(app):
    authorize = parse_conf_file(os.path.join(APP_ROOT, "default", "authorize.conf"))
    roles = sorted(name for name in authorize if name.startswith("role_"))
    assert roles == ["role_admin", "role_defenderipstats_user"]
    assert "sc_admin" not in app.splunkd.roles  # the stand-in builds its roles from authorize.conf
    readme = open(os.path.join(APP_ROOT, "README.md"), encoding="utf-8").read()
    assert "sc_admin" in readme and "defenderipstats_admin" in readme
