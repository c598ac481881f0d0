"""The IP investigation dashboard (defenderipstats_ip.xml), checked as far as it can be without Splunk Web:
its searches, with the tokens filled as Simple XML fills them, run against the stand-ins (the base search
is the real command over protocol v2, the post-processes run on its rows with the SPL of tests/support/spl.py)
and return what the events table holds; nothing runs before Submit; hostile input stays one quoted value;
the workflow action and the overview's rare/new tables open it for the clicked IP.
"""

import os
import re
import urllib.parse
import xml.etree.ElementTree as ET

import pytest
from spl import Pipeline, commands, split_args, substitute_tokens, tokens_in
from test_details import day_of, details, seen_ip, ticks

from harness import APP_ROOT
from standins import device_events
from standins.splunkd import parse_conf_file

VIEWS = os.path.join(APP_ROOT, "default", "data", "ui", "views")
VIEW = os.path.join(VIEWS, "defenderipstats_ip.xml")
INTERFACE_OPTIONS = ("ip", "account", "lookbackhours")
HOSTILE = 'x" | outputlookup defenderipstats_cache | eval y="x'


@pytest.fixture
def hunting_app(app):
    app.configure_account(graph_url=app.defender.base_url)
    return app


def root():
    return ET.parse(VIEW).getroot()


def tokens(ip, **extra):
    """The inputs' values as the form holds them after Submit: defaults, and the IP typed in."""
    values = {}
    for item in root().iter("input"):
        default = item.find("default")
        values[item.get("token")] = default.text or "" if default is not None else ""
    values.update(ip=ip, **extra)
    return values


def searches():
    out = {}
    for search in root().iter("search"):
        out[search.get("id") or len(out)] = (search.get("base"), search.findtext("query"))
    return out


def command_args(spl):
    """The arguments splunkd hands the command for ``| defenderipdetails ...``: quotes removed."""
    [(name, text)] = [c for c in commands(spl) if c[0] == "defenderipdetails"]
    out = []
    for arg in split_args(text):
        key, _, value = arg.partition("=")
        if value.startswith('"') and value.endswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out.append("%s=%s" % (key, value))
    return out


def run_dashboard(app, values):
    """Every panel's rows: the base search by the command, each post-process over its rows."""
    found = searches()
    base = substitute_tokens(found["details"][1], values)
    run = details(app, command_args(base))
    pipeline = Pipeline(app.admin, "TA-defender-ipstats", {})
    panels = [pipeline.run(substitute_tokens(query, values).strip(), run.records)
              for key, (parent, query) in found.items() if parent == "details"]
    return run, panels


def test_nothing_runs_before_submit_and_the_navigation_lists_it():
    view = root()
    assert view.get("version") == "1.1" and view.findtext("label") == "IP Investigation"
    fieldsets = view.findall("fieldset")
    assert fieldsets and all(f.get("autoRun") == "false" and f.get("submitButton") == "true" for f in fieldsets)
    assert [i.get("token") for i in view.iter("input") if i.get("searchWhenChanged") != "false"] == []
    nav = ET.parse(os.path.join(APP_ROOT, "default", "data", "ui", "nav", "default.xml")).getroot()
    assert "defenderipstats_ip" in [v.get("name") for v in nav.iter("view")]


def test_every_token_in_spl_is_quoted_and_the_call_is_the_interfaces():
    from defender_ipstats.search.details_command import DefenderIpDetailsCommand

    for _, query in searches().values():
        for name in tokens_in(query):
            assert "s" in name.partition("|")[2].split("|"), "unquoted $%s$ in: %s" % (name, query)
    base = searches()["details"][1]
    for value in ("192.0.2.7", HOSTILE):
        text = substitute_tokens(base, tokens(value))
        assert [c[0] for c in commands(text)] == ["defenderipdetails"]  # a hostile value adds no command
        command = DefenderIpDetailsCommand()
        # as splunklib reads protocol v2's searchinfo.args: one option per argument
        options = dict(command._protocol_v2_option_parser(arg) for arg in command_args(text))
        assert set(options) == set(INTERFACE_OPTIONS) and set(options) <= set(command.options)
        assert options["ip"] == value and options["lookbackhours"] == "720" and options["account"] == ""


def test_the_panels_show_what_the_events_hold(hunting_app):
    app = hunting_app
    ip = seen_ip("v4", seed=520, mapped=True)
    want = device_events.expected_details(ip, 720)
    run, (figures, per_day, devices) = run_dashboard(app, tokens(ip))
    assert run.errors == [] and app.defender.hunting.calls() == 1
    [summary] = figures
    assert (summary["ip"], int(summary["ip_devices"]), ticks(summary["ip_last_seen"])) == \
        (ip, want["ip_devices"], want["last"])
    assert summary["ip_url"] == "https://security.microsoft.com/ip/%s/overview" % ip
    assert [(r["day"], int(r["devices"])) for r in per_day] == [(day_of(k), v) for k, v in want["days"].items()]
    assert [r["device_id"] for r in devices] == [w["device_id"] for w in want["devices"]]
    assert [r["device_url"] for r in devices] == \
        ["https://security.microsoft.com/machines/v2/%s/overview" % w["device_id"] for w in want["devices"]]
    # a hostile IP typed in (or sent as form.ip=...) is one value the command refuses: no query
    run, panels = run_dashboard(app, tokens(HOSTILE))
    assert len(run.errors) == 1 and "ip must be" in run.errors[0] and panels == [[], [], []]
    assert app.defender.hunting.calls() == 1


def test_device_links_go_to_the_portal_and_other_cells_to_the_events():
    view = root()
    links = {c.get("field"): c.findtext("link") for c in view.iter("condition")}
    assert links["device_name"] == links["device_id"] == "$row.device_url|n$"
    events_link = links["*"]
    assert "$row.ip|u$" in events_link and "$row.lookback_hours|u$" in events_link
    assert not [t for t in tokens_in(events_link) if not t.startswith("row.")]  # only the command's results


def test_the_workflow_action_and_the_overviews_tables_open_it():
    action = parse_conf_file(os.path.join(APP_ROOT, "default", "workflow_actions.conf"))["defenderipstats_details"]
    assert action["link.uri"] == "/app/TA-defender-ipstats/defenderipstats_ip?form.ip=$@field_value$"
    assert action["type"] == "link" and "search.search_string" not in action
    overview = ET.parse(os.path.join(VIEWS, "defenderipstats_overview.xml")).getroot()
    opened = []
    for panel in overview.iter("panel"):
        for link in panel.iter("link"):
            target = urllib.parse.urlsplit(link.text)
            if target.path == "/app/TA-defender-ipstats/defenderipstats_ip":
                assert urllib.parse.parse_qs(target.query)["form.ip"] == ["$row.ip|u$"]
                opened.append(panel.findtext("title"))
    assert len(opened) == 2 and "Rare" in opened[0] and "First seen" in opened[1]


def test_the_page_opens_in_a_browser_with_no_console_error(bare_app, tmp_path):
    """Splunk Web renders the panels themselves (not modelled): the page, its label and description and the
    link's IP in the URL, with nothing logged to the console, and a screenshot kept in build/screenshots/."""
    from browser import SCREENSHOTS, headless_chromium

    from standins.splunkweb import SplunkWebStandin

    driver = headless_chromium(window="1280,900", console_log=True)
    web = SplunkWebStandin(bare_app.splunkd, "TA-defender-ipstats", APP_ROOT).start()
    try:
        driver.get(web.base_url + "/en-US/static/app/TA-defender-ipstats/defenderipstats_setup.css")
        for name, value in web.login("admin", "changeme").items():
            driver.add_cookie({"name": name, "value": value, "path": "/"})
        driver.get_log("browser")  # what the page before signing in logged (its redirect to the login) is gone
        driver.get(web.base_url + "/en-US/app/TA-defender-ipstats/defenderipstats_ip?form.ip=203.0.113.7")
        text = driver.find_element("tag name", "body").text
        assert "IP Investigation" in text and "Which devices of the organization" in text, text[:500]
        os.makedirs(SCREENSHOTS, exist_ok=True)
        shot = os.path.join(SCREENSHOTS, "defenderipstats_ip.png")
        assert driver.save_screenshot(shot)
        errors = [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()
        web.stop()
