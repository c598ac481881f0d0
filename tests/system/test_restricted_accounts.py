"""``allowed_roles`` over everything learnt, and the account directory that is the admins'.

An account with ``allowed_roles`` may be used only by those roles, and nobody else reads what was learnt
through it: its cached answers live in ``defenderipstats_cache_restricted`` (admin roles and the service
only), the service hands them to allowed callers, the published lookup carries none of them. Attacked as
an analyst holding the app's role but not the account's, and as a plain user, over REST and with
``| inputlookup``; the allowed user still gets warm answers without an API call.
"""

import json
import os

import pytest
from restcalls import call
from spl import app_pipeline

from harness import ACCOUNT, APP, APP_ROOT, events, expected_fields
from standins import dataset
from standins.splunkd import parse_conf_file
from users import ANALYST, ANALYST_PW, PLAIN, PLAIN_PW, add_analyst_and_plain_user

RESTRICTED = "restricted"
TIER2, TIER2_PW = "tier2", "tier2-pw"
OPEN_COLLECTIONS = ("defenderipstats_cache", "defenderipstats_published")
LOOKUPS = ("defenderipstats_cache", "defenderipstats", "defenderipstats_cache_restricted")


@pytest.fixture
def tenants(app):
    """Two accounts on the same stand-in tenant: the open one, and RESTRICTED for soc_tier2 only."""
    add_analyst_and_plain_user(app.splunkd)
    app.splunkd.add_user(TIER2, TIER2_PW, roles=["defenderipstats_user", "soc_tier2"])
    app.configure_account(RESTRICTED, allowed_roles="soc_tier2")
    return app


def _rest(app, user, password, method, path, **form):
    return call(app, user, password, method, "/servicesNS/nobody/%s/%s" % (APP, path), **form)


def _inputlookup(app, user, password, lookup):
    """``| inputlookup <lookup>`` as ``user``: the rows, or None where splunkd refuses the read."""
    from splunklib import client

    host, port = app.splunkd.base_url.split("://", 1)[1].rsplit(":", 1)
    service = client.connect(scheme="http", host=host, port=int(port), username=user, password=password,
                             owner="nobody", app=APP, autologin=True)
    conf = lambda name: parse_conf_file(os.path.join(APP_ROOT, "default", name + ".conf"))  # noqa: E731
    try:
        return app_pipeline(service, APP, conf("transforms"), conf("collections")).run("| inputlookup " + lookup)
    except Exception as error:  # Splunk's inputlookup fails the search when the collection may not be read
        if getattr(error, "status", None) in (403, 404):
            return None
        raise


def _search(app, user, ips, *args):
    return app.search(["field=src_ip", "backend=ipstats"] + list(args), [events(ips)], username=user)


def _what_user_reads(app, user, password):
    """Every answer of RESTRICTED that ``user`` can read from a collection, a lookup or an endpoint."""
    seen = []
    for collection in OPEN_COLLECTIONS + ("defenderipstats_cache_restricted",):
        status, body = _rest(app, user, password, "GET", "storage/collections/data/%s" % collection)
        if status == 200:
            seen += [(collection, d) for d in json.loads(body) if d.get("account") == RESTRICTED]
    for lookup in LOOKUPS:
        rows = _inputlookup(app, user, password, lookup) or []
        seen += [("| inputlookup " + lookup, r) for r in rows if r.get("account") == RESTRICTED]
    return seen


# -- what was learnt stays with the account's roles ---------------------------------------------------
def test_a_restricted_accounts_answers_reach_its_roles_only(tenants):
    app = tenants
    app.settings(default_account=RESTRICTED)  # the published lookup must still carry none of them
    ips = dataset.ips(3, status="found", seed=171)
    run = _search(app, TIER2, ips, "account=" + RESTRICTED)
    assert run.errors == [] and app.defender.api_calls() == 3
    assert [r["defender_prevalence"] for r in run.records] == [expected_fields(ip)["defender_prevalence"]
                                                               for ip in ips]
    # The allowed user's next search is warm, through the service: no API call.
    again = _search(app, TIER2, ips, "account=" + RESTRICTED)
    assert again.errors == [] and app.defender.api_calls() == 3
    assert {r["defender_source"] for r in again.records} == {"cache"}
    # The admin roles see where they are kept.
    kept = app.splunkd.kv_documents("defenderipstats_cache_restricted", app=APP)
    assert sorted(d["ip"] for d in kept) == sorted(ips) and {d["account"] for d in kept} == {RESTRICTED}
    assert _inputlookup(app, "admin", "changeme", "defenderipstats_cache_restricted")
    for collection in OPEN_COLLECTIONS:
        assert [d for d in app.splunkd.kv_documents(collection, app=APP) if d.get("account") == RESTRICTED] == []
    # Nobody else reads any of them, from any collection or lookup, nor through the service.
    for user, password in ((ANALYST, ANALYST_PW), (PLAIN, PLAIN_PW)):
        assert _what_user_reads(app, user, password) == [], user
        for method in ("GET", "POST"):
            status, body = _rest(app, user, password, method, "defenderipstats/lookup", account=RESTRICTED,
                                 ips=",".join(ips), backend="ipstats", cache="use")
            assert status in (400, 403) and not any(ip in body for ip in ips), (user, method, status, body)
    assert app.defender.api_calls() == 3
    assert app.leaks([run, again]) == []


def test_a_search_of_the_open_account_never_reads_the_restricted_answers(tenants):
    app = tenants
    ips = dataset.ips(2, status="found", seed=172)
    _search(app, TIER2, ips, "account=" + RESTRICTED)
    run = _search(app, ANALYST, ips, "account=" + ACCOUNT)  # same tenant, same IPs: its own lookups
    assert run.errors == [] and {r["defender_source"] for r in run.records} == {"api"}
    assert app.defender.api_calls() == 4


def test_what_an_account_learnt_before_it_was_limited_leaves_the_searchers_collections(tenants):
    app = tenants
    ips = dataset.ips(3, status="found", seed=173)
    app.settings(default_account=ACCOUNT)
    assert _search(app, "admin", ips).errors == []
    assert len(_inputlookup(app, ANALYST, ANALYST_PW, "defenderipstats")) == 3  # published, for everyone
    # The admin limits the account on the setup page: its answers go from the cache and the lookup.
    status, body = _rest(app, "admin", "changeme", "POST", "defenderipstats/accounts/%s" % ACCOUNT,
                         allowed_roles="soc_tier2")
    assert status == 200, body
    for collection in OPEN_COLLECTIONS:
        assert app.splunkd.kv_documents(collection, app=APP) == [], collection
    assert [r for r in _inputlookup(app, ANALYST, ANALYST_PW, "defenderipstats_cache") or []] == []


def test_a_hand_edited_limit_takes_the_old_answers_away_at_the_next_lookup(tenants):
    app = tenants
    ips = dataset.ips(2, status="found", seed=174)
    app.settings(default_account=ACCOUNT)
    assert _search(app, "admin", ips).errors == []
    app.configure_account(ACCOUNT, allowed_roles="soc_tier2")  # the .conf, not the setup page
    run = _search(app, TIER2, ips)
    assert run.errors == [] and app.defender.api_calls() == 4  # the open answers are not its to read
    for collection in OPEN_COLLECTIONS:
        assert [d for d in app.splunkd.kv_documents(collection, app=APP) if d.get("account") == ACCOUNT] == []
    assert _what_user_reads(app, ANALYST, ANALYST_PW) == []


# -- the directory is the admins' ---------------------------------------------------------------------
def test_a_non_admin_cannot_read_the_account_stanzas(tenants):
    app = tenants
    from standins import defender as defender_module

    for user, password in ((ANALYST, ANALYST_PW), (PLAIN, PLAIN_PW), (TIER2, TIER2_PW)):
        for path in ("configs/conf-defenderipstats_accounts", "configs/conf-defenderipstats_accounts/" + ACCOUNT,
                     "properties/defenderipstats_accounts", "properties/defenderipstats_accounts/" + ACCOUNT):
            status, body = _rest(app, user, password, "GET", path)
            assert defender_module.DEFAULT_TENANT not in body and defender_module.DEFAULT_CLIENT_ID not in body, \
                (user, path, status)
            assert "soc_tier2" not in body and app.defender.base_url not in body, (user, path, status)
    status, body = _rest(app, "admin", "changeme", "GET", "configs/conf-defenderipstats_accounts/" + RESTRICTED)
    assert status == 200 and "soc_tier2" in body


def test_an_account_not_yours_and_one_that_does_not_exist_answer_alike(tenants):
    app = tenants
    ip = dataset.ips(1, status="found", seed=175)

    def refusals(account):
        run = _search(app, ANALYST, ip, "account=" + account)
        answers = [_rest(app, ANALYST, ANALYST_PW, method, "defenderipstats/lookup", account=account, ips=ip[0])
                   for method in ("GET", "POST")]
        return [error.replace(account, "X") for error in run.errors], \
            [(status, body.replace(account, "X")) for status, body in answers]

    restricted, missing = refusals(RESTRICTED), refusals("nosuch")
    assert restricted == missing
    assert len(restricted[0]) == 1 and "Unknown account 'X'" in restricted[0][0], restricted
    assert {status for status, _ in restricted[1]} == {400}
    assert app.defender.api_calls() == 0 and app.defender.token_calls() == 0
    # The admin is told which it is.
    run = _search(app, "admin", ip, "account=" + RESTRICTED)
    assert len(run.errors) == 1 and "allowed_roles" in run.errors[0], run.errors


def test_the_describing_get_checks_allowed_roles(tenants):
    app = tenants
    status, body = _rest(app, ANALYST, ANALYST_PW, "GET", "defenderipstats/lookup", account=RESTRICTED)
    assert status == 400 and "Unknown account 'restricted'" in body and "soc_tier2" not in body
    status, body = _rest(app, TIER2, TIER2_PW, "GET", "defenderipstats/lookup", account=RESTRICTED)
    assert status == 200 and json.loads(body)["account"] == RESTRICTED and json.loads(body)["restricted"] == 1
    app.settings(default_account=RESTRICTED)
    status, body = _rest(app, ANALYST, ANALYST_PW, "GET", "defenderipstats/lookup")
    assert status == 400 and RESTRICTED not in body  # nor is the default's name given away
