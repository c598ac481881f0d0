"""The privileged service, attacked as a user with only the app's role and as a plain user.

* The app ships the role ``defenderipstats_user`` (authorize.conf: imports ``user``, adds the capability
  ``defenderipstats_use``), and no ``list_storage_passwords``.
* Everything that needs a credential happens in the app's persistent REST handler (restmap.conf
  ``[script:defenderipstats_lookup]``, system session): tokens, budget, calls to Microsoft, cache
  writes. The search sends canonical IPs and gets statistics back. No endpoint hands out a token, a
  secret or a proxy credential.
* The cache is the app's: searching roles read it, only admin roles write it.
* Tokens are cached in the service (memory and storage/passwords, realm ``TA-defender-ipstats-token``):
  a burst of searches, each a new command process, costs one token request, whichever handler
  process answers.

Every attack here is made over REST (HTTP Basic, as curl -u would) or with the command itself.
"""

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from defender_ipstats.service.tokens import TOKEN_REALM
from harness import ACCOUNT, APP, events, expected_fields
from standins import dataset
from standins.defender import DEFAULT_SECRET, DefenderStandin
from standins.proxy import ConnectProxy
from users import ANALYST, ANALYST_PW, PLAIN, PLAIN_PW, add_analyst_and_plain_user

PROXY_USER, PROXY_PASSWORD = "svc-proxy", "proxy-Pa55word!"
CACHE = "storage/collections/data/defenderipstats_cache"


@pytest.fixture
def analyst_app(app):
    add_analyst_and_plain_user(app.splunkd)
    return app


def _rest(app, user, user_password, method, path, body=None, headers=None, **form):
    """A REST call as ``user``: (status, body text). Form fields go in the body (POST) or the query."""
    params = dict(form, output_mode="json")
    if method == "POST" and body is None:
        data, query = urllib.parse.urlencode(params).encode(), ""
    else:
        data, query = (body.encode() if isinstance(body, str) else body), "?" + urllib.parse.urlencode(params)
    request = urllib.request.Request(app.splunkd.base_url + path + query, data=data, method=method)
    credentials = base64.b64encode(("%s:%s" % (user, user_password)).encode()).decode()
    request.add_header("Authorization", "Basic " + credentials)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _ns(path):
    return "/servicesNS/nobody/%s/%s" % (APP, path)


def _search(app, user, seed, count=2, args=()):
    ips = dataset.ips(count, status="found", seed=seed)
    run = app.search(["field=src_ip", "backend=ipstats"] + list(args), [events(ips)], username=user)
    assert run.returncode == 0, run.stderr
    assert run.errors == [], run.errors
    for record, ip in zip(run.records, ips):
        assert {k: record[k] for k in expected_fields(ip)} == expected_fields(ip)
    return run


def _secrets_in(app, text):
    found = [name for name, value in (("client secret", DEFAULT_SECRET), ("proxy password", PROXY_PASSWORD))
             if value in text]
    return found + ["access token"] * sum(1 for token in app.defender.issued_tokens if token in text)


# -- nothing secret ever leaves the service ---------------------------------------------------------
def test_the_apps_role_runs_the_command_without_reading_any_secret(analyst_app):
    app = analyst_app
    assert "list_storage_passwords" not in app.splunkd.capabilities_of(ANALYST)
    assert "defenderipstats_use" in app.splunkd.capabilities_of(ANALYST)
    app.splunkd.reset_requests()  # forget the admin's configuration
    run = _search(app, ANALYST, seed=71)
    assert app.leaks([run]) == []
    # The credential was read only with the system session, and the search process never called
    # Microsoft: every token and API request came from the service.
    readers = {r.username for r in app.splunkd.requests if "storage/passwords" in r.path}
    assert readers == {"splunk-system-user"}
    for path in ("storage/passwords", "storage/passwords/%s:%s:" % (APP, ACCOUNT),
                 "storage/passwords/%s:%s.api:" % (TOKEN_REALM, ACCOUNT)):
        status, body = _rest(app, ANALYST, ANALYST_PW, "GET", _ns(path))
        assert status == 403 and "list_storage_passwords" in body, (path, status, body)
        assert _secrets_in(app, body) == []
    assert _rest(app, ANALYST, ANALYST_PW, "POST", _ns("storage/passwords"), name="x", realm=APP,
                 password="y")[0] == 403
    assert _rest(app, ANALYST, ANALYST_PW, "POST", _ns("configs/conf-defenderipstats_accounts/%s" % ACCOUNT),
                 authority="https://evil.example")[0] == 403


def test_there_is_no_token_endpoint_any_more(analyst_app):
    app = analyst_app
    _search(app, "admin", seed=72)  # a token exists now, in the service
    for user, password in ((ANALYST, ANALYST_PW), ("admin", "changeme")):
        for resource in ("api", "graph"):
            status, body = _rest(app, user, password, "POST", _ns("defenderipstats/token"), account=ACCOUNT,
                                 resource=resource)
            assert status == 404, (user, status, body)
            assert _secrets_in(app, body) == []


def test_the_lookup_service_answers_statistics_and_nothing_secret(analyst_app):
    app = analyst_app
    with ConnectProxy(credentials=(PROXY_USER, PROXY_PASSWORD)) as proxy:
        app.configure_account(proxy_url=proxy.url)
        app.set_proxy_credentials(ACCOUNT, PROXY_USER, PROXY_PASSWORD)
        ips = dataset.ips(3, status="found", seed=73)
        status, body = _rest(app, ANALYST, ANALYST_PW, "POST", _ns("defenderipstats/lookup"), ips=",".join(ips),
                             backend="ipstats", max_wait="0")
        assert proxy.count() >= 1  # the service went through the account's proxy, with its credentials
    assert status == 200, body
    answer = json.loads(body)
    assert {ip: answer["results"][ip]["prevalence"] for ip in ips} == \
        {ip: int(expected_fields(ip)["defender_prevalence"]) for ip in ips}
    assert _secrets_in(app, body) == [] and "proxy" not in json.dumps(answer).lower()
    status, body = _rest(app, ANALYST, ANALYST_PW, "GET", _ns("defenderipstats/lookup"))
    assert status == 200 and json.loads(body)["account"] == ACCOUNT and _secrets_in(app, body) == []


def test_ips_reach_microsoft_only_in_canonical_form(analyst_app):
    app = analyst_app
    hostile = ["10.0.0.1/../../api/machines", "10.0.0.1?x=1", "::FFFF:10.0.0.2", "10.0.0.3 ", "010.0.0.4"]
    status, body = _rest(app, ANALYST, ANALYST_PW, "POST", _ns("defenderipstats/lookup"), ips=",".join(hostile),
                         backend="ipstats", max_wait="0")
    assert status == 200, body
    results = json.loads(body)["results"]
    assert {results[value.strip()]["status"] for value in hostile if value.strip() != "10.0.0.3"} == {"invalid"}
    assert results["10.0.0.3"]["status"] in ("found", "not_seen")  # surrounding blanks are not part of it
    assert app.defender.api_calls() == 1


def test_a_plain_user_gets_nothing(analyst_app):
    app = analyst_app
    run = app.search(["field=src_ip", "backend=ipstats"], [events(["10.9.8.7"])], username=PLAIN)
    assert len(run.errors) == 1 and "defenderipstats_user" in run.errors[0], run.errors
    for method in ("GET", "POST"):
        status, body = _rest(app, PLAIN, PLAIN_PW, method, _ns("defenderipstats/lookup"), ips="8.8.8.8")
        assert status == 403 and "defenderipstats_use" in body
    assert app.defender.token_calls() == 0 and app.defender.api_calls() == 0


# -- per-account roles --------------------------------------------------------------------------------
def test_allowed_roles_limit_who_may_use_an_account(analyst_app):
    app = analyst_app
    app.splunkd.add_user("tier2", "tier2-pw", roles=["defenderipstats_user", "soc_tier2"])
    app.configure_account("restricted", allowed_roles="soc_tier2")
    ips = dataset.ips(2, status="found", seed=74)
    run = app.search(["field=src_ip", "account=restricted", "backend=ipstats"], [events(ips)], username=ANALYST)
    assert len(run.errors) == 1 and "Unknown account 'restricted' (or one you may not use" in run.errors[0], \
        run.errors
    assert ACCOUNT not in run.errors[0]  # nor is the analyst told which other accounts exist
    status, body = _rest(app, ANALYST, ANALYST_PW, "POST", _ns("defenderipstats/lookup"), account="restricted",
                         ips=",".join(ips))
    assert status == 400 and json.loads(body)["kind"] == "configuration"
    assert app.defender.token_calls() == 0 and app.defender.api_calls() == 0
    _search(app, "tier2", seed=74, args=["account=restricted"])
    assert app.defender.api_calls() == 2
    _search(app, ANALYST, seed=75, args=["account=%s" % ACCOUNT])  # the unrestricted account stays usable


def test_errors_list_other_accounts_to_admins_only(analyst_app):
    app = analyst_app
    run = app.search(["field=src_ip", "account=nosuch"], [events(["10.0.0.1"])], username=ANALYST)
    assert run.errors == ["defenderipstats: Unknown account 'nosuch' (or one you may not use: an admin can limit "
                          "an account to certain roles)."]
    run = app.search(["field=src_ip", "account=nosuch"], [events(["10.0.0.1"])], username="admin")
    assert run.errors == ["defenderipstats: Unknown account 'nosuch'. Configured accounts: %s." % ACCOUNT]


# -- the cache is the app's ---------------------------------------------------------------------------------
def test_the_cache_is_read_only_to_searchers_and_hidden_from_plain_users(analyst_app):
    app = analyst_app
    ip = dataset.ips(1, status="found", seed=76)[0]
    truth = expected_fields(ip)["defender_prevalence"]
    _search(app, "admin", seed=76, count=1)
    [document] = app.cache_documents()
    forged = dict(document, prevalence=4242, status="not_seen")
    for user, password in ((ANALYST, ANALYST_PW), (PLAIN, PLAIN_PW)):
        writes = [
            _rest(app, user, password, "POST", _ns(CACHE + "/batch_save"), body=json.dumps([forged]),
                  headers={"Content-Type": "application/json"}),
            _rest(app, user, password, "POST", _ns(CACHE), body=json.dumps(dict(forged, _key="new")),
                  headers={"Content-Type": "application/json"}),
            _rest(app, user, password, "POST", _ns(CACHE + "/" + urllib.parse.quote(document["_key"], safe="")),
                  body=json.dumps(forged), headers={"Content-Type": "application/json"}),
            _rest(app, user, password, "DELETE", _ns(CACHE)),
        ]
        expected = 403 if user == ANALYST else 404  # a plain user cannot even see the collection
        assert [status for status, _ in writes] == [expected] * 4, (user, writes)
    assert app.cache_documents() == [document]
    status, body = _rest(app, PLAIN, PLAIN_PW, "GET", _ns(CACHE))
    assert status == 404
    status, body = _rest(app, ANALYST, ANALYST_PW, "GET", _ns(CACHE))
    assert status == 200 and json.loads(body)[0]["prevalence"] == int(truth)
    # The admin's next search (the alerts' view) still sees the truth, from the cache.
    run = app.search(["field=src_ip", "backend=ipstats"], [events([ip])])
    assert run.records[0]["defender_prevalence"] == truth and run.records[0]["defender_source"] == "cache"


def test_the_searcher_reads_warm_answers_itself_and_never_writes(analyst_app):
    app = analyst_app
    _search(app, ANALYST, seed=77, count=3)
    app.splunkd.reset_requests()
    ips = dataset.ips(3, status="found", seed=77)
    run = app.search(["field=src_ip", "backend=ipstats"], [events(ips)], username=ANALYST)
    assert [r["defender_source"] for r in run.records] == ["cache"] * 3
    assert [r["defender_prevalence"] for r in run.records] == [expected_fields(ip)["defender_prevalence"] for ip in ips]
    cache_requests = [r for r in app.splunkd.requests if "defenderipstats_cache" in r.path]
    assert cache_requests and {r.username for r in cache_requests} == {ANALYST}
    assert not [r for r in cache_requests if "batch_save" in r.path]
    assert app.splunkd.count(path_contains="defenderipstats/lookup") == 1  # getinfo's, no lookup
    assert app.defender.api_calls() == 3


# -- tokens stay inside, and are reused ---------------------------------------------------------------
def test_the_token_cache_is_there_for_admins_only(analyst_app):
    app = analyst_app
    _search(app, ANALYST, seed=78)
    path = _ns("storage/passwords/%s:%s.api:" % (TOKEN_REALM, ACCOUNT))
    status, body = _rest(app, "admin", "changeme", "GET", path)
    assert status == 200
    cached = json.loads(json.loads(body)["entry"][0]["content"]["clear_password"])
    assert cached["access_token"] in app.defender.issued_tokens
    assert DEFAULT_SECRET not in body  # the cache holds the token, never the secret
    assert _rest(app, ANALYST, ANALYST_PW, "GET", path)[0] == 403


def test_ten_back_to_back_searches_make_one_token_request(analyst_app):
    app = analyst_app
    for number in range(10):
        _search(app, ANALYST, seed=100 + number, count=1)
    assert app.defender.token_calls() == 1
    assert app.defender.api_calls() == 10


def test_no_handler_process_memory_is_needed(analyst_app):
    """splunkd may start several handler processes, or end one after each request."""
    app = analyst_app
    app.splunkd.recycle_handlers = True
    for number in range(3):
        _search(app, ANALYST, seed=110 + number, count=2)
    assert app.splunkd.handler_starts >= 6  # getinfo and the lookups, each in a new process
    assert app.defender.token_calls() == 1  # the token came from storage/passwords every time


def test_a_rejected_token_is_replaced_once_for_everyone(analyst_app):
    app = analyst_app
    _search(app, ANALYST, seed=83)
    app.defender.expire_tokens()  # Defender now answers 401 to the cached token
    _search(app, ANALYST, seed=84)
    assert app.defender.token_calls() == 2
    _search(app, ANALYST, seed=85)  # and the fresh one is what the next search gets
    assert app.defender.token_calls() == 2


def test_a_forced_token_refresh_happens_at_most_once_a_minute(analyst_app):
    app = analyst_app
    _search(app, ANALYST, seed=86)
    app.defender.expire_tokens()
    _search(app, ANALYST, seed=87)  # forced refresh number one
    app.defender.expire_tokens()
    ips = dataset.ips(2, status="found", seed=88)
    run = app.search(["field=src_ip", "backend=ipstats"], [events(ips)], username=ANALYST)
    assert "found" not in {r["defender_status"] for r in run.records}
    assert app.defender.token_calls() == 2  # no second forced refresh within the minute
    assert "again within a minute" in app.log_text()


def test_a_changed_secret_is_not_served_an_old_token(analyst_app):
    app = analyst_app
    _search(app, ANALYST, seed=89)
    app.set_secret(ACCOUNT, "rotated-but-wrong")
    run = app.search(["field=src_ip", "backend=ipstats"], [events(["10.20.30.40"])], username=ANALYST)
    assert any("client secret is wrong" in text for text in run.errors), run.errors
    assert app.defender.token_calls() == 2


def test_a_hunting_search_makes_a_graph_token_only(analyst_app):
    from standins.defender import GRAPH_SCOPE

    app = analyst_app
    app.configure_account(graph_url=app.defender.base_url)
    ips = dataset.ips(3, status="found", seed=90)
    run = app.search(["field=src_ip", "backend=hunting"], [events(ips)], username=ANALYST)
    assert run.errors == [], run.errors
    assert {r["defender_source"] for r in run.records} == {"hunting"}
    assert [t.scope for t in app.defender.token_requests] == [GRAPH_SCOPE]


# -- the REST handler's own surface ------------------------------------------------------------------
def test_routing_is_by_the_restmap_stanza_not_by_the_path(analyst_app):
    app = analyst_app
    for path in ("defenderipstats/lookup/defenderipstats/accounts", "defenderipstats/lookup/accounts",
                 "defenderipstats/lookup/x/defenderipstats/settings"):
        for method in ("GET", "POST"):
            status, body = _rest(app, ANALYST, ANALYST_PW, method, _ns(path), name="evil", tenant_id="t",
                                 client_id="c", secret="s", default_account="evil")
            assert status == 404, (path, method, status, body)
            assert ACCOUNT not in body and _secrets_in(app, body) == []
    with pytest.raises(KeyError):
        app.splunkd.conf("defenderipstats_accounts", "evil")
    for path in ("defenderipstats/accounts", "defenderipstats/settings", "defenderipstats/accounts/%s/test" % ACCOUNT):
        assert _rest(app, ANALYST, ANALYST_PW, "POST", _ns(path))[0] == 403


def test_the_setup_endpoints_answer_while_lookups_wait_for_budget(analyst_app):
    import threading

    app = analyst_app
    app.settings(rate_per_minute="1")
    ips = dataset.ips(4, status="found", seed=91)
    searching = threading.Thread(target=app.search, args=(["field=src_ip", "backend=ipstats", "maxwait=15"],
                                                          [events(ips)]), kwargs={"username": ANALYST})
    searching.start()
    try:
        time.sleep(2)
        for _ in range(3):
            started = time.monotonic()
            status, _ = _rest(app, "admin", "changeme", "GET", _ns("defenderipstats/accounts"))
            assert status == 200 and time.monotonic() - started < 2.0
    finally:
        searching.join(timeout=60)


# -- the setup page never sends a stored credential where a form says ----------------------------------
@pytest.fixture
def evil():
    standin = DefenderStandin().start()
    try:
        yield standin
    finally:
        standin.stop()


def test_the_connection_test_never_sends_the_stored_secret_to_a_form_supplied_host(analyst_app, evil):
    app = analyst_app
    test = _ns("defenderipstats/accounts/%s/test" % ACCOUNT)
    for field, value in (("authority", evil.authority()), ("api_url", evil.base_url), ("ca_bundle", evil.ca_bundle)):
        status, body = _rest(app, "admin", "changeme", "POST", test, **{field: value, "authority": evil.authority(),
                                                                         "ca_bundle": evil.ca_bundle})
        assert status == 200 and json.loads(body)["ok"] is False, body
        assert "Enter the client secret" in json.loads(body)["message"]
    assert evil.token_calls() == 0 and evil.api_calls() == 0
    # With a secret typed in the form, the test goes where the form says (that is what it is for).
    status, body = _rest(app, "admin", "changeme", "POST", test, authority=evil.authority(), api_url=evil.base_url,
                         ca_bundle=evil.ca_bundle, secret="typed-in-the-form")
    assert evil.token_calls() == 1


def test_changing_where_the_credential_goes_needs_it_again(analyst_app, evil):
    app = analyst_app
    edit = _ns("defenderipstats/accounts/%s" % ACCOUNT)
    before = app.splunkd.conf("defenderipstats_accounts", ACCOUNT)
    for field, value in (("authority", evil.authority()), ("api_url", evil.base_url), ("graph_url", evil.base_url),
                         ("tenant_id", "other-tenant"), ("cloud", "gcc-high"), ("scope", "x/.default"),
                         ("ca_bundle", evil.ca_bundle), ("proxy_url", "http://127.0.0.1:9")):
        status, body = _rest(app, "admin", "changeme", "POST", edit, **{field: value})
        assert status == 400 and "enter the client secret" in body, (field, body)
    assert app.splunkd.conf("defenderipstats_accounts", ACCOUNT) == before
    status, body = _rest(app, "admin", "changeme", "POST", edit, timeout="20")  # not a destination: fine
    assert status == 200 and app.splunkd.password(APP, ACCOUNT) == DEFAULT_SECRET
    _search(app, ANALYST, seed=92)
    assert evil.token_calls() == 0


# -- logs and names ------------------------------------------------------------------------------------------
def test_no_value_can_forge_a_log_line(analyst_app):
    app = analyst_app
    forged = "x\n2026-12-02 00:00:00,000 INFO pid=1 defender_ipstats - sid=forged api_calls=99999"
    run = app.search(["field=src_ip", "account=" + forged], [events(["10.0.0.1"])], username=ANALYST)
    assert len(run.errors) == 1 and "1 to 64 letters" in run.errors[0]
    status, _ = _rest(app, ANALYST, ANALYST_PW, "POST", _ns("defenderipstats/lookup"), account=forged, ips="10.0.0.1")
    assert status == 400
    status, _ = _rest(app, "admin", "changeme", "POST", _ns("defenderipstats/accounts"), name=forged,
                      tenant_id="t", client_id="c", secret="s")
    assert status == 400
    # A search's sid is the caller's to choose over REST: the service takes it only as Splunk forms one.
    status, body = _rest(app, ANALYST, ANALYST_PW, "POST", _ns("defenderipstats/lookup"), sid=forged,
                         ips="10.0.0.1", backend="ipstats", max_wait="0")
    assert status == 400 and "sid must be a search id" in body and app.defender.api_calls() == 0
    log = app.log_text()
    assert not [line for line in log.splitlines() if "api_calls=99999" in line and line.startswith("2026-12-02 00")]


def test_default_is_never_an_account(analyst_app):
    app = analyst_app
    app.set_stanza("defenderipstats_accounts", "default", tenant_id="t", client_id="c")
    run = app.search(["field=src_ip", "account=default"], [events(["10.0.0.1"])], username=ANALYST)
    assert len(run.errors) == 1 and "not 'default'" in run.errors[0]
    _search(app, ANALYST, seed=93)  # no account= : the one configured account, contoso


def test_the_hourly_budget_holds_end_to_end(analyst_app):
    app = analyst_app
    app.settings(rate_per_minute="100", rate_per_hour="3", user_share_percent="100")
    ips = dataset.ips(5, status="found", seed=94)
    run = app.search(["field=src_ip", "backend=ipstats", "maxwait=5"], [events(ips)], username=ANALYST)
    statuses = [r["defender_status"] for r in run.records]
    assert statuses.count("found") == 3 and statuses.count("rate_limited") == 2
    assert app.defender.api_calls() == 3
    limited = [r for r in run.records if r["defender_status"] == "rate_limited"]
    assert all(int(r["defender_error"].split("about ")[1].split(" ")[0]) > 3000 for r in limited)
