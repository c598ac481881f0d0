"""What analysts and admins see besides the command: dashboard, navigation, saved searches,
workflow action, search help and the log's sourcetype, checked without a Splunk.

Every view and the navigation parse; every SPL string in them, in savedsearches.conf, in
workflow_actions.conf and in searchbnf.conf's examples parses into commands with balanced quotes
and brackets, and each call of defenderipstats goes through the command's own option parser
(splunklib's CommandLineParser on DefenderIpStatsCommand) and ``Options.resolve``. Runs on the
repository or, with DEFENDERIPSTATS_APP_ROOT, on an unpacked package.
"""

import json
import os
import re
import xml.etree.ElementTree as ET

import pytest
import splunklog
from spl import commands, expand_macros, pipeline, split_args, substitute_tokens, tokens_in

from defender_ipstats.core.errors import ConfigurationError
from defender_ipstats.core.options import Options
from defender_ipstats.core.settings import Settings
from harness import APP_ROOT, events
from standins import dataset
from standins.splunkd import parse_conf_file

COMMAND = "defenderipstats"
# The interface's options (../shared/reference/interface.md); splunklib adds its own
# (logging_level, record, ...), which the app's searches never use.
INTERFACE_OPTIONS = ("field", "lookbackhours", "account", "prefix", "cache", "maxwait", "backend")
VIEWS = os.path.join(APP_ROOT, "default", "data", "ui", "views")
NAV = os.path.join(APP_ROOT, "default", "data", "ui", "nav", "default.xml")
BUILTIN_VIEWS = {"search", "reports", "alerts", "dashboards", "datasets", "analytics_workspace", "home"}
# Values for dashboard inputs that have no default (the analyst must type them).
SAMPLE_INPUTS = {"base": "index=proxy dest_ip=*", "account": "contoso", "ip": "192.0.2.7"}
# Tokens that are not quoted on purpose: the analyst's own base search, and the time picker's.
UNQUOTED_TOKENS = ("base", "time.earliest", "time.latest")
# Crafted input values (a link with form.<token>=...): as plain text, and breaking out of a quote.
HOSTILE = "x | outputlookup defenderipstats_cache"
HOSTILE_QUOTED = 'x" | outputlookup defenderipstats_cache | eval y="x'



def conf(name):
    return parse_conf_file(os.path.join(APP_ROOT, "default", name + ".conf"))


def check_call(args_text: str) -> Options:
    """Parses a call's arguments exactly as the command does at run time."""
    from splunklib.searchcommands.internals import CommandLineParser

    from defender_ipstats.search.command import DefenderIpStatsCommand

    args = split_args(args_text)
    names = [a.split("=", 1)[0] for a in args if "=" in a]
    unknown = [n for n in names if n not in INTERFACE_OPTIONS]
    assert not unknown, "options not in the interface: %s" % unknown
    command = DefenderIpStatsCommand()
    CommandLineParser.parse(command, args)  # raises for unknown options, a missing field=
    assert not command.fieldnames, "positional arguments are not options: %s" % command.fieldnames
    return Options.resolve(command._raw_options(), Settings())


def calls(spl: str):
    return [args for name, args in commands(spl) if name == COMMAND]


# -- the option checker itself ----------------------------------------------------------------------
@pytest.mark.parametrize("bad", [
    "| makeresults | defenderipstats",                       # no field
    "| makeresults | defenderipstats field=ip cache=maybe",
    "| makeresults | defenderipstats field=ip lookbackhours=721",
    "| makeresults | defenderipstats field=ip maxwiat=5",     # misspelt option
    "| makeresults | defenderipstats field=ip dest_ip",       # positional argument
    "| makeresults | defenderipstats field=ip backend=graph",
])
def test_the_checker_rejects_bad_calls(bad):
    [args] = calls(bad)
    with pytest.raises((ValueError, AssertionError, ConfigurationError)):
        check_call(args)


def test_the_checker_finds_calls_in_subsearches_and_quotes():
    spl = ('| makeresults | eval x="a | defenderipstats field=nope" '
           '| append [| makeresults | defenderipstats field=ip prefix="d_"]')
    assert calls(spl) == ['field=ip prefix="d_"']
    assert check_call(calls(spl)[0]).prefix == "d_"


# -- views and navigation -------------------------------------------------------------------------
def view_files():
    return sorted(os.path.join(VIEWS, f) for f in os.listdir(VIEWS) if f.endswith(".xml"))


def test_there_is_a_dashboard_and_the_navigation_opens_on_it():
    names = {os.path.splitext(os.path.basename(p))[0] for p in view_files()}
    assert "defenderipstats_overview" in names
    nav = ET.parse(NAV).getroot()
    assert nav.tag == "nav"
    views = nav.findall(".//view")
    defaults = [v.get("name") for v in views if v.get("default") == "true"]
    assert defaults == ["defenderipstats_overview"]
    for view in views:
        assert view.get("name") in names | BUILTIN_VIEWS, view.get("name")
    app_conf = conf("app")
    assert app_conf["ui"]["is_visible"] in ("1", "true")


def inputs_of(root):
    tokens = {}
    for item in root.iter("input"):
        token = item.get("token")
        default = item.find("default")
        if item.get("type") == "time":
            earliest = default.find("earliest").text if default is not None else "-24h"
            latest = default.find("latest").text if default is not None else "now"
            tokens[token + ".earliest"], tokens[token + ".latest"] = earliest, latest
        elif default is not None and default.text is not None:
            tokens[token] = default.text
        else:
            tokens[token] = SAMPLE_INPUTS[token]
    return tokens


def searches_of(root):
    """(id or None, base id or None, query text, element) of every search of a view."""
    out = []
    for search in root.iter("search"):
        query = search.find("query")
        out.append((search.get("id"), search.get("base"), (query.text or "") if query is not None else "", search))
    return out


@pytest.mark.parametrize("path", view_files(), ids=os.path.basename)
def test_every_view_parses_and_its_searches_are_valid(path):
    root = ET.parse(path).getroot()  # well-formed XML
    assert root.tag in ("form", "dashboard")
    assert root.get("version") in ("1.1", "2"), "Splunk Cloud accepts Simple XML version 1.1 only"
    assert (root.findtext("label") or "").strip()
    tokens = inputs_of(root)
    searches = searches_of(root)
    ids = {sid: query for sid, _, query, _ in searches if sid}
    for asset in [a.strip() for a in (root.get("script") or "").split(",") + (root.get("stylesheet") or "").split(",")
                  if a.strip()]:
        assert os.path.isfile(os.path.join(APP_ROOT, "appserver", "static", asset)), asset
    assert searches or root.get("script"), "a dashboard without searches (only a scripted page may have none)"
    command_calls = 0
    for _sid, base, query, element in searches:
        assert query.strip(), "a search without a query"
        full = query
        if base is not None:
            assert base in ids, "post-process of an unknown base search %s" % base
            full = ids[base] + "\n" + query
        text = substitute_tokens(full, tokens)  # KeyError: a token no input defines
        assert pipeline(text)  # balanced quotes and brackets, no empty command
        for args in calls(text):
            check_call(args)
            command_calls += 1
        for child in ("earliest", "latest"):
            if element.find(child) is not None:
                substitute_tokens(element.findtext(child), tokens)
    for title in root.iter("title"):
        substitute_tokens(title.text or "", tokens)
    if os.path.basename(path) == "defenderipstats_overview.xml":
        assert command_calls >= 1


@pytest.mark.parametrize("path", view_files(), ids=os.path.basename)
def test_every_token_that_reaches_spl_is_quoted(path):
    root = ET.parse(path).getroot()
    tokens = inputs_of(root)
    searches = searches_of(root)
    ids = {sid: query for sid, _, query, _ in searches if sid}
    for _sid, base, query, _element in searches:
        for name in tokens_in(query):
            token, _, filters = name.partition("|")
            assert token in UNQUOTED_TOKENS or "s" in filters.split("|"), "unquoted $%s$ in: %s" % (name, query)
        full = (ids[base] + "\n" + query) if base else query
        # A hostile value (a crafted form.field=... link) stays one string: the same commands run.
        for value in (HOSTILE, HOSTILE_QUOTED):
            hostile = {k: (v if k in UNQUOTED_TOKENS else value) for k, v in tokens.items()}
            assert [c[0] for c in commands(substitute_tokens(full, hostile))] == \
                [c[0] for c in commands(substitute_tokens(full, tokens))]


def test_the_dashboard_has_the_panels_analysts_need():
    root = ET.parse(os.path.join(VIEWS, "defenderipstats_overview.xml")).getroot()
    text = ET.tostring(root, encoding="unicode")
    titles = " | ".join(t.text or "" for t in root.iter("title"))
    assert "1,500" in titles and "100" in titles          # budget against both limits
    assert "hit rate" in titles.lower() and "cache size" in titles.lower()
    assert "rare" in titles.lower() and "first seen" in titles.lower()
    assert "sourcetype=defenderipstats:log request=lookup" in text and "inputlookup defenderipstats_cache" in text
    assert "api_calls=*" not in text  # the figures come from the service's usage lines, not any key=value
    assert "$base$" in text and "$field|s$" in text       # built on the analyst's own search
    # Both APIs' budgets: per-IP calls against 100/min and 1,500/h, hunting calls against theirs.
    assert "sum(hunting_calls)" in text and "45" in titles and "hunting" in titles.lower()
    # The cache warmer's runs: the scheduler's log joined with the command's summary by sid.
    assert "Cache warmer" in titles and 'savedsearch_name="Defender IP stats - Cache warmer"' in text


# -- saved searches, workflow action, search help ----------------------------------------------------
def test_saved_searches_are_valid_and_the_alerts_ship_disabled():
    saved = conf("savedsearches")
    alerts = [name for name, stanza in saved.items() if stanza.get("alert.track") in ("1", "true")]
    assert len(alerts) == 2
    for name in alerts:
        assert saved[name]["disabled"] in ("1", "true"), name
    rare = next(saved[n]["search"] for n in alerts if "Rare" in n)
    assert "defender_prevalence <= 3" in rare
    new = next(saved[n]["search"] for n in alerts if "first seen" in n)
    assert 'relative_time(now(), "-24h")' in new
    total = 0
    macros = conf("macros")
    for name, stanza in saved.items():
        if "search" not in stanza:
            continue
        search = expand_macros(stanza["search"], macros)  # KeyError: a macro macros.conf lacks
        assert pipeline(search), name
        assert "index=*" not in search.replace(" ", "") or name in alerts, name  # new searches use the macro
        for args in calls(search):
            check_call(args)
            total += 1
        if stanza.get("enableSched") in ("1", "true"):
            assert stanza.get("dispatch.earliest_time") and stanza.get("dispatch.latest_time"), name
            assert len(stanza["cron_schedule"].split()) == 5, name
    assert total == 5  # the two example alerts, the cache warmer, the two risk searches


def test_every_macro_is_valid_spl():
    macros = conf("macros")
    assert macros
    for name in macros:
        assert pipeline(expand_macros("`%s`" % name, macros)), name


# -- the cache warmer -------------------------------------------------------------------------------
WARMER = "Defender IP stats - Cache warmer"
DESTINATIONS = "defenderipstats_destinations"


def test_the_cache_warmer_ships_disabled_and_spends_only_the_hunting_budget():
    stanza = conf("savedsearches")[WARMER]
    assert stanza["disabled"] in ("1", "true") and stanza["enableSched"] in ("1", "true")
    assert pipeline(stanza["search"])[0].strip() == "search `%s`" % DESTINATIONS
    # An hourly run over the previous full hour: every destination is seen by exactly one run.
    minute, hour, *_ = stanza["cron_schedule"].split()
    assert minute.isdigit() and hour == "*"
    assert (stanza["dispatch.earliest_time"], stanza["dispatch.latest_time"]) == ("-1h@h", "@h")
    [args] = calls(expand_macros(stanza["search"], conf("macros")))
    options = check_call(args)
    # backend=hunting: the per-IP endpoint's 100/min and 1,500/h stay whole for interactive searches.
    assert options.backend == "hunting"
    assert options.cache == "use"
    assert options.field == "dest"
    assert "| tstats" in conf("macros")[DESTINATIONS]["definition"]
    assert "datamodel=Network_Traffic" in conf("macros")[DESTINATIONS]["definition"]


def test_the_warmers_own_command_call_makes_no_per_ip_call(app):
    """The warmer's defenderipstats arguments, exactly as savedsearches.conf has them, on cold IPs."""
    app.configure_account(graph_url=app.defender.base_url)
    [args] = calls(expand_macros(conf("savedsearches")[WARMER]["search"], conf("macros")))
    ips = dataset.ips(60, seed=151)
    rows = [{"dest": ip, "connections": "3", "sources": "1"} for ip in ips]
    run = app.search(split_args(args), [rows])
    assert run.returncode == 0, run.stderr
    assert app.defender.api_calls() == 0 and app.defender.hunting.calls() >= 1
    assert {r["defender_source"] for r in run.records} == {"hunting"}
    [line] = [line for line in app.log_text().splitlines() if " defender_ipstats - sid=" in line]
    summary = dict(re.findall(r"(\w+)=(\S+)", line))
    assert summary["api_calls"] == "0" and int(summary["hunting_calls"]) >= 1 and summary["distinct_ips"] == "60"


# -- risk-based alerting for Enterprise Security ------------------------------------------------------
RISK = ("Defender IP stats - Risk - Rare destination", "Defender IP stats - Risk - New rare destination")


def es_risk_message(template, row):
    """ES's risk action fills the message per result row: each ``$field$`` token takes that row's
    value (a missing field gives an empty string). splunkd's own ``$result.<field>$`` tokens are
    filled from the FIRST row before the action runs, so they must not appear."""
    return re.sub(r"\$([A-Za-z0-9_.]+)\$", lambda m: str(row.get(m.group(1), "")), template)


@pytest.mark.parametrize("name", RISK)
def test_risk_searches_ship_disabled_in_the_form_current_es_reads(name):
    stanza = conf("savedsearches")[name]
    assert stanza["disabled"] in ("1", "true") and stanza["enableSched"] in ("1", "true")
    assert stanza["action.risk"] == "1" and stanza["action.correlationsearch.enabled"] == "1"
    assert stanza["action.correlationsearch.label"] == name
    [risk] = json.loads(stanza["action.risk.param._risk"])
    assert (risk["risk_object_field"], risk["risk_object_type"]) == ("dest", "system")
    assert isinstance(risk["risk_score"], int) and 0 < risk["risk_score"] <= 100
    # The per-object score is the one ES uses; the stanza's own score stays 0 as in ES content.
    assert stanza["action.risk.param._risk_score"] == "0"
    assert not [k for k in stanza if k in ("action.risk.param._risk_object", "action.risk.param._risk_object_type")]
    annotations = json.loads(stanza["action.correlationsearch.annotations"])
    assert annotations["mitre_attack"] and annotations["analytic_story"]
    metadata = json.loads(stanza["action.correlationsearch.metadata"])
    assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", metadata["detection_id"])
    search = expand_macros(stanza["search"], conf("macros"))
    assert pipeline(stanza["search"])[0].strip() == "search `%s`" % DESTINATIONS
    [args] = calls(search)
    assert check_call(args).field == "dest"
    assert "defender_prevalence <= 3" in search
    # The message's $field$ tokens are fields the search's last command keeps.
    message = stanza["action.risk.param._risk_message"]
    assert "$result." not in message
    last_name, last_args = commands(search)[-1]
    assert last_name == "table"
    kept = {f.strip() for f in last_args.split(",")}
    tokens = re.findall(r"\$([A-Za-z0-9_.]+)\$", message)
    assert "dest" in tokens and "defender_prevalence" in tokens and set(tokens) <= kept
    if "New" in name:
        assert 'relative_time(now(), "-24h")' in search and "first_seen_hours_ago" in tokens
    # A run with several rare destinations: each risk event tells its own row's figures.
    rows = [{field: "%s-%d" % (field, i) for field in kept} for i in range(3)]
    rows = [dict(row, dest="192.0.2.%d" % (10 + i), defender_prevalence=str(i + 1)) for i, row in enumerate(rows)]
    messages = [es_risk_message(message, row) for row in rows]
    assert len(set(messages)) == 3
    for row, text in zip(rows, messages):
        assert "$" not in text
        for field in tokens:
            assert row[field] in text
        others = [r["dest"] for r in rows if r is not row]
        assert not any(other in text for other in others)


def test_workflow_action_opens_the_dashboard_with_the_value_as_a_token():
    actions = conf("workflow_actions")
    action = actions["defenderipstats_lookup"]
    assert action["label"] == "Defender IP statistics"
    assert action["type"] == "link" and "search.search_string" not in action
    patterns = [re.compile(f.strip().replace("*", ".*")) for f in action["fields"].split(",")]
    for name in ("ip", "src_ip", "dest_ip", "RemoteIP", "clientip", "src", "dest"):
        assert any(p.fullmatch(name) for p in patterns), name
    assert not any(p.fullmatch("user") or p.fullmatch("host") for p in patterns)
    # Splunk URL-encodes $@field_value$ in link.uri ($!...$ would not): the value arrives as form.ip.
    assert action["link.uri"] == "/app/TA-defender-ipstats/defenderipstats_overview?form.ip=$@field_value$"
    root = ET.parse(os.path.join(VIEWS, "defenderipstats_overview.xml")).getroot()
    assert [i for i in root.iter("input") if i.get("token") == "ip"]
    one_ip = [q for _, _, q, _ in searches_of(root) if "$ip|s$" in q]
    assert len(one_ip) == 1
    [args] = calls(substitute_tokens(one_ip[0], dict(inputs_of(root), ip=HOSTILE)))
    assert check_call(args).field == "ip"


def test_search_help_shows_every_option_with_examples():
    bnf = conf("searchbnf")
    main = bnf["defenderipstats-command"]
    examples = {k: v for k, v in main.items() if re.fullmatch(r"example\d+", k)}
    assert examples and all(main.get("comment" + k[len("example"):]) for k in examples)
    used = set()
    for text in examples.values():
        assert pipeline(text.replace("...", "search *"))
        for args in calls(text.replace("...", "search *")):
            options = check_call(args)
            used.update(a.split("=", 1)[0] for a in split_args(args))
            assert options
    assert used == set(INTERFACE_OPTIONS)
    for option in INTERFACE_OPTIONS:
        stanza = bnf["defenderipstats-%s-option" % option]
        assert stanza["syntax"].startswith(option + "=")
        assert stanza["description"].strip()
        assert "<defenderipstats-%s-option>" % option in main["syntax"]
        assert option + "=" in main["simplesyntax"]


# -- the app's log, as Splunk will index it -----------------------------------------------------------
def test_props_cut_and_extract_the_real_log(app):
    ips = dataset.ips(3, status="found", seed=81)
    run = app.search(["field=src_ip"], [events(ips)])
    assert run.returncode == 0, run.stderr
    log = app.log_text()
    props = conf("props")
    assert props["source::...defenderipstats.log*"]["sourcetype"] == "defenderipstats:log"
    sourcetype = props["defenderipstats:log"]
    records = splunklog.events(log, sourcetype)
    assert records and len(records) == len(re.findall(r"^\d{4}-\d\d-\d\d ", log, re.M))
    extract = re.compile(splunklog.pcre_to_python(sourcetype["EXTRACT-defenderipstats_level_pid"]))
    stamp = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}")
    for record in records:
        assert stamp.match(record[:int(sourcetype["MAX_TIMESTAMP_LOOKAHEAD"])]), record
        assert extract.search(record.splitlines()[0]), record
    assert sourcetype["KV_MODE"] == "none"  # only the anchored patterns make fields
    extracted = [splunklog.fields(r, sourcetype) for r in records]
    summary = [f for f in extracted if "events" in f]
    usage = [f for f in extracted if f.get("request") == "lookup"]
    assert len(summary) == 1 and len(usage) == 1, records
    # Every field the dashboard reads from the log is extracted from the summary or the usage line.
    dashboard = open(os.path.join(VIEWS, "defenderipstats_overview.xml"), encoding="utf-8").read()
    for field in ("cache_hits", "rate_limited", "errors", "waited_s", "account", "distinct_ips"):
        assert field in dashboard and field in summary[0], field
    for field in ("api_calls", "hunting_calls", "throttled", "cache_writes", "user", "account"):
        assert field in dashboard and field in usage[0], field
    assert (summary[0]["api_calls"], summary[0]["account"], summary[0]["events"]) == ("3", "contoso", "3")
    assert (usage[0]["api_calls"], usage[0]["user"], usage[0]["outcome"]) == ("3", "admin", "ok")
