"""The published lookup, ``| lookup defenderipstats``: one row per IP, default account and look-back,
no API call.

``published.publish`` (called by the privileged service with its system session) is run here
directly against the splunkd stand-in's KV store; the README's lookup SPL and the hourly rebuild
search run through tests/support/spl.py's pipeline against the same KV store.
"""

import os
import time

import pytest
from spl import app_pipeline, commands, pipeline

from defender_ipstats.core.model import ERROR, FOUND, NOT_SEEN, RATE_LIMITED, IpStats
from defender_ipstats.core.settings import Settings
from defender_ipstats.splunk import published
from defender_ipstats.splunk.kvcache import cache_key
from defender_ipstats.splunk.rest import connect
from harness import APP, APP_ROOT
from standins.splunkd import parse_conf_file

REBUILD = "Defender IP stats - Rebuild the published lookup"
CACHE = "defenderipstats_cache"
PUBLISHED = "defenderipstats_published"
README_LOOKUP = "| lookup defenderipstats ip AS dest_ip OUTPUT prevalence first_seen last_seen status"


def conf(name):
    return parse_conf_file(os.path.join(APP_ROOT, "default", name + ".conf"))


def make_pipeline(service, clock=time.time):
    return app_pipeline(service, APP, conf("transforms"), conf("collections"), clock=clock)


def settings(account="acme", hours=720):
    return Settings.from_conf({"default_account": account, "lookback_hours": str(hours)})


def stats(ip, status=FOUND, prevalence=2, fetched_at=None, source="hunting"):
    return IpStats(ip=ip, status=status, prevalence=prevalence if status == FOUND else 0,
                   first_seen="2026-11-30T10:00:00Z" if status == FOUND else None,
                   last_seen="2026-12-01T10:00:00Z" if status == FOUND else None,
                   source=source, fetched_at=fetched_at or time.time())


@pytest.fixture
def system(splunkd):
    """What the privileged service holds: a splunklib Service with splunkd's system session."""
    published.forget()
    return connect(splunkd.base_url, splunkd.new_session_key(splunkd.system_user))


def published_rows(splunkd):
    return {doc["_key"]: doc for doc in splunkd.kv_documents(PUBLISHED, app=APP)}


# -- publish() -----------------------------------------------------------------------------------
def test_publish_writes_one_row_per_ip_for_the_default_account_and_lookback_only(splunkd, system):
    answers = [stats("192.0.2.1"), stats("2001:db8::1"), stats("192.0.2.2", NOT_SEEN),
               IpStats(ip="192.0.2.3", status=ERROR, error="boom"),
               IpStats(ip="192.0.2.4", status=RATE_LIMITED, error="later")]
    assert published.publish(system, answers, "acme", 720, settings()) == 3
    rows = published_rows(splunkd)
    assert set(rows) == {"192.0.2.1", "2001:db8::1", "192.0.2.2"}  # errors are never published
    assert rows["192.0.2.1"]["prevalence"] == 2 and rows["192.0.2.1"]["status"] == FOUND
    assert rows["192.0.2.2"]["status"] == NOT_SEEN
    assert {row["account"] for row in rows.values()} == {"acme"}

    # Another account, another look-back: not what the lookup publishes.
    assert published.publish(system, [stats("198.51.100.9")], "subsidiary", 720, settings()) == 0
    assert published.publish(system, [stats("198.51.100.9")], "acme", 24, settings()) == 0
    assert "198.51.100.9" not in published_rows(splunkd)

    # The same IP again: replaced, never duplicated.
    assert published.publish(system, [stats("192.0.2.1", prevalence=7)], "acme", 720, settings()) == 1
    rows = published_rows(splunkd)
    assert len(rows) == 3 and rows["192.0.2.1"]["prevalence"] == 7


def test_a_hunting_answer_never_replaces_a_fresh_ipstats_row(splunkd, system):
    now = time.time()
    published.publish(system, [stats("192.0.2.1", prevalence=35233, source="api"),
                               stats("192.0.2.2", prevalence=9000, source="api", fetched_at=now - 90000)],
                      "acme", 720, settings())
    published.publish(system, [stats("192.0.2.1", prevalence=1), stats("192.0.2.2", prevalence=4),
                               stats("192.0.2.3", prevalence=1)], "acme", 720, settings())
    rows = published_rows(splunkd)
    assert rows["192.0.2.1"]["prevalence"] == 35233 and rows["192.0.2.1"]["basis"] == "ipstats"
    # an ipstats row past cache_ttl no longer holds its place; a new IP gets the hunting figure
    assert (rows["192.0.2.2"]["prevalence"], rows["192.0.2.2"]["basis"]) == (4, "hunting")
    assert rows["192.0.2.3"]["basis"] == "hunting"
    published.publish(system, [stats("192.0.2.3", prevalence=12, source="api")], "acme", 720, settings())
    assert published_rows(splunkd)["192.0.2.3"]["basis"] == "ipstats"


def test_a_changed_default_removes_the_old_defaults_rows_on_the_first_write(splunkd, system):
    published.publish(system, [stats("192.0.2.1"), stats("192.0.2.2")], "acme", 720, settings("acme"))
    published.publish(system, [stats("192.0.2.3")], "newco", 720, settings("newco"))
    assert set(published_rows(splunkd)) == {"192.0.2.3"}
    published.publish(system, [stats("192.0.2.4")], "newco", 168, settings("newco", 168))
    assert set(published_rows(splunkd)) == {"192.0.2.4"}
    assert published_rows(splunkd)["192.0.2.4"]["lookback_hours"] == 168


def test_the_lookup_and_its_collection_are_shared_with_every_app_and_written_by_admins_only():
    meta = parse_conf_file(os.path.join(APP_ROOT, "metadata", "default.meta"))
    for stanza in ("transforms/defenderipstats", "collections/%s" % PUBLISHED):
        assert meta[stanza]["export"] == "system"
        # the same readers as the cache it publishes: the roles that run the command
        assert meta[stanza]["access"].replace(" ", "") == \
            "read:[admin,sc_admin,defenderipstats_user],write:[admin,sc_admin]"


def test_only_admin_roles_write_the_published_collection_and_the_commands_roles_read_it(splunkd, system):
    published.publish(system, [stats("192.0.2.1")], "acme", 720, settings())
    splunkd.add_user("analyst", "pw", roles=["defenderipstats_user"])
    analyst = connect(splunkd.base_url, splunkd.new_session_key("analyst"))
    from splunklib import binding

    with pytest.raises(binding.HTTPError) as refused:
        published.publish(analyst, [stats("192.0.2.66")], "acme", 720, settings())
    assert refused.value.status == 403
    looked_up = make_pipeline(analyst).run(README_LOOKUP, [{"dest_ip": "192.0.2.1"}])
    assert looked_up[0]["prevalence"] == "2"
    splunkd.add_user("plain", "pw", roles=["user"])
    with pytest.raises(binding.HTTPError) as hidden:  # a role that does not run the command reads nothing
        make_pipeline(connect(splunkd.base_url, splunkd.new_session_key("plain"))).run(
            README_LOOKUP, [{"dest_ip": "192.0.2.1"}])
    assert hidden.value.status in (403, 404)


# -- the lookup as the README shows it ------------------------------------------------------------
def test_the_readme_lookup_answers_one_row_per_ip_without_an_api_call(splunkd, system, defender):
    published.publish(system, [stats("192.0.2.1", prevalence=3), stats("2001:db8::1", prevalence=40),
                               stats("192.0.2.2", NOT_SEEN)], "acme", 720, settings())
    # Cache rows of other accounts and look-backs for the same IP do not reach the lookup.
    splunkd.kv_insert(CACHE, [
        {"_key": cache_key(account, hours, "ipstats", "192.0.2.1"), "ip": "192.0.2.1", "account": account,
         "lookback_hours": hours, "status": FOUND, "prevalence": 999, "fetched_at": time.time()}
        for account, hours in (("acme", 24), ("subsidiary", 720))], app=APP)
    readme = open(os.path.join(APP_ROOT, "README.md"), encoding="utf-8").read()
    assert README_LOOKUP in readme
    events = [{"dest_ip": "192.0.2.1"}, {"dest_ip": "2001:DB8::1"}, {"dest_ip": "192.0.2.2"},
              {"dest_ip": "203.0.113.5"}, {"other": "x"}]
    out = make_pipeline(connect(splunkd.base_url, splunkd.new_session_key("admin"))).run(README_LOOKUP, events)
    assert [row.get("prevalence") for row in out] == ["3", "40", "0", None, None]
    assert [row.get("status") for row in out] == [FOUND, FOUND, NOT_SEEN, None, None]
    assert out[0]["first_seen"] == "2026-11-30T10:00:00Z" and out[0]["last_seen"] == "2026-12-01T10:00:00Z"
    assert defender.api_calls() == 0


def test_the_lookup_interpreter_would_show_duplicates():
    """The check above is worth something only if duplicate rows would show: one IP twice in the
    lookup comes out as a multivalue field, as Splunk's lookup does."""
    class Table:
        def get(self, path, **_):
            import io
            import json

            class Response:
                body = io.BytesIO(json.dumps([{"ip": "192.0.2.1", "prevalence": 1},
                                              {"ip": "192.0.2.1", "prevalence": 999}]).encode())
            return Response()

    out = make_pipeline(Table()).run(README_LOOKUP, [{"dest_ip": "192.0.2.1"}])
    assert out[0]["prevalence"] == ["1", "999"]


# -- the hourly rebuild --------------------------------------------------------------------------
def rebuild_search():
    return conf("savedsearches")[REBUILD]["search"]


def test_the_rebuild_is_an_enabled_scheduled_search_without_api_calls():
    stanza = conf("savedsearches")[REBUILD]
    assert stanza.get("disabled", "0") in ("0", "false") and stanza["enableSched"] in ("1", "true")
    top = pipeline(rebuild_search())
    assert top[0].split() == ["inputlookup", CACHE]
    assert top[-1].split()[0] == "outputlookup" and top[-1].split()[-1] == "defenderipstats"
    assert "defenderipstats" not in [name for name, _ in commands(rebuild_search())]


def cache_doc(account, hours, ip, status=FOUND, prevalence=5, age=60.0, now=None, basis="ipstats"):
    return {"_key": cache_key(account, hours, basis, ip), "ip": ip, "account": account, "lookback_hours": hours,
            "status": status, "prevalence": prevalence, "first_seen": "2026-11-01T00:00:00Z",
            "last_seen": "2026-12-01T00:00:00Z", "source": "api" if basis == "ipstats" else "hunting",
            "basis": basis, "fetched_at": (now or time.time()) - age}


def test_rebuild_publishes_the_fresh_entries_of_the_current_default(app):
    now = time.time()
    app.settings(default_account="acme", lookback_hours="720", cache_ttl="7200", not_seen_ttl="600")
    app.splunkd.kv_insert(CACHE, [
        cache_doc("acme", 720, "192.0.2.1", now=now),
        cache_doc("acme", 720, "192.0.2.2", NOT_SEEN, 0, age=300, now=now),
        cache_doc("acme", 720, "192.0.2.3", NOT_SEEN, 0, age=700, now=now),     # expired (600 s)
        cache_doc("acme", 720, "192.0.2.4", age=8000, now=now),                 # expired (7200 s)
        cache_doc("acme", 24, "192.0.2.1", prevalence=1, now=now),              # other look-back
        cache_doc("subsidiary", 720, "192.0.2.1", prevalence=77, now=now),      # other account
        cache_doc("subsidiary", 720, "192.0.2.9", now=now),
        dict(cache_doc("acme", 720, "192.0.2.5", now=now), status="error"),
    ], app=APP)
    app.splunkd.kv_insert(PUBLISHED, [{"_key": "203.0.113.7", "ip": "203.0.113.7", "account": "old",
                                       "lookback_hours": 720, "status": FOUND, "prevalence": 1,
                                       "fetched_at": now}], app=APP)
    run = make_pipeline(app.admin, clock=lambda: now)
    run.run(rebuild_search())
    assert run.trace.count("rest") == 4
    rows = published_rows(app.splunkd)
    assert set(rows) == {"192.0.2.1", "192.0.2.2"}
    assert rows["192.0.2.1"]["prevalence"] == 5 and rows["192.0.2.1"]["account"] == "acme"
    assert rows["192.0.2.2"]["status"] == NOT_SEEN

    # The admin changes the default account: the next rebuild publishes that account's entries.
    app.settings(default_account="subsidiary")
    make_pipeline(app.admin, clock=lambda: now).run(rebuild_search())
    rows = published_rows(app.splunkd)
    assert set(rows) == {"192.0.2.1", "192.0.2.9"} and rows["192.0.2.1"]["prevalence"] == 77


def test_rebuild_prefers_the_ipstats_figure_and_skips_documents_without_basis(app):
    now = time.time()
    app.settings(default_account="acme", lookback_hours="720", cache_ttl="7200", not_seen_ttl="600")
    old_layout = dict(cache_doc("acme", 720, "192.0.2.4", now=now), _key="acme|720|192.0.2.4")
    del old_layout["basis"]
    app.splunkd.kv_insert(CACHE, [
        cache_doc("acme", 720, "192.0.2.1", prevalence=1, basis="hunting", now=now),
        cache_doc("acme", 720, "192.0.2.1", prevalence=35233, now=now),
        cache_doc("acme", 720, "192.0.2.2", prevalence=3, basis="hunting", now=now),
        cache_doc("acme", 720, "192.0.2.3", prevalence=1, basis="hunting", now=now),
        cache_doc("acme", 720, "192.0.2.3", prevalence=50, age=8000, now=now),  # expired: hunting stands
        old_layout,
    ], app=APP)
    make_pipeline(app.admin, clock=lambda: now).run(rebuild_search())
    rows = published_rows(app.splunkd)
    assert {ip: (row["prevalence"], row["basis"]) for ip, row in rows.items()} == {
        "192.0.2.1": (35233, "ipstats"), "192.0.2.2": (3, "hunting"), "192.0.2.3": (1, "hunting")}


def test_rebuild_changes_nothing_when_the_settings_cannot_be_read(app):
    app.splunkd.kv_insert(PUBLISHED, [{"_key": "192.0.2.1", "ip": "192.0.2.1", "account": "acme",
                                       "lookback_hours": 720, "status": FOUND, "prevalence": 1,
                                       "fetched_at": time.time()}], app=APP)
    app.splunkd.inject_fault("conf-defenderipstats/settings", status=403)
    with pytest.raises(SyntaxError):  # Splunk: "Error in 'eval' command"
        make_pipeline(app.admin).run(rebuild_search())
    assert set(published_rows(app.splunkd)) == {"192.0.2.1"}


def test_the_automatic_lookup_ships_bound_to_no_data_and_works_once_bound(splunkd, system):
    props = conf("props")
    bound = [(stanza, key) for stanza, values in props.items() for key in values if key.startswith("LOOKUP-")]
    assert bound == [("defenderipstats:autolookup_template", "LOOKUP-defenderipstats")]
    assert not any("autolookup_template" in value for stanza in props.values() for value in stanza.values())
    definition = props["defenderipstats:autolookup_template"]["LOOKUP-defenderipstats"]
    assert definition.split()[0] == "defenderipstats"
    published.publish(system, [stats("192.0.2.1", prevalence=4)], "acme", 720, settings())
    admin = connect(splunkd.base_url, splunkd.new_session_key("admin"))
    out = make_pipeline(admin).run("| lookup " + definition, [{"dest_ip": "192.0.2.1"}, {"dest_ip": "192.0.2.8"}])
    assert out[0]["defender_prevalence"] == "4" and out[0]["defender_status"] == FOUND
    assert "defender_prevalence" not in out[1] or out[1]["defender_prevalence"] is None


def test_rebuild_with_one_account_and_no_default_keeps_what_the_service_resolved_and_published(app):
    """default_account empty means the one configured account: the service resolves it and publishes its
    answers, and the rebuild goes on publishing that account's fresh entries (never the name 'default')."""
    now = time.time()
    app.configure_account("acme")
    app.settings(default_account="", lookback_hours="720", cache_ttl="7200", not_seen_ttl="600")
    app.splunkd.kv_insert(CACHE, [cache_doc("acme", 720, "192.0.2.1", now=now),
                                  cache_doc("acme", 720, "192.0.2.2", now=now),
                                  cache_doc("acme", 720, "192.0.2.4", age=8000, now=now)], app=APP)
    # Nothing published yet: the rebuild has no account to go by and writes nothing (the search fails).
    with pytest.raises(SyntaxError):
        make_pipeline(app.admin, clock=lambda: now).run(rebuild_search())
    assert published_rows(app.splunkd) == {}
    published.publish(connect(app.splunkd.base_url, app.splunkd.new_session_key("admin")),
                      [IpStats(ip="192.0.2.4", status=FOUND, prevalence=5, source="api", fetched_at=now - 8000,
                               basis="ipstats")], "acme", 720, settings("acme"), clock=lambda: now)
    make_pipeline(app.admin, clock=lambda: now).run(rebuild_search())
    assert set(published_rows(app.splunkd)) == {"192.0.2.1", "192.0.2.2"}  # fresh ones; the expired one goes
