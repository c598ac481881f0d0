"""Tests of the splunkd stand-in, driven through splunklib.client as the app drives splunkd."""

import base64
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import splunklib.client as client
from splunklib.binding import AuthenticationError, HTTPError

from standins.splunkd import SplunkdStandin, parse_conf_text

APP = "TA-test"


@pytest.fixture
def app_dir(tmp_path):
    default = tmp_path / "default"
    default.mkdir()
    (default / "mysettings.conf").write_text(
        "# leading comment\n"
        "global_key = from-file-default\n"
        "[default]\n"
        "inherited = yes\n"
        "[settings]\n"
        "lookback_hours = 720\n"
        "max_wait = 60\n"
        "multi = first line \\\n"
        "second line\n"
        "\n"
        "[other]\n"
        "inherited = overridden\n",
        encoding="utf-8",
    )
    (default / "collections.conf").write_text(
        "[cache]\nfield.ip = string\nfield.prevalence = number\nfield.fetched_at = time\n"
        "accelerated_fields.by_ip = {\"ip\": 1}\n",
        encoding="utf-8",
    )
    return tmp_path


@pytest.fixture
def standin(app_dir):
    users = {
        "admin": {"password": "changeme", "roles": ["admin"]},
        "analyst": {"password": "pw", "roles": ["user"]},
    }
    with SplunkdStandin(apps={APP: str(app_dir)}, users=users) as instance:
        yield instance


def service(standin, username="admin", app=APP, owner=None):
    svc = client.Service(scheme="http", host="127.0.0.1", port=standin.port,
                         token=standin.new_session_key(username), app=app)
    if owner is not None:
        svc.namespace["owner"] = owner
    return svc


def raw(standin, method, path, params=None, body=None, headers=None, key=None):
    """Plain urllib request; returns (status, content type, body text)."""
    url = standin.base_url + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    hdrs = dict(headers or {})
    if key is not None:
        hdrs["Authorization"] = "Splunk " + key
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers.get("Content-Type"), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type"), error.read().decode()


# ------------------------------------------------------------------ parsing / auth


def test_conf_parser_syntax():
    parsed = parse_conf_text("\ufeffa = 1\n[s]\n  # comment\nk = v \\\n  cont\nx=y # not a comment\n[s]\nz=\n")
    assert parsed == {"default": {"a": "1"}, "s": {"k": "v \n  cont", "x": "y # not a comment", "z": ""}}


def test_token_and_login_and_basic_auth(standin):
    svc = service(standin)
    assert svc.info["version"] == standin.version
    logged_in = client.connect(scheme="http", host="127.0.0.1", port=standin.port,
                               username="admin", password="changeme")
    assert logged_in.has_cookies()  # splunkd sets splunkd_<port> on login with cookie=1
    assert logged_in.splunk_version == tuple(int(p) for p in standin.version.split("."))
    with pytest.raises(AuthenticationError):
        client.connect(scheme="http", host="127.0.0.1", port=standin.port, username="admin", password="bad")
    basic = "Basic " + base64.b64encode(b"admin:changeme").decode()
    status, _, _ = raw(standin, "GET", "/services/server/info", headers={"Authorization": basic})
    assert status == 200


def test_401_without_or_with_unknown_key(standin):
    status, ctype, body = raw(standin, "GET", "/services/server/info")
    assert status == 401 and ctype.startswith("text/xml")
    assert "<msg type=\"WARN\">call not properly authenticated</msg>" in body
    status, _, body = raw(standin, "GET", "/services/server/info", params={"output_mode": "json"}, key="nope")
    assert status == 401
    assert json.loads(body) == {"messages": [{"type": "WARN", "text": "call not properly authenticated"}]}
    svc = client.Service(scheme="http", host="127.0.0.1", port=standin.port, token="bogus")
    with pytest.raises(AuthenticationError):
        svc.confs["mysettings"]


def test_unknown_endpoint_and_app(standin):
    key = standin.new_session_key()
    status, _, body = raw(standin, "GET", "/services/no/such/endpoint", key=key)
    assert status == 404 and '<msg type="ERROR">Not Found</msg>' in body
    status, _, body = raw(standin, "GET", "/servicesNS/nobody/no-such-app/configs/conf-x", key=key)
    assert status == 404 and "no-such-app" in body


def test_current_context_and_info(standin):
    key = standin.new_session_key("analyst")
    status, _, body = raw(standin, "GET", "/services/authentication/current-context",
                          params={"output_mode": "json"}, key=key)
    content = json.loads(body)["entry"][0]["content"]
    assert content["username"] == "analyst" and content["roles"] == ["user"]
    assert "list_storage_passwords" not in content["capabilities"]
    info = service(standin).info
    assert info["serverName"] and info["version"] == standin.version


# ------------------------------------------------------------------ conf layering


def test_conf_default_and_local_layering(standin):
    svc = service(standin, owner="nobody")
    stanza = svc.confs["mysettings"]["settings"]
    assert stanza["lookback_hours"] == "720"
    assert stanza["multi"] == "first line \nsecond line"
    assert stanza["inherited"] == "yes"  # from [default]
    assert stanza["global_key"] == "from-file-default"  # settings before the first stanza
    assert stanza["eai:appName"] == APP and stanza.access.sharing == "app"
    assert not int(stanza.access.removable)  # only in default: nothing to delete

    stanza.update(max_wait="5")
    stanza.refresh()
    assert stanza["max_wait"] == "5" and stanza["lookback_hours"] == "720"
    assert standin.conf("mysettings", "settings", app=APP)["max_wait"] == "5"
    # the write went to local, default is untouched: deleting the local stanza reverts
    assert standin._layers[("app", APP, "default")]["mysettings"]["settings"]["max_wait"] == "60"
    svc.confs["mysettings"].delete("settings")
    assert standin.conf("mysettings", "settings", app=APP)["max_wait"] == "60"

    standin.set_conf("mysettings", "settings", app=APP, lookback_hours=24)
    assert svc.confs["mysettings"]["settings"]["lookback_hours"] == "24"
    assert svc.confs["mysettings"]["other"]["inherited"] == "overridden"


def test_conf_create_list_delete_and_properties(standin):
    svc = service(standin, owner="nobody")
    conf = svc.confs["mysettings"]
    names = [s.name for s in conf]
    assert names == ["default", "other", "settings"]  # splunkd lists [default] too
    conf.create("acct1", tenant_id="t1")
    with pytest.raises(HTTPError) as err:
        conf.create("acct1")
    assert err.value.status == 409
    assert standin.conf("mysettings", "acct1", app=APP)["tenant_id"] == "t1"
    key = standin.new_session_key()
    status, ctype, body = raw(standin, "GET", "/servicesNS/nobody/%s/properties/mysettings/acct1/tenant_id" % APP,
                              key=key)
    assert (status, body) == (200, "t1") and ctype.startswith("text/plain")
    status, _, _ = raw(standin, "POST", "/servicesNS/nobody/%s/properties/mysettings/acct1" % APP,
                       body="client_id=c1", key=key,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and standin.conf("mysettings", "acct1", app=APP)["client_id"] == "c1"
    conf.delete("acct1")
    assert "acct1" not in conf
    with pytest.raises(KeyError):
        svc.confs["nonexistent"]
    assert "mysettings" in svc.confs


def test_conf_visibility_between_apps_and_users(standin, app_dir):
    # not exported: invisible from the search app
    search = service(standin, app="search", owner="nobody")
    with pytest.raises(KeyError):
        search.confs["mysettings"]["settings"]
    standin.set_meta(APP, "mysettings", export="system")
    assert search.confs["mysettings"]["settings"]["eai:appName"] == APP
    # a user-level write (owner=admin) shadows the app-level value for that user only
    mine = service(standin, owner="admin")
    mine.post("configs/conf-mysettings", name="private", a="1")
    assert standin.conf("mysettings", "private", app=APP, owner="admin")["a"] == "1"
    with pytest.raises(KeyError):
        standin.conf("mysettings", "private", app=APP)
    entity = mine.confs["mysettings"]["private"]
    assert entity.access.sharing == "user" and entity.access.owner == "admin"
    # wildcard app reads list every instance
    wild = service(standin, app="-", owner="-")
    assert len([e for e in client.Collection(wild, "configs/conf-mysettings").list() if e.name == "private"]) == 1


def test_conf_write_needs_permission(standin):
    analyst = service(standin, username="analyst", owner="nobody")
    stanza = analyst.confs["mysettings"]["settings"]
    with pytest.raises(HTTPError) as err:
        stanza.update(max_wait="1")
    assert err.value.status == 403 and b"cannot write" in err.value.body


# ------------------------------------------------------------------ passwords


def test_passwords_crud(standin):
    svc = service(standin, owner="nobody")
    passwords = svc.storage_passwords
    created = passwords.create("s3cret", "acct:1", APP)
    assert created.name == "TA-test:acct\\:1:"
    assert (created.realm, created.username, created.clear_password) == (APP, "acct:1", "s3cret")
    assert created["password"] == "********" and created["encr_password"]
    with pytest.raises(HTTPError) as err:
        passwords.create("again", "acct:1", APP)
    assert err.value.status == 409
    assert standin.password(APP, "acct:1", app=APP) == "s3cret"

    fetched = passwords["TA-test:acct\\:1:"]
    fetched.update(password="rotated")
    fetched.refresh()
    assert fetched.clear_password == "rotated"

    standin.set_password(APP, "other", "x", app=APP)
    assert sorted(p.username for p in passwords) == ["acct:1", "other"]
    fetched.delete()
    assert [p.username for p in passwords] == ["other"]

    key = standin.new_session_key()
    status, _, body = raw(standin, "GET", "/servicesNS/nobody/%s/storage/passwords/%s" % (
        APP, urllib.parse.quote("TA-test:missing:", safe="")), key=key)
    assert status == 404 and "Could not find object" in body
    with pytest.raises(KeyError):
        passwords["TA-test:missing:"]


def test_passwords_need_capability(standin):
    standin.set_password(APP, "acct", "x", app=APP)
    analyst = service(standin, username="analyst", owner="nobody")
    with pytest.raises(HTTPError) as err:
        analyst.storage_passwords.list()
    assert err.value.status == 403 and b"list_storage_passwords" in err.value.body


# ------------------------------------------------------------------ KV store


@pytest.fixture
def cache(standin):
    svc = service(standin, owner="nobody")
    data = svc.kvstore["cache"].data
    data.batch_save(*[
        {"_key": "k%d" % i, "ip": "10.0.0.%d" % i, "prevalence": str(i), "fetched_at": 1000 + i,
         "tags": ["a", "b"] if i % 2 else ["c"], "status": "found" if i % 3 else "not_seen"}
        for i in range(10)
    ])
    return data


def test_kv_collection_config(standin):
    svc = service(standin, owner="nobody")
    assert "cache" in svc.kvstore
    assert svc.kvstore["cache"]["accelerated_fields.by_ip"] == {"ip": 1}
    svc.kvstore.create("extra", fields={"n": "number"})
    with pytest.raises(HTTPError):
        svc.kvstore.create("extra")
    svc.kvstore["extra"].delete()
    assert "extra" not in svc.kvstore
    svc.kvstore_owner = "admin"
    with pytest.raises(HTTPError) as err:
        svc.kvstore.list()
    assert err.value.status == 400 and b"Must use user context of 'nobody'" in err.value.body


def test_kv_types_and_query_operators(cache, standin):
    docs = standin.kv_documents("cache", app=APP)
    assert docs[3]["prevalence"] == 3 and docs[3]["_user"] == "nobody" and docs[3]["_key"] == "k3"

    def keys(**query):
        return [d["_key"] for d in cache.query(**query)]

    assert keys(query=json.dumps({"prevalence": {"$gt": 7}})) == ["k8", "k9"]
    assert keys(query=json.dumps({"prevalence": {"$gte": "8"}})) == ["k8", "k9"]  # operand typed
    assert keys(query=json.dumps({"prevalence": {"$lt": 1}})) == ["k0"]
    assert keys(query=json.dumps({"prevalence": {"$lte": 1}})) == ["k0", "k1"]
    assert len(keys(query=json.dumps({"status": {"$ne": "found"}}))) == 4
    assert keys(query=json.dumps({"$and": [{"prevalence": {"$gt": 2}}, {"prevalence": {"$lt": 5}}]})) == ["k3", "k4"]
    assert keys(query=json.dumps({"$or": [{"ip": "10.0.0.1"}, {"_key": "k2"}]})) == ["k1", "k2"]
    assert keys(query=json.dumps({"prevalence": {"$not": {"$gt": 1}}})) == ["k0", "k1"]
    assert keys(query=json.dumps({"ip": {"$in": ["10.0.0.4", "10.0.0.6", "nope"]}})) == ["k4", "k6"]
    assert keys(query=json.dumps({"tags": "c"})) == ["k0", "k2", "k4", "k6", "k8"]  # array contains
    assert keys(query=json.dumps({"ip": {"$gt": 5}})) == []  # strings never compare with numbers
    with pytest.raises(HTTPError) as err:
        cache.query(query="{not json")
    assert err.value.status == 400


def test_kv_fields_sort_limit_skip(cache):
    rows = cache.query(sort="prevalence:-1", limit=3, skip=1, fields="ip,prevalence")
    assert rows == [{"ip": "10.0.0.8", "prevalence": 8, "_key": "k8"},
                    {"ip": "10.0.0.7", "prevalence": 7, "_key": "k7"},
                    {"ip": "10.0.0.6", "prevalence": 6, "_key": "k6"}]
    rows = cache.query(sort="status,prevalence:-1", fields="_key:0,tags:0,ip:0,fetched_at:0,_user:0")
    assert rows[0] == {"prevalence": 8, "status": "found"} and rows[-1] == {"prevalence": 0, "status": "not_seen"}
    assert cache.query(fields="ip,_id:0", limit=1) == [{"ip": "10.0.0.0"}]


def test_kv_single_document_ops(cache):
    assert cache.query_by_id("k1")["ip"] == "10.0.0.1"
    assert cache.insert({"ip": "192.0.2.1"})["_key"]
    with pytest.raises(HTTPError) as err:
        cache.insert({"_key": "k1", "ip": "dup"})
    assert err.value.status == 409
    cache.update("k1", {"ip": "10.9.9.9", "prevalence": "42"})
    assert cache.query_by_id("k1") == {"ip": "10.9.9.9", "prevalence": 42, "_user": "nobody", "_key": "k1"}
    cache.delete_by_id("k1")
    with pytest.raises(HTTPError) as err:
        cache.query_by_id("k1")
    assert err.value.status == 404


def test_kv_delete_by_query_and_all(cache):
    cache.delete(json.dumps({"prevalence": {"$gte": 5}}))
    assert len(cache.query()) == 5
    cache.delete()
    assert cache.query() == []


def test_kv_batch_find_and_helpers(standin, cache):
    pages = cache.batch_find({"query": {"$or": [{"_key": "k1"}, {"_key": "k2"}]}, "fields": ["ip"], "limit": 5},
                             {"query": {"prevalence": {"$gte": 9}}, "sort": "prevalence", "fields": "prevalence"})
    assert pages == [[{"ip": "10.0.0.1", "_key": "k1"}, {"ip": "10.0.0.2", "_key": "k2"}],
                     [{"prevalence": 9, "_key": "k9"}]]
    keys = standin.kv_insert("cache", [{"_key": "seed", "prevalence": "7", "fetched_at": "oops"}], app=APP)
    assert keys == ["seed"]
    # typed: number converted, an unconvertible value dropped (enforceTypes = false)
    assert cache.query_by_id("seed") == {"prevalence": 7, "_user": "nobody", "_key": "seed"}
    # the data of a collection is reachable with the app wildcard when the name is unambiguous
    status, _, body = raw(standin, "GET", "/servicesNS/nobody/-/storage/collections/data/cache/seed",
                          key=standin.new_session_key())
    assert status == 200 and json.loads(body)["_key"] == "seed"


def test_kv_batch_save_cap_and_row_limit(standin):
    svc = service(standin, owner="nobody")
    data = svc.kvstore["cache"].data
    with pytest.raises(HTTPError) as err:
        data.batch_save(*[{"ip": str(i)} for i in range(1001)])
    assert err.value.status == 400
    assert json.loads(err.value.body)["messages"][0]["text"] == (
        "Request exceeds API limits - see limits.conf for details. (Too many documents for a single "
        "batch save, max_documents_per_batch_save=1000)")
    assert len(data.batch_save(*[{"ip": str(i)} for i in range(1000)])) == 1000
    standin.set_conf("limits", "kvstore", app="system", max_rows_per_query=300)
    assert len(data.query()) == 300
    assert len(data.query(skip=900)) == 100


def test_kv_unknown_collection_and_write_permission(standin, cache):
    key = standin.new_session_key()
    status, ctype, body = raw(standin, "GET", "/servicesNS/nobody/%s/storage/collections/data/nope" % APP, key=key)
    assert status == 404 and ctype.startswith("application/json") and json.loads(body)["messages"]
    analyst = service(standin, username="analyst", owner="nobody")
    data = analyst.kvstore["cache"].data
    assert len(data.query()) == 10
    with pytest.raises(HTTPError) as err:
        data.insert({"ip": "x"})
    assert err.value.status == 403
    standin.set_meta(APP, "collections/cache", access="read : [ * ], write : [ * ]")
    assert data.insert({"ip": "x"})["_key"]


# ------------------------------------------------------------------ messages, counting, faults


def test_messages(standin):
    svc = service(standin)
    svc.messages.create("defender_warn", value="something happened", severity="warn")
    assert standin.messages[-1]["value"] == "something happened"
    assert svc.messages["defender_warn"].value == "something happened"
    svc.messages.delete("defender_warn")
    assert "defender_warn" not in svc.messages
    assert not svc.restart_required


def test_request_counting(standin):
    standin.reset_requests()
    svc = service(standin, username="analyst", owner="nobody")
    svc.confs["mysettings"]["settings"]
    svc.kvstore["cache"].data.query()
    assert standin.count() == 4
    assert standin.count("GET", "/storage/collections/data/cache") == 1
    assert standin.count(path_contains="configs/conf-mysettings/settings") == 1
    assert {r.username for r in standin.requests} == {"analyst"}
    assert all(r.status == 200 and r.duration >= 0 for r in standin.requests)


def test_fault_injection(standin):
    svc = service(standin, owner="nobody")
    standin.inject_fault(r"/storage/collections/data/cache/?$", status=503, times=1, message="KV Store is initializing")
    with pytest.raises(HTTPError) as err:
        svc.kvstore["cache"].data.query()
    assert err.value.status == 503 and "KV Store is initializing" in str(err.value)
    assert svc.kvstore["cache"].data.query() == []  # times=1: answered normally afterwards

    standin.inject_fault(r"conf-mysettings", status=None, delay=0.3, times=1)
    started = time.monotonic()
    svc.confs["mysettings"]["settings"]
    assert time.monotonic() - started >= 0.3

    standin.inject_fault(r"server/info", status=0)
    dropped = client.Service(scheme="http", host="127.0.0.1", port=standin.port, token=standin.new_session_key())
    with pytest.raises((ConnectionError, socket.error, Exception)):
        dropped.get("/services/server/info")
    standin.clear_faults()
    assert service(standin).info["version"]
    assert [r.status for r in standin.requests if "server/info" in r.path][-2:] == [0, 200]


# -- search jobs (their state only) ---------------------------------------------------------------
def test_jobs_are_read_finalised_and_cancelled_through_splunklib(standin):
    standin.create_job("1764201601.42", owner="analyst", app=APP, search="search index=fw | defenderipstats")
    svc = service(standin, "analyst")
    job = svc.job("1764201601.42")
    assert job["dispatchState"] == "RUNNING" and job["isFinalized"] == "0" and job["isDone"] == "0"
    assert job.name == "1764201601.42" or job["sid"] == "1764201601.42"
    raw = json.loads(svc.get("search/jobs/1764201601.42", output_mode="json").body.read())
    content = raw["entry"][0]["content"]
    assert content["isFinalized"] is False and content["dispatchState"] == "RUNNING"  # JSON booleans
    job.finalize()
    job.refresh()
    assert job["isFinalized"] == "1" and job["dispatchState"] == "FINALIZING"
    assert standin.job_state("1764201601.42")["isFinalized"] is True
    job.cancel()
    assert standin.job_state("1764201601.42") is None
    with pytest.raises(HTTPError) as caught:
        svc.get("search/jobs/1764201601.42", output_mode="json")
    assert caught.value.status == 404 and "Unknown sid." in str(caught.value)


def test_a_job_is_visible_to_its_owner_and_admins_only(standin):
    standin.create_job("mine", owner="admin")
    with pytest.raises(HTTPError) as caught:
        service(standin, "analyst").get("search/jobs/mine")
    assert caught.value.status == 404
    assert [e["name"] for e in json.loads(service(standin, "admin").get(
        "search/jobs", output_mode="json").body.read())["entry"]] == ["| makeresults"]
    standin.cancel_job("mine")
    assert service(standin, "admin").jobs.list() == []


# -- roles from authorize.conf and persistent REST handlers (restmap.conf) ------------------------------

def _echo_app(tmp_path):
    app = tmp_path / "echo_app"
    (app / "default").mkdir(parents=True)
    (app / "bin").mkdir()
    (app / "default" / "authorize.conf").write_text(
        "[capability::echo_use]\n\n[role_echo_user]\nimportRoles = user\necho_use = enabled\n")
    (app / "default" / "restmap.conf").write_text(
        "[script:echo]\nmatch = /echo\nscript = echo_handler.py\nscripttype = persist\n"
        "capability.post = echo_use and (search or admin_all_objects)\npassSystemAuth = true\npassPayload = true\n")
    (app / "bin" / "echo_handler.py").write_text(
        "import json, os\n"
        "from splunk.persistconn.application import PersistentServerConnectionApplication\n"
        "COUNT = [0]\n"
        "class Echo(PersistentServerConnectionApplication):\n"
        "    def __init__(self, command_line, command_arg):\n"
        "        PersistentServerConnectionApplication.__init__(self)\n"
        "    def handle(self, in_string):\n"
        "        COUNT[0] += 1\n"
        "        request = json.loads(in_string)\n"
        "        return {'status': 200, 'payload': {'request': request, 'count': COUNT[0], 'pid': os.getpid()}}\n")
    return str(app)


def test_authorize_conf_roles_and_imports(tmp_path):
    from standins.splunkd import SplunkdStandin

    standin = SplunkdStandin(apps={"echo_app": _echo_app(tmp_path)})
    standin.add_user("e", roles=["echo_user"])
    assert standin.roles_of("e") == ["echo_user", "user"]
    assert {"echo_use", "search"} <= set(standin.capabilities_of("e"))
    assert "list_storage_passwords" not in standin.capabilities_of("e")


def test_persistent_rest_handler_protocol_capabilities_and_system_session(tmp_path):
    import urllib.error
    import urllib.request

    from standins.splunkd import SplunkdStandin

    with SplunkdStandin(apps={"echo_app": _echo_app(tmp_path)}) as standin:
        standin.add_user("e", roles=["echo_user"])
        standin.add_user("u", roles=["user"])

        def post(user, path="/servicesNS/nobody/echo_app/echo/sub/path?x=1"):
            request = urllib.request.Request(standin.base_url + path, data=b"a=1&b=two", method="POST")
            request.add_header("Authorization", "Splunk " + standin.new_session_key(user))
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                return error.code, error.read().decode()

        status, body = post("u")
        assert status == 403 and "requires capability: echo_use and (search or admin_all_objects)" in body
        status, first = post("e")
        assert status == 200
        request = first["request"]
        assert request["method"] == "POST" and request["rest_path"] == "/echo/sub/path"
        assert request["path_info"] == "sub/path" and request["query"] == [["x", "1"]]
        assert request["form"] == [["a", "1"], ["b", "two"]] and request["payload"] == "a=1&b=two"
        assert request["ns"] == {"app": "echo_app", "user": "nobody"}
        assert request["session"]["user"] == "e"
        assert request["server"]["rest_uri"] == standin.base_url
        assert standin._sessions[request["system_authtoken"]] == "splunk-system-user"
        status, second = post("e")
        assert (second["count"], second["pid"]) == (2, first["pid"])  # one process, module state kept
        standin.stop_handlers()
        status, third = post("e")
        assert third["count"] == 1 and third["pid"] != first["pid"] and standin.handler_starts == 2
